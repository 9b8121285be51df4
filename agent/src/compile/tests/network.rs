//! What the compiler makes of prefix lists (P1) and network ACLs (N1-N4).

use super::*;

const NETWORK_ACL: &str = include_str!("../../../../examples/network-acl.toml");

fn acl_bits(bits: &RuleBitmap) -> Vec<usize> {
    (0..64).filter(|bit| bits.get(*bit)).collect()
}

fn mask_bits(mask: AclBits) -> Vec<u32> {
    (0..64).filter(|bit| mask >> bit & 1 != 0).collect()
}

#[test]
fn n2_acl_entries_are_bits_in_number_order_after_the_own_subnet() {
    let policy = compiled(NETWORK_ACL);
    let web = policy.interface_of_instance("web-1").expect("web-1");
    assert_ne!(web.config.flags & IFACE_F_HAS_ACL, 0);
    let acl = web.acl.as_ref().expect("public-acl filters");
    assert_eq!(
        (acl.subnet.as_str(), acl.acl.as_str()),
        ("public", "public-acl")
    );
    let numbers: Vec<u16> = acl.entries[0].iter().map(|e| e.number).collect();
    assert_eq!(numbers, [90, 100, 110, 120, 130], "sorted by number");
    assert_eq!(acl.entry(Direction::Ingress, 1).map(|e| e.number), Some(90));
    assert_eq!(
        acl.entry(Direction::Ingress, 0),
        None,
        "bit 0 is the own subnet"
    );

    // Bit 0 (own subnet) allows all protocols; 90 is the only deny and the only `all` entry.
    let ingress = usize::from(DIR_INGRESS);
    assert_eq!(mask_bits(web.config.acl_allow[ingress]), [0, 2, 3, 4, 5]);
    assert_eq!(mask_bits(web.config.acl_all_protocols[ingress]), [0, 1]);
    let cidr = |prefix: &str| {
        let net: IpNet = prefix.parse().expect("cidr");
        let (family, addr) = family_and_bytes(net.network());
        acl.cidrs
            .iter()
            .find(|e| {
                e.dir == DIR_INGRESS
                    && e.family == family
                    && e.addr == addr
                    && e.prefix_len == net.prefix_len()
            })
            .map(|e| acl_bits(&e.rules))
    };
    // Each CIDR carries every entry whose CIDR covers it (0.0.0.0/0: 100, 120, 130).
    assert_eq!(cidr("10.0.1.0/24"), Some(vec![0, 2, 4, 5]));
    assert_eq!(cidr("198.51.100.0/24"), Some(vec![2, 3, 4, 5]));
    assert_eq!(cidr("198.18.0.0/15"), Some(vec![1, 2, 4, 5]));
    assert_eq!(cidr("0.0.0.0/0"), Some(vec![2, 4, 5]));
    let tcp_443: Vec<usize> = acl
        .ports
        .iter()
        .filter(|e| {
            e.dir == DIR_INGRESS
                && e.proto == PROTO_TCP
                && u32::from(e.selector) <= 443
                && 443 < u32::from(e.selector) + (1u32 << (16 - e.prefix_len))
        })
        .flat_map(|e| acl_bits(&e.rules))
        .collect();
    assert_eq!(tcp_443, [2], "only 100 names tcp 443");
}

#[test]
fn n2_acl_hit_ids_follow_each_interfaces_rules_without_overlap() {
    let policy = compiled(NETWORK_ACL);
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for interface in &policy.interfaces {
        for dir in 0..2 {
            let base = interface.config.rule_base[dir];
            ranges.push((base, base + u32::from(interface.config.rule_count[dir])));
            if let Some(acl) = &interface.acl {
                let base = interface.config.acl_rule_base[dir];
                ranges.push((base, base + acl.entries[dir].len() as u32 + 1));
            }
        }
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{pair:?} overlap");
    }
}

