//! Authorize/RevokeSecurityGroupIngress/Egress, DescribeSecurityGroupRules and
//! ModifySecurityGroupRules. One AWS rule is one peer of a config rule, with its `sgr-` id (R9).

use super::{
    Context, any_matches, page,
    permissions::{
        RuleSpec, RuleView, all_rules, group_rules, parse_cidr, parse_ip_permissions, parse_ports,
        parse_protocol, prefix_list_by_id, resolve_group, write_rule,
    },
    select, tag_filter, unknown_filter,
};
use crate::{
    api::{
        error::ApiError,
        query::{self, Params},
        store::{Change, NewRule, document::fresh_id},
    },
    ids::IdKind,
    model::{self, Config, Direction, Peer, Rule, SecurityGroup, Tags},
};

fn direction_of(action: &str) -> Direction {
    if action.ends_with("Egress") {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// `GroupId`, or for ingress (the EC2-Classic form the CLI still offers) `GroupName`.
fn group_parameters(params: &Params, direction: Direction) -> (Option<String>, Option<String>) {
    let id = params.optional("GroupId");
    let name = match direction {
        Direction::Ingress => params.optional("GroupName"),
        Direction::Egress => None,
    };
    (id, name)
}

/// The rule a new spec gets: one peer, a fresh derived id.
fn new_rule(
    config: &Config,
    group: &SecurityGroup,
    direction: Direction,
    spec: &RuleSpec,
    tags: &Tags,
    taken: &[String],
) -> NewRule {
    let key = model::rule_key(&group.id, direction, spec.protocol, spec.ports, &spec.peer);
    let existing = all_rules(config);
    let id = fresh_id(IdKind::SecurityGroupRule, &key, |id| {
        existing.iter().any(|rule| rule.id == id) || taken.iter().any(|t| t == id)
    });
    NewRule {
        id,
        protocol: spec.protocol,
        ports: spec.ports,
        peer: spec.peer.clone(),
        description: spec.description.clone(),
        tags: tags.clone(),
    }
}

pub fn authorize(
    context: &Context<'_>,
    params: &Params,
    action: &str,
) -> Result<Vec<u8>, ApiError> {
    let direction = direction_of(action);
    let (id, name) = group_parameters(params, direction);
    let tags: Tags = query::tag_specifications(params, "security-group-rule")?
        .into_iter()
        .collect();
    let specs = parse_ip_permissions(params, &context.store.read()?)?;
    context.may_write(params)?;
    if specs.is_empty() {
        return Err(ApiError::missing_parameter("IpPermissions"));
    }
    let mut answer: Option<(Config, SecurityGroup, Vec<Rule>)> = None;
    context.store.transact(&mut |config| {
        let group = resolve_group(config, id.as_deref(), name.as_deref())?;
        let existing = group_rules(group, direction);
        let mut added: Vec<NewRule> = Vec::new();
        for spec in &specs {
            let duplicate = existing
                .iter()
                .any(|view| spec.same_rule(view.rule, view.peer))
                || added.iter().any(|rule| {
                    rule.protocol == spec.protocol
                        && rule.ports == spec.ports
                        && rule.peer == spec.peer
                });
            if duplicate {
                return Err(ApiError::permission_duplicate(&spec.aws_text(config)));
            }
            let taken: Vec<String> = added.iter().map(|rule| rule.id.clone()).collect();
            added.push(new_rule(config, group, direction, spec, &tags, &taken));
        }
        answer = Some((
            config.clone(),
            group.clone(),
            added.iter().map(NewRule::to_rule).collect(),
        ));
        Ok(vec![Change::AddRules {
            group_id: group.id.clone(),
            direction,
            rules: added,
        }])
    })?;
    let Some((config, group, rules)) = answer else {
        return Err(ApiError::internal("the store committed without deciding"));
    };
    let account = context.account().to_string();
    Ok(context.respond(action, |xml| {
        xml.text("return", true);
        xml.items("securityGroupRuleSet", &rules, |xml, rule| {
            let view = RuleView {
                id: &rule.ids[0],
                group: &group,
                direction,
                rule,
                peer: &rule.peers[0],
            };
            write_rule(
                xml,
                &config,
                &account,
                &context.arn("security-group-rule", view.id),
                &view,
            );
        });
    }))
}

pub fn revoke(context: &Context<'_>, params: &Params, action: &str) -> Result<Vec<u8>, ApiError> {
    let direction = direction_of(action);
    let (id, name) = group_parameters(params, direction);
    let rule_ids = params.strings("SecurityGroupRuleId")?;
    let specs = parse_ip_permissions(params, &context.store.read()?)?;
    context.may_write(params)?;
    if specs.is_empty() && rule_ids.is_empty() {
        return Err(ApiError::missing_parameter("IpPermissions"));
    }
    context.store.transact(&mut |config| {
        let group = resolve_group(config, id.as_deref(), name.as_deref())?;
        let existing = group_rules(group, direction);
        let mut remove = Vec::new();
        for spec in &specs {
            let view = existing
                .iter()
                .find(|view| spec.same_rule(view.rule, view.peer))
                .ok_or_else(ApiError::permission_not_found)?;
            remove.push(view.id.to_string());
        }
        for rule_id in &rule_ids {
            if !existing.iter().any(|view| view.id == rule_id) {
                return Err(ApiError::rule_id_not_found(rule_id));
            }
            remove.push(rule_id.clone());
        }
        remove.sort();
        remove.dedup();
        Ok(vec![Change::RemoveRules {
            group_id: group.id.clone(),
            direction,
            rule_ids: remove,
        }])
    })?;
    Ok(context.respond(action, |xml| xml.text("return", true)))
}

fn rule_matches(view: &RuleView<'_>, filter: &query::Filter) -> Result<bool, ApiError> {
    if let Some(matched) = tag_filter(filter, view.tags()) {
        return Ok(matched);
    }
    Ok(match filter.name.as_str() {
        "group-id" => any_matches(filter, [view.group.id.as_str()]),
        "security-group-rule-id" => any_matches(filter, [view.id]),
        _ => return Err(unknown_filter(filter)),
    })
}

pub fn describe(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = params.strings("SecurityGroupRuleId")?;
    let filters = query::filters(params)?;
    let config = context.store.read()?;
    let rules = all_rules(&config);
    for id in &ids {
        if !rules.iter().any(|rule| rule.id == id) {
            return Err(ApiError::rule_id_not_found(id));
        }
    }
    let asked = rules
        .into_iter()
        .filter(|rule| ids.is_empty() || ids.iter().any(|id| id == rule.id));
    let selected = select(&filters, asked, rule_matches)?;
    let (selected, next) = page(params, selected, (5, 1000))?;
    context.may_read(params)?;
    let account = context.account().to_string();
    Ok(context.respond("DescribeSecurityGroupRules", |xml| {
        xml.items("securityGroupRuleSet", selected, |xml, rule| {
            write_rule(
                xml,
                &config,
                &account,
                &context.arn("security-group-rule", rule.id),
                &rule,
            );
        });
        xml.optional("nextToken", next);
    }))
}

/// One `SecurityGroupRule.N` of ModifySecurityGroupRules: the id and the rule's new content.
struct Modification {
    id: String,
    protocol: String,
    from: Option<i64>,
    to: Option<i64>,
    cidr_v4: Option<String>,
    cidr_v6: Option<String>,
    group_id: Option<String>,
    prefix_list_id: Option<String>,
    description: Option<String>,
    prefix: String,
}

fn modifications(params: &Params) -> Result<Vec<Modification>, ApiError> {
    params
        .structures("SecurityGroupRule")?
        .into_iter()
        .map(|item| {
            let rule = format!("{item}.SecurityGroupRule");
            Ok(Modification {
                id: params.required(&format!("{item}.SecurityGroupRuleId"))?,
                protocol: params.required(&format!("{rule}.IpProtocol"))?,
                from: params.integer(&format!("{rule}.FromPort"))?,
                to: params.integer(&format!("{rule}.ToPort"))?,
                cidr_v4: params.optional(&format!("{rule}.CidrIpv4")),
                cidr_v6: params.optional(&format!("{rule}.CidrIpv6")),
                group_id: params.optional(&format!("{rule}.ReferencedGroupId")),
                prefix_list_id: params.optional(&format!("{rule}.PrefixListId")),
                description: params.optional(&format!("{rule}.Description")),
                prefix: format!("{rule}."),
            })
        })
        .collect()
}

impl Modification {
    fn spec(&self, config: &Config) -> Result<RuleSpec, ApiError> {
        let protocol = parse_protocol(&format!("{}IpProtocol", self.prefix), &self.protocol)?;
        let ports = parse_ports(protocol, self.from, self.to, &self.prefix)?;
        let peer = match (
            &self.cidr_v4,
            &self.cidr_v6,
            &self.group_id,
            &self.prefix_list_id,
        ) {
            (Some(cidr), None, None, None) => Peer::Cidr(parse_cidr(
                &format!("{}CidrIpv4", self.prefix),
                cidr,
                false,
            )?),
            (None, Some(cidr), None, None) => {
                Peer::Cidr(parse_cidr(&format!("{}CidrIpv6", self.prefix), cidr, true)?)
            }
            (None, None, Some(id), None) => {
                Peer::Group(resolve_group(config, Some(id), None)?.name.clone())
            }
            (None, None, None, Some(id)) => Peer::PrefixList(prefix_list_by_id(config, id)?),
            _ => {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Give exactly one of {0}CidrIpv4, {0}CidrIpv6, {0}ReferencedGroupId and \
                     {0}PrefixListId.",
                    self.prefix
                )));
            }
        };
        Ok(RuleSpec {
            protocol,
            ports,
            peer,
            description: self.description.clone().unwrap_or_default(),
        })
    }
}

