//! Reads the parsed TOML tree into raw structs that keep the location of every key and value.
//!
//! This stage checks only shape: unknown fields, value types and required fields. It never stops
//! at a problem: a field that is missing or of the wrong type is reported and left out (`None`),
//! and the validation stage skips whatever depends on it.

use std::collections::BTreeSet;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::{
    diagnostic::{Diagnostics, Location},
    messages::ValidationError,
};

/// A value and where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Located<T> {
    pub value: T,
    pub at: Location,
}

/// A field that accepts either a string or an integer (`protocol`, `ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    Text(String),
    Integer(i64),
}

#[derive(Debug, Default)]
pub(crate) struct RawDocument {
    pub quotas: Option<RawQuotas>,
    pub groups: Vec<RawGroup>,
    pub instances: Vec<RawInstance>,
    pub members: Vec<RawMember>,
    pub lab_clients: Vec<RawLabClient>,
    pub lab_dhcp: Option<Located<bool>>,
    pub prefix_lists: Vec<RawPrefixList>,
    pub subnets: Vec<RawSubnet>,
    pub network_acls: Vec<RawNetworkAcl>,
    pub vpc: Option<RawVpc>,
}

#[derive(Debug)]
pub(crate) struct RawVpc {
    pub id: Option<Located<String>>,
    pub cidr: Option<Located<String>>,
}

/// `tags = { Key = "value" }`: each key and value where it was written.
pub(crate) type RawTags = Located<Vec<(Located<String>, Located<String>)>>;

#[derive(Debug)]
pub(crate) struct RawQuotas {
    pub groups_per_interface: Option<Located<i64>>,
    pub rules_per_group: Option<Located<i64>>,
    pub network_acl_rules: Option<Located<i64>>,
}

#[derive(Debug)]
pub(crate) struct RawGroup {
    pub at: Location,
    pub name: Option<Located<String>>,
    pub id: Option<Located<String>>,
    pub description: Option<Located<String>>,
    pub tags: Option<RawTags>,
    pub ingress: RawRules,
    /// `None` when the key is absent: the group gets the default egress (R2).
    pub egress: Option<RawRules>,
}

/// The rules of one direction; `at` is the `ingress`/`egress` key.
#[derive(Debug)]
pub(crate) struct RawRules {
    pub at: Option<Location>,
    pub rules: Vec<RawRule>,
}

#[derive(Debug)]
pub(crate) struct RawRule {
    pub at: Location,
    pub service: RawService,
    pub cidr: Vec<Located<String>>,
    pub groups: Vec<Located<String>>,
    pub prefix_lists: Vec<Located<String>>,
    pub description: Option<Located<String>>,
    pub id: Option<Located<String>>,
    pub tags: Option<RawTags>,
    /// Whether `cidr`, `groups` or `prefix_lists` holds anything, valid or not.
    pub peers_written: bool,
}

/// The protocol and port part that security group rules and network ACL entries share (R3).
#[derive(Debug)]
pub(crate) struct RawService {
    /// The rule or entry.
    pub at: Location,
    pub protocol: Option<Located<Scalar>>,
    pub ports: Option<Located<Scalar>>,
    pub icmp_type: Option<Located<i64>>,
    pub icmp_code: Option<Located<i64>>,
    /// Keys present in the table, valid or not, so a value of the wrong type is not also
    /// reported as missing.
    pub written: BTreeSet<String>,
}

impl RawService {
    pub fn has(&self, key: &str) -> bool {
        self.written.contains(key)
    }
}

/// `[[prefix_list]]` (P1).
#[derive(Debug)]
pub(crate) struct RawPrefixList {
    pub name: Option<Located<String>>,
    pub id: Option<Located<String>>,
    pub family: Option<Located<String>>,
    pub max_entries: Option<Located<i64>>,
    /// `None` when the key is absent.
    pub entries: Option<Located<Vec<RawPrefixListEntry>>>,
}

