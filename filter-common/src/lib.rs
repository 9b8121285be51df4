//! Map layouts and pure helpers shared by the eBPF datapath (`filter-ebpf`) and the agent.
//!
//! Rules for everything in this crate, because the kernel and two compilers read these bytes:
//! `#[repr(C)]`, every padding byte spelled out as a `_pad` field that writers zero, no `bool`,
//! `Option` or enums in map types (the verifier and the other side only see integers), addresses
//! as network-order byte arrays, and a size assertion per type so a layout change cannot slip by.
//! Changing any layout means bumping [`LAYOUT_VERSION`]: pinned maps of another layout are never
//! reused (see `docs/design.md`, "Runtime", Start).
#![no_std]

pub mod proto;
pub mod reason;

pub use proto::*;
pub use reason::*;

/// Bumped on any change to a type or map definition below. Pins live under `v{LAYOUT_VERSION}`.
pub const LAYOUT_VERSION: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Enumerations spelled as integers.
// ---------------------------------------------------------------------------------------------

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Traffic towards the instance (AWS "inbound"). The peer is the source address.
pub const DIR_INGRESS: u8 = 0;
/// Traffic from the instance (AWS "outbound"). The peer is the destination address.
pub const DIR_EGRESS: u8 = 1;
/// Pseudo-direction used in [`CidrKey::dir`] for the per-interface exempt list (I3).
pub const DIR_EXEMPT: u8 = 2;

/// Host side of a VM tap or container veth: TC both ways, host egress = instance ingress.
pub const ATTACH_PORT: u8 = 1;
/// This host's own NIC: XDP (or TC) ingress = inbound, TC egress = outbound.
pub const ATTACH_HOST: u8 = 2;

/// Source/destination check on (I1). Only meaningful for [`ATTACH_PORT`].
pub const IFACE_F_SOURCE_DEST_CHECK: u8 = 1 << 0;
/// Admit ICMP errors whose embedded header matches a tracked flow (C7 DECISION).
pub const IFACE_F_RELATED_ICMP: u8 = 1 << 1;
/// Cut tracked flows that the current policy no longer admits (the C4 option, off by default).
pub const IFACE_F_CUT_ON_POLICY_CHANGE: u8 = 1 << 2;
/// The interface has an exempt list (I3): only then is the exempt trie consulted, an LPM
/// lookup every packet would otherwise pay for nothing.
pub const IFACE_F_HAS_EXEMPT: u8 = 1 << 3;
/// DHCPv4 and DHCPv6 client traffic of the instance and the server's replies pass without a
/// rule (I6).
pub const IFACE_F_DHCP: u8 = 1 << 6;
/// The config gives the instance's MAC ([`IfaceConfig::mac`]): with the source/destination
/// check, frames from the instance must carry it (I7, port security).
pub const IFACE_F_MAC: u8 = 1 << 7;
/// The interface's subnet has a network ACL that does not admit everything (N1-N4): only then
/// are the ACL tries consulted, so an interface under the default ACL pays nothing for it.
pub const IFACE_F_HAS_ACL: u8 = 1 << 4;
/// Some rule of the interface names a prefix list (P1): only then is `PREFIX_LISTS` consulted.
pub const IFACE_F_HAS_PREFIX_LISTS: u8 = 1 << 5;

/// Conntrack states. A flow starts `NEW` in the embryonic pool. A UDP or ICMP flow becomes
/// `ESTABLISHED` (and moves to the established pool) with the first packet in the reply
/// direction. A TCP flow becomes `HALF_OPEN` with the SYN-ACK and stays embryonic until the
/// originator's ACK of that SYN-ACK completes the handshake: only a peer that received the
/// SYN-ACK can send it, so spoofed SYNs never reach the established pool (C5, C6).
pub const CT_STATE_NEW: u8 = 1;
pub const CT_STATE_ESTABLISHED: u8 = 2;
/// TCP after FIN or RST: kept for [`Timeouts::tcp_closing`] so the last ACKs pass.
pub const CT_STATE_CLOSING: u8 = 3;
/// TCP after the SYN-ACK, before the originator's ACK: still embryonic, under the TCP "not yet
/// established" timeout.
pub const CT_STATE_HALF_OPEN: u8 = 4;

