//! Turning rule selector ranges into LPM prefixes.
//!
//! The `PORTS` trie answers "which rules admit this selector" with one longest-prefix lookup.
//! Rules' ranges overlap arbitrarily, so they are first cut into disjoint elementary intervals,
//! each carrying the union of the rules that cover it; each interval then becomes a handful of
//! prefixes (at most 30 for a 16-bit range). Disjoint intervals mean at most one prefix contains a
//! selector, so the longest match is the only match.

use filter_common::RuleBitmap;

/// An inclusive 16-bit range with the rules that admit it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoveredRange {
    pub from: u16,
    pub to: u16,
    pub rules: RuleBitmap,
}

/// Cuts possibly overlapping `(from, to, rule bit)` ranges into disjoint, maximal intervals with
/// the union of their rules. Intervals no rule covers are left out; neighbours with identical
/// rules are merged.
pub fn disjoint_intervals(ranges: &[(u16, u16, u16)]) -> Vec<CoveredRange> {
    // Boundaries where coverage may change: each range's start, and the value after its end.
    let mut cuts: Vec<u32> = Vec::with_capacity(ranges.len() * 2 + 1);
    for &(from, to, _) in ranges {
        cuts.push(u32::from(from));
        cuts.push(u32::from(to) + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();

    let mut out: Vec<CoveredRange> = Vec::new();
    for window in cuts.windows(2) {
        let (start, end_exclusive) = (window[0], window[1]);
        if start > u32::from(u16::MAX) {
            break;
        }
        let mut rules = RuleBitmap::EMPTY;
        for &(from, to, bit) in ranges {
            if u32::from(from) <= start && start <= u32::from(to) {
                rules.set(usize::from(bit));
            }
        }
        if rules.is_empty() {
            continue;
        }
        let (from, to) = (start as u16, (end_exclusive - 1) as u16);
        match out.last_mut() {
            Some(previous)
                if previous.rules == rules && u32::from(previous.to) + 1 == u32::from(from) =>
            {
                previous.to = to;
            }
            _ => out.push(CoveredRange { from, to, rules }),
        }
    }
    out
}

/// The minimal set of `(value, prefix length)` blocks that exactly cover `from..=to` in a 16-bit
/// space.
pub fn range_to_prefixes(from: u16, to: u16) -> Vec<(u16, u8)> {
    let mut prefixes = Vec::new();
    let (mut low, high) = (u32::from(from), u32::from(to));
    while low <= high {
        // The largest aligned block starting at `low` that stays within `high`.
        let mut size_bits = if low == 0 {
            16
        } else {
            low.trailing_zeros().min(16)
        };
        while size_bits > 0 && low + (1u32 << size_bits) - 1 > high {
            size_bits -= 1;
        }
        prefixes.push((low as u16, (16 - size_bits) as u8));
        low += 1u32 << size_bits;
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered_by(prefixes: &[(u16, u8)], value: u16) -> usize {
        prefixes
            .iter()
            .filter(|(base, len)| {
                let mask = if *len == 0 { 0 } else { u16::MAX << (16 - len) };
                value & mask == *base
            })
            .count()
    }

    #[test]
    fn prefixes_cover_exactly_the_range() {
        for (from, to) in [
            (0, 65535),
            (0, 0),
            (80, 80),
            (1024, 65535),
            (1, 65534),
            (8000, 8100),
        ] {
            let prefixes = range_to_prefixes(from, to);
            for value in 0..=u16::MAX {
                let expected = usize::from((from..=to).contains(&value));
                assert_eq!(
                    covered_by(&prefixes, value),
                    expected,
                    "{from}-{to} at {value}"
                );
            }
        }
    }

    #[test]
    fn full_range_is_one_prefix_and_worst_case_is_bounded() {
        assert_eq!(range_to_prefixes(0, 65535), vec![(0, 0)]);
        assert!(range_to_prefixes(1, 65534).len() <= 30);
    }

    #[test]
    fn overlapping_ranges_become_disjoint_unions() {
        let intervals = disjoint_intervals(&[(80, 80, 0), (0, 1023, 1), (443, 443, 2)]);
        let summary: Vec<(u16, u16, Vec<usize>)> = intervals
            .iter()
            .map(|r| (r.from, r.to, (0..3).filter(|b| r.rules.get(*b)).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 79, vec![1]),
                (80, 80, vec![0, 1]),
                (81, 442, vec![1]),
                (443, 443, vec![1, 2]),
                (444, 1023, vec![1]),
            ]
        );
    }

    #[test]
    fn ranges_ending_at_the_top_do_not_overflow() {
        let intervals = disjoint_intervals(&[(65535, 65535, 3), (0, 65535, 4)]);
        assert_eq!(intervals.len(), 2);
        assert_eq!((intervals[1].from, intervals[1].to), (65535, 65535));
    }
}
