//! Hand-built frames for BPF_PROG_TEST_RUN: Ethernet (optionally 802.1Q), ARP, IPv4 with
//! options and fragments, IPv6 with extension headers, TCP, UDP, ICMP, ICMPv6 and raw protocols.
//! Checksums are filled in because a real stack would drop frames without them, even though the
//! datapath does not check them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
    IPV6_DESTINATION_OPTIONS, IPV6_FRAGMENT, IPV6_HOP_BY_HOP, IPV6_ROUTING,
};
pub use filter_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;

pub const TCP_PSH: u8 = 0x08;

/// The source MAC of every built frame: the one `testgen` may give instances (I7).
pub const SRC_MAC: [u8; 6] = sgwall::testgen::TEST_MAC.0;
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// The transport part of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// ICMP or ICMPv6 (chosen by the address family): type, code, the 4 bytes after the
    /// checksum (identifier and sequence for echo), and the body.
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        body: Vec<u8>,
    },
    /// Any other protocol number, with an opaque payload.
    Raw { proto: u8, payload: Vec<u8> },
}

impl L4 {
    /// A TCP segment with the evaluator's default numbers (`sgwall::eval::Transport::tcp`):
    /// a segment carrying an ACK acknowledges the other side's SYN.
    pub fn tcp(sport: u16, dport: u16, flags: u8) -> Self {
        let (seq, ack) = sgwall::eval::default_tcp_numbers(flags);
        Self::tcp_numbered(sport, dport, flags, seq, ack)
    }

    /// A TCP segment with explicit sequence and acknowledgement numbers.
    pub fn tcp_numbered(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Self {
        L4::Tcp {
            sport,
            dport,
            flags,
            seq,
            ack,
        }
    }

    pub fn udp(sport: u16, dport: u16) -> Self {
        L4::Udp {
            sport,
            dport,
            payload: b"sgwall".to_vec(),
        }
    }

    pub fn echo_request(v6: bool, id: u16, seq: u16) -> Self {
        let mut rest = [0; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        L4::Icmp {
            ty: if v6 {
                ICMPV6_ECHO_REQUEST
            } else {
                ICMP_ECHO_REQUEST
            },
            code: 0,
            rest,
            body: b"ping".to_vec(),
        }
    }

    pub fn echo_reply(v6: bool, id: u16, seq: u16) -> Self {
        match Self::echo_request(v6, id, seq) {
            L4::Icmp { rest, body, .. } => L4::Icmp {
                ty: if v6 {
                    ICMPV6_ECHO_REPLY
                } else {
                    ICMP_ECHO_REPLY
                },
                code: 0,
                rest,
                body,
            },
            other => other,
        }
    }

    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => {
                if v6 {
                    58
                } else {
                    1
                }
            }
            L4::Raw { proto, .. } => *proto,
        }
    }
}

/// An IPv6 extension header to put in front of the transport header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    DestinationOptions,
    /// Routing header of the given type, with no addresses.
    Routing(u8),
    /// Any next-header value, with an 8-byte body in the generic (length-prefixed) format.
    Other(u8),
}

impl Ext {
    fn number(&self) -> u8 {
        match self {
            Ext::HopByHop => IPV6_HOP_BY_HOP,
            Ext::DestinationOptions => IPV6_DESTINATION_OPTIONS,
            Ext::Routing(_) => IPV6_ROUTING,
            Ext::Other(n) => *n,
        }
    }
}

/// Fragment placement of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    /// In 8-byte units.
    pub offset: u16,
    pub more: bool,
}

#[derive(Clone, Debug)]
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub vlan: Option<u16>,
    /// IPv4 only: raw option bytes (padded to a multiple of 4).
    pub ipv4_options: Vec<u8>,
    /// IPv6 only: extension headers in order.
    pub ipv6_ext: Vec<Ext>,
    pub fragment: Option<Fragment>,
    /// Keep only this many bytes of the L4 part (for truncation and tiny-fragment cases).
    pub l4_truncate: Option<usize>,
}

