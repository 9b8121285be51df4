//! [`Change`]s as edits of the TOML text with `toml_edit`, which keeps what a person wrote:
//! comments, blank lines, key order, inline or `[[header]]` tables. New tables take the
//! indentation the file already uses for rules.
//!
//! Objects are found by id through the validated [`Config`] of the same text: a valid config
//! keeps every group, rule, peer and instance in file order, so the model's indices are the
//! file's. A rule of several peers is several AWS rules: editing one of them (revoke, modify,
//! tag) takes that peer out into a rule of its own, with its id written, and leaves the others
//! as they were. A default egress (R2) is written out before it is edited, with the ids it had.

use ipnet::IpNet;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::{Change, NewGroup, NewInterface, NewRule};
use crate::{
    config,
    ids::{self, IdKind},
    model::{Config, Direction, Peer, PortRange, Protocol, Rule, Tags},
};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0} is not in the policy")]
    NotFound(String),
    /// The file writes something in a shape these edits do not handle.
    #[error("{0}")]
    Shape(String),
}

/// Applies one change. `config` is the validated policy of the document's current text.
pub fn apply(doc: &mut DocumentMut, config: &Config, change: &Change) -> Result<(), EditError> {
    let style = Style::detect(doc);
    match change {
        Change::CreateGroup(group) => create_group(doc, group),
        Change::DeleteGroup { id } => {
            let index = group_index(config, id)?;
            top_tables(doc, "security_group")?.remove(index);
            Ok(())
        }
        Change::AddRules {
            group_id,
            direction,
            rules,
        } => {
            let index = group_index(config, group_id)?;
            let mut group = GroupEdit::open(doc, config, index, *direction, &style)?;
            for rule in rules {
                group.push(rule);
            }
            Ok(())
        }
        Change::RemoveRules {
            group_id,
            direction,
            rule_ids,
        } => {
            let index = group_index(config, group_id)?;
            let mut places = rule_ids
                .iter()
                .map(|id| rule_place(config, index, *direction, id))
                .collect::<Result<Vec<_>, _>>()?;
            // Later places first, so earlier indices stay valid.
            places.sort_unstable_by(|a, b| b.cmp(a));
            places.dedup();
            let mut group = GroupEdit::open(doc, config, index, *direction, &style)?;
            for (rule_index, peer_index) in places {
                group.remove_peer(rule_index, peer_index)?;
            }
            group.drop_empty_list();
            Ok(())
        }
        Change::ReplaceRule {
            group_id,
            direction,
            rule,
        } => {
            let index = group_index(config, group_id)?;
            let place = rule_place(config, index, *direction, &rule.id)?;
            let mut group = GroupEdit::open(doc, config, index, *direction, &style)?;
            let table = group.own_table(place)?;
            group.replace(table, rule)
        }
        Change::SetTags { id, tags } => set_tags(doc, config, id, tags, &style),
        Change::SetInterfaceGroups { id, groups } => {
            let index = instance_index(config, id)?;
            let mut instances = top_tables(doc, "instance")?;
            let table = instances.get_mut(index)?;
            let list: Array = groups.iter().map(String::as_str).collect();
            replace_value(table, "security_groups", Value::Array(list));
            Ok(())
        }
        Change::SetSourceDestCheck { id, enabled } => {
            let index = instance_index(config, id)?;
            let mut instances = top_tables(doc, "instance")?;
            let table = instances.get_mut(index)?;
            if *enabled && !table.contains_key("source_dest_check") {
                return Ok(());
            }
            replace_value(table, "source_dest_check", Value::from(*enabled));
            Ok(())
        }
        Change::CreateInterface(interface) => create_interface(doc, interface),
        Change::DeleteInterface { id } => {
            let index = instance_index(config, id)?;
            top_tables(doc, "instance")?.remove(index);
            Ok(())
        }
    }
}

fn group_index(config: &Config, id: &str) -> Result<usize, EditError> {
    config
        .security_groups
        .iter()
        .position(|group| group.id == id)
        .ok_or_else(|| EditError::NotFound(format!("security group {id}")))
}

