//! Warnings: configurations that are valid but probably not what the author meant. They are
//! printed and never block a load. Warnings that only need one field (ignored ports, an ignored
//! hook) are raised during validation; the ones here look at whole rules and interfaces.

use std::collections::HashMap;

use super::{
    diagnostic::{Diagnostics, Location},
    messages::{Overlap, RuleName, SensitivePort, ValidationWarning, rule_text},
    validate::{Checked, CheckedGroup},
};
use crate::model::{Direction, Peer, PortRange, Protocol};

/// Administration and database services that should not face the whole internet.
const SENSITIVE_PORTS: &[SensitivePort] = &[
    SensitivePort {
        port: 22,
        service: "SSH",
    },
    SensitivePort {
        port: 1433,
        service: "SQL Server",
    },
    SensitivePort {
        port: 3306,
        service: "MySQL",
    },
    SensitivePort {
        port: 3389,
        service: "RDP",
    },
    SensitivePort {
        port: 5432,
        service: "PostgreSQL",
    },
    SensitivePort {
        port: 6379,
        service: "Redis",
    },
    SensitivePort {
        port: 9200,
        service: "Elasticsearch",
    },
    SensitivePort {
        port: 27017,
        service: "MongoDB",
    },
];

/// `all` from a network with a shorter prefix than this is worth a second look.
const WIDE_PREFIX_LEN: u8 = 16;

pub(crate) fn lint(checked: &Checked, diagnostics: &mut Diagnostics) {
    for group in &checked.groups {
        lint_group_ingress(group, diagnostics);
    }
    lint_covered_rules(checked, diagnostics);
    lint_instances_outside_subnets(checked, diagnostics);
}

/// N1: once a config has subnets, an instance in none of them has no network ACL, which is
/// more likely a forgotten subnet than a wish.
fn lint_instances_outside_subnets(checked: &Checked, diagnostics: &mut Diagnostics) {
    if checked.subnets.is_empty() {
        return;
    }
    for checked_instance in &checked.instances {
        let instance = &checked_instance.instance;
        let in_a_subnet = checked.subnets.iter().any(|subnet| {
            instance
                .addresses
                .iter()
                .any(|address| subnet.contains(*address))
        });
        if !in_a_subnet {
            diagnostics.warning(
                &checked_instance.addresses_at,
                ValidationWarning::InstanceOutsideSubnets {
                    instance: instance.name.clone(),
                },
            );
        }
    }
}

/// Inbound exposure only: outbound rules to the internet are the AWS default (R2) and normal.
fn lint_group_ingress(group: &CheckedGroup, diagnostics: &mut Diagnostics) {
    for rule in &group.ingress {
        for peer in &rule.peers {
            let Peer::Cidr(net) = peer.value else {
                continue;
            };
            if net.prefix_len() == 0 {
                let exposed = sensitive_ports(rule.protocol, rule.ports);
                if !exposed.is_empty() {
                    diagnostics.warning(
                        &peer.at,
                        ValidationWarning::SensitivePortsOpenToInternet {
                            ports: exposed,
                            cidr: net.to_string(),
                        },
                    );
                }
            }
            if rule.protocol == Protocol::All && net.prefix_len() < WIDE_PREFIX_LEN {
                diagnostics.warning(
                    &peer.at,
                    ValidationWarning::AllProtocolsFromWideNetwork {
                        cidr: net.to_string(),
                    },
                );
            }
        }
    }
}

/// The sensitive ports a rule admits: TCP ranges that include them, or every protocol.
fn sensitive_ports(protocol: Protocol, ports: PortRange) -> Vec<SensitivePort> {
    let admits = |port: u16| match protocol {
        Protocol::All => true,
        Protocol::Tcp => ports.admits_port(port),
        _ => false,
    };
    SENSITIVE_PORTS
        .iter()
        .copied()
        .filter(|sensitive| admits(sensitive.port))
        .collect()
}

