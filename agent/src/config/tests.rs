//! Every validation error and warning with its exact message, positions, and the model that a
//! valid config produces. Statement IDs refer to `../shared/ec2-sg-semantics.md`.

use std::{net::IpAddr, path::Path};

use super::*;
use crate::model::{
    AttachMode, Conntrack, HostIngressHook, Peer, PortRange, Protocol, Quotas, default_egress,
};

const FILE: &str = "test.toml";

fn load(text: &str) -> Result<Loaded, ConfigError> {
    load_str(text, Path::new(FILE))
}

fn loaded(text: &str) -> Loaded {
    match load(text) {
        Ok(loaded) => loaded,
        Err(error) => panic!("expected a valid config, got:\n{error}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Err(ConfigError::Invalid { errors, .. }) => errors,
        Err(error) => panic!("expected validation errors, got {error}"),
        Ok(_) => panic!("expected validation errors, the config is valid"),
    }
}

/// (field, message) of each error.
fn error_messages(text: &str) -> Vec<(String, String)> {
    errors(text)
        .into_iter()
        .map(|d| (d.field, d.message))
        .collect()
}

/// Asserts exactly one error and returns its field and message.
fn sole_error(text: &str) -> (String, String) {
    let mut all = error_messages(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

/// Asserts the config is valid and returns (field, message) of each warning.
fn warnings(text: &str) -> Vec<(String, String)> {
    loaded(text)
        .warnings
        .into_iter()
        .map(|d| {
            assert_eq!(d.severity, Severity::Warning);
            (d.field, d.message)
        })
        .collect()
}

fn pair(field: &str, message: &str) -> (String, String) {
    (field.to_string(), message.to_string())
}

/// One group "sg" with one ingress rule made of `fields`.
fn one_rule(fields: &str) -> String {
    format!("[[security_group]]\nname = \"sg\"\n[[security_group.ingress]]\n{fields}\n")
}

/// The ports or ICMP selector of the valid `one_rule(fields)`.
fn rule_selector(fields: &str) -> PortRange {
    loaded(&one_rule(fields)).config.security_groups[0].ingress[0].ports
}

const RULE: &str = "security_group[0].ingress[0]";

fn rule_field(field: &str) -> String {
    format!("{RULE}.{field}")
}

/// Group "sg" and one instance made of `fields`.
fn one_instance(fields: &str) -> String {
    format!("[[security_group]]\nname = \"sg\"\n\n[[instance]]\n{fields}\n")
}

const INSTANCE: &str =
    "name = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"10.0.0.1\"]\nsecurity_groups = [\"sg\"]";

// ---------------------------------------------------------------------------------------------
// Shape: syntax, unknown fields, types, required fields

#[test]
fn syntax_error_is_one_diagnostic_at_the_parser_position() {
    let all = errors("[[security_group]]\nname = \"sg\"\nname = \"again\"\n");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].to_string(),
        "test.toml:3:1: error: syntax: duplicate key"
    );
}

#[test]
fn unknown_fields_are_named_with_the_allowed_ones() {
    assert_eq!(
        error_messages("colour = 1\n[quotas]\nmax = 3\n"),
        vec![
            pair(
                "colour",
                "unknown field \"colour\"; allowed fields: quotas, security_group, instance, member, lab, prefix_list, subnet, network_acl, vpc"
            ),
            pair(
                "quotas.max",
                "unknown field \"max\"; allowed fields: groups_per_interface, rules_per_group, network_acl_rules"
            ),
        ]
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"all\"\ncidr = [\"10.0.0.0/16\"]\nport = 80"
        )),
        pair(
            &rule_field("port"),
            "unknown field \"port\"; allowed fields: protocol, ports, icmp_type, icmp_code, cidr, groups, prefix_lists, description, id, tags"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nconntrack = {{ tcp_timeout = 60 }}"
        ))),
        pair(
            "instance[0].conntrack.tcp_timeout",
            "unknown field \"tcp_timeout\"; allowed fields: tcp_established_timeout, udp_timeout, udp_stream_timeout, max_flows, cut_on_rule_removal"
        )
    );
    assert_eq!(
        sole_error(
            "[lab]\n[[lab.client]]\nname = \"c\"\naddresses = [\"192.0.2.1\"]\nhost = true\n"
        ),
        pair(
            "lab.client[0].host",
            "unknown field \"host\"; allowed fields: name, addresses"
        )
    );
    assert_eq!(
        sole_error("[lab]\nclients = []\n"),
        pair(
            "lab.clients",
            "unknown field \"clients\"; allowed fields: client, dhcp"
        )
    );
    assert_eq!(
        sole_error("[[security_group]]\nname = \"sg\"\nrules = []\n"),
        pair(
            "security_group[0].rules",
            "unknown field \"rules\"; allowed fields: name, id, description, tags, ingress, egress"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!("{INSTANCE}\nvpc = \"x\""))),
        pair(
            "instance[0].vpc",
            "unknown field \"vpc\"; allowed fields: name, interface, mac, host_mac, attach, host_ingress_hook, addresses, security_groups, source_dest_check, related_icmp, dhcp, exempt, conntrack, id, tags"
        )
    );
    assert_eq!(
        sole_error(
            "[[security_group]]\nname = \"sg\"\n[[member]]\nname = \"m\"\naddresses = [\"10.0.0.1\"]\nsecurity_groups = [\"sg\"]\ninterface = \"x\"\n"
        ),
        pair(
            "member[0].interface",
            "unknown field \"interface\"; allowed fields: name, addresses, security_groups"
        )
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    assert_eq!(
        sole_error("[[security_group]]\nname = 5\n"),
        pair("security_group[0].name", "expected a string, found integer")
    );
    assert_eq!(
        sole_error("security_group = \"web\"\n"),
        pair(
            "security_group",
            "expected an array of tables, found string"
        )
    );
    assert_eq!(
        sole_error("security_group = [1]\n"),
        pair("security_group[0]", "expected a table, found integer")
    );
    assert_eq!(
        sole_error("quotas = 5\n"),
        pair("quotas", "expected a table, found integer")
    );
    assert_eq!(
        sole_error("[quotas]\nrules_per_group = \"60\"\n"),
        pair(
            "quotas.rules_per_group",
            "expected an integer, found string"
        )
    );
    assert_eq!(
        sole_error(&one_rule("protocol = true\ncidr = [\"10.0.0.0/16\"]")),
        pair(
            &rule_field("protocol"),
            "expected a string or an integer, found boolean"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"tcp\"\nports = 8.5\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("ports"),
            "expected a string or an integer, found float"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"all\"\ncidr = \"10.0.0.0/16\"\ngroups = [\"sg\"]"
        )),
        pair(
            &rule_field("cidr"),
            "expected an array of strings, found string"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\nicmp_type = \"8\"\nicmp_code = 0\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("icmp_type"),
            "expected an integer, found string"
        )
    );
    assert_eq!(
        sole_error(&one_rule("protocol = \"all\"\ncidr = [7]")),
        pair(&rule_field("cidr[0]"), "expected a string, found integer")
    );
    assert_eq!(
        sole_error(&one_rule("protocol = \"all\"\ncidr = [\"10.0.0.0/16\", 7]")),
        pair(&rule_field("cidr[1]"), "expected a string, found integer")
    );
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nsource_dest_check = \"no\""
        ))),
        pair(
            "instance[0].source_dest_check",
            "expected a boolean, found string"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!("{INSTANCE}\nconntrack = 30"))),
        pair("instance[0].conntrack", "expected a table, found integer")
    );
}

#[test]
fn integers_beyond_64_bits_are_reported() {
    assert_eq!(
        sole_error("[quotas]\nrules_per_group = 99999999999999999999\n"),
        pair(
            "quotas.rules_per_group",
            "integer 99999999999999999999 is too large"
        )
    );
}

