//! Fragments (H1, H2): a later fragment has no transport header, so it inherits the verdict of
//! its datagram's first fragment, which the decide stage records when it admits one.

use aya_ebpf::{bindings::BPF_ANY, helpers::bpf_ktime_get_ns};
use filter_common::{FragEntry, FragKey, PROTO_TCP, PacketFacts, Reason};

use crate::{maps::FRAGMENTS, telemetry, verdict::Outcome};

/// The datagram a fragment belongs to: the same key for its first and its later fragments.
#[inline(always)]
fn datagram_key(facts: &PacketFacts) -> FragKey {
    FragKey {
        ifindex: facts.ifindex,
        family: facts.family,
        proto: facts.proto,
        _pad: [0; 2],
        id: facts.fragment_id,
        src: facts.src,
        dst: facts.dst,
    }
}

/// H1: a later fragment passes only if its datagram's first fragment passed, recently.
#[inline(always)]
pub fn judge_later(facts: &PacketFacts) -> Outcome {
    // Offset 8 bytes into TCP would rewrite the flags the first fragment was judged on.
    if facts.proto == PROTO_TCP && facts.fragment_offset == 1 {
        return Err(Reason::OverlappingFragment);
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match FRAGMENTS.get_ptr(datagram_key(facts)) {
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
    let key = datagram_key(facts);
    // A full table loses the record, and the later fragments drop: never a wrong pass.
    let _ = FRAGMENTS.insert(key, FragEntry { first_seen_ns: now }, u64::from(BPF_ANY));
}
