//! Rules in the EC2 API's terms and the config's: `IpPermissions` (one protocol and port range,
//! many peers) and `SecurityGroupRule`s (one peer, one `sgr-` id) parsed into the model's
//! protocol, ports and peer (R3, R5), and rendered back the way AWS lists them.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::{
    api::{error::ApiError, query::Params, xml::Xml},
    model::{Config, Direction, Peer, PortRange, Protocol, Rule, SecurityGroup, Tags},
};

/// One rule of one peer, parsed from a request: what `AddRules`, `RemoveRules` and
/// `ReplaceRule` need, and what duplicates are judged on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peer: Peer,
    pub description: String,
}

impl RuleSpec {
    /// AWS's own wording of a rule, for `InvalidPermission.Duplicate`.
    pub fn aws_text(&self, config: &Config) -> String {
        let (from, to) = aws_ports(self.protocol, self.ports);
        format!(
            "peer: {}, {}, from port: {from}, to port: {to}, ALLOW",
            peer_text(config, &self.peer),
            aws_protocol(self.protocol).to_uppercase()
        )
    }

    pub fn same_rule(&self, rule: &Rule, peer: &Peer) -> bool {
        rule.protocol == self.protocol && rule.ports == self.ports && *peer == self.peer
    }
}

fn peer_text(config: &Config, peer: &Peer) -> String {
    match peer {
        Peer::Cidr(net) => net.to_string(),
        Peer::Group(name) => config.group_id(name).unwrap_or(name).to_string(),
        Peer::PrefixList(name) => config
            .prefix_list(name)
            .map_or(name.as_str(), |list| list.id.as_str())
            .to_string(),
    }
}

/// The protocol as AWS names it: `tcp`, `udp`, `icmp`, `icmpv6`, `-1` for all, or a number.
pub fn aws_protocol(protocol: Protocol) -> String {
    match protocol {
        Protocol::All => "-1".to_string(),
        Protocol::Number(number) => number.to_string(),
        named => named.to_string(),
    }
}

/// `FromPort` and `ToPort` as AWS reports them: -1 where there are none, ICMP type and code.
pub fn aws_ports(protocol: Protocol, ports: PortRange) -> (i64, i64) {
    let any = |value: Option<u8>| value.map_or(-1, i64::from);
    match (protocol, ports) {
        (_, PortRange::Ports { from, to }) => (i64::from(from), i64::from(to)),
        (_, PortRange::Icmp { icmp_type, code }) => (any(icmp_type), any(code)),
        (_, PortRange::Any) => (-1, -1),
    }
}

/// R3: `IpProtocol` by name (any case) or number; `-1` and `all` are every protocol.
pub fn parse_protocol(name: &str, value: &str) -> Result<Protocol, ApiError> {
    let invalid = || {
        ApiError::invalid_parameter_value(
            name,
            value,
            "Unknown protocol: use tcp, udp, icmp, icmpv6, -1 or a number from 0 to 255.",
        )
    };
    Protocol::from_aws(&value.to_ascii_lowercase()).ok_or_else(invalid)
}

