//! The Query protocol's parameters: `Name=value` pairs from the form body (and the URL query),
//! lists flattened as `Name.1`, `Name.2`, structures as `Name.1.Member`. Typed accessors name
//! the parameter in every error; what an action never read is reported as unknown, so a
//! misspelt or invented parameter is refused rather than ignored.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use super::error::ApiError;

/// At most this many parameters per request (the largest real requests, an Authorize with
/// many permissions, have a few hundred).
pub const MAX_PARAMETERS: usize = 2000;
/// List indices are 1-based and small; a larger one is garbage.
const MAX_INDEX: u32 = 1000;

/// Parameters that belong to the protocol, not to an action.
const PROTOCOL_PARAMETERS: &[&str] = &["Action", "Version"];

#[derive(Debug)]
pub struct Params {
    values: BTreeMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text, the URL's query first. A name given
    /// twice is refused (AWS's SDKs never send one twice; two values would be ambiguous).
    pub fn parse(query: &str, body: &[u8]) -> Result<Self, ApiError> {
        let mut values = BTreeMap::new();
        let pairs = form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body));
        for (name, value) in pairs {
            if values.len() >= MAX_PARAMETERS {
                return Err(ApiError::too_many_parameters(MAX_PARAMETERS));
            }
            if name.is_empty() {
                continue;
            }
            if values.insert(name.to_string(), value.to_string()).is_some() {
                return Err(ApiError::invalid_parameter(format!(
                    "The parameter {name} is given more than once"
                )));
            }
        }
        Ok(Self {
            values,
            read: RefCell::new(BTreeSet::new()),
        })
    }

    /// `Action`, which every request needs.
    pub fn action(&self) -> Result<String, ApiError> {
        self.required("Action")
    }

    pub fn version(&self) -> Option<String> {
        self.optional("Version")
    }

    fn get(&self, name: &str) -> Option<&str> {
        let value = self.values.get(name)?;
        self.read.borrow_mut().insert(name.to_string());
        Some(value)
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(ApiError::missing_parameter(name)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|value| match value.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid_parameter_value(
                    name,
                    value,
                    "Expected true or false.",
                )),
            })
            .transpose()
    }

    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|value| {
                value.parse::<i64>().map_err(|_| {
                    ApiError::invalid_parameter_value(name, value, "Expected an integer.")
                })
            })
            .transpose()
    }

    /// `DryRun`, which every action takes.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        Ok(self.bool("DryRun")?.unwrap_or(false))
    }

    /// The indices `N` present under `prefix.N` (with or without members below), in order.
    pub fn indices(&self, prefix: &str) -> Result<Vec<u32>, ApiError> {
        let start = format!("{prefix}.");
        let mut indices = BTreeSet::new();
        for name in self.values.range(start.clone()..) {
            let Some(rest) = name.0.strip_prefix(&start) else {
                break;
            };
            let index = rest.split('.').next().unwrap_or_default();
            match index.parse::<u32>() {
                Ok(n) if (1..=MAX_INDEX).contains(&n) => {
                    indices.insert(n);
                }
                _ => {
                    return Err(ApiError::invalid_parameter(format!(
                        "The parameter {} has an invalid list index ({index})",
                        name.0
                    )));
                }
            }
        }
        Ok(indices.into_iter().collect())
    }

    /// The values of the flattened list `prefix.1`, `prefix.2`, …
    pub fn strings(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        self.indices(prefix)?
            .into_iter()
            .map(|n| self.required(&format!("{prefix}.{n}")))
            .collect()
    }

    /// Every structure `prefix.N` of a list, as the prefix of its members.
    pub fn structures(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .indices(prefix)?
            .into_iter()
            .map(|n| format!("{prefix}.{n}"))
            .collect())
    }

    /// Fails with `UnknownParameter` naming the first parameter nothing read.
    pub fn check_all_read(&self) -> Result<(), ApiError> {
        let read = self.read.borrow();
        match self
            .values
            .keys()
            .find(|name| !read.contains(*name) && !PROTOCOL_PARAMETERS.contains(&name.as_str()))
        {
            Some(name) => Err(ApiError::unknown_parameter(name)),
            None => Ok(()),
        }
    }
}

/// The Query protocol's `Filter.N.Name` / `Filter.N.Value.M`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

pub fn filters(params: &Params) -> Result<Vec<Filter>, ApiError> {
    params
        .structures("Filter")?
        .into_iter()
        .map(|prefix| {
            Ok(Filter {
                name: params.required(&format!("{prefix}.Name"))?,
                values: params.strings(&format!("{prefix}.Value"))?,
            })
        })
        .collect()
}