fn instance_index(config: &Config, id: &str) -> Result<usize, EditError> {
    config
        .instances
        .iter()
        .position(|instance| instance.id == id)
        .ok_or_else(|| EditError::NotFound(format!("network interface {id}")))
}

/// (rule index, peer index) of rule `id` in a group's `direction`.
fn rule_place(
    config: &Config,
    group: usize,
    direction: Direction,
    id: &str,
) -> Result<(usize, usize), EditError> {
    config.security_groups[group]
        .rules(direction)
        .iter()
        .enumerate()
        .find_map(|(rule_index, rule)| {
            rule.ids
                .iter()
                .position(|candidate| candidate == id)
                .map(|peer_index| (rule_index, peer_index))
        })
        .ok_or_else(|| EditError::NotFound(format!("security group rule {id}")))
}

/// The indentation the file gives rule tables and their keys.
struct Style {
    header: String,
    key: String,
}

impl Style {
    fn detect(doc: &DocumentMut) -> Self {
        let indentation = |prefix: Option<&str>| {
            prefix
                .and_then(|prefix| prefix.rsplit('\n').next())
                .filter(|last| last.chars().all(|c| c == ' ' || c == '\t'))
                .map(str::to_string)
        };
        let first_rule_table = doc
            .get("security_group")
            .and_then(Item::as_array_of_tables)
            .into_iter()
            .flat_map(ArrayOfTables::iter)
            .flat_map(|group| {
                ["ingress", "egress"]
                    .into_iter()
                    .filter_map(|key| group.get(key).and_then(Item::as_array_of_tables))
                    .flat_map(ArrayOfTables::iter)
            })
            .next();
        match first_rule_table {
            Some(table) => Style {
                header: indentation(table.decor().prefix().and_then(|p| p.as_str()))
                    .unwrap_or_default(),
                key: indentation(
                    table
                        .iter()
                        .next()
                        .and_then(|(key, _)| table.key(key))
                        .and_then(|key| key.leaf_decor().prefix())
                        .and_then(|p| p.as_str()),
                )
                .unwrap_or_default(),
            },
            // The examples' style: rules indented under their group.
            None => Style {
                header: "  ".into(),
                key: "  ".into(),
            },
        }
    }

    fn indent(&self, table: &mut Table) {
        table.decor_mut().set_prefix(format!("\n{}", self.header));
        indent_keys(table, &self.key);
    }
}

fn indent_keys(table: &mut Table, indent: &str) {
    let keys: Vec<String> = table.iter().map(|(key, _)| key.to_string()).collect();
    for key in keys {
        if let Some(mut key) = table.key_mut(&key) {
            key.leaf_decor_mut().set_prefix(indent);
        }
    }
}

/// A list of tables however the file writes it: `[[key]]` headers or `key = [{ … }, …]`.
enum Tables<'a> {
    Headers(&'a mut ArrayOfTables),
    Inline(&'a mut Array),
}

impl<'a> Tables<'a> {
    fn of(item: &'a mut Item, key: &str) -> Result<Self, EditError> {
        match item {
            Item::ArrayOfTables(tables) => Ok(Self::Headers(tables)),
            Item::Value(Value::Array(array)) => Ok(Self::Inline(array)),
            _ => Err(EditError::Shape(format!("{key} is not a list of tables"))),
        }
    }

    fn get_mut(&mut self, index: usize) -> Result<&mut dyn TableLike, EditError> {
        let table: Option<&mut dyn TableLike> = match self {
            Self::Headers(tables) => tables.get_mut(index).map(|t| t as &mut dyn TableLike),
            Self::Inline(array) => match array.get_mut(index) {
                Some(Value::InlineTable(table)) => Some(table),
                _ => None,
            },
        };
        table.ok_or_else(|| EditError::Shape(format!("no table at index {index}")))
    }

    fn push(&mut self, table: Table) {
        match self {
            Self::Headers(tables) => tables.push(table),
            Self::Inline(array) => {
                // One table a line, like the tables before it.
                let prefix = array
                    .iter()
                    .last()
                    .and_then(|last| last.decor().prefix())
                    .and_then(|p| p.as_str())
                    .map(str::to_string);
                let mut inline = table.into_inline_table();
                inline.fmt();
                let mut value = Value::InlineTable(inline);
                if let Some(prefix) = prefix {
                    value.decor_mut().set_prefix(prefix);
                }
                array.push_formatted(value);
            }
        }
    }

    fn remove(&mut self, index: usize) {
        match self {
            Self::Headers(tables) => {
                tables.remove(index);
            }
            Self::Inline(array) => {
                array.remove(index);
            }
        }
    }
}

/// The top-level list `key`, created as `[[key]]` headers when absent.
fn top_tables<'a>(doc: &'a mut DocumentMut, key: &str) -> Result<Tables<'a>, EditError> {
    let item = doc
        .as_table_mut()
        .entry(key)
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    Tables::of(item, key)
}

