//! BPF_PROG_TEST_RUN harness: the real object, maps filled by the real compiler, frames run
//! through the program a real packet in that direction would meet.
//!
//! BPF_PROG_TEST_RUN resolves `ifindex` against real devices, so each harness enters a fresh
//! network namespace *on the calling test thread* and creates a veth device per instance,
//! named as the config names it. The namespace goes away with the harness and its thread.

use std::collections::BTreeMap;

use aya::{
    maps::{HashMap, MapData, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use filter_common::{
    Counter, CtEntry, CtKey, FragEntry, FragKey, REASON_COUNT, RULE_HITS_LEN, Reason,
    counter_index, map_names, program_names, rule_hit_index, slot_of_generation,
};
use sgwall::{
    compile::{self, CompiledPolicy},
    datapath::loader::{Datapath, LoadOptions},
    maps::{Applied, Capacities, PolicyMaps, apply_full, apply_prefix_lists},
    model::{AttachMode, Config, Direction, HostIngressHook},
};

use crate::NetNs;

/// What the datapath did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub admitted: bool,
    pub reason: Reason,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.admitted { "admitted" } else { "dropped" };
        write!(f, "{verdict} ({})", self.reason.name())
    }
}

pub struct TestDatapath {
    pub datapath: Datapath,
    pub config: Config,
    pub applied: Applied,
    /// Interface name → ifindex in this harness's namespace.
    pub ifindexes: BTreeMap<String, u32>,
    _namespace: NetNs,
}

const TC_ACT_UNSPEC: u32 = u32::MAX;
const XDP_PASS: u32 = 2;

impl TestDatapath {
    pub fn from_toml(text: &str) -> Self {
        Self::new(parse(text))
    }

    pub fn new(config: Config) -> Self {
        Self::with_capacities(config, Capacities::default())
    }