/// The name `sgwall conntrack` and flow records give a conntrack state.
pub fn ct_state_name(state: u8) -> &'static str {
    match state {
        CT_STATE_ESTABLISHED => "established",
        CT_STATE_CLOSING => "closing",
        CT_STATE_HALF_OPEN => "half-open",
        _ => "new",
    }
}

/// How far past the SYN-ACK's sequence number the completing ACK may acknowledge: exactly the
/// SYN (+1), plus room for data a server sends with or right after its SYN-ACK (TCP Fast
/// Open). A blind spoofer guessing the number succeeds about once in 2^32 / this many tries.
pub const TCP_HANDSHAKE_ACK_WINDOW: u32 = 1 << 16;

/// Whether an ACK number acknowledges a SYN-ACK whose sequence number was `reply_isn`.
pub fn acks_handshake(reply_isn: u32, ack: u32) -> bool {
    ack.wrapping_sub(reply_isn.wrapping_add(1)) < TCP_HANDSHAKE_ACK_WINDOW
}

/// The flow has seen at least one packet in the reply direction.
pub const CT_F_SEEN_REPLY: u8 = 1 << 0;
/// UDP flow with traffic both ways more than once: gets the stream timeout (C5).
pub const CT_F_UDP_STREAM: u8 = 1 << 1;

pub const EVENT_FLOW_NEW: u8 = 1;
pub const EVENT_FLOW_DENIED: u8 = 2;
pub const EVENT_FLOW_END: u8 = 3;

/// Why an ended flow ended, carried in [`FlowEvent::reason`] for [`EVENT_FLOW_END`].
pub const END_EXPIRED: u8 = 1;
pub const END_TCP_REUSED: u8 = 2;
pub const END_POLICY_CUT: u8 = 3;

// ---------------------------------------------------------------------------------------------
// Capacities. The agent may raise the `*_DEFAULT` ones at load time; the others are structural.
// ---------------------------------------------------------------------------------------------

/// Bits in a rule bitmap: the most rules one interface can have in one direction. AWS caps
/// groups x rules per interface at 1000 (R7).
pub const RULE_BITS: usize = 1024;
pub const BITMAP_WORDS: usize = RULE_BITS / 64;
/// Rules counted for R7 must fit in one bitmap with room to spare.
pub const MAX_RULES_PER_DIRECTION: usize = 1000;

/// Interfaces one agent enforces. `ifslot` indexes counters, so it is small and dense.
pub const MAX_IFSLOTS: usize = 256;
/// Counter row used when a packet arrives on an interface with no configuration.
pub const IFSLOT_UNCONFIGURED: u16 = MAX_IFSLOTS as u16;
/// Global rule ids per policy slot; an interface's rules occupy `rule_base[dir]..+rule_count`.
pub const MAX_RULE_IDS_PER_SLOT: usize = 65_536;
pub const RULE_ID_NONE: u32 = u32::MAX;

pub const CT_ESTABLISHED_CAPACITY_DEFAULT: u32 = 262_144;
pub const CT_EMBRYONIC_CAPACITY_DEFAULT: u32 = 65_536;
pub const MEMBERS_CAPACITY_DEFAULT: u32 = 262_144;
pub const GROUP_BITS_CAPACITY_DEFAULT: u32 = 65_536;
pub const CIDR_CAPACITY_DEFAULT: u32 = 65_536;
pub const PORT_CAPACITY_DEFAULT: u32 = 262_144;
pub const LOCAL_ADDR_CAPACITY_DEFAULT: u32 = 16_384;
pub const FRAG_CAPACITY_DEFAULT: u32 = 16_384;
pub const ACL_CIDR_CAPACITY_DEFAULT: u32 = 16_384;
pub const ACL_PORT_CAPACITY_DEFAULT: u32 = 65_536;
pub const PREFIX_LIST_CAPACITY_DEFAULT: u32 = 65_536;
pub const PREFIX_LIST_BITS_CAPACITY_DEFAULT: u32 = 65_536;
pub const IFACE_CAPACITY: u32 = 2 * MAX_IFSLOTS as u32;
pub const EVENT_RING_BYTES_DEFAULT: u32 = 1 << 20;

/// Fixed bits in front of the address in a [`CidrKey`]; an LPM prefix is this plus the CIDR's.
pub const CIDR_KEY_FIXED_BITS: u32 = 64;
/// Fixed bits in front of the selector in a [`PortKey`].
pub const PORT_KEY_FIXED_BITS: u32 = 48;
/// Fixed bits in front of the address when an [`AddrKey`] keys the `PREFIX_LISTS` trie.
pub const PREFIX_LIST_KEY_FIXED_BITS: u32 = 32;