#[test]
fn missing_required_fields_are_named_at_their_table() {
    // An instance's interface may also be found by `host_mac` or `mac`, so its absence is told
    // once validation knows neither is there.
    assert_eq!(
        sole_error("[[security_group]]\ndescription = \"x\"\n"),
        pair("security_group[0].name", "missing required field \"name\"")
    );
    assert_eq!(
        sole_error(&one_rule("cidr = [\"10.0.0.0/16\"]")),
        pair(
            &rule_field("protocol"),
            "missing required field \"protocol\""
        )
    );
    assert_eq!(
        error_messages(&one_instance("name = \"i\"")),
        vec![
            pair(
                "instance[0].addresses",
                "missing required field \"addresses\""
            ),
            pair(
                "instance[0].security_groups",
                "missing required field \"security_groups\""
            ),
            pair(
                "instance[0].interface",
                "missing \"interface\": give the host interface's name or a pattern such as \
                 \"tap101i*\", its \"host_mac\", or the guest's \"mac\" (libvirt's tap carries \
                 it with the first octet fe)"
            ),
        ]
    );
    assert_eq!(
        sole_error("[[member]]\nname = \"m\"\naddresses = [\"10.0.0.1\"]\n"),
        pair(
            "member[0].security_groups",
            "missing required field \"security_groups\""
        )
    );
    assert_eq!(
        sole_error("[lab]\n[[lab.client]]\naddresses = [\"10.0.0.1\"]\n"),
        pair("lab.client[0].name", "missing required field \"name\"")
    );
}

// ---------------------------------------------------------------------------------------------
// Positions and collection of every error

