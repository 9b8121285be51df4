//! The instances as ENIs (DescribeNetworkInterfaces, ModifyNetworkInterfaceAttribute) and the
//! store's one VPC (DescribeVpcs).

use std::net::IpAddr;

use super::{Context, any_matches, page, tag_filter, unknown_filter, write_tags};
use crate::{
    api::{
        error::ApiError,
        query::{self, Params},
        store::Change,
    },
    model::{Config, Instance},
};

fn instance_matches(
    config: &Config,
    instance: &Instance,
    filter: &query::Filter,
) -> Result<bool, ApiError> {
    if let Some(matched) = tag_filter(filter, &instance.tags) {
        return Ok(matched);
    }
    let group_ids = || {
        instance
            .security_groups
            .iter()
            .filter_map(|name| config.group_id(name))
            .collect::<Vec<_>>()
    };
    let addresses: Vec<String> = instance.addresses.iter().map(IpAddr::to_string).collect();
    Ok(match filter.name.as_str() {
        "network-interface-id" => any_matches(filter, [instance.id.as_str()]),
        "group-id" => any_matches(filter, group_ids()),
        "group-name" => any_matches(filter, instance.security_groups.iter().map(String::as_str)),
        "vpc-id" => any_matches(filter, [config.vpc.id.as_str()]),
        "description" => any_matches(filter, [instance.name.as_str()]),
        "private-ip-address" | "addresses.private-ip-address" => {
            any_matches(filter, addresses.iter().map(String::as_str))
        }
        "status" => any_matches(filter, ["in-use"]),
        _ => return Err(unknown_filter(filter)),
    })
}

pub fn describe(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = params.strings("NetworkInterfaceId")?;
    let filters = query::filters(params)?;
    let config = context.store.read()?;
    for id in &ids {
        if !config.instances.iter().any(|instance| instance.id == *id) {
            return Err(ApiError::interface_not_found(id));
        }
    }
    let mut selected = Vec::new();
    for instance in &config.instances {
        if !ids.is_empty() && !ids.contains(&instance.id) {
            continue;
        }
        let mut keep = true;
        for filter in &filters {
            keep &= instance_matches(&config, instance, filter)?;
        }
        if keep {
            selected.push(instance);
        }
    }
    let (selected, next) = page(params, selected, (5, 1000))?;
    context.may_read(params)?;
    let account = context.account().to_string();
    Ok(context.respond("DescribeNetworkInterfaces", |xml| {
        xml.items("networkInterfaceSet", selected, |xml, instance| {
            let v4: Vec<&IpAddr> = instance.addresses.iter().filter(|a| a.is_ipv4()).collect();
            let v6: Vec<&IpAddr> = instance.addresses.iter().filter(|a| a.is_ipv6()).collect();
            xml.text("networkInterfaceId", &instance.id);
            xml.text("vpcId", &config.vpc.id);
            xml.text("description", &instance.name);
            xml.text("ownerId", &account);
            xml.text("requesterManaged", false);
            xml.text("status", "in-use");
            xml.text("interfaceType", "interface");
            xml.optional("privateIpAddress", v4.first());
            xml.text("sourceDestCheck", instance.source_dest_check);
            xml.items("groupSet", &instance.security_groups, |xml, name| {
                xml.optional("groupId", config.group_id(name));
                xml.text("groupName", name);
            });
            xml.items(
                "privateIpAddressesSet",
                v4.iter().enumerate(),
                |xml, (n, address)| {
                    xml.text("privateIpAddress", address);
                    xml.text("primary", n == 0);
                },
            );
            xml.items("ipv6AddressesSet", &v6, |xml, address| {
                xml.text("ipv6Address", address);
            });
            // The host interface the ENI is, for people reading the answer.
            xml.tag_set(
                "tagSet",
                std::iter::once(("sgwall:interface", instance.interface.as_str())).chain(
                    instance
                        .tags
                        .iter()
                        .filter(|(key, _)| key.as_str() != "sgwall:interface")
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            );
        });
        xml.optional("nextToken", next);
    }))
}

pub fn modify_attribute(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    let group_ids = params.strings("SecurityGroupId")?;
    let source_dest_check = params.bool("SourceDestCheck.Value")?;
    for unsupported in ["Description.Value", "Attachment.AttachmentId"] {
        if let Some(value) = params.optional(unsupported) {
            return Err(ApiError::invalid_parameter_value(
                unsupported,
                &value,
                "This attribute is not supported by sgwall.",
            ));
        }
    }
    context.may_write(params)?;
    match (group_ids.is_empty(), source_dest_check) {
        (true, None) => {
            return Err(ApiError::missing_parameter(
                "SecurityGroupId.N or SourceDestCheck.Value",
            ));
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid_parameter_combination(
                "Modify one attribute per request: SecurityGroupId.N or SourceDestCheck.Value.",
            ));
        }
        _ => {}
    }
    context.store.transact(&mut |config| {
        if !config.instances.iter().any(|instance| instance.id == id) {
            return Err(ApiError::interface_not_found(&id));
        }
        if let Some(enabled) = source_dest_check {
            return Ok(vec![Change::SetSourceDestCheck {
                id: id.clone(),
                enabled,
            }]);
        }
        let mut names = Vec::new();
        for group_id in &group_ids {
            let group = config
                .group_by_id(group_id)
                .ok_or_else(|| ApiError::group_not_found(group_id))?;
            if !names.contains(&group.name) {
                names.push(group.name.clone());
            }
        }
        Ok(vec![Change::SetInterfaceGroups {
            id: id.clone(),
            groups: names,
        }])
    })?;
    Ok(context.respond("ModifyNetworkInterfaceAttribute", |xml| {
        xml.text("return", true)
    }))
}

pub fn describe_vpcs(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = params.strings("VpcId")?;
    let filters = query::filters(params)?;
    let config = context.store.read()?;
    let vpc = &config.vpc;
    for id in &ids {
        if *id != vpc.id {
            return Err(ApiError::vpc_not_found(id));
        }
    }
    let tags = crate::model::Tags::new();
    let mut keep = true;
    for filter in &filters {
        keep &= match tag_filter(filter, &tags) {
            Some(matched) => matched,
            None => match filter.name.as_str() {
                "vpc-id" => any_matches(filter, [vpc.id.as_str()]),
                "is-default" | "isDefault" => any_matches(filter, ["true"]),
                "state" => any_matches(filter, ["available"]),
                _ => return Err(unknown_filter(filter)),
            },
        };
    }
    let _ = params.integer("MaxResults")?;
    let _ = params.optional("NextToken");
    context.may_read(params)?;
    let cidr = vpc
        .cidr
        .map_or_else(|| "0.0.0.0/0".to_string(), |cidr| cidr.to_string());
    Ok(context.respond("DescribeVpcs", |xml| {
        xml.items("vpcSet", keep.then_some(vpc), |xml, vpc| {
            xml.text("vpcId", &vpc.id);
            xml.text("ownerId", context.account());
            xml.text("state", "available");
            xml.text("cidrBlock", &cidr);
            xml.items("cidrBlockAssociationSet", [&cidr], |xml, cidr| {
                xml.text("cidrBlock", cidr);
                xml.element("cidrBlockState", |xml| xml.text("state", "associated"));
            });
            xml.text("dhcpOptionsId", "default");
            xml.text("instanceTenancy", "default");
            xml.text("isDefault", true);
            write_tags(xml, &tags);
        });
    }))
}
