//! The lab's agent: `sgwall run` in the router namespace, started in the background with its
//! own session, its output appended to a log file the lab reads to know when enforcement is on.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("opening the agent log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent exited before it enforced {missing}; its log ({log}) ends with:\n{tail}")]
    Exited {
        missing: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the agent did not enforce {missing} within {seconds:.0} s; its log ({log}) ends with:\n{tail}"
    )]
    Timeout {
        missing: String,
        seconds: f64,
        log: PathBuf,
        tail: String,
    },
    #[error("signalling the agent (pid {pid}): {source}")]
    Signal { pid: u32, source: nix::Error },
    #[error("the agent (pid {pid}) is still running {seconds:.0} s after SIGTERM and SIGKILL")]
    WontStop { pid: u32, seconds: f64 },
    #[error("the agent rejected the new config:\n{0}")]
    Rejected(String),
    #[error("the agent did not reload within {seconds:.0} s; its log ({log}) ends with:\n{tail}")]
    NoReload {
        seconds: f64,
        log: PathBuf,
        tail: String,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub netns: String,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    /// Ask the kernel to stop the agent when the thread that started it ends: tests use this
    /// so that a test process killed outright leaves no agent behind.
    pub die_with_caller: bool,
}

/// A running agent. `child` is set when this process started it (and so must reap it).
#[derive(Debug)]
pub struct Agent {
    pub pid: u32,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Starts the agent. It gets its own session, so a Ctrl-C or a closed terminal aimed at the
/// command that started it does not reach it.
pub fn spawn(spec: &AgentSpec) -> Result<Agent, AgentError> {
    let log_error = |source| AgentError::Log {
        path: spec.log.clone(),
        source,
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(log_error)?;
    let log_for_stderr = log.try_clone().map_err(log_error)?;
    let mut command = Command::new(&spec.binary);
    command
        .arg("run")
        .arg("--config")
        .arg(&spec.config)
        .arg("--netns")
        .arg(&spec.netns)
        .arg("--pin-dir")
        .arg(&spec.pin_dir)
        // The lab reads the agent's info lines (reloads): a RUST_LOG of the caller's must not
        // hide them.
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);
    let die_with_caller = spec.die_with_caller;
    // SAFETY: the closure runs between fork and exec and only makes two system calls, both
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if die_with_caller {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| AgentError::Spawn {
        binary: spec.binary.clone(),
        source,
    })?;
    Ok(Agent {
        pid: child.id(),
        log: spec.log.clone(),
        child: Some(child),
    })
}

/// What the agent said about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceLine {
    Enforcing { interface: String, line: String },
    Waiting { interface: String, line: String },
}

/// Reads the agent's status lines (`enforcing <interface> (...)` and `waiting for <interface>
/// (...)`) out of its log text; everything else in the log is ignored.
pub fn status_lines(text: &str) -> Vec<InterfaceLine> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("enforcing ") {
                let interface = rest.split_whitespace().next()?.to_string();
                return Some(InterfaceLine::Enforcing {
                    interface,
                    line: line.to_string(),
                });
            }
            let rest = line.strip_prefix("waiting for ")?;
            let interface = rest.split_whitespace().next()?.to_string();
            Some(InterfaceLine::Waiting {
                interface,
                line: line.to_string(),
            })
        })
        .collect()
}

impl Agent {
    /// An agent this process did not start (read from the lab state).
    pub fn adopt(pid: u32, log: PathBuf) -> Self {
        Self {
            pid,
            log,
            child: None,
        }
    }

