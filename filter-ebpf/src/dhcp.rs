//! DHCP works as on a VPC (I6): the instance's DHCPv4 and DHCPv6 client traffic, and a server's
//! replies to it, pass without a rule and without conntrack state, so a DISCOVER opens nothing.
//! With the guards on, DHCP server replies from the instance drop (I7). Decided by ports and
//! addresses only; whatever does not fit is judged like any packet, so a datagram that merely
//! uses DHCP's ports gets nothing for it.

use filter_common::{
    DIR_EGRESS, DIR_INGRESS, DhcpPorts, FAMILY_V4, FAMILY_V6, IFACE_F_DHCP, IfaceConfig, PROTO_UDP,
    PacketFacts, Reason, dhcp_ports,
};

use crate::{guards::guards_instance, policy};

const IPV4_UNSPECIFIED: [u8; 16] = [0; 16];
const IPV4_BROADCAST: [u8; 16] = [255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// `Some` when the packet is DHCP traffic this interface lets through (I6) or stops (I7).
#[inline(always)]
pub fn judge(iface: &IfaceConfig, facts: &PacketFacts) -> Option<Reason> {
    // A DHCP message is never fragmented; a fragment is judged like any packet.
    if facts.proto != PROTO_UDP || facts.first_fragment != 0 || facts.fragment_offset != 0 {
        return None;
    }
    let dir = facts.dir;
    let ports = dhcp_ports(facts.family == FAMILY_V6, facts.src_port, facts.dst_port);
    if dir == DIR_EGRESS && ports == DhcpPorts::Server && guards_instance(iface, dir) {
        return Some(Reason::DhcpServerGuard);
    }
    if iface.flags & IFACE_F_DHCP == 0 {
        return None;
    }
    let v4 = facts.family == FAMILY_V4;
    if dir == DIR_EGRESS && ports == DhcpPorts::Client {
        // A client asks from 0.0.0.0 to the broadcast address before it has an address, and
        // from its own afterwards (for IPv6, the link-local one, I5).
        let asking = v4 && facts.src == IPV4_UNSPECIFIED && facts.dst == IPV4_BROADCAST;
        if asking || policy::owns(iface, facts.family, &facts.src) {
            return Some(Reason::DhcpClient);
        }
    } else if dir == DIR_INGRESS && ports == DhcpPorts::Server {
        let broadcast = v4 && facts.dst == IPV4_BROADCAST;
        if broadcast || policy::owns(iface, facts.family, &facts.dst) {
            return Some(Reason::DhcpServerReply);
        }
    }
    None
}
