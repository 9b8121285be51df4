//! The reference evaluator: what sgwall must do with a packet, written to be read, not to be
//! fast. It is the oracle the datapath is tested against (tiers 2 and 3, `sgwall lab probe`),
//! so it works from the validated config directly, rule by rule, with none of the compiler's
//! tries and bitmaps.
//!
//! [`evaluate`] judges one packet given the conntrack facts that matter for it. [`Session`]
//! keeps a reference conntrack and fragment table, for sequences of packets.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use filter_common::{
    DhcpPorts, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERTISEMENT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP, dhcp_ports, is_icmp_echo, is_icmp_error, is_icmpv6_link_control,
    is_ipv6_unwalkable_extension, quoted_flow_orientation,
};

use crate::model::{
    AclAction, AclEntry, Config, Direction, EffectiveRule, Instance, MacAddr, Peer, PortRange,
    Protocol, effective_rules,
};

pub mod wire;

/// Why a packet was admitted or dropped: the datapath's own table, so a verdict and its counter
/// compare directly. The evaluator gives the reasons of policy decisions (and of H2's unknown
/// extension headers); those of other malformed input and of the datapath's own failures come
/// from the parser and the datapath alone.
pub use filter_common::Reason;
/// Re-exported for the lab and the tests, which build packets with them.
pub use filter_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

/// The evaluator's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    /// The rule (its id in the interface's effective rules for this direction) that admitted
    /// the packet, when a rule did.
    pub rule: Option<u16>,
    /// What the subnet's network ACL said, when it judged the packet (N1-N4): always inbound
    /// (before the groups), outbound only what the groups admitted (after them). `None`: no
    /// ACL judged it (no subnet, the peer inside the subnet, or settled before the policy).
    pub acl: Option<AclVerdict>,
}

/// The network ACL's verdict on one packet (N2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclVerdict {
    /// The entry with this number matched first.
    Entry { number: u16, action: AclAction },
    /// No entry matched: the final `*` entry denies.
    NoEntry,
}

impl AclVerdict {
    pub fn allows(self) -> bool {
        matches!(
            self,
            AclVerdict::Entry {
                action: AclAction::Allow,
                ..
            }
        )
    }

    /// The entry's number as AWS shows it: the number, or `*` for the final entry.
    pub fn number_text(self) -> String {
        match self {
            AclVerdict::Entry { number, .. } => number.to_string(),
            AclVerdict::NoEntry => "*".to_string(),
        }
    }

    fn refusal(self) -> Reason {
        match self {
            AclVerdict::NoEntry => Reason::AclImplicitDeny,
            AclVerdict::Entry { .. } => Reason::AclDeny,
        }
    }
}

impl Decision {
    pub fn admitted(&self) -> bool {
        self.reason.passes()
    }

    fn because(reason: Reason) -> Self {
        Self {
            reason,
            rule: None,
            acl: None,
        }
    }

    fn by_rule(reason: Reason, rule: u16) -> Self {
        Self {
            reason,
            rule: Some(rule),
            acl: None,
        }
    }

    /// The ACL refused what it judged.
    fn refused_by_acl(acl: AclVerdict) -> Self {
        Self {
            reason: acl.refusal(),
            rule: None,
            acl: Some(acl),
        }
    }
}

/// A frame as far as the policy cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Anything neither IP nor ARP (I4).
    NonIp,
    Arp {
        sender: Ipv4Addr,
    },
    Ip(IpPacket),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    pub fragment: Fragment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        /// Sequence and acknowledgement numbers: the originator's ACK of the SYN-ACK is what
        /// establishes a TCP flow.
        seq: u32,
        ack: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6, by the packet's family.
    Icmp {
        icmp_type: u8,
        code: u8,
        /// Echo identifier (meaningful for echo messages).
        echo_id: u16,
        /// For errors: the flow of the packet the error quotes, as that packet travelled.
        quoted: Option<QuotedFlow>,
    },
    Other(u8),
}

