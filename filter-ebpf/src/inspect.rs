//! Stage 1, one program per hook: parses the packet and settles everything that needs its
//! bytes (parsing, port security, ARP, non-IP). What is left to decide goes as scalars into
//! this CPU's scratch slot, and the decide stage of the program's type is tail-called.

use aya_ebpf::{EbpfContext, maps::ProgramArray, programs::TcContext, programs::XdpContext};
use filter_common::*;

use crate::{
    arp, guards,
    maps::{ACTIVE, DECIDE_TC, DECIDE_XDP, SCRATCH},
    packet::Packet,
    parse::{self, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, FRAG_FIRST, Ip, L4, Link},
    policy::Policy,
    telemetry, verdict,
};

/// Which way the packet crosses the host interface the program is attached to.
#[derive(Clone, Copy)]
pub enum Hook {
    Ingress,
    Egress,
}

/// Instance direction of a packet: on a port (the host side of a VM or namespace link) what
/// the host receives comes from the instance; on the host's own NIC it comes to the instance.
#[inline(always)]
fn direction(hook: Hook, attach: u8) -> u8 {
    match (hook, attach == ATTACH_PORT) {
        (Hook::Ingress, true) | (Hook::Egress, false) => DIR_EGRESS,
        (Hook::Ingress, false) | (Hook::Egress, true) => DIR_INGRESS,
    }
}

/// Bytes made linear on TC when the parser needs more than the linear area holds: Ethernet with
/// two tags, IPv6 with a few extension headers and a full TCP header. Deeper headers in a
/// non-linear packet fail to parse and drop.
const TC_PULL_BYTES: u32 = 192;

/// How many bytes the parser will read, judged from the linear area before parsing. Pulling
/// makes a cloned skb (TCP keeps clones for retransmission) writable, which copies it, so it
/// happens only when the parser's reads go past the linear area: for the usual packet,
/// Ethernet, the IP header and 20 bytes of transport are linear already.
#[inline(always)]
fn headers_needed(packet: &Packet) -> u32 {
    const TRANSPORT: u32 = 20;
    let Some(ethernet) = packet.get::<15>(0) else {
        return TC_PULL_BYTES;
    };
    match ethernet.be16::<12>() {
        ETH_P_IPV4 => 14 + u32::from(ethernet.u8::<14>() & 0x0f) * 4 + TRANSPORT,
        ETH_P_IPV6 => match packet.get::<21>(0).map(|h| h.u8::<20>()) {
            Some(PROTO_TCP | PROTO_UDP) => 14 + 40 + TRANSPORT,
            // Extension headers, ICMPv6 errors quoting a packet: room for the walk.
            _ => TC_PULL_BYTES,
        },
        ETH_P_ARP => 14 + 28,
        // VLAN tags and anything else: the parser decides, with the generous pull.
        _ => TC_PULL_BYTES,
    }
}

/// What the inspect stage concluded.
enum Inspected {
    /// Settled without rules or conntrack: counted, and the verdict returned.
    Done(bool),
    /// Facts are in the scratch slot: tail-call the decide stage.
    Decide,
}

/// The XDP hook's verdict; true admits.
#[inline(always)]
pub fn xdp(ctx: &XdpContext) -> bool {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    match inspect(
        &packet,
        ctx.ingress_ifindex() as u32,
        Hook::Ingress,
        frame_len,
    ) {
        Inspected::Done(admitted) => admitted,
        Inspected::Decide => tail_call_decide(ctx, &DECIDE_XDP),
    }
}

/// `skb->pkt_type` of the local copy of a multicast or broadcast packet the host itself sent
/// out of the interface (`dev_loopback_xmit`).
const PACKET_LOOPBACK: u32 = 5;

/// A TC hook's verdict; true admits.
#[inline(always)]
pub fn tc(ctx: &TcContext, hook: Hook) -> bool {
    // SAFETY: the context pointer is the kernel's __sk_buff for this invocation.
    let pkt_type = unsafe { (*ctx.skb.skb).pkt_type };
    if matches!(hook, Hook::Ingress) && pkt_type == PACKET_LOOPBACK {
        // The host's own multicast and broadcast (an RA from dnsmasq, a broadcast ping) come
        // back to TC ingress as a local copy, without their Ethernet header, after the real
        // frame was judged at TC egress. It never crossed the wire, so it is neither the
        // instance's traffic nor counted as such: read as a frame it was a phantom `non_ip`
        // (or `mac_spoof`) drop from the instance that no capture shows.
        return true;
    }
    let frame_len = ctx.len();
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let needed = frame_len.min(headers_needed(&Packet::new(ctx.data(), ctx.data_end())));
    if linear < needed {
        // On failure the parse below finds the headers missing and drops: never a pass.
        let _ = ctx.pull_data(frame_len.min(TC_PULL_BYTES).max(needed));
    }
    let packet = Packet::new(ctx.data(), ctx.data_end());
    // SAFETY: the context pointer is the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match inspect(&packet, ifindex, hook, frame_len) {
        Inspected::Done(admitted) => admitted,
        Inspected::Decide => tail_call_decide(ctx, &DECIDE_TC),
    }
}

