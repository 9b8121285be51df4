//! Where the policy the API edits lives. A store reads the policy as a validated
//! [`Config`] and commits [`Change`]s to it atomically: all of a request's changes or none,
//! checked by the same validator as `sgwall check` before anything is written, and serialised
//! with every other write. The API decides what to change from the policy it read inside the
//! same transaction, so two writers never both act on a policy that one of them changed.
//!
//! `file`: the TOML config that `sgwall run` follows, edited in place (`document`).

pub mod document;
pub mod file;

use std::net::IpAddr;

use super::error::ApiError;
use crate::{
    config::{ConfigError, Diagnostic, ProblemKind},
    model::{Config, Direction, Peer, PortRange, Protocol, Rule, Tags},
};

/// One edit of the policy, naming objects by their ids (R9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    CreateGroup(NewGroup),
    DeleteGroup {
        id: String,
    },
    /// Appends rules to a group's `direction`; a default egress (R2) is written out first.
    AddRules {
        group_id: String,
        direction: Direction,
        rules: Vec<NewRule>,
    },
    RemoveRules {
        group_id: String,
        direction: Direction,
        rule_ids: Vec<String>,
    },
    /// Gives the rule `rule.id` new content, keeping its id.
    ReplaceRule {
        group_id: String,
        direction: Direction,
        rule: NewRule,
    },
    /// The complete tags of a group, rule, interface or the VPC.
    SetTags {
        id: String,
        tags: Tags,
    },
    /// An interface's groups, by name, in attachment order.
    SetInterfaceGroups {
        id: String,
        groups: Vec<String>,
    },
    SetSourceDestCheck {
        id: String,
        enabled: bool,
    },
    CreateInterface(NewInterface),
    DeleteInterface {
        id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: Tags,
}

/// One rule of one peer, as AWS has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRule {
    pub id: String,
    pub protocol: Protocol,
    pub ports: PortRange,
    /// A group peer by name, as the config writes it.
    pub peer: Peer,
    pub description: String,
    pub tags: Tags,
}

impl NewRule {
    /// The rule as the model has it: one peer, its id.
    pub fn to_rule(&self) -> Rule {
        Rule {
            protocol: self.protocol,
            ports: self.ports,
            peers: vec![self.peer.clone()],
            description: self.description.clone(),
            ids: vec![self.id.clone()],
            tags: self.tags.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInterface {
    pub id: String,
    pub name: String,
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// By name.
    pub groups: Vec<String>,
    pub source_dest_check: bool,
    pub tags: Tags,
}

/// What the API asks of a store.
pub trait PolicyStore: Send + Sync {
    /// The policy as it is now.
    fn read(&self) -> Result<Config, ApiError>;

    /// Reads the policy, gives it to `decide`, and commits the changes it returns: validated,
    /// atomically, serialised with every other write. `decide` may run more than once (a store
    /// that detects a concurrent write retries on the new policy); an error from it changes
    /// nothing and is the answer.
    fn transact(
        &self,
        decide: &mut dyn FnMut(&Config) -> Result<Vec<Change>, ApiError>,
    ) -> Result<(), ApiError>;

    /// Where the policy is, for the log.
    fn describe(&self) -> String;
}

/// The EC2 error for a policy the validator refused after the changes: quotas (R7) and
/// duplicates by their AWS codes, anything else as an invalid value with the validator's
/// message.
pub fn rejection(error: ConfigError) -> ApiError {
    let errors = match error {
        ConfigError::Invalid { errors, .. } => errors,
        ConfigError::Read { .. } => return ApiError::unavailable(error.to_string()),
    };
    let message = |d: &Diagnostic| format!("{}: {}", d.field, d.message);
    let priority = [
        ProblemKind::GroupsPerInterfaceQuota,
        ProblemKind::RulesPerGroupQuota,
        ProblemKind::RulesPerInterfaceQuota,
        ProblemKind::DuplicateRule,
        ProblemKind::DuplicateGroupName,
    ];
    let first = priority
        .iter()
        .find_map(|kind| errors.iter().find(|d| d.kind == *kind))
        .or_else(|| errors.first());
    let Some(first) = first else {
        return ApiError::internal("the validator refused the change without saying why");
    };
    match first.kind {
        ProblemKind::GroupsPerInterfaceQuota => {
            ApiError::groups_per_interface_limit_exceeded(&message(first))
        }
        ProblemKind::RulesPerGroupQuota | ProblemKind::RulesPerInterfaceQuota => {
            ApiError::rules_limit_exceeded(&message(first))
        }
        ProblemKind::DuplicateRule => ApiError::permission_duplicate(&message(first)),
        _ => ApiError::invalid_parameter(message(first)),
    }
}

/// A store that cannot read its policy answers every request with this.
pub fn unreadable(what: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("the policy in {what} cannot be used: {error}"))
}
