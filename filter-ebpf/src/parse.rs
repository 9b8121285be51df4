//! Header parsing: Ethernet with up to two VLAN tags, ARP, IPv4 (options, fragments), IPv6
//! (a bounded extension header walk, fragments), and the transport header. Anything that does
//! not parse ends under its own drop [`Reason`] (H1-H3).

use filter_common::{
    FAMILY_V4, FAMILY_V6, IPV6_AUTHENTICATION, IPV6_DESTINATION_OPTIONS, IPV6_FRAGMENT,
    IPV6_HOP_BY_HOP, IPV6_ROUTING, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Reason,
    is_ipv6_unwalkable_extension, is_own_icmp,
};

use crate::packet::Packet;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const MAX_VLAN_TAGS: usize = 2;

/// Extension headers walked before giving up (H2).
const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

pub const FRAG_NONE: u8 = 0;
/// Offset 0 with more fragments: carries the transport header.
pub const FRAG_FIRST: u8 = 1;
/// Offset > 0: no transport header; judged by its first fragment.
pub const FRAG_LATER: u8 = 2;

pub struct Link {
    pub source_mac: [u8; 6],
    pub ethertype: u16,
    pub l3_offset: usize,
}

#[inline(always)]
pub fn ethernet(packet: &Packet) -> Result<Link, Reason> {
    let header = packet
        .get::<ETH_HEADER_LEN>(0)
        .ok_or(Reason::TruncatedEthernet)?;
    let mut ethertype = header.be16::<12>();
    let mut offset = ETH_HEADER_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = packet.get::<VLAN_TAG_LEN>(offset).ok_or(Reason::BadVlan)?;
        ethertype = tag.be16::<2>();
        offset += VLAN_TAG_LEN;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Reason::BadVlan);
    }
    Ok(Link {
        source_mac: header.array::<6, 6>(),
        ethertype,
        l3_offset: offset,
    })
}

/// The sender protocol address of an Ethernet/IPv4 ARP packet.
#[inline(always)]
pub fn arp_sender(packet: &Packet, offset: usize) -> Result<[u8; 4], Reason> {
    let arp = packet.get::<28>(offset).ok_or(Reason::BadArp)?;
    let well_formed = arp.be16::<0>() == 1
        && arp.be16::<2>() == ETH_P_IPV4
        && arp.u8::<4>() == 6
        && arp.u8::<5>() == 4;
    if !well_formed {
        return Err(Reason::BadArp);
    }
    Ok(arp.array::<14, 4>())
}

/// What the verdict path needs from the IP header and its extensions.
pub struct Ip {
    pub family: u8,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub l4_offset: usize,
    pub fragment: u8,
    /// In 8-byte units.
    pub fragment_offset: u16,
    pub fragment_id: u32,
}

#[inline(always)]
pub fn ipv4(packet: &Packet, offset: usize, frame_len: usize) -> Result<Ip, Reason> {
    let header = packet.get::<20>(offset).ok_or(Reason::BadIpv4)?;
    let version_ihl = header.u8::<0>();
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return Err(Reason::BadIpv4);
    }
    let total_len = usize::from(header.be16::<2>());
    if total_len < header_len || offset + total_len > frame_len {
        return Err(Reason::BadIpv4);
    }
    let flags_offset = header.be16::<6>();
    let more_fragments = flags_offset & 0x2000 != 0;
    let fragment_offset = flags_offset & 0x1fff;
    let fragment = if fragment_offset != 0 {
        FRAG_LATER
    } else if more_fragments {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&header.array::<12, 4>());
    dst[..4].copy_from_slice(&header.array::<16, 4>());
    Ok(Ip {
        family: FAMILY_V4,
        proto: header.u8::<9>(),
        src,
        dst,
        l4_offset: offset + header_len,
        fragment,
        fragment_offset,
        fragment_id: u32::from(header.be16::<4>()),
    })
}

#[inline(always)]
pub fn ipv6(packet: &Packet, offset: usize, frame_len: usize) -> Result<Ip, Reason> {
    let header = packet.get::<40>(offset).ok_or(Reason::BadIpv6)?;
    if header.u8::<0>() >> 4 != 6 {
        return Err(Reason::BadIpv6);
    }
    let payload_len = usize::from(header.be16::<4>());
    if offset + 40 + payload_len > frame_len {
        return Err(Reason::BadIpv6);
    }
    let mut ip = Ip {
        family: FAMILY_V6,
        proto: header.u8::<6>(),
        src: header.array::<8, 16>(),
        dst: header.array::<24, 16>(),
        l4_offset: offset + 40,
        fragment: FRAG_NONE,
        fragment_offset: 0,
        fragment_id: 0,
    };
    walk_ipv6_extensions(packet, &mut ip)?;
    Ok(ip)
}

