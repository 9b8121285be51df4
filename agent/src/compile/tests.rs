use std::path::Path;

use super::*;
use crate::model::Config;

fn config(text: &str) -> Config {
    match crate::config::load_str(text, Path::new("compile-test.toml")) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("invalid test config:\n{error}"),
    }
}

const NESTED_CIDRS: &str = r#"
[[security_group]]
name = "g"
egress = []
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "22"
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "80"
  cidr = ["10.1.2.0/24"]
  [[security_group.ingress]]
  protocol = "udp"
  ports = "1000-2000"
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "all"
  groups = ["g"]
[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.9.9.9"]
security_groups = ["g"]
[[member]]
name = "m"
addresses = ["10.5.5.5", "fd00::5"]
security_groups = ["g"]
"#;

fn compiled(text: &str) -> CompiledPolicy {
    compile(&config(text), &BTreeMap::new()).expect("compiles")
}

fn bits(bitmap: &RuleBitmap) -> Vec<usize> {
    (0..16).filter(|bit| bitmap.get(*bit)).collect()
}

#[test]
fn each_cidr_entry_carries_every_rule_whose_prefix_covers_it() {
    let policy = compiled(NESTED_CIDRS);
    let interface = &policy.interfaces[0];
    let entry = |prefix_len: u8| {
        interface
            .cidrs
            .iter()
            .find(|e| e.dir == DIR_INGRESS && e.prefix_len == prefix_len)
            .map(|e| bits(&e.rules))
            .expect("entry")
    };
    assert_eq!(
        entry(24),
        vec![0, 1, 2],
        "10.1.2.0/24 is inside 10.0.0.0/8 and 0.0.0.0/0"
    );
    assert_eq!(entry(8), vec![0, 2]);
    assert_eq!(entry(0), vec![2]);
}

#[test]
fn port_ranges_become_disjoint_prefixes_per_protocol() {
    let policy = compiled(NESTED_CIDRS);
    let udp: Vec<&PortEntry> = policy.interfaces[0]
        .ports
        .iter()
        .filter(|e| e.proto == PROTO_UDP)
        .collect();
    let covered: u32 = udp.iter().map(|e| 1u32 << (16 - e.prefix_len)).sum();
    assert_eq!(covered, 1001, "1000-2000 exactly");
    assert!(udp.iter().all(|e| bits(&e.rules) == vec![2]));
}

#[test]
fn all_protocol_rules_and_group_rules_are_kept_apart() {
    let policy = compiled(NESTED_CIDRS);
    let interface = &policy.interfaces[0];
    assert_eq!(bits(&interface.config.all_protocols[0]), vec![3]);
    assert_eq!(bits(&interface.group_rules[0]["g"]), vec![3]);
    assert!(interface.ports.iter().all(|e| !e.rules.get(3)));
}

#[test]
fn every_address_of_every_member_maps_to_its_membership_set() {
    let policy = compiled(NESTED_CIDRS);
    let set = set_id(&BTreeSet::from(["g".to_string()]));
    for address in ["10.9.9.9", "10.5.5.5", "fd00::5"] {
        let key = addr_key(address.parse().expect("address"));
        assert_eq!(policy.members.get(&key), Some(&set), "{address}");
    }
    assert_eq!(policy.sets.len(), 1);
}

#[test]
fn set_ids_depend_on_content_not_order() {
    let ab = BTreeSet::from(["a".to_string(), "b".to_string()]);
    let ba: BTreeSet<String> = ["b", "a"].into_iter().map(String::from).collect();
    assert_eq!(set_id(&ab), set_id(&ba));
    assert_ne!(set_id(&ab), set_id(&BTreeSet::from(["ab".to_string()])));
}

/// Set ids live in pinned maps across agent versions, so their values are part of the layout.
#[test]
fn set_ids_are_fnv1a_of_nul_terminated_names() {
    assert_eq!(
        fnv1a(*b"a"),
        0xaf63_dc4c_8601_ec8c,
        "the published FNV-1a vector"
    );
    let groups = BTreeSet::from(["db-sg".to_string(), "app-sg".to_string()]);
    assert_eq!(set_id(&groups), 0x5cc2_9290_55b4_436a);
}

#[test]
fn c8_untracked_bits_need_any_peer_and_an_open_reverse_direction() {
    let policy = compiled(include_str!("../../../examples/three-tier.toml"));
    let web = policy.interface_of_instance("web-1").expect("web-1");
    let untracked_tcp_in = bits(&web.config.untracked[untracked_index(DIR_INGRESS, 0)]);
    // 80 and 443 from 0.0.0.0/0 and ::/0 (rules 0-3); SSH from the admin range is tracked.
    assert_eq!(untracked_tcp_in, vec![0, 1, 2, 3]);
    let untracked_tcp_out = &web.config.untracked[untracked_index(DIR_EGRESS, 0)];
    assert!(
        untracked_tcp_out.is_empty(),
        "inbound is not open on every port"
    );
}

#[test]
fn interfaces_keep_their_slots_and_new_ones_fill_gaps() {
    let policy = config(include_str!("../../../examples/three-tier.toml"));
    let previous = BTreeMap::from([("sgw-db1".to_string(), 0u16), ("gone".to_string(), 1)]);
    let slots = assign_ifslots(&policy, &previous).expect("slots");
    assert_eq!(slots["sgw-db1"], 0);
    let mut others = vec![slots["sgw-web1"], slots["sgw-app1"]];
    others.sort_unstable();
    assert_eq!(others, vec![1, 2]);
}

#[test]
fn rule_ids_of_interfaces_do_not_overlap() {
    let policy = compiled(include_str!("../../../examples/three-tier.toml"));
    let mut ranges: Vec<(u32, u32)> = policy
        .interfaces
        .iter()
        .flat_map(|i| {
            (0..2).map(move |dir| {
                let base = i.config.rule_base[dir];
                (base, base + u32::from(i.config.rule_count[dir]))
            })
        })
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{ranges:?}");
    }
}

