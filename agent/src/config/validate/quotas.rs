//! R7: the quotas themselves, rules per group and family, groups per interface, and the
//! groups x rules limit of 1000 per interface.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{
    checked::{CheckedGroup, CheckedInstance, CheckedRule, QuotaCount},
    prefix_lists::KnownPrefixLists,
};
use crate::{
    config::{
        diagnostic::{Diagnostics, Location},
        document::{Located, RawQuotas},
        messages::ValidationError,
    },
    model::{AddressFamily, Direction, Peer, Quotas},
};

/// The hard limit on groups x rules per interface, and so on one interface's rules.
const MAX_RULES_PER_INTERFACE: u32 = 1000;
/// Groups per interface may be raised up to 16.
const MAX_GROUPS_PER_INTERFACE: i64 = 16;
/// Network ACL rules per direction may be raised up to 40 (N2).
const MAX_NETWORK_ACL_RULES: i64 = 40;

pub(super) fn check_quotas(raw: Option<&RawQuotas>, diagnostics: &mut Diagnostics) -> Quotas {
    let mut quotas = Quotas::default();
    let Some(raw) = raw else {
        return quotas;
    };
    let mut in_range = |quota: &'static str, value: &Located<i64>, max: i64| {
        if (1..=max).contains(&value.value) {
            true
        } else {
            diagnostics.error(
                &value.at,
                ValidationError::QuotaOutOfRange {
                    quota,
                    min: 1,
                    max,
                    value: value.value,
                },
            );
            false
        }
    };
    let groups = raw
        .groups_per_interface
        .as_ref()
        .filter(|groups| in_range("groups_per_interface", groups, MAX_GROUPS_PER_INTERFACE));
    let rules = raw
        .rules_per_group
        .as_ref()
        .filter(|rules| in_range("rules_per_group", rules, i64::from(MAX_RULES_PER_INTERFACE)));
    let acl_rules = raw
        .network_acl_rules
        .as_ref()
        .filter(|rules| in_range("network_acl_rules", rules, MAX_NETWORK_ACL_RULES));
    if let Some(acl_rules) = acl_rules {
        quotas.network_acl_rules =
            u32::try_from(acl_rules.value).unwrap_or(quotas.network_acl_rules);
    }
    // In range, so the conversions cannot fail; a failure would only keep the default.
    if let Some(groups) = groups {
        quotas.groups_per_interface =
            u32::try_from(groups.value).unwrap_or(quotas.groups_per_interface);
    }
    if let Some(rules) = rules {
        quotas.rules_per_group = u32::try_from(rules.value).unwrap_or(quotas.rules_per_group);
    }
    let product = i64::from(quotas.groups_per_interface) * i64::from(quotas.rules_per_group);
    if product > i64::from(MAX_RULES_PER_INTERFACE) {
        // Point at whichever quota was written; the later one if both were.
        let at = rules.or(groups).map(|value| value.at.clone());
        if let Some(at) = at {
            diagnostics.error(
                &at,
                ValidationError::QuotaProductTooLarge {
                    groups: i64::from(quotas.groups_per_interface),
                    rules: i64::from(quotas.rules_per_group),
                    product,
                },
            );
        }
    }
    quotas
}

/// What one peer counts for: a CIDR one rule in its family, a group reference one rule in each
/// family, a prefix list its max entries in its family (P1).
pub(super) fn peer_quota(peer: &Peer, prefix_lists: &KnownPrefixLists) -> QuotaCount {
    let one_in = |family: Option<AddressFamily>, weight: usize| QuotaCount {
        ipv4: if family != Some(AddressFamily::V6) {
            weight
        } else {
            0
        },
        ipv6: if family != Some(AddressFamily::V4) {
            weight
        } else {
            0
        },
        total: weight,
    };
    match peer {
        Peer::Cidr(IpNet::V4(_)) => one_in(Some(AddressFamily::V4), 1),
        Peer::Cidr(IpNet::V6(_)) => one_in(Some(AddressFamily::V6), 1),
        Peer::Group(_) => one_in(None, 1),
        Peer::PrefixList(name) => match prefix_lists.facts(name) {
            Some(facts) => one_in(facts.family, facts.weight),
            None => one_in(None, 1),
        },
    }
}

/// The rules of one group and direction, per address family.
pub(super) fn check_group_rules(
    rules: &[CheckedRule],
    at: &Location,
    group: &str,
    direction: Direction,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) {
    let mut count = QuotaCount::default();
    for rule in rules {
        count.add(rule.quota);
    }
    for (family, count) in [("IPv4", count.ipv4), ("IPv6", count.ipv6)] {
        if count > quotas.rules_per_group as usize {
            diagnostics.error(
                at,
                ValidationError::GroupRulesOverQuota {
                    group: group.to_string(),
                    direction,
                    family,
                    count,
                    quota: quotas.rules_per_group,
                },
            );
        }
    }
}

/// Groups attached to one instance.
pub(super) fn check_attached_group_count(
    count: usize,
    at: &Location,
    instance: &str,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) {
    if count > quotas.groups_per_interface as usize {
        diagnostics.error(
            at,
            ValidationError::InstanceGroupsOverQuota {
                instance: instance.to_string(),
                count,
                quota: quotas.groups_per_interface,
            },
        );
    }
}

/// All effective rules of an interface's groups, per direction, within 1000 (the datapath's
/// rule bitmap holds no more).
pub(super) fn check_interface_rule_totals(
    instances: &[CheckedInstance],
    groups: &[CheckedGroup],
    diagnostics: &mut Diagnostics,
) {
    let by_name: HashMap<&str, &CheckedGroup> = groups
        .iter()
        .map(|group| (group.name.as_str(), group))
        .collect();
    for checked in instances {
        for direction in Direction::BOTH {
            let count: usize = checked
                .instance
                .security_groups
                .iter()
                .filter_map(|name| by_name.get(name.as_str()))
                .map(|group| group.effective_rule_count(direction))
                .sum();
            if count > MAX_RULES_PER_INTERFACE as usize {
                diagnostics.error(
                    &checked.security_groups_at,
                    ValidationError::InstanceRulesOverQuota {
                        instance: checked.instance.name.clone(),
                        direction,
                        count,
                    },
                );
            }
        }
    }
}
