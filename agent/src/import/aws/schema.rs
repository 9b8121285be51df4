//! The JSON the AWS CLI prints, in its exact shapes: `aws ec2 describe-security-groups` and
//! `aws ec2 describe-network-interfaces`. Fields sgwall does not use (Tags, OwnerId, ...) are
//! ignored.

use std::path::Path;

use serde::{Deserialize, de::DeserializeOwned};

use super::errors::ImportError;

/// Parses the output of `aws ec2 {command}` read from `path`.
pub(super) fn parse<T: DeserializeOwned>(
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
pub(super) struct DescribeSecurityGroups {
    pub security_groups: Vec<AwsSecurityGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsSecurityGroup {
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
pub(super) struct AwsPermission {
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsIpRange {
    pub cidr_ip: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsIpv6Range {
    pub cidr_ipv6: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsGroupPair {
    pub group_id: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsPrefixList {
    pub prefix_list_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeNetworkInterfaces {
    pub network_interfaces: Vec<AwsNetworkInterface>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsNetworkInterface {
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
pub(super) struct AwsPrivateIp {
    pub private_ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsIpv6Address {
    pub ipv6_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsGroupIdentifier {
    pub group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsConnectionTracking {
    #[serde(default)]
    pub tcp_established_timeout: Option<i64>,
    #[serde(default)]
    pub udp_stream_timeout: Option<i64>,
    #[serde(default)]
    pub udp_timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AwsAttachment {
    #[serde(default)]
    pub instance_id: Option<String>,
}
