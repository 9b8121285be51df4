//! `sgwall plan`: what a config compiles to, without touching the kernel. Per interface, the
//! effective rules after group resolution; per map, the entries it will hold against capacity.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    compile::{self, CompileError, untracked_index},
    maps::{Capacities, MapError, MemoryMaps, apply_full},
    model::{AttachMode, Config, Hook, Instance, InterfaceMatch},
    pins::state::{RULE_COLUMNS, RuleState, rule_table},
    table::table,
};

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub interfaces: Vec<InterfacePlan>,
    pub maps: Vec<MapPlan>,
    /// Addresses with group memberships (instances and members).
    pub member_addresses: usize,
    /// Distinct membership sets (addresses with the same groups share one).
    pub membership_sets: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct InterfacePlan {
    pub instance: String,
    pub interface: String,
    pub attach: String,
    pub hooks: Vec<String>,
    pub rules: Vec<PlannedRule>,
    pub cidr_entries: usize,
    pub port_entries: usize,
    pub group_bitmaps: usize,
    pub local_addresses: usize,
    /// How the agent finds the interface: by name, by pattern or by MAC.
    pub found_by: InterfaceMatch,
    pub link: LinkPlan,
}

/// What the interface judges before any rule: the statements that make a VM's link work or
/// keep it honest.
#[derive(Clone, Debug, Serialize)]
pub struct LinkPlan {
    /// The source/destination check, and with it the guards (I1, I7).
    pub source_dest_check: bool,
    /// DHCP client traffic and the server's replies pass without rules (I6).
    pub dhcp: bool,
    /// Frames from the instance must carry this MAC (I7).
    pub port_security: Option<String>,
    /// What the source/destination check takes as the instance's own, link-local included (I5).
    pub own_addresses: Vec<String>,
}