#[test]
fn line_and_column_point_at_the_offending_key_or_value() {
    let text = "\
[[security_group]]
name = \"sg\"
  [[security_group.ingress]]
  protocol = \"tcp\"
  ports =   \"80-\"
  cidr = [\"10.0.0.0/8\", \"10.0.0.1/8\"]
  bogus = 1
";
    let all = errors(text);
    let positions: Vec<(usize, usize, &str)> = all
        .iter()
        .map(|d| (d.line, d.column, d.field.as_str()))
        .collect();
    assert_eq!(
        positions,
        vec![
            (5, 13, "security_group[0].ingress[0].ports"),
            (6, 25, "security_group[0].ingress[0].cidr[1]"),
            (7, 3, "security_group[0].ingress[0].bogus"),
        ]
    );
}

#[test]
fn missing_fields_point_at_the_table_header() {
    let all = errors("# comment\n\n[[security_group]]\ndescription = \"x\"\n");
    assert_eq!((all[0].line, all[0].column), (3, 1));
}

#[test]
fn columns_count_characters() {
    let all = errors(&one_rule(
        "protocol = \"all\"\ncidr = [\"10.0.0.0/8\", \"ééé\", \"x\"]",
    ));
    let positions: Vec<(usize, usize)> = all.iter().map(|d| (d.line, d.column)).collect();
    // "ééé" is 3 characters but 6 bytes: the second error is at column 30, not 33.
    assert_eq!(positions, [(5, 23), (5, 30)]);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = include_str!("../../../examples/invalid.toml");
    let report: Vec<String> = match load_str(text, Path::new("examples/invalid.toml")) {
        Err(error @ ConfigError::Invalid { .. }) => {
            error.to_string().lines().map(str::to_string).collect()
        }
        other => panic!("expected errors, got {other:?}"),
    };
    assert_eq!(
        report,
        vec![
            "examples/invalid.toml:5:24: error: quotas.groups_per_interface: quota groups_per_interface must be between 1 and 16, got 20",
            "examples/invalid.toml:9:1: error: security_group[0].colour: unknown field \"colour\"; allowed fields: name, id, description, tags, ingress, egress",
            "examples/invalid.toml:11:3: error: security_group[0].ingress[0].ports: ports are required for protocol tcp",
            "examples/invalid.toml:13:11: error: security_group[0].ingress[0].cidr[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
            "examples/invalid.toml:17:15: error: security_group[0].ingress[1].icmp_code: icmp_code 4 needs an icmp_type; a code with type -1 (any) is invalid",
            "examples/invalid.toml:18:11: error: security_group[0].ingress[1].cidr[0]: protocol icmp can never match the IPv6 peer ::/0; use icmpv6 for IPv6",
            "examples/invalid.toml:22:11: error: security_group[0].ingress[2].ports: port range 443-80 is reversed; did you mean 80-443?",
            "examples/invalid.toml:23:13: error: security_group[0].ingress[2].groups[0]: rule ingress[2] of group \"web-sg\" references unknown security group \"api-sg\"",
            "examples/invalid.toml:26:8: error: security_group[1].name: duplicate security group name \"web-sg\"; first defined at security_group[0].name (line 8)",
            "examples/invalid.toml:30:13: error: instance[0].interface: invalid interface name \"a-name-longer-than-15\": it is longer than 15 bytes",
            "examples/invalid.toml:31:14: error: instance[0].addresses[0]: \"10.0.1.10/24\" has a prefix length; give the host address alone, such as 10.0.1.10",
            "examples/invalid.toml:32:30: error: instance[0].security_groups[1]: instance \"web-1\" uses unknown security group \"missing-sg\"",
            "examples/invalid.toml:33:29: error: instance[0].conntrack.udp_timeout: udp_timeout must be between 30 and 60 seconds, got 5",
        ]
    );
}

#[test]
fn warnings_are_kept_alongside_errors() {
    let text = one_rule("protocol = \"all\"\nports = 80\ncidr = [\"10.0.0.0/16\", \"bad\"]");
    match load(&text) {
        Err(ConfigError::Invalid { errors, warnings }) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(warnings.len(), 1);
            assert_eq!(warnings[0].message, "ports are ignored for protocol all");
        }
        other => panic!("expected errors, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// R7 quotas

#[test]
fn quota_ranges() {
    assert_eq!(
        sole_error("[quotas]\ngroups_per_interface = 0\n"),
        pair(
            "quotas.groups_per_interface",
            "quota groups_per_interface must be between 1 and 16, got 0"
        )
    );
    assert_eq!(
        sole_error("[quotas]\ngroups_per_interface = 17\nrules_per_group = 10\n"),
        pair(
            "quotas.groups_per_interface",
            "quota groups_per_interface must be between 1 and 16, got 17"
        )
    );
    assert_eq!(
        sole_error("[quotas]\nrules_per_group = 0\n"),
        pair(
            "quotas.rules_per_group",
            "quota rules_per_group must be between 1 and 1000, got 0"
        )
    );
    assert_eq!(
        sole_error("[quotas]\ngroups_per_interface = 1\nrules_per_group = 1001\n"),
        pair(
            "quotas.rules_per_group",
            "quota rules_per_group must be between 1 and 1000, got 1001"
        )
    );
    let quotas = loaded("[quotas]\ngroups_per_interface = 16\nrules_per_group = 62\n")
        .config
        .quotas;
    assert_eq!(
        quotas,
        Quotas {
            groups_per_interface: 16,
            rules_per_group: 62,
            network_acl_rules: 20,
        }
    );
    assert_eq!(loaded("").config.quotas, Quotas::default());
}

#[test]
fn quota_product_is_at_most_1000() {
    assert_eq!(
        sole_error("[quotas]\ngroups_per_interface = 16\nrules_per_group = 63\n"),
        pair(
            "quotas.rules_per_group",
            "quotas groups_per_interface (16) x rules_per_group (63) = 1008 exceeds the limit of 1000 rules per interface"
        )
    );
    // With the default of 60 rules per group, 17+ groups is already out of range; 16 x 60 fits.
    assert_eq!(
        sole_error("[quotas]\nrules_per_group = 201\n"),
        pair(
            "quotas.rules_per_group",
            "quotas groups_per_interface (5) x rules_per_group (201) = 1005 exceeds the limit of 1000 rules per interface"
        )
    );
}

fn cidrs(count: usize, v6: bool) -> String {
    (0..count)
        .map(|i| {
            if v6 {
                format!("\"fd00::{i:x}/128\"")
            } else {
                format!("\"10.0.{}.{}/32\"", i / 256, i % 256)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn rules_per_group_counts_each_family_separately() {
    let text = format!(
        "[quotas]\nrules_per_group = 3\n{}",
        one_rule(&format!(
            "protocol = \"all\"\ncidr = [{}, {}]",
            cidrs(3, false),
            cidrs(3, true)
        ))
    );
    assert!(
        load(&text).is_ok(),
        "3 IPv4 and 3 IPv6 rules fit a quota of 3"
    );

    let text = format!(
        "[quotas]\nrules_per_group = 3\n{}",
        one_rule(&format!("protocol = \"all\"\ncidr = [{}]", cidrs(4, false)))
    );
    assert_eq!(
        sole_error(&text),
        pair(
            "security_group[0].ingress",
            "security group \"sg\" has 4 ingress IPv4 rules; the quota rules_per_group allows 3"
        )
    );
}

#[test]
fn a_group_reference_counts_as_one_rule_in_both_families() {
    let text = format!(
        "[quotas]\nrules_per_group = 2\n{}\n[[security_group.egress]]\nprotocol = \"tcp\"\nports = 443\ncidr = [{}]\ngroups = [\"sg\"]\n",
        "[[security_group]]\nname = \"sg\"",
        cidrs(2, true)
    );
    assert_eq!(
        sole_error(&text),
        pair(
            "security_group[0].egress",
            "security group \"sg\" has 3 egress IPv6 rules; the quota rules_per_group allows 2"
        )
    );
}

#[test]
fn groups_per_interface_quota() {
    let text = "[quotas]\ngroups_per_interface = 1\n[[security_group]]\nname = \"a\"\n[[security_group]]\nname = \"b\"\n[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"10.0.0.1\"]\nsecurity_groups = [\"a\", \"b\"]\n";
    assert_eq!(
        sole_error(text),
        pair(
            "instance[0].security_groups",
            "instance \"i\" has 2 security groups; the quota groups_per_interface allows 1"
        )
    );
}

#[test]
fn an_interface_holds_at_most_1000_rules_per_direction() {
    // Each group is within its quota (200 per family) but five of them give 2000 rules.
    let mut text = String::from("[quotas]\ngroups_per_interface = 5\nrules_per_group = 200\n");
    let names: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    for name in &names {
        text.push_str(&format!(
            "[[security_group]]\nname = \"{name}\"\n[[security_group.ingress]]\nprotocol = \"udp\"\nports = \"53\"\ncidr = [{}, {}]\n",
            cidrs(200, false),
            cidrs(200, true)
        ));
    }
    text.push_str(&format!(
        "[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"192.0.2.1\"]\nsecurity_groups = [{}]\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let all = error_messages(&text);
    assert!(
        all.contains(&pair(
            "instance[0].security_groups",
            "instance \"i\" has 2000 effective ingress rules across its security groups; the quota of rules per interface (groups x rules) allows at most 1000"
        )),
        "{all:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Names, descriptions, uniqueness

#[test]
fn group_names_are_1_to_255_characters() {
    assert_eq!(
        sole_error("[[security_group]]\nname = \"\"\n"),
        pair(
            "security_group[0].name",
            "security group name must be 1 to 255 characters long, got 0"
        )
    );
    let long = "n".repeat(256);
    assert_eq!(
        sole_error(&format!("[[security_group]]\nname = \"{long}\"\n")),
        pair(
            "security_group[0].name",
            "security group name must be 1 to 255 characters long, got 256"
        )
    );
    let longest = "é".repeat(255);
    assert!(load(&format!("[[security_group]]\nname = \"{longest}\"\n")).is_ok());
}

#[test]
fn descriptions_are_at_most_255_characters_r8() {
    let group: fn(&str) -> String = |description| {
        format!("[[security_group]]\nname = \"sg\"\ndescription = \"{description}\"\n")
    };
    let rule: fn(&str) -> String = |description| {
        one_rule(&format!(
            "protocol = \"all\"\ncidr = [\"10.0.0.0/16\"]\ndescription = \"{description}\""
        ))
    };
    let (long, fits) = ("d".repeat(256), "d".repeat(255));
    for (text, field) in [
        (group, "security_group[0].description".to_string()),
        (rule, rule_field("description")),
    ] {
        assert_eq!(
            sole_error(&text(&long)),
            pair(
                &field,
                "description is 256 characters long; at most 255 are allowed"
            )
        );
        assert!(load(&text(&fits)).is_ok(), "{field}");
    }
}

#[test]
fn duplicate_group_names_name_both() {
    assert_eq!(
        sole_error("[[security_group]]\nname = \"a\"\n\n[[security_group]]\nname = \"a\"\n"),
        pair(
            "security_group[1].name",
            "duplicate security group name \"a\"; first defined at security_group[0].name (line 2)"
        )
    );
}

#[test]
fn instance_member_and_lab_client_names_share_one_namespace() {
    let text = format!(
        "{}\n[[member]]\nname = \"i\"\naddresses = [\"10.0.0.2\"]\nsecurity_groups = [\"sg\"]\n[lab]\n[[lab.client]]\nname = \"i\"\naddresses = [\"10.0.0.3\"]\n",
        one_instance(INSTANCE)
    );
    assert_eq!(
        error_messages(&text),
        vec![
            pair(
                "member[0].name",
                "duplicate name \"i\"; already used at instance[0].name (line 5)"
            ),
            pair(
                "lab.client[0].name",
                "duplicate name \"i\"; already used at instance[0].name (line 5)"
            ),
        ]
    );
    assert_eq!(
        sole_error(&one_instance(&INSTANCE.replace("\"i\"", "\"\""))),
        pair("instance[0].name", "name must not be empty")
    );
}

#[test]
fn an_interface_is_enforced_by_one_instance() {
    let text = format!(
        "{}\n[[instance]]\nname = \"j\"\ninterface = \"sgw-i\"\naddresses = [\"10.0.0.2\"]\nsecurity_groups = [\"sg\"]\n",
        one_instance(INSTANCE)
    );
    assert_eq!(
        sole_error(&text),
        pair(
            "instance[1].interface",
            "interface \"sgw-i\" is already used at instance[0].interface (line 6)"
        )
    );
}

#[test]
fn an_address_belongs_to_one_interface_or_client() {
    // The same IPv6 address written two ways is still the same address.
    let text = "[[security_group]]\nname = \"sg\"\n[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"10.0.0.1\", \"fd00::1\"]\nsecurity_groups = [\"sg\"]\n[[member]]\nname = \"m\"\naddresses = [\"fd00:0::1\"]\nsecurity_groups = [\"sg\"]\n[lab]\n[[lab.client]]\nname = \"c\"\naddresses = [\"10.0.0.1\"]\n";
    assert_eq!(
        error_messages(text),
        vec![
            pair(
                "member[0].addresses[0]",
                "address fd00::1 is already used at instance[0].addresses[1] (line 6)"
            ),
            pair(
                "lab.client[0].addresses[0]",
                "address 10.0.0.1 is already used at instance[0].addresses[0] (line 6)"
            ),
        ]
    );
    assert_eq!(
        sole_error(&one_instance(
            &INSTANCE.replace("[\"10.0.0.1\"]", "[\"10.0.0.1\", \"10.0.0.1\"]")
        )),
        pair(
            "instance[0].addresses[1]",
            "address 10.0.0.1 is already used at instance[0].addresses[0] (line 7)"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// R3 protocols, ports, ICMP type and code

#[test]
fn protocols_normalise_r3() {
    let cases: &[(&str, Protocol)] = &[
        ("\"tcp\"", Protocol::Tcp),
        ("6", Protocol::Tcp),
        ("\"6\"", Protocol::Tcp),
        ("\"17\"", Protocol::Udp),
        ("17", Protocol::Udp),
        ("\"-1\"", Protocol::All),
        ("-1", Protocol::All),
        ("\"all\"", Protocol::All),
        ("47", Protocol::Number(47)),
        ("\"47\"", Protocol::Number(47)),
        ("0", Protocol::Number(0)),
        ("255", Protocol::Number(255)),
    ];
    for (written, expected) in cases {
        let ports = match expected {
            Protocol::Tcp | Protocol::Udp => "ports = 80\n",
            _ => "",
        };
        let config = loaded(&one_rule(&format!(
            "protocol = {written}\n{ports}cidr = [\"10.0.0.0/16\"]"
        )))
        .config;
        assert_eq!(
            config.security_groups[0].ingress[0].protocol, *expected,
            "{written}"
        );
    }
    for (written, expected) in [("1", Protocol::Icmp), ("\"58\"", Protocol::Icmpv6)] {
        let cidr = if expected == Protocol::Icmp {
            "10.0.0.0/16"
        } else {
            "fd00::/16"
        };
        let config = loaded(&one_rule(&format!(
            "protocol = {written}\ncidr = [\"{cidr}\"]"
        )))
        .config;
        assert_eq!(config.security_groups[0].ingress[0].protocol, expected);
    }
}

#[test]
fn unknown_and_out_of_range_protocols_r3() {
    let message = |protocol: &str| {
        sole_error(&one_rule(&format!(
            "protocol = {protocol}\ncidr = [\"10.0.0.0/16\"]"
        )))
    };
    assert_eq!(
        message("\"TCP\""),
        pair(
            &rule_field("protocol"),
            "unknown protocol \"TCP\"; expected tcp, udp, icmp, icmpv6, all, -1 or a protocol number 0-255"
        )
    );
    assert_eq!(
        message("\"gre\"").1,
        "unknown protocol \"gre\"; expected tcp, udp, icmp, icmpv6, all, -1 or a protocol number 0-255"
    );
    assert_eq!(
        message("256"),
        pair(
            &rule_field("protocol"),
            "protocol number 256 is out of range; expected -1 (all) or 0-255"
        )
    );
    assert_eq!(
        message("-2").1,
        "protocol number -2 is out of range; expected -1 (all) or 0-255"
    );
    assert_eq!(
        message("\"300\"").1,
        "protocol number 300 is out of range; expected -1 (all) or 0-255"
    );
}

#[test]
fn tcp_and_udp_need_ports_r3() {
    assert_eq!(
        sole_error(&one_rule("protocol = \"udp\"\ncidr = [\"10.0.0.0/16\"]")),
        pair(&rule_field("ports"), "ports are required for protocol udp")
    );
}

#[test]
fn port_syntax_and_ranges_r3() {
    let ports = |ports: &str| {
        sole_error(&one_rule(&format!(
            "protocol = \"tcp\"\nports = {ports}\ncidr = [\"10.0.0.0/16\"]"
        )))
    };
    let invalid = |text: &str| {
        pair(
            &rule_field("ports"),
            &format!(
                "invalid ports \"{text}\"; expected a port \"N\" or a range \"A-B\" within 0-65535"
            ),
        )
    };
    assert_eq!(ports("\"80-\""), invalid("80-"));
    assert_eq!(ports("\"http\""), invalid("http"));
    assert_eq!(ports("\"-1\""), invalid("-1"));
    assert_eq!(ports("\" 80\""), invalid(" 80"));
    assert_eq!(ports("\"1-2-3\""), invalid("1-2-3"));
    assert_eq!(
        ports("70000"),
        pair(&rule_field("ports"), "port 70000 is out of range 0-65535")
    );
    assert_eq!(
        ports("-1"),
        pair(&rule_field("ports"), "port -1 is out of range 0-65535")
    );
    assert_eq!(
        ports("\"1-65536\""),
        pair(&rule_field("ports"), "port 65536 is out of range 0-65535")
    );
    assert_eq!(
        ports("\"90-80\""),
        pair(
            &rule_field("ports"),
            "port range 90-80 is reversed; did you mean 80-90?"
        )
    );
    let parsed = |ports: &str| {
        rule_selector(&format!(
            "protocol = \"tcp\"\nports = {ports}\ncidr = [\"10.0.0.0/16\"]"
        ))
    };
    assert_eq!(parsed("80"), PortRange::Ports { from: 80, to: 80 });
    assert_eq!(parsed("\"80\""), PortRange::Ports { from: 80, to: 80 });
    assert_eq!(
        parsed("\"0-65535\""),
        PortRange::Ports { from: 0, to: 65535 }
    );
}

#[test]
fn an_out_of_range_port_is_reported_once_r3() {
    for ports in ["70000", "\"70000\"", "\"70000-70000\""] {
        let all = errors(&one_rule(&format!(
            "protocol = \"tcp\"\nports = {ports}\ncidr = [\"10.0.0.0/16\"]"
        )));
        let shown: Vec<String> = all.iter().map(Diagnostic::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "test.toml:5:9: error: security_group[0].ingress[0].ports: port 70000 is out of \
                 range 0-65535"
            ],
            "ports = {ports}"
        );
    }
    // Two ends out of range are two problems.
    assert_eq!(
        error_messages(&one_rule(
            "protocol = \"tcp\"\nports = \"70000-70001\"\ncidr = [\"10.0.0.0/16\"]"
        )),
        vec![
            pair(&rule_field("ports"), "port 70000 is out of range 0-65535"),
            pair(&rule_field("ports"), "port 70001 is out of range 0-65535"),
        ]
    );
}

#[test]
fn icmp_takes_type_and_code_not_ports_r3() {
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\nports = 8\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("ports"),
            "ports are not allowed for protocol icmp; use icmp_type and icmp_code"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"tcp\"\nports = 80\nicmp_type = 8\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("icmp_type"),
            "icmp_type is only valid for protocol icmp or icmpv6, not tcp"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"all\"\nicmp_code = 0\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("icmp_code"),
            "icmp_code is only valid for protocol icmp or icmpv6, not all"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\nicmp_type = 256\ncidr = [\"10.0.0.0/16\"]"
        )),
        pair(
            &rule_field("icmp_type"),
            "icmp_type 256 is out of range; expected -1 (any) or 0-255"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmpv6\"\nicmp_type = 1\nicmp_code = -2\ncidr = [\"::/0\"]"
        )),
        pair(
            &rule_field("icmp_code"),
            "icmp_code -2 is out of range; expected -1 (any) or 0-255"
        )
    );
}

#[test]
fn an_icmp_code_needs_a_type_r3() {
    let expected = pair(
        &rule_field("icmp_code"),
        "icmp_code 0 needs an icmp_type; a code with type -1 (any) is invalid",
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\nicmp_code = 0\ncidr = [\"10.0.0.0/16\"]"
        )),
        expected
    );
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\nicmp_type = -1\nicmp_code = 0\ncidr = [\"10.0.0.0/16\"]"
        )),
        expected
    );
}

#[test]
fn icmp_type_and_code_map_to_the_model() {
    let selector = |fields: &str| {
        rule_selector(&format!(
            "protocol = \"icmp\"\n{fields}\ncidr = [\"10.0.0.0/16\"]"
        ))
    };
    assert_eq!(
        selector(""),
        PortRange::Icmp {
            icmp_type: None,
            code: None
        }
    );
    assert_eq!(
        selector("icmp_type = -1\nicmp_code = -1"),
        PortRange::Icmp {
            icmp_type: None,
            code: None
        }
    );
    assert_eq!(
        selector("icmp_type = 3\nicmp_code = 4"),
        PortRange::Icmp {
            icmp_type: Some(3),
            code: Some(4)
        }
    );
    assert_eq!(
        selector("icmp_type = 8"),
        PortRange::Icmp {
            icmp_type: Some(8),
            code: None
        }
    );
}

// ---------------------------------------------------------------------------------------------
// R5 peers

#[test]
fn a_rule_needs_a_peer_r5() {
    assert_eq!(
        sole_error(&one_rule("protocol = \"all\"")),
        pair(
            RULE,
            "rule has no peer; give at least one CIDR in cidr, security group in groups or prefix list in prefix_lists"
        )
    );
    assert_eq!(
        sole_error(&one_rule("protocol = \"all\"\ncidr = []\ngroups = []")).1,
        "rule has no peer; give at least one CIDR in cidr, security group in groups or prefix list in prefix_lists"
    );
}

#[test]
fn cidrs_must_parse_and_have_no_host_bits_r5() {
    let cidr = |cidr: &str| {
        sole_error(&one_rule(&format!(
            "protocol = \"all\"\ncidr = [\"{cidr}\"]"
        )))
    };
    let at = rule_field("cidr[0]");
    assert_eq!(
        cidr("10.0.0.1/8"),
        pair(
            &at,
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"
        )
    );
    assert_eq!(
        cidr("fd00::1/64"),
        pair(&at, "fd00::1/64 has host bits set; did you mean fd00::/64?")
    );
    assert_eq!(
        cidr("10.0.0.0/33"),
        pair(
            &at,
            "\"10.0.0.0/33\" is not a valid CIDR; expected an address and prefix length such as 10.0.0.0/8 or fd00::/8"
        )
    );
    assert_eq!(
        cidr("office").1,
        "\"office\" is not a valid CIDR; expected an address and prefix length such as 10.0.0.0/8 or fd00::/8"
    );
    assert_eq!(
        cidr("10.0.0.1"),
        pair(
            &at,
            "\"10.0.0.1\" has no prefix length; did you mean 10.0.0.1/32?"
        )
    );
    assert_eq!(
        cidr("fd00::1"),
        pair(
            &at,
            "\"fd00::1\" has no prefix length; did you mean fd00::1/128?"
        )
    );
}

#[test]
fn icmp_families_must_match_their_peers_r5() {
    assert_eq!(
        sole_error(&one_rule(
            "protocol = \"icmp\"\ncidr = [\"10.0.0.0/16\", \"fd00::/8\"]"
        )),
        pair(
            &rule_field("cidr[1]"),
            "protocol icmp can never match the IPv6 peer fd00::/8; use icmpv6 for IPv6"
        )
    );
    assert_eq!(
        sole_error(&one_rule("protocol = 58\ncidr = [\"0.0.0.0/0\"]")),
        pair(
            &rule_field("cidr[0]"),
            "protocol icmpv6 can never match the IPv4 peer 0.0.0.0/0; use icmp for IPv4"
        )
    );
    // A group peer may hold both families: it is not an error.
    assert!(load(&one_rule("protocol = \"icmpv6\"\ngroups = [\"sg\"]")).is_ok());
}

#[test]
fn peers_expand_in_file_order() {
    let config = loaded(&one_rule(
        "protocol = \"all\"\ngroups = [\"sg\"]\ncidr = [\"10.0.0.0/16\", \"fd00::/16\"]",
    ))
    .config;
    let peers = &config.security_groups[0].ingress[0].peers;
    assert_eq!(
        peers,
        &vec![
            Peer::Cidr("10.0.0.0/16".parse().unwrap()),
            Peer::Cidr("fd00::/16".parse().unwrap()),
            Peer::Group("sg".to_string()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// G5 references

#[test]
fn unknown_group_references_name_the_rule_and_group_g5() {
    let text = "[[security_group]]\nname = \"web\"\n[[security_group.egress]]\nprotocol = \"all\"\ncidr = [\"10.0.0.0/16\"]\n[[security_group.egress]]\nprotocol = \"tcp\"\nports = 5432\ngroups = [\"db\"]\n";
    assert_eq!(
        sole_error(text),
        pair(
            "security_group[0].egress[1].groups[0]",
            "rule egress[1] of group \"web\" references unknown security group \"db\""
        )
    );
}

#[test]
fn a_group_may_reference_itself_g4() {
    let config = loaded(&one_rule("protocol = \"all\"\ngroups = [\"sg\"]")).config;
    assert_eq!(
        config.security_groups[0].ingress[0].peers,
        vec![Peer::Group("sg".into())]
    );
}

#[test]
fn attached_groups_must_exist_once_g5() {
    assert_eq!(
        sole_error(&one_instance(
            &INSTANCE.replace("[\"sg\"]", "[\"sg\", \"nope\"]")
        )),
        pair(
            "instance[0].security_groups[1]",
            "instance \"i\" uses unknown security group \"nope\""
        )
    );
    assert_eq!(
        sole_error(&one_instance(
            &INSTANCE.replace("[\"sg\"]", "[\"sg\", \"sg\"]")
        )),
        pair(
            "instance[0].security_groups[1]",
            "security group \"sg\" is listed twice; first at instance[0].security_groups[0] (line 8)"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&INSTANCE.replace("[\"sg\"]", "[]"))),
        pair(
            "instance[0].security_groups",
            "security_groups must list at least one security group"
        )
    );
    assert_eq!(
        sole_error(
            "[[member]]\nname = \"m\"\naddresses = [\"10.0.0.1\"]\nsecurity_groups = [\"gone\"]\n"
        ),
        pair(
            "member[0].security_groups[0]",
            "member \"m\" uses unknown security group \"gone\""
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Duplicate rules

#[test]
fn duplicate_rules_in_one_group_and_direction_name_both() {
    let text = "[[security_group]]\nname = \"sg\"\n[[security_group.ingress]]\nprotocol = \"tcp\"\nports = 80\ncidr = [\"10.0.0.0/8\"]\n[[security_group.ingress]]\nprotocol = 6\nports = \"80-80\"\ncidr = [\"10.0.0.0/8\"]\n";
    assert_eq!(
        sole_error(text),
        pair(
            "security_group[0].ingress[1].cidr[0]",
            "duplicate rule: tcp 80 from 10.0.0.0/8 is already allowed by security_group[0].ingress[0].cidr[0] (line 6)"
        )
    );
    assert_eq!(
        sole_error(&one_rule("protocol = \"all\"\ngroups = [\"sg\", \"sg\"]")),
        pair(
            &rule_field("groups[1]"),
            "duplicate rule: all from sg:sg is already allowed by security_group[0].ingress[0].groups[0] (line 5)"
        )
    );
    // The same rule in the other direction is a different rule.
    let both_ways = "[[security_group]]\nname = \"sg\"\n[[security_group.ingress]]\nprotocol = \"udp\"\nports = 53\ncidr = [\"10.0.0.0/8\"]\n[[security_group.egress]]\nprotocol = \"udp\"\nports = 53\ncidr = [\"10.0.0.0/8\"]\n";
    assert!(load(both_ways).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Instances, members, lab clients

#[test]
fn addresses_are_unicast_hosts_without_prefix() {
    let address = |address: &str| {
        sole_error(&one_instance(
            &INSTANCE.replace("\"10.0.0.1\"", &format!("\"{address}\"")),
        ))
    };
    let at = "instance[0].addresses[0]";
    assert_eq!(
        address("10.0.0.1/32"),
        pair(
            at,
            "\"10.0.0.1/32\" has a prefix length; give the host address alone, such as 10.0.0.1"
        )
    );
    assert_eq!(
        address("web-1.internal"),
        pair(at, "\"web-1.internal\" is not an IP address")
    );
    assert_eq!(
        address("0.0.0.0"),
        pair(at, "0.0.0.0 is not a unicast host address")
    );
    assert_eq!(
        address("ff02::1"),
        pair(at, "ff02::1 is not a unicast host address")
    );
    assert_eq!(
        address("255.255.255.255"),
        pair(at, "255.255.255.255 is not a unicast host address")
    );
    assert_eq!(
        sole_error(&one_instance(&INSTANCE.replace("[\"10.0.0.1\"]", "[]"))),
        pair(
            "instance[0].addresses",
            "addresses must list at least one address"
        )
    );
    assert_eq!(
        sole_error("[lab]\n[[lab.client]]\nname = \"c\"\naddresses = []\n"),
        pair(
            "lab.client[0].addresses",
            "addresses must list at least one address"
        )
    );
}

#[test]
fn interfaces_are_found_by_name_pattern_host_mac_or_the_guests_mac() {
    use crate::model::{InterfaceMatch, MacAddr};
    let without_interface = INSTANCE.replace("interface = \"sgw-i\"\n", "");
    let instance = |fields: &str| {
        let config = loaded(&one_instance(fields)).config;
        config.instances[0].clone()
    };
    let mac: MacAddr = "52:54:00:12:34:56".parse().expect("mac");
    let by_pattern = instance(&INSTANCE.replace("sgw-i", "tap101i*"));
    assert_eq!(
        by_pattern.interface_match,
        InterfaceMatch::Glob("tap101i*".to_string())
    );
    // libvirt gives the tap the guest's MAC with the first octet fe.
    let by_guest_mac = instance(&format!("{without_interface}\nmac = \"52:54:00:12:34:56\""));
    assert_eq!(by_guest_mac.mac, Some(mac));
    let tap: MacAddr = "fe:54:00:12:34:56".parse().expect("mac");
    assert_eq!(by_guest_mac.interface_match, InterfaceMatch::HostMac(tap));
    assert_eq!(by_guest_mac.interface, "mac fe:54:00:12:34:56");
    let by_host_mac = instance(&format!(
        "{without_interface}\nhost_mac = \"0a:00:00:00:00:01\"\nmac = \"52:54:00:12:34:56\""
    ));
    assert_eq!(
        by_host_mac.interface_match,
        InterfaceMatch::HostMac("0a:00:00:00:00:01".parse().expect("mac"))
    );
    // A MAC given with the interface's name is the guest's only: port security, I5.
    let named = instance(&format!("{INSTANCE}\nmac = \"52:54:00:12:34:56\""));
    assert_eq!(named.interface_match, InterfaceMatch::Name);
    assert_eq!(named.mac, Some(mac));

    let at = |field: &str| format!("instance[0].{field}");
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nhost_mac = \"0a:00:00:00:00:01\""
        ))),
        pair(
            &at("host_mac"),
            "give \"interface\" or \"host_mac\", not both: each finds the interface"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nmac = \"52:54:00:12:34\""
        ))),
        pair(
            &at("mac"),
            "\"52:54:00:12:34\" is not a MAC address such as 52:54:00:12:34:56: it needs six octets"
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nmac = \"01:00:5e:00:00:01\""
        ))),
        pair(&at("mac"), "01:00:5e:00:00:01 is not a unicast MAC address")
    );
    assert_eq!(
        sole_error(&one_instance(&INSTANCE.replace("sgw-i", "tap[0-"))),
        pair(
            &at("interface"),
            "invalid interface pattern \"tap[0-\": invalid range pattern"
        )
    );
    let twice = format!(
        "[[security_group]]\nname = \"sg\"\n[[instance]]\n{}\nmac = \"52:54:00:12:34:56\"\n\
         [[instance]]\n{}\nhost_mac = \"fe:54:00:12:34:56\"\n",
        without_interface,
        without_interface
            .replace("name = \"i\"", "name = \"j\"")
            .replace("10.0.0.1", "10.0.0.2"),
    );
    let (field, message) = sole_error(&twice);
    assert_eq!(field, "instance[1].host_mac");
    assert!(
        message.starts_with("an interface with MAC fe:54:00:12:34:56 is already claimed at"),
        "{message}"
    );
}

#[test]
fn dhcp_is_on_by_default_for_ports_only_i6() {
    let dhcp = |fields: &str| loaded(&one_instance(fields)).config.instances[0].dhcp;
    assert!(dhcp(INSTANCE));
    assert!(!dhcp(&format!("{INSTANCE}\ndhcp = false")));
    assert!(!dhcp(&format!("{INSTANCE}\nattach = \"host\"")));
    assert!(dhcp(&format!("{INSTANCE}\nattach = \"host\"\ndhcp = true")));
}

#[test]
fn interface_names_follow_linux_rules() {
    let interface = |name: &str| sole_error(&one_instance(&INSTANCE.replace("sgw-i", name)));
    let at = "instance[0].interface";
    assert_eq!(
        interface(""),
        pair(at, "invalid interface name \"\": it is empty")
    );
    assert_eq!(
        interface("sixteen-chars-xx"),
        pair(
            at,
            "invalid interface name \"sixteen-chars-xx\": it is longer than 15 bytes"
        )
    );
    assert_eq!(
        interface(".."),
        pair(
            at,
            "invalid interface name \"..\": \".\" and \"..\" are reserved"
        )
    );
    assert_eq!(
        interface("a/b"),
        pair(at, "invalid interface name \"a/b\": it contains '/'")
    );
    assert_eq!(
        interface("eth0:1"),
        pair(at, "invalid interface name \"eth0:1\": it contains ':'")
    );
    assert_eq!(
        interface("tap 0"),
        pair(
            at,
            "invalid interface name \"tap 0\": it contains whitespace"
        )
    );
    assert!(load(&one_instance(&INSTANCE.replace("sgw-i", "fifteen-chars-x"))).is_ok());
}

#[test]
fn attach_and_hook_values() {
    assert_eq!(
        sole_error(&one_instance(&format!("{INSTANCE}\nattach = \"bridge\""))),
        pair(
            "instance[0].attach",
            "unknown attach mode \"bridge\"; expected \"port\" or \"host\""
        )
    );
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nattach = \"host\"\nhost_ingress_hook = \"nft\""
        ))),
        pair(
            "instance[0].host_ingress_hook",
            "unknown host_ingress_hook \"nft\"; expected \"xdp\" or \"tc\""
        )
    );
    let instance = &loaded(&one_instance(&format!(
        "{INSTANCE}\nattach = \"host\"\nhost_ingress_hook = \"tc\""
    )))
    .config
    .instances[0];
    assert_eq!(instance.attach, AttachMode::Host);
    assert_eq!(instance.host_ingress_hook, HostIngressHook::Tc);
}

#[test]
fn conntrack_ranges_c5() {
    let conntrack = |setting: &str| {
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nconntrack = {{ {setting} }}"
        )))
    };
    let cases = [
        (
            "tcp_established_timeout = 59",
            "tcp_established_timeout must be between 60 and 432000 seconds, got 59",
        ),
        (
            "tcp_established_timeout = 432001",
            "tcp_established_timeout must be between 60 and 432000 seconds, got 432001",
        ),
        (
            "udp_timeout = 29",
            "udp_timeout must be between 30 and 60 seconds, got 29",
        ),
        (
            "udp_timeout = 61",
            "udp_timeout must be between 30 and 60 seconds, got 61",
        ),
        (
            "udp_stream_timeout = 59",
            "udp_stream_timeout must be between 60 and 180 seconds, got 59",
        ),
        (
            "udp_stream_timeout = 181",
            "udp_stream_timeout must be between 60 and 180 seconds, got 181",
        ),
        (
            "max_flows = 0",
            "max_flows must be between 1 and 4194304, got 0",
        ),
        (
            "max_flows = 4194305",
            "max_flows must be between 1 and 4194304, got 4194305",
        ),
        (
            "udp_timeout = -30",
            "udp_timeout must be between 30 and 60 seconds, got -30",
        ),
    ];
    for (setting, message) in cases {
        let field = setting.split(' ').next().unwrap_or_default();
        assert_eq!(
            conntrack(setting),
            pair(&format!("instance[0].conntrack.{field}"), message)
        );
    }
    let instance = &loaded(&one_instance(&format!(
        "{INSTANCE}\n[instance.conntrack]\ntcp_established_timeout = 60\nudp_timeout = 60\nudp_stream_timeout = 60\nmax_flows = 4194304\ncut_on_rule_removal = true"
    )))
    .config
    .instances[0];
    assert_eq!(
        instance.conntrack,
        Conntrack {
            tcp_established_timeout: 60,
            udp_timeout: 60,
            udp_stream_timeout: 60,
            max_flows: 4_194_304,
            cut_on_rule_removal: true,
        }
    );
}

