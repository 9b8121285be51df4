//! `sgwall import terraform`: the JSON of `terraform show -json` (a state, or a saved plan) to a
//! native config. The resources become the AWS CLI's shapes (`aws::schema`), and from there the
//! AWS importer's conversion, writing and validation apply unchanged, so both importers agree.
//!
//! Read: `aws_security_group` (inline `ingress`/`egress`), `aws_security_group_rule`,
//! `aws_vpc_security_group_ingress_rule`, `aws_vpc_security_group_egress_rule`,
//! `aws_network_acl` (inline rules, `subnet_ids`), `aws_network_acl_rule`,
//! `aws_network_acl_association`, `aws_ec2_managed_prefix_list` (inline `entry`) and
//! `aws_subnet`. In a plan an attribute known only after apply (an id another resource refers
//! to) is resolved through the plan's `configuration`: the resource it references stands for
//! its id. What still cannot be resolved is an error naming the resource and attribute.
//!
//! Terraform removes the default egress rule AWS gives a new group, so a group whose egress is
//! empty denies everything out, as it does in AWS once Terraform has applied it.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::import::aws::{
    self, AwsImport, ImportError,
    network::NetworkInputs,
    schema::{
        AwsAclAssociation, AwsAclEntry, AwsIcmpTypeCode, AwsIpv6CidrAssociation,
        AwsManagedPrefixList, AwsNetworkAcl, AwsPermission, AwsPortRange, AwsPrefixListEntry,
        AwsSecurityGroup, AwsSubnet, DescribeManagedPrefixLists, DescribeNetworkAcls,
        DescribeSecurityGroups, DescribeSubnets, GetManagedPrefixListEntries, Peers, cli_protocol,
    },
    write::Sources,
};

#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not the JSON printed by `terraform show -json`: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{}: neither a state (`values`) nor a plan (`planned_values`) of `terraform show -json`",
        path.display()
    )]
    NoValues { path: PathBuf },
    /// Nothing is guessed: an attribute whose value is unknown and references nothing known.
    #[error(
        "{address}: `{attribute}` is not known until apply and references no resource of this \
         plan; apply first and import the state (`terraform show -json`)"
    )]
    Unresolved { address: String, attribute: String },
    #[error("{address}: `{attribute}` {problem}")]
    Attribute {
        address: String,
        attribute: String,
        problem: String,
    },
    #[error("{address}: refers to {target}, which is not a resource of this state or plan")]
    UnknownReference { address: String, target: String },
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// Reads `terraform show -json` output at `path` and imports it.
pub fn import_file(path: &Path, strict: bool) -> Result<AwsImport, TerraformError> {
    let text = std::fs::read_to_string(path).map_err(|source| TerraformError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(import_json(&text, path)?.strict(strict)?)
}

/// Imports the text of `terraform show -json`, read from `path` (named in messages).
pub fn import_json(text: &str, path: &Path) -> Result<AwsImport, TerraformError> {
    let document: Value = serde_json::from_str(text).map_err(|source| TerraformError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let root = document
        .pointer("/values/root_module")
        .or_else(|| document.pointer("/planned_values/root_module"))
        .ok_or_else(|| TerraformError::NoValues {
            path: path.to_path_buf(),
        })?;
    let mut resources = Vec::new();
    collect(root, &mut resources);
    let plan = Plan::new(&document);
    let resources = Resources::new(&resources, &plan);
    let (groups, network) = resources.convert()?;
    let sources = Sources {
        tool: "terraform",
        files: vec![("terraform show -json", path.display().to_string())],
    };
    Ok(aws::import(&groups, None, &network, &[], &sources)?)
}

/// Every managed resource of a module and its child modules, in order.
fn collect<'a>(module: &'a Value, out: &mut Vec<&'a Value>) {
    for resource in module["resources"].as_array().into_iter().flatten() {
        if resource["mode"] == "managed" {
            out.push(resource);
        }
    }
    for child in module["child_modules"].as_array().into_iter().flatten() {
        collect(child, out);
    }
}

/// What a plan says of values known only after apply: `after_unknown` per address, and the
/// configuration's references per address and attribute.
struct Plan<'a> {
    unknown: HashMap<&'a str, &'a Value>,
    /// Root module resources of the configuration, by address.
    configuration: HashMap<String, &'a Value>,
}

