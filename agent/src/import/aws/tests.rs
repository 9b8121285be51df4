//! Import of AWS CLI JSON: every fixture's output must pass validation, and groups, rules and
//! interfaces must round-trip. Statement IDs refer to `../shared/ec2-sg-semantics.md`.

use std::path::PathBuf;

use super::*;
use crate::{
    import::testing::{self, acl_lines, reload, rule_lines},
    model::{Config, Direction, SecurityGroup, default_egress},
};

fn fixture(name: &str) -> PathBuf {
    testing::fixture("aws", name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture is readable")
}

fn request(interfaces: bool, attach: &[&str]) -> AwsImportRequest {
    AwsImportRequest {
        security_groups: fixture("security-groups.json"),
        network_interfaces: interfaces.then(|| fixture("network-interfaces.json")),
        prefix_lists: None,
        prefix_list_entries: Vec::new(),
        network_acls: None,
        subnets: None,
        attach: attach
            .iter()
            .map(|a| a.parse().expect("valid --attach"))
            .collect(),
        strict: false,
    }
}

fn group<'a>(config: &'a Config, name: &str) -> &'a SecurityGroup {
    config
        .group(name)
        .unwrap_or_else(|| panic!("group {name} is imported"))
}

fn json_groups(groups: &str) -> String {
    format!("{{\"SecurityGroups\": [{groups}]}}")
}

/// A group in the AWS CLI's shape with the given permissions.
fn json_group(id: &str, name: &str, ingress: &str, egress: &str) -> String {
    format!(
        r#"{{"Description": "d", "GroupName": "{name}", "IpPermissions": [{ingress}], "OwnerId": "123456789012", "GroupId": "{id}", "IpPermissionsEgress": [{egress}], "VpcId": "vpc-1"}}"#
    )
}

const V4_AND_V6_DEFAULT_EGRESS: &str = r#"{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}], "PrefixListIds": [], "UserIdGroupPairs": []}"#;

#[test]
fn security_groups_round_trip() {
    let imported = import_files(&request(false, &[])).expect("fixture imports");
    let config = reload(&imported).config;
    let names: Vec<&str> = config
        .security_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["web-sg", "app-sg", "db-sg", "default"]);
    assert!(config.instances.is_empty() && config.members.is_empty());

    let web = group(&config, "web-sg");
    assert_eq!(web.description, "public web servers");
    assert_eq!(
        rule_lines(web, Direction::Ingress),
        [
            "tcp 80 0.0.0.0/0 (HTTP)",
            "tcp 80 ::/0 (HTTP)",
            "tcp 443 0.0.0.0/0 (HTTPS)",
            "tcp 443 ::/0 (HTTPS)",
            "tcp 22 198.51.100.0/24 (admin network)",
            "icmp type 8 code any 198.51.100.0/24 (ping from admin)",
            "icmp type 3 code 4 0.0.0.0/0 (path MTU discovery)",
        ]
    );
    // R2: all to 0.0.0.0/0 and ::/0 is exactly the default, so it is left to R2.
    assert!(web.egress_is_default);
    assert_eq!(web.egress, default_egress());

    let app = group(&config, "app-sg");
    assert_eq!(
        rule_lines(app, Direction::Ingress),
        [
            "tcp 8080 sg:web-sg (app API from web servers)",
            "icmpv6 type 128 code any fd00:2::/64 (ping6 from the app subnet)",
        ]
    );
    // IPv4-only default egress is not R2's default: written out, so no IPv6 egress appears.
    assert!(!app.egress_is_default);
    assert_eq!(rule_lines(app, Direction::Egress), ["all all 0.0.0.0/0 ()"]);

    let db = group(&config, "db-sg");
    // Peers with different descriptions become separate rules that keep them.
    assert_eq!(
        rule_lines(db, Direction::Ingress),
        [
            "tcp 3306 10.0.9.0/24 (backup host)",
            "tcp 3306 sg:app-sg (MySQL from app servers)",
        ]
    );
    assert!(
        !db.egress_is_default && db.egress.is_empty(),
        "R2: egress = []"
    );

    let default = group(&config, "default");
    assert_eq!(
        rule_lines(default, Direction::Ingress),
        [
            "all all sg:default ()",
            "47 all 10.0.0.0/16 (GRE between routers)",
            "udp 1024-65535 10.0.0.0/16 ()",
        ],
        "G4 self-reference, R3 protocol numbers"
    );
}

