//! Verdict reasons: the one table that the datapath, the reference evaluator, the counters,
//! inspection, metrics and the lab all read. Every packet is counted under exactly one reason,
//! and the reason fixes the verdict ([`Reason::passes`]).
//!
//! A reason's number indexes its cell of `COUNTERS` (see [`crate::counter_index`]), so the
//! numbers are part of the map layout: append, never renumber. Pass reasons sit below
//! [`FIRST_DROP_REASON`], drop reasons from it on, and every number is below [`REASON_COUNT`],
//! the counter stride (checked below). Maps and events carry the number (`reason as u32`), never
//! the enum.
//!
//! Adding a reason: a variant with the next free number, its arms in [`Reason::passes`],
//! [`Reason::name`] and [`Reason::describe`] (the compiler asks for them), and an entry at the
//! end of [`Reason::ALL`].

/// Counter cells per interface and direction. Larger than the number of reasons so reasons can
/// be added without changing the layout of `COUNTERS`.
pub const REASON_COUNT: usize = 48;

/// The lowest number a drop reason may have.
pub const FIRST_DROP_REASON: u32 = 16;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A packet of a tracked flow in the direction of its first packet.
    Tracked = 0,
    /// A reply to a tracked flow (C1): admitted whatever the reverse rules say.
    Reply = 1,
    /// The first packet of a flow a rule admits; a conntrack entry was made.
    NewFlow = 2,
    /// A rule admits it and the flow needs no entry (C8).
    Untracked = 3,
    /// A later fragment of a datagram whose first fragment was admitted (H1).
    Fragment = 4,
    /// ARP, not subject to group rules (I2).
    Arp = 5,
    /// IPv6 neighbour discovery, router and multicast listener messages (I2).
    Icmpv6Link = 6,
    /// Peer in the interface's exempt list (I3).
    Exempt = 7,
    /// An ICMP error about a tracked flow, with `related_icmp` on (C7).
    RelatedIcmp = 8,
    /// A rule admits an ICMP message that is not an echo: judged per packet, not tracked.
    RuleUntrackedIcmp = 9,
    /// A rule admits a TCP packet that is not a connection's first SYN (a SYN-ACK, an ACK,
    /// a RST): passed on the rule alone, no entry made.
    RuleNoEntry = 10,
    /// The instance's own DHCPv4 or DHCPv6 client traffic (I6): passes without a rule or state.
    DhcpClient = 11,
    /// A DHCP server's reply to the instance (I6): passes without a rule or state.
    DhcpServerReply = 12,

    /// No rule admits the first packet of the flow (R1).
    NoRule = 16,
    /// The instance sent a packet from an address it does not own (I1).
    SpoofedSource = 17,
    /// A packet for an address the instance does not own (I1).
    SpoofedDestination = 18,
    /// The instance claimed another address in ARP (I2).
    ArpSpoof = 19,
    /// Not IP, ARP or the IPv6 link messages (I4).
    NonIp = 20,
    TruncatedEthernet = 21,
    /// More VLAN tags than the parser walks, or a tag cut short.
    BadVlan = 22,
    BadArp = 23,
    BadIpv4 = 24,
    BadIpv6 = 25,
    /// An IPv6 extension header chain too long, cut short, or with hop-by-hop not first (H2).
    Ipv6ExtensionChain = 26,
    /// An IPv6 extension header nothing can walk past (H2).
    Ipv6UnknownExtension = 27,
    /// A transport header cut short (H3).
    TruncatedL4 = 28,
    /// A later fragment whose first fragment was not admitted, or too long ago (H1).
    FragmentWithoutFirst = 29,
    /// A first fragment too short to hold its transport header (H1).
    TinyFirstFragment = 30,
    /// A TCP fragment at offset 8 bytes, which could rewrite the first fragment's flags (H1).
    OverlappingFragment = 31,
    /// The interface's flow allowance or the established table is exhausted (C6).
    ConntrackFull = 32,
    /// A tracked flow the current rules no longer admit, with the cut option on (C4).
    ConntrackCut = 33,
    /// The packet arrived on an interface the active policy does not describe: fail closed.
    NoConfig = 34,
    /// A map that must exist did not answer: fail closed.
    Internal = 35,
    /// IPv6 routing header type 0 (RFC 5095, H2).
    Ipv6RoutingType0 = 36,
    /// The instance sent a router advertisement (I7).
    RouterAdvertisementGuard = 37,
    /// The instance sent an ICMPv6 redirect (I7).
    RedirectGuard = 38,
    /// The instance sent a DHCP server's reply (I7).
    DhcpServerGuard = 39,
    /// A frame from the instance with a source MAC other than its own (I7, port security).
    MacSpoof = 40,
    /// A deny entry of the subnet's network ACL matched first (N2, N3).
    AclDeny = 41,
    /// No entry of the subnet's network ACL matched: its final `*` entry denies (N2).
    AclImplicitDeny = 42,
}

