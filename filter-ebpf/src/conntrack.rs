//! Connection tracking (C1-C6). Keys are oriented to the interface (local = instance side), so
//! one lookup answers both "is this a packet of a known flow" and "is this a reply".
//!
//! Embryonic flows live in `CT_NEW` (LRU: a flood only evicts other embryonic flows). A flow
//! moves to `CT_EST`, which never evicts, once its originator has shown it hears the replies:
//! for TCP by acknowledging the SYN-ACK (a spoofed source never sees it, so its half-open flow
//! stays embryonic and idles out after the TCP "not yet established" timeout), for UDP and ICMP
//! by sending again after a reply (a flood of one datagram per spoofed source stays embryonic
//! too). The per-interface allowance counts `CT_EST` entries; when it is used up, new flows
//! drop (C6).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use filter_common::*;

use crate::{
    maps::{CT_COUNT, CT_EST, CT_NEW, CT_REMOVED_BY_AGENT},
    policy::{self, Lookup, Policy},
    telemetry,
};

const EEXIST: i32 = 17;

/// A packet in interface orientation.
pub struct Flow {
    pub key: CtKey,
    /// This packet's direction.
    pub dir: u8,
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// Rule selector of this packet (used when it starts a flow).
    pub selector: u16,
    pub bytes: u32,
}

#[inline(always)]
fn is_live(entry: &CtEntry, proto: u8, iface: &IfaceConfig, now: u64) -> bool {
    ct_entry_is_live(
        now,
        entry.last_seen_ns,
        timeout_secs(&iface.timeouts, proto, entry.state, entry.flags),
    )
}

/// A SYN on a closing TCP flow is a new connection reusing the tuple: judge it afresh.
#[inline(always)]
fn is_tcp_reuse(entry: &CtEntry, flow: &Flow) -> bool {
    flow.key.proto == PROTO_TCP
        && entry.state == CT_STATE_CLOSING
        && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

#[inline(always)]
fn record(entry: &mut CtEntry, flow: &Flow, now: u64) {
    entry.last_seen_ns = now;
    let side = usize::from(flow.dir != entry.origin);
    entry.packets[side] += 1;
    entry.bytes[side] += u64::from(flow.bytes);
    if side == 1 {
        entry.flags |= CT_F_SEEN_REPLY;
    }
    match flow.key.proto {
        PROTO_UDP if entry.packets[0] >= 2 && entry.packets[1] >= 2 => {
            entry.flags |= CT_F_UDP_STREAM;
        }
        PROTO_TCP if flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 => {
            entry.state = CT_STATE_CLOSING;
        }
        _ => {}
    }
}

/// With the cut option (C4), a flow judged under an older generation is judged again, once,
/// against the rules now in force. Returns false when they no longer admit it.
#[inline(always)]
fn still_admitted(entry: &mut CtEntry, flow: &Flow, policy: &Policy) -> bool {
    if policy.iface.flags & IFACE_F_CUT_ON_POLICY_CHANGE == 0
        || entry.generation == policy.generation
    {
        return true;
    }
    let lookup = Lookup {
        dir: entry.origin,
        family: flow.key.family,
        peer: &flow.key.remote_addr,
        proto: flow.key.proto,
        selector: entry.selector,
    };
    let admitted = policy::classify(policy, lookup).is_some();
    if admitted && policy::acl_passes() {
        entry.generation = policy.generation;
    }
    admitted
}

#[inline(always)]
fn counts(ifslot: u16) -> Option<*mut CtCount> {
    CT_COUNT.get_ptr_mut(u32::from(ifslot))
}

/// Rust offers no atomic read-modify-write on the bpf target; the intrinsic lowers to the
/// instruction set's atomic add.
#[inline(always)]
fn add(counter: *mut u64) {
    // SAFETY: `counter` points into an array map value shared by all CPUs: atomic add only.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
}

#[inline(always)]
fn remove_established(key: &CtKey, entry: &CtEntry, why: u8, now: u64) {
    let ifslot = entry.ifslot;
    let copy = *entry;
    // Only the CPU whose delete succeeds counts it, so concurrent removals count once.
    if CT_EST.remove(key).is_ok() {
        if let Some(count) = counts(ifslot) {
            // SAFETY: a field of the array value just looked up.
            add(unsafe { &raw mut (*count).removed });
        }
        telemetry::flow_ended(key, &copy, why, now);
    }
}

/// Established flows this interface holds, against its allowance.
#[inline(always)]
fn allowance_used_up(iface: &IfaceConfig) -> bool {
    let Some(count) = CT_COUNT.get(u32::from(iface.ifslot)) else {
        return true;
    };
    let agent_removed = CT_REMOVED_BY_AGENT
        .get(u32::from(iface.ifslot))
        .copied()
        .unwrap_or(0);
    let live = count
        .inserted
        .saturating_sub(count.removed)
        .saturating_sub(agent_removed);
    live >= u64::from(iface.max_flows)
}

/// Looks the packet up in both pools. `Ok(Some(..))`: a tracked flow admits it. `Ok(None)`: no
/// live flow; judge it by the rules.
///
/// For a packet the network ACL refuses after the groups (outbound, N4), the lookup only tells
/// what would admit it: nothing about an admission is written (no packet counted, no
/// promotion, a reused TCP tuple left alone). Refusals still act: a flow cut under the C4
/// option goes. `policy::acl_passes` is read at each such write.
#[inline(always)]
pub fn track(flow: &Flow, policy: &Policy, now: u64) -> Result<Option<Reason>, Reason> {
    if let Some(entry) = CT_EST.get_ptr_mut(&flow.key) {
        // SAFETY: the kernel's pointer to this entry; valid for this program run.
        let entry = unsafe { &mut *entry };
        if !is_live(entry, flow.key.proto, policy.iface, now) {
            remove_established(&flow.key, entry, END_EXPIRED, now);
        } else if is_tcp_reuse(entry, flow) {
            if !policy::acl_passes() {
                return Ok(None);
            }
            remove_established(&flow.key, entry, END_TCP_REUSED, now);
        } else if !still_admitted(entry, flow, policy) {
            remove_established(&flow.key, entry, END_POLICY_CUT, now);
            return Err(Reason::ConntrackCut);
        } else {
            if policy::acl_passes() {
                record(entry, flow, now);
            }
            return Ok(Some(if flow.dir == entry.origin {
                Reason::Tracked
            } else {
                Reason::Reply
            }));
        }
    }

    let Some(entry) = CT_NEW.get_ptr_mut(&flow.key) else {
        return Ok(None);
    };
    // SAFETY: as above.
    let entry = unsafe { &mut *entry };
    if !is_live(entry, flow.key.proto, policy.iface, now) || is_tcp_reuse(entry, flow) {
        // The new flow's insert overwrites it.
        return Ok(None);
    }
    if !still_admitted(entry, flow, policy) {
        let _ = CT_NEW.remove(&flow.key);
        return Err(Reason::ConntrackCut);
    }
    let is_tcp = flow.key.proto == PROTO_TCP;
    let from_origin = flow.dir == entry.origin;
    if !policy::acl_passes() {
        return Ok(Some(if from_origin {
            Reason::Tracked
        } else {
            Reason::Reply
        }));
    }
    // Judged before `record`, which moves a flow that sees a FIN or RST to closing. A TCP
    // originator proves it is real by acknowledging the SYN-ACK; a UDP or ICMP one has no
    // number to show, and speaking again after a reply is all it can do.
    let proves_real = from_origin
        && if is_tcp {
            entry.state == CT_STATE_HALF_OPEN
                && flow.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
                && acks_handshake(entry.reply_isn, flow.tcp_ack)
        } else {
            entry.flags & CT_F_SEEN_REPLY != 0
        };
    record(entry, flow, now);
    if from_origin {
        if proves_real {
            promote(&flow.key, entry)?;
        }
        return Ok(Some(Reason::Tracked));
    }
    if is_tcp
        && flow.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN | TCP_ACK
        && (entry.state == CT_STATE_NEW || entry.state == CT_STATE_HALF_OPEN)
    {
        // A retransmitted SYN-ACK carries the same sequence number; a different one (the
        // responder restarted) is the one the originator will acknowledge.
        entry.state = CT_STATE_HALF_OPEN;
        entry.reply_isn = flow.tcp_seq;
    }
    Ok(Some(Reason::Reply))
}

/// Moves a flow whose peer has shown it is real (see the module comment) into the
/// established pool.
#[inline(always)]
fn promote(key: &CtKey, entry: &CtEntry) -> Result<(), Reason> {
    let mut established = *entry;
    if established.state == CT_STATE_NEW || established.state == CT_STATE_HALF_OPEN {
        established.state = CT_STATE_ESTABLISHED;
    }
    match CT_EST.insert(key, &established, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            if let Some(count) = counts(entry.ifslot) {
                // SAFETY: a field of the array value just looked up.
                add(unsafe { &raw mut (*count).inserted });
            }
        }
        // Another CPU promoted it first.
        Err(error) if error == -EEXIST => {}
        // The established table is full: the flow cannot be tracked, so it does not start.
        Err(_) => return Err(Reason::ConntrackFull),
    }
    let _ = CT_NEW.remove(key);
    Ok(())
}