/// Returns only if the tail call failed (decide program missing): then the packet drops.
#[inline(always)]
fn tail_call_decide<C: EbpfContext>(ctx: &C, programs: &ProgramArray) -> bool {
    // SAFETY: each array holds the decide program of its callers' type.
    unsafe { programs.tail_call(ctx, 0) };
    if let Some(facts) = SCRATCH.get(0) {
        telemetry::count_unconfigured(facts.dir, Reason::Internal, facts.frame_len);
    }
    false
}

#[inline(always)]
fn inspect(packet: &Packet, ifindex: u32, hook: Hook, frame_len: u32) -> Inspected {
    let unconfigured_dir = match hook {
        Hook::Ingress => DIR_INGRESS,
        Hook::Egress => DIR_EGRESS,
    };
    let Some(generation) = ACTIVE.get(0).copied() else {
        telemetry::count_unconfigured(unconfigured_dir, Reason::Internal, frame_len);
        return Inspected::Done(false);
    };
    let Some(policy) = Policy::of_interface(generation, ifindex) else {
        telemetry::count_unconfigured(unconfigured_dir, Reason::NoConfig, frame_len);
        return Inspected::Done(false);
    };
    let dir = direction(hook, policy.iface.attach);
    let reason = match inspect_frame(packet, &policy, ifindex, dir, frame_len) {
        Ok(None) => return Inspected::Decide,
        Ok(Some(reason)) | Err(reason) => reason,
    };
    Inspected::Done(verdict::finish(policy.iface.ifslot, dir, reason, frame_len))
}

/// `Ok(None)`: the packet needs conntrack and rules, and its facts are in the scratch slot.
#[inline(always)]
fn inspect_frame(
    packet: &Packet,
    policy: &Policy,
    ifindex: u32,
    dir: u8,
    frame_len: u32,
) -> Result<Option<Reason>, Reason> {
    let iface = policy.iface;
    let link = parse::ethernet(packet)?;
    let ip = match link.ethertype {
        ETH_P_ARP => {
            guards::port_security(iface, dir, &link.source_mac)?;
            return arp::judge(packet, link.l3_offset, iface, dir).map(Some);
        }
        ETH_P_IPV4 => parse::ipv4(packet, link.l3_offset, frame_len as usize)?,
        ETH_P_IPV6 => parse::ipv6(packet, link.l3_offset, frame_len as usize)?,
        _ => {
            guards::port_security(iface, dir, &link.source_mac)?;
            return Err(Reason::NonIp);
        }
    };
    let l4 = parse::transport(packet, &ip)?;
    // An IP packet's MAC is checked in the decide stage, where the verifier checks it once
    // rather than along every parse path.
    hand_over(packet, policy, &link, &ip, &l4, ifindex, dir, frame_len)?;
    Ok(None)
}

/// Writes what the decide stage needs into this CPU's scratch slot.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn hand_over(
    packet: &Packet,
    policy: &Policy,
    link: &Link,
    ip: &Ip,
    l4: &L4,
    ifindex: u32,
    dir: u8,
    frame_len: u32,
) -> Result<(), Reason> {
    let facts = SCRATCH.get_ptr_mut(0).ok_or(Reason::Internal)?;
    // SAFETY: this CPU's scratch slot; the decide stage reads it on this CPU right after.
    let facts = unsafe { &mut *facts };
    facts.generation = policy.generation;
    facts.ifindex = ifindex;
    facts.frame_len = frame_len;
    facts.dir = dir;
    facts.family = ip.family;
    facts.proto = ip.proto;
    facts.tcp_flags = l4.tcp_flags;
    facts.tcp_seq = l4.tcp_seq;
    facts.tcp_ack = l4.tcp_ack;
    facts.icmp_type = l4.icmp_type;
    facts.icmp_code = l4.icmp_code;
    facts.first_fragment = u8::from(ip.fragment == FRAG_FIRST);
    facts.fragment_id = ip.fragment_id;
    // Zero unless a later fragment (offset 0 is the first or only one).
    facts.fragment_offset = ip.fragment_offset;
    facts.src_port = l4.src_port;
    facts.dst_port = l4.dst_port;
    facts.echo_id = l4.echo_id;
    facts.src = ip.src;
    facts.dst = ip.dst;
    facts.source_mac = link.source_mac;
    facts._pad = [0; 2];
    facts.has_quoted = 0;
    if policy.iface.flags & IFACE_F_RELATED_ICMP != 0
        && is_icmp_error(ip.proto, l4.icmp_type)
        && let Some(quoted) = quoted_key(packet, ip, l4, ifindex, dir)
    {
        facts.quoted = quoted;
        facts.has_quoted = 1;
    }
    Ok(())
}

/// C7: the conntrack key of the flow an ICMP error quotes, oriented to the interface.
#[inline(always)]
fn quoted_key(packet: &Packet, ip: &Ip, l4: &L4, ifindex: u32, dir: u8) -> Option<CtKey> {
    let quoted = parse::quoted_flow(packet, ip.family, l4.icmp_body_offset)?;
    let (local_addr, remote_addr, local_port, remote_port) = quoted_flow_orientation(
        dir == DIR_INGRESS,
        quoted.proto,
        quoted.src,
        quoted.dst,
        quoted.src_port,
        quoted.dst_port,
    );
    Some(CtKey {
        ifindex,
        family: ip.family,
        proto: quoted.proto,
        _pad: [0; 2],
        local_addr,
        remote_addr,
        local_port,
        remote_port,
    })
}
