//! Tier 3: the EC2 API (issue 14) driven by the real clients — the `aws` CLI, boto3 and
//! Terraform — against a real `sgwall api` over a lab's config, while the lab's real
//! `sgwall run` follows that file; probes show every change enforced (or not) on real traffic.
//!
//! Enforcement is awaited by probing until the expected outcome, within a bound: several
//! writes each make the agent reload, so one reload event does not say which write it was.

use std::{path::Path, process::Command, time::Duration};

use sgwall::probe::Service;
use sgwall_tests::{
    api::{ApiServer, clients_present},
    lab::{TcpEchoServer, TcpSession, TestLab},
    privileged,
};

/// `a` is the peer the new rules name by group; `s` is the interface they protect.
const CONFIG: &str = r#"# The operator's comment, which every API write keeps.
[[security_group]]
name = "a-sg"
description = "clients, referenced by group"

[[security_group]]
name = "s-sg"
description = "the server's own group: no inbound rule"

[[instance]]
name = "a"
interface = "sgw-a"
attach = "port"
addresses = ["10.1.0.10", "fd00:1::10"]
security_groups = ["a-sg"]

[[instance]]
name = "s"
interface = "sgw-s"
attach = "port"
addresses = ["10.2.0.10", "fd00:2::10"]
security_groups = ["s-sg"]
"#;

/// Probing until the expected outcome: 20 probes of at most a second each.
const ATTEMPTS: usize = 20;

fn up() -> Option<TestLab> {
    if !privileged() || !clients_present("the aws CLI", Command::new("aws").arg("--version")) {
        return None;
    }
    Some(TestLab::up(CONFIG))
}

/// Whether a → s on tcp/`port` comes to `passes` within the bound (something must listen
/// there: a listener from `TestLab::listen`, or an echo server).
fn becomes(lab: &TestLab, port: u16, passes: bool) -> bool {
    (0..ATTEMPTS).any(|_| {
        let through = lab.probe("a", "s", Service::Tcp(port), false).got_through();
        if through != passes {
            std::thread::sleep(Duration::from_millis(200));
        }
        through == passes
    })
}

fn still(lab: &TestLab, port: u16, passes: bool) -> bool {
    lab.probe("a", "s", Service::Tcp(port), false).got_through() == passes
}

/// The config the API wrote still passes `sgwall check` and keeps the operator's comment.
fn assert_file_is_good(config: &Path) {
    let text = std::fs::read_to_string(config).expect("config");
    assert!(text.starts_with("# The operator's comment"), "{text}");
    let check = Command::new(sgwall_tests::sgwall_bin())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("sgwall check");
    assert!(
        check.status.success(),
        "sgwall check refuses what the API wrote: {}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
}

fn group_id(api: &ApiServer, name: &str) -> String {
    api.aws_ok(&[
        "ec2",
        "describe-security-groups",
        "--group-names",
        name,
        "--query",
        "SecurityGroups[0].GroupId",
    ])
}

fn eni_of(api: &ApiServer, group: &str) -> String {
    api.aws_ok(&[
        "ec2",
        "describe-network-interfaces",
        "--filters",
        &format!("Name=group-name,Values={group}"),
        "--query",
        "NetworkInterfaces[0].NetworkInterfaceId",
    ])
}

#[test]
fn api_aws_cli_group_reference_rule_attached_is_enforced_and_revoke_keeps_held_flows_c4() {
    let Some(lab) = up() else {
        return;
    };
    let api = ApiServer::start(lab.config_path());
    let (a_sg, s_sg) = (group_id(&api, "a-sg"), group_id(&api, "s-sg"));
    let group = api.aws_ok(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "api-sg",
        "--description",
        "made by the aws CLI",
        "--query",
        "GroupId",
    ]);
    let rule = api.aws_ok(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &group,
        "--ip-permissions",
        &format!("IpProtocol=tcp,FromPort=7000,ToPort=7000,UserIdGroupPairs=[{{GroupId={a_sg}}}]"),
        "--query",
        "SecurityGroupRules[0].SecurityGroupRuleId",
    ]);
    assert!(rule.starts_with("sgr-"), "{rule}");
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let _other = lab.listen("s", Service::Tcp(7001));
    assert!(
        still(&lab, 7000, false),
        "a rule of a group no interface has admits nothing"
    );

    // A bad signature changes nothing.
    let before = std::fs::read(lab.config_path()).expect("config");
    let forged = api.aws_forged(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "forged",
        "--description",
        "x",
    ]);
    assert!(!forged.status.success());
    assert!(
        String::from_utf8_lossy(&forged.stderr).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&forged.stderr)
    );
    assert_eq!(std::fs::read(lab.config_path()).expect("config"), before);

    let eni = eni_of(&api, "s-sg");
    api.aws_ok(&[
        "ec2",
        "modify-network-interface-attribute",
        "--network-interface-id",
        &eni,
        "--groups",
        &s_sg,
        &group,
    ]);
    assert!(
        becomes(&lab, 7000, true),
        "attached, the group-reference rule admits a"
    );
    assert!(still(&lab, 7001, false), "and only its port");
    let a = lab.address("a", false);
    let s = lab.address("s", false);
    let mut held = TcpSession::connect(&lab.namespace("a"), a, s, 7000).expect("a session");
    assert!(held.exchange());

    api.aws_ok(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &group,
        "--security-group-rule-ids",
        &rule,
    ]);
    assert!(becomes(&lab, 7000, false), "revoked, new flows are refused");
    for _ in 0..3 {
        assert!(
            held.exchange(),
            "C4: the established session outlives its rule"
        );
    }
    assert_file_is_good(lab.config_path());
}

