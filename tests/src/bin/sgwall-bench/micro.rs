//! Datapath microbenchmarks: the real object under BPF_PROG_TEST_RUN, maps filled by the real
//! compiler and map writer, conntrack pre-populated directly.
//!
//! Method: every packet is its own BPF_PROG_TEST_RUN call with `repeat = 1`, and its cost is the
//! duration the kernel reports for that one run (it times only the program, not the syscall or
//! the copy of the frame). Consecutive calls carry different frames from a pool of distinct
//! flows and addresses, so map lookups walk different buckets and trie paths as real traffic
//! would; between calls the CPU returns to user space, so caches are, if anything, colder than
//! under a packet stream. The kernel's clock reads are inside the timed window: the baseline
//! program (`sgw_bench_pass`, returns XDP_PASS) measures exactly that fixed part.
//!
//! A pass is `packets` runs of one case on one candidate; its figure is the median of its
//! per-packet durations (the mean is kept in the JSON). Rounds interleave every candidate and
//! case in a shuffled order, so drift on this shared machine hits all of them alike.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::{HashMap, MapData, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use filter_common::{
    CT_F_SEEN_REPLY, CT_STATE_ESTABLISHED, CtEntry, CtKey, DIR_INGRESS, FAMILY_V4, PROTO_TCP,
    PROTO_UDP, map_names, program_names,
};
use serde::Serialize;
use sgwall::{
    compile,
    datapath::loader::{Datapath, LoadOptions},
    maps::{Applied, Capacities, apply_full},
    testgen::Rng,
};
use sgwall_tests::packet::{IpPacket, L4, TCP_ACK, TCP_SYN, ethernet};

use crate::{
    Mode,
    memory::{self, MapMemory},
    policy::{self, Instance, Member, Peer, Policy, Proto, Rule},
    stats::Summary,
};

pub const BENCH_PASS: &str = "sgw_bench_pass";
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const PEER_GROUPS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Established,
    NewFlow,
    Denied,
    NonIp,
}

impl Case {
    pub const ALL: [Case; 4] = [Case::Established, Case::NewFlow, Case::Denied, Case::NonIp];

    pub fn label(self) -> &'static str {
        match self {
            Case::Established => "established flow",
            Case::NewFlow => "new flow admitted",
            Case::Denied => "denied",
            Case::NonIp => "non-IP frame",
        }
    }

    fn expected(self) -> u32 {
        match self {
            Case::Established | Case::NewFlow => XDP_PASS,
            Case::Denied | Case::NonIp => XDP_DROP,
        }
    }
}

/// One benchmark dimension: candidates that differ in one size, measured together.
#[derive(Clone, Copy, Debug)]
pub struct Dimension {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
}

pub const RULES: Dimension = Dimension {
    key: "rules",
    title: "rules per interface",
    unit: "rules",
};
pub const MEMBERS: Dimension = Dimension {
    key: "members",
    title: "group members",
    unit: "members",
};
pub const FLOWS: Dimension = Dimension {
    key: "flows",
    title: "tracked flows",
    unit: "flows",
};
pub const ACL_ENTRIES: Dimension = Dimension {
    key: "ACL entries",
    title: "network ACL entries per direction (N2)",
    unit: "ACL entries",
};
pub const PREFIX_LIST_ENTRIES: Dimension = Dimension {
    key: "prefix list entries",
    title: "prefix list entries (P1)",
    unit: "prefix list entries",
};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sizes {
    pub rules: usize,
    pub members: usize,
    pub flows: usize,
    /// Entries per direction of the instance's subnet's network ACL; 0: no subnet at all.
    pub acl_entries: usize,
    /// Entries of the prefix list one rule names; 0: the usual micro policy, no prefix list.
    pub prefix_list_entries: usize,
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    /// Per pass: median ns per packet.
    pub median_ns: Summary,
    /// Per pass: mean ns per packet.
    pub mean_ns: Summary,
    /// Packets whose verdict was not the case's (must be 0).
    pub wrong_verdicts: u64,
}

#[derive(Debug, Serialize)]
pub struct CandidateResult {
    pub size: usize,
    pub sizes: Sizes,
    pub cases: BTreeMap<Case, CaseResult>,
    pub setup_seconds: f64,
    pub memory: Vec<MapMemory>,
    /// Entries the compiler wrote per policy slot: CIDR prefixes and port prefixes (the two
    /// LPM tries a new flow is classified in).
    pub cidr_entries: usize,
    pub port_entries: usize,
}

