//! Control plane: parse, compile and apply a policy of 1000 groups and 100k members into a fresh
//! datapath, timed stage by stage; then one member added at a time with that policy loaded,
//! timed until a real packet from the new member is admitted on an attached interface.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use filter_common::{
    AclBits, AddrKey, CidrKey, GroupBitsKey, IfaceConfig, IfaceKey, LocalAddrKey, MemberValue,
    PortKey, RuleBitmap,
};
use serde::Serialize;
use sgwall::{
    compile::{self, MembershipChange},
    datapath::{
        kernel_maps::KernelMaps,
        loader::{Datapath, LoadOptions},
    },
    maps::{Capacities, Lpm, MapError, PolicyMaps, Table, apply_full, apply_membership},
    model::Hook,
    netns,
    runtime::console::{AgentEvent, LogFormat},
};
use sgwall_tests::{AgentProcess, PinDir, packet::L4};

use crate::{
    Mode,
    e2e::{self, CLIENT, SERVER, Topology},
    memory::{self, MapMemory},
    policy::{self, Group, Instance, Member, Peer, Policy, Proto, Rule},
    stats::{Summary, percentile},
    traffic::Blaster,
};

const PROBE_PORT: u16 = 9000;

pub struct Params {
    pub repeats: usize,
    pub additions: usize,
    pub file_saves: usize,
    pub groups: usize,
    pub members: usize,
    pub instances: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        let (repeats, additions, file_saves) = match mode {
            Mode::Full => (5, 1_000, 10),
            Mode::Quick => (3, 300, 5),
            Mode::Smoke => (1, 20, 2),
        };
        Self {
            repeats,
            additions,
            file_saves,
            groups: 1_000,
            members: 100_000,
            instances: 200,
        }
    }
}

/// `groups` groups, each admitting TCP from the next group and SSH from a /24 of its own;
/// `instances` interfaces with five groups each (together they use every group); `members`
/// addresses, each in one group and every tenth in a second. Plus the probe instance on a real
/// interface, admitting UDP from group `probe-peers`, which starts with ten members.
pub fn control_policy(params: &Params, probe_interface: &str) -> Policy {
    let mut groups: Vec<Group> = (0..params.groups)
        .map(|i| Group {
            name: format!("g{i}"),
            ingress: vec![
                Rule {
                    proto: Proto::Tcp,
                    ports: (1000 + (i % 50) as u16, 1000 + (i % 50) as u16),
                    peer: Peer::Group(format!("g{}", (i + 1) % params.groups)),
                },
                {
                    let (addr, len) = policy::filler_cidr(i);
                    Rule {
                        proto: Proto::Tcp,
                        ports: (22, 22),
                        peer: Peer::Cidr(addr, len),
                    }
                },
            ],
        })
        .collect();
    groups.push(Group {
        name: "probe-sg".into(),
        ingress: vec![Rule {
            proto: Proto::Udp,
            ports: (PROBE_PORT, PROBE_PORT),
            peer: Peer::Group("probe-peers".into()),
        }],
    });
    groups.push(Group {
        name: "probe-peers".into(),
        ingress: Vec::new(),
    });
    let mut instances: Vec<Instance> = (0..params.instances)
        .map(|n| Instance {
            name: format!("i{n}"),
            interface: format!("cpl{n}"),
            address: Ipv4Addr::new(10, 60, (n / 250) as u8, (n % 250 + 1) as u8),
            groups: (0..5)
                .map(|k| format!("g{}", (n * 5 + k) % params.groups))
                .collect(),
            ingress_hook: "xdp",
        })
        .collect();
    instances.push(Instance {
        name: "probe-server".into(),
        interface: probe_interface.into(),
        address: SERVER,
        groups: vec!["probe-sg".into()],
        ingress_hook: "xdp",
    });
    let mut members: Vec<Member> = (0..params.members)
        .map(|n| {
            let first = n % params.groups;
            let mut groups = vec![format!("g{first}")];
            if n % 10 == 0 {
                groups.push(format!("g{}", (first + 1) % params.groups));
            }
            Member {
                address: policy::member_address(n),
                groups,
            }
        })
        .collect();
    members.extend((0..10).map(|n| Member {
        address: Ipv4Addr::new(10, 91, 0, n + 1),
        groups: vec!["probe-peers".into()],
    }));
    Policy {
        groups,
        instances,
        members,
        groups_per_interface: 5,
        rules_per_group: 60,
        prefix_lists: Vec::new(),
        acl: None,
    }
}

