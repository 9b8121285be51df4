//! Security groups and their rules: each rule's protocol, selector and peers, then what holds
//! across the rules of one group and direction (no duplicate, the R7 quota).

use super::{
    addresses::check_cidr,
    checked::{CheckedGroup, CheckedRule, QuotaCount},
    first_seen::FirstSeen,
    names::check_description,
    prefix_lists::KnownPrefixLists,
    quotas,
    references::KnownGroups,
    selector::{check_protocol, check_selector},
};
use crate::{
    config::{
        diagnostic::{Diagnostics, Location},
        document::{Located, RawGroup, RawRule, RawRules},
        messages::{RuleName, ValidationError, rule_text},
    },
    model::{AddressFamily, Direction, Peer, Protocol, Quotas},
};

/// What rules may reference: groups (G5) and prefix lists (P1).
pub(super) struct Known<'a> {
    pub groups: &'a KnownGroups,
    pub prefix_lists: &'a KnownPrefixLists,
}

pub(super) fn check_group(
    raw: &RawGroup,
    known: &Known,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedGroup> {
    let group_name = raw
        .name
        .as_ref()
        .map_or_else(|| raw.at.field.clone(), |name| name.value.clone());
    if let Some(description) = &raw.description {
        check_description(description, diagnostics);
    }
    let mut rules_of =
        |rules, direction| check_rules(rules, &group_name, direction, known, quotas, diagnostics);
    let ingress = rules_of(&raw.ingress, Direction::Ingress);
    let egress = raw
        .egress
        .as_ref()
        .map(|rules| rules_of(rules, Direction::Egress));
    Some(CheckedGroup {
        name: raw.name.as_ref()?.value.clone(),
        description: raw
            .description
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default(),
        ingress,
        egress_is_default: egress.is_none(),
        egress: egress.unwrap_or_default(),
    })
}

/// The rules of one group and direction: each rule, then duplicates and the R7 quota.
fn check_rules(
    raw: &RawRules,
    group: &str,
    direction: Direction,
    known: &Known,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> Vec<CheckedRule> {
    let rules: Vec<CheckedRule> = raw
        .rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let name = RuleName {
                group: group.to_string(),
                direction,
                index,
            };
            check_rule(rule, name, known, diagnostics)
        })
        .collect();

    let mut first_seen = FirstSeen::default();
    for rule in &rules {
        for peer in &rule.peers {
            let key = (rule.protocol, rule.ports, &peer.value);
            first_seen.report_again(key, &peer.at, diagnostics, |first| {
                ValidationError::DuplicateRule {
                    rule: rule_text(rule.protocol, rule.ports, &peer.value, direction),
                    first,
                }
            });
        }
    }

    if let Some(at) = &raw.at {
        quotas::check_group_rules(&rules, at, group, direction, quotas, diagnostics);
    }
    rules
}

fn check_rule(
    raw: &RawRule,
    name: RuleName,
    known: &Known,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedRule> {
    diagnostics.unless_errors(|diagnostics| {
        let protocol = raw
            .service
            .protocol
            .as_ref()
            .and_then(|protocol| check_protocol(protocol, diagnostics));
        let ports =
            protocol.and_then(|protocol| check_selector(&raw.service, protocol, diagnostics));

        let mut peers = Vec::new();
        for cidr in &raw.cidr {
            let Some(net) = check_cidr(cidr, diagnostics) else {
                continue;
            };
            if let Some(protocol) = protocol {
                check_icmp_family(
                    protocol,
                    &Peer::Cidr(net),
                    AddressFamily::of(&net),
                    &cidr.at,
                    diagnostics,
                );
            }
            peers.push(Located {
                value: Peer::Cidr(net),
                at: cidr.at.clone(),
            });
        }
        peers.extend(
            raw.groups
                .iter()
                .filter_map(|group| known.groups.rule_peer(group, &name, diagnostics)),
        );
        for list in &raw.prefix_lists {
            let Some(peer) = known.prefix_lists.rule_peer(list, &name, diagnostics) else {
                continue;
            };
            let family = match &peer.value {
                Peer::PrefixList(name) => known.prefix_lists.facts(name).and_then(|f| f.family),
                _ => None,
            };
            if let (Some(protocol), Some(family)) = (protocol, family) {
                check_icmp_family(protocol, &peer.value, family, &peer.at, diagnostics);
            }
            peers.push(peer);
        }
        let mut quota = QuotaCount::default();
        for peer in &peers {
            quota.add(quotas::peer_quota(&peer.value, known.prefix_lists));
        }
        if !raw.peers_written {
            diagnostics.error(&raw.at, ValidationError::NoPeer);
        }
        if let Some(description) = &raw.description {
            check_description(description, diagnostics);
        }

        Some(CheckedRule {
            quota,
            index: name.index,
            protocol: protocol?,
            ports: ports?,
            peers,
            description: raw
                .description
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
        })
    })
}

/// R5: icmp never matches an IPv6 peer and icmpv6 never an IPv4 one (a CIDR, a prefix list of
/// that family, or a network ACL entry's CIDR).
pub(super) fn check_icmp_family(
    protocol: Protocol,
    peer: &Peer,
    family: AddressFamily,
    at: &Location,
    diagnostics: &mut Diagnostics,
) {
    let mismatch = match (protocol, family) {
        (Protocol::Icmp, AddressFamily::V6) => Some(("icmp", "IPv6", "icmpv6")),
        (Protocol::Icmpv6, AddressFamily::V4) => Some(("icmpv6", "IPv4", "icmp")),
        _ => None,
    };
    if let Some((protocol, family, instead)) = mismatch {
        diagnostics.error(
            at,
            ValidationError::IcmpFamilyMismatch {
                protocol,
                family,
                cidr: peer.to_string(),
                instead,
            },
        );
    }
}