#[derive(Debug, Serialize)]
pub struct SetResult {
    pub dimension: &'static str,
    pub title: &'static str,
    pub rounds: usize,
    pub packets_per_pass: usize,
    pub pool: usize,
    pub program: &'static str,
    pub baseline: CaseResult,
    pub candidates: Vec<CandidateResult>,
}

pub struct Params {
    pub rounds: usize,
    pub packets: usize,
    pub pool: usize,
    pub rules: Vec<usize>,
    pub members: Vec<usize>,
    pub flows: Vec<usize>,
    pub acl_entries: Vec<usize>,
    pub prefix_list_entries: Vec<usize>,
    pub default: Sizes,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        let default = Sizes {
            rules: 100,
            members: 1_000,
            flows: 10_000,
            acl_entries: 0,
            prefix_list_entries: 0,
        };
        // N2's largest ACL against none; P1's largest list against a small one.
        let (acl_entries, prefix_list_entries) = (vec![0, 40], vec![10, 1_000]);
        match mode {
            Mode::Full => Self {
                rounds: 15,
                packets: 4_000,
                pool: 16_384,
                rules: vec![10, 100, 1_000],
                members: vec![1_000, 10_000, 100_000],
                flows: vec![1_000, 100_000, 1_000_000],
                acl_entries: acl_entries.clone(),
                prefix_list_entries: prefix_list_entries.clone(),
                default,
            },
            Mode::Quick => Self {
                rounds: 7,
                packets: 2_000,
                pool: 8_192,
                rules: vec![10, 100, 1_000],
                members: vec![1_000, 10_000, 100_000],
                flows: vec![1_000, 100_000, 1_000_000],
                acl_entries: acl_entries.clone(),
                prefix_list_entries: prefix_list_entries.clone(),
                default,
            },
            Mode::Smoke => Self {
                rounds: 2,
                packets: 200,
                pool: 1_024,
                rules: vec![10, 1_000],
                members: vec![1_000, 100_000],
                flows: vec![1_000, 100_000],
                acl_entries,
                prefix_list_entries,
                default,
            },
        }
    }
}

/// The micro policy: `rules` ingress rules on one host-attached instance, four of them by
/// reference to member groups (spread evenly through the rule order, so a match is not always
/// in the first bitmap word), the rest CIDR rules of several prefix lengths; `members`
/// addresses spread over the four member groups.
pub fn micro_policy(interface: &str, sizes: &Sizes) -> Policy {
    if sizes.prefix_list_entries > 0 {
        return prefix_list_policy(interface, sizes.prefix_list_entries);
    }
    let mut policy = rules_policy(interface, sizes.rules, sizes.members);
    if sizes.acl_entries > 0 {
        policy.acl = Some(bench_acl(sizes.acl_entries));
    }
    policy
}

/// The instance's subnet (it holds `LOCAL`) and an ACL of `entries` per direction: every entry
/// but the last denies traffic the benchmark never sends (a spread of /24s and /32s, each on
/// its own port), and the last admits everything. Every packet is judged by the whole ACL, and
/// what it matches is its lowest-priority entry: the worst case of a walk, which the datapath
/// does not do (two lookups and a word, whatever the count).
fn bench_acl(entries: usize) -> policy::NetworkAcl {
    let mut list: Vec<policy::AclEntry> = (0..entries - 1)
        .map(|i| policy::AclEntry {
            number: 10 * (i as u16 + 1),
            allow: false,
            proto: Some(if i % 3 == 2 { Proto::Udp } else { Proto::Tcp }),
            ports: (1000 + i as u16, 1000 + i as u16),
            cidr: if i % 4 == 3 {
                (Ipv4Addr::new(203, 0, 113, i as u8), 32)
            } else {
                (Ipv4Addr::new(192, 168, i as u8, 0), 24)
            },
        })
        .collect();
    list.push(policy::AclEntry {
        number: 10 * entries as u16,
        allow: true,
        proto: None,
        ports: (0, 0),
        cidr: (Ipv4Addr::UNSPECIFIED, 0),
    });
    policy::NetworkAcl {
        subnet: (Ipv4Addr::new(10, 255, 0, 0), 16),
        entries: list,
    }
}

