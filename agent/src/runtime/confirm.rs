//! Commit-confirmed for the host's own NIC (`sgwall run --confirm SECONDS`): with
//! `attach = "host"` one wrong rule locks the operator out, so a reload that changes the rules
//! of a host attachment is applied on probation. Unless `sgwall confirm` answers within the
//! time given, the agent puts the last confirmed policy back by itself, as network operating
//! systems' `commit confirmed` does. Both the change and the rollback are ordinary generation
//! flips, so no packet is ever judged by half of either, and nothing the policy in force denies
//! is admitted while they happen (H4).

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    model::{AttachMode, Config, Direction, effective_rules},
    pins::{Paths, state},
};

/// A policy on probation: what to put back, and when.
pub struct Pending {
    pub rollback_to: Config,
    pub deadline: Instant,
}

/// Whether going from `old` to `new` changes what a host attachment admits: an instance with
/// `attach = "host"` appears, goes, or has other settings or effective rules.
pub fn host_rules_change(old: &Config, new: &Config) -> bool {
    let host_policy = |config: &Config| {
        config
            .instances
            .iter()
            .filter(|i| i.attach == AttachMode::Host)
            .map(|i| {
                (
                    i.clone(),
                    effective_rules(config, i, Direction::Ingress),
                    effective_rules(config, i, Direction::Egress),
                )
            })
            .collect::<Vec<_>>()
    };
    host_policy(old) != host_policy(new)
}

/// What `sgwall status` and `sgwall confirm` see of a pending change.
pub fn record(generation: u64, within: Duration) -> state::PendingConfirmation {
    let deadline = SystemTime::now() + within;
    state::PendingConfirmation {
        generation,
        deadline: deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// The generation `sgwall confirm` confirmed, if it asked since the agent last looked; the
/// request is consumed.
pub fn take_request(paths: &Paths) -> Option<u64> {
    let path = paths.confirm_file();
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    text.trim().parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(
        "no change awaits confirmation under {0} (the agent runs without --confirm, or nothing changed the host NIC's rules)"
    )]
    NothingPending(std::path::PathBuf),
    #[error("asking the agent to confirm ({path}): {source}")]
    Request {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the agent did not confirm generation {0} in time: is it running? It rolls back at its deadline"
    )]
    NotConfirmed(u64),
}

/// `sgwall confirm`: asks the agent to keep the pending policy and waits until it has.
pub fn confirm(pin_root: &Path) -> Result<u64, ConfirmError> {
    let paths = Paths::new(pin_root);
    let pending = state::read(&paths.state_file())?
        .pending_confirmation
        .ok_or_else(|| ConfirmError::NothingPending(pin_root.to_path_buf()))?;
    let path = paths.confirm_file();
    std::fs::write(&path, format!("{}\n", pending.generation))
        .map_err(|source| ConfirmError::Request { path, source })?;
    // The agent looks every tick (500 ms).
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let state = state::read(&paths.state_file())?;
        if state.pending_confirmation.is_none() {
            return Ok(pending.generation);
        }
    }
    Err(ConfirmError::NotConfirmed(pending.generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16, attach: &str) -> Config {
        let text = format!(
            r#"
[[security_group]]
name = "ssh"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{port}"
  cidr = ["10.0.0.0/8"]
[[instance]]
name = "host"
interface = "eth0"
attach = "{attach}"
addresses = ["10.0.0.1"]
security_groups = ["ssh"]
"#
        );
        crate::config::load_str(&text, Path::new("host.toml"))
            .expect("valid")
            .config
    }

    #[test]
    fn only_changes_to_a_host_attachments_rules_need_confirmation() {
        assert!(host_rules_change(
            &config(22, "host"),
            &config(2222, "host")
        ));
        assert!(!host_rules_change(&config(22, "host"), &config(22, "host")));
        assert!(!host_rules_change(
            &config(22, "port"),
            &config(2222, "port")
        ));
        assert!(host_rules_change(&config(22, "port"), &config(22, "host")));
    }
}
