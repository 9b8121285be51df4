//! AWS groups and interfaces to native ones: names made unique, permissions split by peer
//! description, peers sgwall would reject fixed or left out (with a warning), ENIs turned into
//! members or, with `--attach`, instances.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{
    errors::{AwsRuleName, ImportError, ImportWarning},
    network::NativeNetwork,
    request::Attachment,
    schema::{AwsPermission, AwsSecurityGroup, DescribeNetworkInterfaces, DescribeSecurityGroups},
};
use crate::model::{Direction, Protocol};

/// A native rule before it is written.
pub(super) struct NativeRule {
    pub protocol: Protocol,
    pub selector: Selector,
    pub cidrs: Vec<String>,
    pub groups: Vec<String>,
    /// Prefix list names (P1).
    pub prefix_lists: Vec<String>,
    pub description: String,
}

#[derive(Clone, Copy)]
pub(super) enum Selector {
    None,
    Ports { from: i64, to: i64 },
    Icmp { icmp_type: i64, code: i64 },
}

pub(super) struct NativeGroup {
    pub group_id: String,
    pub vpc_id: Option<String>,
    pub name: String,
    pub description: String,
    pub ingress: Vec<NativeRule>,
    /// `None`: the AWS default egress, left to R2.
    pub egress: Option<Vec<NativeRule>>,
}