pub fn modify(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let group_id = params.required("GroupId")?;
    let modifications = modifications(params)?;
    context.may_write(params)?;
    if modifications.is_empty() {
        return Err(ApiError::missing_parameter("SecurityGroupRule"));
    }
    context.store.transact(&mut |config| {
        let group = resolve_group(config, Some(&group_id), None)?;
        let mut changes = Vec::new();
        for modification in &modifications {
            let spec = modification.spec(config)?;
            let (direction, current) = Direction::BOTH
                .into_iter()
                .find_map(|direction| {
                    group_rules(group, direction)
                        .into_iter()
                        .find(|view| view.id == modification.id)
                        .map(|view| (direction, view))
                })
                .ok_or_else(|| ApiError::rule_id_not_found(&modification.id))?;
            let duplicate = group_rules(group, direction)
                .iter()
                .any(|view| view.id != modification.id && spec.same_rule(view.rule, view.peer));
            if duplicate {
                return Err(ApiError::permission_duplicate(&spec.aws_text(config)));
            }
            let tags = if current.rule.peers.len() == 1 {
                current.rule.tags.clone()
            } else {
                Tags::new()
            };
            changes.push(Change::ReplaceRule {
                group_id: group.id.clone(),
                direction,
                rule: NewRule {
                    id: modification.id.clone(),
                    protocol: spec.protocol,
                    ports: spec.ports,
                    peer: spec.peer,
                    description: spec.description,
                    tags,
                },
            });
        }
        Ok(changes)
    })?;
    Ok(context.respond("ModifySecurityGroupRules", |xml| xml.text("return", true)))
}