/// One entry: a CIDR string, or a table with `cidr` and `description`.
#[derive(Debug)]
pub(crate) struct RawPrefixListEntry {
    pub cidr: Option<Located<String>>,
    pub description: Option<Located<String>>,
}

/// `[[subnet]]` (N1).
#[derive(Debug)]
pub(crate) struct RawSubnet {
    pub at: Location,
    pub name: Option<Located<String>>,
    pub cidr: Option<Located<Vec<Located<String>>>>,
    pub network_acl: Option<Located<String>>,
}

/// `[[network_acl]]` (N1, N2).
#[derive(Debug)]
pub(crate) struct RawNetworkAcl {
    pub name: Option<Located<String>>,
    pub id: Option<Located<String>>,
    pub default: Option<Located<bool>>,
    /// `None` when the key is absent: the default ACL then gets the AWS default entries.
    pub ingress: Option<RawAclEntries>,
    pub egress: Option<RawAclEntries>,
}

/// The entries of one direction; `at` is the `ingress`/`egress` key.
#[derive(Debug)]
pub(crate) struct RawAclEntries {
    pub at: Location,
    pub entries: Vec<RawAclEntry>,
}

#[derive(Debug)]
pub(crate) struct RawAclEntry {
    pub number: Option<Located<i64>>,
    pub action: Option<Located<String>>,
    pub service: RawService,
    pub cidr: Option<Located<String>>,
}

#[derive(Debug)]
pub(crate) struct RawInstance {
    pub at: Location,
    pub name: Option<Located<String>>,
    pub id: Option<Located<String>>,
    pub tags: Option<RawTags>,
    pub interface: Option<Located<String>>,
    pub mac: Option<Located<String>>,
    pub host_mac: Option<Located<String>>,
    pub attach: Option<Located<String>>,
    pub host_ingress_hook: Option<Located<String>>,
    pub addresses: Option<Located<Vec<Located<String>>>>,
    pub security_groups: Option<Located<Vec<Located<String>>>>,
    pub source_dest_check: Option<Located<bool>>,
    pub related_icmp: Option<Located<bool>>,
    pub dhcp: Option<Located<bool>>,
    pub exempt: Vec<Located<String>>,
    pub conntrack: Option<RawConntrack>,
}

#[derive(Debug, Default)]
pub(crate) struct RawConntrack {
    pub tcp_established_timeout: Option<Located<i64>>,
    pub udp_timeout: Option<Located<i64>>,
    pub udp_stream_timeout: Option<Located<i64>>,
    pub max_flows: Option<Located<i64>>,
    pub cut_on_rule_removal: Option<Located<bool>>,
}

#[derive(Debug)]
pub(crate) struct RawMember {
    pub at: Location,
    pub name: Option<Located<String>>,
    pub addresses: Option<Located<Vec<Located<String>>>>,
    pub security_groups: Option<Located<Vec<Located<String>>>>,
}