    /// Whether the process still runs (a zombie child counts as gone, and is reaped).
    pub fn running(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return matches!(child.try_wait(), Ok(None));
        }
        process_running(self.pid)
    }

    /// Current length of the log: pass it to [`Agent::wait_enforcing`] to only consider what
    /// the agent says from now on.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Log text from byte `since` on.
    pub fn log_since(&self, since: u64) -> Result<String, AgentError> {
        let log_error = |source| AgentError::Log {
            path: self.log.clone(),
            source,
        };
        let mut file = File::open(&self.log).map_err(log_error)?;
        file.seek(SeekFrom::Start(since)).map_err(log_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(log_error)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_since(0).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        all[start..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the agent has printed an `enforcing` line for each of `interfaces` after log
    /// offset `since`, and returns those lines in the order of `interfaces`.
    pub fn wait_enforcing(
        &mut self,
        interfaces: &[String],
        since: u64,
        timeout: Duration,
    ) -> Result<Vec<String>, AgentError> {
        const POLL: Duration = Duration::from_millis(25);
        let deadline = Instant::now() + timeout;
        loop {
            let said = status_lines(&self.log_since(since)?);
            let line_of = |wanted: &String| {
                said.iter().rev().find_map(|l| match l {
                    InterfaceLine::Enforcing { interface, line } if interface == wanted => {
                        Some(line.clone())
                    }
                    _ => None,
                })
            };
            let found: Vec<Option<String>> = interfaces.iter().map(line_of).collect();
            if found.iter().all(Option::is_some) {
                return Ok(found.into_iter().flatten().collect());
            }
            let missing = interfaces
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(i, _)| i.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if !self.running() {
                return Err(AgentError::Exited {
                    missing,
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            if Instant::now() >= deadline {
                return Err(AgentError::Timeout {
                    missing,
                    seconds: timeout.as_secs_f64(),
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks the agent to reload its config (it also reloads when the file changes).
    pub fn reload(&self) -> Result<(), AgentError> {
        self.signal(Signal::SIGHUP)
    }

    /// Waits until the agent logs a reload after log offset `since`: the policy of the config
    /// it read is in force when it says so. Returns that log line.
    pub fn wait_reloaded(&mut self, since: u64, timeout: Duration) -> Result<String, AgentError> {
        const POLL: Duration = Duration::from_millis(20);
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_since(since)?;
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.contains("config rejected") || line.contains("reload failed") {
                    // The reasons follow on the next lines, up to the next log line.
                    let reasons: Vec<&str> = std::iter::once(line)
                        .chain(lines.take_while(|l| l.starts_with(' ') || !l.contains(" INFO ")))
                        .collect();
                    return Err(AgentError::Rejected(reasons.join("\n")));
                }
                if line.contains(": reloaded") {
                    return Ok(line.to_string());
                }
            }
            if !self.running() || Instant::now() >= deadline {
                return Err(AgentError::NoReload {
                    seconds: timeout.as_secs_f64(),
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), AgentError> {
        let pid = i32::try_from(self.pid).unwrap_or(i32::MAX);
        kill(Pid::from_raw(pid), signal).map_err(|source| AgentError::Signal {
            pid: self.pid,
            source,
        })
    }

    /// Stops the agent: SIGTERM, then SIGKILL if it lingers. Its enforcement stays in place
    /// (pinned); [`down`] removes that.
    pub fn stop(&mut self) -> Result<(), AgentError> {
        const GRACE: Duration = Duration::from_secs(5);
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            if !self.running() {
                return Ok(());
            }
            match self.signal(signal) {
                // Gone between the check and the signal.
                Err(AgentError::Signal {
                    source: nix::Error::ESRCH,
                    ..
                }) => return Ok(()),
                other => other?,
            }
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline {
                if !self.running() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(AgentError::WontStop {
            pid: self.pid,
            seconds: (GRACE * 2).as_secs_f64(),
        })
    }
}

/// Whether `pid` runs and is not a zombie.
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is an `sgwall run` using `pin_dir`: a recorded pid may have been reused by
/// something else since, which must never be signalled.
pub fn is_lab_agent(pid: u32, pin_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let pin = pin_dir.as_os_str().as_encoded_bytes();
    args.get(1).is_some_and(|a| *a == b"run")
        && args.windows(2).any(|w| w[0] == b"--pin-dir" && w[1] == pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_pick_enforcing_and_waiting_lines_only() {
        let log = "2026-01-01T00:00:00Z INFO loading\n\
                   enforcing sgw-web1 (web-1): port via tc-ingress,tc-egress\n\
                   waiting for sgw-app2 (app-2): no such interface\n\
                   something enforcing sgw-x\n";
        assert_eq!(
            status_lines(log),
            [
                InterfaceLine::Enforcing {
                    interface: "sgw-web1".into(),
                    line: "enforcing sgw-web1 (web-1): port via tc-ingress,tc-egress".into()
                },
                InterfaceLine::Waiting {
                    interface: "sgw-app2".into(),
                    line: "waiting for sgw-app2 (app-2): no such interface".into()
                },
            ]
        );
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_the_agent() {
        // This test process is no `sgwall run`.
        assert!(!is_lab_agent(
            std::process::id(),
            Path::new("/sys/fs/bpf/x")
        ));
        assert!(!process_running(u32::MAX));
        assert!(process_running(std::process::id()));
    }
}
