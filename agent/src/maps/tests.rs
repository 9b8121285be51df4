use std::{collections::BTreeMap, net::IpAddr, path::Path};

use filter_common::{DIR_EGRESS, DIR_INGRESS, selector_for};
use proptest::prelude::*;

use super::*;
use crate::{
    compile::{self, addr_key, family_and_bytes},
    eval::{self, IpPacket, Transport},
    model::{Config, Direction},
    testgen,
};

fn config(text: &str) -> Config {
    match crate::config::load_str(text, Path::new("maps-test.toml")) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("invalid test config:\n{error}"),
    }
}

fn ifindexes(config: &Config) -> BTreeMap<String, u32> {
    config
        .instances
        .iter()
        .enumerate()
        .map(|(index, instance)| (instance.interface.clone(), 10 + index as u32))
        .collect()
}

fn apply(maps: &mut MemoryMaps, previous: Option<&Applied>, config: &Config) -> Applied {
    let slots = previous.map(|p| p.policy.ifslots()).unwrap_or_default();
    let compiled = compile::compile(config, &slots).expect("compiles");
    apply_full(maps, previous, compiled, ifindexes(config)).expect("applies")
}

/// The flow start a packet is, as the datapath classifies it.
fn flow_start(
    config: &Config,
    instance: &str,
    direction: Direction,
    packet: &IpPacket,
) -> FlowStart {
    let position = config
        .instances
        .iter()
        .position(|i| i.name == instance)
        .expect("instance");
    let (_, remote) = packet.local_remote(direction);
    let (family, peer) = family_and_bytes(remote);
    let (port, icmp_type, code) = match packet.transport {
        Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => (dst_port, 0, 0),
        Transport::Icmp {
            icmp_type, code, ..
        } => (0, icmp_type, code),
        Transport::Other(_) => (0, 0, 0),
    };
    FlowStart {
        ifindex: 10 + position as u32,
        dir: direction.index(),
        family,
        peer,
        proto: packet.proto(),
        selector: selector_for(packet.proto(), port, icmp_type, code),
    }
}

fn model_verdict(
    maps: &MemoryMaps,
    config: &Config,
    instance: &str,
    direction: Direction,
    packet: &IpPacket,
) -> Option<eval::RuleVerdict> {
    maps.classify(&flow_start(config, instance, direction, packet))
        .expect("interface configured")
        .map(|m| eval::RuleVerdict {
            rule: m.rule,
            untracked: m.untracked,
        })
}

fn evaluator_verdict(
    config: &Config,
    instance: &str,
    direction: Direction,
    packet: &IpPacket,
) -> Option<eval::RuleVerdict> {
    let instance = config.instance(instance).expect("instance");
    eval::classify(config, instance, direction, packet)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The compiled maps, looked up the way the datapath looks them up, pick the same rule (and
    /// the same C8 tracking) as the reference evaluator, on random policies and packets.
    #[test]
    fn compiled_maps_agree_with_the_evaluator(seed in any::<u64>()) {
        let mut rng = testgen::Rng::new(seed);
        let config = testgen::random_config(&mut rng);
        let mut maps = MemoryMaps::default();
        apply(&mut maps, None, &config);
        let compiled = compile::compile(&config, &BTreeMap::new()).expect("compiles");
        for _ in 0..60 {
            let (instance, direction, packet) = testgen::random_packet(&mut rng, &config);
            let model = model_verdict(&maps, &config, &instance, direction, &packet);
            let reference = evaluator_verdict(&config, &instance, direction, &packet);
            prop_assert_eq!(model, reference, "seed {} {} {} {:?}", seed, instance, direction, packet);
            let model = model_acl(&maps, &compiled, &config, &instance, direction, &packet);
            let reference = evaluator_acl(&compiled, &config, &instance, direction, &packet);
            prop_assert_eq!(model, reference, "ACL: seed {} {} {} {:?}", seed, instance, direction, packet);
        }
    }
}

/// What the network ACL does with a packet: whether it passes and the number of the entry
/// that decided (`None`: no entry, the own subnet, or no ACL to consult).
type AclOutcome = (bool, Option<u16>);

fn model_acl(
    maps: &MemoryMaps,
    compiled: &compile::CompiledPolicy,
    config: &Config,
    instance: &str,
    direction: Direction,
    packet: &IpPacket,
) -> AclOutcome {
    let flow = flow_start(config, instance, direction, packet);
    let verdict = maps
        .acl(&AclPacket {
            ifindex: flow.ifindex,
            dir: flow.dir,
            family: flow.family,
            peer: flow.peer,
            proto: flow.proto,
            selector: flow.selector,
        })
        .expect("interface configured");
    let acl = compiled
        .interface_of_instance(instance)
        .and_then(|i| i.acl.as_ref());
    match verdict {
        ModelAcl::NotFiltered | ModelAcl::Entry { bit: 0, .. } => (true, None),
        ModelAcl::Entry { bit, allows } => (
            allows,
            acl.and_then(|acl| acl.entry(direction, bit))
                .map(|e| e.number),
        ),
        ModelAcl::NoEntry => (false, None),
    }
}

/// The evaluator's ACL verdict, where an ACL that admits everything is not consulted at all.
fn evaluator_acl(
    compiled: &compile::CompiledPolicy,
    config: &Config,
    instance: &str,
    direction: Direction,
    packet: &IpPacket,
) -> AclOutcome {
    let filtered = compiled
        .interface_of_instance(instance)
        .is_some_and(|i| i.acl.is_some());
    let instance = config.instance(instance).expect("instance");
    match eval::acl_verdict(config, instance, direction, packet) {
        None => (true, None),
        Some(verdict) if !filtered => {
            assert!(verdict.allows(), "an unconsulted ACL admits everything");
            (true, None)
        }
        Some(eval::AclVerdict::Entry { number, action }) => {
            (action == crate::model::AclAction::Allow, Some(number))
        }
        Some(eval::AclVerdict::NoEntry) => (false, None),
    }
}

/// A map writer that, after every single write, checks that the maps admit nothing both the
/// old and the new policy deny: the claim of `apply_full`'s ordering.
struct Watched<'a> {
    maps: MemoryMaps,
    /// Probes that the old and the new policy both deny: none may ever be admitted.
    denied_by_both: Vec<FlowStart>,
    writes: usize,
    _lifetime: std::marker::PhantomData<&'a ()>,
}