/// The header an ICMP error quotes, in the quoted packet's own orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedFlow {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Source and destination ports, or (echo identifier, 0) for a quoted echo.
    pub src_port: u16,
    pub dst_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Whole,
    First {
        id: u32,
    },
    /// `offset` in 8-byte units.
    Later {
        id: u32,
        offset: u16,
    },
}

/// The numbers a TCP segment carries when a test or probe does not care: every side starts at
/// sequence number 1, so an ACK of 2 completes a handshake ([`filter_common::acks_handshake`]).
pub const TCP_DEFAULT_SEQ: u32 = 1;

/// (sequence, acknowledgement) of a segment with these flags and the default numbers.
pub fn default_tcp_numbers(flags: u8) -> (u32, u32) {
    let ack = if flags & TCP_ACK != 0 {
        TCP_DEFAULT_SEQ + 1
    } else {
        0
    };
    (TCP_DEFAULT_SEQ, ack)
}

impl Transport {
    /// A TCP segment with the default numbers ([`default_tcp_numbers`]): any segment carrying
    /// an ACK acknowledges the other side's SYN.
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Self {
        let (seq, ack) = default_tcp_numbers(flags);
        Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
        }
    }
}

impl IpPacket {
    pub fn proto(&self) -> u8 {
        match self.transport {
            Transport::Tcp { .. } => PROTO_TCP,
            Transport::Udp { .. } => PROTO_UDP,
            Transport::Icmp { .. } if self.src.is_ipv6() => PROTO_ICMPV6,
            Transport::Icmp { .. } => PROTO_ICMP,
            Transport::Other(proto) => proto,
        }
    }

    fn tcp_flags(&self) -> u8 {
        match self.transport {
            Transport::Tcp { flags, .. } => flags,
            _ => 0,
        }
    }

    /// (local, remote) for an interface seeing this packet in `direction`.
    pub fn local_remote(&self, direction: Direction) -> (IpAddr, IpAddr) {
        match direction {
            Direction::Ingress => (self.dst, self.src),
            Direction::Egress => (self.src, self.dst),
        }
    }

    /// The flow this packet belongs to, oriented to the interface.
    pub fn flow_key(&self, instance: &str, direction: Direction) -> FlowKey {
        let (local, remote) = self.local_remote(direction);
        let (local_port, remote_port) = match self.transport {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port } => match direction {
                Direction::Ingress => (dst_port, src_port),
                Direction::Egress => (src_port, dst_port),
            },
            Transport::Icmp { echo_id, .. } => (echo_id, 0),
            Transport::Other(_) => (0, 0),
        };
        FlowKey {
            instance: instance.to_string(),
            proto: self.proto(),
            local,
            remote,
            local_port,
            remote_port,
        }
    }
}

/// A flow as the reference conntrack keys it: per interface (C2), oriented to the instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub instance: String,
    pub proto: u8,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
}

/// The conntrack facts one packet's verdict depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtView {
    /// The live flow this packet belongs to, if any.
    pub flow: Option<TrackedFlow>,
    /// For ICMP errors: the quoted flow is tracked on this interface (C7).
    pub quoted_flow_tracked: bool,
    /// For later fragments: the first fragment of the datagram was admitted recently (H1).
    pub first_fragment_admitted: bool,
    /// The interface's established-flow allowance is used up (C6).
    pub allowance_used_up: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedFlow {
    /// Direction of the flow's first packet.
    pub origin: Direction,
    /// TCP after FIN or RST.
    pub closing: bool,
    /// With the cut option (C4): whether the rules in force still admit the flow's first
    /// packet. Ignored when the option is off.
    pub still_admitted: bool,
}

/// The peer and service a rule is matched against (R4, R5).
struct Service {
    proto: u8,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
}