#[test]
fn prefix_lists_are_reported_and_left_out() {
    let imported = import_files(&request(false, &[])).expect("fixture imports");
    let messages: Vec<String> = imported.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "security group \"web-sg\" (sg-0a1b2c3d4e5f60001) ingress rule IpPermissions[1]: prefix list pl-02cd2c6b is not among the imported prefix lists (--prefix-lists, --prefix-list-entries); the rule is imported without it",
            "security group \"web-sg\" (sg-0a1b2c3d4e5f60001) ingress rule IpPermissions[5]: prefix list pl-0123456789abcdef0 is not among the imported prefix lists (--prefix-lists, --prefix-list-entries) and the rule has no other peer; the rule is dropped",
        ]
    );
    assert!(imported.toml.contains(
        "# import: security group \"web-sg\" (sg-0a1b2c3d4e5f60001) ingress rule IpPermissions[5]: prefix list pl-0123456789abcdef0 is not among the imported prefix lists (--prefix-lists, --prefix-list-entries) and the rule has no other peer; the rule is dropped\n"
    ));
    assert!(
        !imported.toml.contains("8443"),
        "the dropped rule is not imported"
    );
}

#[test]
fn strict_refuses_what_cannot_be_imported() {
    let strict = AwsImportRequest {
        strict: true,
        ..request(false, &[])
    };
    let error = import_files(&strict).expect_err("prefix lists fail --strict");
    assert!(matches!(&error, ImportError::Strict { warnings } if warnings.len() == 2));
    assert!(
        error.to_string().starts_with(
            "2 item(s) could not be imported and --strict is set:\nsecurity group \"web-sg\""
        ),
        "{error}"
    );
}

#[test]
fn interfaces_become_members_with_all_their_addresses() {
    let imported = import_files(&request(true, &[])).expect("fixture imports");
    let config = reload(&imported).config;
    assert!(config.instances.is_empty());
    let members: Vec<(String, Vec<String>, Vec<String>)> = config
        .members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.addresses.iter().map(ToString::to_string).collect(),
                m.security_groups.clone(),
            )
        })
        .collect();
    // G2: primary and secondary IPv4 and IPv6 all count.
    assert_eq!(
        members,
        [
            (
                "eni-0aaa1111bbbb22221".to_string(),
                vec![
                    "10.0.1.10".to_string(),
                    "10.0.1.11".to_string(),
                    "2600:1f18:1234:5601::10".to_string()
                ],
                vec!["web-sg".to_string()]
            ),
            (
                "eni-0aaa1111bbbb22222".to_string(),
                vec!["10.0.2.10".to_string()],
                vec!["app-sg".to_string(), "default".to_string()]
            ),
            (
                "eni-0aaa1111bbbb22223".to_string(),
                vec![
                    "10.0.3.10".to_string(),
                    "10.0.3.11".to_string(),
                    "2600:1f18:1234:5603::10".to_string()
                ],
                vec!["db-sg".to_string(), "default".to_string()]
            ),
        ]
    );
}

