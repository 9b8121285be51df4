//! Harness for the privileged test tiers (BPF_PROG_TEST_RUN, veth namespaces, binary smoke).
//!
//! Everything a test creates in the kernel is owned by a guard whose `Drop` removes it, so it is
//! cleaned up when the test panics too. Names carry the test process id; a test binary that was
//! killed outright (timeout, SIGKILL) leaves names whose process is gone, and the next run sweeps
//! those before it starts.

pub mod api;
pub mod datapath;
pub mod flood;
pub mod fuzz;
pub mod lab;
pub mod packet;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

pub use sgwall::probe::{Listener, Outcome, Probe, Service};
use sgwall::runtime::console::{AgentEvent, LogFormat};

/// Prefix of every namespace, interface and pin directory a test makes.
const NAME_PREFIX: &str = "sgwt";

/// Whether privileged tests can run here (the check `cargo xtask test` makes too: root, BTF,
/// bpffs, kernel 6.6 or newer). When they cannot: under `CI=true` this panics (a privileged test
/// may never skip in CI); otherwise it prints why and returns false so the test returns early,
/// visibly.
pub fn privileged() -> bool {
    let problem = sgwall_preflight::privilege_problem();
    match problem {
        None => {
            sweep_stale();
            true
        }
        Some(reason) if in_ci() => panic!("privileged test cannot run under CI=true: {reason}"),
        Some(reason) => {
            eprintln!("SKIPPED (not a pass): {reason}");
            false
        }
    }
}

/// Whether the tests run under CI (`CI=true`), where a test that cannot run must fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs a command, panicking with its output when it fails: test setup that fails is a failure.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Like [`run`], but for cleanup: failures are reported, never raised (we may be unwinding).
fn run_quietly(program: &str, args: &[&str]) {
    match Command::new(program).args(args).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!(
            "cleanup: {program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => eprintln!("cleanup: {program} {args:?}: {e}"),
    }
}

pub fn ip(args: &[&str]) -> Output {
    run("ip", args)
}

/// A short unique token: process id and a counter, in base 36 to fit interface names (15 chars).
fn unique_token() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        base35(std::process::id()),
        base35(COUNTER.fetch_add(1, Ordering::Relaxed))
    )
}

/// A fresh name with the harness prefix, swept when its process is gone.
pub fn unique_name() -> String {
    format!("{NAME_PREFIX}{}", unique_token())
}

/// Digits of the names' numbers: base 35, everything but `x`, which separates the pid from the
/// counter. In base 36 a pid with an `x` digit read back as another, dead, pid, and another
/// process's sweep removed a live test's lab.
const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwyz";

fn base35(mut value: u32) -> String {
    let radix = DIGITS.len() as u32;
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % radix) as usize]);
        value /= radix;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn pid_of_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (token, _) = rest.split_once('x')?;
    token.bytes().try_fold(0u32, |value, digit| {
        let digit = DIGITS.iter().position(|d| *d == digit)? as u32;
        value.checked_mul(DIGITS.len() as u32)?.checked_add(digit)
    })
}