fn service_of(packet: &IpPacket) -> Service {
    let proto = packet.proto();
    match packet.transport {
        Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => Service {
            proto,
            port: Some(dst_port),
            icmp: None,
        },
        Transport::Icmp {
            icmp_type, code, ..
        } => Service {
            proto,
            port: None,
            icmp: Some((icmp_type, code)),
        },
        // DECISION: ICMP of the other family (ICMPv6 in IPv4, ICMP in IPv6) is no ICMP there:
        // never echo, error or link control. The rules judge it by its number with type and
        // code read as 0, the datapath's one selector for a header it does not read: a rule
        // for the whole protocol, or for type 0, admits it.
        Transport::Other(PROTO_ICMP | PROTO_ICMPV6) => Service {
            proto,
            port: None,
            icmp: Some((0, 0)),
        },
        Transport::Other(_) => Service {
            proto,
            port: None,
            icmp: None,
        },
    }
}

/// Whether a protocol and port part (of a rule or an ACL entry) admits `service` (R3, R4).
fn service_admits(protocol: Protocol, ports: PortRange, service: &Service) -> bool {
    if !protocol.matches(service.proto) {
        return false;
    }
    match (service.port, service.icmp) {
        (Some(port), _) => ports.admits_port(port),
        (None, Some((icmp_type, code))) => ports.admits_icmp(icmp_type, code),
        // Other protocols have no ports: a rule for them covers the whole protocol.
        (None, None) => true,
    }
}

/// Whether one rule admits traffic to or from `peer` for `service` (R3-R5, G1-G2, P1).
fn rule_admits(config: &Config, rule: &EffectiveRule, peer: IpAddr, service: &Service) -> bool {
    if !service_admits(rule.protocol, rule.ports, service) {
        return false;
    }
    match &rule.peer {
        // ipnet's `contains` is false across families: 0.0.0.0/0 never matches IPv6 (R5).
        Peer::Cidr(net) => net.contains(&peer),
        Peer::Group(group) => config.group_members(group).contains(&peer),
        Peer::PrefixList(list) => config
            .prefix_list(list)
            .is_some_and(|list| list.contains(peer)),
    }
}

/// N1-N4: what the network ACL of the instance's subnet says of this packet. Every packet is
/// judged on its own (N3, replies included: the service is this packet's destination port),
/// entries lowest number first, the first match wins, and what matches none is denied (N2).
/// `None` when no ACL judges the packet: the instance is in no subnet, or the peer is in the
/// instance's own subnet, whose traffic never crosses the ACL (N4).
pub fn acl_verdict(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
) -> Option<AclVerdict> {
    let (subnet, acl) = config.acl_of(instance)?;
    let (_, remote) = packet.local_remote(direction);
    if subnet.contains(remote) {
        return None;
    }
    let service = service_of(packet);
    let matches = |entry: &&AclEntry| {
        entry.cidr.contains(&remote) && service_admits(entry.protocol, entry.ports, &service)
    };
    Some(match acl.entries(direction).iter().find(matches) {
        Some(entry) => AclVerdict::Entry {
            number: entry.number,
            action: entry.action,
        },
        None => AclVerdict::NoEntry,
    })
}

/// The ACL entry behind `verdict`, as a REJECT names it: "network ACL public-acl (subnet
/// public) ingress entry 90: deny all from 198.18.0.0/15", or entry `*` when none matched.
pub fn describe_acl_verdict(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    verdict: AclVerdict,
) -> String {
    let Some((subnet, acl)) = config.acl_of(instance) else {
        return format!("no network ACL on {}", instance.name);
    };
    let head = format!(
        "network ACL {} (subnet {}) {direction} entry {}",
        acl.name,
        subnet.name,
        verdict.number_text()
    );
    let entry = match verdict {
        AclVerdict::Entry { number, .. } => acl
            .entries(direction)
            .iter()
            .find(|entry| entry.number == number),
        AclVerdict::NoEntry => None,
    };
    let peer_word = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    match entry {
        Some(entry) => {
            let ports = match entry.ports {
                PortRange::Any => String::new(),
                other => format!(" {other}"),
            };
            format!(
                "{head}: {} {}{ports} {peer_word} {}",
                entry.action, entry.protocol, entry.cidr
            )
        }
        None => format!("{head}: no entry matches, the final entry denies (N2)"),
    }
}