impl Reason {
    /// Every reason, in number order.
    pub const ALL: [Reason; 40] = [
        Reason::Tracked,
        Reason::Reply,
        Reason::NewFlow,
        Reason::Untracked,
        Reason::Fragment,
        Reason::Arp,
        Reason::Icmpv6Link,
        Reason::Exempt,
        Reason::RelatedIcmp,
        Reason::RuleUntrackedIcmp,
        Reason::RuleNoEntry,
        Reason::DhcpClient,
        Reason::DhcpServerReply,
        Reason::NoRule,
        Reason::SpoofedSource,
        Reason::SpoofedDestination,
        Reason::ArpSpoof,
        Reason::NonIp,
        Reason::TruncatedEthernet,
        Reason::BadVlan,
        Reason::BadArp,
        Reason::BadIpv4,
        Reason::BadIpv6,
        Reason::Ipv6ExtensionChain,
        Reason::Ipv6UnknownExtension,
        Reason::TruncatedL4,
        Reason::FragmentWithoutFirst,
        Reason::TinyFirstFragment,
        Reason::OverlappingFragment,
        Reason::ConntrackFull,
        Reason::ConntrackCut,
        Reason::NoConfig,
        Reason::Internal,
        Reason::Ipv6RoutingType0,
        Reason::RouterAdvertisementGuard,
        Reason::RedirectGuard,
        Reason::DhcpServerGuard,
        Reason::MacSpoof,
        Reason::AclDeny,
        Reason::AclImplicitDeny,
    ];

    /// Whether a packet counted under this reason is admitted.
    #[inline(always)]
    pub const fn passes(self) -> bool {
        match self {
            Reason::Tracked
            | Reason::Reply
            | Reason::NewFlow
            | Reason::Untracked
            | Reason::Fragment
            | Reason::Arp
            | Reason::Icmpv6Link
            | Reason::Exempt
            | Reason::RelatedIcmp
            | Reason::RuleUntrackedIcmp
            | Reason::RuleNoEntry
            | Reason::DhcpClient
            | Reason::DhcpServerReply => true,
            Reason::NoRule
            | Reason::SpoofedSource
            | Reason::SpoofedDestination
            | Reason::ArpSpoof
            | Reason::NonIp
            | Reason::TruncatedEthernet
            | Reason::BadVlan
            | Reason::BadArp
            | Reason::BadIpv4
            | Reason::BadIpv6
            | Reason::Ipv6ExtensionChain
            | Reason::Ipv6UnknownExtension
            | Reason::TruncatedL4
            | Reason::FragmentWithoutFirst
            | Reason::TinyFirstFragment
            | Reason::OverlappingFragment
            | Reason::ConntrackFull
            | Reason::ConntrackCut
            | Reason::NoConfig
            | Reason::Internal
            | Reason::Ipv6RoutingType0
            | Reason::RouterAdvertisementGuard
            | Reason::RedirectGuard
            | Reason::DhcpServerGuard
            | Reason::MacSpoof
            | Reason::AclDeny
            | Reason::AclImplicitDeny => false,
        }
    }