#[test]
fn attached_interfaces_become_instances_with_their_settings() {
    let imported = import_files(&request(
        true,
        &[
            "eni-0aaa1111bbbb22221=tap-web",
            "eni-0aaa1111bbbb22222=tap-app",
        ],
    ))
    .expect("fixture imports");
    let config = reload(&imported).config;
    assert_eq!(config.members.len(), 1);
    let web = config
        .instance("eni-0aaa1111bbbb22221")
        .expect("web ENI is an instance");
    assert_eq!(web.interface, "tap-web");
    assert!(web.source_dest_check);
    // C5: the ENI's ConnectionTrackingConfiguration.
    assert_eq!(web.conntrack.tcp_established_timeout, 3600);
    assert_eq!(web.conntrack.udp_timeout, 60);
    assert_eq!(web.conntrack.udp_stream_timeout, 120);
    let app = config
        .instance("eni-0aaa1111bbbb22222")
        .expect("app ENI is an instance");
    assert_eq!(app.interface, "tap-app");
    assert!(
        !app.source_dest_check,
        "I1: SourceDestCheck false carries over"
    );
    assert_eq!(app.conntrack, crate::model::Conntrack::default());
}

#[test]
fn unknown_referenced_groups_are_a_clear_error_g5() {
    let request = AwsImportRequest {
        security_groups: fixture("unknown-reference.json"),
        ..request(false, &[])
    };
    let error = import_files(&request).expect_err("the referenced group is missing");
    assert_eq!(
        error.to_string(),
        "security group \"orphan-sg\" (sg-0a1b2c3d4e5f60009) ingress rule IpPermissions[0] references security group sg-0fffffffffffffff0, which is not in the security groups file; add it to the describe-security-groups output"
    );
}

#[test]
fn interface_groups_must_be_known() {
    let interfaces = r#"{"NetworkInterfaces": [{"NetworkInterfaceId": "eni-1", "PrivateIpAddresses": [{"Primary": true, "PrivateIpAddress": "10.0.0.5"}], "Groups": [{"GroupId": "sg-404", "GroupName": "gone"}]}]}"#;
    let error = import_json(&fixture_text("security-groups.json"), Some(interfaces), &[])
        .expect_err("sg-404 is unknown");
    assert_eq!(
        error.to_string(),
        "network interface eni-1 uses security group sg-404, which is not in the security groups file"
    );
}

