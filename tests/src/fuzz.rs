//! Mutations for the packet-path fuzzer (issue 17): frames built from valid ones by the
//! changes that break parsers (bit flips, truncation, lying length fields, extension header
//! chains, VLAN stacking, fragment fields, protocol numbers), seeded and so repeatable.
//!
//! Mutations know where the headers of the valid frame are (plain Ethernet, then IPv4 or IPv6
//! as `packet::from_eval` builds it), so most of them hit fields a parser reads; the rest are
//! blind. Frames never shrink below the 14 bytes of an Ethernet header: the kernel refuses a
//! shorter one at BPF_PROG_TEST_RUN, as no driver delivers one.

use sgwall::testgen::Rng;

pub const ETH_HEADER_LEN: usize = 14;

/// Byte values that sit on the edges parsers check.
const EDGE_BYTES: [u8; 8] = [0x00, 0x01, 0x05, 0x0f, 0x40, 0x7f, 0x80, 0xff];
/// Protocol numbers worth trying, extension headers among them.
const PROTOCOLS: [u8; 14] = [0, 1, 4, 6, 17, 41, 43, 44, 50, 51, 58, 59, 60, 135];
/// IPv6 extension headers a mutation may insert (walkable, odd and unknown).
const EXTENSIONS: [u8; 8] = [0, 43, 44, 51, 60, 135, 139, 253];

/// One mutation, named for the report of a disagreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    FlipBit,
    EdgeByte,
    Truncate,
    Append,
    IpLength,
    Ipv4HeaderLength,
    TcpDataOffset,
    VlanTag,
    Ipv6Extension,
    Ipv4FragmentFields,
    Protocol,
    Ethertype,
}

impl Mutation {
    pub const ALL: [Mutation; 12] = [
        Mutation::FlipBit,
        Mutation::EdgeByte,
        Mutation::Truncate,
        Mutation::Append,
        Mutation::IpLength,
        Mutation::Ipv4HeaderLength,
        Mutation::TcpDataOffset,
        Mutation::VlanTag,
        Mutation::Ipv6Extension,
        Mutation::Ipv4FragmentFields,
        Mutation::Protocol,
        Mutation::Ethertype,
    ];
}

/// Where the valid frame's layers start, as far as the mutations so far left them findable.
struct Layout {
    l3: usize,
    v6: bool,
}

fn layout(frame: &[u8]) -> Option<Layout> {
    let mut l3 = ETH_HEADER_LEN;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16::from_be_bytes([*frame.get(l3 + 2)?, *frame.get(l3 + 3)?]);
        l3 += 4;
    }
    match ethertype {
        0x0800 => Some(Layout { l3, v6: false }),
        0x86dd => Some(Layout { l3, v6: true }),
        _ => None,
    }
}