/// R3: ports for tcp/udp (both needed, 0-65535, ordered), type and code for ICMP (-1 any; a
/// code needs a type), nothing for the rest (what is given is ignored, as AWS does).
pub fn parse_ports(
    protocol: Protocol,
    from: Option<i64>,
    to: Option<i64>,
    prefix: &str,
) -> Result<PortRange, ApiError> {
    let from_name = format!("{prefix}FromPort");
    let to_name = format!("{prefix}ToPort");
    match protocol {
        Protocol::Tcp | Protocol::Udp => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(ApiError::missing_parameter(if from.is_none() {
                    &from_name
                } else {
                    &to_name
                }));
            };
            let port = |name: &str, value: i64| {
                u16::try_from(value).map_err(|_| {
                    ApiError::invalid_parameter_value(
                        name,
                        &value.to_string(),
                        "TCP and UDP ports are 0 to 65535.",
                    )
                })
            };
            let (from_port, to_port) = (port(&from_name, from)?, port(&to_name, to)?);
            if from_port > to_port {
                return Err(ApiError::invalid_parameter_value(
                    &to_name,
                    &to.to_string(),
                    format!("The port range {from}-{to} is reversed."),
                ));
            }
            Ok(PortRange::Ports {
                from: from_port,
                to: to_port,
            })
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            let value = |name: &str, value: Option<i64>| match value.unwrap_or(-1) {
                -1 => Ok(None),
                n => u8::try_from(n).map(Some).map_err(|_| {
                    ApiError::invalid_parameter_value(
                        name,
                        &n.to_string(),
                        "ICMP types and codes are -1 (any) or 0 to 255.",
                    )
                }),
            };
            let icmp_type = value(&from_name, from)?;
            let code = value(&to_name, to)?;
            if icmp_type.is_none() && code.is_some() {
                return Err(ApiError::invalid_parameter_value(
                    &to_name,
                    &to.unwrap_or(-1).to_string(),
                    "An ICMP code needs an ICMP type; a code with type -1 (any) is invalid.",
                ));
            }
            Ok(PortRange::Icmp { icmp_type, code })
        }
        Protocol::All | Protocol::Number(_) => Ok(PortRange::Any),
    }
}