pub(super) struct NativeInterface {
    pub eni: String,
    pub comment: String,
    /// `Some` for an `--attach`ed ENI: the local interface name.
    pub interface: Option<String>,
    pub addresses: Vec<String>,
    pub groups: Vec<String>,
    pub source_dest_check: Option<bool>,
    pub conntrack: Vec<(&'static str, i64)>,
}

/// The native groups and interfaces; what could not be carried over goes to `warnings`.
pub(super) fn convert(
    described: &DescribeSecurityGroups,
    interfaces: Option<&DescribeNetworkInterfaces>,
    attach: &[Attachment],
    network: &NativeNetwork,
    warnings: &mut Vec<ImportWarning>,
) -> Result<(Vec<NativeGroup>, Vec<NativeInterface>), ImportError> {
    let names = group_names(&described.security_groups, warnings);
    let mut groups = Vec::new();
    for group in &described.security_groups {
        groups.push(convert_group(group, &names, network, warnings)?);
    }
    let interfaces = convert_interfaces(interfaces, attach, &names, warnings)?;
    Ok((groups, interfaces))
}

/// Group id -> unique native name. AWS names are unique per VPC only, so a name seen again
/// (another VPC's `default`, say) gets the group id appended.
fn group_names(
    groups: &[AwsSecurityGroup],
    warnings: &mut Vec<ImportWarning>,
) -> HashMap<String, String> {
    let mut first_by_name: HashMap<&str, &str> = HashMap::new();
    let mut names = HashMap::new();
    for group in groups {
        let name = match first_by_name.get(group.group_name.as_str()) {
            Some(first_id) => {
                let renamed = format!("{}-{}", group.group_name, group.group_id);
                warnings.push(ImportWarning::GroupRenamed {
                    name: group.group_name.clone(),
                    first_id: first_id.to_string(),
                    group_id: group.group_id.clone(),
                    renamed: renamed.clone(),
                });
                renamed
            }
            None => {
                first_by_name.insert(&group.group_name, &group.group_id);
                group.group_name.clone()
            }
        };
        names.insert(group.group_id.clone(), name);
    }
    names
}

fn convert_group(
    group: &AwsSecurityGroup,
    names: &HashMap<String, String>,
    network: &NativeNetwork,
    warnings: &mut Vec<ImportWarning>,
) -> Result<NativeGroup, ImportError> {
    let name = names
        .get(&group.group_id)
        .cloned()
        .unwrap_or_else(|| group.group_name.clone());
    let mut convert = |permissions: &[AwsPermission], direction| {
        let mut rules = Vec::new();
        for (index, permission) in permissions.iter().enumerate() {
            let rule = AwsRuleName {
                group_name: name.clone(),
                group_id: group.group_id.clone(),
                direction,
                index,
            };
            rules.extend(convert_permission(
                permission, &rule, names, network, warnings,
            )?);
        }
        Ok::<_, ImportError>(rules)
    };
    let ingress = convert(&group.ip_permissions, Direction::Ingress)?;
    let egress = if is_default_egress(&group.ip_permissions_egress) {
        None
    } else {
        Some(convert(&group.ip_permissions_egress, Direction::Egress)?)
    };
    Ok(NativeGroup {
        group_id: group.group_id.clone(),
        vpc_id: group.vpc_id.clone(),
        name,
        description: group.description.clone(),
        ingress,
        egress,
    })
}

/// R2's default egress is all protocols to 0.0.0.0/0 *and* ::/0. AWS only adds ::/0 to a
/// group in a VPC with IPv6, so an egress of 0.0.0.0/0 alone is written out as it is: leaving
/// it to R2 would open IPv6 egress that AWS does not have.
fn is_default_egress(permissions: &[AwsPermission]) -> bool {
    let [permission] = permissions else {
        return false;
    };
    let undescribed =
        |description: &Option<String>| description.as_deref().unwrap_or("").is_empty();
    permission.ip_protocol == "-1"
        && matches!(permission.ip_ranges.as_slice(), [range] if range.cidr_ip == "0.0.0.0/0" && undescribed(&range.description))
        && matches!(permission.ipv6_ranges.as_slice(), [range] if range.cidr_ipv6 == "::/0" && undescribed(&range.description))
        && permission.user_id_group_pairs.is_empty()
        && permission.prefix_list_ids.is_empty()
}

/// R3: `-1`, names and numbers; 6/17/1/58 become names.
fn convert_protocol(text: &str, rule: &AwsRuleName) -> Result<Protocol, ImportError> {
    let unsupported = || ImportError::UnsupportedProtocol {
        rule: rule.clone(),
        protocol: text.to_string(),
    };
    match text {
        "-1" | "all" => Ok(Protocol::All),
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "icmp" => Ok(Protocol::Icmp),
        "icmpv6" => Ok(Protocol::Icmpv6),
        number => number
            .parse::<u8>()
            .map(Protocol::from_number)
            .map_err(|_| unsupported()),
    }
}

/// One AWS permission becomes one native rule per distinct peer description, so that every
/// peer keeps its own description.
fn convert_permission(
    permission: &AwsPermission,
    rule: &AwsRuleName,
    names: &HashMap<String, String>,
    network: &NativeNetwork,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<NativeRule>, ImportError> {
    let protocol = convert_protocol(&permission.ip_protocol, rule)?;
    let selector = match protocol {
        Protocol::Tcp | Protocol::Udp => match (permission.from_port, permission.to_port) {
            (Some(from), Some(to)) if from >= 0 && to >= 0 => Selector::Ports { from, to },
            _ => Selector::Ports { from: 0, to: 65535 },
        },
        Protocol::Icmp | Protocol::Icmpv6 => Selector::Icmp {
            icmp_type: permission.from_port.unwrap_or(-1),
            code: permission.to_port.unwrap_or(-1),
        },
        Protocol::All | Protocol::Number(_) => Selector::None,
    };

    // Peers grouped by description, in the order AWS lists them.
    let mut rules: Vec<NativeRule> = Vec::new();
    // A peer: a CIDR, a group name or a prefix list id.
    enum Added {
        Cidr(String),
        Group(String),
        PrefixList(String),
    }
    let mut add = |description: &Option<String>, peer: Added| {
        let description = description.clone().unwrap_or_default();
        let index = match rules
            .iter()
            .position(|rule| rule.description == description)
        {
            Some(index) => index,
            None => {
                rules.push(NativeRule {
                    protocol,
                    selector,
                    cidrs: Vec::new(),
                    groups: Vec::new(),
                    prefix_lists: Vec::new(),
                    description,
                });
                rules.len() - 1
            }
        };
        if let Some(rule) = rules.get_mut(index) {
            match peer {
                Added::Cidr(cidr) => rule.cidrs.push(cidr),
                Added::Group(group) => rule.groups.push(group),
                Added::PrefixList(list) => rule.prefix_lists.push(list),
            }
        }
    };

    let cidrs = permission
        .ip_ranges
        .iter()
        .map(|range| (&range.cidr_ip, &range.description))
        .chain(
            permission
                .ipv6_ranges
                .iter()
                .map(|range| (&range.cidr_ipv6, &range.description)),
        );
    for (cidr, description) in cidrs {
        if let Some(cidr) = convert_cidr(cidr, protocol, rule, warnings) {
            add(description, Added::Cidr(cidr));
        }
    }
    for pair in &permission.user_id_group_pairs {
        let Some(name) = names.get(&pair.group_id) else {
            return Err(ImportError::UnknownReferencedGroup {
                rule: rule.clone(),
                referenced: pair.group_id.clone(),
            });
        };
        add(&pair.description, Added::Group(name.clone()));
    }
    let (known, unknown): (Vec<_>, Vec<_>) = permission
        .prefix_list_ids
        .iter()
        .partition(|list| network.prefix_list(&list.prefix_list_id).is_some());
    for list in known {
        // By name: in a Terraform plan a list not created yet has no id.
        if let Some(native) = network.prefix_list(&list.prefix_list_id) {
            add(&list.description, Added::PrefixList(native.name.clone()));
        }
    }

    let has_peer = !rules.is_empty();
    for prefix_list in unknown {
        let prefix_list = prefix_list.prefix_list_id.clone();
        warnings.push(if has_peer {
            ImportWarning::PrefixListLeftOut {
                rule: rule.clone(),
                prefix_list,
            }
        } else {
            ImportWarning::PrefixListRuleDropped {
                rule: rule.clone(),
                prefix_list,
            }
        });
    }

    Ok(rules)
}

/// R5: drop what could never match, clear host bits.
fn convert_cidr(
    text: &str,
    protocol: Protocol,
    rule: &AwsRuleName,
    warnings: &mut Vec<ImportWarning>,
) -> Option<String> {
    let Ok(net) = text.parse::<IpNet>() else {
        warnings.push(ImportWarning::InvalidCidr {
            rule: rule.clone(),
            cidr: text.to_string(),
        });
        return None;
    };
    let never_matches = matches!(
        (protocol, net),
        (Protocol::Icmp, IpNet::V6(_)) | (Protocol::Icmpv6, IpNet::V4(_))
    );
    if never_matches {
        warnings.push(ImportWarning::PeerFamilyMismatch {
            rule: rule.clone(),
            protocol: protocol.to_string(),
            cidr: text.to_string(),
        });
        return None;
    }
    if net.trunc() != net {
        warnings.push(ImportWarning::HostBitsCleared {
            rule: rule.clone(),
            cidr: text.to_string(),
            network: net.trunc().to_string(),
        });
    }
    Some(net.trunc().to_string())
}

fn convert_interfaces(
    described: Option<&DescribeNetworkInterfaces>,
    attach: &[Attachment],
    names: &HashMap<String, String>,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<NativeInterface>, ImportError> {
    let mut local: HashMap<&str, &str> = HashMap::new();
    for attachment in attach {
        if local
            .insert(&attachment.eni, &attachment.interface)
            .is_some()
        {
            return Err(ImportError::AttachedTwice {
                eni: attachment.eni.clone(),
            });
        }
    }
    let Some(described) = described else {
        return match attach.first() {
            Some(attachment) => Err(ImportError::AttachWithoutInterfaces {
                eni: attachment.eni.clone(),
            }),
            None => Ok(Vec::new()),
        };
    };
    for attachment in attach {
        let known = described
            .network_interfaces
            .iter()
            .any(|eni| eni.network_interface_id == attachment.eni);
        if !known {
            return Err(ImportError::UnknownAttachedInterface {
                eni: attachment.eni.clone(),
                interface: attachment.interface.clone(),
            });
        }
    }

    let mut interfaces = Vec::new();
    for eni in &described.network_interfaces {
        let mut addresses: Vec<String> = eni
            .private_ip_addresses
            .iter()
            .map(|ip| ip.private_ip_address.clone())
            .collect();
        if addresses.is_empty() {
            addresses.extend(eni.private_ip_address.clone());
        }
        addresses.extend(eni.ipv6_addresses.iter().map(|ip| ip.ipv6_address.clone()));
        let groups = eni
            .groups
            .iter()
            .map(|group| {
                names.get(&group.group_id).cloned().ok_or_else(|| {
                    ImportError::UnknownInterfaceGroup {
                        eni: eni.network_interface_id.clone(),
                        group_id: group.group_id.clone(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addresses.is_empty() || groups.is_empty() {
            warnings.push(ImportWarning::InterfaceLeftOut {
                eni: eni.network_interface_id.clone(),
            });
            continue;
        }
        let tracking = eni.connection_tracking_configuration.as_ref();
        let conntrack = [
            (
                "tcp_established_timeout",
                tracking.and_then(|t| t.tcp_established_timeout),
            ),
            ("udp_timeout", tracking.and_then(|t| t.udp_timeout)),
            (
                "udp_stream_timeout",
                tracking.and_then(|t| t.udp_stream_timeout),
            ),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
        let comment = [
            eni.attachment
                .as_ref()
                .and_then(|a| a.instance_id.clone())
                .map(|id| format!("instance {id}")),
            eni.description
                .clone()
                .filter(|d| !d.is_empty())
                .map(|d| format!("\"{d}\"")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        interfaces.push(NativeInterface {
            eni: eni.network_interface_id.clone(),
            comment,
            interface: local
                .get(eni.network_interface_id.as_str())
                .map(|name| name.to_string()),
            addresses,
            groups,
            source_dest_check: eni.source_dest_check,
            conntrack,
        });
    }
    Ok(interfaces)
}