/// Bits of a network ACL bitmap ([`AclBits`]): bit 0 is the interface's own subnet (traffic
/// inside it skips the ACL, N4), bits 1.. the ACL's entries in number order. N2 caps an ACL at
/// 40 entries per direction.
pub const ACL_BITS: usize = 64;
/// The bit that stands for "the peer is in the interface's own subnet".
pub const ACL_SAME_SUBNET_BIT: u8 = 0;

/// Map names as they appear in the eBPF object and under the pin directory.
pub mod map_names {
    pub const ACTIVE: &str = "SGW_ACTIVE";
    pub const SETTINGS: &str = "SGW_SETTINGS";
    pub const IFACES: &str = "SGW_IFACES";
    pub const CIDRS: &str = "SGW_CIDRS";
    pub const PORTS: &str = "SGW_PORTS";
    pub const GROUP_BITS: &str = "SGW_GROUP_BITS";
    pub const MEMBERS: &str = "SGW_MEMBERS";
    pub const LOCAL_ADDRS: &str = "SGW_LOCAL_ADDRS";
    pub const CT_EMBRYONIC: &str = "SGW_CT_NEW";
    pub const CT_ESTABLISHED: &str = "SGW_CT_EST";
    pub const CT_COUNT: &str = "SGW_CT_COUNT";
    pub const CT_REMOVED_BY_AGENT: &str = "SGW_CT_AGENT_DEL";
    pub const FRAGMENTS: &str = "SGW_FRAGS";
    pub const ACL_CIDRS: &str = "SGW_ACL_CIDRS";
    pub const ACL_PORTS: &str = "SGW_ACL_PORTS";
    pub const PREFIX_LISTS: &str = "SGW_PREFIX_LISTS";
    pub const PREFIX_LIST_BITS: &str = "SGW_PL_BITS";
    pub const COUNTERS: &str = "SGW_COUNTERS";
    pub const RULE_HITS: &str = "SGW_RULE_HITS";
    pub const EVENTS: &str = "SGW_EVENTS";
    pub const DENY_RATE: &str = "SGW_DENY_RATE";
    pub const SCRATCH: &str = "SGW_SCRATCH";
    pub const DECIDE_SCRATCH: &str = "SGW_DECIDE";
    /// One program array per program type: the kernel lets a program array serve one type only.
    pub const DECIDE_XDP: &str = "SGW_DECIDE_XDP";
    pub const DECIDE_TC: &str = "SGW_DECIDE_TC";

    /// Maps that outlive the agent (pinned): everything that carries policy or flow state.
    pub const PINNED: &[&str] = &[
        ACTIVE,
        SETTINGS,
        IFACES,
        CIDRS,
        PORTS,
        GROUP_BITS,
        MEMBERS,
        LOCAL_ADDRS,
        ACL_CIDRS,
        ACL_PORTS,
        PREFIX_LISTS,
        PREFIX_LIST_BITS,
        CT_EMBRYONIC,
        CT_ESTABLISHED,
        CT_COUNT,
        CT_REMOVED_BY_AGENT,
        FRAGMENTS,
        COUNTERS,
        RULE_HITS,
        EVENTS,
        DENY_RATE,
        // A program array's entries are flushed when no user reference is left: it must be
        // pinned, or enforcement stops when the agent exits.
        DECIDE_XDP,
        DECIDE_TC,
    ];
}

/// Program names in the eBPF object. The hook programs inspect the packet and tail-call the
/// decide program of their type through `SGW_DECIDE_XDP` or `SGW_DECIDE_TC` (index 0).
pub mod program_names {
    pub const XDP_INGRESS: &str = "sgw_xdp_ingress";
    pub const TC_INGRESS: &str = "sgw_tc_ingress";
    pub const TC_EGRESS: &str = "sgw_tc_egress";
    pub const XDP_DECIDE: &str = "sgw_xdp_decide";
    pub const TC_DECIDE: &str = "sgw_tc_decide";
}

// ---------------------------------------------------------------------------------------------
// Map types.
// ---------------------------------------------------------------------------------------------

/// One bit per rule of one interface and direction. Bit `i` is the rule with id `i` in the
/// interface's effective rule order, so the lowest set bit of a match is the first rule that
/// matched.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleBitmap {
    pub words: [u64; BITMAP_WORDS],
}
const _: () = assert!(core::mem::size_of::<RuleBitmap>() == 128);

