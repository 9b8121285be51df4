//! Managed prefix lists (P1), network ACLs and subnets (N1-N2) from their `describe-*` JSON to
//! native ones. A prefix list is imported only with its entries (`get-managed-prefix-list-
//! entries`); a subnet always with the ACL AWS associates it with, since leaving an ACL out
//! would admit what it denies.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{
    errors::{ImportError, ImportWarning},
    schema::{
        AwsAclEntry, DescribeManagedPrefixLists, DescribeNetworkAcls, DescribeSubnets,
        GetManagedPrefixListEntries, name_tag,
    },
};
use crate::model::Protocol;

/// The rule numbers AWS shows for the final entry (`*`) of IPv4 and of IPv6, which sgwall
/// always has (N2).
const FINAL_ENTRY_NUMBERS: [i64; 2] = [32767, 32768];

pub(super) struct NativePrefixList {
    pub id: String,
    pub name: String,
    pub family: String,
    pub max_entries: i64,
    /// (CIDR, description).
    pub entries: Vec<(String, String)>,
}

pub(super) struct NativeAclEntry {
    pub number: i64,
    pub allow: bool,
    pub protocol: Protocol,
    /// TCP/UDP ports; `None` for every port.
    pub ports: Option<(i64, i64)>,
    /// ICMP type and code, -1 for any.
    pub icmp: Option<(i64, i64)>,
    pub cidr: String,
}

pub(super) struct NativeAcl {
    pub id: String,
    pub comment: String,
    pub ingress: Vec<NativeAclEntry>,
    pub egress: Vec<NativeAclEntry>,
}

pub(super) struct NativeSubnet {
    pub id: String,
    pub comment: String,
    pub cidrs: Vec<String>,
    pub acl: String,
}

/// What the network inputs hold, converted.
#[derive(Default)]
pub(super) struct NativeNetwork {
    pub prefix_lists: Vec<NativePrefixList>,
    pub acls: Vec<NativeAcl>,
    pub subnets: Vec<NativeSubnet>,
}

impl NativeNetwork {
    /// The imported prefix list with this id.
    pub fn prefix_list(&self, id: &str) -> Option<&NativePrefixList> {
        self.prefix_lists.iter().find(|list| list.id == id)
    }
}

/// The network inputs, parsed.
#[derive(Default)]
pub(crate) struct NetworkInputs {
    pub prefix_lists: Option<DescribeManagedPrefixLists>,
    /// (prefix list id, its entries).
    pub prefix_list_entries: Vec<(String, GetManagedPrefixListEntries)>,
    pub network_acls: Option<DescribeNetworkAcls>,
    pub subnets: Option<DescribeSubnets>,
}

