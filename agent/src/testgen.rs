//! Random policies and packets for the property test (tier 1) and the differential test
//! against the real datapath (tier 2). Seeded and deterministic: a failing seed reproduces.
//!
//! Addresses, ports and ICMP types are drawn from small pools so that random rules and random
//! packets actually meet; otherwise nearly every packet would simply match nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::{
    eval::{Fragment, IpPacket, Transport},
    ids::{self, IdKind},
    model::{
        AclAction, AclEntry, AddressFamily, AttachMode, Config, Conntrack, DEFAULT_ACL_NAME,
        Direction, HostIngressHook, Instance, InterfaceMatch, Lab, MacAddr, Member, NetworkAcl,
        Peer, PortRange, PrefixList, PrefixListEntry, Protocol, Quotas, Rule, SecurityGroup,
        Subnet, Tags, Vpc, default_egress,
    },
};

/// xorshift64*: tiny, fast, and good enough to spread test cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

const PORTS: &[u16] = &[22, 53, 80, 443, 1000, 3306, 8080, 65535];
const ICMP_TYPES: &[u8] = &[0, 3, 8, 11, 128, 129, 1, 134, 137];
/// The MAC random instances may be given: the source MAC of the test frames, so port
/// security (I7) admits them and the EUI-64 link-local address (I5) is in play.
pub const TEST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The DHCP port pairs, both ways (I6, I7).
const DHCP_PORTS: &[(u16, u16)] = &[(68, 67), (67, 68), (546, 547), (547, 546)];
/// TCP sequence and acknowledgement numbers: 2 acknowledges a SYN-ACK numbered 1, 0 one
/// numbered `u32::MAX` (wrapping), and 0x1_0000 / 0x1_0001 sit on either side of the end of the
/// handshake window after 1.
const TCP_NUMBERS: &[u32] = &[1, 2, 0, u32::MAX, 0x1_0000, 0x1_0001];
/// Interface names the generator uses: the tier 2 harness creates these devices once.
pub const INTERFACES: &[&str] = &["sgw-r0", "sgw-r1", "sgw-r2"];

fn v4(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

fn v6(a: u16, b: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, a, b))
}

/// An address from the shared pool: instance-like, neighbourly, or far away.
pub fn random_address(rng: &mut Rng, ipv6: bool) -> IpAddr {
    match (ipv6, rng.below(3)) {
        (false, 0 | 1) => v4(rng.below(4) as u8, rng.below(6) as u8),
        (false, _) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, rng.below(4) as u8)),
        (true, 0 | 1) => v6(rng.below(4) as u16, rng.below(6) as u16),
        (true, _) => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            rng.below(4) as u16,
        )),
    }
}

fn random_cidr(rng: &mut Rng) -> IpNet {
    let ipv6 = rng.chance(35);
    random_cidr_of(rng, ipv6)
}

fn random_cidr_of(rng: &mut Rng, ipv6: bool) -> IpNet {
    let address = random_address(rng, ipv6);
    let max = if ipv6 { 128 } else { 32 };
    let prefix = match rng.below(5) {
        0 => 0,
        1 => max,
        _ => rng.below(max as usize + 1) as u8,
    };
    IpNet::new(address, prefix)
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(address))
}

fn random_ports(rng: &mut Rng, protocol: Protocol, network: bool) -> PortRange {
    match protocol {
        // The range network ACLs open for replies (N3).
        Protocol::Tcp | Protocol::Udp if network && rng.chance(10) => PortRange::Ports {
            from: 1024,
            to: 65535,
        },
        Protocol::Tcp | Protocol::Udp => {
            let a = *rng.pick(PORTS);
            if rng.chance(60) {
                PortRange::Ports { from: a, to: a }
            } else {
                let b = *rng.pick(PORTS);
                PortRange::Ports {
                    from: a.min(b),
                    to: a.max(b),
                }
            }
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            let icmp_type = rng.chance(70).then(|| *rng.pick(ICMP_TYPES));
            let code = icmp_type.and_then(|_| rng.chance(30).then(|| rng.below(4) as u8));
            PortRange::Icmp { icmp_type, code }
        }
        Protocol::All | Protocol::Number(_) => PortRange::Any,
    }
}

const PROTOCOLS: &[Protocol] = &[
    Protocol::Tcp,
    Protocol::Tcp,
    Protocol::Udp,
    Protocol::Icmp,
    Protocol::Icmpv6,
    Protocol::All,
    Protocol::Number(47),
];