#[test]
fn attach_arguments_are_checked() {
    assert_eq!(
        "eni-1".parse::<Attachment>().unwrap_err().to_string(),
        "expected ENI_ID=INTERFACE, such as eni-0123456789abcdef0=tap0, got \"eni-1\""
    );
    assert_eq!(
        "=tap0".parse::<Attachment>().unwrap_err().to_string(),
        "expected ENI_ID=INTERFACE, such as eni-0123456789abcdef0=tap0, got \"=tap0\""
    );
    let error = import_files(&request(false, &["eni-0aaa1111bbbb22221=tap0"])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "--attach needs --network-interfaces: the addresses and groups of eni-0aaa1111bbbb22221 come from it"
    );
    let error = import_files(&request(true, &["eni-missing=tap0"])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "--attach eni-missing=tap0: eni-missing is not in the network interfaces file"
    );
    let error = import_files(&request(
        true,
        &["eni-0aaa1111bbbb22221=tap0", "eni-0aaa1111bbbb22221=tap1"],
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "eni-0aaa1111bbbb22221 is attached twice with --attach"
    );
}

#[test]
fn an_interface_name_sgwall_rejects_fails_the_self_check() {
    let error = import_files(&request(true, &["eni-0aaa1111bbbb22221=far-too-long-name"]))
        .expect_err("not a Linux interface name");
    let text = error.to_string();
    assert!(
        text.starts_with("the imported config does not validate:\n<import>:"),
        "{text}"
    );
    assert!(
        text.contains("invalid interface name \"far-too-long-name\": it is longer than 15 bytes"),
        "{text}"
    );
}

#[test]
fn groups_sharing_a_name_are_renamed() {
    let json = json_groups(&format!(
        "{}, {}",
        json_group(
            "sg-1",
            "default",
            r#"{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]}"#,
            V4_AND_V6_DEFAULT_EGRESS
        ),
        json_group(
            "sg-2",
            "default",
            r#"{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-2"}]}"#,
            V4_AND_V6_DEFAULT_EGRESS
        ),
    ));
    let imported = import_json(&json, None, &[]).expect("imports");
    assert_eq!(
        imported.warnings[0].to_string(),
        "security groups sg-1 and sg-2 are both named \"default\"; sg-2 is imported as \"default-sg-2\""
    );
    let config = reload(&imported).config;
    assert_eq!(
        rule_lines(group(&config, "default-sg-2"), Direction::Ingress),
        ["all all sg:default-sg-2 ()"],
        "the self-reference follows the rename"
    );
}

#[test]
fn default_egress_is_recognised_only_when_exact_r2() {
    let egress_of = |egress: &str| {
        let json = json_groups(&json_group("sg-1", "g", "", egress));
        let config = reload(&import_json(&json, None, &[]).expect("imports")).config;
        let group = group(&config, "g");
        (
            group.egress_is_default,
            rule_lines(group, Direction::Egress),
        )
    };
    assert!(egress_of(V4_AND_V6_DEFAULT_EGRESS).0);
    // Described: written out so the descriptions survive.
    let described = r#"{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "out"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}"#;
    assert_eq!(
        egress_of(described),
        (
            false,
            vec![
                "all all 0.0.0.0/0 (out)".to_string(),
                "all all ::/0 ()".to_string()
            ]
        )
    );
    assert_eq!(egress_of(""), (false, vec![]));
}

#[test]
fn peers_that_sgwall_rejects_are_fixed_or_left_out_r5() {
    let ingress = r#"{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.1/8"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}"#;
    let json = json_groups(&json_group("sg-1", "g", ingress, V4_AND_V6_DEFAULT_EGRESS));
    let imported = import_json(&json, None, &[]).expect("imports");
    let messages: Vec<String> = imported.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "security group \"g\" (sg-1) ingress rule IpPermissions[0]: 10.0.0.1/8 has host bits set; imported as 10.0.0.0/8",
            "security group \"g\" (sg-1) ingress rule IpPermissions[0]: protocol icmp can never match ::/0; that peer is left out",
        ]
    );
    let config = reload(&imported).config;
    assert_eq!(
        rule_lines(group(&config, "g"), Direction::Ingress),
        ["icmp type any code any 10.0.0.0/8 ()"]
    );
}

#[test]
fn protocols_and_port_ranges_map_r3() {
    let ingress = [
        r#"{"IpProtocol": "6", "FromPort": 8000, "ToPort": 8100, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}"#,
        r#"{"IpProtocol": "58", "FromPort": 1, "ToPort": 4, "Ipv6Ranges": [{"CidrIpv6": "fd00::/8"}]}"#,
        r#"{"IpProtocol": "udp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "10.2.0.0/16"}]}"#,
        r#"{"IpProtocol": "50", "IpRanges": [{"CidrIp": "10.3.0.0/16"}]}"#,
    ]
    .join(", ");
    let json = json_groups(&json_group("sg-1", "g", &ingress, V4_AND_V6_DEFAULT_EGRESS));
    let config = reload(&import_json(&json, None, &[]).expect("imports")).config;
    assert_eq!(
        rule_lines(group(&config, "g"), Direction::Ingress),
        [
            "tcp 8000-8100 10.1.0.0/16 ()",
            "icmpv6 type 1 code 4 fd00::/8 ()",
            "udp 0-65535 10.2.0.0/16 ()",
            "50 all 10.3.0.0/16 ()",
        ]
    );

    let json = json_groups(&json_group(
        "sg-1",
        "g",
        r#"{"IpProtocol": "gre", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}"#,
        "",
    ));
    assert_eq!(
        import_json(&json, None, &[]).unwrap_err().to_string(),
        "security group \"g\" (sg-1) ingress rule IpPermissions[0]: unsupported IpProtocol \"gre\""
    );
}

