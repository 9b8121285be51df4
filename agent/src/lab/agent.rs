//! The lab's agent: `sgwall run --log-format json` in the router namespace, started in the
//! background with its own session, its output appended to a log file. The lab reads the
//! agent's events ([`AgentEvent`], one JSON object a line on its stdout) out of that log to know
//! when enforcement is on and when a config is in force.

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

use crate::{
    pins::state::InterfaceStatus,
    runtime::console::{AgentEvent, Rejection},
};

#[derive(Debug, thiserror::Error)]
pub enum LabAgentError {
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
    #[error(
        "the agent never reported {what} within {seconds:.0} s; its log ({log}) ends with:\n{tail}"
    )]
    NoEvent {
        what: String,
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
pub struct LabAgentSpec {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub netns: String,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    /// More `sgwall run` options (`--flow-window 1`, `--metrics-addr ...`).
    pub extra_args: Vec<String>,
    /// Ask the kernel to stop the agent when the thread that started it ends: tests use this
    /// so that a test process killed outright leaves no agent behind.
    pub die_with_caller: bool,
}

/// A running agent. `child` is set when this process started it (and so must reap it).
#[derive(Debug)]
pub struct LabAgent {
    pub pid: u32,
    pub log: PathBuf,
    child: Option<Child>,
}

/// How often the log is read again while waiting for an event.
const POLL: Duration = Duration::from_millis(20);

/// Starts the agent. It gets its own session, so a Ctrl-C or a closed terminal aimed at the
/// command that started it does not reach it.
pub fn spawn(spec: &LabAgentSpec) -> Result<LabAgent, LabAgentError> {
    let log_error = |source| LabAgentError::Log {
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
        .arg("--log-format")
        .arg("json")
        .arg("--config")
        .arg(&spec.config)
        .arg("--netns")
        .arg(&spec.netns)
        .arg("--pin-dir")
        .arg(&spec.pin_dir)
        .args(&spec.extra_args)
        // The lab's error messages quote the agent's info lines: a RUST_LOG of the caller's
        // must not hide them.
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
    let child = command.spawn().map_err(|source| LabAgentError::Spawn {
        binary: spec.binary.clone(),
        source,
    })?;
    Ok(LabAgent {
        pid: child.id(),
        log: spec.log.clone(),
        child: Some(child),
    })
}

/// The agent's events in its log text, in order; log lines are skipped.
pub fn events(text: &str) -> Vec<AgentEvent> {
    text.lines().filter_map(AgentEvent::from_line).collect()
}

/// A log line for people: an event as its text form, a JSON log record as its level and
/// message, anything else as it is.
fn readable(line: &str) -> String {
    if let Some(event) = AgentEvent::from_line(line) {
        return event.to_string();
    }
    let record: Option<serde_json::Value> = serde_json::from_str(line).ok();
    let message = record.as_ref().and_then(|record| {
        let message = record["fields"]["message"].as_str()?;
        let level = record["level"].as_str().unwrap_or("");
        Some(format!("{level} {message}"))
    });
    message.unwrap_or_else(|| line.to_string())
}

impl LabAgent {
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
        crate::process::alive(self.pid)
    }

    /// Log text from byte `since` on.
    pub fn log_since(&self, since: u64) -> Result<String, LabAgentError> {
        let log_error = |source| LabAgentError::Log {
            path: self.log.clone(),
            source,
        };
        let mut file = File::open(&self.log).map_err(log_error)?;
        file.seek(SeekFrom::Start(since)).map_err(log_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(log_error)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The last lines of the log, readable, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_since(0).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        all[start..]
            .iter()
            .map(|l| format!("    {}", readable(l)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the agent reports, after log offset `since`, an event for which `wanted`
    /// gives a value, and returns that value. `what` names it in the error.
    pub fn wait_event<T>(
        &mut self,
        since: u64,
        timeout: Duration,
        what: &str,
        mut wanted: impl FnMut(&AgentEvent) -> Option<T>,
    ) -> Result<T, LabAgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = events(&self.log_since(since)?).iter().find_map(&mut wanted) {
                return Ok(found);
            }
            if !self.running() || Instant::now() >= deadline {
                return Err(LabAgentError::NoEvent {
                    what: what.to_string(),
                    seconds: timeout.as_secs_f64(),
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the agent has reported each of `interfaces` enforcing after log offset
    /// `since`, and returns the last such event of each, in the order of `interfaces`.
    pub fn wait_enforcing(
        &mut self,
        interfaces: &[String],
        since: u64,
        timeout: Duration,
    ) -> Result<Vec<AgentEvent>, LabAgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            let said = events(&self.log_since(since)?);
            let event_of = |wanted: &String| {
                said.iter()
                    .rev()
                    .find(|event| {
                        event.interface_status()
                            == Some((wanted.as_str(), InterfaceStatus::Enforcing))
                    })
                    .cloned()
            };
            let found: Vec<Option<AgentEvent>> = interfaces.iter().map(event_of).collect();
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
                return Err(LabAgentError::Exited {
                    missing,
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabAgentError::Timeout {
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
    pub fn reload(&self) -> Result<(), LabAgentError> {
        self.signal(Signal::SIGHUP)
    }

    /// Waits until the agent reports a reload after log offset `since`: the policy of the
    /// config it read is in force when it says so. Returns that event; a rejected reload is
    /// an error that carries the agent's reasons.
    pub fn wait_reloaded(
        &mut self,
        since: u64,
        timeout: Duration,
    ) -> Result<AgentEvent, LabAgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            for event in events(&self.log_since(since)?) {
                match event {
                    AgentEvent::Reloaded { .. } => return Ok(event),
                    AgentEvent::ReloadRejected { rejection, .. } => {
                        let reasons = match rejection {
                            Rejection::InvalidConfig { errors } => errors,
                            Rejection::Failed { error } => error,
                        };
                        return Err(LabAgentError::Rejected(reasons));
                    }
                    _ => {}
                }
            }
            if !self.running() || Instant::now() >= deadline {
                return Err(LabAgentError::NoReload {
                    seconds: timeout.as_secs_f64(),
                    log: self.log.clone(),
                    tail: self.log_tail(15),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), LabAgentError> {
        let pid = i32::try_from(self.pid).unwrap_or(i32::MAX);
        kill(Pid::from_raw(pid), signal).map_err(|source| LabAgentError::Signal {
            pid: self.pid,
            source,
        })
    }

    /// Stops the agent: SIGTERM, then SIGKILL if it lingers. Its enforcement stays in place
    /// (pinned); [`crate::runtime::down`] removes that.
    pub fn stop(&mut self) -> Result<(), LabAgentError> {
        const GRACE: Duration = Duration::from_secs(5);
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            if self.signal_and_wait(signal, GRACE)? {
                return Ok(());
            }
        }
        Err(LabAgentError::WontStop {
            pid: self.pid,
            seconds: (GRACE * 2).as_secs_f64(),
        })
    }

    /// SIGKILL, as a crash would: the agent gets no chance to do anything.
    pub fn kill(&mut self) -> Result<(), LabAgentError> {
        const GRACE: Duration = Duration::from_secs(5);
        if self.signal_and_wait(Signal::SIGKILL, GRACE)? {
            return Ok(());
        }
        Err(LabAgentError::WontStop {
            pid: self.pid,
            seconds: GRACE.as_secs_f64(),
        })
    }

    /// Sends `signal` unless the agent is gone, and waits up to `grace` for it to go. Returns
    /// whether it is gone.
    fn signal_and_wait(&mut self, signal: Signal, grace: Duration) -> Result<bool, LabAgentError> {
        if !self.running() {
            return Ok(true);
        }
        match self.signal(signal) {
            // Gone between the check and the signal.
            Err(LabAgentError::Signal {
                source: nix::Error::ESRCH,
                ..
            }) => return Ok(true),
            other => other?,
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.running() {
                return Ok(true);
            }
            std::thread::sleep(POLL);
        }
        Ok(false)
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
    fn events_are_read_from_json_and_text_lines_and_log_records_are_skipped() {
        let log = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"loading"},"target":"sgwall"}
{"event":"enforcing","interface":"sgw-db1","instance":"db-1","attach":"port","hooks":["tc-ingress","tc-egress"]}
waiting for sgw-db2 (db-2): no such interface
something enforcing sgw-x
"#;
        assert_eq!(
            events(log),
            [
                AgentEvent::Enforcing {
                    interface: "sgw-db1".into(),
                    instance: "db-1".into(),
                    attach: "port".into(),
                    hooks: vec!["tc-ingress".into(), "tc-egress".into()],
                },
                AgentEvent::Waiting {
                    interface: "sgw-db2".into(),
                    instance: "db-2".into(),
                },
            ]
        );
    }

    #[test]
    fn log_tails_are_readable() {
        assert_eq!(
            readable(
                r#"{"timestamp":"t","level":"ERROR","fields":{"message":"SIGHUP: config rejected"}}"#
            ),
            "ERROR SIGHUP: config rejected"
        );
        assert_eq!(
            readable(r#"{"event":"waiting","interface":"a","instance":"b"}"#),
            "waiting for a (b): no such interface"
        );
        assert_eq!(readable("plain text"), "plain text");
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_the_agent() {
        // This test process is no `sgwall run`.
        assert!(!is_lab_agent(
            std::process::id(),
            Path::new("/sys/fs/bpf/x")
        ));
    }
}