    /// Stable, metric-friendly name (counter labels, `sgwall status`, flow records).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Tracked => "ct_tracked",
            Reason::Reply => "ct_reply",
            Reason::NewFlow => "new_flow",
            Reason::Untracked => "untracked",
            Reason::Fragment => "fragment",
            Reason::Arp => "arp",
            Reason::Icmpv6Link => "icmpv6_link",
            Reason::Exempt => "exempt",
            Reason::RelatedIcmp => "related_icmp",
            Reason::RuleUntrackedIcmp => "rule_untracked_icmp",
            Reason::RuleNoEntry => "rule_no_entry",
            Reason::DhcpClient => "dhcp_client",
            Reason::DhcpServerReply => "dhcp_server_reply",
            Reason::NoRule => "no_rule",
            Reason::SpoofedSource => "spoofed_source",
            Reason::SpoofedDestination => "spoofed_destination",
            Reason::ArpSpoof => "arp_spoof",
            Reason::NonIp => "non_ip",
            Reason::TruncatedEthernet => "truncated_ethernet",
            Reason::BadVlan => "bad_vlan",
            Reason::BadArp => "bad_arp",
            Reason::BadIpv4 => "bad_ipv4",
            Reason::BadIpv6 => "bad_ipv6",
            Reason::Ipv6ExtensionChain => "ipv6_ext_chain",
            Reason::Ipv6UnknownExtension => "ipv6_unknown_ext",
            Reason::TruncatedL4 => "truncated_l4",
            Reason::FragmentWithoutFirst => "fragment_without_first",
            Reason::TinyFirstFragment => "tiny_first_fragment",
            Reason::OverlappingFragment => "overlapping_fragment",
            Reason::ConntrackFull => "conntrack_allowance_exceeded",
            Reason::ConntrackCut => "ct_cut",
            Reason::NoConfig => "no_config",
            Reason::Internal => "internal",
            Reason::Ipv6RoutingType0 => "ipv6_routing_type0",
            Reason::RouterAdvertisementGuard => "router_advertisement_guard",
            Reason::RedirectGuard => "redirect_guard",
            Reason::DhcpServerGuard => "dhcp_server_guard",
            Reason::MacSpoof => "mac_spoof",
            Reason::AclDeny => "acl_deny",
            Reason::AclImplicitDeny => "acl_implicit_deny",
        }
    }

    /// Why, in a sentence that names the statement behind it (`sgwall lab` explanations).
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Tracked => "a packet of a tracked flow (C1-C3)",
            Reason::Reply => "a reply to a tracked flow (C1)",
            Reason::NewFlow => "a rule admits the first packet of its flow (R1)",
            Reason::Untracked => "a rule admits it, and its flow is untracked (C8)",
            Reason::Fragment => "a later fragment of an admitted first fragment (H1)",
            Reason::Arp => "ARP, not subject to the rules (I2)",
            Reason::Icmpv6Link => "IPv6 neighbour discovery or multicast listener traffic (I2)",
            Reason::Exempt => "its peer is on the interface's exempt list (I3)",
            Reason::RelatedIcmp => "an ICMP error about a tracked flow (C7, related_icmp)",
            Reason::RuleUntrackedIcmp => "a rule admits this ICMP message, judged alone (C7)",
            Reason::RuleNoEntry => "a rule admits this TCP packet, which starts no flow",
            Reason::DhcpClient => "the instance's DHCP client traffic (I6)",
            Reason::DhcpServerReply => "a DHCP server's reply to the instance (I6)",
            Reason::NoRule => "no rule admits it (R1)",
            Reason::SpoofedSource => "its source is not the instance's address (I1)",
            Reason::SpoofedDestination => "its destination is not the instance's address (I1)",
            Reason::ArpSpoof => "ARP claiming another address (I2)",
            Reason::NonIp => "not IP (I4)",
            Reason::TruncatedEthernet => "an Ethernet header cut short (H3)",
            Reason::BadVlan => "more VLAN tags than are walked, or a tag cut short (H3)",
            Reason::BadArp => "a malformed ARP packet (H3)",
            Reason::BadIpv4 => "a malformed IPv4 header (H3)",
            Reason::BadIpv6 => "a malformed IPv6 header (H3)",
            Reason::Ipv6ExtensionChain => "an IPv6 extension header chain out of bounds (H2)",
            Reason::Ipv6UnknownExtension => "an IPv6 extension header that cannot be walked (H2)",
            Reason::TruncatedL4 => "a transport header cut short (H3)",
            Reason::FragmentWithoutFirst => "a fragment whose first fragment was not admitted (H1)",
            Reason::TinyFirstFragment => "a first fragment too short for its transport header (H1)",
            Reason::OverlappingFragment => "an overlapping fragment (H1)",
            Reason::ConntrackFull => "the interface's flow allowance is used up (C6)",
            Reason::ConntrackCut => "its flow's rule was removed (C4, cut_on_rule_removal)",
            Reason::NoConfig => "its interface is not in the policy in force",
            Reason::Internal => "the datapath could not read its own maps",
            Reason::Ipv6RoutingType0 => "an IPv6 routing header of type 0 (H2)",
            Reason::RouterAdvertisementGuard => "a router advertisement from the instance (I7)",
            Reason::RedirectGuard => "an ICMPv6 redirect from the instance (I7)",
            Reason::DhcpServerGuard => "a DHCP server reply from the instance (I7)",
            Reason::MacSpoof => "a frame from the instance with another source MAC (I7)",
            Reason::AclDeny => "a deny entry of the subnet's network ACL (N2)",
            Reason::AclImplicitDeny => "no entry of the subnet's network ACL admits it (N2)",
        }
    }

    /// The reason with this number (a counter cell, an event's reason byte), if there is one.
    pub const fn from_u32(code: u32) -> Option<Reason> {
        let mut index = 0;
        while index < Reason::ALL.len() {
            if Reason::ALL[index] as u32 == code {
                return Some(Reason::ALL[index]);
            }
            index += 1;
        }
        None
    }
}