fn random_rules(
    rng: &mut Rng,
    groups: &[String],
    prefix_lists: &[PrefixList],
    network: bool,
) -> Vec<Rule> {
    let count = rng.below(5);
    (0..count)
        .map(|index| {
            let protocol = *rng.pick(PROTOCOLS);
            let peers = (0..1 + rng.below(2))
                .map(|_| {
                    if !network {
                        return if rng.chance(30) {
                            Peer::Group(rng.pick(groups).clone())
                        } else {
                            Peer::Cidr(random_cidr(rng))
                        };
                    }
                    match rng.below(10) {
                        0..=2 => Peer::Group(rng.pick(groups).clone()),
                        3 | 4 if !prefix_lists.is_empty() => {
                            Peer::PrefixList(rng.pick(prefix_lists).name.clone())
                        }
                        _ => Peer::Cidr(random_cidr(rng)),
                    }
                })
                .collect();
            Rule {
                protocol,
                ports: random_ports(rng, protocol, network),
                peers,
                description: format!("random rule {index}"),
                ids: Vec::new(),
                tags: Tags::new(),
            }
        })
        .collect()
}

fn random_groups_of(rng: &mut Rng, groups: &[String]) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let group = rng.pick(groups).clone();
        if !chosen.contains(&group) {
            chosen.push(group);
        }
    }
    chosen
}

/// Up to two prefix lists of a random family, with up to three entries each (P1).
fn random_prefix_lists(rng: &mut Rng) -> Vec<PrefixList> {
    (0..rng.below(3))
        .map(|index| {
            let ipv6 = rng.chance(35);
            let mut entries: Vec<PrefixListEntry> = Vec::new();
            for _ in 0..rng.below(4) {
                let cidr = random_cidr_of(rng, ipv6);
                if entries.iter().all(|entry| entry.cidr != cidr) {
                    entries.push(PrefixListEntry {
                        cidr,
                        description: String::new(),
                    });
                }
            }
            PrefixList {
                name: format!("pl{index}"),
                id: format!("pl-0000000{index}"),
                family: if ipv6 {
                    AddressFamily::V6
                } else {
                    AddressFamily::V4
                },
                max_entries: (entries.len() + rng.below(3)).max(1) as u32,
                entries,
            }
        })
        .collect()
}

/// Up to six numbered entries of random action, service and CIDR (N2).
fn random_acl_entries(rng: &mut Rng) -> Vec<AclEntry> {
    let mut entries: Vec<AclEntry> = Vec::new();
    for _ in 0..rng.below(7) {
        let number = 1 + rng.below(200) as u16;
        if entries.iter().any(|entry| entry.number == number) {
            continue;
        }
        let protocol = *rng.pick(PROTOCOLS);
        entries.push(AclEntry {
            number,
            action: if rng.chance(60) {
                AclAction::Allow
            } else {
                AclAction::Deny
            },
            protocol,
            ports: random_ports(rng, protocol, true),
            cidr: random_cidr(rng),
        });
    }
    entries.sort_by_key(|entry| entry.number);
    entries
}

/// Subnets `10.0.A.0/24` (with `fd00::A:0/112` most of the time) for some of the four pools
/// instances draw addresses from, each with a random ACL or the default one (N1).
fn random_subnets(rng: &mut Rng) -> (Vec<Subnet>, Vec<NetworkAcl>) {
    let mut acls: Vec<NetworkAcl> = (0..1 + rng.below(3))
        .map(|index| NetworkAcl {
            name: format!("acl{index}"),
            id: format!("acl-0000000{index}"),
            is_default: false,
            ingress: random_acl_entries(rng),
            egress: random_acl_entries(rng),
        })
        .collect();
    let mut subnets = Vec::new();
    for pool in 0..4u16 {
        if !rng.chance(60) {
            continue;
        }
        let mut cidrs =
            vec![IpNet::new(v4(pool as u8, 0), 24).unwrap_or_else(|_| IpNet::from(v4(0, 0)))];
        if rng.chance(70) {
            cidrs.push(IpNet::new(v6(pool, 0), 112).unwrap_or_else(|_| IpNet::from(v6(0, 0))));
        }
        let network_acl = if rng.chance(20) {
            DEFAULT_ACL_NAME.to_string()
        } else {
            rng.pick(&acls).name.clone()
        };
        subnets.push(Subnet {
            name: format!("s{pool}"),
            cidrs,
            network_acl,
        });
    }
    if subnets.iter().any(|s| s.network_acl == DEFAULT_ACL_NAME) {
        acls.push(NetworkAcl {
            name: DEFAULT_ACL_NAME.to_string(),
            id: "acl-0000000d".to_string(),
            is_default: true,
            ingress: NetworkAcl::default_entries(),
            egress: NetworkAcl::default_entries(),
        });
    }
    (subnets, acls)
}