pub(super) fn convert(
    inputs: &NetworkInputs,
    warnings: &mut Vec<ImportWarning>,
) -> Result<NativeNetwork, ImportError> {
    Ok(NativeNetwork {
        prefix_lists: convert_prefix_lists(inputs, warnings)?,
        acls: inputs
            .network_acls
            .iter()
            .flat_map(|described| &described.network_acls)
            .map(|acl| {
                let (ingress, egress) = convert_acl_entries(&acl.network_acl_id, &acl.entries)?;
                let comment = [
                    name_tag(&acl.tags).map(|name| format!("\"{name}\"")),
                    acl.vpc_id.as_ref().map(|vpc| format!("in {vpc}")),
                    acl.is_default.then(|| "the VPC's default ACL".to_string()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
                Ok(NativeAcl {
                    id: acl.network_acl_id.clone(),
                    comment,
                    ingress,
                    egress,
                })
            })
            .collect::<Result<_, ImportError>>()?,
        subnets: convert_subnets(inputs, warnings)?,
    })
}

fn convert_prefix_lists(
    inputs: &NetworkInputs,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<NativePrefixList>, ImportError> {
    let described = inputs
        .prefix_lists
        .iter()
        .flat_map(|described| &described.prefix_lists);
    for (id, _) in &inputs.prefix_list_entries {
        if !described.clone().any(|list| &list.prefix_list_id == id) {
            return Err(ImportError::EntriesOfUnknownPrefixList { id: id.clone() });
        }
    }
    let mut lists = Vec::new();
    for list in described {
        let Some((_, entries)) = inputs
            .prefix_list_entries
            .iter()
            .find(|(id, _)| *id == list.prefix_list_id)
        else {
            warnings.push(ImportWarning::PrefixListWithoutEntries {
                id: list.prefix_list_id.clone(),
            });
            continue;
        };
        let entries: Vec<(String, String)> = entries
            .entries
            .iter()
            .map(|entry| {
                (
                    entry.cidr.clone(),
                    entry.description.clone().unwrap_or_default(),
                )
            })
            .collect();
        lists.push(NativePrefixList {
            id: list.prefix_list_id.clone(),
            name: list.prefix_list_name.clone(),
            family: list.address_family.clone(),
            // AWS-managed lists may not say: then the entries it has are all it can count.
            max_entries: list.max_entries.unwrap_or(entries.len() as i64).max(1),
            entries,
        });
    }
    Ok(lists)
}

/// N2: entries by direction, sorted by number, without AWS's final `*` entry.
fn convert_acl_entries(
    acl: &str,
    entries: &[AwsAclEntry],
) -> Result<(Vec<NativeAclEntry>, Vec<NativeAclEntry>), ImportError> {
    let (mut ingress, mut egress) = (Vec::new(), Vec::new());
    for entry in entries {
        if FINAL_ENTRY_NUMBERS.contains(&entry.rule_number) {
            continue;
        }
        let bad = |what: String| ImportError::InvalidAclEntry {
            acl: acl.to_string(),
            number: entry.rule_number,
            what,
        };
        let protocol = match entry.protocol.as_str() {
            "-1" | "all" => Protocol::All,
            number => number
                .parse::<u8>()
                .map(Protocol::from_number)
                .map_err(|_| bad(format!("Protocol \"{number}\"")))?,
        };
        let cidr = entry
            .cidr_block
            .as_ref()
            .or(entry.ipv6_cidr_block.as_ref())
            .ok_or_else(|| bad("no CidrBlock or Ipv6CidrBlock".to_string()))?;
        let cidr = cidr
            .parse::<IpNet>()
            .map_err(|_| bad(format!("CidrBlock \"{cidr}\"")))?
            .trunc()
            .to_string();
        let ports = match protocol {
            Protocol::Tcp | Protocol::Udp => entry
                .port_range
                .as_ref()
                .map(|range| (range.from, range.to)),
            _ => None,
        };
        let icmp = match protocol {
            Protocol::Icmp | Protocol::Icmpv6 => entry
                .icmp_type_code
                .as_ref()
                .map(|icmp| (icmp.r#type.unwrap_or(-1), icmp.code.unwrap_or(-1))),
            _ => None,
        };
        let native = NativeAclEntry {
            number: entry.rule_number,
            allow: match entry.rule_action.as_str() {
                "allow" => true,
                "deny" => false,
                other => return Err(bad(format!("RuleAction \"{other}\""))),
            },
            protocol,
            ports,
            icmp,
            cidr,
        };
        if entry.egress {
            egress.push(native);
        } else {
            ingress.push(native);
        }
    }
    ingress.sort_by_key(|entry| entry.number);
    egress.sort_by_key(|entry| entry.number);
    Ok((ingress, egress))
}

/// N1: every subnet with the ACL associated with it, or its VPC's default ACL.
fn convert_subnets(
    inputs: &NetworkInputs,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<NativeSubnet>, ImportError> {
    let acls = inputs
        .network_acls
        .as_ref()
        .map(|described| described.network_acls.as_slice())
        .unwrap_or_default();
    let mut acl_of_subnet: HashMap<&str, &str> = HashMap::new();
    for acl in acls {
        for association in &acl.associations {
            acl_of_subnet.insert(&association.subnet_id, &acl.network_acl_id);
        }
    }
    let Some(described) = &inputs.subnets else {
        if !acls.is_empty() {
            warnings.push(ImportWarning::AclsWithoutSubnets);
        }
        return Ok(Vec::new());
    };
    let mut subnets = Vec::new();
    for subnet in &described.subnets {
        let default_acl = || {
            acls.iter()
                .find(|acl| acl.is_default && acl.vpc_id == subnet.vpc_id)
                .map(|acl| acl.network_acl_id.as_str())
        };
        let acl = acl_of_subnet
            .get(subnet.subnet_id.as_str())
            .copied()
            .or_else(default_acl)
            .ok_or_else(|| ImportError::SubnetWithoutAcl {
                subnet: subnet.subnet_id.clone(),
            })?;
        let cidrs: Vec<String> = subnet
            .cidr_block
            .iter()
            .cloned()
            .chain(
                subnet
                    .ipv6_cidr_block_association_set
                    .iter()
                    .map(|association| association.ipv6_cidr_block.clone()),
            )
            .collect();
        let comment = [
            name_tag(&subnet.tags).map(|name| format!("\"{name}\"")),
            subnet.vpc_id.as_ref().map(|vpc| format!("in {vpc}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        subnets.push(NativeSubnet {
            id: subnet.subnet_id.clone(),
            comment,
            cidrs,
            acl: acl.to_string(),
        });
    }
    Ok(subnets)
}