impl IpPacket {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Self {
            src,
            dst,
            l4,
            vlan: None,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            fragment: None,
            l4_truncate: None,
        }
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }

    pub fn ext(mut self, ext: Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    pub fn fragment(mut self, id: u32, offset: u16, more: bool) -> Self {
        self.fragment = Some(Fragment { id, offset, more });
        self
    }

    pub fn truncate_l4(mut self, len: usize) -> Self {
        self.l4_truncate = Some(len);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let v6 = self.src.is_ipv6();
        let mut l4 = l4_bytes(&self.l4, self.src, self.dst);
        if let Some(len) = self.l4_truncate {
            l4.truncate(len);
        }
        let proto = self.l4.proto(v6);
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                ipv4(src, dst, proto, &self.ipv4_options, self.fragment, &l4)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                ipv6(src, dst, proto, &self.ipv6_ext, self.fragment, &l4)
            }
            _ => panic!("source and destination families differ"),
        };
        ethernet(self.vlan, if v6 { ETH_P_IPV6 } else { ETH_P_IPV4 }, &ip)
    }
}

pub fn ethernet(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(18 + payload.len());
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    if let Some(id) = vlan {
        frame.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        frame.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The same frame sent from another MAC (port security, I7).
pub fn from_mac(frame: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let mut frame = frame.to_vec();
    frame[6..12].copy_from_slice(&mac);
    frame
}

/// An ARP request or reply (`op` 1 or 2) claiming `sender_ip`.
pub fn arp(op: u16, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut body = Vec::with_capacity(28);
    body.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    body.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    body.push(6);
    body.push(4);
    body.extend_from_slice(&op.to_be_bytes());
    body.extend_from_slice(&SRC_MAC);
    body.extend_from_slice(&sender_ip.octets());
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&target_ip.octets());
    ethernet(None, ETH_P_ARP, &body)
}

fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    fragment: Option<Fragment>,
    payload: &[u8],
) -> Vec<u8> {
    let mut options = options.to_vec();
    while !options.len().is_multiple_of(4) {
        options.push(0);
    }
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut header = vec![0u8; header_len];
    header[0] = 0x40 | (header_len / 4) as u8;
    header[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let (id, flags_offset) = match fragment {
        Some(f) => (f.id as u16, (u16::from(f.more) << 13) | (f.offset & 0x1fff)),
        None => (0x1234, 0x4000), // DF
    };
    header[4..6].copy_from_slice(&id.to_be_bytes());
    header[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    header[8] = 64;
    header[9] = proto;
    header[12..16].copy_from_slice(&src.octets());
    header[16..20].copy_from_slice(&dst.octets());
    header[20..].copy_from_slice(&options);
    let checksum = checksum(&header);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    ext: &[Ext],
    fragment: Option<Fragment>,
    payload: &[u8],
) -> Vec<u8> {
    // The chain: extension headers, then the fragment header if any, then the payload.
    let mut numbers: Vec<u8> = ext.iter().map(Ext::number).collect();
    if fragment.is_some() {
        numbers.push(IPV6_FRAGMENT);
    }
    numbers.push(proto);

    let mut chain = Vec::new();
    for (index, header) in ext.iter().enumerate() {
        let next = numbers[index + 1];
        match header {
            Ext::Routing(routing_type) => {
                chain.extend_from_slice(&[next, 0, *routing_type, 0, 0, 0, 0, 0]);
            }
            _ => chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]), // PadN option
        }
    }
    if let Some(f) = fragment {
        chain.push(proto);
        chain.push(0);
        let offset_flags = (f.offset << 3) | u16::from(f.more);
        chain.extend_from_slice(&offset_flags.to_be_bytes());
        chain.extend_from_slice(&f.id.to_be_bytes());
    }
    chain.extend_from_slice(payload);

    let mut packet = vec![0u8; 40];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(chain.len() as u16).to_be_bytes());
    packet[6] = numbers[0];
    packet[7] = 64;
    packet[8..24].copy_from_slice(&src.octets());
    packet[24..40].copy_from_slice(&dst.octets());
    packet.extend_from_slice(&chain);
    packet
}