fn create_group(doc: &mut DocumentMut, group: &NewGroup) -> Result<(), EditError> {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(group.name.as_str()));
    table.insert("id", toml_edit::value(group.id.as_str()));
    if !group.description.is_empty() {
        table.insert("description", toml_edit::value(group.description.as_str()));
    }
    insert_tags(&mut table, &group.tags);
    top_tables(doc, "security_group")?.push(table);
    Ok(())
}

fn create_interface(doc: &mut DocumentMut, interface: &NewInterface) -> Result<(), EditError> {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(interface.name.as_str()));
    table.insert("id", toml_edit::value(interface.id.as_str()));
    table.insert("interface", toml_edit::value(interface.interface.as_str()));
    table.insert("attach", toml_edit::value("port"));
    let addresses: Array = interface
        .addresses
        .iter()
        .map(|address| address.to_string())
        .collect();
    table.insert("addresses", toml_edit::value(addresses));
    let groups: Array = interface.groups.iter().map(String::as_str).collect();
    table.insert("security_groups", toml_edit::value(groups));
    if !interface.source_dest_check {
        table.insert("source_dest_check", toml_edit::value(false));
    }
    insert_tags(&mut table, &interface.tags);
    top_tables(doc, "instance")?.push(table);
    Ok(())
}

fn tags_value(tags: &Tags) -> Value {
    let mut inline: InlineTable = tags
        .iter()
        .map(|(key, value)| (key.as_str(), Value::from(value.as_str())))
        .collect();
    inline.fmt();
    Value::InlineTable(inline)
}

fn insert_tags(table: &mut Table, tags: &Tags) {
    if !tags.is_empty() {
        table.insert("tags", toml_edit::value(tags_value(tags)));
    }
}

/// Sets `key` to `value`, keeping the comment after the old value; an absent key is added.
fn replace_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *value.decor_mut() = decor;
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn set_or_remove_tags(table: &mut dyn TableLike, tags: &Tags) {
    if tags.is_empty() {
        table.remove("tags");
    } else {
        replace_value(table, "tags", tags_value(tags));
    }
}