/// The kernel maps, noting when the generation flips: the moment the new rules are in force.
struct TimedMaps<'a> {
    inner: &'a mut KernelMaps,
    flipped: Option<Instant>,
}

impl PolicyMaps for TimedMaps<'_> {
    fn generation(&self) -> Result<u64, MapError> {
        self.inner.generation()
    }
    fn set_generation(&mut self, generation: u64) -> Result<(), MapError> {
        let result = self.inner.set_generation(generation);
        self.flipped = Some(Instant::now());
        result
    }
    fn ifaces(&mut self) -> &mut dyn Table<IfaceKey, IfaceConfig> {
        self.inner.ifaces()
    }
    fn cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, RuleBitmap> {
        self.inner.cidrs()
    }
    fn ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, RuleBitmap> {
        self.inner.ports()
    }
    fn group_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        self.inner.group_bits()
    }
    fn members(&mut self) -> &mut dyn Table<AddrKey, MemberValue> {
        self.inner.members()
    }
    fn local_addrs(&mut self) -> &mut dyn Table<LocalAddrKey, u32> {
        self.inner.local_addrs()
    }
    fn acl_cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, AclBits> {
        self.inner.acl_cidrs()
    }
    fn acl_ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, AclBits> {
        self.inner.acl_ports()
    }
    fn prefix_lists(&mut self) -> &mut dyn Table<Lpm<AddrKey>, MemberValue> {
        self.inner.prefix_lists()
    }
    fn prefix_list_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        self.inner.prefix_list_bits()
    }
}

#[derive(Debug, Serialize)]
pub struct ControlResult {
    pub groups: usize,
    pub members: usize,
    pub instances: usize,
    pub toml_bytes: usize,
    pub repeats: usize,
    /// Seconds, per stage.
    pub parse_validate: Summary,
    pub compile: Summary,
    pub datapath_load: Summary,
    pub apply_until_flip: Summary,
    pub apply_total: Summary,
    pub reapply_unchanged: Summary,
    /// Parse + validate + compile + apply until the flip: the new rules in force.
    pub to_rules_enforced: Summary,
    /// ... + the rest of the apply: every member written.
    pub to_fully_enforced: Summary,
    pub map_entries: BTreeMap<String, usize>,
    pub memory: Vec<MapMemory>,
    pub add_member: AddMember,
    pub file_save: FileSave,
}

/// `sgwall run` watching its config: from the rename that saves a new version of the file to
/// the first packet the new version admits.
#[derive(Debug, Serialize)]
pub struct FileSave {
    pub saves: usize,
    pub rules: usize,
    pub members: usize,
    /// A rule's port changes (full compile, apply and generation flip), milliseconds.
    pub rule_change_ms: Summary,
    /// A member address is added to a referenced group (membership delta), milliseconds.
    pub member_added_ms: Summary,
}

#[derive(Debug, Serialize)]
pub struct AddMember {
    pub additions: usize,
    /// Microseconds from the start of `apply_membership` until it returned.
    pub write_us_p50: f64,
    pub write_us_p99: f64,
    pub write_us_max: f64,
    /// Microseconds from the start of `apply_membership` until a real packet from the new
    /// member was admitted.
    pub enforced_us_p50: f64,
    pub enforced_us_p99: f64,
    pub enforced_us_max: f64,
    pub enforced_us: Vec<f64>,
    pub write_us: Vec<f64>,
    /// Packets sent per addition before one was admitted (median): 1 means the first packet
    /// after the write already passed.
    pub probes_median: f64,
    /// Profile: microseconds `CompiledPolicy::apply_membership` alone takes (the in-memory
    /// delta, no map write), on a copy of the same policy; median of 50.
    pub delta_compute_us_p50: f64,
}

fn capacities() -> Capacities {
    Capacities::default()
}

