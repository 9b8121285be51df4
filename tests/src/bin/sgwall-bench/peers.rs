//! The filters sgwall is compared with, each loaded inside the server namespace and removed by a
//! guard, failures included. The namespace is the benchmark's own; nothing outside it changes.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Runs `command` inside namespace `ns`, feeding `input` on stdin.
pub fn ns_run(ns: &str, command: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(command)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{command:?} in {ns} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ns_run_quietly(ns: &str, command: &[&str]) {
    if let Err(error) = ns_run(ns, command, None) {
        eprintln!("cleanup: {error}");
    }
}

/// An nftables table, deleted on drop.
pub struct NftTable {
    ns: String,
    name: String,
}

impl NftTable {
    pub fn load(ns: &str, name: &str, ruleset: &str) -> Result<Self> {
        ns_run(ns, &["nft", "-f", "-"], Some(ruleset)).context("loading the nftables ruleset")?;
        Ok(Self {
            ns: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        ns_run_quietly(&self.ns, &["nft", "delete", "table", "inet", &self.name]);
    }
}

/// iptables (legacy, x_tables) rules and their ipsets; flushed and destroyed on drop.
pub struct IptablesRules {
    ns: String,
    sets: Vec<String>,
}

impl IptablesRules {
    pub fn load(ns: &str, ipset: &str, iptables: &str) -> Result<Self> {
        let sets = ipset
            .lines()
            .filter_map(|line| line.strip_prefix("create "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect();
        // The guard exists before anything is loaded, so a half-done load is undone too.
        let rules = Self {
            ns: ns.to_string(),
            sets,
        };
        ns_run(ns, &["ipset", "restore"], Some(ipset)).context("ipset restore")?;
        ns_run(ns, &["iptables-legacy-restore"], Some(iptables))
            .context("iptables-legacy-restore")?;
        Ok(rules)
    }
}

impl Drop for IptablesRules {
    fn drop(&mut self) {
        ns_run_quietly(&self.ns, &["iptables-legacy", "-F", "INPUT"]);
        ns_run_quietly(&self.ns, &["iptables-legacy", "-P", "INPUT", "ACCEPT"]);
        for set in &self.sets {
            ns_run_quietly(&self.ns, &["ipset", "destroy", set]);
        }
    }
}

/// Empties netfilter's connection table in the namespace, so each measurement starts clean.
pub fn flush_conntrack(ns: &str) {
    // Exit status 1 means "table already empty" on some versions: not worth failing for.
    let _ = ns_run(ns, &["conntrack", "-F"], None);
}