impl Watched<'_> {
    fn check(&mut self) {
        self.writes += 1;
        for probe in &self.denied_by_both {
            assert!(
                self.maps.classify(probe).flatten().is_none(),
                "after write {}: {probe:?} admitted though old and new policy deny it",
                self.writes
            );
        }
    }
}

struct CheckedTable<'a, 'b, K: Ord, V> {
    table: &'a mut MemoryTable<K, V>,
    owner: *mut Watched<'b>,
}

macro_rules! watched_table {
    ($method:ident, $field:ident, $key:ty, $value:ty) => {
        fn $method(&mut self) -> &mut dyn Table<$key, $value> {
            // The checking wrapper needs both the table and the whole watcher; a raw pointer
            // keeps this test double small. Single-threaded, and the watcher outlives the call.
            let owner: *mut Watched = self;
            let table = &mut self.maps.$field as *mut MemoryTable<$key, $value>;
            Box::leak(Box::new(CheckedTable {
                table: unsafe { &mut *table },
                owner,
            }))
        }
    };
}

impl<K: Ord + Clone, V: Clone> Table<K, V> for CheckedTable<'_, '_, K, V> {
    fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        self.table.get(key)
    }
    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        self.table.put(key, value)?;
        unsafe { (*self.owner).check() };
        Ok(())
    }
    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        self.table.delete(key)?;
        unsafe { (*self.owner).check() };
        Ok(())
    }
    fn keys(&self) -> Result<Vec<K>, MapError> {
        self.table.keys()
    }
}

impl PolicyMaps for Watched<'_> {
    fn generation(&self) -> Result<u64, MapError> {
        Ok(self.maps.generation)
    }
    fn set_generation(&mut self, generation: u64) -> Result<(), MapError> {
        self.maps.generation = generation;
        self.check();
        Ok(())
    }
    watched_table!(ifaces, ifaces, IfaceKey, IfaceConfig);
    watched_table!(cidrs, cidrs, Lpm<CidrKey>, RuleBitmap);
    watched_table!(ports, ports, Lpm<PortKey>, RuleBitmap);
    watched_table!(group_bits, group_bits, GroupBitsKey, RuleBitmap);
    watched_table!(members, members, AddrKey, MemberValue);
    watched_table!(local_addrs, local_addrs, LocalAddrKey, u32);
    watched_table!(acl_cidrs, acl_cidrs, Lpm<CidrKey>, AclBits);
    watched_table!(acl_ports, acl_ports, Lpm<PortKey>, AclBits);
    watched_table!(prefix_lists, prefix_lists, Lpm<AddrKey>, MemberValue);
    watched_table!(prefix_list_bits, prefix_list_bits, GroupBitsKey, RuleBitmap);
}