impl RuleBitmap {
    pub const EMPTY: Self = Self {
        words: [0; BITMAP_WORDS],
    };

    pub fn set(&mut self, bit: usize) {
        if bit < RULE_BITS {
            self.words[bit / 64] |= 1u64 << (bit % 64);
        }
    }

    pub fn get(&self, bit: usize) -> bool {
        bit < RULE_BITS && self.words[bit / 64] & (1u64 << (bit % 64)) != 0
    }

    pub fn union_with(&mut self, other: &Self) {
        for (word, other_word) in self.words.iter_mut().zip(other.words.iter()) {
            *word |= *other_word;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }

    pub fn lowest(&self) -> Option<u16> {
        for (index, word) in self.words.iter().enumerate() {
            if *word != 0 {
                return Some((index * 64) as u16 + word.trailing_zeros() as u16);
            }
        }
        None
    }
}

/// `ACTIVE[0]`: the policy generation in force. Its parity is the slot readers use, so a flip is
/// one aligned 8-byte store and a packet never mixes two generations.
pub fn slot_of_generation(generation: u64) -> u8 {
    (generation & 1) as u8
}

/// Datapath-wide knobs, `SETTINGS[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Denied-flow events each CPU may emit per second; the rest are counted as suppressed.
    pub denied_events_per_sec: u32,
    /// Non-zero: emit flow-new and flow-end events.
    pub flow_events: u32,
    /// How long a first fragment's verdict admits its later fragments (H1).
    pub fragment_timeout_sec: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Settings>() == 16);

impl Settings {
    pub const DEFAULT: Self = Self {
        denied_events_per_sec: 200,
        flow_events: 1,
        fragment_timeout_sec: 30,
        _pad: 0,
    };
}

/// Key of `IFACES`: interface configuration per policy slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceKey {
    pub slot: u8,
    pub _pad: [u8; 3],
    pub ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<IfaceKey>() == 8);

/// Idle timeouts in seconds (C5).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    pub tcp_established: u32,
    /// TCP before the reply direction was seen.
    pub tcp_new: u32,
    /// TCP after FIN or RST.
    pub tcp_closing: u32,
    pub udp: u32,
    pub udp_stream: u32,
    /// ICMP echo and every other protocol.
    pub other: u32,
}
const _: () = assert!(core::mem::size_of::<Timeouts>() == 24);

impl Timeouts {
    pub const AWS_DEFAULT: Self = Self {
        tcp_established: 432_000,
        tcp_new: 60,
        tcp_closing: 10,
        udp: 30,
        udp_stream: 180,
        other: 60,
    };
}

/// Value of `IFACES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    pub ifslot: u16,
    /// [`ATTACH_PORT`] or [`ATTACH_HOST`].
    pub attach: u8,
    /// `IFACE_F_*`.
    pub flags: u8,
    /// Established flows this interface may hold before new flows are dropped (C6).
    pub max_flows: u32,
    pub timeouts: Timeouts,
    /// First global rule id of this interface's rules, per direction (indexes `RULE_HITS`).
    pub rule_base: [u32; 2],
    pub rule_count: [u16; 2],
    /// The instance's MAC when the config gives it ([`IFACE_F_MAC`]), else zero.
    pub mac: [u8; 6],
    pub _pad: [u8; 6],
    /// Interface name, NUL padded: lets a restarted agent match pins to its configuration.
    pub name: [u8; 16],
    /// Global rule id of network ACL bit 0, per direction (ACL entry hits share `RULE_HITS`).
    pub acl_rule_base: [u32; 2],
    /// ACL bits (see [`ACL_BITS`]) whose entry allows, per direction; the rest deny.
    pub acl_allow: [AclBits; 2],
    /// ACL bits whose entry is for every protocol, per direction.
    pub acl_all_protocols: [AclBits; 2],
    /// Rules with protocol `all`, per direction: they match every protocol and port.
    pub all_protocols: [RuleBitmap; 2],
    /// Rules whose flows need no conntrack entry (C8), indexed `dir * 2 + (0 TCP | 1 UDP)`:
    /// whether the reverse direction is open on all ports depends on the protocol.
    pub untracked: [RuleBitmap; 4],
}
const _: () = assert!(core::mem::size_of::<IfaceConfig>() == 72 + 40 + 6 * 128);