/// R5: a CIDR of the family its parameter names, with no host bits set.
pub fn parse_cidr(name: &str, value: &str, ipv6: bool) -> Result<IpNet, ApiError> {
    let net: IpNet = value
        .parse()
        .map_err(|_| ApiError::invalid_parameter_value(name, value, "It is not a CIDR block."))?;
    if matches!(net, IpNet::V6(_)) != ipv6 {
        return Err(ApiError::invalid_parameter_value(
            name,
            value,
            if ipv6 {
                "It is not an IPv6 CIDR block."
            } else {
                "It is not an IPv4 CIDR block."
            },
        ));
    }
    if net.network() != net.addr() {
        return Err(ApiError::invalid_parameter_value(
            name,
            value,
            format!(
                "The CIDR block has host bits set; did you mean {}?",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

/// A group named by id (or, where the API allows, by name) that must exist.
pub fn resolve_group<'c>(
    config: &'c Config,
    id: Option<&str>,
    name: Option<&str>,
) -> Result<&'c SecurityGroup, ApiError> {
    match (id, name) {
        (Some(id), _) => config
            .group_by_id(id)
            .ok_or_else(|| ApiError::group_not_found(id)),
        (None, Some(name)) => config
            .group(name)
            .ok_or_else(|| ApiError::group_name_not_found(name, &config.vpc.id)),
        (None, None) => Err(ApiError::missing_parameter("GroupId")),
    }
}

/// The `IpPermissions.N` of a request, one [`RuleSpec`] per peer, in request order. The
/// legacy flat form (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`)
/// is read too.
pub fn parse_ip_permissions(params: &Params, config: &Config) -> Result<Vec<RuleSpec>, ApiError> {
    let mut specs = Vec::new();
    for permission in params.structures("IpPermissions")? {
        let protocol_name = format!("{permission}.IpProtocol");
        let protocol = parse_protocol(&protocol_name, &params.required(&protocol_name)?)?;
        let ports = parse_ports(
            protocol,
            params.integer(&format!("{permission}.FromPort"))?,
            params.integer(&format!("{permission}.ToPort"))?,
            &format!("{permission}."),
        )?;
        let before = specs.len();
        let mut push = |peer: Peer, description: Option<String>| {
            specs.push(RuleSpec {
                protocol,
                ports,
                peer,
                description: description.unwrap_or_default(),
            })
        };
        for range in params.structures(&format!("{permission}.IpRanges"))? {
            let name = format!("{range}.CidrIp");
            let net = parse_cidr(&name, &params.required(&name)?, false)?;
            push(
                Peer::Cidr(net),
                params.optional(&format!("{range}.Description")),
            );
        }
        for range in params.structures(&format!("{permission}.Ipv6Ranges"))? {
            let name = format!("{range}.CidrIpv6");
            let net = parse_cidr(&name, &params.required(&name)?, true)?;
            push(
                Peer::Cidr(net),
                params.optional(&format!("{range}.Description")),
            );
        }
        for pair in params.structures(&format!("{permission}.Groups"))? {
            let group = group_pair(params, &pair, config)?;
            push(
                Peer::Group(group),
                params.optional(&format!("{pair}.Description")),
            );
        }
        for list in params.structures(&format!("{permission}.PrefixListIds"))? {
            let id = params.required(&format!("{list}.PrefixListId"))?;
            push(
                Peer::PrefixList(prefix_list_by_id(config, &id)?),
                params.optional(&format!("{list}.Description")),
            );
        }
        if specs.len() == before {
            return Err(ApiError::missing_parameter(&format!(
                "{permission}.IpRanges, Ipv6Ranges, Groups or PrefixListIds"
            )));
        }
    }
    if let Some(protocol) = params.optional("IpProtocol") {
        let protocol = parse_protocol("IpProtocol", &protocol)?;
        let ports = parse_ports(
            protocol,
            params.integer("FromPort")?,
            params.integer("ToPort")?,
            "",
        )?;
        let peer = match (
            params.optional("CidrIp"),
            params.optional("SourceSecurityGroupName"),
        ) {
            (Some(cidr), None) => Peer::Cidr(parse_cidr("CidrIp", &cidr, false)?),
            (None, Some(name)) => {
                Peer::Group(resolve_group(config, None, Some(&name))?.name.clone())
            }
            _ => {
                return Err(ApiError::invalid_parameter_combination(
                    "Give exactly one of CidrIp and SourceSecurityGroupName with IpProtocol.",
                ));
            }
        };
        specs.push(RuleSpec {
            protocol,
            ports,
            peer,
            description: String::new(),
        });
    }
    // R8.
    for spec in &specs {
        if spec.description.chars().count() > 255 {
            return Err(ApiError::invalid_parameter(
                "A rule description is at most 255 characters long.",
            ));
        }
    }
    Ok(specs)
}

/// The name of the config's prefix list (P1) whose id is `id`: rules name lists by name.
pub fn prefix_list_by_id(config: &Config, id: &str) -> Result<String, ApiError> {
    config
        .prefix_lists
        .iter()
        .find(|list| list.id == id)
        .map(|list| list.name.clone())
        .ok_or_else(|| ApiError::prefix_list_not_found(id))
}

/// `UserIdGroupPairs`: the group by id or name, in this account.
fn group_pair(params: &Params, pair: &str, config: &Config) -> Result<String, ApiError> {
    let id = params.optional(&format!("{pair}.GroupId"));
    let name = params.optional(&format!("{pair}.GroupName"));
    // The account is not checked: every group here is the caller's (one account per store).
    let _ = params.optional(&format!("{pair}.UserId"));
    for unsupported in ["VpcId", "VpcPeeringConnectionId", "PeeringStatus"] {
        if let Some(value) = params.optional(&format!("{pair}.{unsupported}")) {
            if unsupported == "VpcId" && value == config.vpc.id {
                continue;
            }
            return Err(ApiError::invalid_parameter_value(
                &format!("{pair}.{unsupported}"),
                &value,
                "Groups of other VPCs are not supported.",
            ));
        }
    }
    resolve_group(config, id.as_deref(), name.as_deref()).map(|group| group.name.clone())
}

/// One rule of the policy as the API shows it.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'c> {
    pub id: &'c str,
    pub group: &'c SecurityGroup,
    pub direction: Direction,
    pub rule: &'c Rule,
    pub peer: &'c Peer,
}

impl RuleView<'_> {
    /// A rule of several peers has no tags of its own (the config writes tags per rule).
    pub fn tags(&self) -> &Tags {
        &self.rule.tags
    }
}

/// Every rule of `group` in `direction` (one per peer), in file order.
pub fn group_rules(group: &SecurityGroup, direction: Direction) -> Vec<RuleView<'_>> {
    group
        .rules(direction)
        .iter()
        .flat_map(|rule| {
            rule.peers
                .iter()
                .zip(&rule.ids)
                .map(move |(peer, id)| RuleView {
                    id,
                    group,
                    direction,
                    rule,
                    peer,
                })
        })
        .collect()
}