#[test]
fn exempt_cidrs_follow_r5_i3() {
    assert_eq!(
        sole_error(&one_instance(&format!(
            "{INSTANCE}\nexempt = [\"169.254.169.254/16\"]"
        ))),
        pair(
            "instance[0].exempt[0]",
            "169.254.169.254/16 has host bits set; did you mean 169.254.0.0/16?"
        )
    );
}

#[test]
fn instance_defaults() {
    let instance = &loaded(&one_instance(INSTANCE)).config.instances[0];
    assert_eq!(instance.attach, AttachMode::Port);
    assert_eq!(instance.host_ingress_hook, HostIngressHook::Xdp);
    assert!(instance.source_dest_check, "I1: on by default");
    assert!(!instance.related_icmp, "C7: off by default");
    assert!(instance.exempt.is_empty(), "I3: nothing exempt by default");
    assert_eq!(instance.conntrack, Conntrack::default());
    assert_eq!(
        instance.addresses,
        vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
    );
}

// ---------------------------------------------------------------------------------------------
// R2 egress

#[test]
fn absent_egress_is_the_aws_default_r2() {
    let group = &loaded("[[security_group]]\nname = \"sg\"\n")
        .config
        .security_groups[0];
    assert!(group.egress_is_default);
    assert_eq!(group.egress, default_egress(&group.id));
    assert!(
        group.ingress.is_empty(),
        "R2: no ingress rules admit nothing"
    );
}

