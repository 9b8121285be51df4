//! Counters, rule hits and flow events. Counting never changes a verdict: a missing counter
//! slot or a full ring buffer loses a number, not a packet.

use filter_common::*;

use crate::maps::{COUNTERS, DENY_RATE, EVENTS, RULE_HITS, SETTINGS};

#[inline(always)]
pub fn count(ifslot: u16, dir: u8, reason: Reason, bytes: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(ifslot, dir, reason as u32)) {
        // SAFETY: a per-CPU slot: only this CPU writes it while this program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(bytes);
        }
    }
}

/// A packet no interface configuration covers: counted in the unconfigured row, under the
/// direction the hook implies.
#[inline(always)]
pub fn count_unconfigured(dir: u8, reason: Reason, bytes: u32) {
    count(IFSLOT_UNCONFIGURED, dir, reason, bytes);
}

#[inline(always)]
pub fn count_rule_hit(slot: u8, rule_id: u32) {
    if let Some(hits) = RULE_HITS.get_ptr_mut(rule_hit_index(slot, rule_id)) {
        // SAFETY: per-CPU slot, as above.
        unsafe { *hits += 1 };
    }
}

/// The tuple an event describes, in packet orientation.
pub struct EventFlow {
    pub ifindex: u32,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// Length of the frame, for flow records' byte counts.
    pub bytes: u32,
}

#[inline(always)]
fn settings() -> Settings {
    match SETTINGS.get(0) {
        Some(settings) => *settings,
        None => Settings::DEFAULT,
    }
}

#[inline(always)]
fn emit(
    flow: &EventFlow,
    kind: u8,
    reason: u8,
    rule_id: u32,
    generation: u64,
    suppressed: u32,
    now: u64,
) {
    if let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) {
        entry.write(FlowEvent {
            timestamp_ns: now,
            kind,
            dir: flow.dir,
            family: flow.family,
            proto: flow.proto,
            reason,
            _pad: [0; 3],
            ifindex: flow.ifindex,
            rule_id,
            generation,
            src: flow.src,
            dst: flow.dst,
            src_port: flow.src_port,
            dst_port: flow.dst_port,
            suppressed,
            packets: [1, 0],
            bytes: [u64::from(flow.bytes), 0],
        });
        entry.submit(0);
    }
}

/// Rate limit for per-packet events (denials, and admissions without a conntrack entry): at
/// most `denied_events_per_sec` per CPU, so a flood cannot starve the agent. Returns how many
/// were suppressed since the last one let through, or `None` to suppress this one.
#[inline(always)]
fn rate_limited(now: u64) -> Option<u32> {
    let limit = settings().denied_events_per_sec;
    let window = DENY_RATE.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot, as above.
    let window = unsafe { &mut *window };
    if now.wrapping_sub(window.window_start_ns) >= 1_000_000_000 {
        window.window_start_ns = now;
        window.emitted = 0;
    }
    if window.emitted >= limit {
        window.suppressed = window.suppressed.saturating_add(1);
        return None;
    }
    window.emitted += 1;
    let suppressed = window.suppressed;
    window.suppressed = 0;
    Some(suppressed)
}

/// A packet admitted by a rule. Flows that get a conntrack entry report once, unthrottled;
/// admissions without one happen per packet and share the per-packet rate limit.
#[inline(always)]
pub fn flow_admitted(flow: &EventFlow, reason: Reason, rule_id: u32, generation: u64, now: u64) {
    if settings().flow_events == 0 {
        return;
    }
    let suppressed = if reason == Reason::NewFlow {
        0
    } else {
        match rate_limited(now) {
            Some(suppressed) => suppressed,
            None => return,
        }
    };
    emit(
        flow,
        EVENT_FLOW_NEW,
        reason as u8,
        rule_id,
        generation,
        suppressed,
        now,
    );
}

/// Returns whether the event went out (it did not if the rate limit suppressed it). `rule_id` is
/// the network ACL entry that refused the packet, or [`RULE_ID_NONE`].
#[inline(always)]
pub fn flow_denied(
    flow: &EventFlow,
    reason: Reason,
    rule_id: u32,
    generation: u64,
    now: u64,
) -> bool {
    match rate_limited(now) {
        Some(suppressed) => {
            emit(
                flow,
                EVENT_FLOW_DENIED,
                reason as u8,
                rule_id,
                generation,
                suppressed,
                now,
            );
            true
        }
        None => false,
    }
}

/// A flow the datapath removed (expired on sight, or a TCP tuple reused).
#[inline(always)]
pub fn flow_ended(key: &CtKey, entry: &CtEntry, why: u8, now: u64) {
    if settings().flow_events == 0 {
        return;
    }
    if let Some(mut event) = EVENTS.reserve::<FlowEvent>(0) {
        event.write(FlowEvent {
            timestamp_ns: now,
            kind: EVENT_FLOW_END,
            dir: entry.origin,
            family: key.family,
            proto: key.proto,
            reason: why,
            _pad: [0; 3],
            ifindex: key.ifindex,
            rule_id: entry.rule_id,
            generation: entry.generation,
            src: key.local_addr,
            dst: key.remote_addr,
            src_port: key.local_port,
            dst_port: key.remote_port,
            suppressed: 0,
            packets: entry.packets,
            bytes: entry.bytes,
        });
        event.submit(0);
    }
}

/// Fragment timeout from the settings, never zero (a zero would drop every later fragment).
#[inline(always)]
pub fn fragment_timeout_ns() -> u64 {
    let seconds = settings().fragment_timeout_sec;
    let seconds = if seconds == 0 {
        Settings::DEFAULT.fragment_timeout_sec
    } else {
        seconds
    };
    u64::from(seconds) * 1_000_000_000
}