/// Follows the extension header chain to the upper-layer protocol (H2). Known headers are
/// skipped, the fragment header is recorded, and unknown extension headers, routing type 0
/// (RFC 5095), a hop-by-hop header anywhere but first, or a chain longer than the bound drop.
#[inline(always)]
fn walk_ipv6_extensions(packet: &Packet, ip: &mut Ip) -> Result<(), Reason> {
    let mut next = ip.proto;
    let mut offset = ip.l4_offset;
    let mut index = 0;
    while index < MAX_IPV6_EXTENSION_HEADERS {
        match next {
            IPV6_HOP_BY_HOP | IPV6_DESTINATION_OPTIONS | IPV6_ROUTING | IPV6_AUTHENTICATION => {
                if next == IPV6_HOP_BY_HOP && index != 0 {
                    return Err(Reason::Ipv6ExtensionChain);
                }
                let header = packet.get::<4>(offset).ok_or(Reason::Ipv6ExtensionChain)?;
                if next == IPV6_ROUTING && header.u8::<2>() == 0 {
                    return Err(Reason::Ipv6RoutingType0);
                }
                // The authentication header counts its length in 4-byte units, less 2.
                let length = if next == IPV6_AUTHENTICATION {
                    (usize::from(header.u8::<1>()) + 2) * 4
                } else {
                    (usize::from(header.u8::<1>()) + 1) * 8
                };
                next = header.u8::<0>();
                offset += length;
            }
            IPV6_FRAGMENT => {
                let header = packet.get::<8>(offset).ok_or(Reason::Ipv6ExtensionChain)?;
                let offset_flags = header.be16::<2>();
                ip.fragment_offset = offset_flags >> 3;
                ip.fragment_id = header.be32::<4>();
                let more = offset_flags & 1 != 0;
                // An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946).
                ip.fragment = if ip.fragment_offset != 0 {
                    FRAG_LATER
                } else if more {
                    FRAG_FIRST
                } else {
                    FRAG_NONE
                };
                next = header.u8::<0>();
                offset += 8;
                if ip.fragment == FRAG_LATER {
                    // What follows is the middle of the payload, not more headers.
                    ip.proto = next;
                    ip.l4_offset = offset;
                    return Ok(());
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
        index += 1;
    }
    Err(Reason::Ipv6ExtensionChain)
}

/// Transport header fields, zero where the protocol has none.
pub struct L4 {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// ICMP echo identifier.
    pub echo_id: u16,
    /// Where the ICMP body (the quoted packet, for errors) starts.
    pub icmp_body_offset: usize,
}

impl L4 {
    pub const NONE: L4 = L4 {
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        icmp_type: 0,
        icmp_code: 0,
        echo_id: 0,
        icmp_body_offset: 0,
    };
}

/// Parses the transport header, which must be whole: a truncated header drops, and so does a
/// first fragment too short to hold it (H1, the tiny fragment attack).
#[inline(always)]
pub fn transport(packet: &Packet, ip: &Ip) -> Result<L4, Reason> {
    if ip.fragment == FRAG_LATER {
        return Ok(L4::NONE);
    }
    let short = if ip.fragment == FRAG_FIRST {
        Reason::TinyFirstFragment
    } else {
        Reason::TruncatedL4
    };
    let offset = ip.l4_offset;
    match ip.proto {
        PROTO_TCP => {
            let tcp = packet.get::<20>(offset).ok_or(short)?;
            if tcp.u8::<12>() >> 4 < 5 {
                return Err(Reason::TruncatedL4);
            }
            Ok(L4 {
                src_port: tcp.be16::<0>(),
                dst_port: tcp.be16::<2>(),
                tcp_flags: tcp.u8::<13>(),
                tcp_seq: tcp.be32::<4>(),
                tcp_ack: tcp.be32::<8>(),
                ..L4::NONE
            })
        }
        PROTO_UDP => {
            let udp = packet.get::<8>(offset).ok_or(short)?;
            Ok(L4 {
                src_port: udp.be16::<0>(),
                dst_port: udp.be16::<2>(),
                ..L4::NONE
            })
        }
        proto if is_own_icmp(ip.family, proto) => {
            let icmp = packet.get::<8>(offset).ok_or(short)?;
            Ok(L4 {
                icmp_type: icmp.u8::<0>(),
                icmp_code: icmp.u8::<1>(),
                echo_id: icmp.be16::<4>(),
                icmp_body_offset: offset + 8,
                ..L4::NONE
            })
        }
        _ => Ok(L4::NONE),
    }
}

/// The flow an ICMP error quotes, oriented as the quoted packet travelled.
pub struct Quoted {
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
}

/// Reads the header an ICMP error quotes (C7): the offending packet's IP header and the first
/// 8 bytes of its transport header. `None` when it is not there or not of the same family.
#[inline(always)]
pub fn quoted_flow(packet: &Packet, family: u8, offset: usize) -> Option<Quoted> {
    let (proto, src, dst, l4) = if family == FAMILY_V4 {
        let header = packet.get::<20>(offset)?;
        let header_len = usize::from(header.u8::<0>() & 0x0f) * 4;
        if header.u8::<0>() >> 4 != 4 || header_len < 20 {
            return None;
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&header.array::<12, 4>());
        dst[..4].copy_from_slice(&header.array::<16, 4>());
        (header.u8::<9>(), src, dst, offset + header_len)
    } else {
        let header = packet.get::<40>(offset)?;
        if header.u8::<0>() >> 4 != 6 {
            return None;
        }
        (
            header.u8::<6>(),
            header.array::<8, 16>(),
            header.array::<24, 16>(),
            offset + 40,
        )
    };
    let ports = packet.get::<8>(l4)?;
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP => (ports.be16::<0>(), ports.be16::<2>()),
        // A quoted echo request: the identifier keys the flow.
        PROTO_ICMP | PROTO_ICMPV6 => (ports.be16::<4>(), 0),
        _ => (0, 0),
    };
    Some(Quoted {
        proto,
        src,
        dst,
        src_port,
        dst_port,
    })
}