/// The first rule of `instance` for `direction` that admits the packet (R1, R6).
pub fn first_matching_rule(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
) -> Option<EffectiveRule> {
    let (_, remote) = packet.local_remote(direction);
    let service = service_of(packet);
    effective_rules(config, instance, direction)
        .into_iter()
        .find(|rule| rule_admits(config, rule, remote, &service))
}

/// How the rules judge the first packet of a flow: the rule that admits it, and whether the flow
/// goes untracked (C8). `None`: no rule admits it (R1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleVerdict {
    pub rule: u16,
    pub untracked: bool,
}

pub fn classify(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
) -> Option<RuleVerdict> {
    let rule = first_matching_rule(config, instance, direction, packet)?;
    Some(RuleVerdict {
        rule: rule.id,
        untracked: is_untracked(config, instance, direction, packet),
    })
}

/// C8: a TCP or UDP flow admitted by a rule whose peer is 0.0.0.0/0 or ::/0, while the reverse
/// direction admits the same protocol and family from anywhere on every port, is not tracked.
fn is_untracked(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
) -> bool {
    let proto = packet.proto();
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return false;
    }
    let any_address_of = |peer: &Peer| match peer {
        Peer::Cidr(net) if net.prefix_len() == 0 => Some(net.addr().is_ipv4()),
        _ => None,
    };
    // Any admitting rule from anywhere will do, not only the first that matched.
    let service = service_of(packet);
    let (_, remote) = packet.local_remote(direction);
    let wide_match = effective_rules(config, instance, direction)
        .into_iter()
        .any(|r| {
            any_address_of(&r.peer) == Some(remote.is_ipv4())
                && rule_admits(config, &r, remote, &service)
        });
    let reverse_open = effective_rules(config, instance, direction.reverse())
        .into_iter()
        .any(|r| {
            any_address_of(&r.peer) == Some(remote.is_ipv4())
                && r.protocol.matches(proto)
                && r.ports.is_everything()
        });
    wide_match && reverse_open
}

/// Port security (I7): with the source/destination check on and the instance's MAC in the
/// config, a frame from the instance must carry that MAC. `source_mac` is the frame's source
/// MAC; `None` stands for the instance's own.
pub fn port_security(
    instance: &Instance,
    direction: Direction,
    source_mac: Option<MacAddr>,
) -> Option<Decision> {
    let own = instance.mac?;
    let spoofed = instance.checks_addresses()
        && direction == Direction::Egress
        && source_mac.is_some_and(|mac| mac != own);
    spoofed.then(|| Decision::because(Reason::MacSpoof))
}

/// [`evaluate`] for a frame with this source MAC: port security first (I7).
pub fn evaluate_frame(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    source_mac: Option<MacAddr>,
    frame: &Frame,
    ct: &CtView,
) -> Decision {
    // The datapath parses before it judges the MAC: a header it cannot walk drops as such.
    let unwalkable = matches!(frame, Frame::Ip(packet)
        if packet.src.is_ipv6() && is_ipv6_unwalkable_extension(packet.proto()));
    match port_security(instance, direction, source_mac) {
        Some(refused) if !unwalkable => refused,
        _ => evaluate(config, instance, direction, frame, ct),
    }
}