#[derive(Debug)]
pub(crate) struct RawLabClient {
    pub name: Option<Located<String>>,
    pub addresses: Option<Located<Vec<Located<String>>>>,
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "quotas",
    "security_group",
    "instance",
    "member",
    "lab",
    "prefix_list",
    "subnet",
    "network_acl",
    "vpc",
];
const VPC_FIELDS: &[&str] = &["id", "cidr"];
const QUOTA_FIELDS: &[&str] = &[
    "groups_per_interface",
    "rules_per_group",
    "network_acl_rules",
];
const GROUP_FIELDS: &[&str] = &["name", "id", "description", "tags", "ingress", "egress"];
/// Every key a rule table may have (the API's rule edits replace these and keep the rest).
pub(crate) const RULE_FIELDS: &[&str] = &[
    "protocol",
    "ports",
    "icmp_type",
    "icmp_code",
    "cidr",
    "groups",
    "prefix_lists",
    "description",
    "id",
    "tags",
];
const PREFIX_LIST_FIELDS: &[&str] = &["name", "id", "family", "max_entries", "entries"];
const PREFIX_LIST_ENTRY_FIELDS: &[&str] = &["cidr", "description"];
const SUBNET_FIELDS: &[&str] = &["name", "cidr", "network_acl"];
const NETWORK_ACL_FIELDS: &[&str] = &["name", "id", "default", "ingress", "egress"];
const ACL_ENTRY_FIELDS: &[&str] = &[
    "number",
    "action",
    "protocol",
    "ports",
    "icmp_type",
    "icmp_code",
    "cidr",
];
const INSTANCE_FIELDS: &[&str] = &[
    "name",
    "interface",
    "mac",
    "host_mac",
    "attach",
    "host_ingress_hook",
    "addresses",
    "security_groups",
    "source_dest_check",
    "related_icmp",
    "dhcp",
    "exempt",
    "conntrack",
    "id",
    "tags",
];
const CONNTRACK_FIELDS: &[&str] = &[
    "tcp_established_timeout",
    "udp_timeout",
    "udp_stream_timeout",
    "max_flows",
    "cut_on_rule_removal",
];
const MEMBER_FIELDS: &[&str] = &["name", "addresses", "security_groups"];
const LAB_FIELDS: &[&str] = &["client", "dhcp"];
const LAB_CLIENT_FIELDS: &[&str] = &["name", "addresses"];

/// Reads the whole document; problems go to `diagnostics`.
pub(crate) fn read(root: &Spanned<DeTable<'_>>, diagnostics: &mut Diagnostics) -> RawDocument {
    let top = Fields::open(
        root.get_ref(),
        Location::new("", root.span()),
        TOP_LEVEL_FIELDS,
        diagnostics,
    );
    let quotas = top
        .table("quotas", diagnostics)
        .map(|(table, at)| read_quotas(table, at, diagnostics));
    let groups = top.read_each("security_group", read_group, diagnostics);
    let instances = top.read_each("instance", read_instance, diagnostics);
    let members = top.read_each("member", read_member, diagnostics);
    let (lab_clients, lab_dhcp) = top
        .table("lab", diagnostics)
        .map(|(table, at)| read_lab(table, at, diagnostics))
        .unwrap_or_default();
    let vpc = top
        .table("vpc", diagnostics)
        .map(|(table, at)| read_vpc(table, at, diagnostics));
    RawDocument {
        quotas,
        groups,
        instances,
        members,
        lab_clients,
        lab_dhcp,
        prefix_lists: top.read_each("prefix_list", read_prefix_list, diagnostics),
        subnets: top.read_each("subnet", read_subnet, diagnostics),
        network_acls: top.read_each("network_acl", read_network_acl, diagnostics),
        vpc,
    }
}