/// One group with one rule (TCP 3100) whose peer is a prefix list of `entries` distinct CIDRs
/// of several lengths: the list counts its max entries against the quota (R7), so this is all
/// one interface may hold at 1000.
fn prefix_list_policy(interface: &str, entries: usize) -> Policy {
    Policy {
        groups: vec![policy::Group {
            name: "sg0".into(),
            ingress: vec![Rule {
                proto: Proto::Tcp,
                ports: (3100, 3100),
                peer: Peer::PrefixList("bench-list".into()),
            }],
        }],
        instances: vec![Instance {
            name: "bench".into(),
            interface: interface.into(),
            address: LOCAL,
            groups: vec!["sg0".into()],
            ingress_hook: "xdp",
        }],
        members: Vec::new(),
        groups_per_interface: 1,
        rules_per_group: 1000,
        prefix_lists: vec![policy::PrefixList {
            name: "bench-list".into(),
            entries: (0..entries).map(policy::filler_cidr).collect(),
        }],
        acl: None,
    }
}

/// The rules and members micro policy (see [`micro_policy`]).
fn rules_policy(interface: &str, rules: usize, members: usize) -> Policy {
    let rules = rules.max(PEER_GROUPS);
    let mut list: Vec<Rule> = (0..rules - PEER_GROUPS).map(policy::filler_rule).collect();
    for group in 0..PEER_GROUPS {
        let at = (group * rules / PEER_GROUPS).min(list.len());
        list.insert(
            at,
            Rule {
                proto: Proto::Tcp,
                ports: (3000 + group as u16, 3000 + group as u16),
                peer: Peer::Group(format!("peers{group}")),
            },
        );
    }
    let mut groups: Vec<policy::Group> = list
        .chunks(100)
        .enumerate()
        .map(|(index, chunk)| policy::Group {
            name: format!("sg{index}"),
            ingress: chunk.to_vec(),
        })
        .collect();
    let attached: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
    for group in 0..PEER_GROUPS {
        groups.push(policy::Group {
            name: format!("peers{group}"),
            ingress: Vec::new(),
        });
    }
    Policy {
        groups_per_interface: attached.len().max(5),
        rules_per_group: 100,
        groups,
        instances: vec![Instance {
            name: "bench".into(),
            interface: interface.into(),
            address: LOCAL,
            groups: attached,
            ingress_hook: "xdp",
        }],
        members: (0..members)
            .map(|n| Member {
                address: policy::member_address(n),
                groups: vec![format!("peers{}", n % PEER_GROUPS)],
            })
            .collect(),
        prefix_lists: Vec::new(),
        acl: None,
    }
}

struct Candidate {
    size: usize,
    sizes: Sizes,
    datapath: Datapath,
    events: RingBuf<MapData>,
    frames: BTreeMap<Case, Vec<Vec<u8>>>,
    /// Conntrack keys the new-flow frames create, removed after each pass.
    new_flow_keys: Vec<CtKey>,
    setup_seconds: f64,
    memory: Vec<MapMemory>,
    cidr_entries: usize,
    port_entries: usize,
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC is what bpf_ktime_get_ns reads.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn v4_bytes(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr.octets());
    bytes
}

fn established_remote(n: usize) -> (Ipv4Addr, u16) {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    (
        Ipv4Addr::from(base + (n >> 4) as u32),
        2000 + (n & 15) as u16,
    )
}

fn established_key(ifindex: u32, n: usize) -> CtKey {
    let (remote, port) = established_remote(n);
    CtKey {
        ifindex,
        family: FAMILY_V4,
        proto: PROTO_TCP,
        _pad: [0; 2],
        local_addr: v4_bytes(LOCAL),
        remote_addr: v4_bytes(remote),
        local_port: 443,
        remote_port: port,
    }
}

/// Fills the established pool with `count` flows, as the datapath would have after their
/// handshakes: each is live, established, seen both ways.
fn populate_flows(
    datapath: &mut Datapath,
    applied: &Applied,
    ifindex: u32,
    count: usize,
) -> Result<()> {
    let ifslot = applied
        .policy
        .interfaces
        .first()
        .map(|i| i.ifslot)
        .unwrap_or_default();
    let mut map: HashMap<&mut MapData, CtKey, CtEntry> = HashMap::try_from(
        datapath
            .ebpf
            .map_mut(map_names::CT_ESTABLISHED)
            .context("no established map")?,
    )?;
    let now = monotonic_ns();
    for n in 0..count {
        let entry = CtEntry {
            created_ns: now,
            last_seen_ns: now,
            packets: [3, 2],
            bytes: [180, 120],
            generation: applied.generation,
            rule_id: 0,
            ifslot,
            selector: 443,
            origin: DIR_INGRESS,
            state: CT_STATE_ESTABLISHED,
            flags: CT_F_SEEN_REPLY,
            _pad: 0,
            reply_isn: 0,
        };
        map.insert(established_key(ifindex, n), entry, 0)
            .with_context(|| format!("inserting established flow {n} of {count}"))?;
    }
    Ok(())
}