/// Removes namespaces, interfaces and pin directories left by test processes that died.
pub fn sweep_stale() {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        let stale = |name: &str| pid_of_name(name).is_some_and(|pid| !sgwall::process::alive(pid));
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if stale(name) {
                    run_quietly("ip", &["netns", "del", name]);
                }
            }
        }
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line
                    .split(':')
                    .nth(1)
                    .map(|n| n.trim().split('@').next().unwrap_or(""))
                    .unwrap_or("");
                if stale(name) {
                    run_quietly("ip", &["link", "del", name]);
                }
            }
        }
        // Agents started by a `sgwall lab up` of a killed test outlive it (they have their own
        // session); their pin directory names the test process.
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let stale_pins = args.windows(2).any(|w| {
                    w[0] == "--pin-dir"
                        && Path::new(&w[1])
                            .file_name()
                            .is_some_and(|name| stale(&name.to_string_lossy()))
                });
                let pid = entry.file_name().to_string_lossy().parse::<i32>().ok();
                if let Some(pid) =
                    pid.filter(|_| args.get(1).is_some_and(|a| a == "run") && stale_pins)
                {
                    // SAFETY: kill(2) on a process whose command line names a dead test's pins.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        for root in ["/sys/fs/bpf", lab::STATE_ROOT] {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if stale(&name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// A network namespace, deleted on drop (which also deletes the interfaces inside it).
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn new() -> Self {
        let name = format!("{NAME_PREFIX}{}", unique_token());
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace, panicking if it fails.
    pub fn exec(&self, command: &[&str]) -> Output {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        ip(&args)
    }

    /// Runs a closure on a thread inside this namespace.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        sgwall::netns::run_in(&self.name, work)
            .unwrap_or_else(|e| panic!("running in namespace {}: {e}", self.name))
    }

    /// The ifindex of `interface` inside this namespace.
    pub fn ifindex(&self, interface: &str) -> u32 {
        let out = self.exec(&["ip", "-o", "link", "show", "dev", interface]);
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {interface} in {}", self.name))
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        run_quietly("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair joining two namespaces, each end addressed and up. The pair disappears with
/// either namespace; the guard removes it explicitly too, in case both outlive it.
pub struct VethPair {
    pub left: String,
    pub right: String,
    left_ns: String,
}

impl VethPair {
    /// Creates `left` in `left_ns` and `right` in `right_ns`, with the given addresses
    /// (CIDR notation, IPv4 or IPv6).
    pub fn new(
        left_ns: &NetNs,
        left_addrs: &[&str],
        right_ns: &NetNs,
        right_addrs: &[&str],
    ) -> Self {
        let token = unique_token();
        let left = format!("{NAME_PREFIX}{token}a");
        let right = format!("{NAME_PREFIX}{token}b");
        ip(&["link", "add", &left, "type", "veth", "peer", "name", &right]);
        let pair = Self {
            left: left.clone(),
            right: right.clone(),
            left_ns: left_ns.name().to_string(),
        };
        ip(&["link", "set", &left, "netns", left_ns.name()]);
        ip(&["link", "set", &right, "netns", right_ns.name()]);
        for (ns, dev, addrs) in [
            (left_ns, &left, left_addrs),
            (right_ns, &right, right_addrs),
        ] {
            for addr in addrs {
                // nodad: an IPv6 address must be usable at once, not after duplicate detection.
                if addr.contains(':') {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev, "nodad"]);
                } else {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev]);
                }
            }
            ns.exec(&["ip", "link", "set", dev, "up"]);
        }
        pair
    }
}

impl VethPair {
    /// A pair with chosen names: `left` in `left_ns` (addresses `left_addrs`), `right` in
    /// `right_ns`. Names must fit 15 bytes and be unique in their namespaces.
    pub fn named(
        left_ns: &NetNs,
        left: &str,
        left_addrs: &[&str],
        right_ns: &NetNs,
        right: &str,
        right_addrs: &[&str],
    ) -> Self {
        Self::named_with_right_up(
            left_ns,
            left,
            left_addrs,
            right_ns,
            right,
            right_addrs,
            true,
        )
    }

    /// Like [`VethPair::named`], leaving the right end down when `right_up` is false (a tap
    /// created before its VM starts).
    pub fn named_with_right_up(
        left_ns: &NetNs,
        left: &str,
        left_addrs: &[&str],
        right_ns: &NetNs,
        right: &str,
        right_addrs: &[&str],
        right_up: bool,
    ) -> Self {
        // Created under unique temporary names in the root namespace, then moved and renamed,
        // so two tests using the same names in different namespaces never collide.
        let token = unique_token();
        let (tmp_left, tmp_right) = (
            format!("{NAME_PREFIX}{token}l"),
            format!("{NAME_PREFIX}{token}r"),
        );
        ip(&[
            "link", "add", &tmp_left, "type", "veth", "peer", "name", &tmp_right,
        ]);
        ip(&["link", "set", &tmp_left, "netns", left_ns.name()]);
        ip(&["link", "set", &tmp_right, "netns", right_ns.name()]);
        left_ns.exec(&["ip", "link", "set", &tmp_left, "name", left]);
        right_ns.exec(&["ip", "link", "set", &tmp_right, "name", right]);
        for (ns, dev, addrs, up) in [
            (left_ns, left, left_addrs, true),
            (right_ns, right, right_addrs, right_up),
        ] {
            for addr in addrs {
                if addr.contains(':') {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev, "nodad"]);
                } else {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev]);
                }
            }
            if up {
                ns.exec(&["ip", "link", "set", dev, "up"]);
            }
        }
        Self {
            left: left.to_string(),
            right: right.to_string(),
            left_ns: left_ns.name().to_string(),
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Gone already if its namespace was deleted first; that is fine.
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.left_ns,
                "ip",
                "link",
                "del",
                &self.left,
            ])
            .output();
    }
}

/// A directory on bpffs for one test's pins, removed with everything in it on drop.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        let path = PathBuf::from("/sys/fs/bpf").join(format!("{NAME_PREFIX}{}", unique_token()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating pin dir {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("cleanup: removing {}: {e}", self.path.display());
        }
    }
}

