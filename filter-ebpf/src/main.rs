//! sgwall datapath: XDP and TC programs sharing one verdict path (`docs/design.md`).
//!
//! The path runs in two stages joined by a tail call. *Inspect* (one program per hook) parses
//! the packet and settles everything that needs its bytes; what is left to decide it writes as
//! scalars to a per-CPU scratch slot and tail-calls *decide* (one program per program type),
//! which does conntrack and rule classification. Each stage is verified on its own, so the
//! verifier never multiplies every parse outcome by every decision path.
#![no_std]
#![no_main]
// Atomic adds on shared map values (see conntrack::add).
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys go by reference: passing them by value copies 44-byte keys onto a 512-byte stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod conntrack;
mod maps;
mod packet;
mod parse;
mod policy;
mod telemetry;
mod verdict;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, xdp},
    maps::ProgramArray,
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::warn;
use filter_common::*;

use crate::{
    conntrack::{Flow, Policy},
    maps::{ACTIVE, DECIDE_TC, DECIDE_XDP, FRAGMENTS, IFACES, LOCAL_ADDRS, SCRATCH},
    packet::Packet,
    parse::{
        ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, FRAG_FIRST, FRAG_LATER, Ip, L4, TCP_ACK, TCP_RST,
        TCP_SYN,
    },
    telemetry::EventFlow,
    verdict::{Admit, Deny, Judgement},
};

