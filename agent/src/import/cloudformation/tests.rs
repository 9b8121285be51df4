//! Import of CloudFormation templates: the same stack as YAML with short intrinsics and as JSON
//! with long ones must give the same config, validated like `sgwall check` would.

use std::path::{Path, PathBuf};

use super::*;
use crate::{
    import::testing::{self, acl_lines, rules},
    model::{Config, Direction},
};

fn fixture(name: &str) -> PathBuf {
    testing::fixture("cloudformation", name)
}

fn load(imported: &AwsImport) -> Config {
    testing::reload(imported).config
}

/// The config text after its provenance comment (which names the file).
fn body(imported: &AwsImport) -> String {
    imported
        .toml
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn yaml_short_and_json_long_intrinsics_import_alike() {
    let yaml = import_file(&fixture("template.yaml"), true).expect("the YAML imports");
    let json = import_file(&fixture("template.json"), true).expect("the JSON imports");
    assert_eq!(body(&yaml), body(&json));
    assert!(
        yaml.toml
            .starts_with("# Imported by `sgwall import cloudformation` from")
    );
}

#[test]
fn groups_rules_acls_and_prefix_lists_resolve_inside_the_template() {
    let config = load(&import_file(&fixture("template.yaml"), true).expect("imports"));
    assert_eq!(
        rules(&config, "web-sg", Direction::Ingress),
        [
            "tcp 443 0.0.0.0/0 (HTTPS)",
            "tcp 22 pl:office (SSH from the office)",
        ],
        "Fn::GetAtt …PrefixListId names the template's list (P1)"
    );
    // No egress rule: EC2's default, its IPv4 half.
    assert_eq!(
        rules(&config, "web-sg", Direction::Egress),
        ["all all 0.0.0.0/0 ()"]
    );
    // Fn::Sub with a parameter's default; a rule resource with Ref parameters as ports.
    assert_eq!(
        rules(&config, "app-sg-8080", Direction::Ingress),
        ["tcp 8080 sg:web-sg (app API from the web tier)"]
    );
    assert_eq!(
        rules(&config, "app-sg-8080", Direction::Egress),
        ["tcp 3306 10.0.3.0/24 (MySQL)"]
    );
    let office = config.prefix_list("office").expect("the prefix list");
    let cidrs: Vec<String> = office.entries.iter().map(|e| e.cidr.to_string()).collect();
    assert_eq!(cidrs, ["192.0.2.0/28", "198.51.100.0/24"], "Ref AdminCidr");
    assert_eq!(
        acl_lines(&config, "AppAcl", Direction::Ingress),
        [
            "90 deny all all 10.0.1.66/32",
            "100 allow tcp 8080 10.0.1.0/24",
            "110 allow icmp type 8 code any 10.0.1.0/24",
        ]
    );
    let acl = config.network_acl("AppAcl").expect("the ACL");
    assert_eq!(acl.egress.len(), 1);
    let subnet = &config.subnets[0];
    assert_eq!(
        (subnet.name.as_str(), subnet.network_acl.as_str()),
        ("AppSubnet", "AppAcl")
    );
}

#[test]
fn what_cannot_be_resolved_names_the_resource_and_property() {
    let text = std::fs::read_to_string(fixture("template.yaml")).expect("fixture");
    let cases = [
        (
            text.replace("    Default: vpc-0abc1234def567890\n", ""),
            "resource AppSG, property VpcId: parameter VpcId has no Default, so its value is \
             not in the template",
        ),
        (
            text.replace("CidrIp: 10.0.3.0/24", "CidrIp: !ImportValue shared-db-cidr"),
            "resource AppSG, property SecurityGroupEgress.0.CidrIp: Fn::ImportValue cannot be \
             resolved inside the template",
        ),
        (
            text.replace(
                "!Sub \"app-sg-${AppPort}\"",
                "!Sub \"app-sg-${AWS::Region}\"",
            ),
            "resource AppSG, property GroupName: Ref AWS::Region: neither a parameter nor a \
             resource of the template",
        ),
        (
            text.replace("!GetAtt AppSG.GroupId", "!GetAtt AppSG.VpcId"),
            "resource AppFromWeb, property GroupId: Fn::GetAtt AppSG.VpcId cannot be resolved \
             inside the template",
        ),
    ];
    for (template, message) in cases {
        let error = import_text(&template, Path::new("t.yaml")).expect_err(message);
        assert_eq!(error.to_string(), message);
    }
    let error = import_text("Description: nothing", Path::new("t.yaml")).expect_err("no resources");
    assert!(
        matches!(error, CloudFormationError::NoResources { .. }),
        "{error}"
    );
}
