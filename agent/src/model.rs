//! The validated policy: what `config::load` produces and every later stage (evaluator,
//! compiler, lab) consumes. Values here have passed validation, so consumers trust them: CIDRs
//! have no host bits, ports are ordered ranges, group references resolve, names are unique.
//!
//! The default egress of a group whose egress was never set (R2) is materialised here as two
//! rules (all protocols to 0.0.0.0/0 and to ::/0) with `egress_is_default` set, so no consumer
//! needs to know about the special case. Likewise the default network ACL (N1): a subnet that
//! names no ACL uses the one marked default, and when the config marks none, an ACL named
//! [`DEFAULT_ACL_NAME`] with the AWS default entries is added.
//!
//! Every group, rule (one per peer), instance and the VPC carry their AWS-style id (R9): the
//! config's, or derived by [`crate::ids`].

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ids::{self, IdKind};

/// AWS tags: keys are unique, so a map; sorted, as AWS lists them.
pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub security_groups: Vec<SecurityGroup>,
    pub instances: Vec<Instance>,
    pub members: Vec<Member>,
    pub quotas: Quotas,
    pub lab: Lab,
    /// Managed prefix lists (P1), referenced by rules as peers.
    pub prefix_lists: Vec<PrefixList>,
    /// Subnets (N1): no two overlap, and an instance belongs to the one its addresses fall in.
    pub subnets: Vec<Subnet>,
    /// Network ACLs (N1, N2), each subnet's included.
    pub network_acls: Vec<NetworkAcl>,
    /// The one VPC every group and interface of this config is in (for the EC2 API).
    pub vpc: Vpc,
}

/// `[vpc]`: what the EC2 API answers about the VPC. Enforcement does not depend on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: Option<IpNet>,
}

impl Default for Vpc {
    fn default() -> Self {
        Self {
            id: ids::derived(IdKind::Vpc, "sgwall"),
            cidr: None,
        }
    }
}

/// R7 quotas in force for this config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quotas {
    /// Security groups per interface: 5 by default, at most 16.
    pub groups_per_interface: u32,
    /// Rules per group, per direction and per address family: 60 by default. The product with
    /// `groups_per_interface` may not exceed 1000.
    pub rules_per_group: u32,
    /// Entries per network ACL and direction (N2): 20 by default, at most 40.
    pub network_acl_rules: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            groups_per_interface: 5,
            rules_per_group: 60,
            network_acl_rules: 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    pub name: String,
    /// `sg-` id (R9).
    pub id: String,
    pub description: String,
    pub tags: Tags,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// True when the config never set `egress` and `egress` holds the AWS default (R2).
    pub egress_is_default: bool,
}

impl SecurityGroup {
    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// One rule as written: a protocol and port range, and one or more peers. Each peer is a rule
/// of its own for matching, quotas and ids (AWS counts each CIDR and group separately).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peers: Vec<Peer>,
    pub description: String,
    /// The `sgr-` id of each peer's rule, in the order of `peers` (R9). May be shorter than
    /// `peers` in policies built by code rather than loaded: [`rule_id`] derives what is missing.
    pub ids: Vec<String>,
    /// Only a rule with one peer can carry tags (a tag belongs to one `sgr-` rule).
    pub tags: Tags,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Towards the instance (AWS inbound). The peer is the packet's source.
    Ingress,
    /// From the instance (AWS outbound). The peer is the packet's destination.
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn index(self) -> u8 {
        match self {
            Direction::Ingress => filter_common::DIR_INGRESS,
            Direction::Egress => filter_common::DIR_EGRESS,
        }
    }

    pub fn reverse(self) -> Direction {
        match self {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// R3. Numbers 6, 17, 1 and 58 are normalised to their names during validation, so
/// `Number` never holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Number(u8),
}

impl Protocol {
    /// The IP protocol number, or `None` for `all`.
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::All => None,
            Protocol::Tcp => Some(filter_common::PROTO_TCP),
            Protocol::Udp => Some(filter_common::PROTO_UDP),
            Protocol::Icmp => Some(filter_common::PROTO_ICMP),
            Protocol::Icmpv6 => Some(filter_common::PROTO_ICMPV6),
            Protocol::Number(n) => Some(n),
        }
    }

