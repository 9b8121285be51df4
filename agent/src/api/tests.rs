//! The API end to end without HTTP: signed requests into [`Api::handle`] over a file store in
//! a temporary directory, checking the answers and the file they leave.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    Api,
    credentials::Credentials,
    sigv4::{self, SignedRequest},
    store::file::FileStore,
};
use crate::config;

const SECRET: &str = "test-secret";
const AMZ_DATE: &str = "20261203T120000Z";
const NOW: i64 = 1_796_299_200; // AMZ_DATE

const CONFIG: &str = r#"# The operator's own comment, which the API keeps.
[quotas]
rules_per_group = 8

[[security_group]]
name = "web"
description = "web servers"

  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  cidr = ["0.0.0.0/0"]  # HTTP from anywhere

[[security_group]]
name = "app"
description = "app servers"

  [[security_group.ingress]]
  protocol = "tcp"
  ports = 8080
  groups = ["web"]

[[security_group]]
name = "default"
description = "default VPC security group"

[[instance]]
name = "web-1"
interface = "sgw-web1"
attach = "port"
addresses = ["10.0.1.10"]
security_groups = ["web"]
"#;

struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    api: Arc<Api>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn fixture() -> Fixture {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sgwall-api-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("sgwall.toml");
    fs::write(&config, CONFIG).expect("config");
    let credentials = Credentials::parse(
        &format!(
            "[default]\naws_access_key_id=AKIDTEST\naws_secret_access_key={SECRET}\n\
             [audit]\naws_access_key_id=AKIDREAD\naws_secret_access_key={SECRET}\n\
             sgwall_access=read-only\n"
        ),
        Path::new("credentials"),
    )
    .expect("credentials");
    let store = FileStore::open(&config).expect("store");
    Fixture {
        dir,
        config,
        api: Arc::new(Api::new(Box::new(store), credentials)),
    }
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn code(&self) -> Option<String> {
        element(&self.body, "Code")
    }

    fn ok(self) -> Self {
        assert_eq!(self.status, 200, "{}", self.body);
        self
    }

    fn err(&self, code: &str) {
        assert_eq!(self.code().as_deref(), Some(code), "{}", self.body);
        assert!(self.body.contains("<RequestID>"), "{}", self.body);
    }
}

/// The text of the first `<name>` element.
fn element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

fn count(body: &str, needle: &str) -> usize {
    body.matches(needle).count()
}

fn send_to(api: &Api, body: &str, key: &str, secret: &str, service: &str) -> Reply {
    let mut request = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: vec![
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "127.0.0.1:8788"),
            ("x-amz-date", AMZ_DATE),
        ],
        body: body.as_bytes(),
    };
    let authorization =
        sigv4::authorization_for(&request, key, secret, AMZ_DATE, ("us-east-1", service));
    request.headers.push(("authorization", &authorization));
    let answer = api.handle(&request, NOW);
    Reply {
        status: answer.status.as_u16(),
        body: String::from_utf8(answer.body).expect("utf-8"),
    }
}

fn authorize_body(group: &str, port: u16, cidr: &str) -> String {
    format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={group}\
         &IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort={port}\
         &IpPermissions.1.ToPort={port}&IpPermissions.1.IpRanges.1.CidrIp={cidr}&Version=2016-11-15"
    )
}

impl Fixture {
    fn send(&self, body: &str, key: &str, secret: &str, service: &str) -> Reply {
        send_to(&self.api, body, key, secret, service)
    }

