//! The native config as TOML text: a provenance comment, raised quotas when AWS has more than
//! the defaults, then groups, instances and members, with what the import changed noted next
//! to the group it changed.

use super::{
    convert::{NativeGroup, NativeInterface, NativeRule, Selector},
    errors::ImportWarning,
    network::{NativeAclEntry, NativeNetwork},
};
use crate::model::{Protocol, Quotas};

/// Where the input came from, for the provenance comment: the importer (`sgwall import TOOL`)
/// and (command, path) of each file read.
pub(crate) struct Sources {
    pub tool: &'static str,
    pub files: Vec<(&'static str, String)>,
}

/// Quotas large enough for what AWS has, when its defaults are not (AWS quotas can be raised).
fn quotas_needed(
    groups: &[NativeGroup],
    interfaces: &[NativeInterface],
    network: &NativeNetwork,
) -> Option<Quotas> {
    let defaults = Quotas::default();
    let mut rules_needed = 0;
    for group in groups {
        let directions = [Some(&group.ingress), group.egress.as_ref()];
        for rules in directions.into_iter().flatten() {
            let (mut ipv4, mut ipv6) = (0, 0);
            for rule in rules {
                for cidr in &rule.cidrs {
                    if cidr.contains(':') {
                        ipv6 += 1;
                    } else {
                        ipv4 += 1;
                    }
                }
                ipv4 += rule.groups.len();
                ipv6 += rule.groups.len();
                // P1: a reference counts as the list's max entries (R7).
                let named = |name: &String| network.prefix_lists.iter().find(|l| &l.name == name);
                for list in rule.prefix_lists.iter().filter_map(named) {
                    let entries = usize::try_from(list.max_entries).unwrap_or(usize::MAX);
                    if list.family == "IPv6" {
                        ipv6 += entries;
                    } else {
                        ipv4 += entries;
                    }
                }
            }
            rules_needed = rules_needed.max(ipv4).max(ipv6);
        }
    }
    let groups_needed = interfaces
        .iter()
        .filter(|interface| interface.interface.is_some())
        .map(|interface| interface.groups.len())
        .max()
        .unwrap_or(0);
    let rules_per_group = u32::try_from(rules_needed).unwrap_or(u32::MAX);
    let groups_per_interface = u32::try_from(groups_needed).unwrap_or(u32::MAX);
    let acl_entries = network
        .acls
        .iter()
        .map(|acl| acl.ingress.len().max(acl.egress.len()))
        .max()
        .unwrap_or(0);
    let network_acl_rules = u32::try_from(acl_entries)
        .unwrap_or(u32::MAX)
        .max(defaults.network_acl_rules);
    if rules_per_group <= defaults.rules_per_group
        && groups_per_interface <= defaults.groups_per_interface
        && network_acl_rules == defaults.network_acl_rules
    {
        return None;
    }
    let rules_per_group = rules_per_group.max(defaults.rules_per_group);
    // Keep groups x rules within 1000 (R7) when what is needed allows it.
    let groups_room = (1000 / rules_per_group).min(defaults.groups_per_interface);
    Some(Quotas {
        groups_per_interface: groups_per_interface.max(groups_room).max(1),
        rules_per_group,
        network_acl_rules,
    })
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

/// Comments must stay on one line whatever a path or description holds.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn write_config(
    groups: &[NativeGroup],
    interfaces: &[NativeInterface],
    network: &NativeNetwork,
    warnings: &[ImportWarning],
    sources: &Sources,
) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&format!(
        "# Imported by `sgwall import {}` from",
        sources.tool
    ));
    let width = sources
        .files
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    for (command, path) in &sources.files {
        line(&format!(
            "#   {:<width$} {}",
            format!("{command}:"),
            comment_safe(path),
            width = width + 1
        ));
    }
    line("# Groups keep their AWS names; rules name peer groups instead of their ids. A group");
    line("# without `egress` has the AWS default egress (R2). Check with `sgwall check`.");

    if let Some(quotas) = quotas_needed(groups, interfaces, network) {
        line("");
        line("# Raised to fit the imported groups and network ACLs (R7, N2).");
        line("[quotas]");
        line(&format!(
            "groups_per_interface = {}",
            quotas.groups_per_interface
        ));
        line(&format!("rules_per_group = {}", quotas.rules_per_group));
        if quotas.network_acl_rules != Quotas::default().network_acl_rules {
            line(&format!("network_acl_rules = {}", quotas.network_acl_rules));
        }
    }

    write_network(network, &mut line);

    for group in groups {
        line("");
        let vpc = group
            .vpc_id
            .as_ref()
            .map(|vpc| format!(" in {vpc}"))
            .unwrap_or_default();
        line(&format!(
            "# {}{}",
            comment_safe(&group.group_id),
            comment_safe(&vpc)
        ));
        // What the import changed or left out stays visible next to the group.
        for warning in warnings
            .iter()
            .filter(|w| w.group_id() == Some(group.group_id.as_str()))
        {
            line(&format!("# import: {}", comment_safe(&warning.to_string())));
        }
        line("[[security_group]]");
        line(&format!("name = {}", quoted(&group.name)));
        if !group.description.is_empty() {
            line(&format!("description = {}", quoted(&group.description)));
        }
        if group.egress.as_ref().is_some_and(Vec::is_empty) {
            line("egress = []");
        }
        let directions = [
            ("ingress", Some(&group.ingress)),
            ("egress", group.egress.as_ref()),
        ];
        for (direction, rules) in directions {
            for rule in rules.into_iter().flatten() {
                line("");
                line(&format!("  [[security_group.{direction}]]"));
                write_rule(rule, &mut line);
            }
        }
    }

    for interface in interfaces {
        line("");
        if !interface.comment.is_empty() {
            line(&format!("# {}", comment_safe(&interface.comment)));
        }
        match &interface.interface {
            Some(local) => {
                line("[[instance]]");
                line(&format!("name = {}", quoted(&interface.eni)));
                line(&format!("interface = {}", quoted(local)));
            }
            None => {
                line("[[member]]");
                line(&format!("name = {}", quoted(&interface.eni)));
            }
        }
        line(&format!(
            "addresses = {}",
            quoted_list(&interface.addresses)
        ));
        line(&format!(
            "security_groups = {}",
            quoted_list(&interface.groups)
        ));
        if interface.interface.is_some() {
            if let Some(check) = interface.source_dest_check {
                line(&format!("source_dest_check = {check}"));
            }
            if !interface.conntrack.is_empty() {
                let settings: Vec<String> = interface
                    .conntrack
                    .iter()
                    .map(|(key, value)| format!("{key} = {value}"))
                    .collect();
                line(&format!("conntrack = {{ {} }}", settings.join(", ")));
            }
        }
    }
    out
}

