//! N1-N2: network ACLs (numbered entries per direction, the default ACL) and subnets (one CIDR
//! per family, no overlap, the ACL each uses), and which subnet each instance belongs to.

use std::{collections::BTreeSet, net::IpAddr};

use ipnet::IpNet;

use super::{
    addresses::check_cidr,
    checked::CheckedInstance,
    first_seen::FirstSeen,
    names::{check_id, check_names, derived_id},
    rules::check_icmp_family,
    selector::{check_protocol, check_selector},
};
use crate::{
    config::{
        diagnostic::{Diagnostics, Location},
        document::{Located, RawAclEntries, RawAclEntry, RawNetworkAcl, RawSubnet},
        messages::ValidationError,
    },
    model::{
        AclAction, AclEntry, AddressFamily, DEFAULT_ACL_NAME, Direction, NetworkAcl, Peer, Quotas,
        Subnet,
    },
};

/// N2: AWS numbers entries from 1 to 32766.
const MAX_RULE_NUMBER: i64 = 32_766;

/// The network ACLs that passed, and every name written (valid or not) so that a subnet naming
/// an ACL with other errors is not also told it is unknown.
pub(super) struct CheckedAcls {
    pub acls: Vec<NetworkAcl>,
    pub names: BTreeSet<String>,
    /// The name of the ACL written with `default = true`, if any.
    pub default: Option<String>,
}

