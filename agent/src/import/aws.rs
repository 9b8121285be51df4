//! `sgwall import aws`: turns the JSON of `aws ec2 describe-security-groups` (and optionally
//! `aws ec2 describe-network-interfaces`) into a native sgwall config.
//!
//! Groups keep their AWS names and rules reference peers by name. Interfaces become `[[member]]`
//! entries (named by their ENI id) unless `--attach ENI=IFACE` maps them to a local
//! `[[instance]]`. What sgwall cannot express (prefix lists) is reported and left out. The output
//! is validated with [`crate::config::load_str`] before it is returned, so it always passes
//! `sgwall check`.

use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    config::{self, ConfigError},
    model::{Direction, Protocol, Quotas},
};

/// What to import, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsImportRequest {
    pub security_groups: PathBuf,
    pub network_interfaces: Option<PathBuf>,
    pub attach: Vec<Attachment>,
    /// Refuse to produce a config when something could not be imported.
    pub strict: bool,
}

/// `ENI_ID=IFACE`: the ENI becomes an `[[instance]]` enforced on local interface `IFACE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub eni: String,
    pub interface: String,
}

impl FromStr for Attachment {
    type Err = ImportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((eni, interface)) if !eni.is_empty() && !interface.is_empty() => Ok(Attachment {
                eni: eni.to_string(),
                interface: interface.to_string(),
            }),
            _ => Err(ImportError::AttachSyntax {
                value: text.to_string(),
            }),
        }
    }
}

/// A config text and what could not be carried over.
#[derive(Clone, Debug)]
pub struct AwsImport {
    pub toml: String,
    pub warnings: Vec<ImportWarning>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not the JSON printed by `aws ec2 {command}`: {source}", path.display())]
    Json {
        path: PathBuf,
        command: &'static str,
        source: serde_json::Error,
    },
    #[error("expected ENI_ID=INTERFACE, such as eni-0123456789abcdef0=tap0, got \"{value}\"")]
    AttachSyntax { value: String },
    #[error("--attach needs --network-interfaces: the addresses and groups of {eni} come from it")]
    AttachWithoutInterfaces { eni: String },
    #[error("--attach {eni}={interface}: {eni} is not in the network interfaces file")]
    UnknownAttachedInterface { eni: String, interface: String },
    #[error("{eni} is attached twice with --attach")]
    AttachedTwice { eni: String },
    /// G5: sgwall resolves group references by name, so every referenced group must be known.
    #[error(
        "{rule} references security group {referenced}, which is not in the security groups \
         file; add it to the describe-security-groups output"
    )]
    UnknownReferencedGroup {
        rule: AwsRuleName,
        referenced: String,
    },
    #[error(
        "network interface {eni} uses security group {group_id}, which is not in the security \
         groups file"
    )]
    UnknownInterfaceGroup { eni: String, group_id: String },
    /// R3.
    #[error("{rule}: unsupported IpProtocol \"{protocol}\"")]
    UnsupportedProtocol { rule: AwsRuleName, protocol: String },
    #[error(
        "{} item(s) could not be imported and --strict is set:\n{}",
        warnings.len(),
        warnings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    Strict { warnings: Vec<ImportWarning> },
    /// A safety net: the importer checks its own output like `sgwall check` does.
    #[error("the imported config does not validate:\n{0}")]
    InvalidOutput(ConfigError),
}

/// Names one AWS permission: group, direction, and its index in `IpPermissions` or
/// `IpPermissionsEgress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsRuleName {
    pub group_name: String,
    pub group_id: String,
    pub direction: Direction,
    pub index: usize,
}

impl fmt::Display for AwsRuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.direction {
            Direction::Ingress => "IpPermissions",
            Direction::Egress => "IpPermissionsEgress",
        };
        write!(
            f,
            "security group \"{}\" ({}) {} rule {list}[{}]",
            self.group_name, self.group_id, self.direction, self.index
        )
    }
}