    pub fn from_number(number: u8) -> Protocol {
        match number {
            filter_common::PROTO_TCP => Protocol::Tcp,
            filter_common::PROTO_UDP => Protocol::Udp,
            filter_common::PROTO_ICMP => Protocol::Icmp,
            filter_common::PROTO_ICMPV6 => Protocol::Icmpv6,
            n => Protocol::Number(n),
        }
    }

    /// AWS's spelling (R3): `-1` or `all`, a name, or a number (6/17/1/58 become names).
    pub fn from_aws(text: &str) -> Option<Protocol> {
        match text {
            "-1" | "all" => Some(Protocol::All),
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            "icmpv6" => Some(Protocol::Icmpv6),
            number => number.parse::<u8>().ok().map(Protocol::from_number),
        }
    }

    /// Whether a packet of IP protocol `number` is of this protocol.
    pub fn matches(self, number: u8) -> bool {
        self.number().is_none_or(|own| own == number)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::All => f.write_str("all"),
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Icmpv6 => f.write_str("icmpv6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

/// What a rule's port part admits, by protocol (R3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PortRange {
    /// Every port: protocol `all` and protocol numbers other than tcp/udp/icmp/icmpv6.
    Any,
    /// TCP or UDP destination ports `from..=to` (R4).
    Ports { from: u16, to: u16 },
    /// ICMP or ICMPv6: `None` is any (AWS -1). A code is only ever set with a type.
    Icmp {
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
}

impl PortRange {
    /// Whether the selector of a packet (destination port, or ICMP type and code) is admitted.
    pub fn admits_port(self, port: u16) -> bool {
        match self {
            PortRange::Any => true,
            PortRange::Ports { from, to } => (from..=to).contains(&port),
            PortRange::Icmp { .. } => false,
        }
    }

    pub fn admits_icmp(self, icmp_type: u8, code: u8) -> bool {
        match self {
            PortRange::Any => true,
            PortRange::Ports { .. } => false,
            PortRange::Icmp {
                icmp_type: want_type,
                code: want_code,
            } => want_type.is_none_or(|t| t == icmp_type) && want_code.is_none_or(|c| c == code),
        }
    }

    /// True when the range covers every port or ICMP message.
    pub fn is_everything(self) -> bool {
        match self {
            PortRange::Any => true,
            PortRange::Ports { from, to } => from == 0 && to == u16::MAX,
            PortRange::Icmp { icmp_type, code } => icmp_type.is_none() && code.is_none(),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRange::Any => f.write_str("all"),
            PortRange::Ports { from, to } if from == to => write!(f, "{from}"),
            PortRange::Ports { from, to } => write!(f, "{from}-{to}"),
            PortRange::Icmp { icmp_type, code } => {
                let show = |v: &Option<u8>| v.map_or("any".to_string(), |n| n.to_string());
                write!(f, "type {} code {}", show(icmp_type), show(code))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// No host bits set (R5).
    Cidr(IpNet),
    /// A group name that exists in the config (G5).
    Group(String),
    /// The name of a prefix list that exists in the config (P1).
    PrefixList(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Cidr(net) => write!(f, "{net}"),
            Peer::Group(name) => write!(f, "sg:{name}"),
            Peer::PrefixList(name) => write!(f, "pl:{name}"),
        }
    }
}

/// An address family, where a thing holds addresses of one family only (P1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AddressFamily {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl AddressFamily {
    pub fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => AddressFamily::V4,
            IpNet::V6(_) => AddressFamily::V6,
        }
    }

    pub fn of_address(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => AddressFamily::V4,
            IpAddr::V6(_) => AddressFamily::V6,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::V4 => "IPv4",
            AddressFamily::V6 => "IPv6",
        })
    }
}

