//! sgwall benchmarks: datapath microbenchmarks under BPF_PROG_TEST_RUN, end-to-end figures
//! through a veth pair against nftables and iptables + ipset, and control-plane timings.
//! `cargo xtask bench` builds this in release mode and runs it; see BENCHMARKS.md for what each
//! figure means and how it was taken.
//!
//! Everything it creates (namespaces, links, nftables tables, iptables rules, ipsets) lives in
//! namespaces it made, owned by guards that remove it on drop, panics included.

mod control;
mod e2e;
mod floods;
mod memory;
mod micro;
mod peers;
mod policy;
mod report;
mod soak;
mod stats;
mod traffic;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use sgwall_tests::NetNs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The figures in BENCHMARKS.md.
    Full,
    /// Fewer rounds and shorter runs: every figure, in a few minutes.
    Quick,
    /// Checks that every benchmark runs and gives sane numbers; no speed judgement.
    Smoke,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    MicroRules,
    MicroMembers,
    MicroFlows,
    MicroAcl,
    MicroPrefixLists,
    E2e,
    Control,
    Floods,
    Soak,
}

impl Section {
    const ALL: [Section; 9] = [
        Section::MicroRules,
        Section::MicroMembers,
        Section::MicroFlows,
        Section::MicroAcl,
        Section::MicroPrefixLists,
        Section::E2e,
        Section::Control,
        Section::Floods,
        Section::Soak,
    ];

    fn key(self) -> &'static str {
        match self {
            Section::MicroRules => "micro-rules",
            Section::MicroMembers => "micro-members",
            Section::MicroFlows => "micro-flows",
            Section::MicroAcl => "micro-acl",
            Section::MicroPrefixLists => "micro-prefix-lists",
            Section::E2e => "e2e",
            Section::Control => "control",
            Section::Floods => "floods",
            Section::Soak => "soak",
        }
    }
}

#[derive(Parser)]
#[command(about = "sgwall benchmarks (run through `cargo xtask bench`)")]
struct Cli {
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Run only these sections; the others keep their last figures in the report.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Where the JSON, the per-section fragments and (for non-full modes) the report go.
    #[arg(long)]
    out_dir: PathBuf,
    /// The report to write.
    #[arg(long)]
    report: PathBuf,
    /// Measure nothing: rebuild the report from the fragments already in `--out-dir` (after
    /// editing the analysis in notes.md).
    #[arg(long)]
    report_only: bool,
    /// The command line shown in the report as the way to reproduce a section.
    #[arg(long, default_value = "cargo xtask bench")]
    command: String,
}

