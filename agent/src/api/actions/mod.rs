//! The actions, one file per kind of object: `groups` (security groups), `rules`
//! (authorize, revoke, describe and modify rules), `interfaces` (ENIs and the VPC), `tags`.
//! `permissions` turns the API's rule shapes into the model's and back.
//!
//! Every action reads all its parameters before it acts (so an unknown parameter is refused
//! and nothing changes), answers `DryRun` after its parameters parsed, and makes every change
//! inside one [`PolicyStore::transact`], deciding from the policy that transaction read.

pub mod groups;
pub mod interfaces;
pub mod permissions;
pub mod rules;
pub mod tags;

use super::{
    error::ApiError,
    query::{Filter, Params},
    sigv4::Caller,
    store::PolicyStore,
    xml,
};
use crate::model::Tags;

/// What an action runs with.
pub struct Context<'a> {
    pub store: &'a dyn PolicyStore,
    pub caller: &'a Caller,
    pub request_id: &'a str,
}

impl Context<'_> {
    pub fn account(&self) -> &str {
        &self.caller.principal.account
    }

    pub fn arn(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{}:{kind}/{id}",
            self.caller.region,
            self.account()
        )
    }

    /// An EC2 response to this request.
    pub fn respond(&self, action: &str, body: impl FnOnce(&mut xml::Xml)) -> Vec<u8> {
        xml::ec2_response(action, self.request_id, body)
    }

    /// The end of a write action's parsing: unknown parameters refused, then `DryRun` and
    /// read-only callers answered as AWS does. `Ok` means go ahead.
    pub fn may_write(&self, params: &Params) -> Result<(), ApiError> {
        let dry_run = params.dry_run()?;
        params.check_all_read()?;
        if self.caller.principal.read_only {
            return Err(ApiError::unauthorized_operation());
        }
        if dry_run {
            return Err(ApiError::dry_run_operation());
        }
        Ok(())
    }

    /// The same for a describe action, which every caller may run.
    pub fn may_read(&self, params: &Params) -> Result<(), ApiError> {
        let dry_run = params.dry_run()?;
        params.check_all_read()?;
        if dry_run {
            return Err(ApiError::dry_run_operation());
        }
        Ok(())
    }
}

/// An EC2 action by name.
pub fn ec2(context: &Context<'_>, action: &str, params: &Params) -> Result<Vec<u8>, ApiError> {
    match action {
        "CreateSecurityGroup" => groups::create(context, params),
        "DeleteSecurityGroup" => groups::delete(context, params),
        "DescribeSecurityGroups" => groups::describe(context, params),
        "AuthorizeSecurityGroupIngress" => rules::authorize(context, params, action),
        "AuthorizeSecurityGroupEgress" => rules::authorize(context, params, action),
        "RevokeSecurityGroupIngress" => rules::revoke(context, params, action),
        "RevokeSecurityGroupEgress" => rules::revoke(context, params, action),
        "DescribeSecurityGroupRules" => rules::describe(context, params),
        "ModifySecurityGroupRules" => rules::modify(context, params),
        "DescribeNetworkInterfaces" => interfaces::describe(context, params),
        "ModifyNetworkInterfaceAttribute" => interfaces::modify_attribute(context, params),
        "CreateNetworkInterface" => interfaces::create(context, params),
        "DeleteNetworkInterface" => interfaces::delete(context, params),
        "DescribeVpcs" => interfaces::describe_vpcs(context, params),
        "CreateTags" => tags::create(context, params),
        "DeleteTags" => tags::delete(context, params),
        "DescribeTags" => tags::describe(context, params),
        other => Err(ApiError::invalid_action(other)),
    }
}

/// An STS action by name: only GetCallerIdentity, which Terraform's provider asks first.
pub fn sts(context: &Context<'_>, action: &str, params: &Params) -> Result<Vec<u8>, ApiError> {
    if action != "GetCallerIdentity" {
        return Err(ApiError::invalid_action(action));
    }
    params.check_all_read()?;
    let principal = &context.caller.principal;
    Ok(xml::sts_response(action, context.request_id, |xml| {
        xml.text(
            "Arn",
            format!(
                "arn:aws:iam::{}:user/{}",
                principal.account, principal.profile
            ),
        );
        xml.text("UserId", &principal.access_key_id);
        xml.text("Account", &principal.account);
    }))
}

/// AWS filter values may hold `*` (any run) and `?` (any one character).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point: linear in practice, never
    // exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether any of a filter's values matches any of `texts`.
pub fn any_matches<'a>(filter: &Filter, texts: impl IntoIterator<Item = &'a str>) -> bool {
    let texts: Vec<&str> = texts.into_iter().collect();
    filter
        .values
        .iter()
        .any(|pattern| texts.iter().any(|text| glob_matches(pattern, text)))
}

/// The tag filters every describe action shares: `tag:KEY` (the key's value) and `tag-key`.
/// `None` when the filter is not a tag filter.
pub fn tag_filter(filter: &Filter, tags: &Tags) -> Option<bool> {
    if let Some(key) = filter.name.strip_prefix("tag:") {
        return Some(
            tags.get(key)
                .is_some_and(|value| any_matches(filter, [value.as_str()])),
        );
    }
    match filter.name.as_str() {
        "tag-key" => Some(any_matches(filter, tags.keys().map(String::as_str))),
        "tag-value" => Some(any_matches(filter, tags.values().map(String::as_str))),
        _ => None,
    }
}

/// The objects that pass every filter (`matches` judges one; its error is the answer). Every
/// filter is judged, so an unknown one is refused whatever came before it.
pub fn select<T>(
    filters: &[Filter],
    objects: impl IntoIterator<Item = T>,
    matches: impl Fn(&T, &Filter) -> Result<bool, ApiError>,
) -> Result<Vec<T>, ApiError> {
    let mut selected = Vec::new();
    for object in objects {
        let mut keep = true;
        for filter in filters {
            keep &= matches(&object, filter)?;
        }
        if keep {
            selected.push(object);
        }
    }
    Ok(selected)
}

pub fn unknown_filter(filter: &Filter) -> ApiError {
    ApiError::invalid_parameter_value("Filter.Name", &filter.name, "This filter is not supported.")
}

/// `MaxResults` / `NextToken` paging over `items`: the page and the token of the next one.
/// The token is the index of the next item (opaque to clients, stable while the policy is).
pub fn page<T>(
    params: &Params,
    items: Vec<T>,
    limits: (i64, i64),
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = params.integer("MaxResults")?;
    let token = params.optional("NextToken");
    let start = match &token {
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|start| *start <= items.len())
            .ok_or_else(|| {
                ApiError::invalid_parameter_value("NextToken", token, "The token is not valid.")
            })?,
        None => 0,
    };
    let size = match max {
        Some(max) if !(limits.0..=limits.1).contains(&max) => {
            return Err(ApiError::invalid_parameter_value(
                "MaxResults",
                &max.to_string(),
                format!("MaxResults is {} to {}.", limits.0, limits.1),
            ));
        }
        Some(max) => usize::try_from(max).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

/// Writes `<tagSet>` of a model's tags.
pub fn write_tags(xml: &mut xml::Xml, tags: &Tags) {
    xml.tag_set("tagSet", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_wildcards_match_as_aws_documents() {
        assert!(glob_matches("web*", "web-1"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a?c", "abc"));
        assert!(glob_matches("*b*", "abc"));
        assert!(!glob_matches("web", "web-1"));
        assert!(!glob_matches("a?c", "ac"));
    }
}
