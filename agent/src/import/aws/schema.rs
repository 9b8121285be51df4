//! The JSON the AWS CLI prints, in its exact shapes: `aws ec2 describe-security-groups`,
//! `describe-network-interfaces`, `describe-network-acls`, `describe-subnets`,
//! `describe-managed-prefix-lists` and `get-managed-prefix-list-entries`. Fields sgwall does not
//! use (OwnerId, Arns, States, ...) are ignored.

use std::path::Path;

use serde::{Deserialize, de::DeserializeOwned};

use super::errors::ImportError;

/// Parses the output of `aws ec2 {command}` read from `path`.
pub(crate) fn parse<T: DeserializeOwned>(
    json: &str,
    path: &Path,
    command: &'static str,
) -> Result<T, ImportError> {
    serde_json::from_str(json).map_err(|source| ImportError::Json {
        path: path.to_path_buf(),
        command,
        source,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeSecurityGroups {
    pub security_groups: Vec<AwsSecurityGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsSecurityGroup {
    pub group_id: String,
    pub group_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub ip_permissions: Vec<AwsPermission>,
    #[serde(default)]
    pub ip_permissions_egress: Vec<AwsPermission>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsPermission {
    pub ip_protocol: String,
    #[serde(default)]
    pub from_port: Option<i64>,
    #[serde(default)]
    pub to_port: Option<i64>,
    #[serde(default)]
    pub ip_ranges: Vec<AwsIpRange>,
    #[serde(default)]
    pub ipv6_ranges: Vec<AwsIpv6Range>,
    #[serde(default)]
    pub user_id_group_pairs: Vec<AwsGroupPair>,
    #[serde(default)]
    pub prefix_list_ids: Vec<AwsPrefixList>,
}

/// The peers of one permission, sharing one description: what the Terraform and
/// CloudFormation importers, which hold rules peer by peer, build a permission from.
#[derive(Default)]
pub(crate) struct Peers {
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub groups: Vec<String>,
    pub prefix_lists: Vec<String>,
    pub description: Option<String>,
}

impl AwsPermission {
    pub(crate) fn new(
        ip_protocol: String,
        from_port: Option<i64>,
        to_port: Option<i64>,
        peers: Peers,
    ) -> Self {
        let description = peers.description;
        Self {
            ip_protocol,
            from_port,
            to_port,
            ip_ranges: peers
                .ipv4
                .into_iter()
                .map(|cidr_ip| AwsIpRange {
                    cidr_ip,
                    description: description.clone(),
                })
                .collect(),
            ipv6_ranges: peers
                .ipv6
                .into_iter()
                .map(|cidr_ipv6| AwsIpv6Range {
                    cidr_ipv6,
                    description: description.clone(),
                })
                .collect(),
            user_id_group_pairs: peers
                .groups
                .into_iter()
                .map(|group_id| AwsGroupPair {
                    group_id,
                    description: description.clone(),
                })
                .collect(),
            prefix_list_ids: peers
                .prefix_lists
                .into_iter()
                .map(|prefix_list_id| AwsPrefixList {
                    prefix_list_id,
                    description: description.clone(),
                })
                .collect(),
        }
    }
}

/// A protocol as the CLI prints it in a permission: `-1`, a name for TCP, UDP, ICMP and
/// ICMPv6, else the number; from a name, a number, `all` or `-1` in any case.
pub(crate) fn cli_protocol(text: &str) -> String {
    let text = text.to_lowercase();
    match text.as_str() {
        "all" | "-1" => "-1".to_string(),
        "6" => "tcp".to_string(),
        "17" => "udp".to_string(),
        "1" => "icmp".to_string(),
        "58" => "icmpv6".to_string(),
        _ => text,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsIpRange {
    pub cidr_ip: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsIpv6Range {
    pub cidr_ipv6: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsGroupPair {
    pub group_id: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsPrefixList {
    pub prefix_list_id: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsTag {
    pub key: String,
    pub value: String,
}

/// The value of the `Name` tag, which the console shows as the object's name.
pub(crate) fn name_tag(tags: &[AwsTag]) -> Option<&str> {
    tags.iter()
        .find(|tag| tag.key == "Name")
        .map(|tag| tag.value.as_str())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeManagedPrefixLists {
    pub prefix_lists: Vec<AwsManagedPrefixList>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsManagedPrefixList {
    pub prefix_list_id: String,
    pub prefix_list_name: String,
    /// `IPv4` or `IPv6`.
    pub address_family: String,
    #[serde(default)]
    pub max_entries: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetManagedPrefixListEntries {
    pub entries: Vec<AwsPrefixListEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsPrefixListEntry {
    pub cidr: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeNetworkAcls {
    pub network_acls: Vec<AwsNetworkAcl>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsNetworkAcl {
    pub network_acl_id: String,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub associations: Vec<AwsAclAssociation>,
    #[serde(default)]
    pub entries: Vec<AwsAclEntry>,
    #[serde(default)]
    pub tags: Vec<AwsTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsAclAssociation {
    pub subnet_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsAclEntry {
    #[serde(default)]
    pub cidr_block: Option<String>,
    #[serde(default)]
    pub ipv6_cidr_block: Option<String>,
    pub egress: bool,
    /// A protocol number as text, `-1` for all.
    pub protocol: String,
    /// `allow` or `deny`.
    pub rule_action: String,
    pub rule_number: i64,
    #[serde(default)]
    pub port_range: Option<AwsPortRange>,
    #[serde(default)]
    pub icmp_type_code: Option<AwsIcmpTypeCode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsPortRange {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsIcmpTypeCode {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub r#type: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeSubnets {
    pub subnets: Vec<AwsSubnet>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsSubnet {
    pub subnet_id: String,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub cidr_block: Option<String>,
    #[serde(default)]
    pub ipv6_cidr_block_association_set: Vec<AwsIpv6CidrAssociation>,
    #[serde(default)]
    pub tags: Vec<AwsTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsIpv6CidrAssociation {
    pub ipv6_cidr_block: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeNetworkInterfaces {
    pub network_interfaces: Vec<AwsNetworkInterface>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsNetworkInterface {
    pub network_interface_id: String,
    #[serde(default)]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub private_ip_addresses: Vec<AwsPrivateIp>,
    #[serde(default)]
    pub ipv6_addresses: Vec<AwsIpv6Address>,
    #[serde(default)]
    pub groups: Vec<AwsGroupIdentifier>,
    #[serde(default)]
    pub source_dest_check: Option<bool>,
    #[serde(default)]
    pub connection_tracking_configuration: Option<AwsConnectionTracking>,
    #[serde(default)]
    pub attachment: Option<AwsAttachment>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsPrivateIp {
    pub private_ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsIpv6Address {
    pub ipv6_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsGroupIdentifier {
    pub group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsConnectionTracking {
    #[serde(default)]
    pub tcp_established_timeout: Option<i64>,
    #[serde(default)]
    pub udp_stream_timeout: Option<i64>,
    #[serde(default)]
    pub udp_timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AwsAttachment {
    #[serde(default)]
    pub instance_id: Option<String>,
}
