//! What validation produces: values that passed every check, each with the location that later
//! messages (lint, quotas across groups) point at.

use crate::{
    config::{diagnostic::Location, document::Located},
    model::{
        Direction, Instance, LabClient, Member, Peer, PortRange, Protocol, Quotas, default_egress,
    },
};

/// What validation produced. Complete only when no error was reported.
pub(crate) struct Checked {
    pub quotas: Quotas,
    pub groups: Vec<CheckedGroup>,
    pub instances: Vec<CheckedInstance>,
    pub members: Vec<Member>,
    pub lab_clients: Vec<LabClient>,
    pub lab_dhcp: bool,
}

pub(crate) struct CheckedGroup {
    pub name: String,
    pub description: String,
    pub ingress: Vec<CheckedRule>,
    /// Empty when `egress_is_default`: the default rules are materialised in the model only.
    pub egress: Vec<CheckedRule>,
    pub egress_is_default: bool,
}

impl CheckedGroup {
    pub fn rules(&self, direction: Direction) -> &[CheckedRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Effective rules (one per peer) in `direction`, the default egress included.
    pub fn effective_rule_count(&self, direction: Direction) -> usize {
        if direction == Direction::Egress && self.egress_is_default {
            return default_egress().iter().map(|rule| rule.peers.len()).sum();
        }
        self.rules(direction)
            .iter()
            .map(|rule| rule.peers.len())
            .sum()
    }
}

/// A valid rule with the location of each peer; `index` is its position in the file.
pub(crate) struct CheckedRule {
    pub index: usize,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peers: Vec<Located<Peer>>,
    pub description: String,
}

pub(crate) struct CheckedInstance {
    pub instance: Instance,
    pub security_groups_at: Location,
}
