//! `state.json`: what the inspection commands need that the maps cannot tell, written by the
//! agent after every change (atomically: write then rename).
//!
//! The maps know rule *ids*; people want rules. The state maps each global rule id of the
//! generation in force to the rule it is, and keeps hit totals of retired generations by rule
//! identity, so `sgwall rules --hits` survives reloads and restarts.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    compile::CompiledPolicy,
    model::{AclAction, Config, Direction, Peer},
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    pub config: PathBuf,
    pub generation: u64,
    /// Seconds since the epoch.
    pub started_at: u64,
    pub interfaces: Vec<InterfaceState>,
    pub rules: Vec<RuleState>,
    /// Hits of retired generations, by [`RuleState::identity`].
    pub hit_totals: BTreeMap<String, u64>,
    pub reloads: Reloads,
    pub netns: Option<String>,
    /// A change of the host NIC's rules on probation (`sgwall run --confirm`).
    #[serde(default)]
    pub pending_confirmation: Option<PendingConfirmation>,
}

/// A generation that is rolled back unless `sgwall confirm` answers by `deadline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingConfirmation {
    pub generation: u64,
    /// Seconds since the epoch.
    pub deadline: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloads {
    pub applied: u64,
    pub rejected: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceState {
    pub interface: String,
    pub instance: String,
    pub attach: String,
    pub hooks: Vec<String>,
    pub ifslot: u16,
    pub ifindex: Option<u32>,
    pub status: InterfaceStatus,
    pub detail: Option<String>,
}

/// Whether the agent enforces an interface of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceStatus {
    /// Its hooks run the agent's programs.
    Enforcing,
    /// The interface does not exist (yet): it is attached the moment it appears.
    Waiting,
    /// Attaching failed; `detail` says why.
    Failed,
}

impl InterfaceStatus {
    pub const ALL: [InterfaceStatus; 3] = [Self::Enforcing, Self::Waiting, Self::Failed];

    pub fn name(self) -> &'static str {
        match self {
            Self::Enforcing => "enforcing",
            Self::Waiting => "waiting",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for InterfaceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown interface status {0:?} (enforcing, waiting or failed)")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for InterfaceStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.name() == text)
            .ok_or_else(|| UnknownStatus(text.to_string()))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Global rule id in the generation in force (indexes the hit counters).
    pub id: u32,
    pub instance: String,
    pub interface: String,
    pub direction: Direction,
    /// Position in the interface's rules for this direction (what the evaluator reports).
    pub position: u16,
    pub group: String,
    pub rule_index: usize,
    /// The rule's `sgr-` id (R9); empty in a state written before ids existed.
    #[serde(default)]
    pub rule_id: String,
    pub protocol: String,
    pub ports: String,
    pub peer: String,
    /// Addresses the peer resolves to, for group peers.
    pub resolved_members: Option<usize>,
    pub description: String,
    /// Set for a network ACL entry (N2), whose hits share the rule counters: then `group` is
    /// `acl:NAME`, `rule_index` the entry's number, `position` its ACL bit, `peer` its CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_action: Option<AclAction>,
}

/// Headers of [`RuleState::columns`].
pub const RULE_COLUMNS: [&str; 8] = [
    "DIRECTION",
    "ID",
    "RULE",
    "RULE ID",
    "PROTOCOL",
    "PORTS",
    "PEER",
    "MEMBERS",
];

impl RuleState {
    /// The rule as table cells (see [`RULE_COLUMNS`]).
    pub fn columns(&self) -> Vec<String> {
        vec![
            self.direction.to_string(),
            self.position.to_string(),
            format!("{}#{}", self.group, self.rule_index),
            self.rule_id.clone(),
            self.protocol.clone(),
            self.ports.clone(),
            self.peer.clone(),
            self.resolved_members
                .map_or("-".to_string(), |n| n.to_string()),
        ]
    }

    /// Stable across reloads, restarts and edits of other rules: the rule's id (R9) on its
    /// interface.
    pub fn identity(&self) -> String {
        format!("{}|{}|{}", self.interface, self.direction, self.rule_id)
    }
}

/// The rule table of a compiled policy.
pub fn rule_table(config: &Config, policy: &CompiledPolicy) -> Vec<RuleState> {
    let mut rules = Vec::new();
    let member_counts = config.group_member_counts();
    for interface in &policy.interfaces {
        for direction in Direction::BOTH {
            let base = interface.config.rule_base[usize::from(direction.index())];
            for rule in interface.rules(direction) {
                let resolved_members = match &rule.peer {
                    Peer::Group(group) => {
                        Some(member_counts.get(group.as_str()).copied().unwrap_or(0))
                    }
                    Peer::PrefixList(list) => config.prefix_list(list).map(|l| l.entries.len()),
                    Peer::Cidr(_) => None,
                };
                rules.push(RuleState {
                    id: base + u32::from(rule.id),
                    instance: interface.instance.clone(),
                    interface: interface.interface.clone(),
                    direction,
                    position: rule.id,
                    group: rule.group.clone(),
                    rule_index: rule.rule_index,
                    rule_id: rule.rule_id.clone(),
                    protocol: rule.protocol.to_string(),
                    ports: rule.ports.to_string(),
                    peer: rule.peer.to_string(),
                    resolved_members,
                    description: rule.description.clone(),
                    acl_action: None,
                });
            }
        }
        if let Some(acl) = &interface.acl {
            for direction in Direction::BOTH {
                let base = interface.config.acl_rule_base[usize::from(direction.index())];
                for (index, entry) in acl.entries[usize::from(direction.index())]
                    .iter()
                    .enumerate()
                {
                    // Bit 0 is the own subnet (N4); the entries follow in number order.
                    let bit = index as u16 + 1;
                    rules.push(RuleState {
                        id: base + u32::from(bit),
                        instance: interface.instance.clone(),
                        interface: interface.interface.clone(),
                        direction,
                        position: bit,
                        group: format!("acl:{}", acl.acl),
                        rule_index: usize::from(entry.number),
                        // AWS gives network ACL entries no id of their own (R9 is for groups).
                        rule_id: String::new(),
                        protocol: entry.protocol.to_string(),
                        ports: entry.ports.to_string(),
                        peer: entry.cidr.to_string(),
                        resolved_members: None,
                        description: format!(
                            "{} (network ACL of subnet {})",
                            entry.action, acl.subnet
                        ),
                        acl_action: Some(entry.action),
                    });
                }
            }
        }
    }
    rules
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn read(path: &Path) -> Result<State, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub fn write(path: &Path, state: &State) -> Result<(), StateError> {
    let io_error = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let text = serde_json::to_string_pretty(state).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_statuses_print_and_parse_as_state_json_writes_them() {
        for status in InterfaceStatus::ALL {
            let text = status.to_string();
            assert_eq!(text.parse::<InterfaceStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{text}\"")
            );
        }
        assert_eq!(
            "enforced".parse::<InterfaceStatus>(),
            Err(UnknownStatus("enforced".into()))
        );
    }
}