pub fn run(params: &Params) -> Result<ControlResult> {
    let topology = Topology::new()?;
    let policy = control_policy(params, &topology.link.right);
    let text = policy.to_toml();
    let mut ifindexes: BTreeMap<String, u32> = policy
        .instances
        .iter()
        .enumerate()
        // The other interfaces do not exist: any distinct index serves for the map writes.
        .map(|(n, i)| (i.interface.clone(), 100_000 + n as u32))
        .collect();
    ifindexes.insert(topology.link.right.clone(), topology.server_ifindex);

    let mut parse = Vec::new();
    let mut compile_s = Vec::new();
    let mut load = Vec::new();
    let mut flip = Vec::new();
    let mut total = Vec::new();
    let mut reapply = Vec::new();
    let mut to_rules = Vec::new();
    let mut to_full = Vec::new();
    let mut kept = None;
    for repeat in 0..params.repeats {
        let started = Instant::now();
        let config = sgwall::config::load_str(&text, Path::new("control.toml"))
            .map_err(|e| anyhow::anyhow!("control policy is invalid: {e}"))?
            .config;
        let parsed = started.elapsed();
        let started = Instant::now();
        let compiled = compile::compile(&config, &BTreeMap::new())?;
        let compiled_in = started.elapsed();
        let started = Instant::now();
        let mut datapath = Datapath::load(&LoadOptions {
            capacities: capacities(),
            ..Default::default()
        })?;
        load.push(started.elapsed().as_secs_f64());
        let mut timed = TimedMaps {
            inner: &mut datapath.maps,
            flipped: None,
        };
        let started = Instant::now();
        let applied = apply_full(&mut timed, None, compiled.clone(), ifindexes.clone())?;
        let applied_in = started.elapsed();
        let flipped_in = timed
            .flipped
            .context("apply_full never flipped the generation")?
            .duration_since(started);
        let started = Instant::now();
        let applied = apply_full(
            &mut datapath.maps,
            Some(&applied),
            compiled,
            ifindexes.clone(),
        )?;
        reapply.push(started.elapsed().as_secs_f64());
        parse.push(parsed.as_secs_f64());
        compile_s.push(compiled_in.as_secs_f64());
        flip.push(flipped_in.as_secs_f64());
        total.push(applied_in.as_secs_f64());
        to_rules.push((parsed + compiled_in + flipped_in).as_secs_f64());
        to_full.push((parsed + compiled_in + applied_in).as_secs_f64());
        eprintln!(
            "  control: repeat {}/{}: parse {:.2}s compile {:.2}s apply {:.2}s",
            repeat + 1,
            params.repeats,
            parsed.as_secs_f64(),
            compiled_in.as_secs_f64(),
            applied_in.as_secs_f64()
        );
        kept = Some((datapath, applied));
    }
    let (mut datapath, mut applied) = kept.context("no repeats")?;
    let memory = memory::datapath_maps(&datapath)?;
    let map_entries = BTreeMap::from([
        ("SGW_MEMBERS".to_string(), applied.policy.members.len()),
        ("membership sets".to_string(), applied.policy.sets.len()),
        (
            "SGW_CIDRS (per slot)".to_string(),
            applied
                .policy
                .interfaces
                .iter()
                .map(|i| i.cidrs.len())
                .sum(),
        ),
        (
            "SGW_PORTS (per slot)".to_string(),
            applied
                .policy
                .interfaces
                .iter()
                .map(|i| i.ports.len())
                .sum(),
        ),
    ]);

    let add_member = add_members(&topology, &mut datapath, &mut applied, params.additions)?;
    drop(datapath);
    drop(topology);
    let file_save = file_save(params.file_saves)?;
    Ok(ControlResult {
        groups: params.groups,
        members: params.members,
        instances: params.instances + 1,
        toml_bytes: text.len(),
        repeats: params.repeats,
        parse_validate: Summary::of(&parse),
        compile: Summary::of(&compile_s),
        datapath_load: Summary::of(&load),
        apply_until_flip: Summary::of(&flip),
        apply_total: Summary::of(&total),
        reapply_unchanged: Summary::of(&reapply),
        to_rules_enforced: Summary::of(&to_rules),
        to_fully_enforced: Summary::of(&to_full),
        map_entries,
        memory,
        add_member,
        file_save,
    })
}