impl<'a> Plan<'a> {
    fn new(document: &'a Value) -> Self {
        let unknown = document["resource_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|change| {
                Some((
                    change["address"].as_str()?,
                    &change["change"]["after_unknown"],
                ))
            })
            .collect();
        let configuration = document
            .pointer("/configuration/root_module/resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|resource| Some((resource["address"].as_str()?.to_string(), resource)))
            .collect();
        Self {
            unknown,
            configuration,
        }
    }

    /// Whether `attribute` (or an element of it) is known only after apply.
    fn is_unknown(&self, address: &str, attribute: &str) -> bool {
        self.unknown
            .get(address)
            .is_some_and(|unknown| any_true(&unknown[attribute]))
    }

    /// The first attribute of the `index`-th block of `attribute` (inline rules) known only
    /// after apply, if any.
    fn unknown_in_block(&self, address: &str, attribute: &str, index: usize) -> Option<String> {
        let unknown = self.unknown.get(address)?;
        let block = unknown[attribute].get(index)?.as_object()?;
        block
            .iter()
            .find(|(_, value)| any_true(value))
            .map(|(name, _)| format!("{attribute}[{index}].{name}"))
    }

    /// Whether the configuration sets `attribute` of the resource at `address`: an unknown
    /// attribute it does not set is a computed one left empty (`None`), not a reference.
    /// `None` when the resource is not in the root module's configuration.
    fn configures(&self, address: &str, attribute: &str) -> Option<bool> {
        let resource = self.configuration.get(address)?;
        Some(!resource["expressions"][attribute].is_null())
    }

    /// The addresses `attribute` of the resource at `address` references in the configuration
    /// (`aws_security_group.web.id` → `aws_security_group.web`).
    fn references(&self, address: &str, attribute: &str) -> Vec<String> {
        let Some(resource) = self.configuration.get(address) else {
            return Vec::new();
        };
        let mut addresses: Vec<String> = resource["expressions"][attribute]["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|reference| {
                let parts: Vec<&str> = reference.split('.').collect();
                (parts.len() >= 2 && parts[0].starts_with("aws_"))
                    .then(|| format!("{}.{}", parts[0], parts[1]))
            })
            .collect();
        addresses.dedup();
        addresses
    }
}

/// The resources, with what identifies each: its `id`, or in a plan its address.
struct Resources<'a> {
    list: Vec<Resource<'a>>,
    plan: &'a Plan<'a>,
}

struct Resource<'a> {
    address: String,
    kind: String,
    label: String,
    values: &'a Value,
}

impl Resource<'_> {
    fn id(&self) -> String {
        self.values["id"]
            .as_str()
            .map_or_else(|| self.address.clone(), str::to_string)
    }
}

/// `true`, or a list or object holding one: Terraform's mark of a value unknown until apply.
fn any_true(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::Array(items) => items.iter().any(any_true),
        Value::Object(fields) => fields.values().any(any_true),
        _ => false,
    }
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

fn texts(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(text)
        .collect()
}

impl<'a> Resources<'a> {
    fn new(resources: &[&'a Value], plan: &'a Plan<'a>) -> Self {
        let list = resources
            .iter()
            .filter_map(|resource| {
                Some(Resource {
                    address: resource["address"].as_str()?.to_string(),
                    kind: resource["type"].as_str()?.to_string(),
                    label: resource["name"].as_str().unwrap_or_default().to_string(),
                    values: &resource["values"],
                })
            })
            .collect();
        Self { list, plan }
    }

    fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = &Resource<'a>> {
        self.list.iter().filter(move |r| r.kind == kind)
    }