fn read_vpc(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawVpc {
    let fields = Fields::open(table, at, VPC_FIELDS, diagnostics);
    RawVpc {
        id: fields.string("id", diagnostics),
        cidr: fields.string("cidr", diagnostics),
    }
}

fn read_quotas(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawQuotas {
    let fields = Fields::open(table, at, QUOTA_FIELDS, diagnostics);
    RawQuotas {
        groups_per_interface: fields.integer("groups_per_interface", diagnostics),
        rules_per_group: fields.integer("rules_per_group", diagnostics),
        network_acl_rules: fields.integer("network_acl_rules", diagnostics),
    }
}

fn read_group(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawGroup {
    let fields = Fields::open(table, at.clone(), GROUP_FIELDS, diagnostics);
    let ingress = read_rules(&fields, "ingress", diagnostics).unwrap_or(RawRules {
        at: None,
        rules: Vec::new(),
    });
    RawGroup {
        name: fields.required("name", Fields::string, diagnostics),
        id: fields.string("id", diagnostics),
        description: fields.string("description", diagnostics),
        tags: fields.tags(diagnostics),
        ingress,
        egress: read_rules(&fields, "egress", diagnostics),
        at,
    }
}

fn read_rules(fields: &Fields, key: &str, diagnostics: &mut Diagnostics) -> Option<RawRules> {
    let (at, rules) = fields.tables(key, diagnostics)?;
    Some(RawRules {
        at: Some(at),
        rules: read_all(rules, read_rule, diagnostics),
    })
}

fn read_rule(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawRule {
    let fields = Fields::open(table, at.clone(), RULE_FIELDS, diagnostics);
    let list = |key: &str, diagnostics: &mut Diagnostics| {
        fields
            .string_list(key, diagnostics)
            .map_or_else(Vec::new, |l| l.value)
    };
    RawRule {
        service: read_service(&fields, table, diagnostics),
        cidr: list("cidr", diagnostics),
        groups: list("groups", diagnostics),
        prefix_lists: list("prefix_lists", diagnostics),
        description: fields.string("description", diagnostics),
        id: fields.string("id", diagnostics),
        tags: fields.tags(diagnostics),
        peers_written: ["cidr", "groups", "prefix_lists"]
            .iter()
            .any(|key| fields.is_non_empty(key)),
        at,
    }
}

fn read_service(fields: &Fields, table: &DeTable<'_>, diagnostics: &mut Diagnostics) -> RawService {
    RawService {
        at: fields.at.clone(),
        protocol: fields.required("protocol", Fields::scalar, diagnostics),
        ports: fields.scalar("ports", diagnostics),
        icmp_type: fields.integer("icmp_type", diagnostics),
        icmp_code: fields.integer("icmp_code", diagnostics),
        written: table.keys().map(|key| key.get_ref().to_string()).collect(),
    }
}

fn read_prefix_list(
    table: &DeTable<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> RawPrefixList {
    let fields = Fields::open(table, at, PREFIX_LIST_FIELDS, diagnostics);
    RawPrefixList {
        name: fields.required("name", Fields::string, diagnostics),
        id: fields.string("id", diagnostics),
        family: fields.required("family", Fields::string, diagnostics),
        max_entries: fields.required("max_entries", Fields::integer, diagnostics),
        entries: fields.prefix_list_entries("entries", diagnostics),
    }
}

fn read_subnet(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawSubnet {
    let fields = Fields::open(table, at.clone(), SUBNET_FIELDS, diagnostics);
    RawSubnet {
        name: fields.required("name", Fields::string, diagnostics),
        cidr: fields.required("cidr", Fields::string_list, diagnostics),
        network_acl: fields.string("network_acl", diagnostics),
        at,
    }
}

fn read_network_acl(
    table: &DeTable<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> RawNetworkAcl {
    let fields = Fields::open(table, at, NETWORK_ACL_FIELDS, diagnostics);
    let entries = |key: &str, diagnostics: &mut Diagnostics| {
        let (at, tables) = fields.tables(key, diagnostics)?;
        Some(RawAclEntries {
            at,
            entries: read_all(tables, read_acl_entry, diagnostics),
        })
    };
    RawNetworkAcl {
        name: fields.required("name", Fields::string, diagnostics),
        id: fields.string("id", diagnostics),
        default: fields.boolean("default", diagnostics),
        ingress: entries("ingress", diagnostics),
        egress: entries("egress", diagnostics),
    }
}

fn read_acl_entry(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawAclEntry {
    let fields = Fields::open(table, at, ACL_ENTRY_FIELDS, diagnostics);
    RawAclEntry {
        number: fields.required("number", Fields::integer, diagnostics),
        action: fields.required("action", Fields::string, diagnostics),
        service: read_service(&fields, table, diagnostics),
        cidr: fields.required("cidr", Fields::string, diagnostics),
    }
}

fn read_instance(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawInstance {
    let fields = Fields::open(table, at.clone(), INSTANCE_FIELDS, diagnostics);
    RawInstance {
        name: fields.required("name", Fields::string, diagnostics),
        id: fields.string("id", diagnostics),
        tags: fields.tags(diagnostics),
        // Required unless `mac` or `host_mac` finds the interface: checked in validation.
        interface: fields.string("interface", diagnostics),
        mac: fields.string("mac", diagnostics),
        host_mac: fields.string("host_mac", diagnostics),
        attach: fields.string("attach", diagnostics),
        host_ingress_hook: fields.string("host_ingress_hook", diagnostics),
        addresses: fields.required("addresses", Fields::string_list, diagnostics),
        security_groups: fields.required("security_groups", Fields::string_list, diagnostics),
        source_dest_check: fields.boolean("source_dest_check", diagnostics),
        related_icmp: fields.boolean("related_icmp", diagnostics),
        dhcp: fields.boolean("dhcp", diagnostics),
        exempt: fields
            .string_list("exempt", diagnostics)
            .map_or_else(Vec::new, |l| l.value),
        conntrack: fields
            .table("conntrack", diagnostics)
            .map(|(table, at)| read_conntrack(table, at, diagnostics)),
        at,
    }
}

fn read_conntrack(
    table: &DeTable<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> RawConntrack {
    let fields = Fields::open(table, at, CONNTRACK_FIELDS, diagnostics);
    RawConntrack {
        tcp_established_timeout: fields.integer("tcp_established_timeout", diagnostics),
        udp_timeout: fields.integer("udp_timeout", diagnostics),
        udp_stream_timeout: fields.integer("udp_stream_timeout", diagnostics),
        max_flows: fields.integer("max_flows", diagnostics),
        cut_on_rule_removal: fields.boolean("cut_on_rule_removal", diagnostics),
    }
}

fn read_member(table: &DeTable<'_>, at: Location, diagnostics: &mut Diagnostics) -> RawMember {
    let fields = Fields::open(table, at.clone(), MEMBER_FIELDS, diagnostics);
    RawMember {
        name: fields.required("name", Fields::string, diagnostics),
        addresses: fields.required("addresses", Fields::string_list, diagnostics),
        security_groups: fields.required("security_groups", Fields::string_list, diagnostics),
        at,
    }
}

fn read_lab(
    table: &DeTable<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> (Vec<RawLabClient>, Option<Located<bool>>) {
    let fields = Fields::open(table, at, LAB_FIELDS, diagnostics);
    (
        fields.read_each("client", read_lab_client, diagnostics),
        fields.boolean("dhcp", diagnostics),
    )
}

fn read_lab_client(
    table: &DeTable<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> RawLabClient {
    let fields = Fields::open(table, at, LAB_CLIENT_FIELDS, diagnostics);
    RawLabClient {
        name: fields.required("name", Fields::string, diagnostics),
        addresses: fields.required("addresses", Fields::string_list, diagnostics),
    }
}

/// The keys of one table, with typed accessors that report type errors and missing fields.
struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    at: Location,
}

type LocatedTable<'t, 'i> = (&'t DeTable<'i>, Location);

/// One of the typed accessors of [`Fields`].
type Accessor<'t, 'i, T> = fn(&Fields<'t, 'i>, &str, &mut Diagnostics) -> Option<T>;

/// How one table of an array of tables is read.
type ReadTable<T> = fn(&DeTable<'_>, Location, &mut Diagnostics) -> T;

/// Reads every table of an array, in file order.
fn read_all<T>(
    tables: Vec<LocatedTable<'_, '_>>,
    read: ReadTable<T>,
    diagnostics: &mut Diagnostics,
) -> Vec<T> {
    tables
        .into_iter()
        .map(|(table, at)| read(table, at, diagnostics))
        .collect()
}

type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);

impl<'t, 'i> Fields<'t, 'i> {
    /// Reports every key of `table` that is not in `allowed`.
    fn open(
        table: &'t DeTable<'i>,
        at: Location,
        allowed: &[&str],
        diagnostics: &mut Diagnostics,
    ) -> Self {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                diagnostics.error(
                    &at.child(key.get_ref(), key.span()),
                    ValidationError::UnknownField {
                        field: key.get_ref().to_string(),
                        allowed: allowed.join(", "),
                    },
                );
            }
        }
        Self { table, at }
    }

    fn entry(&self, key: &str) -> Option<Entry<'t, 'i>> {
        self.table.get_key_value(key)
    }

    /// Present, and not an empty array.
    fn is_non_empty(&self, key: &str) -> bool {
        self.entry(key)
            .is_some_and(|(_, value)| value.get_ref().as_array().is_none_or(|a| !a.is_empty()))
    }

    fn value_location(&self, key: &str, value: &Spanned<DeValue<'_>>) -> Location {
        self.at.child(key, value.span())
    }

    fn missing(&self, key: &str, diagnostics: &mut Diagnostics) {
        diagnostics.error(
            &self.at.child(key, self.at.span.clone()),
            ValidationError::MissingField {
                field: key.to_string(),
            },
        );
    }

    /// The value at `key`, if `convert` accepts its type; a type mismatch naming `expected`
    /// if it does not. `convert` gives `Some(None)` when it reported a problem of its own.
    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        diagnostics: &mut Diagnostics,
        convert: impl FnOnce(&'t DeValue<'i>, &Location, &mut Diagnostics) -> Option<Option<T>>,
    ) -> Option<T> {
        let (_, value) = self.entry(key)?;
        let at = self.value_location(key, value);
        match convert(value.get_ref(), &at, diagnostics) {
            Some(converted) => converted,
            None => {
                type_mismatch(&at, expected, value.get_ref(), diagnostics);
                None
            }
        }
    }

    /// `read` of `key`, and a missing-field error when the key is absent.
    fn required<T>(
        &self,
        key: &str,
        read: Accessor<'t, 'i, T>,
        diagnostics: &mut Diagnostics,
    ) -> Option<T> {
        if self.entry(key).is_none() {
            self.missing(key, diagnostics);
        }
        read(self, key, diagnostics)
    }

    fn string(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Located<String>> {
        let (_, value) = self.entry(key)?;
        let at = self.value_location(key, value);
        expect_string(value, at, diagnostics)
    }

    fn integer(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Located<i64>> {
        self.typed(
            key,
            "an integer",
            diagnostics,
            |value, at, diagnostics| match value {
                DeValue::Integer(integer) => Some(integer_value(integer, at.clone(), diagnostics)),
                _ => None,
            },
        )
    }

    fn boolean(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Located<bool>> {
        self.typed(key, "a boolean", diagnostics, |value, at, _| match value {
            DeValue::Boolean(flag) => Some(Some(Located {
                value: *flag,
                at: at.clone(),
            })),
            _ => None,
        })
    }

    fn scalar(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Located<Scalar>> {
        let expected = "a string or an integer";
        self.typed(key, expected, diagnostics, |value, at, diagnostics| {
            let at = at.clone();
            match value {
                DeValue::String(text) => Some(Some(Located {
                    value: Scalar::Text(text.to_string()),
                    at,
                })),
                DeValue::Integer(integer) => Some(integer_value(integer, at, diagnostics).map(
                    |located| Located {
                        value: Scalar::Integer(located.value),
                        at: located.at,
                    },
                )),
                _ => None,
            }
        })
    }

    /// An array of strings; the outer location is the array. Bad elements are reported and
    /// skipped.
    fn string_list(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Located<Vec<Located<String>>>> {
        let (_, value) = self.entry(key)?;
        let at = self.value_location(key, value);
        let DeValue::Array(items) = value.get_ref() else {
            type_mismatch(&at, "an array of strings", value.get_ref(), diagnostics);
            return None;
        };
        let strings = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                expect_string(item, at.element(index, item.span()), diagnostics)
            })
            .collect();
        Some(Located { value: strings, at })
    }

    /// Prefix list entries: each a CIDR string or a table with `cidr` and `description`.
    fn prefix_list_entries(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Located<Vec<RawPrefixListEntry>>> {
        let (_, value) = self.entry(key)?;
        let at = self.value_location(key, value);
        let DeValue::Array(items) = value.get_ref() else {
            type_mismatch(&at, "an array", value.get_ref(), diagnostics);
            return None;
        };
        let entries = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                let item_at = at.element(index, item.span());
                match item.get_ref() {
                    DeValue::String(text) => Some(RawPrefixListEntry {
                        cidr: Some(Located {
                            value: text.to_string(),
                            at: item_at,
                        }),
                        description: None,
                    }),
                    DeValue::Table(table) => {
                        let fields =
                            Fields::open(table, item_at, PREFIX_LIST_ENTRY_FIELDS, diagnostics);
                        Some(RawPrefixListEntry {
                            cidr: fields.required("cidr", Fields::string, diagnostics),
                            description: fields.string("description", diagnostics),
                        })
                    }
                    other => {
                        type_mismatch(&item_at, "a CIDR or a table", other, diagnostics);
                        None
                    }
                }
            })
            .collect();
        Some(Located { value: entries, at })
    }

    /// `tags`: a table of strings. Values of another type are reported and left out.
    fn tags(&self, diagnostics: &mut Diagnostics) -> Option<RawTags> {
        let (table, at) = self.table("tags", diagnostics)?;
        let tags = table
            .iter()
            .filter_map(|(key, value)| {
                let value_at = at.child(key.get_ref(), value.span());
                let key = Located {
                    value: key.get_ref().to_string(),
                    at: at.child(key.get_ref(), key.span()),
                };
                expect_string(value, value_at, diagnostics).map(|value| (key, value))
            })
            .collect();
        Some(Located { value: tags, at })
    }

    /// A table, whether written as `[key]` or inline.
    fn table(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<(&'t DeTable<'i>, Location)> {
        self.typed(key, "a table", diagnostics, |value, at, _| match value {
            DeValue::Table(table) => Some(Some((table, at.clone()))),
            _ => None,
        })
    }

    /// Reads each table of the array of tables at `key`; none when the key is absent or not
    /// an array of tables.
    fn read_each<T>(&self, key: &str, read: ReadTable<T>, diagnostics: &mut Diagnostics) -> Vec<T> {
        self.tables(key, diagnostics)
            .map(|(_, tables)| read_all(tables, read, diagnostics))
            .unwrap_or_default()
    }

    /// An array of tables, whether written as `[[key]]` or as an inline array. Returns the
    /// location of the key (where the list as a whole is reported) and each table's location.
    fn tables(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<(Location, Vec<LocatedTable<'t, 'i>>)> {
        let (name, value) = self.entry(key)?;
        let list_at = self.at.child(key, name.span());
        let DeValue::Array(items) = value.get_ref() else {
            type_mismatch(
                &self.value_location(key, value),
                "an array of tables",
                value.get_ref(),
                diagnostics,
            );
            return None;
        };
        let tables = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                let at = list_at.element(index, item.span());
                match item.get_ref() {
                    DeValue::Table(table) => Some((table, at)),
                    other => {
                        type_mismatch(&at, "a table", other, diagnostics);
                        None
                    }
                }
            })
            .collect();
        Some((list_at, tables))
    }
}

fn expect_string(
    value: &Spanned<DeValue<'_>>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> Option<Located<String>> {
    match value.get_ref() {
        DeValue::String(text) => Some(Located {
            value: text.to_string(),
            at,
        }),
        other => {
            type_mismatch(&at, "a string", other, diagnostics);
            None
        }
    }
}

fn integer_value(
    integer: &toml::de::DeInteger<'_>,
    at: Location,
    diagnostics: &mut Diagnostics,
) -> Option<Located<i64>> {
    match i64::from_str_radix(integer.as_str(), integer.radix()) {
        Ok(value) => Some(Located { value, at }),
        Err(_) => {
            diagnostics.error(
                &at,
                ValidationError::IntegerTooLarge {
                    value: integer.to_string(),
                },
            );
            None
        }
    }
}

fn type_mismatch(
    at: &Location,
    expected: &'static str,
    found: &DeValue<'_>,
    diagnostics: &mut Diagnostics,
) {
    diagnostics.error(
        at,
        ValidationError::WrongType {
            expected,
            found: found.type_str(),
        },
    );
}
