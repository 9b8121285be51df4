//! What an instance may not do even where rules would let it (I7, on with the source/destination
//! check): send frames from another MAC (port security, where the config gives its MAC), act as
//! the network's router (router advertisements, ICMPv6 redirects), or as its DHCP server (see
//! `dhcp.rs`). And the IPv6 link messages the network needs, which no rule judges (I2).

use filter_common::{
    DIR_EGRESS, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERTISEMENT, IFACE_F_MAC,
    IFACE_F_SOURCE_DEST_CHECK, IfaceConfig, Reason, is_icmpv6_link_control,
};

/// Whether the guards apply to a packet travelling `dir`: those the instance sends, with the
/// source/destination check on.
#[inline(always)]
pub fn guards_instance(iface: &IfaceConfig, dir: u8) -> bool {
    dir == DIR_EGRESS && iface.flags & IFACE_F_SOURCE_DEST_CHECK != 0
}

/// Port security: a frame from the instance carries its MAC, when the config gives it.
#[inline(always)]
pub fn port_security(iface: &IfaceConfig, dir: u8, source_mac: &[u8; 6]) -> Result<(), Reason> {
    if guards_instance(iface, dir) && iface.flags & IFACE_F_MAC != 0 && *source_mac != iface.mac {
        return Err(Reason::MacSpoof);
    }
    Ok(())
}

/// The verdict on an ICMPv6 message that is not a later fragment, if it is one of the link's
/// own: the router's messages from an instance drop (I7), neighbour discovery and multicast
/// listener messages pass (I2). `None`: the rules judge it.
#[inline(always)]
pub fn icmpv6_link(iface: &IfaceConfig, dir: u8, icmp_type: u8) -> Option<Reason> {
    let from_instance = guards_instance(iface, dir);
    if from_instance && icmp_type == ICMPV6_ROUTER_ADVERTISEMENT {
        Some(Reason::RouterAdvertisementGuard)
    } else if from_instance && icmp_type == ICMPV6_REDIRECT {
        Some(Reason::RedirectGuard)
    } else if is_icmpv6_link_control(icmp_type) {
        Some(Reason::Icmpv6Link)
    } else {
        None
    }
}