#[test]
fn empty_egress_admits_nothing_r2() {
    let group = &loaded("[[security_group]]\nname = \"sg\"\negress = []\n")
        .config
        .security_groups[0];
    assert!(!group.egress_is_default);
    assert!(group.egress.is_empty());
}

#[test]
fn inline_rule_arrays_are_accepted() {
    let group = &loaded(
        "[[security_group]]\nname = \"sg\"\negress = [{ protocol = \"tcp\", ports = 443, cidr = [\"0.0.0.0/0\"] }]\n",
    )
    .config
    .security_groups[0];
    assert_eq!(group.egress.len(), 1);
    assert!(!group.egress_is_default);
}

// ---------------------------------------------------------------------------------------------
// Warnings

#[test]
fn ports_for_protocols_that_ignore_them_warn_r3() {
    assert_eq!(
        warnings(&one_rule(
            "protocol = \"all\"\nports = \"80\"\ncidr = [\"10.0.0.0/16\"]"
        )),
        vec![pair(
            &rule_field("ports"),
            "ports are ignored for protocol all"
        )]
    );
    let config_warnings = warnings(&one_rule(
        "protocol = 47\nports = 80\ncidr = [\"10.0.0.0/16\"]",
    ));
    assert_eq!(
        config_warnings,
        vec![pair(
            &rule_field("ports"),
            "ports are ignored for protocol 47"
        )]
    );
}

