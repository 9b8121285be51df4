//! Map definitions. Layouts and names come from `filter-common`; `docs/design.md` describes
//! each map. Sizes here are defaults: the agent sets the real `max_entries` at load time.
//!
//! Maps only the agent writes are not preallocated: their memory follows what the policy uses.
//! Maps the datapath inserts into (conntrack, fragments) are, so that no packet waits on an
//! allocation and a full table is a clean, counted refusal (C6).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use filter_common::*;

#[map(name = "SGW_ACTIVE")]
pub static ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "SGW_SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "SGW_IFACES")]
pub static IFACES: HashMap<IfaceKey, IfaceConfig> =
    HashMap::with_max_entries(IFACE_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "SGW_CIDRS")]
pub static CIDRS: LpmTrie<CidrKey, RuleBitmap> =
    LpmTrie::with_max_entries(CIDR_CAPACITY_DEFAULT, 0);

#[map(name = "SGW_PORTS")]
pub static PORTS: LpmTrie<PortKey, RuleBitmap> =
    LpmTrie::with_max_entries(PORT_CAPACITY_DEFAULT, 0);

#[map(name = "SGW_GROUP_BITS")]
pub static GROUP_BITS: HashMap<GroupBitsKey, RuleBitmap> =
    HashMap::with_max_entries(GROUP_BITS_CAPACITY_DEFAULT, BPF_F_NO_PREALLOC);

#[map(name = "SGW_MEMBERS")]
pub static MEMBERS: HashMap<AddrKey, MemberValue> =
    HashMap::with_max_entries(MEMBERS_CAPACITY_DEFAULT, BPF_F_NO_PREALLOC);

#[map(name = "SGW_LOCAL_ADDRS")]
pub static LOCAL_ADDRS: HashMap<LocalAddrKey, u32> =
    HashMap::with_max_entries(LOCAL_ADDR_CAPACITY_DEFAULT, BPF_F_NO_PREALLOC);

/// Network ACL entries by peer CIDR (N2), slotted like `CIDRS`.
#[map(name = "SGW_ACL_CIDRS")]
pub static ACL_CIDRS: LpmTrie<CidrKey, AclBits> =
    LpmTrie::with_max_entries(ACL_CIDR_CAPACITY_DEFAULT, 0);

/// Network ACL entries by protocol and selector (N2), slotted like `PORTS`.
#[map(name = "SGW_ACL_PORTS")]
pub static ACL_PORTS: LpmTrie<PortKey, AclBits> =
    LpmTrie::with_max_entries(ACL_PORT_CAPACITY_DEFAULT, 0);

/// Prefix list entries (P1) → the set of lists covering them. Not slotted, like `MEMBERS`.
#[map(name = "SGW_PREFIX_LISTS")]
pub static PREFIX_LISTS: LpmTrie<AddrKey, MemberValue> =
    LpmTrie::with_max_entries(PREFIX_LIST_CAPACITY_DEFAULT, 0);

/// (slot, dir, ifslot, prefix list set) → the rules whose list is in the set.
#[map(name = "SGW_PL_BITS")]
pub static PREFIX_LIST_BITS: HashMap<GroupBitsKey, RuleBitmap> =
    HashMap::with_max_entries(PREFIX_LIST_BITS_CAPACITY_DEFAULT, BPF_F_NO_PREALLOC);

/// Embryonic flows: LRU, so a flood of new flows only pushes out other new flows.
#[map(name = "SGW_CT_NEW")]
pub static CT_NEW: LruHashMap<CtKey, CtEntry> =
    LruHashMap::with_max_entries(CT_EMBRYONIC_CAPACITY_DEFAULT, 0);

/// Established flows: never evicted; a full table refuses new flows instead (C6).
#[map(name = "SGW_CT_EST")]
pub static CT_EST: HashMap<CtKey, CtEntry> =
    HashMap::with_max_entries(CT_ESTABLISHED_CAPACITY_DEFAULT, 0);

#[map(name = "SGW_CT_COUNT")]
pub static CT_COUNT: Array<CtCount> = Array::with_max_entries(MAX_IFSLOTS as u32, 0);

#[map(name = "SGW_CT_AGENT_DEL")]
pub static CT_REMOVED_BY_AGENT: Array<u64> = Array::with_max_entries(MAX_IFSLOTS as u32, 0);

#[map(name = "SGW_FRAGS")]
pub static FRAGMENTS: LruHashMap<FragKey, FragEntry> =
    LruHashMap::with_max_entries(FRAG_CAPACITY_DEFAULT, 0);

#[map(name = "SGW_COUNTERS")]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map(name = "SGW_RULE_HITS")]
pub static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RULE_HITS_LEN, 0);

#[map(name = "SGW_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES_DEFAULT, 0);

#[map(name = "SGW_DENY_RATE")]
pub static DENY_RATE: PerCpuArray<RateWindow> = PerCpuArray::with_max_entries(1, 0);

/// Facts the inspect stage hands to the decide stage, per CPU (tail calls stay on one CPU).
#[map(name = "SGW_SCRATCH")]
pub static SCRATCH: PerCpuArray<PacketFacts> = PerCpuArray::with_max_entries(1, 0);

/// The answers of the decide stage's own BPF functions (see `DecideScratch`); not pinned.
#[map(name = "SGW_DECIDE")]
pub static DECIDE_SCRATCH: PerCpuArray<DecideScratch> = PerCpuArray::with_max_entries(1, 0);

/// The decide program for XDP hooks, at index 0. A program array serves one program type.
#[map(name = "SGW_DECIDE_XDP")]
pub static DECIDE_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The decide program for TC hooks, at index 0.
#[map(name = "SGW_DECIDE_TC")]
pub static DECIDE_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);
