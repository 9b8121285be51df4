//! The end of the verdict path. Every packet ends under exactly one [`Reason`] from
//! `filter-common`'s table, which fixes its verdict; unparseable input ends under a drop reason.

use filter_common::Reason;

use crate::telemetry;

/// A path's outcome: the reason the packet is counted under. `Err` only lets `?` end a path
/// early (parse failures, conntrack refusals); the verdict comes from the reason alone.
pub type Outcome = Result<Reason, Reason>;

#[inline(always)]
pub fn reason_of(outcome: Outcome) -> Reason {
    match outcome {
        Ok(reason) | Err(reason) => reason,
    }
}

/// Counts the packet under its reason; true admits.
#[inline(always)]
pub fn finish(ifslot: u16, dir: u8, reason: Reason, frame_len: u32) -> bool {
    telemetry::count(ifslot, dir, reason, frame_len);
    reason.passes()
}
