//! What validation produces: values that passed every check, each with the location that later
//! messages (lint, quotas across groups) point at.

use super::ids::CheckedId;
use crate::{
    config::{diagnostic::Location, document::Located},
    model::{
        Direction, Instance, LabClient, Member, NetworkAcl, Peer, PortRange, PrefixList, Protocol,
        Quotas, Subnet, Tags, Vpc, default_egress,
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
    pub prefix_lists: Vec<PrefixList>,
    pub subnets: Vec<Subnet>,
    /// The default ACL (N1) included when a subnet uses it and the config marks none.
    pub network_acls: Vec<NetworkAcl>,
    pub vpc: Vpc,
}

pub(crate) struct CheckedGroup {
    pub name: String,
    /// R9: the config's, or derived from the name.
    pub id: CheckedId,
    pub description: String,
    pub tags: Tags,
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

    /// What the rules in `direction` count for against the rules-per-interface quota (R7): one
    /// per peer, a prefix list its max entries (P1), the default egress included.
    pub fn effective_rule_count(&self, direction: Direction) -> usize {
        if direction == Direction::Egress && self.egress_is_default {
            return default_egress(&self.id.value)
                .iter()
                .map(|rule| rule.peers.len())
                .sum();
        }
        self.rules(direction)
            .iter()
            .map(|rule| rule.quota.total)
            .sum()
    }
}

/// What rules count for in R7's quotas: per address family (a group reference counts in both),
/// and in all (a group reference counts once). A prefix list counts its max entries (P1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QuotaCount {
    pub ipv4: usize,
    pub ipv6: usize,
    pub total: usize,
}

impl QuotaCount {
    pub fn add(&mut self, other: QuotaCount) {
        self.ipv4 += other.ipv4;
        self.ipv6 += other.ipv6;
        self.total += other.total;
    }
}

/// A valid rule with the location of each peer; `index` is its position in the file.
pub(crate) struct CheckedRule {
    pub index: usize,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peers: Vec<Located<Peer>>,
    /// One per peer (R9).
    pub ids: Vec<CheckedId>,
    pub tags: Tags,
    pub description: String,
    /// What the peers count for in R7's quotas.
    pub quota: QuotaCount,
}

pub(crate) struct CheckedInstance {
    pub instance: Instance,
    /// `instance.id` and where it came from.
    pub id: CheckedId,
    pub security_groups_at: Location,
    pub addresses_at: Location,
}