/// A random policy over up to three instances (interfaces [`INTERFACES`]), with prefix lists
/// and subnets under network ACLs.
pub fn random_config(rng: &mut Rng) -> Config {
    random_config_of(rng, true)
}

/// [`random_config`] without prefix lists, subnets and network ACLs, drawing what it draws in
/// the order it did before they existed: the fuzzer's kept cases name a seed, which must give
/// the config the case was found with.
pub fn random_groups_config(rng: &mut Rng) -> Config {
    random_config_of(rng, false)
}

fn random_config_of(rng: &mut Rng, network: bool) -> Config {
    let group_names: Vec<String> = (0..1 + rng.below(4)).map(|i| format!("g{i}")).collect();
    let prefix_lists = if network {
        random_prefix_lists(rng)
    } else {
        Vec::new()
    };
    let security_groups = group_names
        .iter()
        .map(|name| {
            let egress_is_default = rng.chance(40);
            let id = ids::derived(IdKind::SecurityGroup, name);
            SecurityGroup {
                name: name.clone(),
                description: String::new(),
                tags: Tags::new(),
                ingress: random_rules(rng, &group_names, &prefix_lists, network),
                egress: if egress_is_default {
                    default_egress(&id)
                } else {
                    random_rules(rng, &group_names, &prefix_lists, network)
                },
                egress_is_default,
                id,
            }
        })
        .collect();
    let (subnets, network_acls) = if network {
        random_subnets(rng)
    } else {
        (Vec::new(), Vec::new())
    };

    let mut used: Vec<IpAddr> = Vec::new();
    // Both addresses of an instance come from one pool, so it is in one subnet at most (N1);
    // without subnets each address draws its own pool.
    let mut fresh_address = |rng: &mut Rng, ipv6: bool, pool: Option<usize>| loop {
        let pool = pool.unwrap_or_else(|| rng.below(4));
        let address = if ipv6 {
            v6(pool as u16, rng.below(6) as u16)
        } else {
            v4(pool as u8, rng.below(6) as u8)
        };
        if !used.contains(&address) {
            used.push(address);
            return address;
        }
    };
    let instances = (0..1 + rng.below(INTERFACES.len()))
        .map(|index| {
            let pool = network.then(|| rng.below(4));
            let mut addresses = vec![fresh_address(rng, false, pool)];
            if rng.chance(60) {
                addresses.push(fresh_address(rng, true, pool));
            }
            Instance {
                name: format!("i{index}"),
                id: ids::derived(IdKind::NetworkInterface, &format!("i{index}")),
                tags: Tags::new(),
                interface: INTERFACES[index].to_string(),
                attach: AttachMode::Port,
                host_ingress_hook: HostIngressHook::Xdp,
                addresses,
                security_groups: random_groups_of(rng, &group_names),
                interface_match: InterfaceMatch::Name,
                mac: rng.chance(50).then_some(TEST_MAC),
                dhcp: rng.chance(60),
                source_dest_check: rng.chance(80),
                related_icmp: rng.chance(30),
                exempt: Vec::new(),
                conntrack: Conntrack::default(),
            }
        })
        .collect();
    let members = (0..rng.below(4))
        .map(|index| {
            let ipv6 = rng.chance(30);
            let pool = network.then(|| rng.below(4));
            Member {
                name: format!("m{index}"),
                addresses: vec![fresh_address(rng, ipv6, pool)],
                security_groups: random_groups_of(rng, &group_names),
            }
        })
        .collect();
    Config {
        security_groups,
        instances,
        members,
        quotas: Quotas::default(),
        lab: Lab::default(),
        prefix_lists,
        subnets,
        network_acls,
        vpc: Vpc::default(),
    }
}

