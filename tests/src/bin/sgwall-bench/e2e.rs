//! End to end through a veth pair between two namespaces: the same policy enforced by nothing,
//! by sgwall (XDP or TC ingress, TC egress), by nftables and by iptables + ipset, each on the
//! server's side of the link. Candidates alternate within every round; before each
//! measurement all connection state is emptied (sgwall's tables as its agent's sweeper would
//! after the flows ended, netfilter's with `conntrack -F`).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::links::FdLink,
};
use filter_common::{CtEntry, CtKey, map_names, program_names};
use serde::Serialize;
use sgwall::{
    compile,
    datapath::{
        attach::{XdpAttachMode, attach},
        loader::{Datapath, LoadOptions},
    },
    maps::{Applied, Capacities, apply_full},
    model::Hook,
    netns,
};
use sgwall_tests::{
    NetNs, VethPair,
    packet::{IpPacket, L4},
};

use crate::{
    Mode,
    peers::{IptablesRules, NftTable, flush_conntrack, ns_run},
    policy::{self, Instance, Member, Peer, Policy, Proto, Rule},
    stats::Summary,
    traffic::{self, Blaster, UdpCounters},
};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const IPERF_PORT: u16 = 5201;
pub const UDP_PORT: u16 = 9000;
const CONN_PORT: u16 = 8080;
const DENIED_PORT: u16 = 9999;
const FILLER_RULES: usize = 50;
const CLIENT_GROUP_MEMBERS: usize = 1_000;
const NFT_TABLE: &str = "sgwbench";

/// Two namespaces joined by a veth pair; the server end is where filters go.
pub struct Topology {
    pub client: NetNs,
    pub server: NetNs,
    pub link: VethPair,
    pub client_mac: [u8; 6],
    pub server_mac: [u8; 6],
    pub server_ifindex: u32,
}

