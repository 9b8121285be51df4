//! The policy a packet is judged under, and its lookups: rule classification (which rule, if
//! any, admits the first packet of a flow: three lookups and a fixed 16-word AND, whatever the
//! number of rules or members, see `docs/design.md`), the exempt list and the instance's own
//! addresses.

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    AddrKey, CIDR_KEY_FIXED_BITS, CidrKey, DIR_EXEMPT, GroupBitsKey, IfaceConfig, IfaceKey,
    LocalAddrKey, PORT_KEY_FIXED_BITS, PROTO_TCP, PROTO_UDP, PortKey, RuleBitmap, any_match_in,
    first_match, slot_of_generation,
};

use crate::maps::{CIDRS, GROUP_BITS, IFACES, LOCAL_ADDRS, MEMBERS, PORTS};

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
    let port = PORTS.get(Key::new(
        PORT_LOOKUP_BITS,
        PortKey {
            slot,
            dir,
            proto,
            _pad: 0,
            ifslot: iface.ifslot,
            selector: selector.to_be_bytes(),
        },
    ));
    // SAFETY: map value pointers stay valid for the rest of this program run (RCU).
    let group: Option<&RuleBitmap> = group.map(|ptr| unsafe { &*ptr });
    let all_protocols = &iface.all_protocols[usize::from(dir & 1)];
    let rule = first_match(cidr, group, port, all_protocols)?;
    let untracked = (proto == PROTO_TCP || proto == PROTO_UDP) && {
        let mask = &iface.untracked[usize::from(dir & 1) * 2 + usize::from(proto == PROTO_UDP)];
        any_match_in(cidr, group, port, all_protocols, mask)
    };
    Some(Match { rule, untracked })
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
