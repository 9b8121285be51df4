//! R9 ids, tags and the VPC: what a config may set, what is derived, and what stays stable.

use super::*;
use crate::{
    ids::{self, IdKind},
    model::{Direction, effective_rules},
};

const TWO_GROUPS: &str = r#"
[[security_group]]
name = "web-sg"

  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  cidr = ["0.0.0.0/0", "::/0"]

  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  groups = ["admin-sg"]

[[security_group]]
name = "admin-sg"

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["10.0.1.10"]
security_groups = ["web-sg"]
"#;

fn rule_ids(config: &Config, group: &str, direction: Direction) -> Vec<String> {
    config
        .group(group)
        .map(|group| {
            group
                .rules(direction)
                .iter()
                .flat_map(|rule| rule.ids.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn r9_every_group_rule_and_interface_has_an_aws_style_id() {
    let config = loaded(TWO_GROUPS).config;
    let web = config.group("web-sg").expect("web-sg");
    assert!(ids::is_well_formed(IdKind::SecurityGroup, &web.id));
    assert_eq!(web.id, ids::derived(IdKind::SecurityGroup, "web-sg"));
    let ingress = rule_ids(&config, "web-sg", Direction::Ingress);
    assert_eq!(ingress.len(), 3, "one id per peer");
    for id in &ingress {
        assert!(ids::is_well_formed(IdKind::SecurityGroupRule, id), "{id}");
    }
    // The default egress (R2) has ids too, as on AWS.
    assert_eq!(rule_ids(&config, "web-sg", Direction::Egress).len(), 2);
    let web_1 = config.instance("web-1").expect("web-1");
    assert!(ids::is_well_formed(IdKind::NetworkInterface, &web_1.id));
    assert!(ids::is_well_formed(IdKind::Vpc, &config.vpc.id));
    // Effective rules carry the same ids.
    let effective = effective_rules(&config, web_1, Direction::Ingress);
    let effective_ids: Vec<String> = effective.iter().map(|r| r.rule_id.clone()).collect();
    assert_eq!(effective_ids, ingress);
}

#[test]
fn r9_derived_ids_survive_edits_of_other_rules_and_reordering() {
    let before = loaded(TWO_GROUPS).config;
    // Another rule added first, the two rules swapped, a description changed.
    let edited = TWO_GROUPS
        .replace(
            "  [[security_group.ingress]]\n  protocol = \"tcp\"\n  ports = 80",
            "  [[security_group.ingress]]\n  protocol = \"udp\"\n  ports = 53\n  cidr = [\"10.0.0.0/8\"]\n\n  [[security_group.ingress]]\n  protocol = \"tcp\"\n  ports = 80\n  description = \"web\"",
        )
        .replace(
            "[[security_group]]\nname = \"admin-sg\"",
            "[[security_group]]\nname = \"admin-sg\"\n  [[security_group.ingress]]\n  protocol = \"all\"\n  groups = [\"admin-sg\"]",
        );
    let after = loaded(&edited).config;
    let old = rule_ids(&before, "web-sg", Direction::Ingress);
    let new = rule_ids(&after, "web-sg", Direction::Ingress);
    assert_eq!(new.len(), 4);
    assert_eq!(&new[1..], &old[..], "the old rules keep their ids");
    assert_eq!(
        after.group("web-sg").map(|g| &g.id),
        before.group("web-sg").map(|g| &g.id)
    );
}

#[test]
fn r9_a_config_may_set_ids_and_they_are_kept() {
    let config = loaded(
        r#"
[vpc]
id = "vpc-0123456789abcdef0"
cidr = "10.0.0.0/16"

[[security_group]]
name = "sg"
id = "sg-0a1b2c3d4e5f60001"
tags = { Name = "web", team = "edge" }

  [[security_group.ingress]]
  id = "sgr-0fedcba9876543210"
  protocol = "tcp"
  ports = 443
  cidr = ["0.0.0.0/0"]
  tags = { Name = "https" }

[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.0.0.1"]
security_groups = ["sg"]
id = "eni-1a2b3c4d"
tags = { Name = "web-1" }
"#,
    )
    .config;
    assert_eq!(config.vpc.id, "vpc-0123456789abcdef0");
    assert_eq!(config.vpc.cidr, Some("10.0.0.0/16".parse().expect("cidr")));
    let group = &config.security_groups[0];
    assert_eq!(group.id, "sg-0a1b2c3d4e5f60001");
    assert_eq!(group.tags.get("team").map(String::as_str), Some("edge"));
    assert_eq!(group.ingress[0].ids, ["sgr-0fedcba9876543210"]);
    assert_eq!(
        group.ingress[0].tags.get("Name").map(String::as_str),
        Some("https")
    );
    assert_eq!(config.instances[0].id, "eni-1a2b3c4d");
    assert_eq!(config.instances[0].tags.len(), 1);
}

#[test]
fn r9_ids_must_be_well_formed_and_unique() {
    assert_eq!(
        sole_error("[[security_group]]\nname = \"sg\"\nid = \"sg-xyz\"\n"),
        pair(
            "security_group[0].id",
            "security group id \"sg-xyz\" is not \"sg-\" followed by 8 or 17 lowercase hex digits"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "id = \"sg-0a1b2c3d4e5f60001\"\nprotocol = \"all\"\ncidr = [\"10.0.0.0/8\"]"
        )),
        pair(
            &rule_field("id"),
            "security group rule id \"sg-0a1b2c3d4e5f60001\" is not \"sgr-\" followed by 8 or 17 lowercase hex digits"
        )
    );
    let twice = "[[security_group]]\nname = \"a\"\nid = \"sg-0a1b2c3d4e5f60001\"\n\
                 [[security_group]]\nname = \"b\"\nid = \"sg-0a1b2c3d4e5f60001\"\n";
    assert_eq!(
        sole_error(twice),
        pair(
            "security_group[1].id",
            "id \"sg-0a1b2c3d4e5f60001\" is already the id of security_group[0].id (line 3); give this one another id"
        )
    );
    // A written id that equals another object's derived id is caught too.
    let derived = ids::derived(IdKind::SecurityGroup, "a");
    let clash = format!(
        "[[security_group]]\nname = \"a\"\n[[security_group]]\nname = \"b\"\nid = \"{derived}\"\n"
    );
    let (field, message) = sole_error(&clash);
    assert_eq!(field, "security_group[0]");
    assert!(
        message.starts_with(&format!(
            "id \"{derived}\" is already the id of security_group[1].id"
        )),
        "{message}"
    );
    assert_eq!(
        errors(twice)[0].kind,
        ProblemKind::DuplicateId,
        "the API answers this as a duplicate"
    );
}

#[test]
fn r9_an_id_or_tags_belong_to_a_rule_of_one_peer() {
    assert_eq!(
        sole_error(&one_rule(
            "id = \"sgr-0fedcba9876543210\"\nprotocol = \"all\"\ncidr = [\"10.0.0.0/8\", \"::/0\"]"
        )),
        pair(
            &rule_field("id"),
            "\"id\" belongs to one rule, and this rule has 2 peers (each is a rule of its own); write one rule per peer to give it id"
        )
    );
    assert_eq!(
        sole_error(&one_rule(
            "tags = { a = \"b\" }\nprotocol = \"all\"\ncidr = [\"10.0.0.0/8\"]\ngroups = [\"sg\"]"
        ))
        .0,
        rule_field("tags")
    );
}

#[test]
fn tags_follow_aws_limits() {
    let group = |tags: &str| format!("[[security_group]]\nname = \"sg\"\ntags = {tags}\n");
    assert_eq!(
        sole_error(&group("{ \"aws:x\" = \"v\" }")),
        pair(
            "security_group[0].tags.aws:x",
            "tag key \"aws:x\" starts with \"aws:\", which AWS reserves"
        )
    );
    assert_eq!(
        sole_error(&group(&format!("{{ k = \"{}\" }}", "v".repeat(257)))),
        pair(
            "security_group[0].tags.k",
            "tag value is 257 characters long; at most 256 are allowed"
        )
    );
    assert_eq!(
        sole_error(&group("{ k = 1 }")),
        pair(
            "security_group[0].tags.k",
            "expected a string, found integer"
        )
    );
    let many: Vec<String> = (0..51).map(|n| format!("k{n} = \"v\"")).collect();
    assert_eq!(
        sole_error(&group(&format!("{{ {} }}", many.join(", ")))),
        pair(
            "security_group[0].tags",
            "51 tags; at most 50 are allowed per resource"
        )
    );
}

#[test]
fn quota_errors_carry_their_kind_for_the_api() {
    let rules: String = (0..61)
        .map(|n| format!("[[security_group.ingress]]\nprotocol = \"tcp\"\nports = {}\ncidr = [\"10.0.0.0/8\"]\n", n + 1))
        .collect();
    let text = format!("[[security_group]]\nname = \"sg\"\n{rules}");
    assert_eq!(errors(&text)[0].kind, ProblemKind::RulesPerGroupQuota);
}

const WITH_PREFIX_LIST: &str = r#"
[[prefix_list]]
name = "office"
family = "IPv4"
max_entries = 4
entries = ["198.51.100.0/24"]

[[security_group]]
name = "web-sg"

  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  cidr = ["10.0.0.0/8"]
  prefix_lists = ["office"]

  [[security_group.ingress]]
  id = "sgr-0fedcba9876543210"
  tags = { Name = "office https" }
  protocol = "tcp"
  ports = 443
  prefix_lists = ["office"]
"#;

#[test]
fn r9_p1_a_prefix_list_peer_is_a_rule_with_its_own_id_and_tags() {
    let config = loaded(WITH_PREFIX_LIST).config;
    let web = config.group("web-sg").expect("web-sg");
    let ingress = rule_ids(&config, "web-sg", Direction::Ingress);
    assert_eq!(
        ingress.len(),
        3,
        "one id per peer, the prefix list's included"
    );
    assert!(
        ingress
            .iter()
            .all(|id| ids::is_well_formed(IdKind::SecurityGroupRule, id)),
        "{ingress:?}"
    );
    assert_ne!(
        ingress[0], ingress[1],
        "the CIDR and the list are two rules"
    );
    assert_eq!(ingress[2], "sgr-0fedcba9876543210");
    assert_eq!(
        web.ingress[1].tags.get("Name").map(String::as_str),
        Some("office https")
    );
    // An id names one rule: a prefix list is a peer like a CIDR (R9).
    let two_peers = WITH_PREFIX_LIST.replace(
        "ports = 443\n  prefix_lists",
        "ports = 443\n  cidr = [\"10.0.0.0/8\"]\n  prefix_lists",
    );
    let messages: Vec<String> = errors(&two_peers)
        .iter()
        .map(|problem| problem.message.clone())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("\"id\" belongs to one rule, and this rule has 2 peers")),
        "{messages:?}"
    );
}
