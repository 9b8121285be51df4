//! The policy a packet is judged under, and its lookups: rule classification (which rule, if
//! any, admits the first packet of a flow: a fixed number of lookups and a fixed 16-word AND,
//! whatever the number of rules, members or prefix list entries, see `docs/design.md`), the
//! network ACL (two lookups and one word, whatever the number of entries), the exempt list and
//! the instance's own addresses.

use core::ptr::read_volatile;

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    ACL_DENIES, ACL_NO_ENTRY, ACL_PASSES, ACL_SAME_SUBNET_BIT, AddrKey, CIDR_KEY_FIXED_BITS,
    CidrKey, DIR_EXEMPT, GroupBitsKey, IFACE_F_HAS_ACL, IFACE_F_HAS_PREFIX_LISTS, IfaceConfig,
    IfaceKey, LocalAddrKey, NO_RULE, PORT_KEY_FIXED_BITS, PREFIX_LIST_KEY_FIXED_BITS, PROTO_TCP,
    PROTO_UDP, PeerBits, PortKey, RULE_BITS, RULE_ID_NONE, RuleBitmap, acl_first_match,
    any_match_in, first_match, slot_of_generation,
};

use crate::maps::{
    ACL_CIDRS, ACL_PORTS, CIDRS, DECIDE_SCRATCH, GROUP_BITS, IFACES, LOCAL_ADDRS, MEMBERS, PORTS,
    PREFIX_LIST_BITS, PREFIX_LISTS,
};

/// The policy generation in force and one interface's configuration in its slot.
pub struct Policy<'a> {
    pub slot: u8,
    pub generation: u64,
    pub iface: &'a IfaceConfig,
}

impl Policy<'_> {
    /// The configuration of `ifindex` under `generation`; `None` when that policy does not
    /// describe the interface.
    #[inline(always)]
    pub fn of_interface(generation: u64, ifindex: u32) -> Option<Self> {
        let slot = slot_of_generation(generation);
        let iface = IFACES.get_ptr(IfaceKey {
            slot,
            _pad: [0; 3],
            ifindex,
        })?;
        Some(Policy {
            slot,
            generation,
            // SAFETY: the kernel's pointer to the value; valid for this program run (RCU).
            iface: unsafe { &*iface },
        })
    }

    /// Global id of the interface's rule `bit` in direction `dir` (indexes `RULE_HITS`).
    #[inline(always)]
    pub fn rule_id(&self, dir: u8, bit: u16) -> u32 {
        self.iface.rule_base[usize::from(dir & 1)] + u32::from(bit)
    }

    /// Global id of the interface's network ACL `bit` in direction `dir` (indexes `RULE_HITS`).
    #[inline(always)]
    pub fn acl_rule_id(&self, dir: u8, bit: u8) -> u32 {
        self.iface.acl_rule_base[usize::from(dir & 1)] + u32::from(bit)
    }
}

/// The outcome of classifying a flow's first packet.
pub struct Match {
    /// The lowest-numbered rule that admits it.
    pub rule: u16,
    /// Some admitting rule makes it an untracked flow (C8).
    pub untracked: bool,
}

/// Lookups use the full key; entries carry their own, shorter, prefix lengths.
const CIDR_LOOKUP_BITS: u32 = CIDR_KEY_FIXED_BITS + 128;
const PORT_LOOKUP_BITS: u32 = PORT_KEY_FIXED_BITS + 16;
const PREFIX_LIST_LOOKUP_BITS: u32 = PREFIX_LIST_KEY_FIXED_BITS + 128;

#[inline(always)]
fn cidr_key(slot: u8, dir: u8, family: u8, ifslot: u16, addr: &[u8; 16]) -> Key<CidrKey> {
    Key::new(
        CIDR_LOOKUP_BITS,
        CidrKey {
            slot,
            dir,
            family,
            _pad: 0,
            ifslot,
            _pad2: [0; 2],
            addr: *addr,
        },
    )
}

/// What the rules are matched against: the first packet of a flow, as the interface saw it.
#[derive(Clone, Copy)]
pub struct Lookup<'a> {
    pub dir: u8,
    pub family: u8,
    /// The remote address: the source of an inbound packet, the destination of an outbound one.
    pub peer: &'a [u8; 16],
    pub proto: u8,
    pub selector: u16,
}