/// A managed prefix list (P1): a named set of CIDRs of one family. A rule naming it matches any
/// of its entries; for quotas it counts as `max_entries` rules (R7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    pub name: String,
    /// `pl-` and hex digits: the config's, or derived from the name.
    pub id: String,
    pub family: AddressFamily,
    pub max_entries: u32,
    /// Distinct CIDRs of `family`, at most `max_entries`, in file order.
    pub entries: Vec<PrefixListEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefixListEntry {
    pub cidr: IpNet,
    pub description: String,
}

impl PrefixList {
    pub fn contains(&self, address: IpAddr) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.cidr.contains(&address))
    }
}

/// A subnet (N1): at most one CIDR per family, and the network ACL it uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subnet {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    /// A network ACL in [`Config::network_acls`].
    pub network_acl: String,
}

impl Subnet {
    pub fn contains(&self, address: IpAddr) -> bool {
        self.cidrs.iter().any(|cidr| cidr.contains(&address))
    }
}

/// The name of the default network ACL a config gets when it marks none default (N1).
pub const DEFAULT_ACL_NAME: &str = "default";

/// A network ACL (N1-N3): numbered entries per direction, lowest number first, first match
/// wins, and what matches no entry is denied (`*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkAcl {
    pub name: String,
    /// `acl-` and hex digits: the config's, or derived from the name.
    pub id: String,
    /// The ACL subnets use when they name none.
    pub is_default: bool,
    /// Sorted by number, numbers unique.
    pub ingress: Vec<AclEntry>,
    /// Sorted by number, numbers unique.
    pub egress: Vec<AclEntry>,
}

/// One numbered ACL entry (N2): protocol and ports as in R3, one CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AclEntry {
    /// 1..=32766.
    pub number: u16,
    pub action: AclAction,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub cidr: IpNet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Allow,
    Deny,
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        })
    }
}

impl NetworkAcl {
    pub fn entries(&self, direction: Direction) -> &[AclEntry] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The entries of the default ACL AWS creates with a VPC: everything allowed, both ways,
    /// both families (N1).
    pub fn default_entries() -> Vec<AclEntry> {
        let all = |number, cidr| AclEntry {
            number,
            action: AclAction::Allow,
            protocol: Protocol::All,
            ports: PortRange::Any,
            cidr,
        };
        vec![
            all(100, IpNet::V4(ipnet::Ipv4Net::default())),
            all(101, IpNet::V6(ipnet::Ipv6Net::default())),
        ]
    }

    /// Whether this ACL admits every packet both ways: in each direction and family, the first
    /// entry that covers all traffic of that family allows, and no entry before it denies. Such
    /// an ACL (the default one) costs an interface nothing in the datapath.
    pub fn admits_everything(&self) -> bool {
        Direction::BOTH.iter().all(|direction| {
            [AddressFamily::V4, AddressFamily::V6].iter().all(|family| {
                let mut of_family = self
                    .entries(*direction)
                    .iter()
                    .filter(|entry| AddressFamily::of(&entry.cidr) == *family);
                of_family
                    .find(|entry| entry.action == AclAction::Deny || entry.covers_all_traffic())
                    .is_some_and(|entry| entry.action == AclAction::Allow)
            })
        })
    }
}

impl AclEntry {
    /// Whether every packet of the entry's family matches it.
    pub fn covers_all_traffic(&self) -> bool {
        self.protocol == Protocol::All && self.cidr.prefix_len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// Host side of a VM tap or container veth: TC both ways.
    Port,
    /// This host's own NIC.
    Host,
}

impl AttachMode {
    /// The config's spelling, as `status` and `plan` show it.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Port => "port",
            AttachMode::Host => "host",
        }
    }
}

/// How inbound traffic is hooked on an `attach = "host"` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostIngressHook {
    Xdp,
    Tc,
}

