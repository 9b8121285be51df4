"""boto3 against `sgwall api`, replaying the calls the Terraform AWS provider makes, step by
step, so a failure names the call. Run as: provider_calls.py STEP [ARGS]; prints OK on success.

Steps:
  security-group NAME SOURCE_GROUP ENI   aws_security_group's create sequence, then 50
                                          concurrent Authorize calls, then attach to ENI
  ingress-rule GROUP_ID                  aws_vpc_security_group_ingress_rule's lifecycle
  delete NAME ENI                         delete while attached (DependencyViolation), detach,
                                          delete
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2", endpoint_url=os.environ["SGWALL_ENDPOINT"])


def call(name, **kwargs):
    try:
        return getattr(ec2, name)(**kwargs)
    except ClientError as error:
        sys.exit(f"{name}({kwargs}) failed: {error}")


def expect_error(code, name, **kwargs):
    try:
        getattr(ec2, name)(**kwargs)
    except ClientError as error:
        got = error.response["Error"]["Code"]
        if got != code:
            sys.exit(f"{name}({kwargs}): expected {code}, got {got}: {error}")
        return
    sys.exit(f"{name}({kwargs}) succeeded; expected {code}")


def check(condition, what):
    if not condition:
        sys.exit(what)


def rules_of(group_id):
    return call(
        "describe_security_group_rules",
        Filters=[{"Name": "group-id", "Values": [group_id]}],
    )["SecurityGroupRules"]


def security_group(name, source_group, eni):
    group_id = call(
        "create_security_group",
        GroupName=name,
        Description="boto3 replay of aws_security_group",
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": name}]}
        ],
    )["GroupId"]
    described = call("describe_security_groups", GroupIds=[group_id])["SecurityGroups"][0]
    check(described["Tags"] == [{"Key": "Name", "Value": name}], f"tags: {described}")
    egress = described["IpPermissionsEgress"]
    check(len(egress) == 1 and egress[0]["IpProtocol"] == "-1", f"R2 default egress: {egress}")
    # The provider revokes the default egress of every group it creates.
    call(
        "revoke_security_group_egress",
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "-1", "FromPort": 0, "ToPort": 0,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "-1", "FromPort": 0, "ToPort": 0,
             "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        ],
    )
    check(rules_of(group_id) == [], "no rule left after revoking the default egress")
    # Egress back, as the provider's inline egress would.
    call(
        "authorize_security_group_egress",
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )

    def authorize(port):
        return ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                "UserIdGroupPairs": [{"GroupId": source_group}],
            }],
        )["SecurityGroupRules"][0]["SecurityGroupRuleId"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        ids = list(pool.map(authorize, range(7100, 7150)))
    check(len(set(ids)) == 50, f"50 distinct rule ids: {ids}")
    ingress = [r for r in rules_of(group_id) if not r["IsEgress"]]
    check(len(ingress) == 50, f"exactly 50 ingress rules after 50 concurrent calls: {len(ingress)}")
    expect_error(
        "InvalidPermission.Duplicate",
        "authorize_security_group_ingress",
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 7100, "ToPort": 7100,
                        "UserIdGroupPairs": [{"GroupId": source_group}]}],
    )
    interface = call("describe_network_interfaces", NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    groups = [g["GroupId"] for g in interface["Groups"]] + [group_id]
    call("modify_network_interface_attribute", NetworkInterfaceId=eni, Groups=groups)


def ingress_rule(group_id):
    rule_id = call(
        "authorize_security_group_ingress",
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "udp", "FromPort": 5353, "ToPort": 5353,
                        "IpRanges": [{"CidrIp": "10.99.0.0/16"}]}],
    )["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    rule = call("describe_security_group_rules", SecurityGroupRuleIds=[rule_id])["SecurityGroupRules"]
    check(len(rule) == 1 and rule[0]["CidrIpv4"] == "10.99.0.0/16", f"described: {rule}")
    call(
        "modify_security_group_rules",
        GroupId=group_id,
        SecurityGroupRules=[{
            "SecurityGroupRuleId": rule_id,
            "SecurityGroupRule": {"IpProtocol": "udp", "FromPort": 5354, "ToPort": 5354,
                                  "CidrIpv4": "10.99.0.0/16", "Description": "modified"},
        }],
    )
    rule = call("describe_security_group_rules", SecurityGroupRuleIds=[rule_id])["SecurityGroupRules"][0]
    check(rule["FromPort"] == 5354 and rule.get("Description") == "modified", f"modified: {rule}")
    call("revoke_security_group_ingress", GroupId=group_id, SecurityGroupRuleIds=[rule_id])
    expect_error("InvalidSecurityGroupRuleId.NotFound", "describe_security_group_rules",
                 SecurityGroupRuleIds=[rule_id])


def delete(name, eni):
    group_id = call("describe_security_groups", GroupNames=[name])["SecurityGroups"][0]["GroupId"]
    expect_error("DependencyViolation", "delete_security_group", GroupId=group_id)
    interface = call("describe_network_interfaces", NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    groups = [g["GroupId"] for g in interface["Groups"] if g["GroupId"] != group_id]
    call("modify_network_interface_attribute", NetworkInterfaceId=eni, Groups=groups)
    call("delete_security_group", GroupId=group_id)
    expect_error("InvalidGroup.NotFound", "describe_security_groups", GroupIds=[group_id])


steps = {"security-group": security_group, "ingress-rule": ingress_rule, "delete": delete}
steps[sys.argv[1]](*sys.argv[2:])
print("OK")
