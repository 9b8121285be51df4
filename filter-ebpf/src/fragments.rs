//! Fragments (H1, H2): a later fragment has no transport header, so it inherits the verdict of
//! its datagram's first fragment, which the decide stage records when it admits one.

use aya_ebpf::{bindings::BPF_ANY, helpers::bpf_ktime_get_ns};
use filter_common::{FragEntry, FragKey, PROTO_TCP, PacketFacts, Reason};

use crate::{maps::FRAGMENTS, parse::Ip, telemetry, verdict::Outcome};

#[inline(always)]
fn datagram_key(
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
pub fn judge_later(ip: &Ip, ifindex: u32) -> Outcome {
    // Offset 8 bytes into TCP would rewrite the flags the first fragment was judged on.
    if ip.proto == PROTO_TCP && ip.fragment_offset == 1 {
        return Err(Reason::OverlappingFragment);
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = datagram_key(
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
            Ok(Reason::Fragment)
        }
        _ => Err(Reason::FragmentWithoutFirst),
    }
}

/// Records an admitted first fragment, so that its datagram's later fragments pass.
#[inline(always)]
pub fn remember_first(facts: &PacketFacts, now: u64) {
    let key = datagram_key(
        facts.ifindex,
        facts.family,
        facts.proto,
        facts.fragment_id,
        &facts.src,
        &facts.dst,
    );
    // A full table loses the record, and the later fragments drop: never a wrong pass.
    let _ = FRAGMENTS.insert(key, FragEntry { first_seen_ns: now }, u64::from(BPF_ANY));
}