fn random_host(rng: &mut Rng, addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    if len >= 32 {
        return addr;
    }
    let size = 1u32 << (32 - u32::from(len));
    let offset = 1 + rng.below((size - 2) as usize) as u32;
    Ipv4Addr::from(u32::from(addr) + offset)
}

fn l4(proto: Proto, sport: u16, dport: u16, flags: u8) -> L4 {
    match proto {
        Proto::Tcp => L4::tcp(sport, dport, flags),
        Proto::Udp => L4::udp(sport, dport),
    }
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Vec<u8> {
    IpPacket::new(IpAddr::V4(src), IpAddr::V4(dst), l4).build()
}

/// Frames for every case, drawn from the candidate's own policy and flows.
fn build_frames(
    policy: &Policy,
    ifindex: u32,
    flows: usize,
    pool: usize,
    rng: &mut Rng,
) -> (BTreeMap<Case, Vec<Vec<u8>>>, Vec<CtKey>) {
    let rules = policy.rules_of(&policy.instances[0]);
    let mut group_members: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for rule in &rules {
        if let Peer::Group(name) = &rule.peer {
            group_members
                .entry(name.clone())
                .or_insert_with(|| policy.members_of(name));
        }
    }
    let admitted_source = |rng: &mut Rng, rule: &Rule| match &rule.peer {
        Peer::Cidr(addr, len) => random_host(rng, *addr, *len),
        Peer::Group(name) => {
            let members = &group_members[name];
            members[rng.below(members.len())]
        }
        Peer::PrefixList(name) => {
            let entries = policy
                .prefix_list(name)
                .map(|l| l.entries.as_slice())
                .unwrap_or_default();
            let (addr, len) = entries[rng.below(entries.len())];
            random_host(rng, addr, len)
        }
    };
    let mut new_flows = Vec::with_capacity(pool);
    let mut new_keys = Vec::with_capacity(pool);
    let mut denied = Vec::with_capacity(pool);
    for n in 0..pool {
        let rule = &rules[rng.below(rules.len())];
        let src = admitted_source(rng, rule);
        let dport = rule.ports.0 + rng.below(usize::from(rule.ports.1 - rule.ports.0) + 1) as u16;
        // Distinct source ports across the pool: every frame is a flow of its own.
        let sport = 1024 + (n % 64_000) as u16;
        new_flows.push(frame(src, LOCAL, l4(rule.proto, sport, dport, TCP_SYN)));
        new_keys.push(CtKey {
            ifindex,
            family: FAMILY_V4,
            proto: match rule.proto {
                Proto::Tcp => PROTO_TCP,
                Proto::Udp => PROTO_UDP,
            },
            _pad: [0; 2],
            local_addr: v4_bytes(LOCAL),
            remote_addr: v4_bytes(src),
            local_port: dport,
            remote_port: sport,
        });
        // Half from addresses no rule covers, on a rule's port; half from a rule's own peers on
        // a port no rule opens.
        let denied_frame = if n % 2 == 0 {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
            let outsider = Ipv4Addr::from(base + rng.below(1 << 17) as u32);
            frame(outsider, LOCAL, l4(rule.proto, sport, dport, TCP_SYN))
        } else {
            frame(src, LOCAL, l4(rule.proto, sport, 9, TCP_SYN))
        };
        denied.push(denied_frame);
    }
    let established = (0..pool)
        .map(|_| {
            let (remote, port) = established_remote(rng.below(flows));
            frame(remote, LOCAL, L4::tcp(port, 443, TCP_ACK))
        })
        .collect();
    let non_ip = (0..pool)
        .map(|n| {
            let mut frame = ethernet(None, 0x88b5, &[0u8; 46]);
            frame[6..12].copy_from_slice(&[0x02, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            frame
        })
        .collect();
    let frames = BTreeMap::from([
        (Case::Established, established),
        (Case::NewFlow, new_flows),
        (Case::Denied, denied),
        (Case::NonIp, non_ip),
    ]);
    (frames, new_keys)
}

fn capacities_for(sizes: &Sizes) -> Capacities {
    let defaults = Capacities::default();
    Capacities {
        members: defaults.members.max(sizes.members + sizes.members / 4),
        ct_established: defaults.ct_established.max(sizes.flows + sizes.flows / 4),
        ..defaults
    }
}

fn load_candidate(
    size: usize,
    sizes: Sizes,
    interface: &str,
    ifindex: u32,
    pool: usize,
    seed: u64,
) -> Result<Candidate> {
    let started = Instant::now();
    let policy = micro_policy(interface, &sizes);
    let text = policy.to_toml();
    let config = sgwall::config::load_str(&text, Path::new("micro.toml"))
        .map_err(|e| anyhow::anyhow!("micro policy is invalid: {e}"))?
        .config;
    let mut datapath = Datapath::load(&LoadOptions {
        capacities: capacities_for(&sizes),
        ..Default::default()
    })?;
    let compiled = compile::compile(&config, &BTreeMap::new())?;
    let applied = apply_full(
        &mut datapath.maps,
        None,
        compiled,
        BTreeMap::from([(interface.to_string(), ifindex)]),
    )?;
    let cidr_entries = applied
        .policy
        .interfaces
        .iter()
        .map(|i| i.cidrs.len())
        .sum();
    let port_entries = applied
        .policy
        .interfaces
        .iter()
        .map(|i| i.ports.len())
        .sum();
    populate_flows(&mut datapath, &applied, ifindex, sizes.flows)?;
    let events = RingBuf::try_from(
        datapath
            .ebpf
            .take_map(map_names::EVENTS)
            .context("no events map")?,
    )?;
    let mut rng = Rng::new(seed);
    let (frames, new_flow_keys) = build_frames(&policy, ifindex, sizes.flows, pool, &mut rng);
    let memory = memory::datapath_maps(&datapath)?;
    Ok(Candidate {
        size,
        sizes,
        datapath,
        events,
        frames,
        new_flow_keys,
        setup_seconds: started.elapsed().as_secs_f64(),
        memory,
        cidr_entries,
        port_entries,
    })
}

struct Pass {
    median: f64,
    mean: f64,
    wrong: u64,
}

fn run_pass(program: &Xdp, frames: &[&[u8]], ifindex: u32, expected: u32) -> Result<Pass> {
    let mut durations = Vec::with_capacity(frames.len());
    let mut wrong = 0;
    for frame in frames {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex.
        let mut context = [0u8; 24];
        context[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        context[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&context);
        let result = program.test_run(options).context("BPF_PROG_TEST_RUN")?;
        durations.push(result.duration.as_nanos() as f64);
        if result.return_value != expected {
            wrong += 1;
        }
    }
    let mean = durations.iter().sum::<f64>() / durations.len().max(1) as f64;
    durations.sort_by(f64::total_cmp);
    Ok(Pass {
        median: crate::stats::median_sorted(&durations),
        mean,
        wrong,
    })
}

fn xdp<'a>(datapath: &'a Datapath, name: &str) -> Result<&'a Xdp> {
    let program = datapath
        .ebpf
        .program(name)
        .with_context(|| format!("no program {name}"))?;
    Ok(program.try_into()?)
}

impl Candidate {
    /// Puts the maps back as they were before a new-flow pass: the embryonic entries it made
    /// go (a new flow must stay new), and the ring buffer is drained as the agent would.
    fn reset_after(&mut self, case: Case, window: std::ops::Range<usize>) -> Result<()> {
        while self.events.next().is_some() {}
        if case == Case::NewFlow {
            let mut embryonic: HashMap<&mut MapData, CtKey, CtEntry> = HashMap::try_from(
                self.datapath
                    .ebpf
                    .map_mut(map_names::CT_EMBRYONIC)
                    .context("no embryonic map")?,
            )?;
            for index in window {
                let key = &self.new_flow_keys[index % self.new_flow_keys.len()];
                let _ = embryonic.remove(key);
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Acc {
    medians: Vec<f64>,
    means: Vec<f64>,
    wrong: u64,
}

impl Acc {
    fn push(&mut self, pass: Pass) {
        self.medians.push(pass.median);
        self.means.push(pass.mean);
        self.wrong += pass.wrong;
    }

    fn result(&self) -> CaseResult {
        CaseResult {
            median_ns: Summary::of(&self.medians),
            mean_ns: Summary::of(&self.means),
            wrong_verdicts: self.wrong,
        }
    }
}

/// Runs one dimension: candidates of each size plus the baseline, interleaved round by round.
pub fn run_set(
    dimension: Dimension,
    sizes: &[usize],
    params: &Params,
    interface: &str,
    ifindex: u32,
) -> Result<SetResult> {
    let mut candidates = Vec::new();
    for (index, &size) in sizes.iter().enumerate() {
        let mut chosen = params.default;
        match dimension.key {
            "rules" => chosen.rules = size,
            "members" => chosen.members = size,
            "ACL entries" => chosen.acl_entries = size,
            "prefix list entries" => chosen.prefix_list_entries = size,
            _ => chosen.flows = size,
        }
        eprintln!(
            "  micro/{}: loading {size} {}",
            dimension.key, dimension.unit
        );
        candidates.push(load_candidate(
            size,
            chosen,
            interface,
            ifindex,
            params.pool,
            0x5eed + index as u64,
        )?);
    }
    // The baseline program lives in the first candidate's object; loading it is not part of
    // the datapath (the agent never attaches it).
    {
        let first = candidates.first_mut().context("no candidates")?;
        let program: &mut Xdp = first
            .datapath
            .ebpf
            .program_mut(BENCH_PASS)
            .context("the object has no sgw_bench_pass")?
            .try_into()?;
        program.load()?;
    }

    let mut accs: Vec<BTreeMap<Case, Acc>> = candidates.iter().map(|_| BTreeMap::new()).collect();
    let mut baseline = Acc::default();
    let mut rng = Rng::new(0xbe4c4);
    let mut cursor = 0usize;
    for round in 0..params.rounds {
        // Slot `candidates.len()` is the baseline.
        let mut order: Vec<(usize, Case)> = (0..=candidates.len())
            .flat_map(|c| Case::ALL.into_iter().map(move |case| (c, case)))
            .filter(|(c, case)| *c < candidates.len() || *case == Case::NewFlow)
            .collect();
        rng.shuffle(&mut order);
        let window = cursor..cursor + params.packets;
        cursor += params.packets;
        for (slot, case) in order {
            if slot == candidates.len() {
                let first = &candidates[0];
                let frames: Vec<&[u8]> = window
                    .clone()
                    .map(|i| first.frames[&case][i % params.pool].as_slice())
                    .collect();
                let program = xdp(&first.datapath, BENCH_PASS)?;
                baseline.push(run_pass(program, &frames, ifindex, XDP_PASS)?);
                continue;
            }
            let candidate = &mut candidates[slot];
            let frames: Vec<&[u8]> = window
                .clone()
                .map(|i| candidate.frames[&case][i % params.pool].as_slice())
                .collect();
            let program = xdp(&candidate.datapath, program_names::XDP_INGRESS)?;
            let pass = run_pass(program, &frames, ifindex, case.expected())?;
            accs[slot].entry(case).or_default().push(pass);
            candidate.reset_after(case, window.clone())?;
        }
        eprintln!(
            "  micro/{}: round {}/{} done",
            dimension.key,
            round + 1,
            params.rounds
        );
    }

    let results = candidates
        .iter()
        .zip(accs.iter())
        .map(|(candidate, acc)| CandidateResult {
            size: candidate.size,
            sizes: candidate.sizes,
            cases: acc.iter().map(|(case, a)| (*case, a.result())).collect(),
            setup_seconds: candidate.setup_seconds,
            memory: candidate.memory.clone(),
            cidr_entries: candidate.cidr_entries,
            port_entries: candidate.port_entries,
        })
        .collect::<Vec<_>>();
    for result in &results {
        for (case, r) in &result.cases {
            if r.wrong_verdicts > 0 {
                bail!(
                    "micro/{} size {}: {} packets of case {:?} got the wrong verdict",
                    dimension.key,
                    result.size,
                    r.wrong_verdicts,
                    case
                );
            }
        }
    }
    Ok(SetResult {
        dimension: dimension.key,
        title: dimension.title,
        rounds: params.rounds,
        packets_per_pass: params.packets,
        pool: params.pool,
        program: program_names::XDP_INGRESS,
        baseline: baseline.result(),
        candidates: results,
    })
}