#[test]
fn a_host_ingress_hook_on_a_port_attachment_warns() {
    let ignored = vec![pair(
        "instance[0].host_ingress_hook",
        "host_ingress_hook only applies to attach = \"host\"; it is ignored with attach = \"port\"",
    )];
    for (fields, expected) in [
        ("host_ingress_hook = \"tc\"", ignored.clone()),
        ("attach = \"port\"\nhost_ingress_hook = \"xdp\"", ignored),
        ("attach = \"host\"\nhost_ingress_hook = \"xdp\"", Vec::new()),
    ] {
        assert_eq!(
            warnings(&one_instance(&format!("{INSTANCE}\n{fields}"))),
            expected,
            "{fields}"
        );
    }
}

#[test]
fn sensitive_ports_open_to_the_internet_warn() {
    assert_eq!(
        warnings(&one_rule(
            "protocol = \"tcp\"\nports = 22\ncidr = [\"0.0.0.0/0\"]"
        )),
        vec![pair(
            &rule_field("cidr[0]"),
            "port 22 (SSH) is open to the whole internet (0.0.0.0/0)"
        )]
    );
    assert_eq!(
        warnings(&one_rule(
            "protocol = \"tcp\"\nports = \"3000-3400\"\ncidr = [\"10.0.0.0/8\", \"::/0\"]"
        )),
        vec![pair(
            &rule_field("cidr[1]"),
            "ports 3306 (MySQL), 3389 (RDP) are open to the whole internet (::/0)"
        )]
    );
    assert_eq!(
        warnings(&one_rule("protocol = \"all\"\ncidr = [\"0.0.0.0/0\"]")),
        vec![
            pair(
                &rule_field("cidr[0]"),
                "ports 22 (SSH), 1433 (SQL Server), 3306 (MySQL), 3389 (RDP), 5432 (PostgreSQL), 6379 (Redis), 9200 (Elasticsearch), 27017 (MongoDB) are open to the whole internet (0.0.0.0/0)"
            ),
            pair(
                &rule_field("cidr[0]"),
                "all protocols are allowed from 0.0.0.0/0, a network wider than /16"
            ),
        ]
    );
    for quiet in [
        "protocol = \"udp\"\nports = 22\ncidr = [\"0.0.0.0/0\"]",
        "protocol = \"tcp\"\nports = 22\ncidr = [\"10.0.0.0/8\"]",
        "protocol = \"tcp\"\nports = \"80-443\"\ncidr = [\"0.0.0.0/0\", \"::/0\"]",
    ] {
        assert!(warnings(&one_rule(quiet)).is_empty(), "{quiet}");
    }
    // Outbound to the internet is the AWS default (R2), not an exposure.
    let egress = "[[security_group]]\nname = \"sg\"\n[[security_group.egress]]\nprotocol = \"tcp\"\nports = 22\ncidr = [\"0.0.0.0/0\"]\n";
    assert!(warnings(egress).is_empty());
}