/// Value of `ACL_CIDRS` and `ACL_PORTS`: one bit per network ACL entry of one interface and
/// direction (see [`ACL_BITS`]).
pub type AclBits = u64;

/// The network ACL's verdict for a packet (N2): the lowest entry both its peer and its service
/// match, whether that entry allows, or `None` for the final `*` entry, which denies.
pub fn acl_first_match(cidr: AclBits, port: AclBits, all_protocols: AclBits) -> Option<u8> {
    let matched = cidr & (port | all_protocols);
    if matched == 0 {
        return None;
    }
    Some(matched.trailing_zeros() as u8)
}

/// Key data of the `CIDRS` LPM trie. The prefix always covers the fixed fields
/// ([`CIDR_KEY_FIXED_BITS`]) so a lookup only ever matches entries of its own slot, direction,
/// family and interface; the family byte keeps 0.0.0.0/0 and ::/0 apart (R5).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CidrKey {
    pub slot: u8,
    /// [`DIR_INGRESS`], [`DIR_EGRESS`] or [`DIR_EXEMPT`].
    pub dir: u8,
    pub family: u8,
    pub _pad: u8,
    pub ifslot: u16,
    pub _pad2: [u8; 2],
    /// IPv4 addresses use the first 4 bytes; the rest stay zero.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<CidrKey>() == 24);

/// Key data of the `PORTS` LPM trie: protocol and a 16-bit selector, big-endian so that port
/// ranges decompose into prefixes. The selector is the destination port for TCP and UDP,
/// `type << 8 | code` for ICMP and ICMPv6, and 0 for other protocols.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    pub slot: u8,
    pub dir: u8,
    pub proto: u8,
    pub _pad: u8,
    pub ifslot: u16,
    pub selector: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PortKey>() == 8);

/// Key of `GROUP_BITS`: the rules of one interface and direction whose peer is one of the groups
/// in membership set `set_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupBitsKey {
    pub slot: u8,
    pub dir: u8,
    pub _pad: [u8; 2],
    pub ifslot: u16,
    pub _pad2: [u8; 2],
    pub set_id: u64,
}
const _: () = assert!(core::mem::size_of::<GroupBitsKey>() == 16);

/// Key of `MEMBERS` (an address of any interface with a group attached) and of address sets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey {
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);

/// Value of `MEMBERS`. The set id is a hash of the sorted group names, so a restarted agent
/// derives the same ids and does not rewrite a single member.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberValue {
    pub set_id: u64,
}
const _: () = assert!(core::mem::size_of::<MemberValue>() == 8);

/// Key of `LOCAL_ADDRS`: an address the instance behind `ifslot` owns (I1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalAddrKey {
    pub ifslot: u16,
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<LocalAddrKey>() == 20);

/// Conntrack key, oriented to the interface rather than to the packet: `local` is the
/// instance's side. Both directions of a flow therefore land on the same entry, which makes the
/// reverse (reply) lookup and the forward lookup one and the same.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub ifindex: u32,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Host byte order. For ICMP echo, `local_port` is the echo identifier and `remote_port` 0.
    pub local_port: u16,
    pub remote_port: u16,
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 44);

/// Conntrack value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry {
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// Index 0: the originating direction; 1: replies.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Policy generation this flow was last judged under (for the C4 cut option).
    pub generation: u64,
    /// Global rule id that admitted the flow, or [`RULE_ID_NONE`].
    pub rule_id: u32,
    pub ifslot: u16,
    /// Selector of the first packet, kept so the cut option can re-judge the flow.
    pub selector: u16,
    /// Direction of the first packet.
    pub origin: u8,
    pub state: u8,
    pub flags: u8,
    pub _pad: u8,
    /// TCP: the sequence number of the SYN-ACK seen ([`CT_STATE_HALF_OPEN`]); the completing
    /// ACK must acknowledge it ([`acks_handshake`]).
    pub reply_isn: u32,
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 72);

/// `CT_COUNT[ifslot]`: established entries inserted and removed by the datapath. The agent's
/// removals go to a separate array it alone writes, so neither side ever loses an update:
/// live = inserted - removed - removed_by_agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtCount {
    pub inserted: u64,
    pub removed: u64,
}
const _: () = assert!(core::mem::size_of::<CtCount>() == 16);