/// One effective rule of an interface, with where it was written.
struct InterfaceRule<'a> {
    name: RuleName,
    protocol: Protocol,
    ports: PortRange,
    peer: &'a Peer,
    at: &'a Location,
}

impl InterfaceRule<'_> {
    /// Whether every packet this rule admits is admitted by `self` (R6: rules are unioned, so
    /// the other rule adds nothing).
    fn covers(&self, other: &InterfaceRule<'_>) -> bool {
        let protocol_covers = self.protocol == Protocol::All || self.protocol == other.protocol;
        let ports_cover =
            self.protocol == Protocol::All || selector_covers(self.ports, other.ports);
        let peer_covers = match (self.peer, other.peer) {
            (Peer::Cidr(outer), Peer::Cidr(inner)) => outer.contains(inner),
            (Peer::Group(outer), Peer::Group(inner)) => outer == inner,
            (Peer::PrefixList(outer), Peer::PrefixList(inner)) => outer == inner,
            _ => false,
        };
        protocol_covers && ports_cover && peer_covers
    }

    fn is_same_as(&self, other: &InterfaceRule<'_>) -> bool {
        self.protocol == other.protocol && self.ports == other.ports && self.peer == other.peer
    }

    fn text(&self) -> String {
        rule_text(self.protocol, self.ports, self.peer, self.name.direction)
    }
}

fn selector_covers(outer: PortRange, inner: PortRange) -> bool {
    match (outer, inner) {
        (PortRange::Any, _) => true,
        (PortRange::Ports { from, to }, PortRange::Ports { from: f, to: t }) => {
            from <= f && t <= to
        }
        (
            PortRange::Icmp { icmp_type, code },
            PortRange::Icmp {
                icmp_type: inner_type,
                code: inner_code,
            },
        ) => {
            icmp_type.is_none()
                || (icmp_type == inner_type && (code.is_none() || code == inner_code))
        }
        _ => false,
    }
}

/// Per interface and direction, a rule that another rule of the same interface already covers.
/// The default egress (R2) is left out: the author did not write it.
fn lint_covered_rules(checked: &Checked, diagnostics: &mut Diagnostics) {
    let groups: HashMap<&str, &CheckedGroup> = checked
        .groups
        .iter()
        .map(|group| (group.name.as_str(), group))
        .collect();
    for checked_instance in &checked.instances {
        let instance = &checked_instance.instance;
        for direction in Direction::BOTH {
            let rules: Vec<InterfaceRule> = instance
                .security_groups
                .iter()
                .filter_map(|name| groups.get(name.as_str()))
                .flat_map(|group| {
                    group.rules(direction).iter().flat_map(move |rule| {
                        rule.peers.iter().map(move |peer| InterfaceRule {
                            name: RuleName {
                                group: group.name.clone(),
                                direction,
                                index: rule.index,
                            },
                            protocol: rule.protocol,
                            ports: rule.ports,
                            peer: &peer.value,
                            at: &peer.at,
                        })
                    })
                })
                .collect();
            for (position, rule) in rules.iter().enumerate() {
                let covering = rules.iter().enumerate().find(|(other_position, other)| {
                    if *other_position == position || !other.covers(rule) {
                        return false;
                    }
                    if other.is_same_as(rule) {
                        // Only the later of two equal rules is reported, and equal rules in one
                        // group are already an error.
                        return *other_position < position && other.name.group != rule.name.group;
                    }
                    true
                });
                let Some((_, other)) = covering else {
                    continue;
                };
                let warning = ValidationWarning::RuleOverlaps {
                    interface: instance.interface.clone(),
                    instance: instance.name.clone(),
                    rule: rule.name.clone(),
                    rule_text: rule.text(),
                    overlap: if other.is_same_as(rule) {
                        Overlap::Duplicates
                    } else {
                        Overlap::IsCoveredBy
                    },
                    other: other.name.clone(),
                    other_text: other.text(),
                };
                diagnostics.warning(rule.at, warning);
            }
        }
    }
}
