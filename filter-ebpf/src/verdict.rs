//! Outcomes of the verdict path. Every packet ends as exactly one [`Admit`] or one [`Deny`];
//! each maps to a fixed verdict and to the reason it is counted under. Unparseable input is a
//! `Deny`, never an `Admit`.

use filter_common::*;

/// Why a packet was admitted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A packet of a tracked flow in the direction of its first packet.
    Tracked,
    /// A reply to a tracked flow (C1): admitted whatever the reverse rules say.
    Reply,
    /// The first packet of a flow a rule admits; a conntrack entry was made.
    NewFlow,
    /// A rule admits it and the flow needs no entry (C8).
    Untracked,
    /// A later fragment of a datagram whose first fragment was admitted (H1).
    Fragment,
    Arp,
    /// IPv6 neighbour discovery, router and multicast listener messages (I2).
    Icmpv6Link,
    /// Peer in the interface's exempt list (I3).
    Exempt,
    /// An ICMP error about a tracked flow, with `related_icmp` on (C7).
    RelatedIcmp,
    /// A rule admits an ICMP message that is not an echo: judged per packet, not tracked.
    RuleUntrackedIcmp,
    /// A rule admits a TCP packet that is not a connection's first SYN (a SYN-ACK, an ACK,
    /// a RST): passed on the rule alone, no entry made.
    RuleNoEntry,
}

impl Admit {
    #[inline(always)]
    pub fn reason(self) -> u32 {
        match self {
            Admit::Tracked => REASON_CT_TRACKED,
            Admit::Reply => REASON_CT_REPLY,
            Admit::NewFlow => REASON_NEW_FLOW,
            Admit::Untracked => REASON_UNTRACKED,
            Admit::Fragment => REASON_FRAGMENT,
            Admit::Arp => REASON_ARP,
            Admit::Icmpv6Link => REASON_ICMPV6_LINK,
            Admit::Exempt => REASON_EXEMPT,
            Admit::RelatedIcmp => REASON_RELATED_ICMP,
            Admit::RuleUntrackedIcmp => REASON_RULE_UNTRACKED_ICMP,
            Admit::RuleNoEntry => REASON_RULE_NO_ENTRY,
        }
    }
}

/// Why a packet was dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// No rule admits the first packet of the flow (R1).
    NoRule,
    SpoofedSource,
    SpoofedDestination,
    ArpSpoof,
    /// Not IP, ARP or the IPv6 link messages (I4).
    NonIp,
    TruncatedEthernet,
    BadVlan,
    BadArp,
    BadIpv4,
    BadIpv6,
    Ipv6ExtChain,
    Ipv6UnknownExt,
    Ipv6RoutingType0,
    TruncatedL4,
    FragmentWithoutFirst,
    TinyFirstFragment,
    OverlappingFragment,
    /// The interface's flow allowance or the established table is exhausted (C6).
    ConntrackFull,
    /// A tracked flow the current rules no longer admit, with the cut option on (C4).
    ConntrackCut,
    /// The packet arrived on an interface the active policy does not describe: fail closed.
    NoConfig,
    /// A map that must exist did not answer: fail closed.
    Internal,
}

impl Deny {
    #[inline(always)]
    pub fn reason(self) -> u32 {
        match self {
            Deny::NoRule => REASON_NO_RULE,
            Deny::SpoofedSource => REASON_SPOOFED_SOURCE,
            Deny::SpoofedDestination => REASON_SPOOFED_DESTINATION,
            Deny::ArpSpoof => REASON_ARP_SPOOF,
            Deny::NonIp => REASON_NON_IP,
            Deny::TruncatedEthernet => REASON_TRUNCATED_ETHERNET,
            Deny::BadVlan => REASON_BAD_VLAN,
            Deny::BadArp => REASON_BAD_ARP,
            Deny::BadIpv4 => REASON_BAD_IPV4,
            Deny::BadIpv6 => REASON_BAD_IPV6,
            Deny::Ipv6ExtChain => REASON_IPV6_EXT_CHAIN,
            Deny::Ipv6UnknownExt => REASON_IPV6_UNKNOWN_EXT,
            Deny::Ipv6RoutingType0 => REASON_IPV6_ROUTING_TYPE0,
            Deny::TruncatedL4 => REASON_TRUNCATED_L4,
            Deny::FragmentWithoutFirst => REASON_FRAGMENT_WITHOUT_FIRST,
            Deny::TinyFirstFragment => REASON_TINY_FIRST_FRAGMENT,
            Deny::OverlappingFragment => REASON_OVERLAPPING_FRAGMENT,
            Deny::ConntrackFull => REASON_CT_FULL,
            Deny::ConntrackCut => REASON_CT_CUT,
            Deny::NoConfig => REASON_NO_CONFIG,
            Deny::Internal => REASON_INTERNAL,
        }
    }

    /// Denials worth a flow event for the agent: policy decisions, not malformed input (which
    /// the counters already cover).
    #[inline(always)]
    pub fn is_policy_decision(self) -> bool {
        matches!(
            self,
            Deny::NoRule
                | Deny::SpoofedSource
                | Deny::SpoofedDestination
                | Deny::ConntrackFull
                | Deny::ConntrackCut
        )
    }
}

pub type Judgement = Result<Admit, Deny>;