/// Every rule of the policy.
pub fn all_rules(config: &Config) -> Vec<RuleView<'_>> {
    config
        .security_groups
        .iter()
        .flat_map(|group| {
            Direction::BOTH
                .into_iter()
                .flat_map(move |direction| group_rules(group, direction))
        })
        .collect()
}

pub fn find_rule<'c>(config: &'c Config, id: &str) -> Option<RuleView<'c>> {
    all_rules(config).into_iter().find(|rule| rule.id == id)
}

/// The rule's peer as `SecurityGroupRule` members.
fn write_peer(xml: &mut Xml, config: &Config, account: &str, peer: &Peer) {
    match peer {
        Peer::Cidr(IpNet::V4(net)) => xml.text("cidrIpv4", net),
        Peer::Cidr(IpNet::V6(net)) => xml.text("cidrIpv6", net),
        Peer::Group(name) => xml.element("referencedGroupInfo", |xml| {
            xml.optional("groupId", config.group_id(name));
            xml.text("userId", account);
        }),
        Peer::PrefixList(name) => {
            xml.optional(
                "prefixListId",
                config.prefix_list(name).map(|list| list.id.as_str()),
            );
        }
    }
}

/// A `SecurityGroupRule` item.
pub fn write_rule(xml: &mut Xml, config: &Config, account: &str, arn: &str, rule: &RuleView<'_>) {
    let (from, to) = aws_ports(rule.rule.protocol, rule.rule.ports);
    xml.text("securityGroupRuleId", rule.id);
    xml.text("groupId", &rule.group.id);
    xml.text("groupOwnerId", account);
    xml.text("isEgress", rule.direction == Direction::Egress);
    xml.text("ipProtocol", aws_protocol(rule.rule.protocol));
    xml.text("fromPort", from);
    xml.text("toPort", to);
    write_peer(xml, config, account, rule.peer);
    if !rule.rule.description.is_empty() {
        xml.text("description", &rule.rule.description);
    }
    xml.tag_set(
        "tagSet",
        rule.tags().iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    xml.text("securityGroupRuleArn", arn);
}

/// A group's rules of one direction as AWS aggregates them into `IpPermissions`: one per
/// protocol and port range, its peers listed by kind, each with its description.
pub fn write_ip_permissions(
    xml: &mut Xml,
    name: &str,
    config: &Config,
    account: &str,
    rules: &[RuleView<'_>],
) {
    let mut order: Vec<(String, i64, i64)> = Vec::new();
    let mut by_key: BTreeMap<(String, i64, i64), Vec<&RuleView<'_>>> = BTreeMap::new();
    for rule in rules {
        let (from, to) = aws_ports(rule.rule.protocol, rule.rule.ports);
        let key = (aws_protocol(rule.rule.protocol), from, to);
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(rule);
    }
    xml.items(name, order, |xml, key| {
        let peers = by_key.get(&key).cloned().unwrap_or_default();
        let (protocol, from, to) = key;
        // AWS lists no ports for "all" and protocols without them.
        let has_ports = !(protocol == "-1"
            || (from == -1 && to == -1 && protocol != "icmp" && protocol != "icmpv6"));
        xml.text("ipProtocol", &protocol);
        if has_ports {
            xml.text("fromPort", from);
            xml.text("toPort", to);
        }
        let described = |xml: &mut Xml, rule: &RuleView<'_>| {
            if !rule.rule.description.is_empty() {
                xml.text("description", &rule.rule.description);
            }
        };
        xml.items(
            "groups",
            peers.iter().filter(|r| matches!(r.peer, Peer::Group(_))),
            |xml, rule| {
                described(xml, rule);
                xml.text("userId", account);
                if let Peer::Group(group) = rule.peer {
                    xml.optional("groupId", config.group_id(group));
                }
            },
        );
        xml.items(
            "ipRanges",
            peers
                .iter()
                .filter(|r| matches!(r.peer, Peer::Cidr(IpNet::V4(_)))),
            |xml, rule| {
                described(xml, rule);
                xml.text("cidrIp", rule.peer);
            },
        );
        xml.items(
            "ipv6Ranges",
            peers
                .iter()
                .filter(|r| matches!(r.peer, Peer::Cidr(IpNet::V6(_)))),
            |xml, rule| {
                described(xml, rule);
                xml.text("cidrIpv6", rule.peer);
            },
        );
        xml.items(
            "prefixListIds",
            peers
                .iter()
                .filter(|r| matches!(r.peer, Peer::PrefixList(_))),
            |xml, rule| {
                described(xml, rule);
                if let Peer::PrefixList(name) = rule.peer {
                    xml.optional(
                        "prefixListId",
                        config.prefix_list(name).map(|list| list.id.as_str()),
                    );
                }
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r3_protocols_by_name_or_number_and_ports_by_protocol() {
        assert_eq!(parse_protocol("P", "-1"), Ok(Protocol::All));
        assert_eq!(parse_protocol("P", "TCP"), Ok(Protocol::Tcp));
        assert_eq!(parse_protocol("P", "6"), Ok(Protocol::Tcp));
        assert_eq!(parse_protocol("P", "58"), Ok(Protocol::Icmpv6));
        assert_eq!(parse_protocol("P", "47"), Ok(Protocol::Number(47)));
        assert_eq!(
            parse_protocol("P", "gre").expect_err("unknown").code,
            "InvalidParameterValue"
        );
        assert_eq!(
            parse_ports(Protocol::Tcp, Some(80), Some(443), ""),
            Ok(PortRange::Ports { from: 80, to: 443 })
        );
        assert_eq!(
            parse_ports(Protocol::Tcp, Some(80), None, "IpPermissions.1.")
                .expect_err("needs both")
                .message,
            "The request must contain the parameter IpPermissions.1.ToPort"
        );
        assert!(parse_ports(Protocol::Udp, Some(70000), Some(70000), "").is_err());
        assert!(parse_ports(Protocol::Udp, Some(90), Some(80), "").is_err());
        // Terraform revokes the default egress with -1 and ports 0-0: ignored, as AWS does.
        assert_eq!(
            parse_ports(Protocol::All, Some(0), Some(0), ""),
            Ok(PortRange::Any)
        );
        assert_eq!(
            parse_ports(Protocol::Icmp, Some(8), Some(-1), ""),
            Ok(PortRange::Icmp {
                icmp_type: Some(8),
                code: None
            })
        );
        assert!(parse_ports(Protocol::Icmp, Some(-1), Some(4), "").is_err());
        assert_eq!(aws_ports(Protocol::All, PortRange::Any), (-1, -1));
        assert_eq!(aws_protocol(Protocol::All), "-1");
    }

    #[test]
    fn r5_cidrs_are_of_their_family_without_host_bits() {
        assert!(parse_cidr("CidrIp", "10.0.0.0/8", false).is_ok());
        assert!(parse_cidr("CidrIpv6", "::/0", true).is_ok());
        let error = parse_cidr("CidrIp", "10.0.0.1/8", false).expect_err("host bits");
        assert_eq!(
            error.message,
            "Value (10.0.0.1/8) for parameter CidrIp is invalid. The CIDR block has host bits set; did you mean 10.0.0.0/8?"
        );
        assert!(parse_cidr("CidrIp", "::/0", false).is_err());
        assert!(parse_cidr("CidrIp", "banana", false).is_err());
    }
}
