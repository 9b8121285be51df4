//! Rule classification: which rule, if any, admits the first packet of a flow. Three lookups
//! and a fixed 16-word AND, whatever the number of rules or members (see `docs/design.md`).

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    AddrKey, CIDR_KEY_FIXED_BITS, CidrKey, DIR_EXEMPT, GroupBitsKey, IfaceConfig,
    PORT_KEY_FIXED_BITS, PROTO_TCP, PROTO_UDP, PortKey, RuleBitmap, any_match_in, first_match,
};

/// The outcome of classifying a flow's first packet.
pub struct Match {
    /// The lowest-numbered rule that admits it.
    pub rule: u16,
    /// Some admitting rule makes it an untracked flow (C8).
    pub untracked: bool,
}

use crate::maps::{CIDRS, GROUP_BITS, MEMBERS, PORTS};

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

/// Which rule of this interface and direction admits a flow to or from `peer` with this
/// protocol and selector, if any.
#[inline(always)]
pub fn classify(
    slot: u8,
    iface: &IfaceConfig,
    dir: u8,
    family: u8,
    peer: &[u8; 16],
    proto: u8,
    selector: u16,
) -> Option<Match> {
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
pub fn is_exempt(slot: u8, iface: &IfaceConfig, family: u8, peer: &[u8; 16]) -> bool {
    CIDRS
        .get(cidr_key(slot, DIR_EXEMPT, family, iface.ifslot, peer))
        .is_some()
}
