//! Import of `terraform show -json` output: a state and a saved plan, in the shapes Terraform
//! documents (JSON output format), each validated like `sgwall check` would.

use std::path::{Path, PathBuf};

use super::*;
use crate::{
    import::testing::{self, acl_lines, rules},
    model::{Config, Direction},
};

fn fixture(name: &str) -> PathBuf {
    testing::fixture("terraform", name)
}

fn load(imported: &AwsImport) -> Config {
    testing::reload(imported).config
}

#[test]
fn a_state_imports_every_resource_kind() {
    let imported = import_file(&fixture("state.json"), true).expect("the state imports");
    assert!(
        imported
            .toml
            .starts_with("# Imported by `sgwall import terraform` from")
    );
    let config = load(&imported);
    assert_eq!(
        rules(&config, "web-sg", Direction::Ingress),
        [
            "tcp 443 0.0.0.0/0 (HTTPS)",
            "all all sg:web-sg (web servers talk to each other)",
        ],
        "inline rules; `self` is G4's self-reference"
    );
    // The explicit allow-all egress of both families is R2's default.
    assert_eq!(rules(&config, "web-sg", Direction::Egress).len(), 2);
    assert_eq!(
        rules(&config, "app-sg", Direction::Ingress),
        [
            "tcp 8080 sg:web-sg (app API from the web tier)",
            "tcp 22 pl:office (SSH from the office)",
            "icmp type 8 code any sg:web-sg (ping from the web tier)",
        ],
        "inline, aws_security_group_rule with a prefix list (P1), aws_vpc_security_group_ingress_rule"
    );
    // Terraform removed the default egress; the separate egress rule is all there is.
    assert_eq!(
        rules(&config, "app-sg", Direction::Egress),
        ["tcp 3306 10.0.3.0/24 (MySQL on the db subnet)"]
    );
    let office = config.prefix_list("office").expect("prefix list");
    assert_eq!(
        (office.id.as_str(), office.max_entries),
        ("pl-0a1b2c3d4e5f60718", 5)
    );
    assert_eq!(office.entries.len(), 2);
    assert_eq!(
        acl_lines(&config, "acl-0a1b2c3d4e5f60041", Direction::Ingress),
        [
            "90 deny all all 10.0.1.66/32",
            "100 allow tcp 8080 10.0.1.0/24",
        ],
        "aws_network_acl_rule merged into its ACL, sorted by number (N2)"
    );
    let acl = config
        .network_acl("acl-0a1b2c3d4e5f60041")
        .expect("the ACL");
    assert_eq!(acl.egress.len(), 1);
    let subnet = &config.subnets[0];
    assert_eq!(
        (subnet.name.as_str(), subnet.network_acl.as_str()),
        ("subnet-0a1b2c3d4e5f60031", "acl-0a1b2c3d4e5f60041")
    );
}

#[test]
fn a_plan_resolves_ids_known_only_after_apply_through_its_configuration() {
    let imported = import_file(&fixture("plan.json"), false).expect("the plan imports");
    let config = load(&imported);
    assert_eq!(
        rules(&config, "app-sg", Direction::Ingress),
        ["tcp 8080 sg:web-sg (app API from the web tier)"]
    );
    // Not yet created: Terraform leaves no default egress.
    assert!(config.group("web-sg").is_some_and(|g| g.egress.is_empty()));
}

#[test]
fn what_cannot_be_resolved_names_the_resource_and_attribute() {
    let text = std::fs::read_to_string(fixture("plan.json")).expect("fixture");
    // The rule's group comes from a variable, whose value the plan does not record.
    let mut plan: Value = serde_json::from_str(&text).expect("JSON");
    let expressions = plan
        .pointer_mut("/configuration/root_module/resources/2/expressions")
        .and_then(Value::as_object_mut)
        .expect("expressions");
    expressions.insert(
        "security_group_id".into(),
        serde_json::json!({ "references": ["var.app_group"] }),
    );
    let error =
        import_json(&plan.to_string(), Path::new("plan.json")).expect_err("an unresolvable id");
    assert_eq!(
        error.to_string(),
        "aws_vpc_security_group_ingress_rule.app_from_web: `security_group_id` is not known \
         until apply and references no resource of this plan; apply first and import the state \
         (`terraform show -json`)"
    );
    let error = import_json("{\"format_version\": \"1.0\"}", Path::new("empty.json"))
        .expect_err("no values");
    assert!(matches!(error, TerraformError::NoValues { .. }), "{error}");
    let error = import_json("not json", Path::new("x.json")).expect_err("not JSON");
    assert!(
        error
            .to_string()
            .starts_with("x.json: not the JSON printed by `terraform show -json`")
    );
}

/// `terraform show -json` of a real saved plan (Terraform 1.11, hashicorp/aws 5.100), made
/// from `plan-terraform-1.11.tf` with `terraform plan -refresh=false -out`: every id is
/// unknown, computed attributes nobody set are unknown too, and references resolve.
#[test]
fn a_real_terraform_plan_imports() {
    let imported =
        import_file(&fixture("plan-terraform-1.11.json"), false).expect("the plan imports");
    let config = load(&imported);
    assert_eq!(
        rules(&config, "app-sg", Direction::Ingress),
        [
            "tcp 22 pl:office (SSH from the office)",
            "tcp 8080 sg:web-sg (app API from the web tier)",
        ],
        "aws_security_group_rule first, then the aws_vpc_security_group_* rules"
    );
    let acl = config
        .network_acl("aws_network_acl.app")
        .expect("the ACL, by address");
    let numbers: Vec<u16> = acl.ingress.iter().map(|e| e.number).collect();
    assert_eq!(numbers, [90, 100]);
    // No aws_subnet in the plan: the ACL applies to nothing, and the import says so.
    assert_eq!(
        imported.warnings,
        [crate::import::aws::ImportWarning::AclsWithoutSubnets]
    );
}