impl LinkPlan {
    fn of(instance: &Instance) -> Self {
        Self {
            source_dest_check: instance.checks_addresses(),
            dhcp: instance.dhcp,
            port_security: instance
                .mac
                .filter(|_| instance.checks_addresses())
                .map(|mac| mac.to_string()),
            own_addresses: instance
                .own_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    /// One line of `plan`'s text output.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.source_dest_check {
            parts.push("source/destination check and guards (I1, I7)".to_string());
        }
        if let Some(mac) = &self.port_security {
            parts.push(format!("frames from {mac} only (I7)"));
        }
        if self.dhcp {
            parts.push("DHCP passes (I6)".to_string());
        }
        parts.push(format!(
            "own addresses {} (I5)",
            self.own_addresses.join(", ")
        ));
        parts.join("; ")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedRule {
    #[serde(flatten)]
    pub rule: RuleState,
    /// Protocols whose flows this rule admits without a conntrack entry (C8).
    pub untracked: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapPlan {
    pub map: String,
    /// Entries one policy generation needs.
    pub entries: usize,
    /// Entries while an update holds the old and the new generation side by side.
    pub peak_entries: usize,
    pub capacity: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Map(#[from] MapError),
}

pub fn plan(config: &Config, capacities: &Capacities) -> Result<Plan, PlanError> {
    let compiled = compile::compile(config, &BTreeMap::new())?;
    // Every interface as if present, so the map counts are those of a fully running host.
    let ifindexes = compiled
        .interfaces
        .iter()
        .enumerate()
        .map(|(index, i)| (i.interface.clone(), index as u32 + 1))
        .collect();
    let mut maps = MemoryMaps::default();
    let applied = apply_full(&mut maps, None, compiled.clone(), ifindexes)?;
    let rules = rule_table(config, &applied.policy);

    let interfaces = compiled
        .interfaces
        .iter()
        .map(|interface| {
            let instance = config.instance(&interface.instance);
            let hooks = instance
                .map(|i| {
                    Hook::for_instance(i)
                        .iter()
                        .map(|h| h.name().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let attach = instance.map_or(AttachMode::Port.name(), |i| i.attach.name());
            let planned = rules
                .iter()
                .filter(|r| r.interface == interface.interface)
                .map(|rule| {
                    let dir = rule.direction.index();
                    let untracked = [("tcp", 0usize), ("udp", 1)]
                        .into_iter()
                        .filter(|(_, proto)| {
                            // ACL entries are stateless (N3): no conntrack to skip.
                            rule.acl_action.is_none()
                                && interface.config.untracked[untracked_index(dir, *proto)]
                                    .get(usize::from(rule.position))
                        })
                        .map(|(name, _)| name.to_string())
                        .collect();
                    PlannedRule {
                        rule: rule.clone(),
                        untracked,
                    }
                })
                .collect();
            let group_bitmaps = maps
                .group_bits
                .entries
                .keys()
                .filter(|k| k.ifslot == interface.ifslot)
                .count();
            InterfacePlan {
                instance: interface.instance.clone(),
                interface: interface.interface.clone(),
                attach: attach.to_string(),
                hooks,
                rules: planned,
                cidr_entries: interface.cidrs.len(),
                port_entries: interface.ports.len(),
                group_bitmaps,
                local_addresses: interface.local_addrs.len(),
                found_by: instance.map_or(InterfaceMatch::Name, |i| i.interface_match.clone()),
                link: instance.map_or_else(
                    || LinkPlan {
                        source_dest_check: false,
                        dhcp: false,
                        port_security: None,
                        own_addresses: Vec::new(),
                    },
                    LinkPlan::of,
                ),
            }
        })
        .collect();

    let map = |name: &str, entries: usize, slotted: bool, capacity: usize| MapPlan {
        map: name.to_string(),
        entries,
        peak_entries: if slotted { entries * 2 } else { entries },
        capacity,
    };
    use filter_common::map_names as n;
    let maps_plan = vec![
        map(
            n::IFACES,
            maps.ifaces.entries.len(),
            true,
            capacities.ifaces,
        ),
        map(n::CIDRS, maps.cidrs.entries.len(), true, capacities.cidrs),
        map(n::PORTS, maps.ports.entries.len(), true, capacities.ports),
        map(
            n::GROUP_BITS,
            maps.group_bits.entries.len(),
            true,
            capacities.group_bits,
        ),
        map(
            n::MEMBERS,
            maps.members.entries.len(),
            false,
            capacities.members,
        ),
        map(
            n::LOCAL_ADDRS,
            maps.local_addrs.entries.len(),
            false,
            capacities.local_addrs,
        ),
        map(
            n::ACL_CIDRS,
            maps.acl_cidrs.entries.len(),
            true,
            capacities.acl_cidrs,
        ),
        map(
            n::ACL_PORTS,
            maps.acl_ports.entries.len(),
            true,
            capacities.acl_ports,
        ),
        // Prefix list entries are not slotted, their bits are (like members and group bits).
        map(
            n::PREFIX_LISTS,
            maps.prefix_lists.entries.len(),
            false,
            capacities.prefix_lists,
        ),
        map(
            n::PREFIX_LIST_BITS,
            maps.prefix_list_bits.entries.len(),
            true,
            capacities.prefix_list_bits,
        ),
    ];
    Ok(Plan {
        interfaces,
        maps: maps_plan,
        member_addresses: compiled.members.len(),
        membership_sets: compiled.sets.len(),
    })
}

impl Plan {
    /// Capacity problems: maps a generation (or an update) would overflow.
    pub fn overflows(&self) -> Vec<String> {
        self.maps
            .iter()
            .filter(|m| m.peak_entries > m.capacity)
            .map(|m| {
                format!(
                    "{}: {} entries during an update, capacity {}",
                    m.map, m.peak_entries, m.capacity
                )
            })
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for interface in &self.interfaces {
            let found_by = match &interface.found_by {
                InterfaceMatch::Name => String::new(),
                InterfaceMatch::Glob(_) => ", the one interface matching".to_string(),
                InterfaceMatch::HostMac(_) => ", the one interface with that MAC".to_string(),
            };
            out.push_str(&format!(
                "{} ({}{found_by}: {} via {})\n",
                interface.instance,
                interface.interface,
                interface.attach,
                interface.hooks.join(",")
            ));
            out.push_str(&format!("  link: {}\n", interface.link.describe()));
            let rows: Vec<Vec<String>> = interface
                .rules
                .iter()
                .map(|r| {
                    let mut row = r.rule.columns();
                    row.push(if r.rule.acl_action.is_some() {
                        "stateless (N3)".to_string()
                    } else if r.untracked.is_empty() {
                        "tracked".to_string()
                    } else {
                        format!("untracked {} (C8)", r.untracked.join("/"))
                    });
                    row
                })
                .collect();
            let mut header = RULE_COLUMNS.to_vec();
            header.push("CONNTRACK");
            for line in table(&header, &rows).lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(&format!(
                "  datapath: {} CIDR prefixes, {} port prefixes, {} group bitmaps, {} own addresses\n\n",
                interface.cidr_entries, interface.port_entries, interface.group_bitmaps, interface.local_addresses
            ));
        }
        out.push_str(&format!(
            "{} addresses in {} membership sets\n\n",
            self.member_addresses, self.membership_sets
        ));
        let rows: Vec<Vec<String>> = self
            .maps
            .iter()
            .map(|m| {
                vec![
                    m.map.clone(),
                    m.entries.to_string(),
                    m.peak_entries.to_string(),
                    m.capacity.to_string(),
                    format!(
                        "{:.1}%",
                        100.0 * m.peak_entries as f64 / m.capacity.max(1) as f64
                    ),
                ]
            })
            .collect();
        out.push_str(&table(
            &["MAP", "ENTRIES", "DURING UPDATE", "CAPACITY", "PEAK FILL"],
            &rows,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n2_plan_lists_each_acl_entry_as_a_stateless_row_and_the_acl_maps() {
        let loaded = crate::config::load_str(
            include_str!("../../examples/network-acl.toml"),
            std::path::Path::new("network-acl.toml"),
        )
        .expect("valid example");
        let plan = plan(&loaded.config, &Capacities::default()).expect("plans");
        let web = plan
            .interfaces
            .iter()
            .find(|i| i.instance == "web-1")
            .expect("web-1");
        let deny = web
            .rules
            .iter()
            .find(|r| r.rule.group == "acl:public-acl" && r.rule.rule_index == 90)
            .expect("entry 90");
        assert_eq!(deny.rule.acl_action, Some(crate::model::AclAction::Deny));
        assert_eq!(deny.rule.peer, "198.18.0.0/15");
        assert!(deny.untracked.is_empty());
        // Ingress 90, 100, 110, 120, 130 and egress 100, in number order after the rules.
        let acl_rows: Vec<usize> = web
            .rules
            .iter()
            .filter(|r| r.rule.acl_action.is_some())
            .map(|r| r.rule.rule_index)
            .collect();
        assert_eq!(acl_rows, [90, 100, 110, 120, 130, 100]);
        let ids: std::collections::BTreeSet<u32> = web.rules.iter().map(|r| r.rule.id).collect();
        assert_eq!(
            ids.len(),
            web.rules.len(),
            "every row has its own hit counter"
        );
        let text = plan.render();
        assert!(text.contains("acl:public-acl#90"), "{text}");
        assert!(text.contains("stateless (N3)"), "{text}");
        for map in [
            "SGW_ACL_CIDRS",
            "SGW_ACL_PORTS",
            "SGW_PREFIX_LISTS",
            "SGW_PL_BITS",
        ] {
            let planned = plan.maps.iter().find(|m| m.map == map).expect(map);
            assert!(planned.entries > 0, "{map} holds entries");
        }
    }

    #[test]
    fn plans_the_three_tier_example() {
        let loaded = crate::config::load_str(
            include_str!("../../examples/three-tier.toml"),
            std::path::Path::new("three-tier.toml"),
        )
        .expect("valid example");
        let plan = plan(&loaded.config, &Capacities::default()).expect("plans");
        let db = plan
            .interfaces
            .iter()
            .find(|i| i.instance == "db-1")
            .expect("db-1");
        let mysql = db
            .rules
            .iter()
            .find(|r| r.rule.ports == "3306")
            .expect("the MySQL rule");
        assert_eq!(mysql.rule.peer, "sg:app-sg");
        // app-1 (two addresses) and app-9 (two addresses).
        assert_eq!(mysql.rule.resolved_members, Some(4));
        let web = plan
            .interfaces
            .iter()
            .find(|i| i.instance == "web-1")
            .expect("web-1");
        let http = web
            .rules
            .iter()
            .find(|r| r.rule.ports == "80")
            .expect("HTTP rule");
        assert_eq!(
            http.untracked,
            vec!["tcp"],
            "80 from anywhere with open egress: C8"
        );
        let members = plan
            .maps
            .iter()
            .find(|m| m.map == "SGW_MEMBERS")
            .expect("members map");
        assert_eq!(members.entries, plan.member_addresses);
        assert!(plan.overflows().is_empty());
        let text = plan.render();
        assert!(
            text.contains("untracked tcp (C8)") && text.contains("SGW_CIDRS"),
            "{text}"
        );
    }

    #[test]
    fn shows_what_each_link_judges_before_the_rules_i5_i6_i7() {
        let text = r#"
[[security_group]]
name = "vm"

[[instance]]
name = "vm-1"
mac = "52:54:00:12:34:56"
addresses = ["10.0.6.10"]
security_groups = ["vm"]

[[instance]]
name = "nat-1"
interface = "tap101i*"
addresses = ["10.0.7.10"]
security_groups = ["vm"]
source_dest_check = false
dhcp = false
"#;
        let loaded =
            crate::config::load_str(text, std::path::Path::new("vms.toml")).expect("valid config");
        let plan = plan(&loaded.config, &Capacities::default()).expect("plans");
        let vm = &plan.interfaces[0];
        assert!(vm.link.source_dest_check && vm.link.dhcp);
        assert_eq!(vm.link.port_security.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(
            vm.link.own_addresses,
            vec!["10.0.6.10", "fe80::5054:ff:fe12:3456"]
        );
        assert_eq!(
            vm.local_addresses, 2,
            "the link-local address is in the map (I5)"
        );
        let nat = &plan.interfaces[1];
        assert!(!nat.link.source_dest_check && !nat.link.dhcp);
        let rendered = plan.render();
        assert!(
            rendered.contains("vm-1 (mac fe:54:00:12:34:56, the one interface with that MAC")
                && rendered.contains("frames from 52:54:00:12:34:56 only (I7); DHCP passes (I6)")
                && rendered.contains("nat-1 (tap101i*, the one interface matching"),
            "{rendered}"
        );
    }

    #[test]
    fn reports_maps_an_update_would_overflow() {
        let loaded = crate::config::load_str(
            include_str!("../../examples/three-tier.toml"),
            std::path::Path::new("three-tier.toml"),
        )
        .expect("valid example");
        let tiny = Capacities {
            cidrs: 3,
            ..Capacities::default()
        };
        let overflows = plan(&loaded.config, &tiny).expect("plans").overflows();
        assert_eq!(overflows.len(), 1);
        assert!(overflows[0].starts_with("SGW_CIDRS:"), "{overflows:?}");
    }
}