pub(super) fn check_network_acls(
    raw: &[RawNetworkAcl],
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> CheckedAcls {
    let names = check_names(
        "network ACL",
        raw.iter().filter_map(|acl| acl.name.as_ref()),
        diagnostics,
    );
    let mut ids = FirstSeen::default();
    let mut default: Option<&Located<String>> = None;
    let mut acls = Vec::new();
    for acl in raw {
        let is_default = acl.default.as_ref().is_some_and(|flag| flag.value);
        if let (true, Some(flag), Some(name)) = (is_default, &acl.default, &acl.name) {
            match default {
                Some(first) => diagnostics.error(
                    &flag.at,
                    ValidationError::SecondDefaultAcl {
                        first: format!("\"{}\" ({})", first.value, diagnostics.describe(&first.at)),
                    },
                ),
                None => default = Some(name),
            }
        }
        if let Some(id) = &acl.id {
            check_id("network ACL", "acl", id, &mut ids, diagnostics);
        }
        let checked = diagnostics.unless_errors(|diagnostics| {
            let acl_name = acl.name.as_ref().map_or("", |name| name.value.as_str());
            let mut entries_of = |raw: &Option<RawAclEntries>, direction| match raw {
                Some(raw) => Some(check_entries(raw, acl_name, direction, quotas, diagnostics)),
                // N1: the default ACL allows everything; a new custom ACL denies everything.
                None if is_default => Some(NetworkAcl::default_entries()),
                None => Some(Vec::new()),
            };
            let ingress = entries_of(&acl.ingress, Direction::Ingress);
            let egress = entries_of(&acl.egress, Direction::Egress);
            let name = acl.name.as_ref()?.value.clone();
            Some(NetworkAcl {
                id: acl
                    .id
                    .as_ref()
                    .map_or_else(|| derived_id("acl", &name), |id| id.value.clone()),
                name,
                is_default,
                ingress: ingress?,
                egress: egress?,
            })
        });
        acls.extend(checked);
    }
    CheckedAcls {
        acls,
        names,
        default: default.map(|name| name.value.clone()),
    }
}

/// The entries of one direction, sorted by number: each valid, numbers unique, within quota.
fn check_entries(
    raw: &RawAclEntries,
    acl: &str,
    direction: Direction,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> Vec<AclEntry> {
    let mut numbers = FirstSeen::default();
    let mut entries: Vec<AclEntry> = raw
        .entries
        .iter()
        .filter_map(|entry| check_entry(entry, &mut numbers, diagnostics))
        .collect();
    if raw.entries.len() > quotas.network_acl_rules as usize {
        diagnostics.error(
            &raw.at,
            ValidationError::AclRulesOverQuota {
                acl: acl.to_string(),
                direction,
                count: raw.entries.len(),
                quota: quotas.network_acl_rules,
            },
        );
    }
    entries.sort_by_key(|entry| entry.number);
    entries
}

fn check_entry(
    raw: &RawAclEntry,
    numbers: &mut FirstSeen<u16>,
    diagnostics: &mut Diagnostics,
) -> Option<AclEntry> {
    diagnostics.unless_errors(|diagnostics| {
        let number = raw.number.as_ref().and_then(|number| {
            let valid = (1..=MAX_RULE_NUMBER)
                .contains(&number.value)
                .then(|| u16::try_from(number.value).ok())
                .flatten();
            match valid {
                Some(valid) => {
                    numbers.report_again(valid, &number.at, diagnostics, |first| {
                        ValidationError::DuplicateAclRuleNumber {
                            number: valid,
                            first,
                        }
                    });
                    Some(valid)
                }
                None => {
                    diagnostics.error(
                        &number.at,
                        ValidationError::AclRuleNumberOutOfRange {
                            value: number.value,
                        },
                    );
                    None
                }
            }
        });
        let action = raw
            .action
            .as_ref()
            .and_then(|action| match action.value.as_str() {
                "allow" => Some(AclAction::Allow),
                "deny" => Some(AclAction::Deny),
                _ => {
                    diagnostics.error(
                        &action.at,
                        ValidationError::UnknownAclAction {
                            value: action.value.clone(),
                        },
                    );
                    None
                }
            });
        let protocol = raw
            .service
            .protocol
            .as_ref()
            .and_then(|protocol| check_protocol(protocol, diagnostics));
        let ports =
            protocol.and_then(|protocol| check_selector(&raw.service, protocol, diagnostics));
        let cidr = raw.cidr.as_ref().and_then(|cidr| {
            let net = check_cidr(cidr, diagnostics)?;
            if let Some(protocol) = protocol {
                let peer = Peer::Cidr(net);
                check_icmp_family(
                    protocol,
                    &peer,
                    AddressFamily::of(&net),
                    &cidr.at,
                    diagnostics,
                );
            }
            Some(net)
        });
        Some(AclEntry {
            number: number?,
            action: action?,
            protocol: protocol?,
            ports: ports?,
            cidr: cidr?,
        })
    })
}

/// Subnets: a valid name, one CIDR per family, no overlap with another subnet, an ACL that
/// exists (or the default one).
pub(super) fn check_subnets(
    raw: &[RawSubnet],
    acls: &CheckedAcls,
    diagnostics: &mut Diagnostics,
) -> Vec<Subnet> {
    check_names(
        "subnet",
        raw.iter().filter_map(|subnet| subnet.name.as_ref()),
        diagnostics,
    );
    // Every CIDR seen so far, with its subnet's name, for the overlap check.
    let mut claimed: Vec<(IpNet, String)> = Vec::new();
    let mut subnets = Vec::new();
    for subnet in raw {
        let name = subnet
            .name
            .as_ref()
            .map_or_else(|| subnet.at.field.clone(), |name| name.value.clone());
        let checked = diagnostics.unless_errors(|diagnostics| {
            let cidrs = subnet
                .cidr
                .as_ref()
                .map(|cidrs| check_subnet_cidrs(cidrs, &name, &mut claimed, diagnostics));
            let network_acl = match &subnet.network_acl {
                Some(acl) if acls.names.contains(&acl.value) => Some(acl.value.clone()),
                Some(acl) => {
                    diagnostics.error(
                        &acl.at,
                        ValidationError::UnknownNetworkAcl {
                            subnet: name.clone(),
                            acl: acl.value.clone(),
                        },
                    );
                    None
                }
                None => default_acl_name(acls, &name, &subnet.at, diagnostics),
            };
            Some(Subnet {
                name: subnet.name.as_ref()?.value.clone(),
                cidrs: cidrs?,
                network_acl: network_acl?,
            })
        });
        subnets.extend(checked);
    }
    subnets
}

/// N1: the ACL a subnet that names none uses.
fn default_acl_name(
    acls: &CheckedAcls,
    subnet: &str,
    at: &Location,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    if let Some(default) = &acls.default {
        return Some(default.clone());
    }
    if acls.names.contains(DEFAULT_ACL_NAME) {
        diagnostics.error(
            at,
            ValidationError::DefaultAclNameTaken {
                subnet: subnet.to_string(),
                name: DEFAULT_ACL_NAME,
            },
        );
        return None;
    }
    Some(DEFAULT_ACL_NAME.to_string())
}

fn check_subnet_cidrs(
    raw: &Located<Vec<Located<String>>>,
    subnet: &str,
    claimed: &mut Vec<(IpNet, String)>,
    diagnostics: &mut Diagnostics,
) -> Vec<IpNet> {
    if raw.value.is_empty() {
        diagnostics.error(&raw.at, ValidationError::NoSubnetCidr);
    }
    let mut families: FirstSeen<AddressFamily> = FirstSeen::default();
    let mut cidrs = Vec::new();
    for text in &raw.value {
        let Some(net) = check_cidr(text, diagnostics) else {
            continue;
        };
        let family = AddressFamily::of(&net);
        families.report_again(family, &text.at, diagnostics, |first| {
            ValidationError::SubnetFamilyTwice { family, first }
        });
        if let Some((other, other_subnet)) = claimed
            .iter()
            .find(|(other, _)| other.contains(&net) || net.contains(other))
        {
            diagnostics.error(
                &text.at,
                ValidationError::SubnetsOverlap {
                    cidr: net.to_string(),
                    other: other.to_string(),
                    subnet: other_subnet.clone(),
                },
            );
        }
        claimed.push((net, subnet.to_string()));
        cidrs.push(net);
    }
    cidrs
}

/// N1: an instance belongs to the subnet its addresses fall in, so they may not fall in two.
pub(super) fn check_instance_subnets(
    instances: &[CheckedInstance],
    subnets: &[Subnet],
    diagnostics: &mut Diagnostics,
) {
    for checked in instances {
        let mut first: Option<(&Subnet, IpAddr)> = None;
        for address in &checked.instance.addresses {
            let Some(subnet) = subnets.iter().find(|subnet| subnet.contains(*address)) else {
                continue;
            };
            match first {
                None => first = Some((subnet, *address)),
                Some((first_subnet, first_address)) if first_subnet.name != subnet.name => {
                    diagnostics.error(
                        &checked.addresses_at,
                        ValidationError::InstanceInTwoSubnets {
                            instance: checked.instance.name.clone(),
                            first_subnet: first_subnet.name.clone(),
                            first_address: first_address.to_string(),
                            second_subnet: subnet.name.clone(),
                            second_address: address.to_string(),
                        },
                    );
                    break;
                }
                Some(_) => {}
            }
        }
    }
}
