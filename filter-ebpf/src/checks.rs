//! The checks that come before conntrack but need no packet bytes, run at the start of the
//! decide stage from the scratch facts: port security and the link's own messages and the
//! guards (I2, I7), DHCP
//! (I6), the source/destination check (I1) around the exempt list (I3), and later fragments
//! (H1). They sit here rather than in the inspect stage because the verifier checks this stage
//! once, while in the inspect stage it would walk each of them along every parse path (VLAN
//! depth, IHL, extension chain).

use filter_common::{
    DIR_EGRESS, DIR_INGRESS, IFACE_F_HAS_EXEMPT, IFACE_F_SOURCE_DEST_CHECK, PROTO_ICMPV6,
    PacketFacts, Reason, is_own_icmp,
};

use crate::{
    dhcp, fragments, guards,
    policy::{self, Policy},
};

/// `Ok(None)`: conntrack and the rules decide.
#[inline(always)]
pub fn before_tracking(facts: &PacketFacts, policy: &Policy) -> Result<Option<Reason>, Reason> {
    let iface = policy.iface;
    let dir = facts.dir;
    guards::port_security(iface, dir, &facts.source_mac)?;
    let later_fragment = facts.fragment_offset != 0;
    // ICMPv6 only in IPv6: protocol 58 in an IPv4 header is no neighbour discovery.
    if is_own_icmp(facts.family, facts.proto)
        && facts.proto == PROTO_ICMPV6
        && !later_fragment
        && let Some(reason) = guards::icmpv6_link(iface, dir, facts.icmp_type)
    {
        return Ok(Some(reason));
    }
    // I6 and I7's DHCP guard, before I1: a client without an address fails the source check.
    if let Some(reason) = dhcp::judge(iface, facts) {
        return Ok(Some(reason));
    }
    // I1, before any conntrack work: a spoofed packet never creates state. The source check
    // comes before the exempt list (I3), the destination check after it.
    let checks = iface.flags & IFACE_F_SOURCE_DEST_CHECK != 0;
    if checks && dir == DIR_EGRESS && !policy::owns(iface, facts.family, &facts.src) {
        return Err(Reason::SpoofedSource);
    }
    let remote = if dir == DIR_INGRESS {
        &facts.src
    } else {
        &facts.dst
    };
    if iface.flags & IFACE_F_HAS_EXEMPT != 0 && policy::is_exempt(policy, facts.family, remote) {
        return Ok(Some(Reason::Exempt));
    }
    if checks && dir == DIR_INGRESS && !policy::owns(iface, facts.family, &facts.dst) {
        return Err(Reason::SpoofedDestination);
    }
    if later_fragment {
        return fragments::judge_later(facts).map(Some);
    }
    Ok(None)
}