fn put_be16(frame: &mut [u8], at: usize, value: u16) {
    if let Some(slot) = frame.get_mut(at..at + 2) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

fn be16(frame: &[u8], at: usize) -> u16 {
    match frame.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// A length near `actual`: the true one, off by a little either way, or anything.
fn lying_length(rng: &mut Rng, actual: usize) -> u16 {
    match rng.below(4) {
        0 => actual.saturating_sub(1 + rng.below(8)) as u16,
        1 => (actual + 1 + rng.below(8)) as u16,
        2 => rng.next_u64() as u16,
        _ => 0,
    }
}

/// Applies `mutation` to `frame`; returns whether it changed anything it could find.
pub fn apply(rng: &mut Rng, frame: &mut Vec<u8>, mutation: Mutation) {
    let len = frame.len();
    let found = layout(frame);
    match (mutation, found) {
        (Mutation::FlipBit, _) => {
            let at = rng.below(len);
            frame[at] ^= 1 << rng.below(8);
        }
        (Mutation::EdgeByte, _) => {
            let at = rng.below(len);
            frame[at] = *rng.pick(&EDGE_BYTES);
        }
        (Mutation::Truncate, _) if len > ETH_HEADER_LEN => {
            let keep = ETH_HEADER_LEN + rng.below(len - ETH_HEADER_LEN);
            frame.truncate(keep);
        }
        (Mutation::Append, _) => {
            for _ in 0..1 + rng.below(64) {
                frame.push(rng.next_u64() as u8);
            }
        }
        (Mutation::IpLength, Some(Layout { l3, v6 })) => {
            let (field, actual) = if v6 {
                (l3 + 4, len.saturating_sub(l3 + 40))
            } else {
                (l3 + 2, len.saturating_sub(l3))
            };
            let value = lying_length(rng, actual);
            put_be16(frame, field, value);
        }
        (Mutation::Ipv4HeaderLength, Some(Layout { l3, v6: false })) => {
            if let Some(byte) = frame.get_mut(l3) {
                *byte = (*byte & 0xf0) | rng.below(16) as u8;
            }
        }
        (Mutation::TcpDataOffset, Some(Layout { l3, v6 })) => {
            let l4 = if v6 {
                l3 + 40
            } else {
                l3 + usize::from(frame.get(l3).map_or(5, |b| b & 0x0f)) * 4
            };
            if let Some(byte) = frame.get_mut(l4 + 12) {
                *byte = (*byte & 0x0f) | ((rng.below(16) as u8) << 4);
            }
        }
        (Mutation::VlanTag, _) => {
            let tpid: u16 = if rng.chance(50) { 0x8100 } else { 0x88a8 };
            let tci = rng.next_u64() as u16 & 0x0fff;
            let mut tag = Vec::with_capacity(4);
            tag.extend_from_slice(&tpid.to_be_bytes());
            tag.extend_from_slice(&tci.to_be_bytes());
            // The tag goes where the ethertype was; the ethertype follows it.
            let ethertype = frame[12..14].to_vec();
            frame.splice(12..14, tag.iter().copied().chain(ethertype));
        }
        (Mutation::Ipv6Extension, Some(Layout { l3, v6: true })) if len >= l3 + 40 => {
            let kind = *rng.pick(&EXTENSIONS);
            let next = frame[l3 + 6];
            let mut header = [0u8; 8];
            header[0] = next;
            match kind {
                43 => header[2] = rng.below(5) as u8,
                44 => {
                    let offset = if rng.chance(50) {
                        0
                    } else {
                        rng.below(8192) as u16
                    };
                    let more = u16::from(rng.chance(50));
                    header[2..4].copy_from_slice(&((offset << 3) | more).to_be_bytes());
                    header[4..8].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                }
                _ => {}
            }
            frame[l3 + 6] = kind;
            frame.splice(l3 + 40..l3 + 40, header);
            let payload = be16(frame, l3 + 4).saturating_add(8);
            put_be16(frame, l3 + 4, payload);
        }
        (Mutation::Ipv4FragmentFields, Some(Layout { l3, v6: false })) => {
            let offset = match rng.below(3) {
                0 => 0,
                1 => 1 + rng.below(4) as u16,
                _ => rng.below(8192) as u16,
            };
            let more = if rng.chance(50) { 0x2000 } else { 0 };
            put_be16(frame, l3 + 6, more | offset);
        }
        (Mutation::Protocol, Some(Layout { l3, v6 })) => {
            let field = if v6 { l3 + 6 } else { l3 + 9 };
            let value = if rng.chance(80) {
                *rng.pick(&PROTOCOLS)
            } else {
                rng.next_u64() as u8
            };
            if let Some(byte) = frame.get_mut(field) {
                *byte = value;
            }
        }
        (Mutation::Ethertype, _) => {
            let value: u16 = *rng.pick(&[0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x88cc, 0x0000]);
            put_be16(frame, 12, value);
        }
        // A mutation that needs a layer the frame no longer has: a blind flip instead.
        _ => {
            let at = rng.below(len);
            frame[at] ^= 1 << rng.below(8);
        }
    }
}

/// One to three random mutations of a valid frame; the names of those applied.
pub fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) -> Vec<Mutation> {
    let count = 1 + rng.below(3);
    let applied: Vec<Mutation> = (0..count).map(|_| *rng.pick(&Mutation::ALL)).collect();
    for mutation in &applied {
        apply(rng, frame, *mutation);
    }
    applied
}

/// BPF_PROG_TEST_RUN of an skb program refuses (EINVAL) a frame whose ethertype says IP but
/// which is shorter than the IP header: the kernel reads that header to set the test's socket
/// up, so no program runs and there is nothing to compare. (Real drivers do deliver such runts;
/// the parser refuses them like any truncated header, which the tier 2 tests show on XDP.)
pub fn refused_by_test_run(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() < ETH_HEADER_LEN + 20,
        Some([0x86, 0xdd]) => frame.len() < ETH_HEADER_LEN + 40,
        _ => false,
    }
}

pub fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}