fn add_members(
    topology: &Topology,
    datapath: &mut Datapath,
    applied: &mut sgwall::maps::Applied,
    additions: usize,
) -> Result<AddMember> {
    let _links = topology.attach_sgwall(datapath, Hook::XdpIngress)?;
    let socket = netns::run_in(topology.server.name(), || {
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PROBE_PORT)))
    })??;
    socket.set_nonblocking(true)?;
    let blaster = Blaster::new(topology.client.name(), &topology.link.left)?;
    let mut buffer = [0u8; 256];
    let drain = |socket: &UdpSocket| {
        let mut scratch = [0u8; 256];
        let mut got = 0;
        while socket.recv(&mut scratch).is_ok() {
            got += 1;
        }
        got
    };
    // The probe must be able to see a change: a known member's packet passes...
    let known = topology.frame(
        Ipv4Addr::new(10, 91, 0, 1),
        SERVER,
        L4::udp(40_000, PROBE_PORT),
    );
    blaster.send_one(&known)?;
    std::thread::sleep(Duration::from_millis(20));
    if drain(&socket) == 0 {
        bail!("a packet from an existing probe-peers member was not admitted");
    }
    // Where the time goes: the in-memory delta alone, on a copy (the real state is untouched).
    let mut copy = applied.policy.clone();
    let delta_compute: Vec<f64> = (0..50u8)
        .map(|n| {
            let change = MembershipChange {
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 92, 0, n + 1))],
                groups: BTreeSet::from(["probe-peers".to_string()]),
            };
            let started = Instant::now();
            let _ = copy.apply_membership(&change);
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    drop(copy);
    let mut write_us = Vec::with_capacity(additions);
    let mut enforced_us = Vec::with_capacity(additions);
    let mut probes = Vec::with_capacity(additions);
    for n in 0..additions {
        let address = Ipv4Addr::new(10, 90, (n / 250) as u8, (n % 250 + 1) as u8);
        let frame = topology.frame(address, SERVER, L4::udp(40_000, PROBE_PORT));
        drain(&socket);
        // ... and a future member's does not, until it joins.
        if n < 3 {
            blaster.send_one(&frame)?;
            std::thread::sleep(Duration::from_millis(5));
            if drain(&socket) != 0 {
                bail!("a packet from {address} passed before it joined the group");
            }
        }
        let change = MembershipChange {
            addresses: vec![IpAddr::V4(address)],
            groups: BTreeSet::from(["probe-peers".to_string()]),
        };
        let started = Instant::now();
        apply_membership(&mut datapath.maps, applied, &change)?;
        let written = started.elapsed();
        let mut sent = 0u32;
        let admitted = loop {
            blaster.send_one(&frame)?;
            sent += 1;
            // The frame is processed in softirq before `send` returns on a veth; the spin only
            // covers a deferral to ksoftirqd.
            let probe_started = Instant::now();
            let mut got = false;
            while probe_started.elapsed() < Duration::from_micros(200) {
                if socket.recv(&mut buffer).is_ok() {
                    got = true;
                    break;
                }
            }
            if got {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(1) {
                bail!("{address} was not admitted within a second of joining");
            }
        };
        write_us.push(written.as_secs_f64() * 1e6);
        enforced_us.push(admitted.as_secs_f64() * 1e6);
        probes.push(f64::from(sent));
    }
    Ok(AddMember {
        additions,
        write_us_p50: percentile(&write_us, 50.0),
        write_us_p99: percentile(&write_us, 99.0),
        write_us_max: percentile(&write_us, 100.0),
        enforced_us_p50: percentile(&enforced_us, 50.0),
        enforced_us_p99: percentile(&enforced_us, 99.0),
        enforced_us_max: percentile(&enforced_us, 100.0),
        probes_median: percentile(&probes, 50.0),
        delta_compute_us_p50: percentile(&delta_compute, 50.0),
        enforced_us,
        write_us,
    })
}