/// I6: DHCP client traffic of the instance, and a server's replies to it, pass without rules
/// or state; I7: with the guards on, DHCP server replies from the instance drop. `None`: not
/// DHCP traffic this interface lets through or stops, judged like any other packet.
///
/// A client speaks from its own address (I5 makes the link-local one its own), or for IPv4
/// from 0.0.0.0 to the broadcast address, which is how it asks before it has an address. A
/// reply goes to the broadcast address or to one of the instance's own.
fn dhcp(
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
    own: &[IpAddr],
) -> Option<Reason> {
    let Transport::Udp { src_port, dst_port } = packet.transport else {
        return None;
    };
    if packet.fragment != Fragment::Whole {
        // A DHCP message is never fragmented: judged as any packet (a first fragment from
        // 0.0.0.0 is spoofed, a later one has no first fragment on record).
        return None;
    }
    let ports = dhcp_ports(packet.src.is_ipv6(), src_port, dst_port);
    let broadcast = IpAddr::V4(Ipv4Addr::BROADCAST);
    match (direction, ports) {
        (Direction::Egress, DhcpPorts::Server) if instance.checks_addresses() => {
            Some(Reason::DhcpServerGuard)
        }
        (Direction::Egress, DhcpPorts::Client) if instance.dhcp => {
            let asking = packet.src == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && packet.dst == broadcast;
            (asking || own.contains(&packet.src)).then_some(Reason::DhcpClient)
        }
        (Direction::Ingress, DhcpPorts::Server) if instance.dhcp => (packet.dst == broadcast
            || own.contains(&packet.dst))
        .then_some(Reason::DhcpServerReply),
        _ => None,
    }
}

/// Judges one packet on `instance`'s interface, travelling in `direction`. The frame is taken
/// to come from the instance's own MAC; [`evaluate_frame`] checks another.
pub fn evaluate(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    frame: &Frame,
    ct: &CtView,
) -> Decision {
    let checks_addresses = instance.checks_addresses();
    let own = instance.own_addresses();
    let packet = match frame {
        // I4.
        Frame::NonIp => return Decision::because(Reason::NonIp),
        // I2: ARP is never subject to rules; with the check on, an instance may only claim its
        // own addresses (or 0.0.0.0, an address probe).
        Frame::Arp { sender } => {
            let claims_own = *sender == Ipv4Addr::UNSPECIFIED
                || instance.addresses.contains(&IpAddr::V4(*sender));
            return if checks_addresses && direction == Direction::Egress && !claims_own {
                Decision::because(Reason::ArpSpoof)
            } else {
                Decision::because(Reason::Arp)
            };
        }
        Frame::Ip(packet) => packet,
    };
    let proto = packet.proto();
    let later_fragment = matches!(packet.fragment, Fragment::Later { .. });

    // H2: in IPv6 these numbers are extension headers nothing can walk past, not protocols.
    // A later fragment's number names the fragmentable part, which is not there to walk.
    if packet.src.is_ipv6() && !later_fragment && is_ipv6_unwalkable_extension(proto) {
        return Decision::because(Reason::Ipv6UnknownExtension);
    }

    // I7: the instance may not act as the network's router; I2: neighbour discovery and
    // friends pass, before any other check.
    if let Transport::Icmp { icmp_type, .. } = packet.transport
        && proto == PROTO_ICMPV6
        && !later_fragment
    {
        let from_instance = checks_addresses && direction == Direction::Egress;
        if from_instance && icmp_type == ICMPV6_ROUTER_ADVERTISEMENT {
            return Decision::because(Reason::RouterAdvertisementGuard);
        }
        if from_instance && icmp_type == ICMPV6_REDIRECT {
            return Decision::because(Reason::RedirectGuard);
        }
        if is_icmpv6_link_control(icmp_type) {
            return Decision::because(Reason::Icmpv6Link);
        }
    }

    // I6, I7: before the source/destination check, which a client without an address fails.
    if let Some(reason) = dhcp(instance, direction, packet, &own) {
        return Decision::because(reason);
    }

    // I1's source check, before conntrack and before the exempt list: an instance never
    // reaches anything with a spoofed source.
    if checks_addresses && direction == Direction::Egress && !own.contains(&packet.src) {
        return Decision::because(Reason::SpoofedSource);
    }

    // I3, before I1's destination check.
    let (_, remote) = packet.local_remote(direction);
    if instance.exempt.iter().any(|net| net.contains(&remote)) {
        return Decision::because(Reason::Exempt);
    }

    if checks_addresses && direction == Direction::Ingress && !own.contains(&packet.dst) {
        return Decision::because(Reason::SpoofedDestination);
    }

    // H1.
    if let Fragment::Later { offset, .. } = packet.fragment {
        if proto == PROTO_TCP && offset == 1 {
            return Decision::because(Reason::OverlappingFragment);
        }
        return if ct.first_fragment_admitted {
            Decision::because(Reason::Fragment)
        } else {
            Decision::because(Reason::FragmentWithoutFirst)
        };
    }

    // N4: the ACL judges inbound packets before the groups, outbound ones after them, and only
    // what the groups admitted: a packet the ACL refuses outbound leaves no trace (no flow is
    // started or refreshed, no rule hit is counted), since it never leaves the subnet.
    let acl = acl_verdict(config, instance, direction, packet);
    if direction == Direction::Ingress
        && let Some(acl) = acl
        && !acl.allows()
    {
        return Decision::refused_by_acl(acl);
    }
    let groups = judge_by_groups(config, instance, direction, packet, ct);
    match acl {
        Some(acl) if groups.admitted() && !acl.allows() => Decision::refused_by_acl(acl),
        Some(acl) if groups.admitted() || direction == Direction::Ingress => Decision {
            acl: Some(acl),
            ..groups
        },
        _ => groups,
    }
}

