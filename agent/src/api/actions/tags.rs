//! CreateTags, DeleteTags and DescribeTags for groups, rules and interfaces. Tags live in the
//! config beside the object (`tags = { … }`), so they survive restarts and show in the file.

use super::{Context, any_matches, page, permissions::all_rules, select, unknown_filter};
use crate::{
    api::{
        error::ApiError,
        query::{self, Params},
        store::Change,
    },
    ids::IdKind,
    model::{Config, Tags},
};

/// AWS's limit on tags per resource.
const MAX_TAGS: usize = 50;

/// The current tags of the object `id` and its resource type, or why it has none.
fn tags_of(config: &Config, id: &str) -> Result<(Tags, &'static str), ApiError> {
    let not_found = || match IdKind::of(id) {
        Some(IdKind::SecurityGroup) => ApiError::group_not_found(id),
        Some(IdKind::SecurityGroupRule) => ApiError::rule_id_not_found(id),
        Some(IdKind::NetworkInterface) => ApiError::interface_not_found(id),
        _ => ApiError::invalid_id(id),
    };
    if let Some(group) = config.group_by_id(id) {
        return Ok((group.tags.clone(), "security-group"));
    }
    if let Some(instance) = config.instances.iter().find(|instance| instance.id == id) {
        return Ok((instance.tags.clone(), "network-interface"));
    }
    if let Some(rule) = all_rules(config).into_iter().find(|rule| rule.id == id) {
        return Ok((rule.tags().clone(), "security-group-rule"));
    }
    Err(not_found())
}

fn resource_ids(params: &Params) -> Result<Vec<String>, ApiError> {
    let ids = params.strings("ResourceId")?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("ResourceId.1"));
    }
    Ok(ids)
}

pub fn create(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = resource_ids(params)?;
    let tags = query::tags(params, "Tag")?;
    context.may_write(params)?;
    if tags.is_empty() {
        return Err(ApiError::missing_parameter("Tag.1.Key"));
    }
    for (key, _) in &tags {
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_parameter_value(
                "Tag.N.Key",
                key,
                "Tag keys starting with 'aws:' are reserved for internal use.",
            ));
        }
    }
    context.store.transact(&mut |config| {
        let mut changes = Vec::new();
        for id in &ids {
            let mut merged = tags_of(config, id)?.0;
            for (key, value) in &tags {
                merged.insert(key.clone(), value.clone().unwrap_or_default());
            }
            if merged.len() > MAX_TAGS {
                return Err(ApiError::invalid_parameter(format!(
                    "{id} would have more than {MAX_TAGS} tags."
                )));
            }
            changes.push(Change::SetTags {
                id: id.clone(),
                tags: merged,
            });
        }
        Ok(changes)
    })?;
    Ok(context.respond("CreateTags", |xml| xml.text("return", true)))
}

pub fn delete(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let ids = resource_ids(params)?;
    let tags = query::tags(params, "Tag")?;
    context.may_write(params)?;
    context.store.transact(&mut |config| {
        let mut changes = Vec::new();
        for id in &ids {
            let mut kept = tags_of(config, id)?.0;
            if tags.is_empty() {
                kept.clear();
            }
            for (key, value) in &tags {
                // With a value, only a tag of that value goes (AWS's rule).
                if value
                    .as_ref()
                    .is_none_or(|value| kept.get(key) == Some(value))
                {
                    kept.remove(key);
                }
            }
            changes.push(Change::SetTags {
                id: id.clone(),
                tags: kept,
            });
        }
        Ok(changes)
    })?;
    Ok(context.respond("DeleteTags", |xml| xml.text("return", true)))
}

struct TagRow {
    id: String,
    resource_type: &'static str,
    key: String,
    value: String,
}

pub fn describe(context: &Context<'_>, params: &Params) -> Result<Vec<u8>, ApiError> {
    let filters = query::filters(params)?;
    let config = context.store.read()?;
    let mut rows = Vec::new();
    let mut add = |id: &str, resource_type: &'static str, tags: &Tags| {
        for (key, value) in tags {
            rows.push(TagRow {
                id: id.to_string(),
                resource_type,
                key: key.clone(),
                value: value.clone(),
            });
        }
    };
    for group in &config.security_groups {
        add(&group.id, "security-group", &group.tags);
    }
    for rule in all_rules(&config) {
        add(rule.id, "security-group-rule", rule.tags());
    }
    for instance in &config.instances {
        add(&instance.id, "network-interface", &instance.tags);
    }
    let selected = select(&filters, rows, |row, filter| {
        Ok(match filter.name.as_str() {
            "resource-id" => any_matches(filter, [row.id.as_str()]),
            "resource-type" => any_matches(filter, [row.resource_type]),
            "key" => any_matches(filter, [row.key.as_str()]),
            "value" => any_matches(filter, [row.value.as_str()]),
            _ => return Err(unknown_filter(filter)),
        })
    })?;
    let (selected, next) = page(params, selected, (5, 1000))?;
    context.may_read(params)?;
    Ok(context.respond("DescribeTags", |xml| {
        xml.items("tagSet", selected, |xml, row| {
            xml.text("resourceId", &row.id);
            xml.text("resourceType", row.resource_type);
            xml.text("key", &row.key);
            xml.text("value", &row.value);
        });
        xml.optional("nextToken", next);
    }))
}