/// Which rule of this interface admits the flow, if any.
#[inline(always)]
pub fn classify(policy: &Policy, lookup: Lookup) -> Option<Match> {
    let out = DECIDE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else uses it while this program runs. No rule unless the
    // function below says otherwise: a stale answer must never admit.
    unsafe { (*out).rule = NO_RULE };
    if classify_into_scratch(policy, &lookup) != DONE {
        return None;
    }
    let answer = DECIDE_SCRATCH.get(0)?;
    if answer.rule >= RULE_BITS as u32 {
        return None;
    }
    Some(Match {
        rule: answer.rule as u16,
        untracked: answer.untracked != 0,
    })
}

/// [`classify`]'s lookups in a BPF function of their own, answering in `DECIDE_SCRATCH`
/// (see `DecideScratch`); returns [`done`].
#[inline(never)]
fn classify_into_scratch(policy: &Policy, lookup: &Lookup) -> u32 {
    let Some(out) = DECIDE_SCRATCH.get_ptr_mut(0) else {
        return done();
    };
    let (rule, untracked) = match lookup_rule(policy, *lookup) {
        Some(matched) => (u32::from(matched.rule), u32::from(matched.untracked)),
        None => (NO_RULE, 0),
    };
    // SAFETY: as in `classify`.
    unsafe {
        (*out).rule = rule;
        (*out).untracked = untracked;
    }
    done()
}

/// What the BPF functions of their own return when done.
const DONE: u32 = 0;

/// [`DONE`] as a BPF function returns it: read back from a volatile stack slot, so the
/// compiler can neither fold it into the caller nor drop the return value (R0 then holds
/// whatever the function left in it, a pointer to the caller's stack for one, which the
/// verifier refuses), while the verifier knows the value: every path through the function
/// resumes the caller in one state.
#[inline(always)]
fn done() -> u32 {
    let done = DONE;
    // SAFETY: a read of a local.
    unsafe { read_volatile(&done) }
}

#[inline(always)]
fn lookup_rule(policy: &Policy, lookup: Lookup) -> Option<Match> {
    let (slot, iface) = (policy.slot, policy.iface);
    let Lookup {
        dir,
        family,
        peer,
        proto,
        selector,
    } = lookup;
    let cidr = CIDRS.get(cidr_key(slot, dir, family, iface.ifslot, peer));
    let member = MEMBERS.get_ptr(AddrKey {
        family,
        _pad: [0; 3],
        addr: *peer,
    });
    let group = match member {
        // SAFETY: a pointer the kernel returned for this lookup; read once, immediately.
        Some(member) => GROUP_BITS.get_ptr(GroupBitsKey {
            slot,
            dir,
            _pad: [0; 2],
            ifslot: iface.ifslot,
            _pad2: [0; 2],
            set_id: unsafe { (*member).set_id },
        }),
        None => None,
    };
    let port = PORTS.get(port_key(slot, dir, proto, iface.ifslot, selector));
    // SAFETY: map value pointers stay valid for the rest of this program run (RCU).
    let group: Option<&RuleBitmap> = group.map(|ptr| unsafe { &*ptr });
    let peer_bits = PeerBits {
        cidr,
        group,
        prefix_list: prefix_list_bits(policy, dir, family, peer),
    };
    let all_protocols = &iface.all_protocols[usize::from(dir & 1)];
    let rule = first_match(&peer_bits, port, all_protocols)?;
    let untracked = (proto == PROTO_TCP || proto == PROTO_UDP) && {
        let mask = &iface.untracked[usize::from(dir & 1) * 2 + usize::from(proto == PROTO_UDP)];
        any_match_in(&peer_bits, port, all_protocols, mask)
    };
    Some(Match { rule, untracked })
}

#[inline(always)]
fn port_key(slot: u8, dir: u8, proto: u8, ifslot: u16, selector: u16) -> Key<PortKey> {
    Key::new(
        PORT_LOOKUP_BITS,
        PortKey {
            slot,
            dir,
            proto,
            _pad: 0,
            ifslot,
            selector: selector.to_be_bytes(),
        },
    )
}

/// P1: the rules whose prefix list has an entry covering `peer`: the trie gives the set of
/// lists covering it, the set the rules. Skipped where no rule names a list.
#[inline(always)]
fn prefix_list_bits<'a>(
    policy: &Policy<'a>,
    dir: u8,
    family: u8,
    peer: &[u8; 16],
) -> Option<&'a RuleBitmap> {
    if policy.iface.flags & IFACE_F_HAS_PREFIX_LISTS == 0 {
        return None;
    }
    let set = PREFIX_LISTS.get(Key::new(
        PREFIX_LIST_LOOKUP_BITS,
        AddrKey {
            family,
            _pad: [0; 3],
            addr: *peer,
        },
    ))?;
    let bits = PREFIX_LIST_BITS.get_ptr(GroupBitsKey {
        slot: policy.slot,
        dir,
        _pad: [0; 2],
        ifslot: policy.iface.ifslot,
        _pad2: [0; 2],
        set_id: set.set_id,
    })?;
    // SAFETY: map value pointers stay valid for the rest of this program run (RCU).
    Some(unsafe { &*bits })
}