    /// The id (or, unknown in a plan, the referenced resource's id) of an attribute naming
    /// another object; `None` when absent and not unknown.
    fn reference(
        &self,
        resource: &Resource,
        attribute: &str,
    ) -> Result<Option<String>, TerraformError> {
        if let Some(value) = text(&resource.values[attribute]) {
            return Ok(Some(value));
        }
        if !self.plan.is_unknown(&resource.address, attribute)
            || self.plan.configures(&resource.address, attribute) == Some(false)
        {
            return Ok(None);
        }
        self.resolve(resource, attribute).map(Some)
    }

    fn resolve(&self, resource: &Resource, attribute: &str) -> Result<String, TerraformError> {
        let target = self
            .plan
            .references(&resource.address, attribute)
            .into_iter()
            .next()
            .ok_or_else(|| TerraformError::Unresolved {
                address: resource.address.clone(),
                attribute: attribute.to_string(),
            })?;
        self.list
            .iter()
            .find(|r| r.address == target)
            .map(Resource::id)
            .ok_or(TerraformError::UnknownReference {
                address: resource.address.clone(),
                target,
            })
    }

    /// A list attribute naming other objects (`security_groups`, `subnet_ids`): in a plan,
    /// unknown as a whole, it is every resource it references.
    fn references(
        &self,
        resource: &Resource,
        attribute: &str,
    ) -> Result<Vec<String>, TerraformError> {
        if !self.plan.is_unknown(&resource.address, attribute)
            || self.plan.configures(&resource.address, attribute) == Some(false)
        {
            return Ok(texts(&resource.values[attribute]));
        }
        let targets = self.plan.references(&resource.address, attribute);
        if targets.is_empty() {
            return Err(TerraformError::Unresolved {
                address: resource.address.clone(),
                attribute: attribute.to_string(),
            });
        }
        targets
            .into_iter()
            .map(|target| {
                self.list
                    .iter()
                    .find(|r| r.address == target)
                    .map(Resource::id)
                    .ok_or(TerraformError::UnknownReference {
                        address: resource.address.clone(),
                        target,
                    })
            })
            .collect()
    }

