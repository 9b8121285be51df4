//! Every message a config load can produce, in one place so that the wording stays consistent
//! and tests can assert it exactly. The diagnostic around a message already carries the file,
//! position and field path, so messages say what is wrong and how to fix it.

use std::fmt;

use crate::model::{AddressFamily, Direction, Peer, PortRange, Protocol};

/// Names one rule as written: its group, direction and index in that direction's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleName {
    pub group: String,
    pub direction: Direction,
    pub index: usize,
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {}[{}] of group \"{}\"",
            self.direction, self.index, self.group
        )
    }
}

/// How messages show one effective rule: `tcp 80 from 10.0.0.0/8`, `all to ::/0`.
pub(crate) fn rule_text(
    protocol: Protocol,
    ports: PortRange,
    peer: &Peer,
    direction: Direction,
) -> String {
    let service = match (protocol, ports) {
        (Protocol::All, _) => "all".to_string(),
        (Protocol::Number(number), _) => format!("protocol {number}"),
        (_, PortRange::Any) => protocol.to_string(),
        (_, ports) => format!("{protocol} {ports}"),
    };
    let preposition = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    format!("{service} {preposition} {peer}")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ValidationError {
    /// The TOML parser's own message; the position is the parser's.
    #[error("{message}")]
    Syntax { message: String },

    #[error("unknown field \"{field}\"; allowed fields: {allowed}")]
    UnknownField { field: String, allowed: String },

    #[error("missing required field \"{field}\"")]
    MissingField { field: String },

    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },

    #[error("integer {value} is too large")]
    IntegerTooLarge { value: String },

    /// R7: groups per interface 1..=16, rules per group at least 1.
    #[error("quota {quota} must be between {min} and {max}, got {value}")]
    QuotaOutOfRange {
        quota: &'static str,
        min: i64,
        max: i64,
        value: i64,
    },

    /// R7: groups x rules per interface <= 1000.
    #[error(
        "quotas groups_per_interface ({groups}) x rules_per_group ({rules}) = {product} exceeds \
         the limit of 1000 rules per interface"
    )]
    QuotaProductTooLarge {
        groups: i64,
        rules: i64,
        product: i64,
    },

    /// R7: per group, direction and address family; a group reference counts in both families.
    #[error(
        "security group \"{group}\" has {count} {direction} {family} rules; the quota \
         rules_per_group allows {quota}"
    )]
    GroupRulesOverQuota {
        group: String,
        direction: Direction,
        family: &'static str,
        count: usize,
        quota: u32,
    },

    /// R7: groups attached to one interface.
    #[error(
        "instance \"{instance}\" has {count} security groups; the quota groups_per_interface \
         allows {quota}"
    )]
    InstanceGroupsOverQuota {
        instance: String,
        count: usize,
        quota: u32,
    },

    /// R7: the rules of all attached groups, per interface and direction (groups x rules).
    #[error(
        "instance \"{instance}\" has {count} effective {direction} rules across its security \
         groups; the quota of rules per interface (groups x rules) allows at most 1000"
    )]
    InstanceRulesOverQuota {
        instance: String,
        direction: Direction,
        count: usize,
    },

    /// `kind` is "security group", "prefix list", "network ACL" or "subnet".
    #[error("{kind} name must be 1 to 255 characters long, got {length}")]
    NameLength { kind: &'static str, length: usize },

    /// R8.
    #[error("description is {length} characters long; at most 255 are allowed")]
    DescriptionTooLong { length: usize },

    #[error("name must not be empty")]
    EmptyName,

    #[error("duplicate {kind} name \"{name}\"; first defined at {first}")]
    DuplicateObjectName {
        kind: &'static str,
        name: String,
        first: String,
    },

    /// R9 and R9-style ids, as AWS writes them: `sg-`, `sgr-`, `eni-`, `vpc-`, `pl-` or `acl-`
    /// and 8 or 17 lowercase hex digits.
    #[error("{kind} id \"{id}\" is not \"{prefix}-\" followed by 8 or 17 lowercase hex digits")]
    InvalidId {
        kind: &'static str,
        prefix: &'static str,
        id: String,
    },

    /// Prefix list and network ACL ids, unique within their kind.
    #[error("{kind} id \"{id}\" is already used at {first}")]
    DuplicateObjectId {
        kind: &'static str,
        id: String,
        first: String,
    },

    /// Instances, members and lab clients share one namespace: the lab and the CLI address
    /// them by name.
    #[error("duplicate name \"{name}\"; already used at {first}")]
    DuplicateName { name: String, first: String },

    #[error("interface \"{interface}\" is already used at {first}")]
    DuplicateInterface { interface: String, first: String },

    /// G1, I1: an address identifies one interface for group membership and for the
    /// source/destination check.
    #[error("address {address} is already used at {first}")]
    DuplicateAddress { address: String, first: String },

    /// R3.
    #[error(
        "unknown protocol \"{protocol}\"; expected tcp, udp, icmp, icmpv6, all, -1 or a \
         protocol number 0-255"
    )]
    UnknownProtocol { protocol: String },

    /// R3.
    #[error("protocol number {number} is out of range; expected -1 (all) or 0-255")]
    ProtocolNumberOutOfRange { number: i64 },

    /// R3: tcp and udp need a port range.
    #[error("ports are required for protocol {protocol}")]
    PortsRequired { protocol: String },

    /// R3: for icmp/icmpv6 the range is a type and code.
    #[error("ports are not allowed for protocol {protocol}; use icmp_type and icmp_code")]
    PortsNotAllowedForIcmp { protocol: String },

    /// R3.
    #[error("invalid ports \"{ports}\"; expected a port \"N\" or a range \"A-B\" within 0-65535")]
    InvalidPorts { ports: String },

    /// R3.
    #[error("port {port} is out of range 0-65535")]
    PortOutOfRange { port: i64 },

    /// R3: `from..=to`.
    #[error("port range {from}-{to} is reversed; did you mean {to}-{from}?")]
    ReversedPortRange { from: u32, to: u32 },

    /// R3.
    #[error("{field} is only valid for protocol icmp or icmpv6, not {protocol}")]
    IcmpFieldForOtherProtocol {
        field: &'static str,
        protocol: String,
    },

    /// R3.
    #[error("{field} {value} is out of range; expected -1 (any) or 0-255")]
    IcmpValueOutOfRange { field: &'static str, value: i64 },

    /// R3: a code given with type -1 is invalid.
    #[error("icmp_code {code} needs an icmp_type; a code with type -1 (any) is invalid")]
    IcmpCodeWithoutType { code: i64 },

    /// R5: every rule has at least one peer.
    #[error(
        "rule has no peer; give at least one CIDR in cidr, security group in groups or prefix \
         list in prefix_lists"
    )]
    NoPeer,

    /// R5.
    #[error(
        "\"{cidr}\" is not a valid CIDR; expected an address and prefix length such as \
         10.0.0.0/8 or fd00::/8"
    )]
    InvalidCidr { cidr: String },

    /// R5: AWS requires the prefix length.
    #[error("\"{cidr}\" has no prefix length; did you mean {cidr}/{prefix_len}?")]
    CidrWithoutPrefix { cidr: String, prefix_len: u8 },

    /// R5: AWS normalises silently; sgwall tells the user.
    #[error("{cidr} has host bits set; did you mean {network}?")]
    CidrHostBits { cidr: String, network: String },

    /// R5: 0.0.0.0/0 never matches IPv6 and ::/0 never matches IPv4, so an icmp rule with an
    /// IPv6 peer (or icmpv6 with IPv4) can never match anything.
    #[error(
        "protocol {protocol} can never match the {family} peer {cidr}; use {instead} for {family}"
    )]
    IcmpFamilyMismatch {
        protocol: &'static str,
        family: &'static str,
        cidr: String,
        instead: &'static str,
    },

    /// G5.
    #[error("{rule} references unknown security group \"{group}\"")]
    UnknownGroupReference { rule: RuleName, group: String },

    /// G5: groups attached to an instance or member must exist.
    #[error("{owner} uses unknown security group \"{group}\"")]
    UnknownAttachedGroup { owner: String, group: String },

    #[error("security group \"{group}\" is listed twice; first at {first}")]
    DuplicateAttachedGroup { group: String, first: String },

    #[error("security_groups must list at least one security group")]
    NoSecurityGroups,

    #[error("addresses must list at least one address")]
    NoAddresses,

    #[error("\"{address}\" is not an IP address")]
    InvalidAddress { address: String },

    #[error("\"{address}\" has a prefix length; give the host address alone, such as {host}")]
    AddressWithPrefix { address: String, host: String },

    #[error("{address} is not a unicast host address")]
    NotUnicastAddress { address: String },

    #[error("invalid interface name \"{interface}\": {reason}")]
    InvalidInterfaceName {
        interface: String,
        reason: &'static str,
    },

    #[error("invalid interface pattern \"{pattern}\": {reason}")]
    InvalidInterfacePattern { pattern: String, reason: String },

    /// An instance must say how its interface is found.
    #[error(
        "missing \"interface\": give the host interface's name or a pattern such as \"tap101i*\", \
         its \"host_mac\", or the guest's \"mac\" (libvirt's tap carries it with the first octet fe)"
    )]
    NoInterface,

    #[error("give \"interface\" or \"host_mac\", not both: each finds the interface")]
    InterfaceAndHostMac,

    #[error("\"{value}\" is not a MAC address such as 52:54:00:12:34:56: {reason}")]
    InvalidMac { value: String, reason: &'static str },

    #[error("{value} is not a unicast MAC address")]
    NotUnicastMac { value: String },

    /// Two instances would find the same interface.
    #[error("an interface with MAC {mac} is already claimed at {first}")]
    DuplicateHostMac { mac: String, first: String },

    #[error("unknown attach mode \"{value}\"; expected \"port\" or \"host\"")]
    UnknownAttachMode { value: String },

    #[error("unknown host_ingress_hook \"{value}\"; expected \"xdp\" or \"tc\"")]
    UnknownHostIngressHook { value: String },

    /// C5, C6.
    #[error("{field} must be between {min} and {max}{unit}, got {value}")]
    ConntrackOutOfRange {
        field: &'static str,
        min: i64,
        max: i64,
        unit: &'static str,
        value: i64,
    },

    /// P1.
    #[error("{rule} references unknown prefix list \"{prefix_list}\"")]
    UnknownPrefixListReference { rule: RuleName, prefix_list: String },

    /// P1.
    #[error("unknown family \"{value}\"; expected \"IPv4\" or \"IPv6\"")]
    UnknownFamily { value: String },

    /// P1: AWS allows up to 1000 entries in one prefix list.
    #[error("max_entries must be between 1 and 1000, got {value}")]
    MaxEntriesOutOfRange { value: i64 },

    /// P1.
    #[error("prefix list \"{name}\" has {count} entries; its max_entries allows {max_entries}")]
    PrefixListOverMaxEntries {
        name: String,
        count: usize,
        max_entries: u32,
    },

    /// P1: a prefix list holds CIDRs of its own family only.
    #[error("{cidr} is not an {family} CIDR; the prefix list's family is {family}")]
    PrefixListEntryFamily { cidr: String, family: AddressFamily },

    #[error("duplicate entry {cidr}; first at {first}")]
    DuplicatePrefixListEntry { cidr: String, first: String },

    /// N1.
    #[error("only one network ACL can be the default one; {first} already is")]
    SecondDefaultAcl { first: String },

    /// N2.
    #[error("rule number must be between 1 and 32766, got {value}")]
    AclRuleNumberOutOfRange { value: i64 },

    /// N2: numbers order the entries, so each is used once per direction.
    #[error("rule number {number} is already used at {first}")]
    DuplicateAclRuleNumber { number: u16, first: String },

    /// N2.
    #[error("unknown action \"{value}\"; expected \"allow\" or \"deny\"")]
    UnknownAclAction { value: String },

    /// N2: 20 entries per direction by default, up to 40.
    #[error(
        "network ACL \"{acl}\" has {count} {direction} rules; the quota network_acl_rules \
         allows {quota}"
    )]
    AclRulesOverQuota {
        acl: String,
        direction: Direction,
        count: usize,
        quota: u32,
    },

    /// N1.
    #[error("cidr must list the subnet's CIDR, one per address family")]
    NoSubnetCidr,

    /// N1.
    #[error("the subnet already has an {family} CIDR at {first}; a subnet has one per family")]
    SubnetFamilyTwice {
        family: AddressFamily,
        first: String,
    },

    /// N1: an address belongs to one subnet.
    #[error("{cidr} overlaps {other} of subnet \"{subnet}\"; subnets may not overlap")]
    SubnetsOverlap {
        cidr: String,
        other: String,
        subnet: String,
    },

    /// N1.
    #[error("subnet \"{subnet}\" uses unknown network ACL \"{acl}\"")]
    UnknownNetworkAcl { subnet: String, acl: String },

    /// N1: a subnet that names no ACL uses the default one, which gets the reserved name when
    /// no ACL is marked default.
    #[error(
        "subnet \"{subnet}\" names no network_acl, so it uses the default network ACL, but the \
         ACL named \"{name}\" is not marked default = true; mark one ACL default or name this \
         subnet's ACL"
    )]
    DefaultAclNameTaken { subnet: String, name: &'static str },

    /// N1: an instance belongs to the one subnet its addresses fall in.
    #[error(
        "instance \"{instance}\" has addresses in subnet \"{first_subnet}\" ({first_address}) \
         and in subnet \"{second_subnet}\" ({second_address}); an instance belongs to one subnet"
    )]
    InstanceInTwoSubnets {
        instance: String,
        first_subnet: String,
        first_address: String,
        second_subnet: String,
        second_address: String,
    },

    /// AWS rejects a rule that repeats another in the same group and direction.
    #[error("duplicate rule: {rule} is already allowed by {first}")]
    DuplicateRule { rule: String, first: String },

    /// R9: ids are unique across the config, the derived ones included.
    #[error("id \"{id}\" is already the id of {first}; give this one another id")]
    DuplicateId { id: String, first: String },

    /// R9: a rule of several peers is several AWS rules, each with its own id and tags.
    #[error(
        "\"{field}\" belongs to one rule, and this rule has {peers} peers (each is a rule of its \
         own); write one rule per peer to give it {field}"
    )]
    OnePeerOnly { field: &'static str, peers: usize },

    #[error("tag key must be 1 to 128 characters long, got {length}")]
    TagKeyLength { length: usize },

    #[error("tag key \"{key}\" starts with \"aws:\", which AWS reserves")]
    TagKeyReserved { key: String },

    #[error("tag value is {length} characters long; at most 256 are allowed")]
    TagValueTooLong { length: usize },

    #[error("{count} tags; at most 50 are allowed per resource")]
    TooManyTags { count: usize },
}