/// Something of the AWS input that the config does not carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportWarning {
    /// R5: sgwall has no prefix lists.
    #[error("{rule}: prefix list {prefix_list} is not supported; the rule is imported without it")]
    PrefixListLeftOut {
        rule: AwsRuleName,
        prefix_list: String,
    },
    #[error(
        "{rule}: prefix list {prefix_list} is not supported and the rule has no other peer; \
         the rule is dropped"
    )]
    PrefixListRuleDropped {
        rule: AwsRuleName,
        prefix_list: String,
    },
    /// R5: the peer could never match, and sgwall rejects such a rule.
    #[error("{rule}: protocol {protocol} can never match {cidr}; that peer is left out")]
    PeerFamilyMismatch {
        rule: AwsRuleName,
        protocol: String,
        cidr: String,
    },
    /// R5: sgwall rejects host bits; AWS would have normalised them.
    #[error("{rule}: {cidr} has host bits set; imported as {network}")]
    HostBitsCleared {
        rule: AwsRuleName,
        cidr: String,
        network: String,
    },
    #[error("{rule}: {cidr} is not a valid CIDR; that peer is left out")]
    InvalidCidr { rule: AwsRuleName, cidr: String },
    #[error(
        "security groups {first_id} and {group_id} are both named \"{name}\"; {group_id} is \
         imported as \"{renamed}\""
    )]
    GroupRenamed {
        name: String,
        first_id: String,
        group_id: String,
        renamed: String,
    },
    #[error("network interface {eni} has no addresses or no security groups; it is left out")]
    InterfaceLeftOut { eni: String },
}

/// Reads the files of `request` and imports them.
pub fn import_files(request: &AwsImportRequest) -> Result<AwsImport, ImportError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let groups_json = read(&request.security_groups)?;
    let groups: DescribeSecurityGroups =
        serde_json::from_str(&groups_json).map_err(|source| ImportError::Json {
            path: request.security_groups.clone(),
            command: "describe-security-groups",
            source,
        })?;
    let interfaces = match &request.network_interfaces {
        Some(path) => {
            let json = read(path)?;
            let parsed: DescribeNetworkInterfaces =
                serde_json::from_str(&json).map_err(|source| ImportError::Json {
                    path: path.clone(),
                    command: "describe-network-interfaces",
                    source,
                })?;
            Some(parsed)
        }
        None => None,
    };
    let sources = Sources {
        security_groups: request.security_groups.display().to_string(),
        network_interfaces: request
            .network_interfaces
            .as_ref()
            .map(|path| path.display().to_string()),
    };
    let imported = import(&groups, interfaces.as_ref(), &request.attach, &sources)?;
    if request.strict && !imported.warnings.is_empty() {
        return Err(ImportError::Strict {
            warnings: imported.warnings,
        });
    }
    Ok(imported)
}

/// Imports already-read JSON; `groups_json` and `interfaces_json` are the files' contents.
pub fn import_json(
    groups_json: &str,
    interfaces_json: Option<&str>,
    attach: &[Attachment],
) -> Result<AwsImport, ImportError> {
    let json_error = |command, source| ImportError::Json {
        path: PathBuf::from("<input>"),
        command,
        source,
    };
    let groups: DescribeSecurityGroups = serde_json::from_str(groups_json)
        .map_err(|source| json_error("describe-security-groups", source))?;
    let interfaces: Option<DescribeNetworkInterfaces> = interfaces_json
        .map(serde_json::from_str)
        .transpose()
        .map_err(|source| json_error("describe-network-interfaces", source))?;
    let sources = Sources {
        security_groups: "<input>".to_string(),
        network_interfaces: interfaces_json.map(|_| "<input>".to_string()),
    };
    import(&groups, interfaces.as_ref(), attach, &sources)
}

