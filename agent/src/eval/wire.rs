//! The reference reading of a frame's bytes: what the datapath must make of any frame, valid or
//! not (H1-H3, I4), written for reading like the rest of the evaluator. A frame either reads as
//! a [`Frame`] the evaluator judges, or ends under the drop [`Reason`] of the first thing that
//! does not parse. The fuzzer (tier 2) holds the datapath's parser to it on mutated frames.
//!
//! Bounds are the frame's end, as the datapath's packet accessor's are: an IPv4 transport
//! header may sit in padding past the IP total length, and a frame whose IP length claims more
//! than the frame holds is malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{
    FAMILY_V4, FAMILY_V6, IPV6_AUTHENTICATION, IPV6_DESTINATION_OPTIONS, IPV6_FRAGMENT,
    IPV6_HOP_BY_HOP, IPV6_ROUTING, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Reason,
    is_icmp_error, is_ipv6_unwalkable_extension, is_own_icmp,
};

use super::{Fragment, Frame, IpPacket, QuotedFlow, Transport};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const VLAN_ETHERTYPES: [u16; 2] = [0x8100, 0x88a8];
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

/// The bytes of a frame, read only within it.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    /// `len` bytes at `offset`, if the frame holds them all.
    fn get(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.0.get(offset..offset.checked_add(len)?)
    }

    fn u8(&self, offset: usize) -> Option<u8> {
        self.0.get(offset).copied()
    }

    fn be16(&self, offset: usize) -> Option<u16> {
        let b = self.get(offset, 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn be32(&self, offset: usize) -> Option<u32> {
        let b = self.get(offset, 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn address(&self, v6: bool, offset: usize) -> Option<IpAddr> {
        if v6 {
            let b: [u8; 16] = self.get(offset, 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        } else {
            let b: [u8; 4] = self.get(offset, 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
    }
}

/// The IP layer as the verdict path needs it.
struct Ip {
    v6: bool,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4_offset: usize,
    fragment: Fragment,
}

/// Reads a whole Ethernet frame.
pub fn parse(frame: &[u8]) -> Result<Frame, Reason> {
    let bytes = Bytes(frame);
    let mut ethertype = bytes.be16(12).ok_or(Reason::TruncatedEthernet)?;
    let mut offset = 14;
    for _ in 0..MAX_VLAN_TAGS {
        if !VLAN_ETHERTYPES.contains(&ethertype) {
            break;
        }
        ethertype = bytes.be16(offset + 2).ok_or(Reason::BadVlan)?;
        offset += 4;
    }
    if VLAN_ETHERTYPES.contains(&ethertype) {
        return Err(Reason::BadVlan);
    }
    let ip = match ethertype {
        ETH_P_ARP => return arp(&bytes, offset),
        ETH_P_IPV4 => ipv4(&bytes, offset)?,
        ETH_P_IPV6 => ipv6(&bytes, offset)?,
        _ => return Ok(Frame::NonIp),
    };
    let transport = transport(&bytes, &ip)?;
    Ok(Frame::Ip(IpPacket {
        src: ip.src,
        dst: ip.dst,
        transport,
        fragment: ip.fragment,
    }))
}

fn arp(bytes: &Bytes, offset: usize) -> Result<Frame, Reason> {
    bytes.get(offset, 28).ok_or(Reason::BadArp)?;
    let well_formed = bytes.be16(offset) == Some(1)
        && bytes.be16(offset + 2) == Some(ETH_P_IPV4)
        && bytes.u8(offset + 4) == Some(6)
        && bytes.u8(offset + 5) == Some(4);
    match bytes.address(false, offset + 14) {
        Some(IpAddr::V4(sender)) if well_formed => Ok(Frame::Arp { sender }),
        _ => Err(Reason::BadArp),
    }
}

fn fragment_of(id: u32, offset: u16, more: bool) -> Fragment {
    if offset != 0 {
        Fragment::Later { id, offset }
    } else if more {
        Fragment::First { id }
    } else {
        Fragment::Whole
    }
}

fn ipv4(bytes: &Bytes, offset: usize) -> Result<Ip, Reason> {
    let bad = Reason::BadIpv4;
    bytes.get(offset, 20).ok_or(bad)?;
    let version_ihl = bytes.u8(offset).ok_or(bad)?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return Err(bad);
    }
    let total_len = usize::from(bytes.be16(offset + 2).ok_or(bad)?);
    if total_len < header_len || offset + total_len > bytes.0.len() {
        return Err(bad);
    }
    let flags_offset = bytes.be16(offset + 6).ok_or(bad)?;
    let id = u32::from(bytes.be16(offset + 4).ok_or(bad)?);
    Ok(Ip {
        v6: false,
        proto: bytes.u8(offset + 9).ok_or(bad)?,
        src: bytes.address(false, offset + 12).ok_or(bad)?,
        dst: bytes.address(false, offset + 16).ok_or(bad)?,
        l4_offset: offset + header_len,
        fragment: fragment_of(id, flags_offset & 0x1fff, flags_offset & 0x2000 != 0),
    })
}

fn ipv6(bytes: &Bytes, offset: usize) -> Result<Ip, Reason> {
    let bad = Reason::BadIpv6;
    bytes.get(offset, 40).ok_or(bad)?;
    if bytes.u8(offset).ok_or(bad)? >> 4 != 6 {
        return Err(bad);
    }
    let payload_len = usize::from(bytes.be16(offset + 4).ok_or(bad)?);
    if offset + 40 + payload_len > bytes.0.len() {
        return Err(bad);
    }
    let mut ip = Ip {
        v6: true,
        proto: bytes.u8(offset + 6).ok_or(bad)?,
        src: bytes.address(true, offset + 8).ok_or(bad)?,
        dst: bytes.address(true, offset + 24).ok_or(bad)?,
        l4_offset: offset + 40,
        fragment: Fragment::Whole,
    };
    walk_extensions(bytes, &mut ip)?;
    Ok(ip)
}

/// H2: known extension headers are skipped (hop-by-hop only first), the fragment header is
/// read, routing type 0, unknown extensions and a chain past the bound drop.
fn walk_extensions(bytes: &Bytes, ip: &mut Ip) -> Result<(), Reason> {
    let chain = Reason::Ipv6ExtensionChain;
    let mut next = ip.proto;
    let mut offset = ip.l4_offset;
    for index in 0..MAX_IPV6_EXTENSION_HEADERS {
        match next {
            IPV6_HOP_BY_HOP | IPV6_DESTINATION_OPTIONS | IPV6_ROUTING | IPV6_AUTHENTICATION => {
                if next == IPV6_HOP_BY_HOP && index != 0 {
                    return Err(chain);
                }
                bytes.get(offset, 4).ok_or(chain)?;
                if next == IPV6_ROUTING && bytes.u8(offset + 2) == Some(0) {
                    return Err(Reason::Ipv6RoutingType0);
                }
                let units = usize::from(bytes.u8(offset + 1).ok_or(chain)?);
                let length = if next == IPV6_AUTHENTICATION {
                    (units + 2) * 4
                } else {
                    (units + 1) * 8
                };
                next = bytes.u8(offset).ok_or(chain)?;
                offset += length;
            }
            IPV6_FRAGMENT => {
                bytes.get(offset, 8).ok_or(chain)?;
                let offset_flags = bytes.be16(offset + 2).ok_or(chain)?;
                let id = bytes.be32(offset + 4).ok_or(chain)?;
                // An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946).
                ip.fragment = fragment_of(id, offset_flags >> 3, offset_flags & 1 != 0);
                next = bytes.u8(offset).ok_or(chain)?;
                offset += 8;
                if matches!(ip.fragment, Fragment::Later { .. }) {
                    break;
                }
            }
            unknown if is_ipv6_unwalkable_extension(unknown) => {
                return Err(Reason::Ipv6UnknownExtension);
            }
            _ => {
                ip.proto = next;
                ip.l4_offset = offset;
                return Ok(());
            }
        }
    }
    if matches!(ip.fragment, Fragment::Later { .. }) {
        // What follows a later fragment's header is the middle of the payload.
        ip.proto = next;
        ip.l4_offset = offset;
        return Ok(());
    }
    Err(chain)
}

/// The transport header, which must be whole (H1: a first fragment too short for it is the
/// tiny fragment attack). A later fragment has none.
fn transport(bytes: &Bytes, ip: &Ip) -> Result<Transport, Reason> {
    if matches!(ip.fragment, Fragment::Later { .. }) {
        return Ok(Transport::Other(ip.proto));
    }
    let short = if matches!(ip.fragment, Fragment::First { .. }) {
        Reason::TinyFirstFragment
    } else {
        Reason::TruncatedL4
    };
    let at = ip.l4_offset;
    match ip.proto {
        PROTO_TCP => {
            bytes.get(at, 20).ok_or(short)?;
            let field = |offset: usize| bytes.be16(at + offset).ok_or(short);
            let word = |offset: usize| bytes.be32(at + offset).ok_or(short);
            if bytes.u8(at + 12).ok_or(short)? >> 4 < 5 {
                return Err(Reason::TruncatedL4);
            }
            Ok(Transport::Tcp {
                src_port: field(0)?,
                dst_port: field(2)?,
                flags: bytes.u8(at + 13).ok_or(short)?,
                seq: word(4)?,
                ack: word(8)?,
            })
        }
        PROTO_UDP => {
            bytes.get(at, 8).ok_or(short)?;
            Ok(Transport::Udp {
                src_port: bytes.be16(at).ok_or(short)?,
                dst_port: bytes.be16(at + 2).ok_or(short)?,
            })
        }
        proto if is_own_icmp(if ip.v6 { FAMILY_V6 } else { FAMILY_V4 }, proto) => {
            bytes.get(at, 8).ok_or(short)?;
            let icmp_type = bytes.u8(at).ok_or(short)?;
            Ok(Transport::Icmp {
                icmp_type,
                code: bytes.u8(at + 1).ok_or(short)?,
                echo_id: bytes.be16(at + 4).ok_or(short)?,
                quoted: is_icmp_error(ip.proto, icmp_type)
                    .then(|| quoted_flow(bytes, ip.v6, at + 8))
                    .flatten(),
            })
        }
        other => Ok(Transport::Other(other)),
    }
}

/// C7: the header an ICMP error quotes (the offending packet's IP header and 8 bytes of its
/// transport header), of the error's own family, or nothing.
fn quoted_flow(bytes: &Bytes, v6: bool, offset: usize) -> Option<QuotedFlow> {
    let (proto, src, dst, l4) = if v6 {
        bytes.get(offset, 40)?;
        if bytes.u8(offset)? >> 4 != 6 {
            return None;
        }
        (
            bytes.u8(offset + 6)?,
            bytes.address(true, offset + 8)?,
            bytes.address(true, offset + 24)?,
            offset + 40,
        )
    } else {
        bytes.get(offset, 20)?;
        let version_ihl = bytes.u8(offset)?;
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        if version_ihl >> 4 != 4 || header_len < 20 {
            return None;
        }
        (
            bytes.u8(offset + 9)?,
            bytes.address(false, offset + 12)?,
            bytes.address(false, offset + 16)?,
            offset + header_len,
        )
    };
    bytes.get(l4, 8)?;
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP => (bytes.be16(l4)?, bytes.be16(l4 + 2)?),
        PROTO_ICMP | PROTO_ICMPV6 => (bytes.be16(l4 + 4)?, 0),
        _ => (0, 0),
    };
    Some(QuotedFlow {
        proto,
        src,
        dst,
        src_port,
        dst_port,
    })
}