/// Where on an interface a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    XdpIngress,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn program(self) -> &'static str {
        match self {
            Hook::XdpIngress => filter_common::program_names::XDP_INGRESS,
            Hook::TcIngress => filter_common::program_names::TC_INGRESS,
            Hook::TcEgress => filter_common::program_names::TC_EGRESS,
        }
    }

    /// A short name, used in pin file names and in `status`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::XdpIngress => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }

    /// The hooks an instance's interface needs: both TC hooks for a port; for the host's own
    /// NIC, XDP (or TC) for inbound and TC egress for outbound.
    pub fn for_instance(instance: &Instance) -> [Hook; 2] {
        match (instance.attach, instance.host_ingress_hook) {
            (AttachMode::Port, _) => [Hook::TcIngress, Hook::TcEgress],
            (AttachMode::Host, HostIngressHook::Xdp) => [Hook::XdpIngress, Hook::TcEgress],
            (AttachMode::Host, HostIngressHook::Tc) => [Hook::TcIngress, Hook::TcEgress],
        }
    }
}

/// A MAC address (EUI-48), in transmission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The MAC libvirt gives a guest's tap: the guest's, with the first octet set to 0xfe (so
    /// the host side never wins a bridge's lowest-MAC election against a real port).
    pub fn libvirt_tap(self) -> MacAddr {
        let mut octets = self.0;
        octets[0] = 0xfe;
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for MacAddr {
    type Err = &'static str;

    /// Six hexadecimal octets separated by colons, as `ip link` prints them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or("it needs six octets")?;
            if part.len() != 2 {
                return Err("each octet is two hexadecimal digits");
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| "it is not hexadecimal")?;
        }
        if parts.next().is_some() {
            return Err("it needs six octets");
        }
        Ok(MacAddr(octets))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How the agent finds an instance's host interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
pub enum InterfaceMatch {
    /// `interface = "vnet3"`: the interface of that name.
    Name,
    /// `interface = "tap101i*"`: the one interface whose name matches the shell-style pattern.
    Glob(String),
    /// The one interface with this MAC: `host_mac`, or libvirt's tap of the guest's `mac`.
    HostMac(MacAddr),
}

impl InterfaceMatch {
    /// What is looked for, as messages and `plan` show it before it is found. Never a valid
    /// interface name for the MAC case (it holds a space), so it cannot collide with one.
    pub fn describe(&self, interface: &str) -> String {
        match self {
            InterfaceMatch::Name | InterfaceMatch::Glob(_) => interface.to_string(),
            InterfaceMatch::HostMac(mac) => format!("mac {mac}"),
        }
    }
}

/// An interface on this host that sgwall enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub name: String,
    /// `eni-` id (R9): the instance is its interface, as an ENI is in the EC2 API.
    pub id: String,
    pub tags: Tags,
    /// Host-side interface name (at most 15 bytes). For an instance found by pattern or MAC
    /// this is the interface found (`locate::resolve`), or until one is,
    /// [`InterfaceMatch::describe`] of what is looked for.
    pub interface: String,
    /// How [`Instance::interface`] is found.
    pub interface_match: InterfaceMatch,
    /// The guest's MAC, when the config gives it: port security (I7) and the EUI-64
    /// link-local address (I5).
    pub mac: Option<MacAddr>,
    /// DHCP client traffic and the server's replies pass without rules (I6).
    pub dhcp: bool,
    pub attach: AttachMode,
    pub host_ingress_hook: HostIngressHook,
    /// The instance's own addresses (no prefix): all count for group references (G2) and for
    /// the source/destination check (I1).
    pub addresses: Vec<IpAddr>,
    /// Attachment order fixes rule ids (see [`effective_rules`]).
    pub security_groups: Vec<String>,
    pub source_dest_check: bool,
    pub related_icmp: bool,
    /// CIDRs never filtered on this interface (I3).
    pub exempt: Vec<IpNet>,
    pub conntrack: Conntrack,
}

impl Instance {
    /// Whether the source/destination check (I1) and the guards (I7) apply: on ports only.
    pub fn checks_addresses(&self) -> bool {
        self.attach == AttachMode::Port && self.source_dest_check
    }

