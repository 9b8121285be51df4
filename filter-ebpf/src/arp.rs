//! ARP is not subject to group rules (I2), but with the source/destination check an instance
//! may only claim its own addresses (0.0.0.0 is an address probe, RFC 5227).

use filter_common::{DIR_EGRESS, FAMILY_V4, IFACE_F_SOURCE_DEST_CHECK, IfaceConfig, Reason};

use crate::{packet::Packet, parse, policy, verdict::Outcome};

#[inline(always)]
pub fn judge(packet: &Packet, offset: usize, iface: &IfaceConfig, dir: u8) -> Outcome {
    let sender = parse::arp_sender(packet, offset)?;
    if dir == DIR_EGRESS && iface.flags & IFACE_F_SOURCE_DEST_CHECK != 0 && sender != [0; 4] {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&sender);
        if !policy::owns(iface, FAMILY_V4, &addr) {
            return Err(Reason::ArpSpoof);
        }
    }
    Ok(Reason::Arp)
}