/// The groups' verdict on an IP packet that reached the policy (R1-R7, G1-G5, C1-C8).
fn judge_by_groups(
    config: &Config,
    instance: &Instance,
    direction: Direction,
    packet: &IpPacket,
    ct: &CtView,
) -> Decision {
    let proto = packet.proto();
    // ICMP other than echo: never tracked; errors may be related to a flow (C7).
    if let Transport::Icmp { icmp_type, .. } = packet.transport
        && !is_icmp_echo(proto, icmp_type)
    {
        if is_icmp_error(proto, icmp_type) && instance.related_icmp && ct.quoted_flow_tracked {
            return Decision::because(Reason::RelatedIcmp);
        }
        return match first_matching_rule(config, instance, direction, packet) {
            Some(rule) => Decision::by_rule(Reason::RuleUntrackedIcmp, rule.id),
            None => Decision::because(Reason::NoRule),
        };
    }

    // C1-C4: a live flow admits its packets both ways; a SYN on a closing TCP flow starts a
    // new one.
    if let Some(flow) = ct.flow {
        let reused = proto == PROTO_TCP
            && flow.closing
            && packet.tcp_flags() & (TCP_SYN | TCP_ACK) == TCP_SYN;
        if !reused {
            if instance.conntrack.cut_on_rule_removal && !flow.still_admitted {
                return Decision::because(Reason::ConntrackCut);
            }
            return Decision::because(if flow.origin == direction {
                Reason::Tracked
            } else {
                Reason::Reply
            });
        }
    }

    // R1: only a rule admits a new flow.
    let Some(rule) = first_matching_rule(config, instance, direction, packet) else {
        return Decision::because(Reason::NoRule);
    };
    // DECISION: TCP is tracked from its SYN; any other TCP packet a rule admits passes on that
    // rule alone (otherwise the reply leg of an untracked flow, C8, would become tracked).
    if proto == PROTO_TCP && packet.tcp_flags() & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return Decision::by_rule(Reason::RuleNoEntry, rule.id);
    }
    if is_untracked(config, instance, direction, packet) {
        return Decision::by_rule(Reason::Untracked, rule.id);
    }
    if ct.allowance_used_up {
        return Decision::because(Reason::ConntrackFull);
    }
    Decision::by_rule(Reason::NewFlow, rule.id)
}

/// A flow in the reference conntrack.
#[derive(Clone, Debug, PartialEq)]
pub struct RefFlow {
    pub origin: Direction,
    /// In the established pool: counted against the allowance (C6), never evicted.
    pub established: bool,
    /// TCP: the SYN-ACK was seen with this sequence number, and the originator's ACK of it
    /// has not been (half-open).
    pub reply_isn: Option<u32>,
    pub closing: bool,
    pub udp_stream: bool,
    pub packets: [u64; 2],
    pub last_seen: f64,
    /// The packet that started the flow (for the cut option's re-judgement).
    pub first_packet: IpPacket,
    /// Generation of the config the flow was last judged under.
    pub generation: u64,
}