/// Every flow start worth asking about for a config pair: every pool address, in and out,
/// on the ports and protocols the random generator uses.
fn probes(configs: &[&Config]) -> Vec<FlowStart> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in 0..4u8 {
        for b in 0..6u8 {
            addresses.push(IpAddr::from([10, 0, a, b]));
            addresses.push(format!("fd00::{a}:{b}").parse().expect("v6"));
        }
    }
    addresses.push("192.0.2.1".parse().expect("v4"));
    addresses.push("2001:db8::1".parse().expect("v6"));
    let instances = configs.iter().map(|c| c.instances.len()).max().unwrap_or(0);
    let mut probes = Vec::new();
    for ifindex in 10..10 + instances as u32 {
        for dir in [DIR_INGRESS, DIR_EGRESS] {
            for address in &addresses {
                let (family, peer) = family_and_bytes(*address);
                for (proto, selector) in [
                    (6u8, 80u16),
                    (6, 22),
                    (17, 53),
                    (1, 8 << 8),
                    (58, 128 << 8),
                    (47, 0),
                ] {
                    probes.push(FlowStart {
                        ifindex,
                        dir,
                        family,
                        peer,
                        proto,
                        selector,
                    });
                }
            }
        }
    }
    probes
}

#[test]
fn no_write_during_an_update_admits_what_old_and_new_policy_deny() {
    for seed in 0..40u64 {
        let mut rng = testgen::Rng::new(seed);
        let old_config = testgen::random_config(&mut rng);
        let mut new_config = testgen::random_config(&mut rng);
        // Keep the interfaces comparable: the same names, so ifindexes line up.
        new_config.instances.truncate(old_config.instances.len());

        let mut old_maps = MemoryMaps::default();
        let old_applied = apply(&mut old_maps, None, &old_config);
        let mut new_maps = old_maps.clone();
        apply(&mut new_maps, Some(&old_applied), &new_config);

        let admitted =
            |maps: &MemoryMaps, probe: &FlowStart| maps.classify(probe).flatten().is_some();
        let denied_by_both: Vec<FlowStart> = probes(&[&old_config, &new_config])
            .into_iter()
            .filter(|probe| !admitted(&old_maps, probe) && !admitted(&new_maps, probe))
            .collect();
        let mut watched = Watched {
            maps: old_maps.clone(),
            denied_by_both,
            writes: 0,
            _lifetime: std::marker::PhantomData,
        };
        let slots = old_applied.policy.ifslots();
        let compiled = compile::compile(&new_config, &slots).expect("compiles");
        apply_full(
            &mut watched,
            Some(&old_applied),
            compiled,
            ifindexes(&new_config),
        )
        .expect("applies");
        assert!(
            watched.writes > 0,
            "seed {seed}: the update wrote something"
        );
    }
}

/// P1: once an update is done, the prefix list trie is what a fresh start on the new policy
/// writes: an entry only the old policy had, kept through the flip at the lists both cover,
/// must not go on hiding the new policy's shorter entries (and the lists only it has there).
#[test]
fn p1_an_update_ends_with_the_trie_a_fresh_start_writes() {
    for seed in 0..60u64 {
        let mut rng = testgen::Rng::new(seed);
        let old_config = testgen::random_config(&mut rng);
        let mut new_config = testgen::random_config(&mut rng);
        new_config.instances.truncate(old_config.instances.len());
        let mut updated = MemoryMaps::default();
        let old_applied = apply(&mut updated, None, &old_config);
        apply(&mut updated, Some(&old_applied), &new_config);
        let mut fresh = MemoryMaps::default();
        apply(&mut fresh, None, &new_config);
        assert_eq!(
            updated.prefix_lists.entries, fresh.prefix_lists.entries,
            "seed {seed}"
        );
        for probe in probes(&[&new_config]) {
            assert_eq!(
                updated.classify(&probe).flatten().is_some(),
                fresh.classify(&probe).flatten().is_some(),
                "seed {seed}: {probe:?}"
            );
        }
    }
}