    fn convert(&self) -> Result<(DescribeSecurityGroups, NetworkInputs), TerraformError> {
        let mut groups: Vec<AwsSecurityGroup> = Vec::new();
        for group in self.of_kind("aws_security_group") {
            let id = group.id();
            let mut ingress = Vec::new();
            let mut egress = Vec::new();
            for (attribute, list) in [("ingress", &mut ingress), ("egress", &mut egress)] {
                for (index, rule) in group.values[attribute]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    // An inline block's references are not resolved: its peers would be lost.
                    if let Some(attribute) =
                        self.plan.unknown_in_block(&group.address, attribute, index)
                    {
                        return Err(TerraformError::Unresolved {
                            address: group.address.clone(),
                            attribute,
                        });
                    }
                    list.push(inline_permission(group, &id, attribute, rule)?);
                }
            }
            groups.push(AwsSecurityGroup {
                group_id: id,
                group_name: text(&group.values["name"]).unwrap_or_else(|| group.label.clone()),
                description: text(&group.values["description"]).unwrap_or_default(),
                vpc_id: text(&group.values["vpc_id"]),
                ip_permissions: ingress,
                ip_permissions_egress: egress,
            });
        }
        let group_index = |groups: &[AwsSecurityGroup], rule: &Resource, id: &str| {
            groups.iter().position(|g| g.group_id == id).ok_or_else(|| {
                TerraformError::UnknownReference {
                    address: rule.address.clone(),
                    target: id.to_string(),
                }
            })
        };
        for rule in self.of_kind("aws_security_group_rule") {
            let group_id = self.required(rule, "security_group_id")?;
            let index = group_index(&groups, rule, &group_id)?;
            let permission = self.classic_rule(rule, &group_id)?;
            let group = &mut groups[index];
            match rule.values["type"].as_str() {
                Some("egress") => push_new(&mut group.ip_permissions_egress, permission),
                _ => push_new(&mut group.ip_permissions, permission),
            }
        }
        for (kind, egress) in [
            ("aws_vpc_security_group_ingress_rule", false),
            ("aws_vpc_security_group_egress_rule", true),
        ] {
            for rule in self.of_kind(kind) {
                let group_id = self.required(rule, "security_group_id")?;
                let index = group_index(&groups, rule, &group_id)?;
                let permission = self.vpc_rule(rule)?;
                let group = &mut groups[index];
                if egress {
                    push_new(&mut group.ip_permissions_egress, permission);
                } else {
                    push_new(&mut group.ip_permissions, permission);
                }
            }
        }
        let network = self.network()?;
        Ok((
            DescribeSecurityGroups {
                security_groups: groups,
            },
            network,
        ))
    }

    fn required(&self, resource: &Resource, attribute: &str) -> Result<String, TerraformError> {
        self.reference(resource, attribute)?
            .ok_or_else(|| TerraformError::Attribute {
                address: resource.address.clone(),
                attribute: attribute.to_string(),
                problem: "is missing".to_string(),
            })
    }

    /// `aws_security_group_rule`: the classic rule resource, lists of CIDRs.
    fn classic_rule(
        &self,
        rule: &Resource,
        group_id: &str,
    ) -> Result<AwsPermission, TerraformError> {
        let values = rule.values;
        let mut groups: Vec<String> = self
            .reference(rule, "source_security_group_id")?
            .into_iter()
            .collect();
        if values["self"] == Value::Bool(true) {
            groups.push(group_id.to_string());
        }
        let peers = Peers {
            ipv4: self.references(rule, "cidr_blocks")?,
            ipv6: self.references(rule, "ipv6_cidr_blocks")?,
            groups,
            prefix_lists: self.references(rule, "prefix_list_ids")?,
            description: text(&values["description"]),
        };
        Ok(AwsPermission::new(
            protocol_name(rule, &values["protocol"])?,
            values["from_port"].as_i64(),
            values["to_port"].as_i64(),
            peers,
        ))
    }

    /// `aws_vpc_security_group_{ingress,egress}_rule`: one peer per resource.
    fn vpc_rule(&self, rule: &Resource) -> Result<AwsPermission, TerraformError> {
        let values = rule.values;
        let protocol = protocol_name(rule, &values["ip_protocol"])?;
        // `-1` rules carry no ports; AWS reports them as absent.
        let ports = |name: &str| (protocol != "-1").then(|| values[name].as_i64()).flatten();
        let peers = Peers {
            ipv4: text(&values["cidr_ipv4"]).into_iter().collect(),
            ipv6: text(&values["cidr_ipv6"]).into_iter().collect(),
            groups: self
                .reference(rule, "referenced_security_group_id")?
                .into_iter()
                .collect(),
            prefix_lists: self
                .reference(rule, "prefix_list_id")?
                .into_iter()
                .collect(),
            description: text(&values["description"]),
        };
        Ok(AwsPermission::new(
            protocol.clone(),
            ports("from_port"),
            ports("to_port"),
            peers,
        ))
    }

    fn network(&self) -> Result<NetworkInputs, TerraformError> {
        let mut lists = Vec::new();
        let mut entries = Vec::new();
        for list in self.of_kind("aws_ec2_managed_prefix_list") {
            let id = list.id();
            lists.push(AwsManagedPrefixList {
                prefix_list_id: id.clone(),
                prefix_list_name: text(&list.values["name"]).unwrap_or_else(|| list.label.clone()),
                address_family: text(&list.values["address_family"])
                    .unwrap_or_else(|| "IPv4".to_string()),
                max_entries: list.values["max_entries"].as_i64(),
            });
            let list_entries = list.values["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|entry| {
                    Some(AwsPrefixListEntry {
                        cidr: text(&entry["cidr"])?,
                        description: text(&entry["description"]),
                    })
                })
                .collect();
            entries.push((
                id,
                GetManagedPrefixListEntries {
                    entries: list_entries,
                },
            ));
        }

        let mut acls: BTreeMap<String, AwsNetworkAcl> = BTreeMap::new();
        let mut order = Vec::new();
        for acl in self.of_kind("aws_network_acl") {
            let id = acl.id();
            let mut acl_entries = Vec::new();
            for (attribute, egress) in [("ingress", false), ("egress", true)] {
                for rule in acl.values[attribute].as_array().into_iter().flatten() {
                    acl_entries.push(acl_entry(acl, rule, "rule_no", "action", egress)?);
                }
            }
            let associations = self
                .references(acl, "subnet_ids")?
                .into_iter()
                .map(|subnet_id| AwsAclAssociation { subnet_id })
                .collect();
            order.push(id.clone());
            acls.insert(
                id.clone(),
                AwsNetworkAcl {
                    network_acl_id: id,
                    vpc_id: text(&acl.values["vpc_id"]),
                    is_default: false,
                    associations,
                    entries: acl_entries,
                    tags: Vec::new(),
                },
            );
        }
        for rule in self.of_kind("aws_network_acl_rule") {
            let acl_id = self.required(rule, "network_acl_id")?;
            let egress = rule.values["egress"] == Value::Bool(true);
            let entry = acl_entry(rule, rule.values, "rule_number", "rule_action", egress)?;
            let acl = acls
                .get_mut(&acl_id)
                .ok_or_else(|| TerraformError::UnknownReference {
                    address: rule.address.clone(),
                    target: acl_id.clone(),
                })?;
            acl.entries.push(entry);
        }
        for association in self.of_kind("aws_network_acl_association") {
            let acl_id = self.required(association, "network_acl_id")?;
            let subnet_id = self.required(association, "subnet_id")?;
            let acl = acls
                .get_mut(&acl_id)
                .ok_or_else(|| TerraformError::UnknownReference {
                    address: association.address.clone(),
                    target: acl_id.clone(),
                })?;
            acl.associations.push(AwsAclAssociation { subnet_id });
        }
        let subnets: Vec<AwsSubnet> = self
            .of_kind("aws_subnet")
            .map(|subnet| AwsSubnet {
                subnet_id: subnet.id(),
                vpc_id: text(&subnet.values["vpc_id"]),
                cidr_block: text(&subnet.values["cidr_block"]),
                ipv6_cidr_block_association_set: text(&subnet.values["ipv6_cidr_block"])
                    .into_iter()
                    .map(|ipv6_cidr_block| AwsIpv6CidrAssociation { ipv6_cidr_block })
                    .collect(),
                tags: Vec::new(),
            })
            .collect();
        let network_acls: Vec<AwsNetworkAcl> =
            order.iter().filter_map(|id| acls.remove(id)).collect();
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