fn mac_of(ns: &NetNs, interface: &str) -> Result<[u8; 6]> {
    let out = ns_run(
        ns.name(),
        &["ip", "-o", "link", "show", "dev", interface],
        None,
    )?;
    let text = out
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no link/ether address")?;
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

impl Topology {
    pub fn new() -> Result<Self> {
        let client = NetNs::new();
        let server = NetNs::new();
        let link = VethPair::new(
            &client,
            &[&format!("{CLIENT}/24")],
            &server,
            &[&format!("{SERVER}/24")],
        );
        // Every client port, so a connection-rate run never waits for a free one.
        ns_run(
            client.name(),
            &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"],
            None,
        )?;
        // Probes come from member addresses the server has no route back to.
        for key in ["all", "default", link.right.as_str()] {
            ns_run(
                server.name(),
                &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
                None,
            )?;
        }
        let client_mac = mac_of(&client, &link.left)?;
        let server_mac = mac_of(&server, &link.right)?;
        let server_ifindex = server.ifindex(&link.right);
        Ok(Self {
            client,
            server,
            link,
            client_mac,
            server_mac,
            server_ifindex,
        })
    }

    /// An Ethernet frame from the client's MAC to the server's.
    pub fn frame(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Vec<u8> {
        let mut frame = IpPacket::new(IpAddr::V4(src), IpAddr::V4(dst), l4).build();
        frame[0..6].copy_from_slice(&self.server_mac);
        frame[6..12].copy_from_slice(&self.client_mac);
        frame
    }

    /// Attaches the datapath on the server end: `ingress` (XDP or TC ingress) and TC egress.
    pub fn attach_sgwall(&self, datapath: &mut Datapath, ingress: Hook) -> Result<Vec<FdLink>> {
        let interface = self.link.right.clone();
        let mut links = Vec::new();
        // Attachment resolves the interface name in the calling thread's namespace.
        let path = netns::path_of(self.server.name());
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<()> {
                    netns::enter(&path)?;
                    for hook in [ingress, Hook::TcEgress] {
                        links.push(attach(
                            &mut datapath.ebpf,
                            &interface,
                            hook,
                            XdpAttachMode::Native,
                        )?);
                    }
                    Ok(())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
        })?;
        Ok(links)
    }
}

/// The end-to-end policy: 50 CIDR rules that the benchmark traffic never matches come first,
/// then the rules it does match (so a filter that walks rules in order pays for all of them on a
/// new flow, as it would in a real policy with the interesting rule anywhere but first).
pub fn e2e_policy(interface: &str, hook: &'static str) -> Policy {
    let mut rules: Vec<Rule> = (0..FILLER_RULES).map(policy::filler_rule).collect();
    rules.push(Rule {
        proto: Proto::Tcp,
        ports: (IPERF_PORT, IPERF_PORT),
        peer: Peer::Cidr(Ipv4Addr::new(10, 77, 0, 0), 24),
    });
    for (proto, port) in [(Proto::Udp, UDP_PORT), (Proto::Tcp, CONN_PORT)] {
        rules.push(Rule {
            proto,
            ports: (port, port),
            peer: Peer::Group("clients".into()),
        });
    }
    let mut members = vec![Member {
        address: CLIENT,
        groups: vec!["clients".into()],
    }];
    members.extend((1..CLIENT_GROUP_MEMBERS).map(|n| Member {
        address: policy::member_address(n),
        groups: vec!["clients".into()],
    }));
    Policy {
        groups: vec![
            policy::Group {
                name: "server".into(),
                ingress: rules,
            },
            policy::Group {
                name: "clients".into(),
                ingress: Vec::new(),
            },
        ],
        instances: vec![Instance {
            name: "server".into(),
            interface: interface.into(),
            address: SERVER,
            groups: vec!["server".into()],
            ingress_hook: hook,
        }],
        members,
        groups_per_interface: 5,
        rules_per_group: 100,
        prefix_lists: Vec::new(),
        acl: None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer4 {
    NoFilter,
    SgwallXdp,
    SgwallTc,
    Nftables,
    IptablesIpset,
}

impl Peer4 {
    pub const ALL: [Peer4; 5] = [
        Peer4::NoFilter,
        Peer4::SgwallXdp,
        Peer4::SgwallTc,
        Peer4::Nftables,
        Peer4::IptablesIpset,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Peer4::NoFilter => "no filter",
            Peer4::SgwallXdp => "sgwall (XDP in, TC out)",
            Peer4::SgwallTc => "sgwall (TC in, TC out)",
            Peer4::Nftables => "nftables",
            Peer4::IptablesIpset => "iptables + ipset",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TcpThroughput,
    UdpPps,
    DeniedDropRate,
    NewConnections,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::TcpThroughput,
        Metric::UdpPps,
        Metric::DeniedDropRate,
        Metric::NewConnections,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::TcpThroughput => "TCP throughput, one stream (Gbit/s)",
            Metric::UdpPps => "established UDP, 60-byte frames (kpps delivered)",
            Metric::DeniedDropRate => "denied UDP flood (kpps dropped)",
            Metric::NewConnections => "new TCP connections (per second)",
        }
    }
}

pub struct Params {
    pub rounds: usize,
    pub seconds: u32,
    pub blast: Duration,
    pub udp_flows: u16,
    pub flood_flows: usize,
    pub conn_workers: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Full => Self {
                rounds: 7,
                seconds: 4,
                blast: Duration::from_secs(3),
                udp_flows: 64,
                flood_flows: 16_384,
                conn_workers: 4,
            },
            Mode::Quick => Self {
                rounds: 3,
                seconds: 2,
                blast: Duration::from_millis(1500),
                udp_flows: 64,
                flood_flows: 16_384,
                conn_workers: 4,
            },
            Mode::Smoke => Self {
                rounds: 1,
                seconds: 1,
                blast: Duration::from_millis(400),
                udp_flows: 16,
                flood_flows: 1_024,
                conn_workers: 2,
            },
        }
    }
}

/// One measurement's raw numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub value: f64,
    /// Frames (or connection attempts) the client sent.
    pub sent: u64,
    /// Of those, what reached the server's UDP layer (UDP figures) or failed (connections).
    pub other: u64,
    /// How long the measurement ran.
    pub seconds: f64,
    /// sgwall only: mean ns per run of each program over the measurement (bpf run-time stats).
    pub program_ns: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct PeerResult {
    pub metric: Metric,
    pub peer: Peer4,
    pub summary: Summary,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Serialize)]