/// The network ACL's verdict on the packet, left in `DECIDE_SCRATCH` (see [`acl_passes`],
/// [`acl_verdict`]). Until it is written, the packet is denied.
#[inline(always)]
pub fn judge_acl(policy: &Policy, lookup: &Lookup) {
    if let Some(out) = DECIDE_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else uses it while this program runs.
        unsafe {
            (*out).acl_verdict = ACL_DENIES;
            (*out).acl_entry = RULE_ID_NONE;
        }
        // Whatever it returns, the verdict is in the slot (denied until written).
        let _ = judge_acl_into_scratch(policy, lookup) != DONE;
    }
}

/// N2: two lookups and one word, whatever the number of entries: the entries whose CIDR covers
/// the peer, AND those whose protocol and ports admit this packet's service; the lowest bit is
/// the first entry in number order (bit 0: the own subnet, N4), and the allow mask says what it
/// does. A BPF function of its own, answering in map memory (see `DecideScratch`); returns
/// [`done`].
#[inline(never)]
fn judge_acl_into_scratch(policy: &Policy, lookup: &Lookup) -> u32 {
    let Some(out) = DECIDE_SCRATCH.get_ptr_mut(0) else {
        return done();
    };
    let iface = policy.iface;
    let (verdict, entry) = if iface.flags & IFACE_F_HAS_ACL == 0 {
        (ACL_PASSES, RULE_ID_NONE)
    } else {
        let dir = lookup.dir;
        let cidr = ACL_CIDRS
            .get(cidr_key(
                policy.slot,
                dir,
                lookup.family,
                iface.ifslot,
                lookup.peer,
            ))
            .copied()
            .unwrap_or(0);
        let port = ACL_PORTS
            .get(port_key(
                policy.slot,
                dir,
                lookup.proto,
                iface.ifslot,
                lookup.selector,
            ))
            .copied()
            .unwrap_or(0);
        let index = usize::from(dir & 1);
        match acl_first_match(cidr, port, iface.acl_all_protocols[index]) {
            None => (ACL_NO_ENTRY, RULE_ID_NONE),
            Some(ACL_SAME_SUBNET_BIT) => (ACL_PASSES, RULE_ID_NONE),
            Some(bit) if (iface.acl_allow[index] >> bit) & 1 != 0 => {
                (ACL_PASSES, policy.acl_rule_id(dir, bit))
            }
            Some(bit) => (ACL_DENIES, policy.acl_rule_id(dir, bit)),
        }
    };
    // SAFETY: this CPU's slot; nothing else uses it while this program runs.
    unsafe {
        (*out).acl_verdict = verdict;
        (*out).acl_entry = entry;
    }
    done()
}

/// The verdict [`judge_acl`] left: (`ACL_*` verdict, entry id). A missing slot denies.
#[inline(always)]
pub fn acl_verdict() -> (u32, u32) {
    match DECIDE_SCRATCH.get(0) {
        Some(slot) => (slot.acl_verdict, slot.acl_entry),
        None => (ACL_DENIES, RULE_ID_NONE),
    }
}

/// Whether the ACL lets the packet pass (read afresh at each use, for the verifier's sake).
#[inline(always)]
pub fn acl_passes() -> bool {
    acl_verdict().0 == ACL_PASSES
}

/// Whether `peer` is in the interface's exempt list (I3).
#[inline(always)]
pub fn is_exempt(policy: &Policy, family: u8, peer: &[u8; 16]) -> bool {
    CIDRS
        .get(cidr_key(
            policy.slot,
            DIR_EXEMPT,
            family,
            policy.iface.ifslot,
            peer,
        ))
        .is_some()
}

/// Whether the instance behind the interface owns `addr` (I1, I2).
#[inline(always)]
pub fn owns(iface: &IfaceConfig, family: u8, addr: &[u8; 16]) -> bool {
    LOCAL_ADDRS
        .get_ptr(LocalAddrKey {
            ifslot: iface.ifslot,
            family,
            _pad: 0,
            addr: *addr,
        })
        .is_some()
}