/// Adds a permission unless the same one is there: a state lists the rules of separate rule
/// resources in the group's inline attribute as well.
fn push_new(list: &mut Vec<AwsPermission>, permission: AwsPermission) {
    if !list.iter().any(|p| same_permission(p, &permission)) {
        list.push(permission);
    }
}

fn same_permission(a: &AwsPermission, b: &AwsPermission) -> bool {
    let cidrs = |p: &AwsPermission| -> Vec<String> {
        p.ip_ranges
            .iter()
            .map(|r| r.cidr_ip.clone())
            .chain(p.ipv6_ranges.iter().map(|r| r.cidr_ipv6.clone()))
            .chain(p.user_id_group_pairs.iter().map(|g| g.group_id.clone()))
            .chain(p.prefix_list_ids.iter().map(|l| l.prefix_list_id.clone()))
            .collect()
    };
    a.ip_protocol == b.ip_protocol
        && a.from_port == b.from_port
        && a.to_port == b.to_port
        && cidrs(a) == cidrs(b)
}

/// An inline `ingress`/`egress` block of `aws_security_group`.
fn inline_permission(
    group: &Resource,
    group_id: &str,
    attribute: &str,
    rule: &Value,
) -> Result<AwsPermission, TerraformError> {
    let mut groups = texts(&rule["security_groups"]);
    if rule["self"] == Value::Bool(true) {
        groups.push(group_id.to_string());
    }
    let protocol =
        protocol_name(group, &rule["protocol"]).map_err(|_| TerraformError::Attribute {
            address: group.address.clone(),
            attribute: format!("{attribute}.protocol"),
            problem: format!("{} is not a protocol", rule["protocol"]),
        })?;
    let peers = Peers {
        ipv4: texts(&rule["cidr_blocks"]),
        ipv6: texts(&rule["ipv6_cidr_blocks"]),
        groups,
        prefix_lists: texts(&rule["prefix_list_ids"]),
        description: text(&rule["description"]),
    };
    Ok(AwsPermission::new(
        protocol,
        rule["from_port"].as_i64(),
        rule["to_port"].as_i64(),
        peers,
    ))
}