#[test]
fn api_boto3_replays_the_providers_calls_and_50_concurrent_authorizes_leave_50_rules() {
    let Some(lab) = up() else {
        return;
    };
    if !clients_present(
        "boto3",
        Command::new("python3").args(["-c", "import boto3"]),
    ) {
        return;
    }
    let api = ApiServer::start(lab.config_path());
    let script = include_str!("api/provider_calls.py");
    let run = |args: &[&str]| {
        let output = api.python(script, args);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("OK"),
            "boto3 {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let (a_sg, eni) = (group_id(&api, "a-sg"), eni_of(&api, "s-sg"));
    run(&["security-group", "boto-sg", &a_sg, &eni]);
    let _listeners = [7142, 7150].map(|port| lab.listen("s", Service::Tcp(port)));
    assert!(
        becomes(&lab, 7142, true),
        "the 43rd of 50 concurrent rules is enforced"
    );
    assert!(still(&lab, 7150, false), "and no port beyond them");
    run(&["ingress-rule", &group_id(&api, "boto-sg")]);
    run(&["delete", "boto-sg", &eni]);
    assert!(
        becomes(&lab, 7142, false),
        "the deleted group admits nothing"
    );
    assert_file_is_good(lab.config_path());
}

/// Where the `hashicorp/aws` provider's filesystem mirror is on these machines.
const TERRAFORM_MIRROR: &str = "/opt/tf-plugins";

fn terraform_config(api: &ApiServer, source_group: &str, eni: &str, port: u16) -> String {
    let endpoint = &api.endpoint;
    format!(
        r#"terraform {{
  required_providers {{
    aws = {{ source = "hashicorp/aws", version = "5.100.0" }}
  }}
}}

provider "aws" {{
  region                  = "{region}"
  access_key              = "{key}"
  secret_key              = "{secret}"
  skip_metadata_api_check = true
  skip_region_validation  = true
  endpoints {{
    ec2 = "{endpoint}"
    sts = "{endpoint}"
    iam = "{endpoint}"
  }}
}}

resource "aws_security_group" "tf" {{
  name        = "tf-sg"
  description = "made by terraform"
}}

resource "aws_vpc_security_group_ingress_rule" "from_a" {{
  security_group_id            = aws_security_group.tf.id
  referenced_security_group_id = "{source_group}"
  ip_protocol                  = "tcp"
  from_port                    = {port}
  to_port                      = {port}
}}

resource "aws_vpc_security_group_egress_rule" "all" {{
  security_group_id = aws_security_group.tf.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}}

resource "aws_network_interface_sg_attachment" "s" {{
  security_group_id    = aws_security_group.tf.id
  network_interface_id = "{eni}"
}}
"#,
        region = sgwall_tests::api::REGION,
        key = sgwall_tests::api::ACCESS_KEY,
        secret = sgwall_tests::api::SECRET_KEY,
    )
}

#[test]
fn api_terraform_apply_change_plan_without_drift_and_destroy_each_enforced() {
    let mirror = Path::new(TERRAFORM_MIRROR);
    let Some(lab) = up() else {
        return;
    };
    let mut version = Command::new("terraform");
    version.arg("version");
    if !clients_present("terraform", &mut version) {
        return;
    }
    assert!(
        mirror.join("registry.terraform.io/hashicorp/aws").is_dir(),
        "the hashicorp/aws provider mirror is not at {}",
        mirror.display()
    );
    let api = ApiServer::start(lab.config_path());
    api.write_terraform_cli_config(mirror);
    let workdir = api.dir.join("terraform");
    std::fs::create_dir_all(&workdir).expect("terraform dir");
    let (a_sg, eni) = (group_id(&api, "a-sg"), eni_of(&api, "s-sg"));
    let terraform = |args: &[&str]| {
        let output = api.terraform(&workdir, args);
        (
            output.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let ok = |args: &[&str]| {
        let (code, text) = terraform(args);
        assert_eq!(code, Some(0), "terraform {args:?}:\n{text}");
    };
    let _listeners = [7300, 7301].map(|port| lab.listen("s", Service::Tcp(port)));
    let main = workdir.join("main.tf");
    std::fs::write(&main, terraform_config(&api, &a_sg, &eni, 7300)).expect("main.tf");
    ok(&["init"]);
    ok(&["apply", "-auto-approve"]);
    assert!(becomes(&lab, 7300, true), "applied: a reaches s on 7300");
    assert!(still(&lab, 7301, false));

    std::fs::write(&main, terraform_config(&api, &a_sg, &eni, 7301)).expect("main.tf");
    ok(&["apply", "-auto-approve"]);
    assert!(becomes(&lab, 7301, true), "changed: a reaches s on 7301");
    assert!(becomes(&lab, 7300, false), "and no longer on 7300");
    let (code, text) = terraform(&["plan", "-detailed-exitcode"]);
    assert_eq!(code, Some(0), "the plan after apply shows drift:\n{text}");
    assert_file_is_good(lab.config_path());

    ok(&["destroy", "-auto-approve"]);
    assert!(becomes(&lab, 7301, false), "destroyed: nothing admits a");
    let groups = api.aws_ok(&[
        "ec2",
        "describe-security-groups",
        "--query",
        "SecurityGroups[].GroupName",
    ]);
    assert!(!groups.contains("tf-sg"), "{groups}");
    assert_file_is_good(lab.config_path());
}
