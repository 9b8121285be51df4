//! What `sgwall run` says on stdout: one [`AgentEvent`] a line, when an interface's
//! enforcement changes and when a reload is done. Scripts, the lab and the tests wait on these,
//! so they are typed: the text form (the default, `--log-format text`) is stable and parses
//! back ([`AgentEvent::from_str`]); with `--log-format json` each event is one JSON object
//! with an `event` field. Details (warnings, config errors) go to the log on stderr.

use std::{fmt, io::Write, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::pins::state::{InterfaceState, InterfaceStatus};

/// How `sgwall run` writes its events (stdout) and its log (stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The config compiles to what is in force.
    Unchanged,
    /// Only memberships or prefix list entries changed: applied as deltas, no generation flip
    /// (G3, P1).
    MembershipDelta {
        members_written: usize,
        /// Prefix list trie entries written or deleted (P1).
        #[serde(default)]
        prefix_list_entries_written: usize,
    },
    /// Rules or interfaces changed: a new policy generation.
    Flipped,
}

/// Why a reload changed nothing: the previous generation stays in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    /// The config failed validation. `errors` is every diagnostic; the text form leaves them
    /// out (they span lines; the log has them).
    InvalidConfig { errors: String },
    /// Compiling or applying failed.
    Failed { error: String },
}

/// One thing the agent reports on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// `enforcing <interface> (<instance>): <attach> via <hook>,<hook>`
    Enforcing {
        interface: String,
        instance: String,
        attach: String,
        hooks: Vec<String>,
    },
    /// `waiting for <interface> (<instance>): no such interface`
    Waiting { interface: String, instance: String },
    /// `failed <interface> (<instance>): <detail>`
    Failed {
        interface: String,
        instance: String,
        detail: String,
    },
    /// `reloaded generation <N>: unchanged | membership delta, <K> addresses | new policy
    /// generation`: the policy of the config read is in force.
    Reloaded {
        generation: u64,
        outcome: ReloadOutcome,
    },
    /// `reload rejected: invalid config, generation <N> stays in force`, or `reload rejected:
    /// <error>; generation <N> stays in force`.
    ReloadRejected {
        generation: u64,
        rejection: Rejection,
    },
}

impl AgentEvent {
    /// The event that reports an interface's state.
    pub fn interface(state: &InterfaceState) -> Self {
        let (interface, instance) = (state.interface.clone(), state.instance.clone());
        match state.status {
            InterfaceStatus::Enforcing => Self::Enforcing {
                interface,
                instance,
                attach: state.attach.clone(),
                hooks: state.hooks.clone(),
            },
            InterfaceStatus::Waiting => Self::Waiting {
                interface,
                instance,
            },
            InterfaceStatus::Failed => Self::Failed {
                interface,
                instance,
                detail: state.detail.clone().unwrap_or_default(),
            },
        }
    }

    /// The interface an interface event is about, with the status it reports.
    pub fn interface_status(&self) -> Option<(&str, InterfaceStatus)> {
        match self {
            Self::Enforcing { interface, .. } => Some((interface, InterfaceStatus::Enforcing)),
            Self::Waiting { interface, .. } => Some((interface, InterfaceStatus::Waiting)),
            Self::Failed { interface, .. } => Some((interface, InterfaceStatus::Failed)),
            Self::Reloaded { .. } | Self::ReloadRejected { .. } => None,
        }
    }

    /// The event a line of `sgwall run` output holds, in either format; `None` for anything
    /// else (log lines).
    pub fn from_line(line: &str) -> Option<Self> {
        let line = line.trim_end();
        if line.starts_with('{') {
            serde_json::from_str(line).ok()
        } else {
            line.parse().ok()
        }
    }