/// Terraform writes protocols as names, numbers as text, or `-1`/`all`: the CLI's form.
fn protocol_name(resource: &Resource, value: &Value) -> Result<String, TerraformError> {
    match value {
        Value::String(text) => Ok(cli_protocol(text)),
        Value::Number(number) => Ok(cli_protocol(&number.to_string())),
        other => Err(TerraformError::Attribute {
            address: resource.address.clone(),
            attribute: "protocol".to_string(),
            problem: format!("{other} is not a protocol"),
        }),
    }
}

/// The protocol number the CLI prints for an ACL entry.
fn acl_protocol_number(resource: &Resource, value: &Value) -> Result<String, TerraformError> {
    let name = protocol_name(resource, value)?;
    Ok(match name.as_str() {
        "tcp" => "6".to_string(),
        "udp" => "17".to_string(),
        "icmp" => "1".to_string(),
        "icmpv6" => "58".to_string(),
        _ => name,
    })
}

/// An ACL rule: an inline block of `aws_network_acl` (`rule_no`, `action`) or an
/// `aws_network_acl_rule` (`rule_number`, `rule_action`).
fn acl_entry(
    resource: &Resource,
    rule: &Value,
    number: &str,
    action: &str,
    egress: bool,
) -> Result<AwsAclEntry, TerraformError> {
    let rule_number = rule[number]
        .as_i64()
        .ok_or_else(|| TerraformError::Attribute {
            address: resource.address.clone(),
            attribute: number.to_string(),
            problem: "is missing".to_string(),
        })?;
    let protocol = acl_protocol_number(resource, &rule["protocol"])?;
    let ports = matches!(protocol.as_str(), "6" | "17");
    let icmp = matches!(protocol.as_str(), "1" | "58");
    Ok(AwsAclEntry {
        cidr_block: text(&rule["cidr_block"]),
        ipv6_cidr_block: text(&rule["ipv6_cidr_block"]),
        egress,
        rule_action: text(&rule[action]).unwrap_or_default(),
        rule_number,
        port_range: ports.then(|| AwsPortRange {
            from: rule["from_port"].as_i64().unwrap_or(0),
            to: rule["to_port"].as_i64().unwrap_or(65535),
        }),
        icmp_type_code: icmp.then(|| AwsIcmpTypeCode {
            r#type: rule["icmp_type"].as_i64(),
            code: rule["icmp_code"].as_i64(),
        }),
        protocol,
    })
}

#[cfg(test)]
mod tests;