    /// The addresses the source/destination check accepts as the instance's own (I1, I5): its
    /// `addresses` and, when its MAC is known, the EUI-64 link-local address of that MAC.
    /// Group membership (G1) counts `addresses` only: a link-local address means nothing
    /// beyond the instance's own link.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        let mut own = self.addresses.clone();
        if let Some(link_local) = self.eui64_link_local()
            && !own.contains(&link_local)
        {
            own.push(link_local);
        }
        own
    }

    /// The link-local address a guest derives from its MAC by modified EUI-64 (I5).
    pub fn eui64_link_local(&self) -> Option<IpAddr> {
        self.mac.map(|mac| {
            IpAddr::V6(std::net::Ipv6Addr::from(filter_common::eui64_link_local(
                mac.0,
            )))
        })
    }

    /// Whether the agent must look for the interface rather than take it by name.
    pub fn is_located(&self) -> bool {
        self.interface_match != InterfaceMatch::Name
    }
}

/// Per-interface connection tracking settings (C4, C5, C6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    /// Seconds, 60..=432000.
    pub tcp_established_timeout: u32,
    /// Seconds, 30..=60.
    pub udp_timeout: u32,
    /// Seconds, 60..=180.
    pub udp_stream_timeout: u32,
    /// Established flows this interface may track before new flows are dropped (C6).
    pub max_flows: u32,
    /// Cut tracked flows the current rules no longer admit (C4 option, off by default).
    pub cut_on_rule_removal: bool,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self {
            tcp_established_timeout: 432_000,
            udp_timeout: 30,
            udp_stream_timeout: 180,
            max_flows: 65_536,
            cut_on_rule_removal: false,
        }
    }
}

impl Conntrack {
    pub fn timeouts(&self) -> filter_common::Timeouts {
        filter_common::Timeouts {
            tcp_established: self.tcp_established_timeout,
            udp: self.udp_timeout,
            udp_stream: self.udp_stream_timeout,
            ..filter_common::Timeouts::AWS_DEFAULT
        }
    }
}

/// An interface elsewhere: it only counts for group references (G1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub security_groups: Vec<String>,
}

/// `[lab]`: only `sgwall lab` reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lab {
    pub clients: Vec<LabClient>,
    /// Instances with DHCP on (I6) take their IPv4 address from the router's DHCP server, as
    /// a VM does, through the filter.
    pub dhcp: bool,
}

/// An unfiltered host in the lab (for example "internet" or "admin").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabClient {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// One rule of one interface and direction after expansion to a single peer: the unit that
/// matching, rule ids, hit counters and quotas work in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EffectiveRule {
    /// Position in the interface's list for this direction; the lowest matching id wins.
    pub id: u16,
    pub direction: Direction,
    pub group: String,
    /// Index of the rule within its group's list for this direction.
    pub rule_index: usize,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peer: Peer,
    pub description: String,
    /// `sgr-` id (R9).
    pub rule_id: String,
}

impl Config {
    pub fn group(&self, name: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|g| g.name == name)
    }

    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    pub fn prefix_list(&self, name: &str) -> Option<&PrefixList> {
        self.prefix_lists.iter().find(|list| list.name == name)
    }

    pub fn network_acl(&self, name: &str) -> Option<&NetworkAcl> {
        self.network_acls.iter().find(|acl| acl.name == name)
    }

    /// The subnet an instance belongs to: the one its addresses fall in (validation makes sure
    /// there is at most one). `None`: no subnet, so no network ACL applies.
    pub fn subnet_of(&self, instance: &Instance) -> Option<&Subnet> {
        self.subnets.iter().find(|subnet| {
            instance
                .addresses
                .iter()
                .any(|address| subnet.contains(*address))
        })
    }

    /// The instance's subnet and that subnet's network ACL (N1).
    pub fn acl_of(&self, instance: &Instance) -> Option<(&Subnet, &NetworkAcl)> {
        let subnet = self.subnet_of(instance)?;
        Some((subnet, self.network_acl(&subnet.network_acl)?))
    }

    pub fn group_by_id(&self, id: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|g| g.id == id)
    }

    /// The id of the group named `name`, when there is one.
    pub fn group_id(&self, name: &str) -> Option<&str> {
        self.group(name).map(|group| group.id.as_str())
    }

    /// Every interface that has groups attached, here or elsewhere: (addresses, groups).
    pub fn memberships(&self) -> impl Iterator<Item = (&[IpAddr], &[String])> {
        self.instances
            .iter()
            .map(|i| (i.addresses.as_slice(), i.security_groups.as_slice()))
            .chain(
                self.members
                    .iter()
                    .map(|m| (m.addresses.as_slice(), m.security_groups.as_slice())),
            )
    }

    /// How many addresses [`Config::group_members`] gives each group, counted in one pass so a
    /// rule table over many group rules does not rescan every membership per rule.
    pub fn group_member_counts(&self) -> HashMap<&str, usize> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (addresses, groups) in self.memberships() {
            for (position, group) in groups.iter().enumerate() {
                if groups[..position].contains(group) {
                    continue;
                }
                *counts.entry(group.as_str()).or_default() += addresses.len();
            }
        }
        counts
    }

    /// Addresses of every interface that has `group` attached (G1, G2).
    pub fn group_members(&self, group: &str) -> Vec<IpAddr> {
        self.memberships()
            .filter(|(_, groups)| groups.iter().any(|g| g == group))
            .flat_map(|(addresses, _)| addresses.iter().copied())
            .collect()
    }
}