/// Starts tracking a flow a rule admitted; for a packet the ACL refuses (see [`track`]), only
/// tells whether it could.
#[inline(always)]
pub fn start(flow: &Flow, policy: &Policy, rule_id: u32, now: u64) -> Result<(), Reason> {
    if allowance_used_up(policy.iface) {
        return Err(Reason::ConntrackFull);
    }
    if !policy::acl_passes() {
        return Ok(());
    }
    let state = if flow.key.proto == PROTO_TCP && flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        CT_STATE_CLOSING
    } else {
        CT_STATE_NEW
    };
    let entry = CtEntry {
        created_ns: now,
        last_seen_ns: now,
        packets: [1, 0],
        bytes: [u64::from(flow.bytes), 0],
        generation: policy.generation,
        rule_id,
        ifslot: policy.iface.ifslot,
        selector: flow.selector,
        origin: flow.dir,
        state,
        flags: 0,
        _pad: 0,
        reply_isn: 0,
    };
    CT_NEW
        .insert(&flow.key, &entry, u64::from(BPF_ANY))
        .map_err(|_| Reason::ConntrackFull)
}

/// Whether a tracked flow matches `key` (for ICMP errors, C7). Read-only.
#[inline(always)]
pub fn is_tracked(key: &CtKey, iface: &IfaceConfig, now: u64) -> bool {
    // SAFETY: kernel pointers to entries, read once.
    if let Some(entry) = CT_EST.get_ptr(key)
        && is_live(unsafe { &*entry }, key.proto, iface, now)
    {
        return true;
    }
    match CT_NEW.get_ptr(key) {
        Some(entry) => is_live(unsafe { &*entry }, key.proto, iface, now),
        None => false,
    }
}