    fn call(&self, body: &str) -> Reply {
        self.send(
            &format!("{body}&Version=2016-11-15"),
            "AKIDTEST",
            SECRET,
            "ec2",
        )
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.config).expect("config")
    }

    fn create(&self, name: &str) -> String {
        let reply = self
            .call(&format!(
                "Action=CreateSecurityGroup&GroupName={name}&GroupDescription=d"
            ))
            .ok();
        element(&reply.body, "groupId").expect("groupId")
    }

    fn group_id(&self, name: &str) -> String {
        let reply = self
            .call(&format!("Action=DescribeSecurityGroups&GroupName.1={name}"))
            .ok();
        element(&reply.body, "groupId").expect("groupId")
    }

    /// The rules of group `id`, as DescribeSecurityGroupRules lists them.
    fn rules(&self, id: &str) -> Reply {
        self.call(&format!(
            "Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1={id}"
        ))
        .ok()
    }

    fn authorize(&self, group: &str, port: u16, cidr: &str) -> Reply {
        self.send(
            &authorize_body(group, port, cidr),
            "AKIDTEST",
            SECRET,
            "ec2",
        )
    }
}

#[test]
fn r2_a_created_group_has_the_default_egress_and_the_file_keeps_its_comments() {
    let f = fixture();
    let id = f.create("api-sg");
    assert!(
        crate::ids::is_well_formed(crate::ids::IdKind::SecurityGroup, &id),
        "{id}"
    );
    let text = f.text();
    assert!(text.starts_with("# The operator's own comment"), "{text}");
    assert!(text.contains("# HTTP from anywhere"), "{text}");
    config::load(&f.config).expect("the written file passes sgwall check");
    let reply = f
        .call(&format!("Action=DescribeSecurityGroups&GroupId.1={id}"))
        .ok();
    let egress = element(&reply.body, "ipPermissionsEgress").expect("egress");
    assert!(egress.contains("<ipProtocol>-1</ipProtocol>"), "{egress}");
    assert!(egress.contains("<cidrIp>0.0.0.0/0</cidrIp>"), "{egress}");
    assert!(egress.contains("<cidrIpv6>::/0</cidrIpv6>"), "{egress}");
    f.call("Action=CreateSecurityGroup&GroupName=api-sg&GroupDescription=d")
        .err("InvalidGroup.Duplicate");
    f.call("Action=CreateSecurityGroup&GroupName=x")
        .err("MissingParameter");
    f.call("Action=CreateSecurityGroup&GroupName=x&GroupDescription=d&VpcId=vpc-00000000000000000")
        .err("InvalidVpcID.NotFound");
    f.call(&format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={id}&IpProtocol=tcp&FromPort=1&ToPort=1"
    ))
    .err("InvalidParameterCombination");
}

#[test]
fn authorize_returns_sgr_ids_and_duplicates_and_unknown_rules_are_refused() {
    let f = fixture();
    let id = f.group_id("web");
    let reply = f.authorize(&id, 443, "10.0.0.0/8").ok();
    let rule = element(&reply.body, "securityGroupRuleId").expect("rule id");
    assert!(rule.starts_with("sgr-"), "{}", reply.body);
    assert_eq!(
        element(&reply.body, "cidrIpv4").as_deref(),
        Some("10.0.0.0/8")
    );
    f.authorize(&id, 443, "10.0.0.0/8")
        .err("InvalidPermission.Duplicate");
    f.authorize(&id, 80, "0.0.0.0/0")
        .err("InvalidPermission.Duplicate");
    f.authorize("sg-00000000000000000", 1, "10.0.0.0/8")
        .err("InvalidGroup.NotFound");
    f.authorize(&id, 1, "10.0.0.1/8")
        .err("InvalidParameterValue");
    let described = f
        .call(&format!(
            "Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"
        ))
        .ok();
    assert_eq!(count(&described.body, "<securityGroupRuleId>"), 1);
    assert!(described.body.contains("<isEgress>false</isEgress>"));
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={id}&SecurityGroupRuleId.1={rule}"
    ))
    .ok();
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={id}&SecurityGroupRuleId.1={rule}"
    ))
    .err("InvalidSecurityGroupRuleId.NotFound");
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={id}&IpPermissions.1.IpProtocol=tcp\
         &IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443\
         &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8"
    ))
    .err("InvalidPermission.NotFound");
    // Revoking by permission finds the rule by its content.
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={id}&IpPermissions.1.IpProtocol=tcp\
         &IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80\
         &IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0"
    ))
    .ok();
    config::load(&f.config).expect("still valid");
    assert!(!f.text().contains("ports = 80\n"), "{}", f.text());
}

