//! Managed prefix lists (P1), subnets and network ACLs (N1, N2): what loads into the model and
//! every error with its field and message.

use super::*;
use crate::model::{AclAction, AclEntry, AddressFamily, DEFAULT_ACL_NAME, NetworkAcl};

/// Group "sg" with one ingress rule made of `rule`, after `before`.
fn with_rule(before: &str, rule: &str) -> String {
    format!("{before}\n[[security_group]]\nname = \"sg\"\n[[security_group.ingress]]\n{rule}\n")
}

const OFFICE: &str = r#"
[[prefix_list]]
name = "office"
id = "pl-0a1b2c3d"
family = "IPv4"
max_entries = 5
entries = ["198.51.100.0/24", { cidr = "192.0.2.0/28", description = "branch" }]
"#;

// ---------------------------------------------------------------------------------------------
// P1 prefix lists

#[test]
fn p1_prefix_lists_load_with_their_entries_and_rules_name_them_by_name_or_id() {
    let text = with_rule(
        OFFICE,
        "protocol = \"tcp\"\nports = 22\nprefix_lists = [\"office\", \"pl-0a1b2c3d\"]",
    );
    // Naming the list twice (by name and by id) is one duplicate rule.
    assert_eq!(
        sole_error(&text).1,
        "duplicate rule: tcp 22 from pl:office is already allowed by security_group[0].ingress[0].prefix_lists[0] (line 14)"
    );
    let config = loaded(&with_rule(
        OFFICE,
        "protocol = \"tcp\"\nports = 22\nprefix_lists = [\"pl-0a1b2c3d\"]",
    ))
    .config;
    let list = config.prefix_list("office").expect("office");
    assert_eq!(list.id, "pl-0a1b2c3d");
    assert_eq!(list.family, AddressFamily::V4);
    assert_eq!(list.max_entries, 5);
    let entries: Vec<(String, &str)> = list
        .entries
        .iter()
        .map(|e| (e.cidr.to_string(), e.description.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("198.51.100.0/24".to_string(), ""),
            ("192.0.2.0/28".to_string(), "branch")
        ]
    );
    assert!(list.contains("192.0.2.5".parse().unwrap()));
    assert!(!list.contains("192.0.2.16".parse().unwrap()));
    assert_eq!(
        config.security_groups[0].ingress[0].peers,
        [Peer::PrefixList("office".to_string())]
    );
}

#[test]
fn p1_a_list_without_an_id_gets_a_stable_one_from_its_name() {
    let text = "[[prefix_list]]\nname = \"a\"\nfamily = \"ipv6\"\nmax_entries = 1\nentries = [\"fd00::/8\"]\n";
    let first = loaded(text).config.prefix_lists[0].id.clone();
    assert_eq!(first, loaded(text).config.prefix_lists[0].id);
    assert!(first.starts_with("pl-") && first.len() == 20, "{first}");
    let other = loaded(&text.replace("\"a\"", "\"b\"")).config.prefix_lists[0]
        .id
        .clone();
    assert_ne!(first, other);
}