fn write_rule(rule: &NativeRule, line: &mut impl FnMut(&str)) {
    match rule.protocol {
        Protocol::Number(number) => line(&format!("  protocol = {number}")),
        protocol => line(&format!("  protocol = {}", quoted(&protocol.to_string()))),
    }
    match rule.selector {
        Selector::None => {}
        Selector::Ports { from, to } if from == to => line(&format!("  ports = {from}")),
        Selector::Ports { from, to } => line(&format!("  ports = \"{from}-{to}\"")),
        Selector::Icmp { icmp_type, code } => {
            if icmp_type != -1 {
                line(&format!("  icmp_type = {icmp_type}"));
            }
            if code != -1 {
                line(&format!("  icmp_code = {code}"));
            }
        }
    }
    if !rule.cidrs.is_empty() {
        line(&format!("  cidr = {}", quoted_list(&rule.cidrs)));
    }
    if !rule.groups.is_empty() {
        line(&format!("  groups = {}", quoted_list(&rule.groups)));
    }
    if !rule.prefix_lists.is_empty() {
        line(&format!(
            "  prefix_lists = {}",
            quoted_list(&rule.prefix_lists)
        ));
    }
    if !rule.description.is_empty() {
        line(&format!("  description = {}", quoted(&rule.description)));
    }
}

/// Prefix lists (P1), then network ACLs and subnets (N1, N2), before the groups that name them.
fn write_network(network: &NativeNetwork, line: &mut impl FnMut(&str)) {
    for list in &network.prefix_lists {
        line("");
        line("[[prefix_list]]");
        line(&format!("name = {}", quoted(&list.name)));
        if is_aws_id(&list.id, "pl-") {
            line(&format!("id = {}", quoted(&list.id)));
        }
        line(&format!("family = {}", quoted(&list.family)));
        line(&format!("max_entries = {}", list.max_entries));
        line("entries = [");
        for (cidr, description) in &list.entries {
            if description.is_empty() {
                line(&format!("  {{ cidr = {} }},", quoted(cidr)));
            } else {
                line(&format!(
                    "  {{ cidr = {}, description = {} }},",
                    quoted(cidr),
                    quoted(description)
                ));
            }
        }
        line("]");
    }
    for acl in &network.acls {
        line("");
        if !acl.comment.is_empty() {
            line(&format!("# {}", comment_safe(&acl.comment)));
        }
        line("# AWS's final entry (32767, `*`) denies what no entry admits; sgwall's does too.");
        line("[[network_acl]]");
        line(&format!("name = {}", quoted(&acl.id)));
        if is_aws_id(&acl.id, "acl-") {
            line(&format!("id = {}", quoted(&acl.id)));
        }
        for (direction, entries) in [("ingress", &acl.ingress), ("egress", &acl.egress)] {
            for entry in entries {
                line("");
                line(&format!("  [[network_acl.{direction}]]"));
                write_acl_entry(entry, line);
            }
        }
    }
    for subnet in &network.subnets {
        line("");
        if !subnet.comment.is_empty() {
            line(&format!("# {}", comment_safe(&subnet.comment)));
        }
        line("[[subnet]]");
        line(&format!("name = {}", quoted(&subnet.id)));
        line(&format!("cidr = {}", quoted_list(&subnet.cidrs)));
        line(&format!("network_acl = {}", quoted(&subnet.acl)));
    }
}

/// Whether `id` is an AWS id sgwall accepts: in a Terraform plan, an object not created yet
/// has its address instead, and is then known by name only.
fn is_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn write_acl_entry(entry: &NativeAclEntry, line: &mut impl FnMut(&str)) {
    line(&format!("  number = {}", entry.number));
    line(&format!(
        "  action = \"{}\"",
        if entry.allow { "allow" } else { "deny" }
    ));
    match entry.protocol {
        Protocol::Number(number) => line(&format!("  protocol = {number}")),
        protocol => line(&format!("  protocol = {}", quoted(&protocol.to_string()))),
    }
    match entry.ports {
        Some((from, to)) if from == to => line(&format!("  ports = {from}")),
        Some((from, to)) => line(&format!("  ports = \"{from}-{to}\"")),
        None => {}
    }
    if let Some((icmp_type, code)) = entry.icmp {
        if icmp_type != -1 {
            line(&format!("  icmp_type = {icmp_type}"));
        }
        if code != -1 {
            line(&format!("  icmp_code = {code}"));
        }
    }
    line(&format!("  cidr = {}", quoted(&entry.cidr)));
}