/// A directory under the temporary directory, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `sgwall run` (for the benchmarks and the smoke tests; integration tests use
/// [`lab::TestLab`]), killed (SIGKILL: the harshest exit) and cleaned up with `sgwall down` when
/// dropped, so nothing is left attached or pinned.
pub struct AgentProcess {
    child: Option<std::process::Child>,
    /// Each line the agent printed, and whether it was on stdout.
    lines: std::sync::mpsc::Receiver<(bool, String)>,
    seen: Vec<(bool, String)>,
    pub pin_dir: PathBuf,
}

impl AgentProcess {
    /// Starts `sgwall run --log-format FORMAT --config CONFIG --netns NETNS --pin-dir PIN_DIR
    /// EXTRA_ARGS...`.
    pub fn start(
        format: LogFormat,
        config: &Path,
        netns: &str,
        pin_dir: &Path,
        extra_args: &[&str],
    ) -> Self {
        let format = match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let mut child = Command::new(sgwall_bin())
            .args(["run", "--log-format", format, "--config"])
            .arg(config)
            .arg("--netns")
            .arg(netns)
            .arg("--pin-dir")
            .arg(pin_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting sgwall run: {e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        for (is_stdout, stream) in [
            (
                true,
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ),
            (
                false,
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ),
        ] {
            let (Some(stream), tx) = (stream, tx.clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send((is_stdout, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            pin_dir: pin_dir.to_path_buf(),
        }
    }

    /// Reads what the agent prints until `done` is satisfied with it (or `timeout` passes,
    /// which fails).
    fn read_until(
        &mut self,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&[(bool, String)]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "the agent never printed {what} within {timeout:?}; output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Waits until the agent reports an event `wanted` accepts (`what` names it).
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: std::time::Duration,
        wanted: impl Fn(&AgentEvent) -> bool,
    ) {
        self.wait_events(what, timeout, 1, wanted);
    }

    /// Waits until the agent has reported `count` events that `wanted` accepts, counting from
    /// its start: for an event that recurs (an interface waited for again).
    pub fn wait_events(
        &mut self,
        what: &str,
        timeout: std::time::Duration,
        count: usize,
        wanted: impl Fn(&AgentEvent) -> bool,
    ) {
        self.read_until(what, timeout, |seen| {
            seen.iter()
                .filter(|(is_stdout, line)| {
                    *is_stdout && AgentEvent::from_line(line).is_some_and(|e| wanted(&e))
                })
                .count()
                >= count
        });
    }

    /// The first `count` lines the agent printed on stdout (its events), as printed.
    pub fn stdout_lines(&mut self, count: usize, timeout: std::time::Duration) -> Vec<String> {
        let on_stdout = |seen: &[(bool, String)]| {
            seen.iter()
                .filter(|(is_stdout, _)| *is_stdout)
                .map(|(_, line)| line.clone())
                .collect::<Vec<_>>()
        };
        self.read_until(&format!("{count} lines"), timeout, |seen| {
            on_stdout(seen).len() >= count
        });
        on_stdout(&self.seen).into_iter().take(count).collect()
    }

    /// Everything the agent printed so far, stdout and stderr interleaved.
    pub fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL, as a crash would: enforcement must stay (pinned).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new(sgwall_bin())
            .arg("down")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .output();
    }
}

/// `sgwall status --json` for the pins under `pin_dir`.
pub fn status_json(pin_dir: &Path) -> serde_json::Value {
    let output = Command::new(sgwall_bin())
        .args(["status", "--json", "--pin-dir"])
        .arg(pin_dir)
        .output()
        .unwrap_or_else(|e| panic!("running sgwall status: {e}"));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "sgwall status is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The packets a status counted under `reason` on `interface` going `direction`.
pub fn counted(status: &serde_json::Value, interface: &str, direction: &str, reason: &str) -> u64 {
    status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| {
            row["interface"] == interface
                && row["direction"] == direction
                && row["reason"] == reason
        })
        .filter_map(|row| row["packets"].as_u64())
        .sum()
}

/// The `sgwall` binary under test (`cargo xtask test` builds it and sets `SGWALL_BIN`).
pub fn sgwall_bin() -> PathBuf {
    let path = std::env::var_os("SGWALL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("debug")
                .join("sgwall")
        });
    assert!(
        path.exists(),
        "{} does not exist: build it (cargo build -p sgwall) or run cargo xtask test",
        path.display()
    );
    path
}

#[cfg(test)]
mod name_tests {
    use super::*;

    /// Every pid reads back from its name, those whose base-36 form has an `x` included.
    #[test]
    fn a_name_gives_back_its_pid() {
        for pid in [1, 34, 35, 24117, 4_194_303, u32::MAX] {
            let name = format!("{NAME_PREFIX}{}x{}", base35(pid), base35(33));
            assert_eq!(pid_of_name(&name), Some(pid), "{name}");
        }
        assert_eq!(pid_of_name("sgwt"), None);
    }
}