    /// The line this event is written as.
    pub fn line(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Text => self.to_string(),
            // A plain enum of strings and numbers: serialising cannot fail.
            LogFormat::Json => serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

const NO_SUCH_INTERFACE: &str = "no such interface";
const STAYS_IN_FORCE: &str = " stays in force";

impl fmt::Display for AgentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enforcing {
                interface,
                instance,
                attach,
                hooks,
            } => write!(
                f,
                "enforcing {interface} ({instance}): {attach} via {}",
                hooks.join(",")
            ),
            Self::Waiting {
                interface,
                instance,
            } => write!(
                f,
                "waiting for {interface} ({instance}): {NO_SUCH_INTERFACE}"
            ),
            Self::Failed {
                interface,
                instance,
                detail,
            } => write!(f, "failed {interface} ({instance}): {detail}"),
            Self::Reloaded {
                generation,
                outcome,
            } => {
                write!(f, "reloaded generation {generation}: ")?;
                match outcome {
                    ReloadOutcome::Unchanged => write!(f, "unchanged"),
                    ReloadOutcome::MembershipDelta {
                        members_written,
                        prefix_list_entries_written,
                    } => {
                        write!(f, "membership delta, {members_written} addresses")?;
                        if *prefix_list_entries_written > 0 {
                            write!(f, ", {prefix_list_entries_written} prefix list entries")?;
                        }
                        Ok(())
                    }
                    ReloadOutcome::Flipped => write!(f, "new policy generation"),
                }
            }
            Self::ReloadRejected {
                generation,
                rejection: Rejection::InvalidConfig { .. },
            } => write!(
                f,
                "reload rejected: invalid config, generation {generation}{STAYS_IN_FORCE}"
            ),
            Self::ReloadRejected {
                generation,
                rejection: Rejection::Failed { error },
            } => write!(
                f,
                "reload rejected: {error}; generation {generation}{STAYS_IN_FORCE}"
            ),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an sgwall agent event: {0:?}")]
pub struct NotAnEvent(pub String);

/// `<interface> (<instance>): <rest>`: interface names hold no spaces; the instance ends at the
/// first `): `.
fn interface_and_instance(text: &str) -> Option<(String, String, &str)> {
    let (interface, rest) = text.split_once(" (")?;
    let (instance, rest) = rest.split_once("): ")?;
    (!interface.is_empty() && !interface.contains(' '))
        .then(|| (interface.to_string(), instance.to_string(), rest))
}

fn parse_line(line: &str) -> Option<AgentEvent> {
    if let Some(rest) = line.strip_prefix("enforcing ") {
        let (interface, instance, rest) = interface_and_instance(rest)?;
        let (attach, hooks) = rest.split_once(" via ")?;
        return Some(AgentEvent::Enforcing {
            interface,
            instance,
            attach: attach.to_string(),
            hooks: hooks.split(',').map(str::to_string).collect(),
        });
    }
    if let Some(rest) = line.strip_prefix("waiting for ") {
        let (interface, instance, rest) = interface_and_instance(rest)?;
        return (rest == NO_SUCH_INTERFACE).then_some(AgentEvent::Waiting {
            interface,
            instance,
        });
    }
    if let Some(rest) = line.strip_prefix("failed ") {
        let (interface, instance, detail) = interface_and_instance(rest)?;
        return Some(AgentEvent::Failed {
            interface,
            instance,
            detail: detail.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("reloaded generation ") {
        let (generation, what) = rest.split_once(": ")?;
        let outcome = match what {
            "unchanged" => ReloadOutcome::Unchanged,
            "new policy generation" => ReloadOutcome::Flipped,
            other => {
                let counts = other.strip_prefix("membership delta, ")?;
                let (members, entries) = match counts.split_once(" addresses, ") {
                    Some((members, entries)) => (
                        members,
                        entries.strip_suffix(" prefix list entries")?.parse().ok()?,
                    ),
                    None => (counts.strip_suffix(" addresses")?, 0),
                };
                ReloadOutcome::MembershipDelta {
                    members_written: members.parse().ok()?,
                    prefix_list_entries_written: entries,
                }
            }
        };
        return Some(AgentEvent::Reloaded {
            generation: generation.parse().ok()?,
            outcome,
        });
    }
    let rest = line
        .strip_prefix("reload rejected: ")?
        .strip_suffix(STAYS_IN_FORCE)?;
    if let Some(generation) = rest.strip_prefix("invalid config, generation ") {
        return Some(AgentEvent::ReloadRejected {
            generation: generation.parse().ok()?,
            rejection: Rejection::InvalidConfig {
                errors: String::new(),
            },
        });
    }
    let (error, generation) = rest.rsplit_once("; generation ")?;
    Some(AgentEvent::ReloadRejected {
        generation: generation.parse().ok()?,
        rejection: Rejection::Failed {
            error: error.to_string(),
        },
    })
}

impl FromStr for AgentEvent {
    type Err = NotAnEvent;

    /// Parses the text form.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        parse_line(line).ok_or_else(|| NotAnEvent(line.to_string()))
    }
}

/// Where the agent's events go: stdout, in the chosen format, flushed per event so that a
/// reader waiting on a line sees it at once.
pub struct Console {
    format: LogFormat,
    out: Box<dyn Write>,
}

impl Console {
    pub fn stdout(format: LogFormat) -> Self {
        Self::new(format, Box::new(std::io::stdout()))
    }

    pub fn new(format: LogFormat, out: Box<dyn Write>) -> Self {
        Self { format, out }
    }

    pub fn emit(&mut self, event: &AgentEvent) -> std::io::Result<()> {
        writeln!(self.out, "{}", event.line(self.format))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<AgentEvent> {
        vec![
            AgentEvent::Enforcing {
                interface: "sgw-web1".into(),
                instance: "web-1".into(),
                attach: "port".into(),
                hooks: vec!["tc-ingress".into(), "tc-egress".into()],
            },
            AgentEvent::Waiting {
                interface: "sgw-app2".into(),
                instance: "app 2 (new)".into(),
            },
            AgentEvent::Failed {
                interface: "eth0".into(),
                instance: "host".into(),
                detail: "attaching xdp to eth0: operation not supported".into(),
            },
            AgentEvent::Reloaded {
                generation: 7,
                outcome: ReloadOutcome::Unchanged,
            },
            AgentEvent::Reloaded {
                generation: 7,
                outcome: ReloadOutcome::MembershipDelta {
                    members_written: 3,
                    prefix_list_entries_written: 0,
                },
            },
            AgentEvent::Reloaded {
                generation: 7,
                outcome: ReloadOutcome::MembershipDelta {
                    members_written: 0,
                    prefix_list_entries_written: 2,
                },
            },
            AgentEvent::Reloaded {
                generation: 8,
                outcome: ReloadOutcome::Flipped,
            },
            AgentEvent::ReloadRejected {
                generation: 8,
                rejection: Rejection::InvalidConfig {
                    errors: String::new(),
                },
            },
            AgentEvent::ReloadRejected {
                generation: 8,
                rejection: Rejection::Failed {
                    error: "SGW_CIDRS is full (10 entries); generation counts".into(),
                },
            },
        ]
    }

    #[test]
    fn the_text_lines_stay_as_scripts_know_them() {
        let lines: Vec<String> = every_kind().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "enforcing sgw-web1 (web-1): port via tc-ingress,tc-egress",
                "waiting for sgw-app2 (app 2 (new)): no such interface",
                "failed eth0 (host): attaching xdp to eth0: operation not supported",
                "reloaded generation 7: unchanged",
                "reloaded generation 7: membership delta, 3 addresses",
                "reloaded generation 7: membership delta, 0 addresses, 2 prefix list entries",
                "reloaded generation 8: new policy generation",
                "reload rejected: invalid config, generation 8 stays in force",
                "reload rejected: SGW_CIDRS is full (10 entries); generation counts; generation 8 stays in force",
            ]
        );
    }

    #[test]
    fn every_event_parses_back_from_text_and_from_json() {
        for event in every_kind() {
            assert_eq!(
                AgentEvent::from_line(&event.line(LogFormat::Text)),
                Some(event.clone())
            );
            assert_eq!(
                AgentEvent::from_line(&event.line(LogFormat::Json)),
                Some(event.clone())
            );
        }
    }

    #[test]
    fn json_events_name_their_kind_and_keep_config_errors() {
        let event = AgentEvent::ReloadRejected {
            generation: 2,
            rejection: Rejection::InvalidConfig {
                errors: "c.toml:3:9: error: ports".into(),
            },
        };
        let json: serde_json::Value = serde_json::from_str(&event.line(LogFormat::Json)).unwrap();
        assert_eq!(json["event"], "reload_rejected");
        assert_eq!(json["rejection"]["kind"], "invalid_config");
        assert_eq!(json["rejection"]["errors"], "c.toml:3:9: error: ports");
        assert_eq!(
            event.to_string(),
            "reload rejected: invalid config, generation 2 stays in force"
        );
    }

    #[test]
    fn log_lines_are_not_events() {
        for line in [
            "2026-01-01T00:00:00Z  INFO sgwall::runtime: enforcing x with pins under /y",
            "something enforcing sgw-x",
            "enforcing nothing",
            "reloaded generation x: unchanged",
            r#"{"timestamp":"2026","level":"INFO","fields":{"message":"enforcing a (b): port via x"}}"#,
        ] {
            assert_eq!(AgentEvent::from_line(line), None, "{line}");
        }
    }
}