const NOTES: &str = include_str!("notes.md");

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if !sgwall_tests::privileged() {
        bail!("the benchmarks need root, BTF and bpffs");
    }
    sweep_stale_config_dirs();
    std::fs::create_dir_all(&cli.out_dir)
        .with_context(|| format!("creating {}", cli.out_dir.display()))?;
    let sections: Vec<Section> = if cli.report_only {
        Vec::new()
    } else if cli.only.is_empty() {
        Section::ALL.to_vec()
    } else {
        cli.only.clone()
    };
    let started = Instant::now();
    for section in &sections {
        let section_started = Instant::now();
        eprintln!("bench: {} ({})", section.key(), cli.mode.name());
        let machine = report::machine();
        let command = if cli.only.is_empty() {
            cli.command.clone()
        } else {
            format!("{} --only {}", cli.command, section.key())
        };
        let header = report::provenance(&machine, &command);
        let (json, fragment, targets) = match section {
            Section::MicroRules
            | Section::MicroMembers
            | Section::MicroFlows
            | Section::MicroAcl
            | Section::MicroPrefixLists => {
                let result = run_micro(*section, cli.mode)?;
                let (fragment, targets) = report::micro_fragment(&result, &header);
                (serde_json::to_value(&result)?, fragment, targets)
            }
            Section::E2e => {
                let result = e2e::run(&e2e::Params::for_mode(cli.mode))?;
                let (fragment, targets) = report::e2e_fragment(&result, &header);
                (serde_json::to_value(&result)?, fragment, targets)
            }
            Section::Control => {
                let result = control::run(&control::Params::for_mode(cli.mode))?;
                let (fragment, targets) = report::control_fragment(&result, &header);
                (serde_json::to_value(&result)?, fragment, targets)
            }
            Section::Floods => {
                let result = floods::run(&floods::Params::for_mode(cli.mode))?;
                let (fragment, targets) = floods::fragment(&result, &header);
                (serde_json::to_value(&result)?, fragment, targets)
            }
            Section::Soak => {
                let result = soak::run(&soak::Params::for_mode(cli.mode))?;
                soak::check(&result)?;
                let (fragment, targets) = soak::fragment(&result, &header);
                (serde_json::to_value(&result)?, fragment, targets)
            }
        };
        sanity(*section, &json)?;
        let document = serde_json::json!({
            "section": section.key(),
            "mode": cli.mode,
            "command": command,
            "machine": machine,
            "seconds": section_started.elapsed().as_secs_f64(),
            "result": json,
        });
        std::fs::write(
            cli.out_dir.join(format!("{}.json", section.key())),
            serde_json::to_string_pretty(&document)?,
        )?;
        report::write_section(&cli.out_dir, section.key(), &fragment, &targets)?;
        eprintln!(
            "bench: {} done in {:.0} s",
            section.key(),
            section_started.elapsed().as_secs_f64()
        );
    }
    let keys: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
    report::assemble(&cli.out_dir, &keys, NOTES, cli.mode.name(), &cli.report)?;
    eprintln!(
        "bench: wrote {} and {}/*.json in {:.0} s",
        cli.report.display(),
        cli.out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Config directories of earlier runs that died before their guard ran (`sgwt-bench-<pid>`);
/// the harness sweeps namespaces, links and pins the same way.
fn sweep_stale_config_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("sgwt-bench-")
            .and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn run_micro(section: Section, mode: Mode) -> Result<micro::SetResult> {
    let params = micro::Params::for_mode(mode);
    let (dimension, sizes) = match section {
        Section::MicroRules => (micro::RULES, params.rules.clone()),
        Section::MicroMembers => (micro::MEMBERS, params.members.clone()),
        Section::MicroAcl => (micro::ACL_ENTRIES, params.acl_entries.clone()),
        Section::MicroPrefixLists => (
            micro::PREFIX_LIST_ENTRIES,
            params.prefix_list_entries.clone(),
        ),
        _ => (micro::FLOWS, params.flows.clone()),
    };
    // BPF_PROG_TEST_RUN resolves the context's ifindex in the caller's namespace: the runs
    // happen on a thread inside a namespace of our own, with one veth to point at.
    let namespace = NetNs::new();
    namespace.exec(&[
        "ip", "link", "add", "sgwb0", "type", "veth", "peer", "name", "sgwb0p",
    ]);
    namespace.exec(&["ip", "link", "set", "sgwb0", "up"]);
    let ifindex = namespace.ifindex("sgwb0");
    sgwall::netns::run_in(namespace.name(), move || {
        micro::run_set(dimension, &sizes, &params, "sgwb0", ifindex)
    })?
}

/// Every figure must be a finite positive number (or a deliberate zero): a smoke run checks
/// exactly this, and a full run must not publish garbage either.
fn sanity(section: Section, json: &serde_json::Value) -> Result<()> {
    fn walk(value: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    if key == "median" {
                        match v.as_f64() {
                            Some(x) if x.is_finite() && x >= 0.0 => {}
                            _ => bad.push(format!("{path}.{key} = {v}")),
                        }
                    }
                    walk(v, &format!("{path}.{key}"), bad);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{index}]"), bad);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(json, section.key(), &mut bad);
    if !bad.is_empty() {
        bail!("insane figures: {}", bad.join(", "));
    }
    Ok(())
}