/// Which way the packet crosses the host interface the program is attached to.
#[derive(Clone, Copy)]
enum Hook {
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

// ----------------------------------------------------------------------------------------------
// Stage 1: inspect (per hook).
// ----------------------------------------------------------------------------------------------

#[xdp]
pub fn sgw_xdp_ingress(ctx: XdpContext) -> u32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let admitted = match inspect(
        &packet,
        ctx.ingress_ifindex() as u32,
        Hook::Ingress,
        frame_len,
    ) {
        Inspected::Done(admitted) => admitted,
        Inspected::Decide => tail_call_decide(&ctx, &DECIDE_XDP),
    };
    if admitted {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[classifier]
pub fn sgw_tc_ingress(ctx: TcContext) -> i32 {
    tc_inspect(&ctx, Hook::Ingress)
}

#[classifier]
pub fn sgw_tc_egress(ctx: TcContext) -> i32 {
    tc_inspect(&ctx, Hook::Egress)
}

#[inline(always)]
fn tc_verdict(admitted: bool) -> i32 {
    if admitted {
        // Pass means "not ours to drop": later tcx programs still see the packet.
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    }
}

#[inline(always)]
fn tc_inspect(ctx: &TcContext, hook: Hook) -> i32 {
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
    let admitted = match inspect(&packet, ifindex, hook, frame_len) {
        Inspected::Done(admitted) => admitted,
        Inspected::Decide => tail_call_decide(ctx, &DECIDE_TC),
    };
    tc_verdict(admitted)
}

/// Returns only if the tail call failed (decide program missing): then the packet drops.
#[inline(always)]
fn tail_call_decide<C: EbpfContext>(ctx: &C, programs: &ProgramArray) -> bool {
    // SAFETY: each array holds the decide program of its callers' type.
    unsafe { programs.tail_call(ctx, 0) };
    if let Some(facts) = SCRATCH.get(0) {
        telemetry::count(
            IFSLOT_UNCONFIGURED,
            facts.dir,
            Deny::Internal.reason(),
            facts.frame_len,
        );
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
        telemetry::count(
            IFSLOT_UNCONFIGURED,
            unconfigured_dir,
            Deny::Internal.reason(),
            frame_len,
        );
        return Inspected::Done(false);
    };
    let slot = slot_of_generation(generation);
    let Some(iface) = IFACES.get_ptr(IfaceKey {
        slot,
        _pad: [0; 3],
        ifindex,
    }) else {
        telemetry::count(
            IFSLOT_UNCONFIGURED,
            unconfigured_dir,
            Deny::NoConfig.reason(),
            frame_len,
        );
        return Inspected::Done(false);
    };
    // SAFETY: the kernel's pointer to the value; valid for this program run.
    let iface = unsafe { &*iface };
    let dir = direction(hook, iface.attach);
    let outcome = inspect_frame(packet, slot, generation, iface, ifindex, dir, frame_len);
    let judgement = match outcome {
        Ok(None) => return Inspected::Decide,
        Ok(Some(admit)) => Ok(admit),
        Err(deny) => Err(deny),
    };
    Inspected::Done(finish(iface.ifslot, dir, judgement, frame_len))
}

/// Counts a settled judgement; true admits.
#[inline(always)]
fn finish(ifslot: u16, dir: u8, judgement: Judgement, frame_len: u32) -> bool {
    let (admitted, reason) = match judgement {
        Ok(admit) => (true, admit.reason()),
        Err(deny) => (false, deny.reason()),
    };
    telemetry::count(ifslot, dir, reason, frame_len);
    admitted
}

/// `Ok(None)`: the packet needs conntrack and rules, and its facts are in the scratch slot.
#[inline(always)]
fn inspect_frame(
    packet: &Packet,
    slot: u8,
    generation: u64,
    iface: &IfaceConfig,
    ifindex: u32,
    dir: u8,
    frame_len: u32,
) -> Result<Option<Admit>, Deny> {
    let link = parse::ethernet(packet)?;
    let ip = match link.ethertype {
        ETH_P_ARP => return arp(packet, link.l3_offset, iface, dir).map(Some),
        ETH_P_IPV4 => parse::ipv4(packet, link.l3_offset, frame_len as usize)?,
        ETH_P_IPV6 => parse::ipv6(packet, link.l3_offset, frame_len as usize)?,
        _ => return Err(Deny::NonIp),
    };
    let l4 = parse::transport(packet, &ip)?;
    if ip.proto == PROTO_ICMPV6 && ip.fragment != FRAG_LATER && is_icmpv6_link_control(l4.icmp_type)
    {
        return Ok(Some(Admit::Icmpv6Link));
    }
    // I1, before any conntrack work: a spoofed packet never creates state.
    if iface.flags & IFACE_F_SOURCE_DEST_CHECK != 0 {
        let spoofed = if dir == DIR_EGRESS && !owns(iface.ifslot, ip.family, &ip.src) {
            Some(Deny::SpoofedSource)
        } else if dir == DIR_INGRESS && !owns(iface.ifslot, ip.family, &ip.dst) {
            Some(Deny::SpoofedDestination)
        } else {
            None
        };
        if let Some(deny) = spoofed {
            let flow = event_flow(&ip, &l4, ifindex, dir, frame_len);
            // SAFETY: a helper without preconditions.
            telemetry::flow_denied(&flow, deny.reason(), generation, unsafe {
                bpf_ktime_get_ns()
            });
            return Err(deny);
        }
    }
    let remote = if dir == DIR_INGRESS { &ip.src } else { &ip.dst };
    if iface.flags & IFACE_F_HAS_EXEMPT != 0 && policy::is_exempt(slot, iface, ip.family, remote) {
        return Ok(Some(Admit::Exempt));
    }
    if ip.fragment == FRAG_LATER {
        return later_fragment(&ip, ifindex).map(Some);
    }

    let facts = SCRATCH.get_ptr_mut(0).ok_or(Deny::Internal)?;
    // SAFETY: this CPU's scratch slot; the decide stage reads it on this CPU right after.
    let facts = unsafe { &mut *facts };
    facts.generation = generation;
    facts.ifindex = ifindex;
    facts.frame_len = frame_len;
    facts.dir = dir;
    facts.family = ip.family;
    facts.proto = ip.proto;
    facts.tcp_flags = l4.tcp_flags;
    facts.icmp_type = l4.icmp_type;
    facts.icmp_code = l4.icmp_code;
    facts.first_fragment = u8::from(ip.fragment == FRAG_FIRST);
    facts.fragment_id = ip.fragment_id;
    facts.src_port = l4.src_port;
    facts.dst_port = l4.dst_port;
    facts.echo_id = l4.echo_id;
    facts.src = ip.src;
    facts.dst = ip.dst;
    facts.has_quoted = 0;
    if iface.flags & IFACE_F_RELATED_ICMP != 0
        && is_icmp_error(ip.proto, l4.icmp_type)
        && let Some(quoted) = quoted_key(packet, &ip, &l4, ifindex, dir)
    {
        facts.quoted = quoted;
        facts.has_quoted = 1;
    }
    Ok(None)
}

#[inline(always)]
fn event_flow(ip: &Ip, l4: &L4, ifindex: u32, dir: u8, bytes: u32) -> EventFlow {
    EventFlow {
        ifindex,
        dir,
        family: ip.family,
        proto: ip.proto,
        src: ip.src,
        dst: ip.dst,
        src_port: l4.src_port,
        dst_port: l4.dst_port,
        bytes,
    }
}

/// ARP is not subject to group rules (I2), but with the source/destination check an instance
/// may only claim its own addresses (0.0.0.0 is an address probe, RFC 5227).
#[inline(always)]
fn arp(packet: &Packet, offset: usize, iface: &IfaceConfig, dir: u8) -> Judgement {
    let sender = parse::arp_sender(packet, offset)?;
    if dir == DIR_EGRESS && iface.flags & IFACE_F_SOURCE_DEST_CHECK != 0 && sender != [0; 4] {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&sender);
        if !owns(iface.ifslot, FAMILY_V4, &addr) {
            return Err(Deny::ArpSpoof);
        }
    }
    Ok(Admit::Arp)
}

#[inline(always)]
fn owns(ifslot: u16, family: u8, addr: &[u8; 16]) -> bool {
    LOCAL_ADDRS
        .get_ptr(LocalAddrKey {
            ifslot,
            family,
            _pad: 0,
            addr: *addr,
        })
        .is_some()
}

#[inline(always)]
fn fragment_key(
    ifindex: u32,
    family: u8,
    proto: u8,
    id: u32,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> FragKey {
    FragKey {
        ifindex,
        family,
        proto,
        _pad: [0; 2],
        id,
        src: *src,
        dst: *dst,
    }
}

/// H1: a later fragment passes only if its datagram's first fragment passed, recently.
#[inline(always)]
fn later_fragment(ip: &Ip, ifindex: u32) -> Judgement {
    // Offset 8 bytes into TCP would rewrite the flags the first fragment was judged on.
    if ip.proto == PROTO_TCP && ip.fragment_offset == 1 {
        return Err(Deny::OverlappingFragment);
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = fragment_key(
        ifindex,
        ip.family,
        ip.proto,
        ip.fragment_id,
        &ip.src,
        &ip.dst,
    );
    match FRAGMENTS.get_ptr(key) {
        // SAFETY: the kernel's pointer to the value, read once.
        Some(first)
            if now.wrapping_sub(unsafe { (*first).first_seen_ns })
                < telemetry::fragment_timeout_ns() =>
        {
            Ok(Admit::Fragment)
        }
        _ => Err(Deny::FragmentWithoutFirst),
    }
}

/// C7: the conntrack key of the flow an ICMP error quotes. The quoted packet travelled the
/// other way from the error, so its orientation is flipped back to the interface's.
#[inline(always)]
fn quoted_key(packet: &Packet, ip: &Ip, l4: &L4, ifindex: u32, dir: u8) -> Option<CtKey> {
    let quoted = parse::quoted_flow(packet, ip.family, l4.icmp_body_offset)?;
    // An error coming in is about a packet the instance sent, and vice versa.
    let sent_by_instance = dir == DIR_INGRESS;
    let is_echo = quoted.proto == PROTO_ICMP || quoted.proto == PROTO_ICMPV6;
    let (local_addr, remote_addr) = if sent_by_instance {
        (quoted.src, quoted.dst)
    } else {
        (quoted.dst, quoted.src)
    };
    let (local_port, remote_port) = if is_echo {
        (quoted.src_port, 0)
    } else if sent_by_instance {
        (quoted.src_port, quoted.dst_port)
    } else {
        (quoted.dst_port, quoted.src_port)
    };
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

// ----------------------------------------------------------------------------------------------
// Stage 2: decide (per program type), from the scratch facts only.
// ----------------------------------------------------------------------------------------------

#[xdp]
pub fn sgw_xdp_decide(ctx: XdpContext) -> u32 {
    if decide(&ctx) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[classifier]
pub fn sgw_tc_decide(ctx: TcContext) -> i32 {
    tc_verdict(decide(&ctx))
}

#[inline(always)]
fn decide<C: EbpfContext>(ctx: &C) -> bool {
    let Some(facts) = SCRATCH.get_ptr(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot, written by the inspect stage just before the tail call.
    let facts = unsafe { &*facts };
    let slot = slot_of_generation(facts.generation);
    let Some(iface) = IFACES.get_ptr(IfaceKey {
        slot,
        _pad: [0; 3],
        ifindex: facts.ifindex,
    }) else {
        telemetry::count(
            IFSLOT_UNCONFIGURED,
            facts.dir,
            Deny::NoConfig.reason(),
            facts.frame_len,
        );
        return false;
    };
    // SAFETY: as in `inspect`.
    let iface = unsafe { &*iface };
    let policy = Policy {
        slot,
        generation: facts.generation,
        iface,
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Always initialised: a value left undefined on some path makes LLVM shift whatever the
    // register held, possibly a pointer, which the verifier rejects.
    let mut rule = RULE_ID_NONE;
    let outcome = judge_flow(facts, &policy, now, &mut rule);
    let flow = EventFlow {
        ifindex: facts.ifindex,
        dir: facts.dir,
        family: facts.family,
        proto: facts.proto,
        src: facts.src,
        dst: facts.dst,
        src_port: facts.src_port,
        dst_port: facts.dst_port,
        bytes: facts.frame_len,
    };
    let judgement = match outcome {
        Ok(admit) => {
            if rule != RULE_ID_NONE {
                telemetry::flow_admitted(&flow, admit.reason(), rule, facts.generation, now);
            }
            if facts.first_fragment != 0 {
                let key = fragment_key(
                    facts.ifindex,
                    facts.family,
                    facts.proto,
                    facts.fragment_id,
                    &facts.src,
                    &facts.dst,
                );
                let _ = FRAGMENTS.insert(key, FragEntry { first_seen_ns: now }, u64::from(BPF_ANY));
            }
            Ok(admit)
        }
        Err(deny) => {
            if deny.is_policy_decision()
                && telemetry::flow_denied(&flow, deny.reason(), facts.generation, now)
                && deny == Deny::ConntrackFull
            {
                // Rare and worth a line in the agent's log (C6); rate-limited with the events.
                warn!(
                    ctx,
                    "conntrack allowance or table full on ifindex {}: new flow dropped",
                    facts.ifindex
                );
            }
            Err(deny)
        }
    };
    finish(iface.ifslot, facts.dir, judgement, facts.frame_len)
}

/// The verdict. `rule` receives the global id of the rule that admitted the packet, if a rule
/// did (conntrack and ICMP relations leave it alone).
#[inline(always)]
fn judge_flow(facts: &PacketFacts, policy: &Policy, now: u64, rule: &mut u32) -> Judgement {
    let iface = policy.iface;
    let dir = facts.dir;
    let proto = facts.proto;
    let (local, remote) = if dir == DIR_INGRESS {
        (&facts.dst, &facts.src)
    } else {
        (&facts.src, &facts.dst)
    };
    let is_icmp = proto == PROTO_ICMP || proto == PROTO_ICMPV6;
    let selector = selector_for(proto, facts.dst_port, facts.icmp_type, facts.icmp_code);

    if is_icmp && !is_icmp_echo(proto, facts.icmp_type) {
        if facts.has_quoted != 0 && conntrack::is_tracked(&facts.quoted, iface, now) {
            return Ok(Admit::RelatedIcmp);
        }
        // C7: ICMP messages other than echo are judged by the rules, one by one.
        return match policy::classify(
            policy.slot,
            iface,
            dir,
            facts.family,
            remote,
            proto,
            selector,
        ) {
            Some(matched) => {
                *rule = rule_id(iface, dir, matched.rule);
                telemetry::count_rule_hit(policy.slot, *rule);
                Ok(Admit::RuleUntrackedIcmp)
            }
            None => Err(Deny::NoRule),
        };
    }

    let (local_port, remote_port) = if is_icmp {
        (facts.echo_id, 0)
    } else if dir == DIR_INGRESS {
        (facts.dst_port, facts.src_port)
    } else {
        (facts.src_port, facts.dst_port)
    };
    let flow = Flow {
        key: CtKey {
            ifindex: facts.ifindex,
            family: facts.family,
            proto,
            _pad: [0; 2],
            local_addr: *local,
            remote_addr: *remote,
            local_port,
            remote_port,
        },
        dir,
        tcp_flags: facts.tcp_flags,
        selector,
        bytes: facts.frame_len,
    };
    if let Some(admit) = conntrack::track(&flow, policy, now)? {
        return Ok(admit);
    }

    let Some(matched) = policy::classify(
        policy.slot,
        iface,
        dir,
        facts.family,
        remote,
        proto,
        selector,
    ) else {
        return Err(Deny::NoRule);
    };
    *rule = rule_id(iface, dir, matched.rule);
    telemetry::count_rule_hit(policy.slot, *rule);
    // TCP is tracked from its SYN. Anything else a rule admits (a SYN-ACK, an ACK mid-stream,
    // a RST) passes on that rule alone: tracking it would make the reverse direction of an
    // untracked flow (C8) look like a new tracked flow and keep it alive past its rule.
    if proto == PROTO_TCP && facts.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return Ok(Admit::RuleNoEntry);
    }
    if matched.untracked {
        return Ok(Admit::Untracked);
    }
    conntrack::start(&flow, policy, *rule, now)?;
    Ok(Admit::NewFlow)
}

#[inline(always)]
fn rule_id(iface: &IfaceConfig, dir: u8, bit: u16) -> u32 {
    iface.rule_base[usize::from(dir & 1)] + u32::from(bit)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Benchmark baseline only: returns pass and does nothing else. Never attached by the agent.
#[xdp]
pub fn sgw_bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