/// `Tag.N.Key` / `Tag.N.Value` under `prefix` (a tag without a value has an empty one).
pub fn tags(params: &Params, prefix: &str) -> Result<Vec<(String, Option<String>)>, ApiError> {
    params
        .structures(prefix)?
        .into_iter()
        .map(|tag| {
            Ok((
                params.required(&format!("{tag}.Key"))?,
                params.optional(&format!("{tag}.Value")),
            ))
        })
        .collect()
}

/// The tags of `TagSpecification.N` whose `ResourceType` is `resource_type`; a specification
/// for another type is refused, as AWS does.
pub fn tag_specifications(
    params: &Params,
    resource_type: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut all = Vec::new();
    for spec in params.structures("TagSpecification")? {
        let name = format!("{spec}.ResourceType");
        let given = params.required(&name)?;
        if given != resource_type {
            return Err(ApiError::invalid_parameter_value(
                &name,
                &given,
                format!("Tags can only be applied to a {resource_type} here."),
            ));
        }
        for (key, value) in tags(params, &format!("{spec}.Tag"))? {
            all.push((key, value.unwrap_or_default()));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> Params {
        Params::parse("", body.as_bytes()).expect("parses")
    }

    #[test]
    fn flattened_lists_and_structures_are_read_in_index_order() {
        let p = params(
            "Action=X&GroupId.2=sg-b&GroupId.1=sg-a&GroupId.10=sg-c\
             &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpProtocol=tcp",
        );
        assert_eq!(
            p.strings("GroupId").expect("list"),
            ["sg-a", "sg-b", "sg-c"]
        );
        assert_eq!(
            p.structures("IpPermissions").expect("list"),
            ["IpPermissions.1"]
        );
        assert_eq!(
            p.strings("IpPermissions.1.IpRanges.1.CidrIp").ok(),
            Some(vec![])
        );
        assert_eq!(
            p.optional("IpPermissions.1.IpRanges.1.CidrIp").as_deref(),
            Some("10.0.0.0/8")
        );
        // GroupIdX is not part of the GroupId list.
        assert!(
            params("GroupIdX=1")
                .strings("GroupId")
                .expect("list")
                .is_empty()
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let p = params("Action=X&FromPort=abc&DryRun=maybe&GroupId.0=sg-1");
        assert_eq!(
            p.integer("FromPort").expect_err("not a number").message,
            "Value (abc) for parameter FromPort is invalid. Expected an integer."
        );
        assert_eq!(
            p.bool("DryRun").expect_err("not a bool").code,
            "InvalidParameterValue"
        );
        let error = p.strings("GroupId").expect_err("index 0");
        assert!(error.message.contains("GroupId.0"), "{error}");
        assert_eq!(
            p.required("GroupName").expect_err("missing"),
            ApiError::missing_parameter("GroupName")
        );
        assert_eq!(
            params("Action=X&Version=1&Colour=blue")
                .check_all_read()
                .expect_err("unknown")
                .message,
            "The parameter Colour is not recognized"
        );
    }

    #[test]
    fn repeated_and_excess_parameters_are_refused() {
        assert!(Params::parse("", b"A=1&A=2").is_err());
        let many: Vec<String> = (0..=MAX_PARAMETERS).map(|n| format!("P{n}=1")).collect();
        assert_eq!(
            Params::parse("", many.join("&").as_bytes())
                .expect_err("too many")
                .code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn filters_and_tag_specifications() {
        let p = params(
            "Filter.1.Name=group-id&Filter.1.Value.1=sg-1&Filter.1.Value.2=sg-2\
             &TagSpecification.1.ResourceType=security-group&TagSpecification.1.Tag.1.Key=Name\
             &TagSpecification.1.Tag.1.Value=web",
        );
        assert_eq!(
            filters(&p).expect("filters"),
            [Filter {
                name: "group-id".into(),
                values: vec!["sg-1".into(), "sg-2".into()]
            }]
        );
        assert_eq!(
            tag_specifications(&p, "security-group").expect("tags"),
            [("Name".to_string(), "web".to_string())]
        );
        assert_eq!(
            tag_specifications(&p, "network-interface")
                .expect_err("wrong type")
                .code,
            "InvalidParameterValue"
        );
        p.check_all_read().expect("all read");
    }
}