#[test]
fn all_protocols_from_a_wide_network_warn() {
    assert_eq!(
        warnings(&one_rule(
            "protocol = -1\ncidr = [\"10.0.0.0/8\", \"10.1.0.0/16\", \"fd00::/8\", \"fd00::/16\"]"
        )),
        vec![
            pair(
                &rule_field("cidr[0]"),
                "all protocols are allowed from 10.0.0.0/8, a network wider than /16"
            ),
            pair(
                &rule_field("cidr[2]"),
                "all protocols are allowed from fd00::/8, a network wider than /16"
            ),
        ]
    );
}

/// Two groups on one instance; `a` and `b` are the bodies of their ingress rules.
fn two_groups(a: &str, b: &str) -> String {
    format!(
        "[[security_group]]\nname = \"a\"\n{a}\n[[security_group]]\nname = \"b\"\n{b}\n[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"192.0.2.1\"]\nsecurity_groups = [\"a\", \"b\"]\n"
    )
}

fn ingress(fields: &str) -> String {
    format!("[[security_group.ingress]]\n{fields}\n")
}

#[test]
fn a_rule_covered_by_another_of_the_same_interface_warns_r6() {
    let text = two_groups(
        &ingress("protocol = \"all\"\ncidr = [\"10.0.0.0/16\"]"),
        &ingress("protocol = \"tcp\"\nports = 80\ncidr = [\"10.0.1.0/24\"]"),
    );
    assert_eq!(
        warnings(&text),
        vec![pair(
            "security_group[1].ingress[0].cidr[0]",
            "on interface \"sgw-i\" (instance \"i\"), rule ingress[0] of group \"b\" (tcp 80 from 10.0.1.0/24) is covered by rule ingress[0] of group \"a\" (all from 10.0.0.0/16)"
        )]
    );
    // A port range that contains the other.
    let text = two_groups(
        &ingress("protocol = \"udp\"\nports = 80\ncidr = [\"10.0.1.0/24\"]"),
        &ingress("protocol = \"udp\"\nports = \"1-1024\"\ncidr = [\"10.0.0.0/16\"]"),
    );
    assert_eq!(
        warnings(&text),
        vec![pair(
            "security_group[0].ingress[0].cidr[0]",
            "on interface \"sgw-i\" (instance \"i\"), rule ingress[0] of group \"a\" (udp 80 from 10.0.1.0/24) is covered by rule ingress[0] of group \"b\" (udp 1-1024 from 10.0.0.0/16)"
        )]
    );
    // ICMP type any covers a specific type.
    let text = two_groups(
        &ingress("protocol = \"icmp\"\nicmp_type = 8\ncidr = [\"10.0.0.0/16\"]"),
        &ingress("protocol = \"icmp\"\ncidr = [\"10.0.0.0/16\"]"),
    );
    assert_eq!(
        warnings(&text),
        vec![pair(
            "security_group[0].ingress[0].cidr[0]",
            "on interface \"sgw-i\" (instance \"i\"), rule ingress[0] of group \"a\" (icmp type 8 code any from 10.0.0.0/16) is covered by rule ingress[0] of group \"b\" (icmp type any code any from 10.0.0.0/16)"
        )]
    );
}

