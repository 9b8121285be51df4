//! The instances as ENIs (DescribeNetworkInterfaces, ModifyNetworkInterfaceAttribute) and the
//! store's one VPC (DescribeVpcs).

use std::net::IpAddr;

use super::{Context, any_matches, page, select, tag_filter, unknown_filter, write_tags};
use crate::{
    api::{
        error::ApiError,
        query::{self, Params},
        store::{Change, NewInterface, document::fresh_id},
        xml::Xml,
    },
    ids::IdKind,
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
    let asked = config
        .instances
        .iter()
        .filter(|instance| ids.is_empty() || ids.contains(&instance.id));
    let selected = select(&filters, asked, |instance, filter| {
        instance_matches(&config, instance, filter)
    })?;
    let (selected, next) = page(params, selected, (5, 1000))?;
    context.may_read(params)?;
    let account = context.account().to_string();
    Ok(context.respond("DescribeNetworkInterfaces", |xml| {
        xml.items("networkInterfaceSet", selected, |xml, instance| {
            write_interface(xml, &config, &account, instance);
        });
        xml.optional("nextToken", next);
    }))
}

/// The host interface an ENI is, as a tag (CreateNetworkInterface takes it the same way).
pub const INTERFACE_TAG: &str = "sgwall:interface";

/// One ENI's members, as DescribeNetworkInterfaces and CreateNetworkInterface answer them.
fn write_interface(xml: &mut Xml, config: &Config, account: &str, instance: &Instance) {
    let v4: Vec<&IpAddr> = instance.addresses.iter().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<&IpAddr> = instance.addresses.iter().filter(|a| a.is_ipv6()).collect();
    xml.text("networkInterfaceId", &instance.id);
    xml.text("vpcId", &config.vpc.id);
    xml.text("description", &instance.name);
    xml.text("ownerId", account);
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
        std::iter::once((INTERFACE_TAG, instance.interface.as_str())).chain(
            instance
                .tags
                .iter()
                .filter(|(key, _)| key.as_str() != INTERFACE_TAG)
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    );
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
    let selected = select(&filters, [vpc], |vpc, filter| {
        Ok(match tag_filter(filter, &tags) {
            Some(matched) => matched,
            None => match filter.name.as_str() {
                "vpc-id" => any_matches(filter, [vpc.id.as_str()]),
                "is-default" | "isDefault" => any_matches(filter, ["true"]),
                "state" => any_matches(filter, ["available"]),
                _ => return Err(unknown_filter(filter)),
            },
        })
    })?;
    let _ = params.integer("MaxResults")?;
    let _ = params.optional("NextToken");
    context.may_read(params)?;
    let cidr = vpc
        .cidr
        .map_or_else(|| "0.0.0.0/0".to_string(), |cidr| cidr.to_string());
    Ok(context.respond("DescribeVpcs", |xml| {
        xml.items("vpcSet", selected, |xml, vpc| {
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

/// The groups of a new interface by name: those given, or the VPC's `default` group as AWS
/// does, or none.
fn new_interface_groups(config: &Config, ids: &[String]) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() {
        return Ok(config
            .group("default")
            .map(|group| vec![group.name.clone()])
            .unwrap_or_default());
    }
    let mut names = Vec::new();
    for id in ids {
        let group = config
            .group_by_id(id)
            .ok_or_else(|| ApiError::group_not_found(id))?;
        if !names.contains(&group.name) {
            names.push(group.name.clone());
        }
    }
    Ok(names)
}

/// CreateNetworkInterface: a host interface (named by the `sgwall:interface` tag) becomes an
/// enforced instance. sgwall has no subnets: `SubnetId` is accepted as clients must send it,
/// and recorded nowhere.
pub fn create(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let _subnet = params.optional("SubnetId");
    let description = params.optional("Description");
    let group_ids = params.strings("SecurityGroupId")?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut address = |name: &str, value: String| -> Result<(), ApiError> {
        let parsed: IpAddr = value.parse().map_err(|_| {
            ApiError::invalid_parameter_value(name, &value, "It is not an IP address.")
        })?;
        if !addresses.contains(&parsed) {
            addresses.push(parsed);
        }
        Ok(())
    };
    if let Some(primary) = params.optional("PrivateIpAddress") {
        address("PrivateIpAddress", primary)?;
    }
    for item in params.structures("PrivateIpAddresses")? {
        let name = format!("{item}.PrivateIpAddress");
        address(&name, params.required(&name)?)?;
        let _ = params.bool(&format!("{item}.Primary"))?;
    }
    for item in params.structures("Ipv6Addresses")? {
        let name = format!("{item}.Ipv6Address");
        address(&name, params.required(&name)?)?;
    }
    let mut tags: crate::model::Tags = query::tag_specifications(params, "network-interface")?
        .into_iter()
        .collect();
    context.may_write(params)?;
    let interface = tags.remove(INTERFACE_TAG).ok_or_else(|| {
        ApiError::missing_parameter(&format!(
            "TagSpecification.N.Tag (key {INTERFACE_TAG}, the host interface to enforce)"
        ))
    })?;
    if addresses.is_empty() {
        return Err(ApiError::missing_parameter("PrivateIpAddress"));
    }
    let name = tags
        .get("Name")
        .cloned()
        .or_else(|| description.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| interface.clone());
    let mut created = String::new();
    context.store.transact(&mut |config| {
        if config.instance(&name).is_some() {
            return Err(ApiError::invalid_parameter_value(
                "Description",
                &name,
                "An interface of this name exists already.",
            ));
        }
        let groups = new_interface_groups(config, &group_ids)?;
        created = fresh_id(IdKind::NetworkInterface, &name, |id| {
            config.instances.iter().any(|instance| instance.id == id)
        });
        Ok(vec![Change::CreateInterface(NewInterface {
            id: created.clone(),
            name: name.clone(),
            interface: interface.clone(),
            addresses: addresses.clone(),
            groups,
            source_dest_check: true,
            tags: tags.clone(),
        })])
    })?;
    let config = context.store.read()?;
    let account = context.account().to_string();
    let instance = config
        .instances
        .iter()
        .find(|instance| instance.id == created)
        .ok_or_else(|| ApiError::interface_not_found(&created))?;
    Ok(context.respond("CreateNetworkInterface", |xml| {
        xml.element("networkInterface", |xml| {
            write_interface(xml, &config, &account, instance);
        });
    }))
}

pub fn delete(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    context.may_write(params)?;
    context.store.transact(&mut |config| {
        if !config.instances.iter().any(|instance| instance.id == id) {
            return Err(ApiError::interface_not_found(&id));
        }
        Ok(vec![Change::DeleteInterface { id: id.clone() }])
    })?;
    Ok(context.respond("DeleteNetworkInterface", |xml| xml.text("return", true)))
}