#[test]
fn r7_the_rule_quota_is_rules_per_security_group_limit_exceeded_and_changes_nothing() {
    let f = fixture();
    let id = f.group_id("web");
    for port in 1..8 {
        f.authorize(&id, port, "10.0.0.0/8").ok();
    }
    let before = f.text();
    f.authorize(&id, 100, "10.0.0.0/8")
        .err("RulesPerSecurityGroupLimitExceeded");
    assert_eq!(
        f.text(),
        before,
        "a refused write leaves the file byte for byte"
    );
}

#[test]
fn revoking_the_default_egress_leaves_no_egress_and_keeps_other_ids() {
    let f = fixture();
    let id = f.create("fresh");
    let rules = f.rules(&id);
    assert_eq!(
        count(&rules.body, "<securityGroupRuleId>"),
        2,
        "{}",
        rules.body
    );
    // What Terraform does first with a new group.
    f.call(&format!(
        "Action=RevokeSecurityGroupEgress&GroupId={id}&IpPermissions.1.IpProtocol=-1\
         &IpPermissions.1.FromPort=0&IpPermissions.1.ToPort=0\
         &IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0"
    ))
    .ok();
    let rules = f.rules(&id);
    assert_eq!(
        count(&rules.body, "<securityGroupRuleId>"),
        1,
        "{}",
        rules.body
    );
    assert!(rules.body.contains("::/0"), "{}", rules.body);
    config::load(&f.config).expect("valid");
}

#[test]
fn delete_refuses_attached_referenced_and_default_groups() {
    let f = fixture();
    f.call(&format!(
        "Action=DeleteSecurityGroup&GroupId={}",
        f.group_id("web")
    ))
    .err("DependencyViolation");
    f.call("Action=DeleteSecurityGroup&GroupName=default")
        .err("CannotDelete");
    let app = f.group_id("app");
    f.call(&format!("Action=DeleteSecurityGroup&GroupId={app}"))
        .ok();
    f.call(&format!("Action=DeleteSecurityGroup&GroupId={app}"))
        .err("InvalidGroup.NotFound");
    config::load(&f.config).expect("valid");
}

#[test]
fn interfaces_groups_and_source_dest_check_and_the_interface_quota() {
    let f = fixture();
    let reply = f.call("Action=DescribeNetworkInterfaces").ok();
    let eni = element(&reply.body, "networkInterfaceId").expect("eni");
    assert!(
        reply
            .body
            .contains("<privateIpAddress>10.0.1.10</privateIpAddress>")
    );
    let (web, app) = (f.group_id("web"), f.group_id("app"));
    f.call(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={eni}\
         &SecurityGroupId.1={web}&SecurityGroupId.2={app}"
    ))
    .ok();
    f.call(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={eni}&SourceDestCheck.Value=false"
    ))
    .ok();
    let reply = f
        .call(&format!(
            "Action=DescribeNetworkInterfaces&Filter.1.Name=group-id&Filter.1.Value.1={app}"
        ))
        .ok();
    assert!(
        reply
            .body
            .contains("<sourceDestCheck>false</sourceDestCheck>"),
        "{}",
        reply.body
    );
    assert_eq!(count(&reply.body, "<groupName>"), 2, "{}", reply.body);
    let mut many = format!("Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={eni}");
    for n in 1..=6 {
        let id = f.create(&format!("extra-{n}"));
        many.push_str(&format!("&SecurityGroupId.{n}={id}"));
    }
    f.call(&many).err("SecurityGroupsPerInterfaceLimitExceeded");
    f.call("Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId=eni-00000000000000000&SourceDestCheck.Value=true")
        .err("InvalidNetworkInterfaceID.NotFound");
    config::load(&f.config).expect("valid");
}

