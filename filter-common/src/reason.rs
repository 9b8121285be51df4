//! Verdict reasons. Each packet is counted under exactly one reason, and the reason fixes the
//! verdict: reasons below [`FIRST_DROP_REASON`] pass, the rest drop. Numbers are part of the map
//! layout (they index `COUNTERS`): append, never renumber.

pub const REASON_CT_TRACKED: u32 = 0;
pub const REASON_CT_REPLY: u32 = 1;
pub const REASON_NEW_FLOW: u32 = 2;
pub const REASON_UNTRACKED: u32 = 3;
pub const REASON_FRAGMENT: u32 = 4;
pub const REASON_ARP: u32 = 5;
pub const REASON_ICMPV6_LINK: u32 = 6;
pub const REASON_EXEMPT: u32 = 7;
pub const REASON_RELATED_ICMP: u32 = 8;
pub const REASON_RULE_UNTRACKED_ICMP: u32 = 9;
pub const REASON_RULE_NO_ENTRY: u32 = 10;

pub const FIRST_DROP_REASON: u32 = 16;

pub const REASON_NO_RULE: u32 = 16;
pub const REASON_SPOOFED_SOURCE: u32 = 17;
pub const REASON_SPOOFED_DESTINATION: u32 = 18;
pub const REASON_ARP_SPOOF: u32 = 19;
pub const REASON_NON_IP: u32 = 20;
pub const REASON_TRUNCATED_ETHERNET: u32 = 21;
pub const REASON_BAD_VLAN: u32 = 22;
pub const REASON_BAD_ARP: u32 = 23;
pub const REASON_BAD_IPV4: u32 = 24;
pub const REASON_BAD_IPV6: u32 = 25;
pub const REASON_IPV6_EXT_CHAIN: u32 = 26;
pub const REASON_IPV6_UNKNOWN_EXT: u32 = 27;
pub const REASON_TRUNCATED_L4: u32 = 28;
pub const REASON_FRAGMENT_WITHOUT_FIRST: u32 = 29;
pub const REASON_TINY_FIRST_FRAGMENT: u32 = 30;
pub const REASON_OVERLAPPING_FRAGMENT: u32 = 31;
pub const REASON_CT_FULL: u32 = 32;
pub const REASON_CT_CUT: u32 = 33;
pub const REASON_NO_CONFIG: u32 = 34;
pub const REASON_INTERNAL: u32 = 35;
pub const REASON_IPV6_ROUTING_TYPE0: u32 = 36;

pub const REASON_COUNT: usize = 40;

pub fn reason_passes(reason: u32) -> bool {
    reason < FIRST_DROP_REASON
}

/// Stable, metric-friendly names, indexed by reason number; empty where no reason is defined.
pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "ct_tracked",
    "ct_reply",
    "new_flow",
    "untracked",
    "fragment",
    "arp",
    "icmpv6_link",
    "exempt",
    "related_icmp",
    "rule_untracked_icmp",
    "rule_no_entry",
    "",
    "",
    "",
    "",
    "",
    "no_rule",
    "spoofed_source",
    "spoofed_destination",
    "arp_spoof",
    "non_ip",
    "truncated_ethernet",
    "bad_vlan",
    "bad_arp",
    "bad_ipv4",
    "bad_ipv6",
    "ipv6_ext_chain",
    "ipv6_unknown_ext",
    "truncated_l4",
    "fragment_without_first",
    "tiny_first_fragment",
    "overlapping_fragment",
    "conntrack_allowance_exceeded",
    "ct_cut",
    "no_config",
    "internal",
    "ipv6_routing_type0",
    "",
    "",
    "",
];

pub fn reason_name(reason: u32) -> &'static str {
    if (reason as usize) < REASON_COUNT {
        REASON_NAMES[reason as usize]
    } else {
        ""
    }
}