#[test]
fn a_rule_equal_to_one_in_another_attached_group_warns_once_r6() {
    let rule = ingress("protocol = \"tcp\"\nports = 443\ngroups = [\"a\"]");
    assert_eq!(
        warnings(&two_groups(&rule, &rule)),
        vec![pair(
            "security_group[1].ingress[0].groups[0]",
            "on interface \"sgw-i\" (instance \"i\"), rule ingress[0] of group \"b\" (tcp 443 from sg:a) duplicates rule ingress[0] of group \"a\" (tcp 443 from sg:a)"
        )]
    );
}

#[test]
fn coverage_within_one_group_warns_per_interface() {
    let text = format!(
        "{}\n[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"192.0.2.1\"]\nsecurity_groups = [\"sg\"]\n",
        one_rule("protocol = \"tcp\"\nports = 80\ncidr = [\"10.0.0.0/16\", \"10.0.5.0/24\"]")
    );
    assert_eq!(
        warnings(&text),
        vec![pair(
            &rule_field("cidr[1]"),
            "on interface \"sgw-i\" (instance \"i\"), rule ingress[0] of group \"sg\" (tcp 80 from 10.0.5.0/24) is covered by rule ingress[0] of group \"sg\" (tcp 80 from 10.0.0.0/16)"
        )]
    );
}

#[test]
fn rules_that_do_not_cover_each_other_are_quiet() {
    for (a, b) in [
        // Different families.
        (
            "protocol = \"all\"\ncidr = [\"10.0.0.0/16\"]",
            "protocol = \"all\"\ncidr = [\"fd00::/16\"]",
        ),
        // A CIDR never covers a group, whatever its members.
        (
            "protocol = \"all\"\ncidr = [\"10.0.0.0/16\"]",
            "protocol = \"all\"\ngroups = [\"a\"]",
        ),
        // Different protocols.
        (
            "protocol = \"tcp\"\nports = \"0-65535\"\ncidr = [\"10.0.0.0/16\"]",
            "protocol = \"udp\"\nports = \"0-65535\"\ncidr = [\"10.0.0.0/16\"]",
        ),
        // Overlapping port ranges, neither inside the other.
        (
            "protocol = \"tcp\"\nports = \"1-100\"\ncidr = [\"10.0.0.0/16\"]",
            "protocol = \"tcp\"\nports = \"50-150\"\ncidr = [\"10.0.0.0/16\"]",
        ),
        // Different ICMP codes.
        (
            "protocol = \"icmp\"\nicmp_type = 3\nicmp_code = 4\ncidr = [\"10.0.0.0/16\"]",
            "protocol = \"icmp\"\nicmp_type = 3\nicmp_code = 1\ncidr = [\"10.0.0.0/16\"]",
        ),
    ] {
        let text = two_groups(&ingress(a), &ingress(b));
        assert!(warnings(&text).is_empty(), "{a} / {b}");
    }
}

#[test]
fn the_default_egress_is_not_reported_as_duplicated() {
    // Both groups keep the default egress (R2): identical rules the author never wrote.
    let text = two_groups("", "");
    assert!(warnings(&text).is_empty());
}

#[test]
fn the_same_rule_on_unrelated_interfaces_is_quiet() {
    let text = "[[security_group]]\nname = \"a\"\n[[security_group.ingress]]\nprotocol = \"tcp\"\nports = 80\ncidr = [\"10.0.0.0/8\"]\n[[security_group]]\nname = \"b\"\n[[security_group.ingress]]\nprotocol = \"tcp\"\nports = 80\ncidr = [\"10.0.0.0/8\"]\n[[instance]]\nname = \"i\"\ninterface = \"sgw-i\"\naddresses = [\"192.0.2.1\"]\nsecurity_groups = [\"a\"]\n[[instance]]\nname = \"j\"\ninterface = \"sgw-j\"\naddresses = [\"192.0.2.2\"]\nsecurity_groups = [\"b\"]\n";
    assert!(warnings(text).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The public surface

#[test]
fn load_reports_unreadable_files() {
    let error = super::load(Path::new("/nonexistent/sgwall.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("reading /nonexistent/sgwall.toml: "),
        "{error}"
    );
}

#[test]
fn check_report_prints_every_error_and_a_count() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let report = check_report(&examples.join("invalid.toml"));
    assert!(!report.passed());
    assert_eq!(report.stderr.len(), 14);
    assert_eq!(report.stderr.last().map(String::as_str), Some("13 errors"));
    assert!(report.stderr[0].ends_with(
        "invalid.toml:5:24: error: quotas.groups_per_interface: quota groups_per_interface must be between 1 and 16, got 20"
    ));

    let report = check_report(&examples.join("three-tier.toml"));
    assert!(report.stderr.is_empty(), "{:?}", report.stderr);
    let summary = report.stdout.unwrap_or_default();
    assert!(
        summary.ends_with("three-tier.toml: ok: 3 groups, 3 instances, 1 members, 13 rules"),
        "{summary}"
    );

    let report = check_report(Path::new("/nonexistent/sgwall.toml"));
    assert!(!report.passed());
    assert_eq!(report.stderr.last().map(String::as_str), Some("1 errors"));
}

#[test]
fn check_report_interleaves_warnings_and_errors_in_file_order() {
    let text = one_rule("protocol = \"all\"\nports = 80\ncidr = [\"bad\"]");
    let file = std::env::temp_dir().join(format!("sgwall-check-{}.toml", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let report = check_report(&file);
    std::fs::remove_file(&file).unwrap();
    let name = file.display();
    assert_eq!(
        report.stderr,
        vec![
            format!(
                "{name}:5:9: warning: security_group[0].ingress[0].ports: ports are ignored for protocol all"
            ),
            format!(
                "{name}:6:9: error: security_group[0].ingress[0].cidr[0]: \"bad\" is not a valid CIDR; expected an address and prefix length such as 10.0.0.0/8 or fd00::/8"
            ),
            "1 errors".to_string(),
        ]
    );
}

mod ids;
mod network;