/// P1: editing prefix list entries is a delta in the generation in force, and no single write
/// admits what both the old and the new entries deny.
#[test]
fn p1_prefix_list_edits_are_a_delta_that_never_admits_what_both_deny() {
    let mut edits = 0;
    for seed in 0..60u64 {
        let mut rng = testgen::Rng::new(seed);
        let old_config = testgen::random_config(&mut rng);
        if old_config.prefix_lists.is_empty() {
            continue;
        }
        let mut new_config = old_config.clone();
        let replacement = testgen::random_config(&mut rng);
        for (list, other) in new_config
            .prefix_lists
            .iter_mut()
            .zip(&replacement.prefix_lists)
        {
            list.entries = other.entries.clone();
        }
        new_config.prefix_lists[0].entries.truncate(1);

        let mut old_maps = MemoryMaps::default();
        let old_applied = apply(&mut old_maps, None, &old_config);
        let mut fresh_maps = MemoryMaps::default();
        apply(&mut fresh_maps, None, &new_config);
        let admitted =
            |maps: &MemoryMaps, probe: &FlowStart| maps.classify(probe).flatten().is_some();
        let all_probes = probes(&[&old_config]);
        let denied_by_both: Vec<FlowStart> = all_probes
            .iter()
            .filter(|probe| !admitted(&old_maps, probe) && !admitted(&fresh_maps, probe))
            .copied()
            .collect();
        let mut watched = Watched {
            maps: old_maps.clone(),
            denied_by_both,
            writes: 0,
            _lifetime: std::marker::PhantomData,
        };
        let mut applied = old_applied.clone();
        apply_prefix_lists(&mut watched, &mut applied, &new_config).expect("delta");
        assert_eq!(watched.maps.generation, old_maps.generation, "no flip (P1)");
        for probe in &all_probes {
            assert_eq!(
                watched.maps.classify(probe),
                fresh_maps.classify(probe),
                "seed {seed}: after the delta, {probe:?} as a fresh apply"
            );
        }
        edits += usize::from(watched.writes > 0);
    }
    assert!(edits >= 10, "only {edits} seeds edited anything");
}

#[test]
fn membership_delta_admits_the_new_member_with_one_write() {
    let text = include_str!("../../../examples/three-tier.toml");
    let config = config(text);
    let mut maps = MemoryMaps::default();
    let mut applied = apply(&mut maps, None, &config);
    let newcomer: IpAddr = "10.0.2.77".parse().expect("v4");
    let db_index = config
        .instances
        .iter()
        .position(|i| i.name == "db-1")
        .expect("db") as u32;
    let (family, peer) = family_and_bytes(newcomer);
    let to_db = FlowStart {
        ifindex: 10 + db_index,
        dir: DIR_INGRESS,
        family,
        peer,
        proto: 6,
        selector: 3306,
    };
    assert_eq!(maps.classify(&to_db), Some(None), "not a member yet");

    let before = maps.clone();
    let delta = apply_membership(
        &mut maps,
        &mut applied,
        &crate::compile::MembershipChange {
            addresses: vec![newcomer],
            groups: ["app-sg".to_string()].into_iter().collect(),
        },
    )
    .expect("delta");
    assert!(delta.new_sets.is_empty());
    assert_eq!(maps.members.entries.len(), before.members.entries.len() + 1);
    assert_eq!(
        maps.generation, before.generation,
        "no flip for a membership change"
    );
    assert!(
        maps.classify(&to_db).flatten().is_some(),
        "G3: admitted without touching db-sg"
    );
    assert_eq!(
        maps.members
            .entries
            .get(&addr_key(newcomer))
            .map(|m| m.set_id),
        applied.policy.members.get(&addr_key(newcomer)).copied()
    );
}

#[test]
fn garbage_collection_leaves_only_the_active_slot() {
    let text = include_str!("../../../examples/three-tier.toml");
    let config = config(text);
    let mut maps = MemoryMaps::default();
    let applied = apply(&mut maps, None, &config);
    apply(&mut maps, Some(&applied), &config);
    let active = slot_of_generation(maps.generation);
    assert!(
        maps.cidrs.entries.keys().any(|k| k.data.slot != active),
        "both slots after a flip"
    );
    collect_garbage(&mut maps).expect("collects");
    assert!(maps.cidrs.entries.keys().all(|k| k.data.slot == active));
    assert!(maps.ifaces.entries.keys().all(|k| k.slot == active));
    assert!(maps.group_bits.entries.keys().all(|k| k.slot == active));
}

#[test]
fn restart_without_memory_removes_changed_members_instead_of_guessing() {
    let text = include_str!("../../../examples/three-tier.toml");
    let mut maps = MemoryMaps::default();
    apply(&mut maps, None, &config(text));
    // A restarted agent (no `previous`) with app-9 moved to db-sg.
    let moved = config(&text.replace(
        "security_groups = [\"app-sg\"]\n\n# Unfiltered",
        "security_groups = [\"db-sg\"]\n\n# Unfiltered",
    ));
    let app9 = addr_key("10.0.2.99".parse().expect("v4"));
    let before = maps.members.entries.get(&app9).copied();
    apply(&mut maps, None, &moved);
    let after = maps.members.entries.get(&app9).copied();
    let expected = compile::compile(&moved, &BTreeMap::new())
        .expect("compiles")
        .members
        .get(&app9)
        .copied();
    assert_eq!(after.map(|m| m.set_id), expected);
    assert_ne!(before, after, "app-9 changed groups");
}