pub struct E2eResult {
    pub rounds: usize,
    pub seconds: u32,
    pub blast_seconds: f64,
    pub udp_flows: u16,
    pub flood_flows: usize,
    pub conn_workers: usize,
    pub sgwall_rules: usize,
    pub nft_ruleset: String,
    pub iptables_rules: String,
    pub results: Vec<PeerResult>,
    /// `ethtool -k` offload lines of the client's veth, per candidate: XDP on a veth turns off
    /// segmentation offload on its peer.
    pub client_offloads: BTreeMap<String, String>,
}

/// What a candidate holds while it is in force (links, a table, rules); dropping it removes
/// the filter.
type Loaded = Option<Box<dyn std::any::Any>>;

struct Bench<'a> {
    topology: &'a Topology,
    params: &'a Params,
    datapath: Datapath,
    applied: Applied,
    policy: Policy,
}

impl Bench<'_> {
    fn load(&mut self, peer: Peer4) -> Result<Loaded> {
        let instance = &self.policy.instances[0];
        Ok(match peer {
            Peer4::NoFilter => None,
            Peer4::SgwallXdp => Some(Box::new(
                self.topology
                    .attach_sgwall(&mut self.datapath, Hook::XdpIngress)?,
            )),
            Peer4::SgwallTc => Some(Box::new(
                self.topology
                    .attach_sgwall(&mut self.datapath, Hook::TcIngress)?,
            )),
            Peer4::Nftables => Some(Box::new(NftTable::load(
                self.topology.server.name(),
                NFT_TABLE,
                &self.policy.to_nft(instance, NFT_TABLE),
            )?)),
            Peer4::IptablesIpset => {
                let (ipset, iptables) = self.policy.to_iptables(instance);
                Some(Box::new(IptablesRules::load(
                    self.topology.server.name(),
                    &ipset,
                    &iptables,
                )?))
            }
        })
    }

    /// Empties every connection table: sgwall's (counting the removals as its agent does, so
    /// the flow allowance stays right) and netfilter's.
    fn reset_state(&mut self) -> Result<()> {
        flush_conntrack(self.topology.server.name());
        let mut removed = 0u64;
        {
            let mut established: HashMap<&mut MapData, CtKey, CtEntry> = HashMap::try_from(
                self.datapath
                    .ebpf
                    .map_mut(map_names::CT_ESTABLISHED)
                    .context("no established map")?,
            )?;
            let keys: Vec<CtKey> = established.keys().collect::<Result<_, _>>()?;
            for key in keys {
                if established.remove(&key).is_ok() {
                    removed += 1;
                }
            }
        }
        {
            let mut embryonic: HashMap<&mut MapData, CtKey, CtEntry> = HashMap::try_from(
                self.datapath
                    .ebpf
                    .map_mut(map_names::CT_EMBRYONIC)
                    .context("no embryonic map")?,
            )?;
            let keys: Vec<CtKey> = embryonic.keys().collect::<Result<_, _>>()?;
            for key in keys {
                let _ = embryonic.remove(&key);
            }
        }
        if removed > 0 {
            let ifslot = u32::from(
                self.applied
                    .policy
                    .interfaces
                    .first()
                    .map(|i| i.ifslot)
                    .unwrap_or_default(),
            );
            let mut agent_deleted: Array<&mut MapData, u64> = Array::try_from(
                self.datapath
                    .ebpf
                    .map_mut(map_names::CT_REMOVED_BY_AGENT)
                    .context("no agent-removed map")?,
            )?;
            let before = agent_deleted.get(&ifslot, 0)?;
            agent_deleted.set(ifslot, before + removed, 0)?;
        }
        Ok(())
    }

    fn program_stats(&self) -> BTreeMap<String, (u64, u64)> {
        let mut stats = BTreeMap::new();
        for name in [
            program_names::XDP_INGRESS,
            program_names::TC_INGRESS,
            program_names::TC_EGRESS,
            program_names::XDP_DECIDE,
            program_names::TC_DECIDE,
        ] {
            if let Some(info) = self.datapath.ebpf.program(name).and_then(|p| p.info().ok()) {
                stats.insert(
                    name.to_string(),
                    (info.run_time().as_nanos() as u64, info.run_count()),
                );
            }
        }
        stats
    }

    fn measure(&mut self, metric: Metric, peer: Peer4) -> Result<Sample> {
        self.reset_state()?;
        let before = self.program_stats();
        let mut sample = match metric {
            Metric::TcpThroughput => {
                let bps = traffic::iperf3_tcp(
                    self.topology.client.name(),
                    SERVER,
                    IPERF_PORT,
                    self.params.seconds,
                )?;
                Sample {
                    value: bps / 1e9,
                    ..Default::default()
                }
            }
            Metric::UdpPps => self.udp_pps()?,
            Metric::DeniedDropRate => self.denied_flood(peer)?,
            Metric::NewConnections => {
                let (completed, failed, elapsed) = traffic::connection_rate(
                    self.topology.client.name(),
                    self.topology.server.name(),
                    SocketAddr::from((SERVER, CONN_PORT)),
                    self.params.conn_workers,
                    Duration::from_secs(u64::from(self.params.seconds)),
                )?;
                Sample {
                    value: completed as f64 / elapsed.as_secs_f64(),
                    sent: completed + failed,
                    other: failed,
                    seconds: elapsed.as_secs_f64(),
                    ..Default::default()
                }
            }
        };
        if matches!(peer, Peer4::SgwallXdp | Peer4::SgwallTc) {
            let after = self.program_stats();
            for (name, (time, count)) in after {
                if let Some((time0, count0)) = before.get(&name)
                    && count > *count0
                {
                    sample
                        .program_ns
                        .insert(name, (time - time0) as f64 / (count - count0) as f64);
                }
            }
        }
        Ok(sample)
    }

    fn udp_pps(&mut self) -> Result<Sample> {
        let first_port = 20_000;
        let (ports, _server_socket) = traffic::establish_udp_flows(
            self.topology.client.name(),
            CLIENT,
            self.topology.server.name(),
            SocketAddr::from((SERVER, UDP_PORT)),
            self.params.udp_flows,
            first_port,
        )?;
        // 60-byte frames: 14 Ethernet + 20 IP + 8 UDP + 18 payload.
        let frames: Vec<Vec<u8>> = ports
            .iter()
            .map(|port| {
                self.topology.frame(
                    CLIENT,
                    SERVER,
                    L4::Udp {
                        sport: *port,
                        dport: UDP_PORT,
                        payload: vec![0x5a; 18],
                    },
                )
            })
            .collect();
        self.blast(&frames)
    }

    fn denied_flood(&mut self, peer: Peer4) -> Result<Sample> {
        let frames: Vec<Vec<u8>> = (0..self.params.flood_flows)
            .map(|n| {
                self.topology.frame(
                    CLIENT,
                    SERVER,
                    L4::Udp {
                        sport: 1024 + (n % 64_000) as u16,
                        dport: DENIED_PORT,
                        payload: vec![0x5a; 18],
                    },
                )
            })
            .collect();
        let mut sample = self.blast(&frames)?;
        // `value` is what got through; the figure is what the filter dropped.
        let elapsed = sample.seconds;
        let delivered = sample.other;
        let dropped = sample.sent.saturating_sub(delivered);
        sample.value = if peer == Peer4::NoFilter {
            0.0
        } else {
            dropped as f64 / elapsed.max(f64::MIN_POSITIVE) / 1e3
        };
        if peer != Peer4::NoFilter && delivered * 100 > sample.sent {
            bail!(
                "{}: {delivered} of {} denied frames reached UDP",
                peer.label(),
                sample.sent
            );
        }
        Ok(sample)
    }

    /// Blasts `frames`; `value` = kpps that reached UDP, `sent` = frames sent, `other` = frames
    /// that reached UDP.
    fn blast(&self, frames: &[Vec<u8>]) -> Result<Sample> {
        let blaster = Blaster::new(self.topology.client.name(), &self.topology.link.left)?;
        let before = UdpCounters::read(self.topology.server.name())?;
        let (sent, elapsed) = blaster.blast(frames, self.params.blast)?;
        let after = UdpCounters::read(self.topology.server.name())?;
        let reached = after.reached_udp().saturating_sub(before.reached_udp());
        Ok(Sample {
            value: reached as f64 / elapsed.as_secs_f64() / 1e3,
            sent,
            other: reached,
            seconds: elapsed.as_secs_f64(),
            ..Default::default()
        })
    }
}