// ---------------------------------------------------------------------------------------------
// The AWS CLI's JSON. Fields sgwall does not use (Tags, OwnerId, ...) are ignored.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeSecurityGroups {
    security_groups: Vec<AwsSecurityGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsSecurityGroup {
    group_id: String,
    group_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    vpc_id: Option<String>,
    #[serde(default)]
    ip_permissions: Vec<AwsPermission>,
    #[serde(default)]
    ip_permissions_egress: Vec<AwsPermission>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsPermission {
    ip_protocol: String,
    #[serde(default)]
    from_port: Option<i64>,
    #[serde(default)]
    to_port: Option<i64>,
    #[serde(default)]
    ip_ranges: Vec<AwsIpRange>,
    #[serde(default)]
    ipv6_ranges: Vec<AwsIpv6Range>,
    #[serde(default)]
    user_id_group_pairs: Vec<AwsGroupPair>,
    #[serde(default)]
    prefix_list_ids: Vec<AwsPrefixList>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsIpRange {
    cidr_ip: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsIpv6Range {
    cidr_ipv6: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsGroupPair {
    group_id: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsPrefixList {
    prefix_list_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeNetworkInterfaces {
    network_interfaces: Vec<AwsNetworkInterface>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsNetworkInterface {
    network_interface_id: String,
    #[serde(default)]
    private_ip_address: Option<String>,
    #[serde(default)]
    private_ip_addresses: Vec<AwsPrivateIp>,
    #[serde(default)]
    ipv6_addresses: Vec<AwsIpv6Address>,
    #[serde(default)]
    groups: Vec<AwsGroupIdentifier>,
    #[serde(default)]
    source_dest_check: Option<bool>,
    #[serde(default)]
    connection_tracking_configuration: Option<AwsConnectionTracking>,
    #[serde(default)]
    attachment: Option<AwsAttachment>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsPrivateIp {
    private_ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsIpv6Address {
    ipv6_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsGroupIdentifier {
    group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsConnectionTracking {
    #[serde(default)]
    tcp_established_timeout: Option<i64>,
    #[serde(default)]
    udp_stream_timeout: Option<i64>,
    #[serde(default)]
    udp_timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsAttachment {
    #[serde(default)]
    instance_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Conversion

/// Where the input came from, for the provenance comment.
struct Sources {
    security_groups: String,
    network_interfaces: Option<String>,
}

/// A native rule before it is written.
struct NativeRule {
    protocol: Protocol,
    selector: Selector,
    cidrs: Vec<String>,
    groups: Vec<String>,
    description: String,
}

#[derive(Clone, Copy)]
enum Selector {
    None,
    Ports { from: i64, to: i64 },
    Icmp { icmp_type: i64, code: i64 },
}

struct NativeGroup {
    group_id: String,
    vpc_id: Option<String>,
    name: String,
    description: String,
    ingress: Vec<NativeRule>,
    /// `None`: the AWS default egress, left to R2.
    egress: Option<Vec<NativeRule>>,
}

struct NativeInterface {
    eni: String,
    comment: String,
    /// `Some` for an `--attach`ed ENI: the local interface name.
    interface: Option<String>,
    addresses: Vec<String>,
    groups: Vec<String>,
    source_dest_check: Option<bool>,
    conntrack: Vec<(&'static str, i64)>,
}

fn import(
    described: &DescribeSecurityGroups,
    interfaces: Option<&DescribeNetworkInterfaces>,
    attach: &[Attachment],
    sources: &Sources,
) -> Result<AwsImport, ImportError> {
    let mut warnings = Vec::new();
    let names = group_names(&described.security_groups, &mut warnings);
    let mut groups = Vec::new();
    for group in &described.security_groups {
        groups.push(convert_group(group, &names, &mut warnings)?);
    }
    let interfaces = convert_interfaces(interfaces, attach, &names, &mut warnings)?;
    let toml = write_config(&groups, &interfaces, &warnings, sources);
    match config::load_str(&toml, Path::new("<import>")) {
        Ok(_) => Ok(AwsImport { toml, warnings }),
        Err(error) => Err(ImportError::InvalidOutput(error)),
    }
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
            rules.extend(convert_permission(permission, &rule, names, warnings)?);
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
    let mut add = |description: &Option<String>, cidr: Option<String>, group: Option<String>| {
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
                    description,
                });
                rules.len() - 1
            }
        };
        if let Some(rule) = rules.get_mut(index) {
            rule.cidrs.extend(cidr);
            rule.groups.extend(group);
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
            add(description, Some(cidr), None);
        }
    }
    for pair in &permission.user_id_group_pairs {
        let Some(name) = names.get(&pair.group_id) else {
            return Err(ImportError::UnknownReferencedGroup {
                rule: rule.clone(),
                referenced: pair.group_id.clone(),
            });
        };
        add(&pair.description, None, Some(name.clone()));
    }

    let has_peer = !rules.is_empty();
    for prefix_list in &permission.prefix_list_ids {
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

// ---------------------------------------------------------------------------------------------
// Output

/// Quotas large enough for what AWS has, when its defaults are not (AWS quotas can be raised).
fn quotas_needed(groups: &[NativeGroup], interfaces: &[NativeInterface]) -> Option<Quotas> {
    let defaults = Quotas::default();
    let mut rules_needed = 0;
    for group in groups {
        let directions = [Some(&group.ingress), group.egress.as_ref()];
        for rules in directions.into_iter().flatten() {
            let (mut ipv4, mut ipv6) = (0, 0);
            for rule in rules {
                for cidr in &rule.cidrs {
                    if cidr.contains(':') {
                        ipv6 += 1;
                    } else {
                        ipv4 += 1;
                    }
                }
                ipv4 += rule.groups.len();
                ipv6 += rule.groups.len();
            }
            rules_needed = rules_needed.max(ipv4).max(ipv6);
        }
    }
    let groups_needed = interfaces
        .iter()
        .filter(|interface| interface.interface.is_some())
        .map(|interface| interface.groups.len())
        .max()
        .unwrap_or(0);
    let rules_per_group = u32::try_from(rules_needed).unwrap_or(u32::MAX);
    let groups_per_interface = u32::try_from(groups_needed).unwrap_or(u32::MAX);
    if rules_per_group <= defaults.rules_per_group
        && groups_per_interface <= defaults.groups_per_interface
    {
        return None;
    }
    let rules_per_group = rules_per_group.max(defaults.rules_per_group);
    // Keep groups x rules within 1000 (R7) when what is needed allows it.
    let groups_room = (1000 / rules_per_group).min(defaults.groups_per_interface);
    Some(Quotas {
        groups_per_interface: groups_per_interface.max(groups_room).max(1),
        rules_per_group,
    })
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

/// Comments must stay on one line whatever a path or description holds.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl ImportWarning {
    /// The group a warning is about, to repeat it as a comment in that group.
    fn group_id(&self) -> Option<&str> {
        match self {
            ImportWarning::PrefixListLeftOut { rule, .. }
            | ImportWarning::PrefixListRuleDropped { rule, .. }
            | ImportWarning::PeerFamilyMismatch { rule, .. }
            | ImportWarning::HostBitsCleared { rule, .. }
            | ImportWarning::InvalidCidr { rule, .. } => Some(&rule.group_id),
            ImportWarning::GroupRenamed { group_id, .. } => Some(group_id),
            ImportWarning::InterfaceLeftOut { .. } => None,
        }
    }
}

fn write_config(
    groups: &[NativeGroup],
    interfaces: &[NativeInterface],
    warnings: &[ImportWarning],
    sources: &Sources,
) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line("# Imported by `sgwall import aws` from");
    line(&format!(
        "#   describe-security-groups:    {}",
        comment_safe(&sources.security_groups)
    ));
    if let Some(path) = &sources.network_interfaces {
        line(&format!(
            "#   describe-network-interfaces: {}",
            comment_safe(path)
        ));
    }
    line("# Groups keep their AWS names; rules name peer groups instead of their ids. A group");
    line("# without `egress` has the AWS default egress (R2). Check with `sgwall check`.");

    if let Some(quotas) = quotas_needed(groups, interfaces) {
        line("");
        line("# Raised to fit the imported groups (R7).");
        line("[quotas]");
        line(&format!(
            "groups_per_interface = {}",
            quotas.groups_per_interface
        ));
        line(&format!("rules_per_group = {}", quotas.rules_per_group));
    }

    for group in groups {
        line("");
        let vpc = group
            .vpc_id
            .as_ref()
            .map(|vpc| format!(" in {vpc}"))
            .unwrap_or_default();
        line(&format!(
            "# {}{}",
            comment_safe(&group.group_id),
            comment_safe(&vpc)
        ));
        // What the import changed or left out stays visible next to the group.
        for warning in warnings
            .iter()
            .filter(|w| w.group_id() == Some(group.group_id.as_str()))
        {
            line(&format!("# import: {}", comment_safe(&warning.to_string())));
        }
        line("[[security_group]]");
        line(&format!("name = {}", quoted(&group.name)));
        if !group.description.is_empty() {
            line(&format!("description = {}", quoted(&group.description)));
        }
        if group.egress.as_ref().is_some_and(Vec::is_empty) {
            line("egress = []");
        }
        let directions = [
            ("ingress", Some(&group.ingress)),
            ("egress", group.egress.as_ref()),
        ];
        for (direction, rules) in directions {
            for rule in rules.into_iter().flatten() {
                line("");
                line(&format!("  [[security_group.{direction}]]"));
                write_rule(rule, &mut line);
            }
        }
    }

    for interface in interfaces {
        line("");
        if !interface.comment.is_empty() {
            line(&format!("# {}", comment_safe(&interface.comment)));
        }
        match &interface.interface {
            Some(local) => {
                line("[[instance]]");
                line(&format!("name = {}", quoted(&interface.eni)));
                line(&format!("interface = {}", quoted(local)));
            }
            None => {
                line("[[member]]");
                line(&format!("name = {}", quoted(&interface.eni)));
            }
        }
        line(&format!(
            "addresses = {}",
            quoted_list(&interface.addresses)
        ));
        line(&format!(
            "security_groups = {}",
            quoted_list(&interface.groups)
        ));
        if interface.interface.is_some() {
            if let Some(check) = interface.source_dest_check {
                line(&format!("source_dest_check = {check}"));
            }
            if !interface.conntrack.is_empty() {
                let settings: Vec<String> = interface
                    .conntrack
                    .iter()
                    .map(|(key, value)| format!("{key} = {value}"))
                    .collect();
                line(&format!("conntrack = {{ {} }}", settings.join(", ")));
            }
        }
    }
    out
}

fn write_rule(rule: &NativeRule, line: &mut impl FnMut(&str)) {
    match rule.protocol {
        Protocol::Number(number) => line(&format!("  protocol = {number}")),
        protocol => line(&format!("  protocol = {}", quoted(&protocol.to_string()))),
    }
    match rule.selector {
        Selector::None => {}
        Selector::Ports { from, to } if from == to => line(&format!("  ports = {from}")),
        Selector::Ports { from, to } => line(&format!("  ports = \"{from}-{to}\"")),
        Selector::Icmp { icmp_type, code } => {
            if icmp_type != -1 {
                line(&format!("  icmp_type = {icmp_type}"));
            }
            if code != -1 {
                line(&format!("  icmp_code = {code}"));
            }
        }
    }
    if !rule.cidrs.is_empty() {
        line(&format!("  cidr = {}", quoted_list(&rule.cidrs)));
    }
    if !rule.groups.is_empty() {
        line(&format!("  groups = {}", quoted_list(&rule.groups)));
    }
    if !rule.description.is_empty() {
        line(&format!("  description = {}", quoted(&rule.description)));
    }
}

#[cfg(test)]
mod tests;