fn set_tags(
    doc: &mut DocumentMut,
    config: &Config,
    id: &str,
    tags: &Tags,
    style: &Style,
) -> Result<(), EditError> {
    match IdKind::of(id) {
        Some(IdKind::SecurityGroup) => {
            let index = group_index(config, id)?;
            let mut groups = top_tables(doc, "security_group")?;
            set_or_remove_tags(groups.get_mut(index)?, tags);
            Ok(())
        }
        Some(IdKind::NetworkInterface) => {
            let index = instance_index(config, id)?;
            let mut instances = top_tables(doc, "instance")?;
            set_or_remove_tags(instances.get_mut(index)?, tags);
            Ok(())
        }
        Some(IdKind::Vpc) if config.vpc.id == id => {
            let vpc = doc
                .as_table_mut()
                .entry("vpc")
                .or_insert_with(|| Item::Table(Table::new()));
            let vpc = vpc
                .as_table_like_mut()
                .ok_or_else(|| EditError::Shape("vpc is not a table".into()))?;
            set_or_remove_tags(vpc, tags);
            Ok(())
        }
        Some(IdKind::SecurityGroupRule) => {
            let (group, direction, place) = config
                .security_groups
                .iter()
                .enumerate()
                .find_map(|(group, _)| {
                    Direction::BOTH.into_iter().find_map(|direction| {
                        rule_place(config, group, direction, id)
                            .ok()
                            .map(|place| (group, direction, place))
                    })
                })
                .ok_or_else(|| EditError::NotFound(format!("security group rule {id}")))?;
            let mut edit = GroupEdit::open(doc, config, group, direction, style)?;
            let table = edit.own_table(place)?;
            let mut rules = edit.rules()?;
            set_or_remove_tags(rules.get_mut(table)?, tags);
            Ok(())
        }
        _ => Err(EditError::NotFound(id.to_string())),
    }
}

/// Edits of one group's rules in one direction.
struct GroupEdit<'a> {
    group: &'a mut dyn TableLike,
    inline: bool,
    direction: Direction,
    /// The group's rules in this direction as the model has them, by file index.
    model: Vec<Rule>,
    style: &'a Style,
}

impl<'a> GroupEdit<'a> {
    /// Opens group `index` for edits of `direction`; a default egress (R2) is written out.
    fn open(
        doc: &'a mut DocumentMut,
        config: &Config,
        index: usize,
        direction: Direction,
        style: &'a Style,
    ) -> Result<Self, EditError> {
        let model_group = &config.security_groups[index];
        let groups = top_tables(doc, "security_group")?;
        let inline = matches!(groups, Tables::Inline(_));
        let group = match groups {
            Tables::Headers(tables) => tables
                .get_mut(index)
                .map(|table| table as &mut dyn TableLike),
            Tables::Inline(array) => match array.get_mut(index) {
                Some(Value::InlineTable(table)) => Some(table as &mut dyn TableLike),
                _ => None,
            },
        }
        .ok_or_else(|| EditError::Shape(format!("security_group[{index}] is not a table")))?;
        let mut edit = Self {
            group,
            inline,
            direction,
            model: model_group.rules(direction).to_vec(),
            style,
        };
        if direction == Direction::Egress && model_group.egress_is_default {
            for rule in &model_group.egress {
                let mut table = edit.model_table(rule);
                edit.style_new(&mut table);
                edit.rules()?.push(table);
            }
        }
        Ok(edit)
    }