#[test]
fn p1_prefix_list_errors_name_the_field() {
    let list = |fields: &str| format!("[[prefix_list]]\nname = \"l\"\n{fields}\n");
    let cases = [
        (
            "family = \"v4\"\nmax_entries = 1",
            "prefix_list[0].family",
            "unknown family \"v4\"; expected \"IPv4\" or \"IPv6\"",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 0",
            "prefix_list[0].max_entries",
            "max_entries must be between 1 and 1000, got 0",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 1001",
            "prefix_list[0].max_entries",
            "max_entries must be between 1 and 1000, got 1001",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 1\nentries = [\"10.0.0.0/8\", \"11.0.0.0/8\"]",
            "prefix_list[0].entries",
            "prefix list \"l\" has 2 entries; its max_entries allows 1",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 2\nentries = [\"fd00::/8\"]",
            "prefix_list[0].entries[0]",
            "fd00::/8 is not an IPv4 CIDR; the prefix list's family is IPv4",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 2\nentries = [\"10.0.0.1/8\"]",
            "prefix_list[0].entries[0]",
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 2\nentries = [\"10.0.0.0/8\", { cidr = \"10.0.0.0/8\" }]",
            "prefix_list[0].entries[1].cidr",
            "duplicate entry 10.0.0.0/8; first at prefix_list[0].entries[0] (line 5)",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 2\nentries = [{ description = \"x\" }]",
            "prefix_list[0].entries[0].cidr",
            "missing required field \"cidr\"",
        ),
        (
            "family = \"IPv4\"\nmax_entries = 2\nentries = [7]",
            "prefix_list[0].entries[0]",
            "expected a CIDR or a table, found integer",
        ),
        (
            "id = \"pl-XYZ\"\nfamily = \"IPv4\"\nmax_entries = 2",
            "prefix_list[0].id",
            "prefix list id \"pl-XYZ\" is not \"pl-\" followed by 8 or 17 lowercase hex digits",
        ),
        (
            "max_entries = 2",
            "prefix_list[0].family",
            "missing required field \"family\"",
        ),
    ];
    for (fields, field, message) in cases {
        assert_eq!(sole_error(&list(fields)), pair(field, message), "{fields}");
    }
    let two = format!(
        "{}{}",
        list("id = \"pl-00000001\"\nfamily = \"IPv4\"\nmax_entries = 1"),
        list("id = \"pl-00000001\"\nfamily = \"IPv4\"\nmax_entries = 1")
    );
    assert_eq!(
        error_messages(&two),
        [
            pair(
                "prefix_list[1].name",
                "duplicate prefix list name \"l\"; first defined at prefix_list[0].name (line 2)"
            ),
            pair(
                "prefix_list[1].id",
                "prefix list id \"pl-00000001\" is already used at prefix_list[0].id (line 3)"
            ),
        ]
    );
}

#[test]
fn p1_rules_name_known_lists_of_a_family_their_protocol_can_match() {
    assert_eq!(
        sole_error(&with_rule(
            OFFICE,
            "protocol = \"tcp\"\nports = 22\nprefix_lists = [\"home\"]"
        )),
        pair(
            "security_group[0].ingress[0].prefix_lists[0]",
            "rule ingress[0] of group \"sg\" references unknown prefix list \"home\""
        )
    );
    assert_eq!(
        sole_error(&with_rule(
            OFFICE,
            "protocol = \"icmpv6\"\nprefix_lists = [\"office\"]"
        )),
        pair(
            "security_group[0].ingress[0].prefix_lists[0]",
            "protocol icmpv6 can never match the IPv4 peer pl:office; use icmp for IPv4"
        )
    );
    // A list with errors of its own is not also unknown.
    let broken = OFFICE.replace("max_entries = 5", "max_entries = 0");
    assert_eq!(
        error_messages(&with_rule(
            &broken,
            "protocol = \"tcp\"\nports = 22\nprefix_lists = [\"office\"]"
        )),
        [pair(
            "prefix_list[0].max_entries",
            "max_entries must be between 1 and 1000, got 0"
        )]
    );
}

#[test]
fn p1_r7_a_reference_counts_as_the_lists_max_entries() {
    let list = "[[prefix_list]]\nname = \"big\"\nfamily = \"IPv4\"\nmax_entries = 55\n";
    let cidrs: Vec<String> = (0..6).map(|i| format!("\"10.0.{i}.0/24\"")).collect();
    let text = format!(
        "{list}\n[[security_group]]\nname = \"sg\"\n[[security_group.ingress]]\nprotocol = \"tcp\"\nports = 22\nprefix_lists = [\"big\"]\ncidr = [{}]\n",
        cidrs.join(", ")
    );
    assert_eq!(
        sole_error(&text),
        pair(
            "security_group[0].ingress",
            "security group \"sg\" has 61 ingress IPv4 rules; the quota rules_per_group allows 60"
        )
    );
    // The list's family only: 55 IPv4 and 5 IPv6 rules fit.
    let v6: Vec<String> = (0..5).map(|i| format!("\"fd00:{i}::/32\"")).collect();
    let fits = text.replace(&cidrs.join(", "), &v6.join(", "));
    assert!(load(&fits).is_ok());

    // Per interface (groups x rules <= 1000), a reference counts its max entries too: 16 groups
    // of 60 + 2 IPv4 and 2 IPv6 rules each fit their group quota but not the interface's.
    let mut many = String::from(
        "[quotas]\ngroups_per_interface = 16\nrules_per_group = 62\n[[prefix_list]]\nname = \"big\"\nfamily = \"IPv4\"\nmax_entries = 60\n",
    );
    let mut groups = Vec::new();
    for g in 0..16 {
        many.push_str(&format!(
            "[[security_group]]\nname = \"g{g}\"\negress = []\n[[security_group.ingress]]\nprotocol = \"tcp\"\nports = 22\nprefix_lists = [\"big\"]\ncidr = [\"10.{g}.0.0/16\", \"10.{g}.1.0/24\", \"fd00:{g}::/32\", \"fd01:{g}::/32\"]\n"
        ));
        groups.push(format!("\"g{g}\""));
    }
    many.push_str(&format!(
        "[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"10.9.9.9\"]\nsecurity_groups = [{}]\n",
        groups.join(", ")
    ));
    assert_eq!(
        sole_error(&many),
        pair(
            "instance[0].security_groups",
            "instance \"i\" has 1024 effective ingress rules across its security groups; the quota of rules per interface (groups x rules) allows at most 1000"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// N1 subnets and their ACLs

fn instance(name: &str, address: &str) -> String {
    format!(
        "[[instance]]\nname = \"{name}\"\ninterface = \"sgw-{name}\"\naddresses = [{address}]\nsecurity_groups = [\"sg\"]\n"
    )
}

const GROUP: &str = "[[security_group]]\nname = \"sg\"\n";

#[test]
fn n1_an_instance_belongs_to_the_subnet_its_addresses_fall_in() {
    let text = format!(
        "{GROUP}[[network_acl]]\nname = \"web\"\n[[subnet]]\nname = \"a\"\ncidr = [\"10.0.1.0/24\", \"fd00:1::/64\"]\nnetwork_acl = \"web\"\n[[subnet]]\nname = \"b\"\ncidr = [\"10.0.2.0/24\"]\n{}{}",
        instance("one", "\"fd00:1::5\""),
        instance("two", "\"10.0.2.5\"")
    );
    let config = loaded(&text).config;
    let subnet = |name: &str| {
        let instance = config.instance(name).expect("instance");
        config.subnet_of(instance).map(|s| s.name.clone())
    };
    assert_eq!(subnet("one").as_deref(), Some("a"));
    assert_eq!(subnet("two").as_deref(), Some("b"));
    let (_, acl) = config.acl_of(config.instance("one").unwrap()).expect("acl");
    assert_eq!(acl.name, "web");
    // N1: a new custom ACL denies everything.
    assert!(acl.ingress.is_empty() && acl.egress.is_empty());
    assert!(!acl.admits_everything());
    // A subnet that names no ACL uses the default one, added with the AWS default entries.
    let (_, default) = config
        .acl_of(config.instance("two").unwrap())
        .expect("default acl");
    assert_eq!(default.name, DEFAULT_ACL_NAME);
    assert!(default.is_default && default.admits_everything());
    assert_eq!(default.ingress, NetworkAcl::default_entries());
    assert_eq!(config.network_acls.len(), 2);
}

#[test]
fn n1_the_acl_marked_default_serves_subnets_that_name_none() {
    let text = format!(
        "{GROUP}[[network_acl]]\nname = \"main\"\ndefault = true\n[[network_acl]]\nname = \"edited\"\ndefault = false\n[[subnet]]\nname = \"a\"\ncidr = [\"10.0.1.0/24\"]\n"
    );
    let config = loaded(&text).config;
    assert_eq!(config.subnets[0].network_acl, "main");
    // No entries written: the default ACL's own entries, allow all both ways.
    let main = config.network_acl("main").expect("main");
    assert_eq!(main.egress, NetworkAcl::default_entries());
    assert!(main.admits_everything());
    assert_eq!(config.network_acls.len(), 2, "no implicit default is added");

    // Edited: a deny in front of the allow-all makes it filter.
    let edited = text.replace(
        "default = true\n",
        "default = true\ningress = [{ number = 50, action = \"deny\", protocol = \"tcp\", ports = 22, cidr = \"0.0.0.0/0\" }, { number = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" }, { number = 101, action = \"allow\", protocol = \"all\", cidr = \"::/0\" }]\n",
    );
    let config = loaded(&edited).config;
    assert!(!config.network_acl("main").unwrap().admits_everything());
}

#[test]
fn n1_subnet_errors_name_the_field() {
    let subnet = |fields: &str| format!("[[subnet]]\nname = \"s\"\n{fields}\n");
    let cases = [
        (subnet("cidr = []"), "subnet[0].cidr", "cidr must list the subnet's CIDR, one per address family".to_string()),
        (
            subnet("cidr = [\"10.0.0.0/24\", \"10.1.0.0/24\"]"),
            "subnet[0].cidr[1]",
            "the subnet already has an IPv4 CIDR at subnet[0].cidr[0] (line 3); a subnet has one per family".to_string(),
        ),
        (
            subnet("cidr = [\"10.0.0.0/24\"]\nnetwork_acl = \"nope\""),
            "subnet[0].network_acl",
            "subnet \"s\" uses unknown network ACL \"nope\"".to_string(),
        ),
        (
            format!("{}[[subnet]]\nname = \"t\"\ncidr = [\"10.0.0.128/25\"]\n", subnet("cidr = [\"10.0.0.0/24\"]")),
            "subnet[1].cidr[0]",
            "10.0.0.128/25 overlaps 10.0.0.0/24 of subnet \"s\"; subnets may not overlap".to_string(),
        ),
        (
            format!("[[network_acl]]\nname = \"default\"\n{}", subnet("cidr = [\"10.0.0.0/24\"]")),
            "subnet[0]",
            "subnet \"s\" names no network_acl, so it uses the default network ACL, but the ACL named \"default\" is not marked default = true; mark one ACL default or name this subnet's ACL".to_string(),
        ),
        (
            "[[network_acl]]\nname = \"a\"\ndefault = true\n[[network_acl]]\nname = \"b\"\ndefault = true\n".to_string(),
            "network_acl[1].default",
            "only one network ACL can be the default one; \"a\" (network_acl[0].name (line 2)) already is".to_string(),
        ),
        (
            subnet("cidr = [\"10.0.0.0/24\"]\nacl = \"x\""),
            "subnet[0].acl",
            "unknown field \"acl\"; allowed fields: name, cidr, network_acl".to_string(),
        ),
    ];
    for (text, field, message) in cases {
        assert_eq!(sole_error(&text), pair(field, &message), "{text}");
    }
}

#[test]
fn n1_an_instance_cannot_be_in_two_subnets() {
    let text = format!(
        "{GROUP}[[subnet]]\nname = \"a\"\ncidr = [\"10.0.1.0/24\"]\n[[subnet]]\nname = \"b\"\ncidr = [\"fd00:2::/64\"]\n{}",
        instance("i", "\"10.0.1.5\", \"fd00:2::5\"")
    );
    assert_eq!(
        sole_error(&text),
        pair(
            "instance[0].addresses",
            "instance \"i\" has addresses in subnet \"a\" (10.0.1.5) and in subnet \"b\" (fd00:2::5); an instance belongs to one subnet"
        )
    );
}

#[test]
fn n1_an_instance_outside_every_subnet_warns() {
    let text = format!(
        "{GROUP}[[subnet]]\nname = \"a\"\ncidr = [\"10.0.1.0/24\"]\n{}",
        instance("i", "\"10.0.9.5\"")
    );
    assert_eq!(
        warnings(&text),
        [pair(
            "instance[0].addresses",
            "instance \"i\" is in no subnet, so no network ACL filters its traffic"
        )]
    );
    // Without subnets nothing is filtered by ACLs and nothing is said.
    assert!(warnings(&format!("{GROUP}{}", instance("i", "\"10.0.9.5\""))).is_empty());
}

// ---------------------------------------------------------------------------------------------
// N2 entries

fn acl(entries: &str) -> String {
    format!("[[network_acl]]\nname = \"n\"\n{entries}\n")
}

fn entry(fields: &str) -> String {
    format!("[[network_acl.ingress]]\n{fields}\n")
}

#[test]
fn n2_entries_are_sorted_by_number_with_protocol_and_ports_as_in_r3() {
    let text = acl(&[
        entry("number = 200\naction = \"deny\"\nprotocol = \"all\"\ncidr = \"0.0.0.0/0\""),
        entry("number = 100\naction = \"allow\"\nprotocol = 6\nports = \"1024-65535\"\ncidr = \"10.0.0.0/8\""),
        entry("number = 150\naction = \"allow\"\nprotocol = \"icmpv6\"\nicmp_type = 128\ncidr = \"::/0\""),
    ]
    .concat());
    let config = loaded(&text).config;
    let acl = config.network_acl("n").expect("n");
    assert_eq!(
        acl.ingress,
        [
            AclEntry {
                number: 100,
                action: AclAction::Allow,
                protocol: Protocol::Tcp,
                ports: PortRange::Ports {
                    from: 1024,
                    to: 65535
                },
                cidr: "10.0.0.0/8".parse().unwrap(),
            },
            AclEntry {
                number: 150,
                action: AclAction::Allow,
                protocol: Protocol::Icmpv6,
                ports: PortRange::Icmp {
                    icmp_type: Some(128),
                    code: None
                },
                cidr: "::/0".parse().unwrap(),
            },
            AclEntry {
                number: 200,
                action: AclAction::Deny,
                protocol: Protocol::All,
                ports: PortRange::Any,
                cidr: "0.0.0.0/0".parse().unwrap(),
            },
        ]
    );
    assert!(
        acl.egress.is_empty(),
        "no egress written: nothing allowed out"
    );
}

#[test]
fn n2_entry_errors_name_the_field() {
    let one = |fields: &str| acl(&entry(fields));
    let cases = [
        (
            "number = 0\naction = \"allow\"\nprotocol = \"all\"\ncidr = \"0.0.0.0/0\"",
            "network_acl[0].ingress[0].number",
            "rule number must be between 1 and 32766, got 0",
        ),
        (
            "number = 32767\naction = \"allow\"\nprotocol = \"all\"\ncidr = \"0.0.0.0/0\"",
            "network_acl[0].ingress[0].number",
            "rule number must be between 1 and 32766, got 32767",
        ),
        (
            "number = 1\naction = \"permit\"\nprotocol = \"all\"\ncidr = \"0.0.0.0/0\"",
            "network_acl[0].ingress[0].action",
            "unknown action \"permit\"; expected \"allow\" or \"deny\"",
        ),
        (
            "number = 1\naction = \"allow\"\nprotocol = \"tcp\"\ncidr = \"0.0.0.0/0\"",
            "network_acl[0].ingress[0].ports",
            "ports are required for protocol tcp",
        ),
        (
            "number = 1\naction = \"allow\"\nprotocol = \"icmp\"\ncidr = \"::/0\"",
            "network_acl[0].ingress[0].cidr",
            "protocol icmp can never match the IPv6 peer ::/0; use icmpv6 for IPv6",
        ),
        (
            "number = 1\naction = \"allow\"\nprotocol = \"all\"\ncidr = \"10.0.0.1/8\"",
            "network_acl[0].ingress[0].cidr",
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        ),
        (
            "number = 1\naction = \"allow\"\nprotocol = \"all\"",
            "network_acl[0].ingress[0].cidr",
            "missing required field \"cidr\"",
        ),
        (
            "number = 1\naction = \"allow\"\nprotocol = \"all\"\ncidr = [\"0.0.0.0/0\"]",
            "network_acl[0].ingress[0].cidr",
            "expected a string, found array",
        ),
    ];
    for (fields, field, message) in cases {
        assert_eq!(sole_error(&one(fields)), pair(field, message), "{fields}");
    }
    let twice = acl(&[
        entry("number = 7\naction = \"allow\"\nprotocol = \"all\"\ncidr = \"0.0.0.0/0\""),
        entry("number = 7\naction = \"deny\"\nprotocol = \"all\"\ncidr = \"::/0\""),
    ]
    .concat());
    assert_eq!(
        sole_error(&twice),
        pair(
            "network_acl[0].ingress[1].number",
            "rule number 7 is already used at network_acl[0].ingress[0].number (line 4)"
        )
    );
    assert_eq!(
        sole_error(&acl("id = \"acl-123\"")),
        pair(
            "network_acl[0].id",
            "network ACL id \"acl-123\" is not \"acl-\" followed by 8 or 17 lowercase hex digits"
        )
    );
}

#[test]
fn n2_twenty_entries_per_direction_unless_the_quota_is_raised_to_at_most_forty() {
    let entries = |count: u16| -> String {
        (1..=count)
            .map(|n| {
                entry(&format!(
                    "number = {n}\naction = \"allow\"\nprotocol = \"tcp\"\nports = {n}\ncidr = \"0.0.0.0/0\""
                ))
            })
            .collect()
    };
    assert!(load(&acl(&entries(20))).is_ok());
    assert_eq!(
        sole_error(&acl(&entries(21))),
        pair(
            "network_acl[0].ingress",
            "network ACL \"n\" has 21 ingress rules; the quota network_acl_rules allows 20"
        )
    );
    let raised = |quota: u16, count: u16| {
        format!(
            "[quotas]\nnetwork_acl_rules = {quota}\n{}",
            acl(&entries(count))
        )
    };
    assert!(load(&raised(40, 40)).is_ok());
    assert_eq!(loaded(&raised(40, 40)).config.quotas.network_acl_rules, 40);
    assert_eq!(
        sole_error(&raised(41, 1)),
        pair(
            "quotas.network_acl_rules",
            "quota network_acl_rules must be between 1 and 40, got 41"
        )
    );
}

#[test]
fn the_summary_names_prefix_lists_subnets_and_acls_when_there_are_any() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let report = check_report(&examples.join("network-acl.toml"));
    assert!(report.stderr.is_empty(), "{:?}", report.stderr);
    let summary = report.stdout.unwrap_or_default();
    assert!(
        summary.ends_with(
            "network-acl.toml: ok: 2 groups, 3 instances, 0 members, 8 rules, 1 prefix lists, 2 subnets, 2 network ACLs"
        ),
        "{summary}"
    );
}
