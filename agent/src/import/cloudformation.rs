//! `sgwall import cloudformation TEMPLATE`: a CloudFormation template (YAML or JSON) to a native
//! config. Like the Terraform importer, it builds the AWS CLI's shapes (`aws::schema`) and hands
//! them to the AWS importer's conversion, writing and validation.
//!
//! Read: `AWS::EC2::SecurityGroup` (inline `SecurityGroupIngress`/`SecurityGroupEgress`),
//! `AWS::EC2::SecurityGroupIngress`, `AWS::EC2::SecurityGroupEgress`, `AWS::EC2::NetworkAcl`,
//! `AWS::EC2::NetworkAclEntry`, `AWS::EC2::SubnetNetworkAclAssociation`, `AWS::EC2::Subnet`
//! and `AWS::EC2::PrefixList`. Intrinsics, short (`!Ref`) or long (`Ref:`, `Fn::GetAtt`):
//! `Ref` of a parameter is its `Default`, `Ref` of a resource and `Fn::GetAtt` of its id
//! attribute (`GroupId`, `PrefixListId`, `Id`) stand for that resource, and `Fn::Sub`
//! substitutes both. Anything else (a parameter without a default, a pseudo parameter,
//! `Fn::ImportValue`, `Fn::If`, ...) is an error naming the resource and property: nothing is
//! guessed.
//!
//! Egress: EC2 gives a group without egress rules its default one; the template cannot say
//! whether the VPC has IPv6, so only the IPv4 half (all protocols to 0.0.0.0/0) is assumed, the
//! narrower choice. A group with any egress rule, inline or as a resource, has exactly those.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value};

use crate::import::aws::{
    self, AwsImport, ImportError,
    network::NetworkInputs,
    schema::{
        AwsAclAssociation, AwsAclEntry, AwsIcmpTypeCode, AwsIpv6CidrAssociation,
        AwsManagedPrefixList, AwsNetworkAcl, AwsPermission, AwsPortRange, AwsPrefixListEntry,
        AwsSecurityGroup, AwsSubnet, AwsTag, DescribeManagedPrefixLists, DescribeNetworkAcls,
        DescribeSecurityGroups, DescribeSubnets, GetManagedPrefixListEntries, Peers, cli_protocol,
    },
    write::Sources,
};

#[derive(Debug, thiserror::Error)]
pub enum CloudFormationError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: neither JSON nor YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{}: a CloudFormation template has a `Resources` mapping", path.display())]
    NoResources { path: PathBuf },
    #[error("resource {resource}, property {property}: {problem}")]
    Property {
        resource: String,
        property: String,
        problem: String,
    },
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// Reads the template at `path` and imports it.
pub fn import_file(path: &Path, strict: bool) -> Result<AwsImport, CloudFormationError> {
    let text = std::fs::read_to_string(path).map_err(|source| CloudFormationError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(import_text(&text, path)?.strict(strict)?)
}

/// Imports a template's text (JSON is YAML too), read from `path` (named in messages).
pub fn import_text(text: &str, path: &Path) -> Result<AwsImport, CloudFormationError> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|source| CloudFormationError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
    let template = long_form(yaml);
    let resources =
        template["Resources"]
            .as_object()
            .ok_or_else(|| CloudFormationError::NoResources {
                path: path.to_path_buf(),
            })?;
    let template = Template {
        parameters: template["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        resources,
    };
    let (groups, network) = template.convert()?;
    let sources = Sources {
        tool: "cloudformation",
        files: vec![("template", path.display().to_string())],
    };
    Ok(aws::import(&groups, None, &network, &[], &sources)?)
}

/// YAML to JSON values, short intrinsics in their long form: `!Ref X` is `{"Ref": X}`,
/// `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, any other `!Name V` is `{"Fn::Name": V}`.
fn long_form(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(flag) => Value::Bool(flag),
        Y::Number(number) => serde_json::to_value(&number).unwrap_or(Value::Null),
        Y::String(text) => Value::String(text),
        Y::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect()),
        Y::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        Y::String(text) => text,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, long_form(value))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let value = long_form(tagged.value);
            let (key, value) = match (name, value) {
                ("Ref", value) => ("Ref".to_string(), value),
                ("GetAtt", Value::String(text)) => (
                    "Fn::GetAtt".to_string(),
                    match text.split_once('.') {
                        Some((resource, attribute)) => serde_json::json!([resource, attribute]),
                        None => Value::String(text),
                    },
                ),
                (name, value) => (format!("Fn::{name}"), value),
            };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}