/// A random first packet for one of the config's instances: (instance, direction, packet).
/// The local address is usually one of the instance's own, so the source/destination check
/// lets most packets through to the rules.
pub fn random_packet(rng: &mut Rng, config: &Config) -> (String, Direction, IpPacket) {
    let instance = rng.pick(&config.instances);
    let direction = *rng.pick(&Direction::BOTH);
    let own = instance.own_addresses();
    let mut local = if rng.chance(90) {
        *rng.pick(&own)
    } else {
        let ipv6 = rng.chance(30);
        random_address(rng, ipv6)
    };
    let mut remote = random_address(rng, local.is_ipv6());
    let transport = match rng.below(7) {
        // DHCP, with the addresses a client without one uses half the time (IPv4).
        6 => {
            let (src_port, dst_port) = *rng.pick(DHCP_PORTS);
            if local.is_ipv4() && rng.chance(50) {
                let (unspecified, broadcast) = (
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V4(Ipv4Addr::BROADCAST),
                );
                (local, remote) = match (direction, rng.below(3)) {
                    (Direction::Egress, 0) => (unspecified, broadcast),
                    (Direction::Egress, 1) => (unspecified, remote),
                    (Direction::Ingress, 0) => (broadcast, remote),
                    _ => (local, broadcast),
                };
            }
            Transport::Udp { src_port, dst_port }
        }
        0 | 1 => Transport::Tcp {
            src_port: 1024 + rng.below(60000) as u16,
            dst_port: *rng.pick(PORTS),
            // SYN, SYN-ACK, ACK, FIN-ACK, RST: only the first starts a tracked flow.
            flags: *rng.pick(&[0x02, 0x02, 0x12, 0x10, 0x11, 0x04]),
            // Few distinct numbers, so that ACKs often complete (and sometimes miss) the
            // handshake of a half-open flow.
            seq: *rng.pick(TCP_NUMBERS),
            ack: *rng.pick(TCP_NUMBERS),
        },
        2 => Transport::Udp {
            src_port: 1024 + rng.below(60000) as u16,
            dst_port: *rng.pick(PORTS),
        },
        3 | 4 => Transport::Icmp {
            icmp_type: *rng.pick(ICMP_TYPES),
            code: rng.below(4) as u8,
            echo_id: rng.below(65536) as u16,
            quoted: None,
        },
        // 253 is an experimental extension header in IPv6 (H2) and a plain protocol in IPv4.
        _ => Transport::Other(*rng.pick(&[47u8, 50, 132, 253])),
    };
    let (src, dst) = match direction {
        Direction::Ingress => (remote, local),
        Direction::Egress => (local, remote),
    };
    (
        instance.name.clone(),
        direction,
        IpPacket {
            src,
            dst,
            transport,
            fragment: Fragment::Whole,
        },
    )
}

/// The packets a random conversation has sent so far, so that later packets can continue or
/// answer them: without that, random packets almost never meet a tracked flow, and conntrack
/// (replies, handshakes, closing) would go untested.
#[derive(Default)]
pub struct Conversations {
    recent: Vec<(String, Direction, IpPacket)>,
}

impl Conversations {
    /// How many recent packets later ones may continue or answer.
    const KEPT: usize = 16;

    /// A random packet: half the time a new one ([`random_packet`]), otherwise the next packet
    /// of a recent flow, in either direction, with fresh TCP flags and numbers or a fresh ICMP
    /// type.
    pub fn next(&mut self, rng: &mut Rng, config: &Config) -> (String, Direction, IpPacket) {
        let packet = if self.recent.is_empty() || rng.chance(50) {
            random_packet(rng, config)
        } else {
            let (instance, direction, previous) = rng.pick(&self.recent).clone();
            if rng.chance(50) {
                (instance, direction, refresh(rng, previous))
            } else {
                (
                    instance,
                    direction.reverse(),
                    refresh(rng, answer(&previous)),
                )
            }
        };
        if self.recent.len() == Self::KEPT {
            self.recent.remove(0);
        }
        self.recent.push(packet.clone());
        packet
    }
}

/// The packet the other side of `packet`'s flow sends.
fn answer(packet: &IpPacket) -> IpPacket {
    let transport = match packet.transport {
        Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
        } => Transport::Tcp {
            src_port: dst_port,
            dst_port: src_port,
            flags,
            seq,
            ack,
        },
        Transport::Udp { src_port, dst_port } => Transport::Udp {
            src_port: dst_port,
            dst_port: src_port,
        },
        other => other,
    };
    IpPacket {
        src: packet.dst,
        dst: packet.src,
        transport,
        fragment: packet.fragment,
    }
}

/// The same flow with the parts that change from packet to packet drawn afresh.
fn refresh(rng: &mut Rng, mut packet: IpPacket) -> IpPacket {
    match &mut packet.transport {
        Transport::Tcp {
            flags, seq, ack, ..
        } => {
            // SYN, SYN-ACK, ACK, data, FIN-ACK, RST.
            *flags = *rng.pick(&[0x02, 0x12, 0x10, 0x10, 0x18, 0x11, 0x04]);
            *seq = *rng.pick(TCP_NUMBERS);
            *ack = *rng.pick(TCP_NUMBERS);
        }
        Transport::Icmp { icmp_type, .. } => *icmp_type = *rng.pick(ICMP_TYPES),
        _ => {}
    }
    packet
}
