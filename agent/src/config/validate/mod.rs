//! Turns the raw document into checked values: parses protocols, ports, CIDRs and addresses,
//! resolves references, enforces quotas and uniqueness. Every problem is reported; an item with
//! a problem is left out of the result, which is only turned into a `model::Config` when no error
//! was reported at all.
//!
//! One file per concern: `rules` (groups and their rules) with `selector` (R3 protocol, ports,
//! ICMP) and `addresses` (R5 CIDRs, host addresses); `instances` (instances, members, lab
//! clients) with `settings` (attach mode, hook, conntrack C5/C6); `names` (group names, text
//! lengths, ids, and the one-use registry of names, interfaces and addresses); `references`
//! (G5); `quotas` (R7); `prefix_lists` (P1); `network_acls` (N1, N2: ACLs, subnets, and the
//! subnet of each instance). This file only runs them in order.

mod addresses;
mod checked;
mod first_seen;
mod ids;
mod instances;
mod names;
mod network_acls;
mod prefix_lists;
mod quotas;
mod references;
mod rules;
mod selector;
mod settings;

pub(crate) use checked::{Checked, CheckedGroup, CheckedRule};
pub(crate) use names::derived_id;

use super::{
    diagnostic::Diagnostics,
    document::{RawDocument, RawVpc},
};
use crate::{
    ids::IdKind,
    model::{DEFAULT_ACL_NAME, Direction, NetworkAcl, Vpc},
};
use names::Registry;
use references::KnownGroups;

pub(crate) fn validate(raw: &RawDocument, diagnostics: &mut Diagnostics) -> Checked {
    let quotas = quotas::check_quotas(raw.quotas.as_ref(), diagnostics);
    let known_groups = KnownGroups::new(names::check_group_names(&raw.groups, diagnostics));
    let (prefix_lists, known_prefix_lists) =
        prefix_lists::check_prefix_lists(&raw.prefix_lists, diagnostics);
    let known = rules::Known {
        groups: &known_groups,
        prefix_lists: &known_prefix_lists,
    };
    let groups: Vec<CheckedGroup> = raw
        .groups
        .iter()
        .filter_map(|group| rules::check_group(group, &known, quotas, diagnostics))
        .collect();

    let mut registry = Registry::default();
    let instances: Vec<_> = raw
        .instances
        .iter()
        .filter_map(|instance| {
            instances::check_instance(instance, &known_groups, quotas, &mut registry, diagnostics)
        })
        .collect();
    let members = raw
        .members
        .iter()
        .filter_map(|member| {
            instances::check_member(member, &known_groups, &mut registry, diagnostics)
        })
        .collect();
    let lab_clients = raw
        .lab_clients
        .iter()
        .filter_map(|client| instances::check_lab_client(client, &mut registry, diagnostics))
        .collect();
    quotas::check_interface_rule_totals(&instances, &groups, diagnostics);
    let vpc = check_vpc(raw.vpc.as_ref(), diagnostics);
    check_unique_ids(&groups, &instances, diagnostics);

    let acls = network_acls::check_network_acls(&raw.network_acls, quotas, diagnostics);
    let subnets = network_acls::check_subnets(&raw.subnets, &acls, diagnostics);
    network_acls::check_instance_subnets(&instances, &subnets, diagnostics);
    let mut network_acls = acls.acls;
    let uses_implicit_default = acls.default.is_none()
        && subnets
            .iter()
            .any(|subnet| subnet.network_acl == DEFAULT_ACL_NAME);
    if uses_implicit_default {
        network_acls.push(NetworkAcl {
            name: DEFAULT_ACL_NAME.to_string(),
            id: derived_id("acl", DEFAULT_ACL_NAME),
            is_default: true,
            ingress: NetworkAcl::default_entries(),
            egress: NetworkAcl::default_entries(),
        });
    }

    Checked {
        quotas,
        groups,
        instances,
        members,
        lab_clients,
        lab_dhcp: raw.lab_dhcp.as_ref().is_some_and(|v| v.value),
        prefix_lists,
        subnets,
        network_acls,
        vpc,
    }
}

fn check_vpc(raw: Option<&RawVpc>, diagnostics: &mut Diagnostics) -> Vpc {
    let default = Vpc::default();
    let Some(raw) = raw else {
        return default;
    };
    Vpc {
        id: raw.id.as_ref().map_or(default.id.clone(), |written| {
            let at = &written.at;
            ids::id_or_derived(IdKind::Vpc, Some(written), at, || default.id, diagnostics).value
        }),
        cidr: raw
            .cidr
            .as_ref()
            .and_then(|cidr| addresses::check_cidr(cidr, diagnostics)),
    }
}

/// R9: no two groups, rules or interfaces share an id, written or derived.
fn check_unique_ids(
    groups: &[CheckedGroup],
    instances: &[checked::CheckedInstance],
    diagnostics: &mut Diagnostics,
) {
    let rule_ids = groups.iter().flat_map(|group| {
        Direction::BOTH
            .into_iter()
            .flat_map(move |direction| group.rules(direction))
            .flat_map(|rule| &rule.ids)
    });
    let all = groups
        .iter()
        .map(|group| &group.id)
        .chain(rule_ids)
        .chain(instances.iter().map(|instance| &instance.id));
    ids::check_unique(all, diagnostics);
}