    pub fn with_capacities(config: Config, capacities: Capacities) -> Self {
        let namespace = NetNs::new();
        sgwall::netns::enter(&sgwall::netns::path_of(namespace.name()))
            .unwrap_or_else(|e| panic!("entering {}: {e}", namespace.name()));
        let mut ifindexes = BTreeMap::new();
        // veth, as there is no dummy device in every kernel; the peer only has to exist.
        for (index, instance) in config.instances.iter().enumerate() {
            let peer = format!("sgwpeer{index}");
            crate::run(
                "ip",
                &[
                    "link",
                    "add",
                    &instance.interface,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer,
                ],
            );
            crate::run("ip", &["link", "set", &instance.interface, "up"]);
            ifindexes.insert(
                instance.interface.clone(),
                namespace_ifindex(&instance.interface),
            );
        }
        // One verification at a time: verifying these programs in parallel threads makes the
        // kernel give up with EAGAIN, and two cores gain nothing from it anyway.
        static VERIFYING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let verifying = VERIFYING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut datapath = Datapath::load(&LoadOptions {
            capacities,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("loading the datapath: {e}"));
        drop(verifying);
        let compiled = compile::compile(&config, &BTreeMap::new()).expect("compiles");
        let applied =
            apply_full(&mut datapath.maps, None, compiled, ifindexes.clone()).expect("applies");
        Self {
            datapath,
            config,
            applied,
            ifindexes,
            _namespace: namespace,
        }
    }

    /// Replaces the policy the way a reload does (generation flip).
    pub fn reconfigure(&mut self, config: Config) {
        let previous_slots: BTreeMap<String, u16> = self.applied.policy.ifslots();
        let compiled = compile::compile(&config, &previous_slots).expect("compiles");
        self.applied = apply_full(
            &mut self.datapath.maps,
            Some(&self.applied),
            compiled,
            self.ifindexes.clone(),
        )
        .expect("applies");
        self.config = config;
    }

    /// Edits prefix list entries the way a reload does when only they changed (P1): a delta in
    /// the generation in force.
    pub fn edit_prefix_lists(&mut self, config: Config) {
        let generation = self.applied.generation;
        apply_prefix_lists(&mut self.datapath.maps, &mut self.applied, &config).expect("applies");
        assert_eq!(self.applied.generation, generation, "no flip");
        self.config = config;
    }

    pub fn policy(&self) -> &CompiledPolicy {
        &self.applied.policy
    }

    pub fn ifindex(&self, instance: &str) -> u32 {
        let interface = &self.instance(instance).interface;
        self.ifindexes[interface]
    }

    fn instance(&self, name: &str) -> &sgwall::model::Instance {
        self.config
            .instance(name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    pub fn ifslot(&self, instance: &str) -> u16 {
        self.policy()
            .interface_of_instance(instance)
            .expect("compiled instance")
            .ifslot
    }

    /// Runs `frame` through the program that sees traffic of `direction` on the instance's
    /// interface, and reports the verdict and the reason it was counted under.
    pub fn send(&mut self, instance: &str, direction: Direction, frame: &[u8]) -> Sent {
        let ifindex = self.ifindex(instance);
        let ifslot = self.ifslot(instance);
        let (attach, hook) = {
            let i = self.instance(instance);
            (i.attach, i.host_ingress_hook)
        };
        let before = self.counter_row(ifslot, direction);
        let program = match (attach, direction) {
            (AttachMode::Port, Direction::Egress) => program_names::TC_INGRESS,
            (AttachMode::Port, Direction::Ingress) => program_names::TC_EGRESS,
            (AttachMode::Host, Direction::Ingress) if hook == HostIngressHook::Xdp => {
                program_names::XDP_INGRESS
            }
            (AttachMode::Host, Direction::Ingress) => program_names::TC_INGRESS,
            (AttachMode::Host, Direction::Egress) => program_names::TC_EGRESS,
        };
        let admitted = if program == program_names::XDP_INGRESS {
            self.run_xdp(ifindex, frame) == XDP_PASS
        } else {
            self.run_tc(program, ifindex, frame) == TC_ACT_UNSPEC
        };
        let after = self.counter_row(ifslot, direction);
        let changed: Vec<u32> = (0..REASON_COUNT as u32)
            .filter(|r| after[*r as usize] != before[*r as usize])
            .collect();
        assert_eq!(
            changed.len(),
            1,
            "exactly one reason counts each packet; changed: {changed:?}"
        );
        let reason = Reason::from_u32(changed[0])
            .unwrap_or_else(|| panic!("counter cell {} belongs to no reason", changed[0]));
        assert_eq!(
            reason.passes(),
            admitted,
            "reason {} disagrees with the verdict",
            reason.name()
        );
        Sent { admitted, reason }
    }

    fn run_tc(&mut self, name: &str, ifindex: u32, frame: &[u8]) -> u32 {
        let program: &mut SchedClassifier = self
            .datapath
            .ebpf
            .program_mut(name)
            .expect("program")
            .try_into()
            .expect("tc");
        // struct __sk_buff up to `ifindex` (offset 40): the device the packet is on.
        let mut context = [0u8; 44];
        context[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&context);
        program
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN (tc)")
            .return_value
    }

    fn run_xdp(&mut self, ifindex: u32, frame: &[u8]) -> u32 {
        let program: &mut Xdp = self
            .datapath
            .ebpf
            .program_mut(program_names::XDP_INGRESS)
            .expect("program")
            .try_into()
            .expect("xdp");
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
        let mut context = [0u8; 24];
        context[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        context[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&context);
        program
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN (xdp)")
            .return_value
    }

    /// Packets counted per reason for one interface and direction, summed over CPUs.
    pub fn counter_row(&self, ifslot: u16, direction: Direction) -> Vec<u64> {
        let counters: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(
            self.datapath
                .ebpf
                .map(map_names::COUNTERS)
                .expect("counters map"),
        )
        .expect("per-cpu array");
        (0..REASON_COUNT as u32)
            .map(|reason| {
                counters
                    .get(&counter_index(ifslot, direction.index(), reason), 0)
                    .map(|values| values.iter().map(|c| c.packets).sum())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// New flows the rule with this global id admitted in the active slot, summed over CPUs.
    pub fn rule_hits(&self, rule_id: u32) -> u64 {
        let hits: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.datapath
                .ebpf
                .map(map_names::RULE_HITS)
                .expect("hits map"),
        )
        .expect("per-cpu array");
        let slot = slot_of_generation(self.applied.generation);
        let index = rule_hit_index(slot, rule_id);
        assert!(index < RULE_HITS_LEN);
        hits.get(&index, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    /// Global rule id of the instance's rule `bit` in `direction`.
    pub fn global_rule_id(&self, instance: &str, direction: Direction, bit: u16) -> u32 {
        let compiled = self
            .policy()
            .interface_of_instance(instance)
            .expect("instance");
        compiled.config.rule_base[usize::from(direction.index())] + u32::from(bit)
    }

    /// Global hit id of the entry numbered `number` of the instance's network ACL in
    /// `direction`, if the interface consults an ACL and the entry exists.
    pub fn acl_entry_id(&self, instance: &str, direction: Direction, number: u16) -> Option<u32> {
        let compiled = self.policy().interface_of_instance(instance)?;
        let dir = usize::from(direction.index());
        let position = compiled.acl.as_ref()?.entries[dir]
            .iter()
            .position(|entry| entry.number == number)?;
        Some(compiled.config.acl_rule_base[dir] + position as u32 + 1)
    }

    pub fn established_flows(&self) -> Vec<(CtKey, CtEntry)> {
        let map: HashMap<&MapData, CtKey, CtEntry> = HashMap::try_from(
            self.datapath
                .ebpf
                .map(map_names::CT_ESTABLISHED)
                .expect("ct map"),
        )
        .expect("hash");
        map.iter().map(|r| r.expect("entry")).collect()
    }

    pub fn embryonic_flows(&self) -> Vec<(CtKey, CtEntry)> {
        let map: HashMap<&MapData, CtKey, CtEntry> = HashMap::try_from(
            self.datapath
                .ebpf
                .map(map_names::CT_EMBRYONIC)
                .expect("ct map"),
        )
        .expect("lru hash");
        map.iter().map(|r| r.expect("entry")).collect()
    }

    /// Ages every tracked flow by `seconds` (rewrites `last_seen`), to test expiry without
    /// waiting.
    pub fn age_flows(&mut self, seconds: u64) {
        let shift = seconds * 1_000_000_000;
        let age =
            |entry: &mut CtEntry| entry.last_seen_ns = entry.last_seen_ns.saturating_sub(shift);
        let ebpf = &mut self.datapath.ebpf;
        let mut established: HashMap<&mut MapData, CtKey, CtEntry> =
            HashMap::try_from(ebpf.map_mut(map_names::CT_ESTABLISHED).expect("ct map"))
                .expect("hash");
        let entries: Vec<_> = established.iter().map(|r| r.expect("entry")).collect();
        for (key, mut entry) in entries {
            age(&mut entry);
            established.insert(key, entry, 0).expect("rewrite");
        }
        let mut embryonic: HashMap<&mut MapData, CtKey, CtEntry> =
            HashMap::try_from(ebpf.map_mut(map_names::CT_EMBRYONIC).expect("ct map"))
                .expect("lru hash");
        let entries: Vec<_> = embryonic.iter().map(|r| r.expect("entry")).collect();
        for (key, mut entry) in entries {
            age(&mut entry);
            embryonic.insert(key, entry, 0).expect("rewrite");
        }
    }

    /// Forgets every tracked flow and fragment, as after a long idle spell.
    pub fn flush_conntrack(&mut self) {
        let ebpf = &mut self.datapath.ebpf;
        for name in [map_names::CT_ESTABLISHED, map_names::CT_EMBRYONIC] {
            let mut table: HashMap<&mut MapData, CtKey, CtEntry> =
                HashMap::try_from(ebpf.map_mut(name).expect("ct map")).expect("hash");
            let keys: Vec<CtKey> = table.keys().map(|k| k.expect("key")).collect();
            for key in keys {
                let _ = table.remove(&key);
            }
        }
        let mut fragments: HashMap<&mut MapData, FragKey, FragEntry> =
            HashMap::try_from(ebpf.map_mut(map_names::FRAGMENTS).expect("frag map")).expect("hash");
        let keys: Vec<FragKey> = fragments.keys().map(|k| k.expect("key")).collect();
        for key in keys {
            let _ = fragments.remove(&key);
        }
    }

    pub fn maps(&mut self) -> &mut dyn PolicyMaps {
        &mut self.datapath.maps
    }
}

/// Through `ip`, not /sys: /sys shows the devices of the namespace it was mounted in.
fn namespace_ifindex(interface: &str) -> u32 {
    let out = crate::run("ip", &["-o", "link", "show", "dev", interface]);
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex for {interface}"))
}

/// Parses and validates a config written inline in a test.
pub fn parse(text: &str) -> Config {
    match sgwall::config::load_str(text, std::path::Path::new("test.toml")) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("test config is invalid:\n{error}"),
    }
}

/// Stack bytes each program's own frame uses, from its instructions: the deepest `r10`-relative
/// access. The verifier's "stack depth" is this, rounded up to 8 (plus 0 for the helper
/// subprograms such as memset, which use no stack).
pub fn stack_depths(object: &[u8]) -> BTreeMap<String, u32> {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let file = object::File::parse(object).expect("the datapath object is ELF");
    let mut depths = BTreeMap::new();
    for symbol in file.symbols() {
        let Ok(name) = symbol.name() else { continue };
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let section_name = section.name().unwrap_or("");
        if !(section_name == "xdp" || section_name == "classifier") || symbol.size() == 0 {
            continue;
        }
        let data = section.data().expect("section data");
        let start = symbol.address() as usize;
        let end = (start + symbol.size() as usize).min(data.len());
        let mut deepest: i64 = 0;
        let mut frame_pointer_copies = [false; 11];
        for insn in data[start..end].chunks_exact(8) {
            let opcode = insn[0];
            let dst = usize::from(insn[1] & 0x0f);
            let src = usize::from(insn[1] >> 4);
            let offset = i64::from(i16::from_le_bytes([insn[2], insn[3]]));
            let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            let class = opcode & 0x07;
            match class {
                // LDX: src is the base; ST/STX: dst is the base.
                0x01 if src == 10 => deepest = deepest.min(offset),
                0x02 | 0x03 if dst == 10 => deepest = deepest.min(offset),
                _ => {}
            }
            // `rX = r10` then `rX += imm`: a stack address handed to a helper or copied to.
            if opcode == 0xbf && dst < 11 {
                frame_pointer_copies[dst] = src == 10;
            } else if opcode == 0x07 && dst < 11 && frame_pointer_copies[dst] {
                deepest = deepest.min(imm);
                frame_pointer_copies[dst] = false;
            } else if dst < 11 && (class == 0x04 || class == 0x07 || class == 0x01) {
                frame_pointer_copies[dst] = false;
            }
        }
        depths.insert(
            name.to_string(),
            (deepest.unsigned_abs() as u32).div_ceil(8) * 8,
        );
    }
    depths
}
