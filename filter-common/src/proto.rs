//! Protocol numbers, IPv6 next-header values, ICMP types and TCP flags, and the pure
//! classifications of them that the datapath's parser and the reference evaluator share.

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

// IPv6 next-header values of extension headers (RFC 8200 and the IANA registry).
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_AUTHENTICATION: u8 = 51;
pub const IPV6_DESTINATION_OPTIONS: u8 = 60;
pub const IPV6_MOBILITY: u8 = 135;
pub const IPV6_HIP: u8 = 139;
pub const IPV6_SHIM6: u8 = 140;
pub const IPV6_EXPERIMENT_1: u8 = 253;
pub const IPV6_EXPERIMENT_2: u8 = 254;

/// Extension headers whose length we cannot know, so nothing after them can be found (H2). The
/// same numbers in IPv4 are ordinary protocols.
#[inline(always)]
pub const fn is_ipv6_unwalkable_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        IPV6_MOBILITY | IPV6_HIP | IPV6_SHIM6 | IPV6_EXPERIMENT_1 | IPV6_EXPERIMENT_2
    )
}

/// Every value [`is_ipv6_unwalkable_extension`] accepts, for tests that try each.
pub const IPV6_UNWALKABLE_EXTENSIONS: [u8; 5] = [
    IPV6_MOBILITY,
    IPV6_HIP,
    IPV6_SHIM6,
    IPV6_EXPERIMENT_1,
    IPV6_EXPERIMENT_2,
];

const _: () = {
    let mut index = 0;
    while index < IPV6_UNWALKABLE_EXTENSIONS.len() {
        assert!(is_ipv6_unwalkable_extension(
            IPV6_UNWALKABLE_EXTENSIONS[index]
        ));
        index += 1;
    }
};

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
pub const ICMP_TIMESTAMP: u8 = 13;
/// Code of [`ICMP_DEST_UNREACHABLE`]: fragmentation needed (path MTU discovery).
pub const ICMP_FRAGMENTATION_NEEDED: u8 = 4;

pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ICMPV6_MLD_QUERY: u8 = 130;
pub const ICMPV6_MLD_REPORT: u8 = 131;
pub const ICMPV6_MLD_DONE: u8 = 132;
pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub const ICMPV6_REDIRECT: u8 = 137;
pub const ICMPV6_MLD2_REPORT: u8 = 143;

pub const DHCPV4_SERVER_PORT: u16 = 67;
pub const DHCPV4_CLIENT_PORT: u16 = 68;
pub const DHCPV6_CLIENT_PORT: u16 = 546;
pub const DHCPV6_SERVER_PORT: u16 = 547;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// ICMP of the packet's own family: ICMP in IPv4, ICMPv6 in IPv6. The other family's number
/// is a protocol like any other there (no types, no echo, no errors), as the stacks treat it.
pub const fn is_own_icmp(family: u8, proto: u8) -> bool {
    (family == crate::FAMILY_V4 && proto == PROTO_ICMP)
        || (family == crate::FAMILY_V6 && proto == PROTO_ICMPV6)
}

/// True for ICMP echo requests and replies, the only ICMP messages tracked as flows (C3).
pub fn is_icmp_echo(proto: u8, icmp_type: u8) -> bool {
    matches!(
        (proto, icmp_type),
        (PROTO_ICMP, ICMP_ECHO_REPLY | ICMP_ECHO_REQUEST)
            | (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY)
    )
}

pub fn is_icmp_echo_request(proto: u8, icmp_type: u8) -> bool {
    matches!(
        (proto, icmp_type),
        (PROTO_ICMP, ICMP_ECHO_REQUEST) | (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST)
    )
}

/// ICMP error messages that embed the offending packet's header (C7).
pub fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    matches!(
        (proto, icmp_type),
        (
            PROTO_ICMP,
            ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
        ) | (
            PROTO_ICMPV6,
            ICMPV6_DEST_UNREACHABLE
                | ICMPV6_PACKET_TOO_BIG
                | ICMPV6_TIME_EXCEEDED
                | ICMPV6_PARAMETER_PROBLEM
        )
    )
}

/// IPv6 neighbour discovery, router solicitation/advertisement and multicast listener messages:
/// needed for the link to work and not subject to group rules (I2).
pub fn is_icmpv6_link_control(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMPV6_MLD_QUERY
            | ICMPV6_MLD_REPORT
            | ICMPV6_MLD_DONE
            | ICMPV6_ROUTER_SOLICITATION
            | ICMPV6_ROUTER_ADVERTISEMENT
            | ICMPV6_NEIGHBOR_SOLICITATION
            | ICMPV6_NEIGHBOR_ADVERTISEMENT
            | ICMPV6_MLD2_REPORT
    )
}

/// The flow an ICMP error quotes, oriented to the interface, as `(local address, remote address,
/// local port, remote port)` (C7). The quoted packet travelled the other way from the error: an
/// error coming in (`error_inbound`) is about a packet the instance sent, and vice versa. For a
/// quoted echo the identifier is the local port, as in the echo's own flow.
#[inline(always)]
pub fn quoted_flow_orientation<A>(
    error_inbound: bool,
    quoted_proto: u8,
    quoted_src: A,
    quoted_dst: A,
    quoted_src_port: u16,
    quoted_dst_port: u16,
) -> (A, A, u16, u16) {
    let sent_by_instance = error_inbound;
    let is_echo = quoted_proto == PROTO_ICMP || quoted_proto == PROTO_ICMPV6;
    let (local, remote) = if sent_by_instance {
        (quoted_src, quoted_dst)
    } else {
        (quoted_dst, quoted_src)
    };
    let (local_port, remote_port) = if is_echo {
        (quoted_src_port, 0)
    } else if sent_by_instance {
        (quoted_src_port, quoted_dst_port)
    } else {
        (quoted_dst_port, quoted_src_port)
    };
    (local, remote, local_port, remote_port)
}

/// What a UDP datagram is to DHCP, by its ports alone (I6, I7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpPorts {
    /// Client to server: UDP 68 -> 67, or 546 -> 547.
    Client,
    /// Server to client: UDP 67 -> 68, or 547 -> 546.
    Server,
    Neither,
}

/// Classifies a UDP datagram of address family `v6` by its ports.
#[inline(always)]
pub const fn dhcp_ports(v6: bool, src_port: u16, dst_port: u16) -> DhcpPorts {
    let (client, server) = if v6 {
        (DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT)
    } else {
        (DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT)
    };
    if src_port == client && dst_port == server {
        DhcpPorts::Client
    } else if src_port == server && dst_port == client {
        DhcpPorts::Server
    } else {
        DhcpPorts::Neither
    }
}

/// The IPv6 link-local address a MAC gives by modified EUI-64 (RFC 4291 appendix A), the one
/// a guest's kernel configures by default (I5).
#[inline(always)]
pub const fn eui64_link_local(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// Router advertisements and ICMPv6 redirects: what only the network's router may send (I7).
pub fn is_icmpv6_router_message(icmp_type: u8) -> bool {
    matches!(icmp_type, ICMPV6_ROUTER_ADVERTISEMENT | ICMPV6_REDIRECT)
}