#[test]
fn signatures_dry_run_read_only_and_garbage_change_nothing() {
    let f = fixture();
    let before = f.text();
    let create = "Action=CreateSecurityGroup&GroupName=x&GroupDescription=d&Version=2016-11-15";
    let reply = f.send(create, "AKIDTEST", "wrong-secret", "ec2");
    assert_eq!(reply.status, 403);
    reply.err("SignatureDoesNotMatch");
    let reply = f.send(create, "AKIDNOBODY", SECRET, "ec2");
    assert_eq!(reply.status, 403);
    reply.err("AuthFailure");
    let unsigned = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: vec![("host", "127.0.0.1")],
        body: create.as_bytes(),
    };
    let answer = f.api.handle(&unsigned, NOW);
    assert_eq!(answer.status.as_u16(), 403);
    f.send(create, "AKIDREAD", SECRET, "ec2")
        .err("UnauthorizedOperation");
    f.call("Action=CreateSecurityGroup&GroupName=x&GroupDescription=d&DryRun=true")
        .err("DryRunOperation");
    f.call("Action=CreateSecurityGroup&GroupName=x&GroupDescription=d&Colour=blue")
        .err("UnknownParameter");
    f.call("Action=DescribeSecurityGroups&MaxResults=banana")
        .err("InvalidParameterValue");
    f.call("Action=LaunchRockets").err("InvalidAction");
    assert_eq!(f.text(), before);
    // Reading is allowed to a read-only caller.
    let reply = f.send(
        "Action=DescribeSecurityGroups&Version=2016-11-15",
        "AKIDREAD",
        SECRET,
        "ec2",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn describe_filters_and_pages() {
    let f = fixture();
    let names = f
        .call("Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=w*")
        .ok();
    assert_eq!(count(&names.body, "<groupName>"), 1, "{}", names.body);
    let first = f.call("Action=DescribeSecurityGroups&MaxResults=5").ok();
    assert!(element(&first.body, "nextToken").is_none());
    for n in 0..4 {
        f.create(&format!("g{n}"));
    }
    let first = f.call("Action=DescribeSecurityGroups&MaxResults=5").ok();
    assert_eq!(count(&first.body, "<groupName>"), 5);
    let token = element(&first.body, "nextToken").expect("more");
    let second = f
        .call(&format!(
            "Action=DescribeSecurityGroups&MaxResults=5&NextToken={token}"
        ))
        .ok();
    assert_eq!(count(&second.body, "<groupName>"), 2);
    f.call("Action=DescribeSecurityGroups&Filter.1.Name=colour&Filter.1.Value.1=x")
        .err("InvalidParameterValue");
    f.call("Action=DescribeSecurityGroups&GroupId.1=sg-00000000000000000")
        .err("InvalidGroup.NotFound");
    let vpcs = f.call("Action=DescribeVpcs").ok();
    assert!(element(&vpcs.body, "vpcId").is_some_and(|id| id.starts_with("vpc-")));
}

#[test]
fn tags_on_groups_rules_and_interfaces_and_tag_filters() {
    let f = fixture();
    let reply = f
        .call(
            "Action=CreateSecurityGroup&GroupName=tagged&GroupDescription=d\
             &TagSpecification.1.ResourceType=security-group\
             &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=t",
        )
        .ok();
    let id = element(&reply.body, "groupId").expect("id");
    let rule = element(
        &f.authorize(&id, 22, "10.0.0.0/8").ok().body,
        "securityGroupRuleId",
    )
    .expect("rule");
    f.call(&format!(
        "Action=CreateTags&ResourceId.1={rule}&ResourceId.2={id}&Tag.1.Key=env&Tag.1.Value=lab"
    ))
    .ok();
    let tagged = f
        .call("Action=DescribeSecurityGroups&Filter.1.Name=tag:env&Filter.1.Value.1=lab")
        .ok();
    assert_eq!(count(&tagged.body, "<groupName>"), 1, "{}", tagged.body);
    let rules = f
        .call("Action=DescribeSecurityGroupRules&Filter.1.Name=tag-key&Filter.1.Value.1=env")
        .ok();
    assert_eq!(
        count(&rules.body, "<securityGroupRuleId>"),
        1,
        "{}",
        rules.body
    );
    let all = f
        .call("Action=DescribeTags&Filter.1.Name=key&Filter.1.Value.1=env")
        .ok();
    assert_eq!(count(&all.body, "<resourceId>"), 2, "{}", all.body);
    f.call(&format!(
        "Action=DeleteTags&ResourceId.1={id}&Tag.1.Key=env"
    ))
    .ok();
    let all = f
        .call("Action=DescribeTags&Filter.1.Name=key&Filter.1.Value.1=env")
        .ok();
    assert_eq!(count(&all.body, "<resourceId>"), 1, "{}", all.body);
    f.call("Action=CreateTags&ResourceId.1=sg-00000000000000000&Tag.1.Key=a")
        .err("InvalidGroup.NotFound");
    config::load(&f.config).expect("valid");
}

#[test]
fn modify_security_group_rules_keeps_the_rule_id() {
    let f = fixture();
    let id = f.group_id("web");
    let rule = element(
        &f.authorize(&id, 22, "10.0.0.0/8").ok().body,
        "securityGroupRuleId",
    )
    .expect("rule");
    f.call(&format!(
        "Action=ModifySecurityGroupRules&GroupId={id}\
         &SecurityGroupRule.1.SecurityGroupRuleId={rule}\
         &SecurityGroupRule.1.SecurityGroupRule.IpProtocol=tcp\
         &SecurityGroupRule.1.SecurityGroupRule.FromPort=2222\
         &SecurityGroupRule.1.SecurityGroupRule.ToPort=2222\
         &SecurityGroupRule.1.SecurityGroupRule.CidrIpv4=192.168.0.0/16"
    ))
    .ok();
    let reply = f
        .call(&format!(
            "Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"
        ))
        .ok();
    assert_eq!(element(&reply.body, "fromPort").as_deref(), Some("2222"));
    assert_eq!(
        element(&reply.body, "cidrIpv4").as_deref(),
        Some("192.168.0.0/16")
    );
    config::load(&f.config).expect("valid");
}

#[test]
fn sts_get_caller_identity_names_the_account() {
    let f = fixture();
    let reply = f.send(
        "Action=GetCallerIdentity&Version=2011-06-15",
        "AKIDTEST",
        SECRET,
        "sts",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        element(&reply.body, "Account").as_deref(),
        Some("000000000000")
    );
}

#[test]
fn concurrent_authorizes_are_serialised_and_none_is_lost() {
    let f = fixture();
    let id = f.create("busy");
    // The quota is 8 rules per group in this config: spread over ports, 8 threads.
    let threads: Vec<_> = (0..7u16)
        .map(|n| {
            let api = f.api.clone();
            let body = authorize_body(&id, 1000 + n, "10.0.0.0/8");
            std::thread::spawn(move || send_to(&api, &body, "AKIDTEST", SECRET, "ec2").status)
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().expect("thread"), 200);
    }
    let rules = f.rules(&id);
    // 7 ingress rules and the default egress's 2.
    assert_eq!(
        count(&rules.body, "<securityGroupRuleId>"),
        9,
        "{}",
        rules.body
    );
}

#[test]
fn create_and_delete_network_interface_by_its_host_interface_tag() {
    let f = fixture();
    let web = f.group_id("web");
    f.call(
        "Action=CreateNetworkInterface&SubnetId=subnet-1&PrivateIpAddress=10.0.1.20\
         &TagSpecification.1.ResourceType=network-interface\
         &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web-2",
    )
    .err("MissingParameter");
    let reply = f
        .call(&format!(
            "Action=CreateNetworkInterface&SubnetId=subnet-1&PrivateIpAddress=10.0.1.20\
             &SecurityGroupId.1={web}&TagSpecification.1.ResourceType=network-interface\
             &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web-2\
             &TagSpecification.1.Tag.2.Key=sgwall:interface&TagSpecification.1.Tag.2.Value=sgw-web2"
        ))
        .ok();
    let eni = element(&reply.body, "networkInterfaceId").expect("eni");
    assert!(
        reply.body.contains("<groupName>web</groupName>"),
        "{}",
        reply.body
    );
    let config = config::load(&f.config).expect("valid").config;
    let web_2 = config.instance("web-2").expect("the new instance");
    assert_eq!(
        (web_2.interface.as_str(), web_2.id.as_str()),
        ("sgw-web2", eni.as_str())
    );
    f.call(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={eni}"
    ))
    .ok();
    f.call(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={eni}"
    ))
    .err("InvalidNetworkInterfaceID.NotFound");
    assert!(
        config::load(&f.config)
            .expect("valid")
            .config
            .instance("web-2")
            .is_none()
    );
}