    fn key(&self) -> &'static str {
        match self.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The direction's list, created when absent (or an empty inline `[]` turned into headers,
    /// so new rules read like the file's other rules).
    fn rules(&mut self) -> Result<Tables<'_>, EditError> {
        let key = self.key();
        let empty_inline = matches!(
            self.group.get(key),
            Some(Item::Value(Value::Array(array))) if array.is_empty()
        );
        if !self.group.contains_key(key) || (empty_inline && !self.inline) {
            let item = if self.inline {
                Item::Value(Value::Array(Array::new()))
            } else {
                Item::ArrayOfTables(ArrayOfTables::new())
            };
            self.group.insert(key, item);
        }
        let item = self
            .group
            .get_mut(key)
            .ok_or_else(|| EditError::Shape(format!("no {key} list")))?;
        Tables::of(item, key)
    }

    fn style_new(&self, table: &mut Table) {
        if !self.inline {
            self.style.indent(table);
        }
    }

    /// A rule of the model written as a table (the ids it has stay derived).
    fn model_table(&self, rule: &Rule) -> Table {
        let mut table = Table::new();
        write_selector(&mut table, rule.protocol, rule.ports);
        let cidrs: Array = rule
            .peers
            .iter()
            .filter_map(|peer| match peer {
                Peer::Cidr(net) => Some(net.to_string()),
                Peer::Group(_) | Peer::PrefixList(_) => None,
            })
            .collect();
        let groups: Array = rule
            .peers
            .iter()
            .filter_map(|peer| match peer {
                Peer::Group(name) => Some(name.as_str()),
                Peer::Cidr(_) | Peer::PrefixList(_) => None,
            })
            .collect();
        let lists: Array = rule
            .peers
            .iter()
            .filter_map(|peer| match peer {
                Peer::PrefixList(name) => Some(name.as_str()),
                Peer::Cidr(_) | Peer::Group(_) => None,
            })
            .collect();
        if !cidrs.is_empty() {
            table.insert("cidr", toml_edit::value(cidrs));
        }
        if !groups.is_empty() {
            table.insert("groups", toml_edit::value(groups));
        }
        if !lists.is_empty() {
            table.insert("prefix_lists", toml_edit::value(lists));
        }
        if !rule.description.is_empty() {
            table.insert("description", toml_edit::value(rule.description.as_str()));
        }
        table
    }

    fn push(&mut self, rule: &NewRule) {
        let mut table = new_rule_table(rule);
        self.style_new(&mut table);
        if let Ok(mut rules) = self.rules() {
            rules.push(table);
        }
        self.model.push(rule.to_rule());
    }

    /// Removes one peer of rule `rule_index`; the whole table when it is the rule's only peer.
    fn remove_peer(&mut self, rule_index: usize, peer_index: usize) -> Result<(), EditError> {
        let peers = self
            .model
            .get(rule_index)
            .map_or(0, |rule| rule.peers.len());
        let mut rules = self.rules()?;
        if peers <= 1 {
            rules.remove(rule_index);
            return Ok(());
        }
        let table = rules.get_mut(rule_index)?;
        remove_peer_from_table(table, peer_index)?;
        if let Some(rule) = self.model.get_mut(rule_index) {
            rule.peers.remove(peer_index);
            rule.ids.remove(peer_index);
        }
        Ok(())
    }

    /// An emptied egress list becomes `egress = []` (no egress, not the default, R2); an emptied
    /// ingress list goes.
    fn drop_empty_list(&mut self) {
        let key = self.key();
        let empty = match self.group.get(key) {
            Some(Item::ArrayOfTables(tables)) => tables.is_empty(),
            Some(Item::Value(Value::Array(array))) => array.is_empty(),
            _ => false,
        };
        if !empty {
            return;
        }
        match self.direction {
            Direction::Egress => {
                self.group
                    .insert(key, Item::Value(Value::Array(Array::new())));
            }
            Direction::Ingress => {
                self.group.remove(key);
            }
        }
    }

    /// The index of a table that holds only the rule at `place`: the rule's own when it has
    /// one peer, otherwise a new table the peer is moved into, with its id written.
    fn own_table(&mut self, (rule_index, peer_index): (usize, usize)) -> Result<usize, EditError> {
        let rule = self
            .model
            .get(rule_index)
            .cloned()
            .ok_or_else(|| EditError::NotFound(format!("rule {rule_index}")))?;
        if rule.peers.len() == 1 {
            return Ok(rule_index);
        }
        let (Some(peer), Some(id)) = (rule.peers.get(peer_index), rule.ids.get(peer_index)) else {
            return Err(EditError::NotFound(format!("peer {peer_index}")));
        };
        let alone = NewRule {
            id: id.clone(),
            protocol: rule.protocol,
            ports: rule.ports,
            peer: peer.clone(),
            description: rule.description.clone(),
            tags: Tags::new(),
        };
        self.remove_peer(rule_index, peer_index)?;
        self.push(&alone);
        Ok(self.model.len() - 1)
    }

    /// Gives table `index` the content of `rule`, keeping its place, comments and indentation.
    fn replace(&mut self, index: usize, rule: &NewRule) -> Result<(), EditError> {
        let fresh = new_rule_table(rule);
        let mut rules = self.rules()?;
        let table = rules.get_mut(index)?;
        let indent = table
            .iter()
            .next()
            .map(|(key, _)| key.to_string())
            .and_then(|key| {
                table
                    .key(&key)
                    .and_then(|key| key.leaf_decor().prefix())
                    .and_then(|prefix| prefix.as_str())
                    .map(str::to_string)
            });
        for key in config::RULE_FIELDS {
            table.remove(key);
        }
        for (key, item) in fresh.iter() {
            table.insert(key, item.clone());
            if let (Some(indent), Some(mut key)) = (&indent, table.key_mut(key)) {
                key.leaf_decor_mut().set_prefix(indent.as_str());
            }
        }
        Ok(())
    }
}