/// A reference conntrack and fragment table over a config: feed it packets in order with
/// their time, and it answers as the datapath must.
pub struct Session {
    pub config: Config,
    pub generation: u64,
    pub flows: BTreeMap<FlowKey, RefFlow>,
    /// (instance, src, dst, proto, id) → time the first fragment was admitted.
    pub fragments: BTreeMap<(String, IpAddr, IpAddr, u8, u32), f64>,
    pub fragment_timeout: f64,
}

impl Session {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            generation: 1,
            flows: BTreeMap::new(),
            fragments: BTreeMap::new(),
            fragment_timeout: f64::from(filter_common::Settings::DEFAULT.fragment_timeout_sec),
        }
    }

    /// A new config, as a reload: flows stay (C4) unless an interface cuts them.
    pub fn reconfigure(&mut self, config: Config) {
        self.config = config;
        self.generation += 1;
    }

    fn timeout(&self, instance: &Instance, proto: u8, flow: &RefFlow) -> f64 {
        let timeouts = instance.conntrack.timeouts();
        let state = if flow.closing && proto == PROTO_TCP {
            filter_common::CT_STATE_CLOSING
        } else if flow.established {
            filter_common::CT_STATE_ESTABLISHED
        } else {
            filter_common::CT_STATE_NEW
        };
        let flags = if flow.udp_stream {
            filter_common::CT_F_UDP_STREAM
        } else {
            0
        };
        f64::from(filter_common::timeout_secs(&timeouts, proto, state, flags))
    }

    fn live_flow(&self, instance: &Instance, key: &FlowKey, now: f64) -> Option<&RefFlow> {
        self.flows
            .get(key)
            .filter(|flow| now - flow.last_seen < self.timeout(instance, key.proto, flow))
    }

    fn established_count(&self, instance: &Instance, now: f64) -> usize {
        self.flows
            .iter()
            .filter(|(key, flow)| {
                key.instance == instance.name
                    && flow.established
                    && now - flow.last_seen < self.timeout(instance, key.proto, flow)
            })
            .count()
    }

    /// Judges a packet and updates the tables the way the datapath does.
    pub fn process(
        &mut self,
        instance_name: &str,
        direction: Direction,
        frame: &Frame,
        now: f64,
    ) -> Decision {
        self.process_frame(instance_name, direction, None, frame, now)
    }

    /// [`Session::process`] for a frame with this source MAC (`None`: the instance's own).
    pub fn process_frame(
        &mut self,
        instance_name: &str,
        direction: Direction,
        source_mac: Option<MacAddr>,
        frame: &Frame,
        now: f64,
    ) -> Decision {
        let Some(instance) = self.config.instance(instance_name).cloned() else {
            return Decision::because(Reason::NoRule);
        };
        if source_mac.is_some() {
            let refused = evaluate_frame(
                &self.config,
                &instance,
                direction,
                source_mac,
                frame,
                &CtView::default(),
            );
            if refused.reason == Reason::MacSpoof {
                return refused;
            }
        }
        let Frame::Ip(packet) = frame else {
            return evaluate(
                &self.config,
                &instance,
                direction,
                frame,
                &CtView::default(),
            );
        };
        let key = packet.flow_key(instance_name, direction);
        let flow = self.live_flow(&instance, &key, now).map(|flow| {
            let still_admitted = flow.generation == self.generation
                || first_matching_rule(&self.config, &instance, flow.origin, &flow.first_packet)
                    .is_some();
            TrackedFlow {
                origin: flow.origin,
                closing: flow.closing,
                still_admitted,
            }
        });
        let fragment_key = |id: u32| {
            (
                instance_name.to_string(),
                packet.src,
                packet.dst,
                packet.proto(),
                id,
            )
        };
        let first_fragment_admitted = match packet.fragment {
            Fragment::Later { id, .. } => self
                .fragments
                .get(&fragment_key(id))
                .is_some_and(|admitted_at| now - admitted_at < self.fragment_timeout),
            _ => false,
        };
        let quoted_flow_tracked = match packet.transport {
            Transport::Icmp {
                quoted: Some(quoted),
                ..
            } => {
                let quoted_key = quoted_flow_key(instance_name, direction, &quoted);
                self.live_flow(&instance, &quoted_key, now).is_some()
            }
            _ => false,
        };
        let view = CtView {
            flow,
            quoted_flow_tracked,
            first_fragment_admitted,
            allowance_used_up: self.established_count(&instance, now)
                >= instance.conntrack.max_flows as usize,
        };
        let decision = evaluate(&self.config, &instance, direction, frame, &view);

        match decision.reason {
            Reason::Tracked | Reason::Reply => {
                let generation = self.generation;
                if let Some(flow) = self.flows.get_mut(&key) {
                    record(flow, packet, direction, now);
                    flow.generation = generation;
                }
            }
            Reason::ConntrackCut => {
                self.flows.remove(&key);
            }
            Reason::NewFlow => {
                let closing =
                    packet.proto() == PROTO_TCP && packet.tcp_flags() & (TCP_FIN | TCP_RST) != 0;
                self.flows.insert(
                    key,
                    RefFlow {
                        origin: direction,
                        established: false,
                        reply_isn: None,
                        closing,
                        udp_stream: false,
                        packets: [1, 0],
                        last_seen: now,
                        first_packet: packet.clone(),
                        generation: self.generation,
                    },
                );
            }
            _ => {}
        }
        if let Fragment::First { id } = packet.fragment
            && decision.admitted()
        {
            self.fragments.insert(fragment_key(id), now);
        }
        decision
    }
}