fn l4_bytes(l4: &L4, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let mut bytes = match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            seq,
            ack,
        } => {
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&sport.to_be_bytes());
            tcp[2..4].copy_from_slice(&dport.to_be_bytes());
            tcp[4..8].copy_from_slice(&seq.to_be_bytes());
            tcp[8..12].copy_from_slice(&ack.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = *flags;
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            tcp
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut udp = vec![0u8; 8];
            udp[0..2].copy_from_slice(&sport.to_be_bytes());
            udp[2..4].copy_from_slice(&dport.to_be_bytes());
            udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            udp.extend_from_slice(payload);
            udp
        }
        L4::Icmp {
            ty,
            code,
            rest,
            body,
        } => {
            let mut icmp = vec![*ty, *code, 0, 0];
            icmp.extend_from_slice(rest);
            icmp.extend_from_slice(body);
            icmp
        }
        L4::Raw { payload, .. } => payload.clone(),
    };
    let checksum_at = match l4 {
        L4::Tcp { .. } => Some(16),
        L4::Udp { .. } => Some(6),
        L4::Icmp { .. } => Some(2),
        L4::Raw { .. } => None,
    };
    if let Some(at) = checksum_at {
        let proto = l4.proto(v6);
        let sum = if matches!(l4, L4::Icmp { .. }) && !v6 {
            checksum(&bytes)
        } else {
            let mut pseudo = Vec::new();
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&[0, proto]);
                    pseudo.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    pseudo.extend_from_slice(&[0, 0, 0, proto]);
                }
                _ => {}
            }
            pseudo.extend_from_slice(&bytes);
            checksum(&pseudo)
        };
        bytes[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    bytes
}

/// An ICMP error (`ty`/`code`) quoting `quoted`, the IP packet (without Ethernet) it is about.
pub fn icmp_error(v6: bool, ty: u8, code: u8, quoted_ip: &[u8]) -> L4 {
    let keep = quoted_ip.len().min(if v6 { 40 + 8 } else { 20 + 8 });
    L4::Icmp {
        ty,
        code,
        rest: [0; 4],
        body: quoted_ip[..keep].to_vec(),
    }
}

/// The IP part of a frame built by [`IpPacket::build`] (drops the Ethernet header).
pub fn strip_ethernet(frame: &[u8]) -> &[u8] {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == ETH_P_8021Q {
        &frame[18..]
    } else {
        &frame[14..]
    }
}

pub fn checksum(data: &[u8]) -> u16 {
    sgwall::probe::internet_checksum(data)
}

pub fn v4(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad address {text}: {e}"))
}

/// The frame for a packet as the reference evaluator describes it (for differential tests).
pub fn from_eval(packet: &sgwall::eval::IpPacket) -> Vec<u8> {
    use sgwall::eval::{Fragment as EvalFragment, Transport};
    let l4 = match packet.transport {
        Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
        } => L4::tcp_numbered(src_port, dst_port, flags, seq, ack),
        Transport::Udp { src_port, dst_port } => L4::udp(src_port, dst_port),
        Transport::Icmp {
            icmp_type,
            code,
            echo_id,
            ..
        } => {
            let mut rest = [0u8; 4];
            rest[..2].copy_from_slice(&echo_id.to_be_bytes());
            rest[2..].copy_from_slice(&1u16.to_be_bytes());
            L4::Icmp {
                ty: icmp_type,
                code,
                rest,
                body: b"probe".to_vec(),
            }
        }
        Transport::Other(proto) => L4::Raw {
            proto,
            payload: vec![0u8; 16],
        },
    };
    let mut built = IpPacket::new(packet.src, packet.dst, l4);
    match packet.fragment {
        EvalFragment::Whole => {}
        EvalFragment::First { id } => built = built.fragment(id, 0, true),
        EvalFragment::Later { id, offset } => built = built.fragment(id, offset, false),
    }
    built.build()
}