fn write_selector(table: &mut Table, protocol: Protocol, ports: PortRange) {
    let protocol_value = match protocol {
        Protocol::Number(number) => toml_edit::value(i64::from(number)),
        named => toml_edit::value(named.to_string()),
    };
    table.insert("protocol", protocol_value);
    match ports {
        PortRange::Any => {}
        PortRange::Ports { from, to } if from == to => {
            table.insert("ports", toml_edit::value(i64::from(from)));
        }
        PortRange::Ports { from, to } => {
            table.insert("ports", toml_edit::value(format!("{from}-{to}")));
        }
        PortRange::Icmp { icmp_type, code } => {
            if let Some(icmp_type) = icmp_type {
                table.insert("icmp_type", toml_edit::value(i64::from(icmp_type)));
            }
            if let Some(code) = code {
                table.insert("icmp_code", toml_edit::value(i64::from(code)));
            }
        }
    }
}

/// A rule of one peer, its id written (so it survives edits of the rule itself, R9).
fn new_rule_table(rule: &NewRule) -> Table {
    let mut table = Table::new();
    table.insert("id", toml_edit::value(rule.id.as_str()));
    write_selector(&mut table, rule.protocol, rule.ports);
    match &rule.peer {
        Peer::Cidr(net) => {
            let cidrs: Array = [net.to_string()].into_iter().collect();
            table.insert("cidr", toml_edit::value(cidrs));
        }
        Peer::Group(name) => {
            let groups: Array = [name.as_str()].into_iter().collect();
            table.insert("groups", toml_edit::value(groups));
        }
        Peer::PrefixList(name) => {
            let lists: Array = [name.as_str()].into_iter().collect();
            table.insert("prefix_lists", toml_edit::value(lists));
        }
    }
    if !rule.description.is_empty() {
        table.insert("description", toml_edit::value(rule.description.as_str()));
    }
    insert_tags(&mut table, &rule.tags);
    table
}

/// Peers are the `cidr` entries, then the `groups` entries, then the `prefix_lists` entries,
/// in file order (the order validation gives them).
fn remove_peer_from_table(table: &mut dyn TableLike, peer_index: usize) -> Result<(), EditError> {
    let mut index = peer_index;
    let mut key = "prefix_lists";
    for candidate in ["cidr", "groups"] {
        let len = table
            .get(candidate)
            .and_then(Item::as_array)
            .map_or(0, Array::len);
        if index < len {
            key = candidate;
            break;
        }
        index -= len;
    }
    let array = table
        .get_mut(key)
        .and_then(Item::as_array_mut)
        .ok_or_else(|| EditError::Shape(format!("{key} is not an array")))?;
    if index >= array.len() {
        return Err(EditError::NotFound(format!("{key}[{index}]")));
    }
    array.remove(index);
    if array.is_empty() {
        table.remove(key);
    }
    Ok(())
}

/// The id a new object gets: derived from `key` (R9), or, in the rare case that id is taken,
/// the next derived one that is free.
pub fn fresh_id(kind: IdKind, key: &str, taken: impl Fn(&str) -> bool) -> String {
    let first = ids::derived(kind, key);
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|attempt| ids::derived_again(kind, key, attempt))
        .find(|id| !taken(id))
        .unwrap_or(first)
}

/// Whether `net` is one of the default egress peers (R2).
pub fn is_default_egress_peer(net: &IpNet) -> bool {
    net.prefix_len() == 0
}

#[cfg(test)]
mod tests;