/// Key of `FRAGMENTS` (H1/H2): the datagram a first fragment started.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub ifindex: u32,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
    pub id: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 44);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragEntry {
    pub first_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<FragEntry>() == 8);

/// One `COUNTERS` cell (per CPU): packets and bytes for one interface, direction and reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

pub const COUNTER_ROWS: usize = MAX_IFSLOTS + 1;
pub const COUNTERS_LEN: u32 = (COUNTER_ROWS * 2 * REASON_COUNT) as u32;

/// Index into `COUNTERS`.
pub fn counter_index(ifslot: u16, dir: u8, reason: u32) -> u32 {
    let row = if (ifslot as usize) < COUNTER_ROWS {
        ifslot as u32
    } else {
        IFSLOT_UNCONFIGURED as u32
    };
    (row * 2 + (dir as u32 & 1)) * REASON_COUNT as u32 + reason
}

pub const RULE_HITS_LEN: u32 = (2 * MAX_RULE_IDS_PER_SLOT) as u32;

/// Index into `RULE_HITS`: hits are kept per policy slot so the agent can fold a retired
/// generation's counts into stable rule identities before the slot is reused.
pub fn rule_hit_index(slot: u8, rule_id: u32) -> u32 {
    (slot as u32 & 1) * MAX_RULE_IDS_PER_SLOT as u32 + rule_id
}

/// `DENY_RATE[0]` (per CPU): a one-second window of denied-flow events.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RateWindow {
    pub window_start_ns: u64,
    pub emitted: u32,
    pub suppressed: u32,
}
const _: () = assert!(core::mem::size_of::<RateWindow>() == 16);

/// A record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub timestamp_ns: u64,
    /// `EVENT_*`.
    pub kind: u8,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
    /// Drop reason for denied events, `END_*` for ended flows.
    pub reason: u8,
    pub _pad: [u8; 3],
    pub ifindex: u32,
    pub rule_id: u32,
    pub generation: u64,
    /// Packet orientation for new and denied flows; flow orientation for ended flows.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// Denied events this CPU suppressed before this one (rate limit).
    pub suppressed: u32,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 104);

/// `SGW_SCRATCH[0]` (per CPU): what the inspect stage learnt of the packet, handed to the decide
/// stage across the tail call. Only scalars: the decide stage never touches packet memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketFacts {
    pub generation: u64,
    pub ifindex: u32,
    pub frame_len: u32,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Non-zero: a first fragment, whose verdict its later fragments inherit (H1).
    pub first_fragment: u8,
    /// Non-zero: an ICMP error whose quoted flow is in `quoted` (C7).
    pub has_quoted: u8,
    pub fragment_id: u32,
    /// Packet orientation.
    pub src_port: u16,
    pub dst_port: u16,
    pub echo_id: u16,
    /// In 8-byte units; non-zero only for a later fragment, which has no transport header (H1).
    pub fragment_offset: u16,
    /// TCP sequence and acknowledgement numbers (host order): the handshake check.
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The tracked-flow key an ICMP error refers to, oriented to the interface.
    pub quoted: CtKey,
    /// The frame's source MAC (port security, I7).
    pub source_mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PacketFacts>() == 128);

// ---------------------------------------------------------------------------------------------
// Pure helpers both sides use, so the userspace model of the datapath runs the same code.
// ---------------------------------------------------------------------------------------------

/// The selector a rule lookup uses for a packet (see [`PortKey`]).
pub fn selector_for(proto: u8, dst_port: u16, icmp_type: u8, icmp_code: u8) -> u16 {
    match proto {
        PROTO_TCP | PROTO_UDP => dst_port,
        PROTO_ICMP | PROTO_ICMPV6 => ((icmp_type as u16) << 8) | icmp_code as u16,
        _ => 0,
    }
}

/// Idle timeout of a flow in seconds, by protocol, state and flags (C5).
pub fn timeout_secs(timeouts: &Timeouts, proto: u8, state: u8, flags: u8) -> u32 {
    match proto {
        PROTO_TCP => match state {
            CT_STATE_ESTABLISHED => timeouts.tcp_established,
            CT_STATE_CLOSING => timeouts.tcp_closing,
            _ => timeouts.tcp_new,
        },
        PROTO_UDP => {
            if flags & CT_F_UDP_STREAM != 0 {
                timeouts.udp_stream
            } else {
                timeouts.udp
            }
        }
        _ => timeouts.other,
    }
}