// The layout rules above, checked when the crate compiles.
const _: () = {
    let mut index = 0;
    while index < Reason::ALL.len() {
        let reason = Reason::ALL[index];
        let code = reason as u32;
        assert!((code as usize) < REASON_COUNT);
        assert!(reason.passes() == (code < FIRST_DROP_REASON));
        assert!(index == 0 || (Reason::ALL[index - 1] as u32) < code);
        index += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_verdicts_agree() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_u32(reason as u32), Some(reason));
            assert!(!reason.name().is_empty());
            assert!(!reason.describe().is_empty());
            let same_name = Reason::ALL
                .iter()
                .filter(|other| other.name() == reason.name())
                .count();
            assert_eq!(same_name, 1, "{} is one reason's name", reason.name());
        }
        assert_eq!(Reason::from_u32(13), None, "a gap in the numbering");
        assert_eq!(Reason::from_u32(REASON_COUNT as u32), None);
    }

    #[test]
    fn numbers_are_the_pinned_layout() {
        // Counter cells of pinned maps are read by number: these must never move.
        assert_eq!(Reason::Tracked as u32, 0);
        assert_eq!(Reason::RuleNoEntry as u32, 10);
        assert_eq!(Reason::NoRule as u32, 16);
        assert_eq!(Reason::ConntrackFull as u32, 32);
        assert_eq!(Reason::Ipv6RoutingType0 as u32, 36);
        assert_eq!(Reason::DhcpClient as u32, 11);
        assert_eq!(Reason::DhcpServerReply as u32, 12);
        assert_eq!(Reason::RouterAdvertisementGuard as u32, 37);
        assert_eq!(Reason::MacSpoof as u32, 40);
        assert_eq!(Reason::AclDeny as u32, 41);
        assert_eq!(Reason::AclImplicitDeny as u32, 42);
        assert_eq!(Reason::ConntrackFull.name(), "conntrack_allowance_exceeded");
    }
}