struct Template<'a> {
    parameters: Map<String, Value>,
    resources: &'a Map<String, Value>,
}

/// Names one property of one resource, for errors.
struct At<'a> {
    resource: &'a str,
    property: String,
}

impl At<'_> {
    fn error(&self, problem: impl Into<String>) -> CloudFormationError {
        CloudFormationError::Property {
            resource: self.resource.to_string(),
            property: self.property.clone(),
            problem: problem.into(),
        }
    }

    fn at(&self, property: &str) -> At<'_> {
        At {
            resource: self.resource,
            property: if self.property.is_empty() {
                property.to_string()
            } else {
                format!("{}.{property}", self.property)
            },
        }
    }
}

/// The attributes of each resource type that name the resource itself (what `Ref` gives).
const ID_ATTRIBUTES: &[&str] = &["GroupId", "PrefixListId", "Id", "SubnetId", "NetworkAclId"];

impl Template<'_> {
    fn of_type<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = (&'s str, &'s Value)> + 's {
        self.resources
            .iter()
            .filter(move |(_, resource)| resource["Type"] == kind)
            .map(|(name, resource)| (name.as_str(), &resource["Properties"]))
    }

    /// A property's value with every intrinsic resolved; `Null` when absent.
    fn resolve(&self, value: &Value, at: &At) -> Result<Value, CloudFormationError> {
        let Value::Object(object) = value else {
            return match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.resolve(item, &at.at(&index.to_string())))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array),
                other => Ok(other.clone()),
            };
        };
        if object.len() == 1
            && let Some((function, argument)) = object.iter().next()
            && (function == "Ref" || function.starts_with("Fn::"))
        {
            return self.intrinsic(function, argument, at);
        }
        object
            .iter()
            .map(|(key, item)| Ok((key.clone(), self.resolve(item, &at.at(key))?)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object)
    }

    fn intrinsic(
        &self,
        function: &str,
        argument: &Value,
        at: &At,
    ) -> Result<Value, CloudFormationError> {
        match function {
            "Ref" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| at.error("Ref takes a name"))?;
                self.reference(name, at).map(Value::String)
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Value::Array(parts) => (
                        parts.first().and_then(Value::as_str),
                        parts.get(1).and_then(Value::as_str),
                    ),
                    Value::String(text) => match text.split_once('.') {
                        Some((resource, attribute)) => (Some(resource), Some(attribute)),
                        None => (Some(text.as_str()), None),
                    },
                    _ => (None, None),
                };
                let (Some(resource), Some(attribute)) = (resource, attribute) else {
                    return Err(at.error("Fn::GetAtt takes [resource, attribute]"));
                };
                if !ID_ATTRIBUTES.contains(&attribute) || !self.resources.contains_key(resource) {
                    return Err(at.error(format!(
                        "Fn::GetAtt {resource}.{attribute} cannot be resolved inside the template"
                    )));
                }
                Ok(Value::String(resource.to_string()))
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Value::String(text) => (text.as_str(), None),
                    Value::Array(parts) => (
                        parts
                            .first()
                            .and_then(Value::as_str)
                            .ok_or_else(|| at.error("Fn::Sub takes a string"))?,
                        parts.get(1).and_then(Value::as_object),
                    ),
                    _ => return Err(at.error("Fn::Sub takes a string")),
                };
                self.substitute(text, variables, at).map(Value::String)
            }
            other => Err(at.error(format!("{other} cannot be resolved inside the template"))),
        }
    }

    /// `Ref NAME`: a parameter's default, or the resource it names.
    fn reference(&self, name: &str, at: &At) -> Result<String, CloudFormationError> {
        if let Some(parameter) = self.parameters.get(name) {
            return match &parameter["Default"] {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                Value::Array(items) => Ok(items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map_or_else(|| item.to_string(), str::to_string)
                    })
                    .collect::<Vec<_>>()
                    .join(",")),
                _ => Err(at.error(format!(
                    "parameter {name} has no Default, so its value is not in the template"
                ))),
            };
        }
        if self.resources.contains_key(name) {
            return Ok(name.to_string());
        }
        Err(at.error(format!(
            "Ref {name}: neither a parameter nor a resource of the template"
        )))
    }

    fn substitute(
        &self,
        text: &str,
        variables: Option<&Map<String, Value>>,
        at: &At,
    ) -> Result<String, CloudFormationError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` is a literal `${Literal}`.
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| at.error("Fn::Sub: an unclosed ${"))?;
            let name = &after[..end];
            let value = match variables.and_then(|v| v.get(name)) {
                Some(value) => match self.resolve(value, at)? {
                    Value::String(text) => text,
                    other => other.to_string(),
                },
                None => match name.split_once('.') {
                    Some((resource, attribute)) => {
                        let get = serde_json::json!([resource, attribute]);
                        match self.intrinsic("Fn::GetAtt", &get, at)? {
                            Value::String(text) => text,
                            other => other.to_string(),
                        }
                    }
                    None => self.reference(name, at)?,
                },
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn property(
        &self,
        resource: &str,
        properties: &Value,
        name: &str,
    ) -> Result<Value, CloudFormationError> {
        let at = At {
            resource,
            property: name.to_string(),
        };
        self.resolve(&properties[name], &at)
    }

    fn convert(&self) -> Result<(DescribeSecurityGroups, NetworkInputs), CloudFormationError> {
        let mut groups = Vec::new();
        let mut explicit_egress: Vec<bool> = Vec::new();
        for (name, properties) in self.of_type("AWS::EC2::SecurityGroup") {
            let mut ingress = Vec::new();
            for (index, rule) in self
                .property(name, properties, "SecurityGroupIngress")?
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = At {
                    resource: name,
                    property: format!("SecurityGroupIngress.{index}"),
                };
                ingress.push(permission(rule, false, &at)?);
            }
            let mut egress = Vec::new();
            for (index, rule) in self
                .property(name, properties, "SecurityGroupEgress")?
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = At {
                    resource: name,
                    property: format!("SecurityGroupEgress.{index}"),
                };
                egress.push(permission(rule, true, &at)?);
            }
            explicit_egress.push(!egress.is_empty());
            groups.push(AwsSecurityGroup {
                group_id: name.to_string(),
                group_name: string(&self.property(name, properties, "GroupName")?)
                    .unwrap_or_else(|| name.to_string()),
                description: string(&self.property(name, properties, "GroupDescription")?)
                    .unwrap_or_default(),
                vpc_id: string(&self.property(name, properties, "VpcId")?),
                ip_permissions: ingress,
                ip_permissions_egress: egress,
            });
        }
        for (kind, egress) in [
            ("AWS::EC2::SecurityGroupIngress", false),
            ("AWS::EC2::SecurityGroupEgress", true),
        ] {
            for (name, properties) in self.of_type(kind) {
                let at = At {
                    resource: name,
                    property: String::new(),
                };
                let rule = self.resolve(properties, &at)?;
                let group_id =
                    string(&rule["GroupId"]).ok_or_else(|| at.at("GroupId").error("is missing"))?;
                let index = groups
                    .iter()
                    .position(|group| group.group_id == group_id)
                    .ok_or_else(|| {
                        at.at("GroupId").error(format!(
                            "{group_id} is not an AWS::EC2::SecurityGroup of the template"
                        ))
                    })?;
                let permission = permission(&rule, egress, &at)?;
                if egress {
                    groups[index].ip_permissions_egress.push(permission);
                    explicit_egress[index] = true;
                } else {
                    groups[index].ip_permissions.push(permission);
                }
            }
        }
        for (group, explicit) in groups.iter_mut().zip(explicit_egress) {
            if !explicit {
                group.ip_permissions_egress.push(default_ipv4_egress());
            }
        }
        Ok((
            DescribeSecurityGroups {
                security_groups: groups,
            },
            self.network()?,
        ))
    }

    fn network(&self) -> Result<NetworkInputs, CloudFormationError> {
        let mut lists = Vec::new();
        let mut entries = Vec::new();
        for (name, properties) in self.of_type("AWS::EC2::PrefixList") {
            let at = At {
                resource: name,
                property: String::new(),
            };
            let list = self.resolve(properties, &at)?;
            lists.push(AwsManagedPrefixList {
                prefix_list_id: name.to_string(),
                prefix_list_name: string(&list["PrefixListName"])
                    .unwrap_or_else(|| name.to_string()),
                address_family: string(&list["AddressFamily"])
                    .ok_or_else(|| at.at("AddressFamily").error("is missing"))?,
                max_entries: integer(&list["MaxEntries"], &at.at("MaxEntries"))?,
            });
            let list_entries = list["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|entry| {
                    Some(AwsPrefixListEntry {
                        cidr: string(&entry["Cidr"])?,
                        description: string(&entry["Description"]),
                    })
                })
                .collect();
            entries.push((
                name.to_string(),
                GetManagedPrefixListEntries {
                    entries: list_entries,
                },
            ));
        }

        let mut acls: BTreeMap<String, AwsNetworkAcl> = BTreeMap::new();
        for (name, properties) in self.of_type("AWS::EC2::NetworkAcl") {
            let at = At {
                resource: name,
                property: String::new(),
            };
            let acl = self.resolve(properties, &at)?;
            let tags = acl["Tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|tag| {
                    Some(AwsTag {
                        key: string(&tag["Key"])?,
                        value: string(&tag["Value"])?,
                    })
                })
                .collect();
            acls.insert(
                name.to_string(),
                AwsNetworkAcl {
                    network_acl_id: name.to_string(),
                    vpc_id: string(&acl["VpcId"]),
                    is_default: false,
                    associations: Vec::new(),
                    entries: Vec::new(),
                    tags,
                },
            );
        }
        for (name, properties) in self.of_type("AWS::EC2::NetworkAclEntry") {
            let at = At {
                resource: name,
                property: String::new(),
            };
            let entry = self.resolve(properties, &at)?;
            let acl_id = string(&entry["NetworkAclId"])
                .ok_or_else(|| at.at("NetworkAclId").error("is missing"))?;
            let protocol = integer(&entry["Protocol"], &at.at("Protocol"))?
                .ok_or_else(|| at.at("Protocol").error("is missing"))?;
            let range = &entry["PortRange"];
            let icmp = &entry["Icmp"];
            let native = AwsAclEntry {
                cidr_block: string(&entry["CidrBlock"]),
                ipv6_cidr_block: string(&entry["Ipv6CidrBlock"]),
                egress: boolean(&entry["Egress"]),
                protocol: protocol.to_string(),
                rule_action: string(&entry["RuleAction"]).unwrap_or_default(),
                rule_number: integer(&entry["RuleNumber"], &at.at("RuleNumber"))?
                    .ok_or_else(|| at.at("RuleNumber").error("is missing"))?,
                port_range: match (
                    integer(&range["From"], &at.at("PortRange.From"))?,
                    integer(&range["To"], &at.at("PortRange.To"))?,
                ) {
                    (Some(from), Some(to)) => Some(AwsPortRange { from, to }),
                    _ => None,
                },
                icmp_type_code: (!icmp.is_null())
                    .then(|| {
                        Ok::<_, CloudFormationError>(AwsIcmpTypeCode {
                            code: integer(&icmp["Code"], &at.at("Icmp.Code"))?,
                            r#type: integer(&icmp["Type"], &at.at("Icmp.Type"))?,
                        })
                    })
                    .transpose()?,
            };
            acls.get_mut(&acl_id)
                .ok_or_else(|| {
                    at.at("NetworkAclId").error(format!(
                        "{acl_id} is not an AWS::EC2::NetworkAcl of the template"
                    ))
                })?
                .entries
                .push(native);
        }
        for (name, properties) in self.of_type("AWS::EC2::SubnetNetworkAclAssociation") {
            let at = At {
                resource: name,
                property: String::new(),
            };
            let association = self.resolve(properties, &at)?;
            let acl_id = string(&association["NetworkAclId"])
                .ok_or_else(|| at.at("NetworkAclId").error("is missing"))?;
            let subnet_id = string(&association["SubnetId"])
                .ok_or_else(|| at.at("SubnetId").error("is missing"))?;
            acls.get_mut(&acl_id)
                .ok_or_else(|| {
                    at.at("NetworkAclId").error(format!(
                        "{acl_id} is not an AWS::EC2::NetworkAcl of the template"
                    ))
                })?
                .associations
                .push(AwsAclAssociation { subnet_id });
        }
        let mut subnets = Vec::new();
        for (name, properties) in self.of_type("AWS::EC2::Subnet") {
            let at = At {
                resource: name,
                property: String::new(),
            };
            let subnet = self.resolve(properties, &at)?;
            subnets.push(AwsSubnet {
                subnet_id: name.to_string(),
                vpc_id: string(&subnet["VpcId"]),
                cidr_block: string(&subnet["CidrBlock"]),
                ipv6_cidr_block_association_set: string(&subnet["Ipv6CidrBlock"])
                    .into_iter()
                    .map(|ipv6_cidr_block| AwsIpv6CidrAssociation { ipv6_cidr_block })
                    .collect(),
                tags: Vec::new(),
            });
        }
        let network_acls: Vec<AwsNetworkAcl> = acls.into_values().collect();
        Ok(NetworkInputs {
            prefix_lists: (!lists.is_empty()).then_some(DescribeManagedPrefixLists {
                prefix_lists: lists,
            }),
            prefix_list_entries: entries,
            network_acls: (!network_acls.is_empty())
                .then_some(DescribeNetworkAcls { network_acls }),
            subnets: (!subnets.is_empty()).then_some(DescribeSubnets { subnets }),
        })
    }
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn boolean(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// CloudFormation takes numbers as numbers or as strings (`"80"`).
fn integer(value: &Value, at: &At) -> Result<Option<i64>, CloudFormationError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| at.error(format!("{number} is not an integer"))),
        Value::String(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| at.error(format!("\"{text}\" is not an integer"))),
        other => Err(at.error(format!("{other} is not an integer"))),
    }
}

/// EC2's default egress rule, its IPv4 half (see the module comment).
fn default_ipv4_egress() -> AwsPermission {
    let peers = Peers {
        ipv4: vec!["0.0.0.0/0".to_string()],
        ..Peers::default()
    };
    AwsPermission::new("-1".to_string(), None, None, peers)
}

/// An inline rule or a rule resource, resolved: `Source…` peers inbound, `Destination…`
/// outbound.
fn permission(rule: &Value, egress: bool, at: &At) -> Result<AwsPermission, CloudFormationError> {
    let (group_key, list_key) = if egress {
        ("DestinationSecurityGroupId", "DestinationPrefixListId")
    } else {
        ("SourceSecurityGroupId", "SourcePrefixListId")
    };
    let protocol =
        string(&rule["IpProtocol"]).ok_or_else(|| at.at("IpProtocol").error("is missing"))?;
    let peers = Peers {
        ipv4: string(&rule["CidrIp"]).into_iter().collect(),
        ipv6: string(&rule["CidrIpv6"]).into_iter().collect(),
        groups: string(&rule[group_key]).into_iter().collect(),
        prefix_lists: string(&rule[list_key]).into_iter().collect(),
        description: string(&rule["Description"]),
    };
    Ok(AwsPermission::new(
        cli_protocol(&protocol),
        integer(&rule["FromPort"], &at.at("FromPort"))?,
        integer(&rule["ToPort"], &at.at("ToPort"))?,
        peers,
    ))
}

#[cfg(test)]
mod tests;
