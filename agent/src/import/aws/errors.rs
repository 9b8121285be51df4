//! What an import can refuse (errors) and what it carries over only in part (warnings), each
//! naming the AWS group, permission or interface it is about.

use std::{fmt, path::PathBuf};

use crate::{config::ConfigError, model::Direction};

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
    #[error(
        "--prefix-list-entries names {id}, which is not in the describe-managed-prefix-lists \
         output (its family and max entries come from there)"
    )]
    EntriesOfUnknownPrefixList { id: String },
    #[error(
        "expected PREFIX_LIST_ID=FILE, such as pl-0123456789abcdef0=entries.json, got \"{value}\""
    )]
    PrefixListEntriesSyntax { value: String },
    /// N2.
    #[error("network ACL {acl} entry {number}: unsupported {what}")]
    InvalidAclEntry {
        acl: String,
        number: i64,
        what: String,
    },
    /// N1: a subnet always has an ACL; importing it without one would admit what that denies.
    #[error(
        "subnet {subnet} is associated with no network ACL in the describe-network-acls output \
         and its VPC's default ACL is not there either"
    )]
    SubnetWithoutAcl { subnet: String },
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
    /// P1: a prefix list is imported only with its entries.
    #[error(
        "{rule}: prefix list {prefix_list} is not among the imported prefix lists \
         (--prefix-lists, --prefix-list-entries); the rule is imported without it"
    )]
    PrefixListLeftOut {
        rule: AwsRuleName,
        prefix_list: String,
    },
    #[error(
        "{rule}: prefix list {prefix_list} is not among the imported prefix lists \
         (--prefix-lists, --prefix-list-entries) and the rule has no other peer; the rule is \
         dropped"
    )]
    PrefixListRuleDropped {
        rule: AwsRuleName,
        prefix_list: String,
    },
    #[error(
        "prefix list {id}: no --prefix-list-entries {id}=FILE (the output of `aws ec2 \
         get-managed-prefix-list-entries --prefix-list-id {id}`); the list is left out"
    )]
    PrefixListWithoutEntries { id: String },
    #[error(
        "network ACLs without --subnets apply to no instance: an instance is in the subnet its \
         address falls in (N1)"
    )]
    AclsWithoutSubnets,
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

impl ImportWarning {
    /// The group a warning is about, to repeat it as a comment in that group.
    pub(super) fn group_id(&self) -> Option<&str> {
        match self {
            ImportWarning::PrefixListLeftOut { rule, .. }
            | ImportWarning::PrefixListRuleDropped { rule, .. }
            | ImportWarning::PeerFamilyMismatch { rule, .. }
            | ImportWarning::HostBitsCleared { rule, .. }
            | ImportWarning::InvalidCidr { rule, .. } => Some(&rule.group_id),
            ImportWarning::GroupRenamed { group_id, .. } => Some(group_id),
            ImportWarning::InterfaceLeftOut { .. }
            | ImportWarning::PrefixListWithoutEntries { .. }
            | ImportWarning::AclsWithoutSubnets => None,
        }
    }
}
