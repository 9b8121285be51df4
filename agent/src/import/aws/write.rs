//! The native config as TOML text: a provenance comment, raised quotas when AWS has more than
//! the defaults, then groups, instances and members, with what the import changed noted next
//! to the group it changed.

use super::{
    convert::{NativeGroup, NativeInterface, NativeRule, Selector},
    errors::ImportWarning,
};
use crate::{
    ids::{self, IdKind},
    model::{Protocol, Quotas},
};

/// Where the input came from, for the provenance comment.
pub(super) struct Sources {
    pub security_groups: String,
    pub network_interfaces: Option<String>,
}

/// Quotas large enough for what AWS has, when its defaults are not (AWS quotas can be raised).
fn quotas_needed(groups: &[NativeGroup], interfaces: &[NativeInterface]) -> Option<Quotas> {
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
    if rules_per_group <= defaults.rules_per_group
        && groups_per_interface <= defaults.groups_per_interface
    {
        return None;
    }
    let rules_per_group = rules_per_group.max(defaults.rules_per_group);
    // Keep groups x rules within 1000 (R7) when what is needed allows it.
    let groups_room = (1000 / rules_per_group).min(defaults.groups_per_interface);
    Some(Quotas {
        groups_per_interface: groups_per_interface.max(groups_room).max(1),
        rules_per_group,
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
    warnings: &[ImportWarning],
    sources: &Sources,
) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line("# Imported by `sgwall import aws` from");
    line(&format!(
        "#   describe-security-groups:    {}",
        comment_safe(&sources.security_groups)
    ));
    if let Some(path) = &sources.network_interfaces {
        line(&format!(
            "#   describe-network-interfaces: {}",
            comment_safe(path)
        ));
    }
    line("# Groups keep their AWS names; rules name peer groups instead of their ids. A group");
    line("# without `egress` has the AWS default egress (R2). Check with `sgwall check`.");
    line("# Groups and interfaces keep their AWS ids (R9); rules get derived ids, as");
    line("# describe-security-groups does not list theirs.");

    // One VPC id for all groups: the config's VPC is the one the EC2 API answers with.
    let mut vpcs: Vec<&str> = groups.iter().filter_map(|g| g.vpc_id.as_deref()).collect();
    vpcs.sort_unstable();
    vpcs.dedup();
    if let [vpc] = vpcs[..]
        && ids::is_well_formed(IdKind::Vpc, vpc)
    {
        line("");
        line("[vpc]");
        line(&format!("id = {}", quoted(vpc)));
    }

    if let Some(quotas) = quotas_needed(groups, interfaces) {
        line("");
        line("# Raised to fit the imported groups (R7).");
        line("[quotas]");
        line(&format!(
            "groups_per_interface = {}",
            quotas.groups_per_interface
        ));
        line(&format!("rules_per_group = {}", quotas.rules_per_group));
    }

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
        if ids::is_well_formed(IdKind::SecurityGroup, &group.group_id) {
            line(&format!("id = {}", quoted(&group.group_id)));
        }
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
            if ids::is_well_formed(IdKind::NetworkInterface, &interface.eni) {
                line(&format!("id = {}", quoted(&interface.eni)));
            }
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
    if !rule.description.is_empty() {
        line(&format!("  description = {}", quoted(&rule.description)));
    }
}
