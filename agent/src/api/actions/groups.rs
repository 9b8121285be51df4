//! CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups.

use super::{
    Context, any_matches, page,
    permissions::{group_rules, resolve_group, write_ip_permissions},
    select, tag_filter, unknown_filter, write_tags,
};
use crate::{
    api::{
        error::ApiError,
        query::{self, Params},
        store::{Change, NewGroup, document::fresh_id},
    },
    ids::IdKind,
    model::{Config, Direction, Peer, SecurityGroup, Tags},
};

/// The group AWS gives every VPC, which no one may delete or create.
const DEFAULT_GROUP: &str = "default";

pub fn create(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let name = params.required("GroupName")?;
    let description = params.required("GroupDescription")?;
    let vpc = params.optional("VpcId");
    let tags: Tags = query::tag_specifications(params, "security-group")?
        .into_iter()
        .collect();
    context.may_write(params)?;
    if name.eq_ignore_ascii_case(DEFAULT_GROUP) {
        return Err(ApiError::invalid_parameter_value(
            "GroupName",
            &name,
            "Cannot use reserved security group name: default",
        ));
    }
    if name.starts_with("sg-") {
        return Err(ApiError::invalid_parameter_value(
            "GroupName",
            &name,
            "Group names may not be in the format sg-*.",
        ));
    }
    let mut created = String::new();
    context.store.transact(&mut |config| {
        if let Some(vpc) = &vpc
            && *vpc != config.vpc.id
        {
            return Err(ApiError::vpc_not_found(vpc));
        }
        if config.group(&name).is_some() {
            return Err(ApiError::group_duplicate(&name, &config.vpc.id));
        }
        created = fresh_id(IdKind::SecurityGroup, &name, |id| {
            config.group_by_id(id).is_some()
        });
        Ok(vec![Change::CreateGroup(NewGroup {
            id: created.clone(),
            name: name.clone(),
            description: description.clone(),
            tags: tags.clone(),
        })])
    })?;
    Ok(context.respond("CreateSecurityGroup", |xml| {
        xml.text("return", true);
        xml.text("groupId", &created);
        xml.text("securityGroupArn", context.arn("security-group", &created));
        write_tags(xml, &tags);
    }))
}

/// Why a group may not go: an interface has it, or another group's rule names it.
fn dependency(config: &Config, group: &SecurityGroup) -> Option<String> {
    if let Some(instance) = config
        .instances
        .iter()
        .find(|instance| instance.security_groups.contains(&group.name))
    {
        return Some(format!("attached to {}", instance.id));
    }
    if config
        .members
        .iter()
        .any(|member| member.security_groups.contains(&group.name))
    {
        return Some("attached to a remote member".into());
    }
    let referenced_by = config.security_groups.iter().find(|other| {
        other.name != group.name
            && Direction::BOTH.into_iter().any(|direction| {
                other.rules(direction).iter().any(|rule| {
                    rule.peers
                        .iter()
                        .any(|peer| matches!(peer, Peer::Group(name) if *name == group.name))
                })
            })
    })?;
    Some(format!("referenced by a rule of {}", referenced_by.id))
}

pub fn delete(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let id = params.optional("GroupId");
    let name = params.optional("GroupName");
    context.may_write(params)?;
    let mut deleted = String::new();
    context.store.transact(&mut |config| {
        let group = resolve_group(config, id.as_deref(), name.as_deref())?;
        if group.name == DEFAULT_GROUP {
            return Err(ApiError::cannot_delete_default(&group.id));
        }
        if let Some(why) = dependency(config, group) {
            return Err(ApiError::dependency_violation(&group.id, &why));
        }
        deleted = group.id.clone();
        Ok(vec![Change::DeleteGroup {
            id: group.id.clone(),
        }])
    })?;
    Ok(context.respond("DeleteSecurityGroup", |xml| {
        xml.text("return", true);
        xml.text("groupId", &deleted);
    }))
}

fn matches_filter(
    config: &Config,
    group: &SecurityGroup,
    filter: &query::Filter,
) -> Result<bool, ApiError> {
    if let Some(matched) = tag_filter(filter, &group.tags) {
        return Ok(matched);
    }
    Ok(match filter.name.as_str() {
        "group-id" => any_matches(filter, [group.id.as_str()]),
        "group-name" => any_matches(filter, [group.name.as_str()]),
        "vpc-id" => any_matches(filter, [config.vpc.id.as_str()]),
        "description" => any_matches(filter, [group.description.as_str()]),
        "owner-id" => true,
        _ => return Err(unknown_filter(filter)),
    })
}

pub fn describe(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = params.strings("GroupId")?;
    let names = params.strings("GroupName")?;
    let filters = query::filters(params)?;
    let config = context.store.read()?;
    let mut groups: Vec<&SecurityGroup> = Vec::new();
    for id in &ids {
        groups.push(
            config
                .group_by_id(id)
                .ok_or_else(|| ApiError::group_not_found(id))?,
        );
    }
    for name in &names {
        groups.push(
            config
                .group(name)
                .ok_or_else(|| ApiError::group_name_not_found(name, &config.vpc.id))?,
        );
    }
    if ids.is_empty() && names.is_empty() {
        groups = config.security_groups.iter().collect();
    }
    let mut selected = select(&filters, groups, |group, filter| {
        matches_filter(&config, group, filter)
    })?;
    // A group asked for by id and by name is listed once.
    let mut seen = std::collections::HashSet::new();
    selected.retain(|group| seen.insert(group.id.clone()));
    let (selected, next) = page(params, selected, (5, 1000))?;
    context.may_read(params)?;
    let account = context.account().to_string();
    Ok(context.respond("DescribeSecurityGroups", |xml| {
        xml.items("securityGroupInfo", selected, |xml, group| {
            xml.text("ownerId", &account);
            xml.text("groupId", &group.id);
            xml.text("groupName", &group.name);
            xml.text("groupDescription", &group.description);
            xml.text("vpcId", &config.vpc.id);
            xml.text("securityGroupArn", context.arn("security-group", &group.id));
            write_ip_permissions(
                xml,
                "ipPermissions",
                &config,
                &account,
                &group_rules(group, Direction::Ingress),
            );
            write_ip_permissions(
                xml,
                "ipPermissionsEgress",
                &config,
                &account,
                &group_rules(group, Direction::Egress),
            );
            write_tags(xml, &group.tags);
        });
        xml.optional("nextToken", next);
    }))
}