#[test]
fn p1_prefix_list_rules_through_the_api_and_acls_subnets_and_lists_are_kept() {
    let f = fixture();
    fs::write(
        &f.config,
        include_str!("../../../examples/network-acl.toml"),
    )
    .expect("config");
    let before = config::load(&f.config).expect("example").config;
    let web = f.group_id("web-sg");
    let office = "pl-0a1b2c3d4e5f60718";
    let permission = |port: u16, list: &str| {
        format!(
            "GroupId={web}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort={port}\
             &IpPermissions.1.ToPort={port}&IpPermissions.1.PrefixListIds.1.PrefixListId={list}"
        )
    };
    let reply = f
        .call(&format!(
            "Action=AuthorizeSecurityGroupIngress&{}\
             &IpPermissions.1.PrefixListIds.1.Description=office%20admin",
            permission(8443, office)
        ))
        .ok();
    let rule = element(&reply.body, "securityGroupRuleId").expect("sgr id");
    assert!(
        reply
            .body
            .contains(&format!("<prefixListId>{office}</prefixListId>"))
    );
    let text = f.text();
    assert_eq!(count(&text, "prefix_lists = [\"office\"]"), 2, "{text}");
    let after = config::load(&f.config).expect("still valid").config;
    // toml_edit keeps the tables the API does not edit, entries and comments included.
    assert_eq!(after.prefix_lists, before.prefix_lists);
    assert_eq!(after.subnets, before.subnets);
    assert_eq!(after.network_acls, before.network_acls);
    assert!(text.contains("# Network ACLs are stateless (N3)"), "{text}");

    let described = f
        .call(&format!("Action=DescribeSecurityGroups&GroupId.1={web}"))
        .ok();
    assert_eq!(
        count(
            &described.body,
            &format!("<prefixListId>{office}</prefixListId>")
        ),
        2,
        "{}",
        described.body
    );
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&{}",
        permission(22, office)
    ))
    .ok();
    f.call(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={web}&SecurityGroupRuleId.1={rule}"
    ))
    .ok();
    let after = config::load(&f.config).expect("still valid").config;
    assert!(!f.text().contains("prefix_lists"), "{}", f.text());
    assert_eq!(after.prefix_lists, before.prefix_lists);
    assert_eq!(after.network_acls, before.network_acls);
    f.call(&format!(
        "Action=AuthorizeSecurityGroupIngress&{}",
        permission(8443, "pl-00000000000000001")
    ))
    .err("InvalidPrefixListID.NotFound");
}