#[test]
fn joining_a_group_is_one_member_write_when_the_set_exists() {
    let mut policy = compiled(include_str!("../../../examples/three-tier.toml"));
    let app = BTreeSet::from(["app-sg".to_string()]);
    let delta = policy.apply_membership(&MembershipChange {
        addresses: vec!["10.0.2.50".parse().expect("address")],
        groups: app.clone(),
    });
    assert!(delta.new_sets.is_empty(), "app-sg is already in use");
    assert_eq!(delta.members.len(), 1);

    let both = BTreeSet::from(["app-sg".to_string(), "db-sg".to_string()]);
    let delta = policy.apply_membership(&MembershipChange {
        addresses: vec!["10.0.2.50".parse().expect("address")],
        groups: both.clone(),
    });
    assert_eq!(delta.new_sets, vec![set_id(&both)]);
    let leave = policy.apply_membership(&MembershipChange {
        addresses: vec!["10.0.2.50".parse().expect("address")],
        groups: BTreeSet::new(),
    });
    assert_eq!(
        leave.members,
        vec![(addr_key("10.0.2.50".parse().expect("address")), None)]
    );
    assert!(
        !policy.sets.contains_key(&set_id(&both)),
        "unused sets are forgotten"
    );
}

#[test]
fn too_many_rules_for_the_bitmap_is_an_error() {
    let peers: Vec<String> = (0..1001)
        .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
        .collect();
    let mut policy = config(NESTED_CIDRS);
    policy.security_groups[0].ingress[0].peers = peers
        .iter()
        .map(|p| Peer::Cidr(p.trim_matches('"').parse().expect("cidr")))
        .collect();
    let error = compile(&policy, &BTreeMap::new()).expect_err("over the limit");
    assert!(
        matches!(error, CompileError::TooManyRules { count, .. } if count > 1000),
        "{error}"
    );
}

mod network;