/// The interface-oriented key of the flow an ICMP error quotes.
fn quoted_flow_key(instance: &str, direction: Direction, quoted: &QuotedFlow) -> FlowKey {
    let (local, remote, local_port, remote_port) = quoted_flow_orientation(
        direction == Direction::Ingress,
        quoted.proto,
        quoted.src,
        quoted.dst,
        quoted.src_port,
        quoted.dst_port,
    );
    FlowKey {
        instance: instance.to_string(),
        proto: quoted.proto,
        local,
        remote,
        local_port,
        remote_port,
    }
}

/// Counts a packet of a live flow and moves the flow on: a TCP flow becomes half-open with the
/// SYN-ACK and established only when the originator acknowledges that SYN-ACK, which a spoofed
/// source never sees; a UDP or ICMP flow is established when its originator sends again after
/// a reply (C5, C6).
fn record(flow: &mut RefFlow, packet: &IpPacket, direction: Direction, now: f64) {
    flow.last_seen = now;
    let from_origin = direction == flow.origin;
    flow.packets[usize::from(!from_origin)] += 1;
    let proto = packet.proto();
    let Transport::Tcp {
        flags, seq, ack, ..
    } = packet.transport
    else {
        // No handshake: speaking again after a reply is all a UDP or ICMP originator can do
        // to show it hears the replies.
        if from_origin && flow.packets[1] > 0 {
            flow.established = true;
        }
        if proto == PROTO_UDP && flow.packets[0] >= 2 && flow.packets[1] >= 2 {
            flow.udp_stream = true;
        }
        return;
    };
    let handshake = flags & (TCP_SYN | TCP_ACK | TCP_RST);
    let completes_handshake = from_origin
        && !flow.established
        && !flow.closing
        && handshake == TCP_ACK
        && flow
            .reply_isn
            .is_some_and(|isn| filter_common::acks_handshake(isn, ack));
    if flags & (TCP_FIN | TCP_RST) != 0 {
        flow.closing = true;
    }
    if completes_handshake {
        flow.established = true;
    } else if !from_origin && !flow.established && !flow.closing && handshake == TCP_SYN | TCP_ACK {
        flow.reply_isn = Some(seq);
    }
}

#[cfg(test)]
mod tests;