fn offloads(topology: &Topology) -> String {
    ns_run(
        topology.client.name(),
        &["ethtool", "-k", &topology.link.left],
        None,
    )
    .map(|out| {
        out.lines()
            .filter(|l| l.contains("segmentation-offload:") || l.contains("scatter-gather:"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
    })
    .unwrap_or_else(|e| format!("ethtool failed: {e}"))
}

pub fn run(params: &Params) -> Result<E2eResult> {
    let topology = Topology::new()?;
    let policy = e2e_policy(&topology.link.right, "xdp");
    let config = sgwall::config::load_str(&policy.to_toml(), Path::new("e2e.toml"))
        .map_err(|e| anyhow::anyhow!("e2e policy is invalid: {e}"))?
        .config;
    // Room for every connection of a connection-rate run (they close but stay tracked until
    // the sweep between measurements).
    let mut datapath = Datapath::load(&LoadOptions {
        capacities: Capacities {
            ct_established: 1 << 20,
            ..Capacities::default()
        },
        ..Default::default()
    })?;
    let compiled = compile::compile(&config, &BTreeMap::new())?;
    let applied = apply_full(
        &mut datapath.maps,
        None,
        compiled,
        BTreeMap::from([(topology.link.right.clone(), topology.server_ifindex)]),
    )?;
    let instance = policy.instances[0].clone();
    let nft_ruleset = policy.to_nft(&instance, NFT_TABLE);
    let (ipset, iptables) = policy.to_iptables(&instance);
    let mut bench = Bench {
        topology: &topology,
        params,
        datapath,
        applied,
        policy: policy.clone(),
    };
    // Run-time statistics of every BPF program, while the handle lives (BPF_ENABLE_STATS).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)?;
    let _iperf = traffic::Iperf3Server::start(topology.server.name(), IPERF_PORT)?;

    let mut samples: BTreeMap<(Metric, Peer4), Vec<Sample>> = BTreeMap::new();
    let mut client_offloads = BTreeMap::new();
    for round in 0..params.rounds {
        // Rotate the order so no candidate always runs first or last.
        let mut order = Peer4::ALL.to_vec();
        let shift = round % order.len();
        order.rotate_left(shift);
        for peer in order {
            let loaded = bench.load(peer)?;
            client_offloads
                .entry(peer.label().to_string())
                .or_insert_with(|| offloads(&topology));
            for metric in Metric::ALL {
                let sample = bench
                    .measure(metric, peer)
                    .with_context(|| format!("{} with {}", metric.label(), peer.label()))?;
                eprintln!(
                    "  e2e round {}/{}: {:<26} {:<50} {:.2}",
                    round + 1,
                    params.rounds,
                    peer.label(),
                    metric.label(),
                    sample.value
                );
                samples.entry((metric, peer)).or_default().push(sample);
            }
            drop(loaded);
        }
    }
    let results = samples
        .into_iter()
        .map(|((metric, peer), samples)| PeerResult {
            metric,
            peer,
            summary: Summary::of(&samples.iter().map(|s| s.value).collect::<Vec<_>>()),
            samples,
        })
        .collect();
    Ok(E2eResult {
        rounds: params.rounds,
        seconds: params.seconds,
        blast_seconds: params.blast.as_secs_f64(),
        udp_flows: params.udp_flows,
        flood_flows: params.flood_flows,
        conn_workers: params.conn_workers,
        sgwall_rules: policy.rules_of(&instance).len(),
        nft_ruleset,
        iptables_rules: format!("{ipset}\n{iptables}"),
        results,
        client_offloads,
    })
}