impl ValidationError {
    /// What kind of problem this is, for callers that answer in another vocabulary (the EC2
    /// API's error codes).
    pub(crate) fn kind(&self) -> super::ProblemKind {
        use super::ProblemKind;
        match self {
            Self::GroupRulesOverQuota { .. } => ProblemKind::RulesPerGroupQuota,
            Self::InstanceGroupsOverQuota { .. } => ProblemKind::GroupsPerInterfaceQuota,
            Self::InstanceRulesOverQuota { .. } => ProblemKind::RulesPerInterfaceQuota,
            Self::DuplicateRule { .. } => ProblemKind::DuplicateRule,
            Self::DuplicateObjectName {
                kind: "security group",
                ..
            } => ProblemKind::DuplicateGroupName,
            Self::DuplicateId { .. } => ProblemKind::DuplicateId,
            Self::UnknownGroupReference { .. } | Self::UnknownAttachedGroup { .. } => {
                ProblemKind::UnknownGroup
            }
            _ => ProblemKind::Invalid,
        }
    }
}

/// A port that is usually an administration or database service, and its usual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SensitivePort {
    pub port: u16,
    pub service: &'static str,
}

fn port_list(ports: &[SensitivePort]) -> String {
    let listed: Vec<String> = ports
        .iter()
        .map(|p| format!("{} ({})", p.port, p.service))
        .collect();
    match listed.len() {
        1 => format!("port {} is", listed.join(", ")),
        _ => format!("ports {} are", listed.join(", ")),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ValidationWarning {
    /// R3: AWS ignores ports for `all` and for protocol numbers other than tcp/udp/icmp/icmpv6.
    #[error("ports are ignored for protocol {protocol}")]
    PortsIgnored { protocol: String },

    #[error(
        "host_ingress_hook only applies to attach = \"host\"; it is ignored with attach = \"port\""
    )]
    HostIngressHookIgnored,

    #[error("{} open to the whole internet ({cidr})", port_list(.ports))]
    SensitivePortsOpenToInternet {
        ports: Vec<SensitivePort>,
        cidr: String,
    },

    #[error("all protocols are allowed from {cidr}, a network wider than /16")]
    AllProtocolsFromWideNetwork { cidr: String },

    /// N1: with subnets in the config, an instance outside all of them is likely a mistake.
    #[error("instance \"{instance}\" is in no subnet, so no network ACL filters its traffic")]
    InstanceOutsideSubnets { instance: String },

    /// R6: rules of all attached groups are unioned, so a rule equal to another, or inside
    /// another's peer, protocol and ports, adds nothing.
    #[error(
        "on interface \"{interface}\" (instance \"{instance}\"), {rule} ({rule_text}) {overlap} \
         {other} ({other_text})"
    )]
    RuleOverlaps {
        interface: String,
        instance: String,
        rule: RuleName,
        rule_text: String,
        overlap: Overlap,
        other: RuleName,
        other_text: String,
    },
}

/// How one rule relates to another that makes it useless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overlap {
    Duplicates,
    IsCoveredBy,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overlap::Duplicates => "duplicates",
            Overlap::IsCoveredBy => "is covered by",
        })
    }
}