#[test]
fn n1_the_default_acl_and_no_subnet_cost_the_interface_nothing() {
    let default_acl = compiled(&NETWORK_ACL.replace("network_acl = \"public-acl\"\n", ""));
    let web = default_acl.interface_of_instance("web-1").expect("web-1");
    assert!(web.acl.is_none());
    assert_eq!(web.config.flags & IFACE_F_HAS_ACL, 0);
    assert_eq!(web.config.acl_allow, [0; 2]);

    let outside = compiled(&NETWORK_ACL.replace("\"10.0.2.10\"", "\"10.9.2.10\""));
    let app = outside.interface_of_instance("app-1").expect("app-1");
    assert!(app.acl.is_none(), "in no subnet");
    assert!(
        outside
            .interface_of_instance("web-1")
            .expect("web")
            .acl
            .is_some(),
        "others keep theirs"
    );
}

const LISTS: &str = r#"
[[prefix_list]]
name = "wide"
family = "IPv4"
max_entries = 2
entries = ["10.0.0.0/8"]

[[prefix_list]]
name = "narrow"
family = "IPv4"
max_entries = 2
entries = ["10.1.0.0/16", "192.0.2.0/24"]

[[security_group]]
name = "g"
egress = []
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  prefix_lists = ["wide"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  prefix_lists = ["narrow"]

[[security_group]]
name = "plain"

[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.9.9.9"]
security_groups = ["g"]

[[instance]]
name = "j"
interface = "sgw-j"
addresses = ["10.9.9.8"]
security_groups = ["plain"]
"#;

#[test]
fn p1_each_list_entry_carries_the_set_of_lists_covering_it() {
    let policy = compiled(LISTS);
    let set_of = |cidr: &str| {
        let prefix = PrefixListPrefix::of(&cidr.parse().expect("cidr"));
        let id = policy.prefix_list_entries.get(&prefix).expect("entry");
        policy.prefix_list_sets[id]
            .iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(set_of("10.0.0.0/8"), ["wide"]);
    assert_eq!(
        set_of("10.1.0.0/16"),
        ["narrow", "wide"],
        "inside 10.0.0.0/8"
    );
    assert_eq!(set_of("192.0.2.0/24"), ["narrow"]);
    assert_eq!(policy.prefix_list_entries.len(), 3);

    let interface = policy.interface_of_instance("i").expect("i");
    assert_ne!(interface.config.flags & IFACE_F_HAS_PREFIX_LISTS, 0);
    let both: BTreeSet<String> = ["narrow".to_string(), "wide".to_string()].into();
    assert_eq!(
        bits(&interface.prefix_list_bits(DIR_INGRESS, &both)),
        [0, 1]
    );
    // No CIDR entries: a list reference is not a CIDR rule.
    assert!(interface.cidrs.iter().all(|e| e.dir != DIR_INGRESS));
    let plain = policy.interface_of_instance("j").expect("j");
    assert_eq!(
        plain.config.flags & IFACE_F_HAS_PREFIX_LISTS,
        0,
        "no rule names a list: no lookup"
    );
}

#[test]
fn p1_editing_entries_is_a_delta_of_trie_writes_only() {
    let before = config(LISTS);
    let mut policy = compile(&before, &BTreeMap::new()).expect("compiles");
    let interfaces = policy.interfaces.clone();
    let after = config(&LISTS.replace(
        "entries = [\"10.1.0.0/16\", \"192.0.2.0/24\"]",
        "entries = [\"10.1.0.0/16\", \"198.51.100.0/24\"]",
    ));
    let delta = policy.apply_prefix_lists(&after);
    let fresh = compile(&after, &BTreeMap::new()).expect("compiles");
    assert_eq!(policy, fresh, "the delta reaches what a full compile gives");
    assert_eq!(policy.interfaces, interfaces, "no rule changed");
    let written: Vec<(String, bool)> = delta
        .entries
        .iter()
        .map(|(prefix, set)| (prefix.net().to_string(), set.is_some()))
        .collect();
    assert_eq!(
        written,
        [
            ("198.51.100.0/24".to_string(), true),
            ("192.0.2.0/24".to_string(), false)
        ]
    );
    assert_eq!(
        delta.new_sets.len(),
        0,
        "198.51.100.0/24 is in set {{narrow}}, known"
    );
}