/// The interface's rules for one direction, in the order that gives rule ids: groups in
/// attachment order, each group's rules in file order, each rule's peers in file order.
pub fn effective_rules(
    config: &Config,
    instance: &Instance,
    direction: Direction,
) -> Vec<EffectiveRule> {
    let mut rules = Vec::new();
    for group_name in &instance.security_groups {
        let Some(group) = config.group(group_name) else {
            continue;
        };
        for (rule_index, rule) in group.rules(direction).iter().enumerate() {
            for (peer_index, peer) in rule.peers.iter().enumerate() {
                rules.push(EffectiveRule {
                    rule_id: rule_id(&group.id, direction, rule, peer_index),
                    id: rules.len() as u16,
                    direction,
                    group: group.name.clone(),
                    rule_index,
                    protocol: rule.protocol,
                    ports: rule.ports,
                    peer: peer.clone(),
                    description: rule.description.clone(),
                });
            }
        }
    }
    rules
}

/// The default egress of a group whose egress was never set (R2), with the ids the same rules
/// would get if they were written out (so writing them out keeps their ids).
pub fn default_egress(group_id: &str) -> Vec<Rule> {
    let any_v4: IpNet = IpNet::V4(ipnet::Ipv4Net::default());
    let any_v6: IpNet = IpNet::V6(ipnet::Ipv6Net::default());
    let peers = vec![Peer::Cidr(any_v4), Peer::Cidr(any_v6)];
    let ids = peers
        .iter()
        .map(|peer| {
            derived_rule_id(
                group_id,
                Direction::Egress,
                Protocol::All,
                PortRange::Any,
                peer,
            )
        })
        .collect();
    vec![Rule {
        protocol: Protocol::All,
        ports: PortRange::Any,
        peers,
        description: String::new(),
        ids,
        tags: Tags::new(),
    }]
}

/// The id of the rule of `rule`'s peer `peer_index` (R9): the config's, or derived.
pub fn rule_id(group_id: &str, direction: Direction, rule: &Rule, peer_index: usize) -> String {
    match rule.ids.get(peer_index) {
        Some(id) => id.clone(),
        None => rule.peers.get(peer_index).map_or_else(String::new, |peer| {
            derived_rule_id(group_id, direction, rule.protocol, rule.ports, peer)
        }),
    }
}

/// What identifies a rule within its group: what AWS calls a duplicate (R9).
pub fn rule_key(
    group_id: &str,
    direction: Direction,
    protocol: Protocol,
    ports: PortRange,
    peer: &Peer,
) -> String {
    format!("{group_id}|{direction}|{protocol}|{ports}|{peer}")
}

pub fn derived_rule_id(
    group_id: &str,
    direction: Direction,
    protocol: Protocol,
    ports: PortRange,
    peer: &Peer,
) -> String {
    ids::derived(
        IdKind::SecurityGroupRule,
        &rule_key(group_id, direction, protocol, ports, peer),
    )
}