#[test]
fn quotas_are_raised_when_aws_has_more_rules_r7() {
    let ranges: Vec<String> = (0..70)
        .map(|i| format!(r#"{{"CidrIp": "10.0.{i}.0/24"}}"#))
        .collect();
    let ingress = format!(
        r#"{{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{}]}}"#,
        ranges.join(", ")
    );
    let json = json_groups(&json_group("sg-1", "g", &ingress, V4_AND_V6_DEFAULT_EGRESS));
    let imported = import_json(&json, None, &[]).expect("imports");
    assert!(
        imported
            .toml
            .contains("[quotas]\ngroups_per_interface = 5\nrules_per_group = 70\n")
    );
    assert_eq!(reload(&imported).config.quotas.rules_per_group, 70);
}

#[test]
fn text_is_escaped_and_round_trips() {
    let name = r#"web \"prod\" \\ tier"#;
    let json = json_groups(&format!(
        r#"{{"Description": "line one\nline two", "GroupName": "{name}", "GroupId": "sg-1", "IpPermissions": [{{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{{"CidrIp": "10.0.0.0/8", "Description": "it's \"quoted\""}}]}}], "IpPermissionsEgress": []}}"#
    ));
    let imported = import_json(&json, None, &[]).expect("imports");
    let config = reload(&imported).config;
    let group = &config.security_groups[0];
    assert_eq!(group.name, "web \"prod\" \\ tier");
    assert_eq!(group.description, "line one\nline two");
    assert_eq!(group.ingress[0].description, "it's \"quoted\"");
}

#[test]
fn malformed_json_names_the_command() {
    let error = import_json("{\"Groups\": []}", None, &[]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("<input>: not the JSON printed by `aws ec2 describe-security-groups`: missing field `SecurityGroups`"),
        "{error}"
    );
}

/// The request with every network input of the fixtures.
fn network_request(attach: &[&str]) -> AwsImportRequest {
    AwsImportRequest {
        prefix_lists: Some(fixture("managed-prefix-lists.json")),
        prefix_list_entries: vec![
            format!(
                "pl-02cd2c6b={}",
                fixture("prefix-list-entries-cloudfront.json").display()
            )
            .parse()
            .expect("valid --prefix-list-entries"),
            format!(
                "pl-0123456789abcdef0={}",
                fixture("prefix-list-entries-partners.json").display()
            )
            .parse()
            .expect("valid --prefix-list-entries"),
        ],
        network_acls: Some(fixture("network-acls.json")),
        subnets: Some(fixture("subnets.json")),
        ..request(true, attach)
    }
}

#[test]
fn p1_prefix_lists_are_imported_with_their_entries_and_rules_name_them() {
    let imported = import_files(&network_request(&[])).expect("fixtures import");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let config = reload(&imported).config;
    let partners = config.prefix_list("partner-networks").expect("imported");
    assert_eq!(partners.id, "pl-0123456789abcdef0");
    assert_eq!(partners.max_entries, 10);
    let entries: Vec<String> = partners
        .entries
        .iter()
        .map(|e| format!("{} {}", e.cidr, e.description))
        .collect();
    assert_eq!(
        entries,
        ["192.0.2.0/24 partner A", "198.18.10.0/24 partner B"]
    );
    // An AWS-managed list that gives no MaxEntries counts its entries (R7).
    let cloudfront = config
        .prefix_list("com.amazonaws.global.cloudfront.origin-facing")
        .expect("imported");
    assert_eq!(cloudfront.max_entries, 3);
    let web = rule_lines(group(&config, "web-sg"), Direction::Ingress);
    assert!(
        web.contains(
            &"tcp 443 pl:com.amazonaws.global.cloudfront.origin-facing (CloudFront origin-facing)"
                .to_string()
        ) && web.contains(&"tcp 8443 pl:partner-networks (partner networks)".to_string()),
        "{web:#?}"
    );
}

#[test]
fn n1_n2_acls_and_subnets_are_imported_with_their_associations() {
    let imported =
        import_files(&network_request(&["eni-0aaa1111bbbb22222=tap0"])).expect("fixtures import");
    let config = reload(&imported).config;
    // Sorted by number; AWS's final entries (32767, 32768) are sgwall's implicit `*`.
    assert_eq!(
        acl_lines(&config, "acl-0e2a78e4e2a1b2c3d", Direction::Ingress),
        [
            "90 deny all all 198.18.0.0/15",
            "100 allow tcp 443 0.0.0.0/0",
            "110 allow tcp 22 198.51.100.0/24",
            "120 allow icmp type 8 code any 0.0.0.0/0",
            "130 allow udp 1024-65535 ::/0",
        ]
    );
    let public = config
        .network_acl("acl-0e2a78e4e2a1b2c3d")
        .expect("imported");
    assert_eq!(public.egress.len(), 1);
    let default = config
        .network_acl("acl-0ea1f54ca7a1b2c3d")
        .expect("imported");
    assert!(
        default.admits_everything(),
        "N1: the default ACL admits everything"
    );
    let subnet_acl = |id: &str| {
        config
            .subnets
            .iter()
            .find(|s| s.name == id)
            .map(|s| s.network_acl.clone())
    };
    assert_eq!(
        subnet_acl("subnet-0123456789abcdef0").as_deref(),
        Some("acl-0e2a78e4e2a1b2c3d")
    );
    // No association: the VPC's default ACL (N1).
    assert_eq!(
        subnet_acl("subnet-0f00dbabe5a1b2c3d").as_deref(),
        Some("acl-0ea1f54ca7a1b2c3d")
    );
    let tap0 = config.instance("eni-0aaa1111bbbb22222").expect("attached");
    let (subnet, acl) = config.acl_of(tap0).expect("in a subnet");
    assert_eq!(
        (subnet.name.as_str(), acl.name.as_str()),
        ("subnet-0123456789abcdef0", "acl-0e2a78e4e2a1b2c3d")
    );
}

#[test]
fn network_inputs_that_cannot_be_imported_are_named() {
    // Entries of a list that is not described: its family and max entries are unknown.
    let unknown = AwsImportRequest {
        prefix_lists: None,
        ..network_request(&[])
    };
    let error = import_files(&unknown).expect_err("entries without their list");
    assert!(
        matches!(error, ImportError::EntriesOfUnknownPrefixList { .. }),
        "{error}"
    );
    // A described list without its entries is left out, and so are the rules' references.
    let without_entries = AwsImportRequest {
        prefix_list_entries: Vec::new(),
        ..network_request(&[])
    };
    let imported = import_files(&without_entries).expect("imports with warnings");
    assert!(imported.warnings.iter().any(|w| matches!(
        w,
        ImportWarning::PrefixListWithoutEntries { id } if id == "pl-0123456789abcdef0"
    )));
    // A subnet whose VPC's ACLs are missing altogether: refused, never imported unfiltered.
    let acls = r#"{"NetworkAcls": []}"#;
    let directory = std::env::temp_dir().join(format!("sgwall-acl-import-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let path = directory.join("acls.json");
    std::fs::write(&path, acls).expect("written");
    let no_acl = AwsImportRequest {
        network_acls: Some(path),
        ..network_request(&[])
    };
    let error = import_files(&no_acl).expect_err("a subnet without an ACL");
    let _ = std::fs::remove_dir_all(&directory);
    assert_eq!(
        error.to_string(),
        "subnet subnet-0123456789abcdef0 is associated with no network ACL in the \
         describe-network-acls output and its VPC's default ACL is not there either"
    );
    assert!("pl-x".parse::<PrefixListEntries>().is_err());
    assert!("sg-1=file.json".parse::<PrefixListEntries>().is_err());
}