/// An entry is valid only while `now - last_seen < timeout` (C5).
pub fn ct_entry_is_live(now_ns: u64, last_seen_ns: u64, timeout_secs: u32) -> bool {
    now_ns.saturating_sub(last_seen_ns) < timeout_secs as u64 * 1_000_000_000
}

/// What a flow's peer matches: the rules whose CIDR covers it, whose group it is a member of
/// (G1), and whose prefix list has an entry covering it (P1).
#[derive(Clone, Copy)]
pub struct PeerBits<'a> {
    pub cidr: Option<&'a RuleBitmap>,
    pub group: Option<&'a RuleBitmap>,
    pub prefix_list: Option<&'a RuleBitmap>,
}

impl PeerBits<'_> {
    #[inline(always)]
    fn word(&self, index: usize) -> u64 {
        self.cidr.map_or(0, |b| b.words[index])
            | self.group.map_or(0, |b| b.words[index])
            | self.prefix_list.map_or(0, |b| b.words[index])
    }
}

/// Lowest rule that matches: `(cidr | group | prefix list) & (port | all_protocols)`, word by
/// word, so the cost is the same 16 words whatever the number of rules, members or entries.
pub fn first_match(
    peer: &PeerBits,
    port: Option<&RuleBitmap>,
    all_protocols: &RuleBitmap,
) -> Option<u16> {
    let mut index = 0;
    while index < BITMAP_WORDS {
        let service = port.map_or(0, |b| b.words[index]) | all_protocols.words[index];
        let matched = peer.word(index) & service;
        if matched != 0 {
            return Some((index * 64) as u16 + matched.trailing_zeros() as u16);
        }
        index += 1;
    }
    None
}

/// Whether any rule that matches is also in `mask`: `peer & (port | all) & mask`.
pub fn any_match_in(
    peer: &PeerBits,
    port: Option<&RuleBitmap>,
    all_protocols: &RuleBitmap,
    mask: &RuleBitmap,
) -> bool {
    let mut index = 0;
    while index < BITMAP_WORDS {
        let service = port.map_or(0, |b| b.words[index]) | all_protocols.words[index];
        if peer.word(index) & service & mask.words[index] != 0 {
            return true;
        }
        index += 1;
    }
    false
}

/// `SGW_DECIDE[0]` (per CPU): what the decide stage's two lookups in their own BPF functions
/// (the network ACL, rule classification) answer. Kept in map memory rather than returned in
/// registers so that, however a lookup went, the verifier resumes the caller in one state
/// instead of walking the rest of the verdict once per outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecideScratch {
    /// [`ACL_PASSES`], [`ACL_DENIES`] or [`ACL_NO_ENTRY`].
    pub acl_verdict: u32,
    /// Global rule id of the ACL entry that matched (it counts a hit), or [`RULE_ID_NONE`]: no
    /// ACL, the own subnet, or no entry.
    pub acl_entry: u32,
    /// The interface's rule bit that admits the flow, or [`NO_RULE`].
    pub rule: u32,
    /// Non-zero: some admitting rule makes the flow untracked (C8).
    pub untracked: u32,
}
const _: () = assert!(core::mem::size_of::<DecideScratch>() == 16);

/// Not filtered, inside the own subnet, or an entry that allows.
pub const ACL_PASSES: u32 = 0;
/// An entry that denies matched first.
pub const ACL_DENIES: u32 = 1;
/// No entry matched: the final `*` denies.
pub const ACL_NO_ENTRY: u32 = 2;
/// [`DecideScratch::rule`] when no rule admits the flow.
pub const NO_RULE: u32 = u32::MAX;

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: every type is #[repr(C)], made only of integers and arrays of integers, with all
    // padding spelled out as fields, so any byte pattern is a valid value.
    unsafe impl aya::Pod for RuleBitmap {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for IfaceKey {}
    unsafe impl aya::Pod for IfaceConfig {}
    unsafe impl aya::Pod for CidrKey {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for GroupBitsKey {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for MemberValue {}
    unsafe impl aya::Pod for LocalAddrKey {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtEntry {}
    unsafe impl aya::Pod for CtCount {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragEntry {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for RateWindow {}
    unsafe impl aya::Pod for FlowEvent {}
    unsafe impl aya::Pod for PacketFacts {}
    unsafe impl aya::Pod for DecideScratch {}
}