/// A directory for the watched config, removed on drop.
struct ConfigDir(std::path::PathBuf);

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Saves `text` the way editors do: write a temporary file, rename it over the config.
fn save(path: &Path, text: &str) -> Result<Instant> {
    let temporary = path.with_extension("toml.new");
    std::fs::write(&temporary, text)?;
    let saved = Instant::now();
    std::fs::rename(&temporary, path)?;
    Ok(saved)
}

/// Sends `frame` until the server socket receives one; the time from `since`.
fn until_admitted(
    blaster: &Blaster,
    socket: &UdpSocket,
    frame: &[u8],
    since: Instant,
) -> Result<Duration> {
    let mut buffer = [0u8; 256];
    loop {
        blaster.send_one(frame)?;
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_micros(500) {
            if socket.recv(&mut buffer).is_ok() {
                return Ok(since.elapsed());
            }
        }
        if since.elapsed() > Duration::from_secs(10) {
            bail!("the saved config was not enforced within 10 s");
        }
    }
}

fn file_save(saves: usize) -> Result<FileSave> {
    let topology = Topology::new()?;
    let pins = PinDir::new();
    let dir = ConfigDir(std::env::temp_dir().join(format!("sgwt-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let path = dir.0.join("sgwall.toml");
    let open = e2e::e2e_policy(&topology.link.right, "xdp");
    // The same policy with the UDP rule on another port: the client's datagrams are denied.
    let mut closed = open.clone();
    for rule in &mut closed.groups[0].ingress {
        if rule.proto == Proto::Udp && rule.peer == Peer::Group("clients".into()) {
            rule.ports = (e2e::UDP_PORT + 1, e2e::UDP_PORT + 1);
        }
    }
    std::fs::write(&path, closed.to_toml())?;
    let mut agent = AgentProcess::start(
        LogFormat::Json,
        &path,
        topology.server.name(),
        pins.path(),
        &[],
    );
    agent.wait_event("enforcing", Duration::from_secs(60), |event| {
        matches!(event, AgentEvent::Enforcing { .. })
    });
    // `runtime::run` starts watching the config only after it prints "enforcing" (and sets up
    // its event consumers): a save in that window is never seen. Give it a moment.
    std::thread::sleep(Duration::from_secs(1));
    let socket = netns::run_in(topology.server.name(), || {
        UdpSocket::bind(SocketAddr::from((SERVER, e2e::UDP_PORT)))
    })??;
    socket.set_nonblocking(true)?;
    let blaster = Blaster::new(topology.client.name(), &topology.link.left)?;
    let mut rule_change = Vec::new();
    let mut member_added = Vec::new();
    for n in 0..saves {
        // A fresh source port each time: an earlier admitted flow stays tracked (C4).
        let frame = topology.frame(CLIENT, SERVER, L4::udp(41_000 + n as u16, e2e::UDP_PORT));
        let saved = save(&path, &open.to_toml())?;
        rule_change.push(until_admitted(&blaster, &socket, &frame, saved)?.as_secs_f64() * 1e3);

        let newcomer = Ipv4Addr::new(10, 90, 200, n as u8 + 1);
        let frame = topology.frame(newcomer, SERVER, L4::udp(40_000, e2e::UDP_PORT));
        let mut grown = open.clone();
        grown.members.push(Member {
            address: newcomer,
            groups: vec!["clients".into()],
        });
        let saved = save(&path, &grown.to_toml())?;
        member_added.push(until_admitted(&blaster, &socket, &frame, saved)?.as_secs_f64() * 1e3);

        // Back to the closed policy (and without the newcomer), then let the reload land.
        save(&path, &closed.to_toml())?;
        std::thread::sleep(Duration::from_millis(800));
        let mut buffer = [0u8; 256];
        while socket.recv(&mut buffer).is_ok() {}
        eprintln!(
            "  control: file save {}/{saves}: rule change {:.0} ms, member added {:.0} ms",
            n + 1,
            rule_change.last().copied().unwrap_or_default(),
            member_added.last().copied().unwrap_or_default()
        );
    }
    drop(agent);
    Ok(FileSave {
        saves,
        rules: open.rules_of(&open.instances[0]).len(),
        members: open.members.len(),
        rule_change_ms: Summary::of(&rule_change),
        member_added_ms: Summary::of(&member_added),
    })
}
