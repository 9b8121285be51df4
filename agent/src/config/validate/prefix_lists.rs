//! P1: managed prefix lists (name, id, family, max entries, entries), and what rules need to
//! know of them: which names exist, their family (a rule's protocol must be able to match it)
//! and their max entries (what a reference counts for in R7's quotas).

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::{
    addresses::check_cidr,
    first_seen::FirstSeen,
    names::{check_description, check_id, check_names, derived_id},
};
use crate::{
    config::{
        diagnostic::Diagnostics,
        document::{Located, RawPrefixList},
        messages::{RuleName, ValidationError},
    },
    model::{AddressFamily, Peer, PrefixList, PrefixListEntry},
};

/// AWS caps a prefix list's max entries at 1000.
const MAX_ENTRIES_LIMIT: i64 = 1000;

/// What a rule may learn of a prefix list that was written, valid or not.
#[derive(Clone, Copy, Debug)]
pub(super) struct ListFacts {
    pub family: Option<AddressFamily>,
    /// What a reference counts for in R7's quotas; 1 while the value itself is invalid.
    pub weight: usize,
}

/// Every prefix list name written (and the id of each), so a rule can name a list by either
/// and a reference to a list that has other errors is not also reported as unknown.
#[derive(Default)]
pub(super) struct KnownPrefixLists {
    by_name: BTreeMap<String, ListFacts>,
    name_of_id: BTreeMap<String, String>,
}

impl KnownPrefixLists {
    pub fn facts(&self, name: &str) -> Option<ListFacts> {
        self.by_name.get(name).copied()
    }

    /// A rule's prefix list peer (by name or `pl-` id), if the list exists.
    pub fn rule_peer(
        &self,
        list: &Located<String>,
        rule: &RuleName,
        diagnostics: &mut Diagnostics,
    ) -> Option<Located<Peer>> {
        let name = match self.name_of_id.get(&list.value) {
            Some(name) => name,
            None if self.by_name.contains_key(&list.value) => &list.value,
            None => {
                diagnostics.error(
                    &list.at,
                    ValidationError::UnknownPrefixListReference {
                        rule: rule.clone(),
                        prefix_list: list.value.clone(),
                    },
                );
                return None;
            }
        };
        Some(Located {
            value: Peer::PrefixList(name.clone()),
            at: list.at.clone(),
        })
    }
}

/// Checks every prefix list; returns the valid ones and what rules may know of all of them.
pub(super) fn check_prefix_lists(
    raw: &[RawPrefixList],
    diagnostics: &mut Diagnostics,
) -> (Vec<PrefixList>, KnownPrefixLists) {
    check_names(
        "prefix list",
        raw.iter().filter_map(|list| list.name.as_ref()),
        diagnostics,
    );
    let mut known = KnownPrefixLists::default();
    let mut ids = FirstSeen::default();
    let mut lists = Vec::new();
    for list in raw {
        let family = list
            .family
            .as_ref()
            .and_then(|family| check_family(family, diagnostics));
        let max_entries = list
            .max_entries
            .as_ref()
            .and_then(|max| check_max_entries(max, diagnostics));
        if let Some(name) = &list.name {
            known.by_name.insert(
                name.value.clone(),
                ListFacts {
                    family,
                    weight: max_entries.map_or(1, |max| max as usize),
                },
            );
            if let Some(id) = &list.id {
                known
                    .name_of_id
                    .insert(id.value.clone(), name.value.clone());
            }
        }
        if let Some(id) = &list.id {
            check_id("prefix list", "pl", id, &mut ids, diagnostics);
        }
        let checked = diagnostics.unless_errors(|diagnostics| {
            let entries = check_entries(list, family, max_entries, diagnostics);
            let name = list.name.as_ref()?.value.clone();
            Some(PrefixList {
                id: list
                    .id
                    .as_ref()
                    .map_or_else(|| derived_id("pl", &name), |id| id.value.clone()),
                name,
                family: family?,
                max_entries: max_entries?,
                entries,
            })
        });
        lists.extend(checked);
    }
    (lists, known)
}

fn check_family(raw: &Located<String>, diagnostics: &mut Diagnostics) -> Option<AddressFamily> {
    match raw.value.to_ascii_lowercase().as_str() {
        "ipv4" => Some(AddressFamily::V4),
        "ipv6" => Some(AddressFamily::V6),
        _ => {
            diagnostics.error(
                &raw.at,
                ValidationError::UnknownFamily {
                    value: raw.value.clone(),
                },
            );
            None
        }
    }
}

fn check_max_entries(raw: &Located<i64>, diagnostics: &mut Diagnostics) -> Option<u32> {
    if (1..=MAX_ENTRIES_LIMIT).contains(&raw.value) {
        return u32::try_from(raw.value).ok();
    }
    diagnostics.error(
        &raw.at,
        ValidationError::MaxEntriesOutOfRange { value: raw.value },
    );
    None
}

/// Each entry a CIDR of the list's family, each once, no more of them than `max_entries`.
fn check_entries(
    list: &RawPrefixList,
    family: Option<AddressFamily>,
    max_entries: Option<u32>,
    diagnostics: &mut Diagnostics,
) -> Vec<PrefixListEntry> {
    let Some(raw_entries) = &list.entries else {
        return Vec::new();
    };
    let mut first_seen: FirstSeen<IpNet> = FirstSeen::default();
    let mut entries = Vec::new();
    for entry in &raw_entries.value {
        let Some(cidr) = &entry.cidr else {
            continue;
        };
        if let Some(description) = &entry.description {
            check_description(description, diagnostics);
        }
        let Some(net) = check_cidr(cidr, diagnostics) else {
            continue;
        };
        if let Some(family) = family
            && AddressFamily::of(&net) != family
        {
            diagnostics.error(
                &cidr.at,
                ValidationError::PrefixListEntryFamily {
                    cidr: net.to_string(),
                    family,
                },
            );
            continue;
        }
        first_seen.report_again(net, &cidr.at, diagnostics, |first| {
            ValidationError::DuplicatePrefixListEntry {
                cidr: net.to_string(),
                first,
            }
        });
        entries.push(PrefixListEntry {
            cidr: net,
            description: entry
                .description
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
        });
    }
    if let (Some(max_entries), Some(name)) = (max_entries, &list.name)
        && entries.len() > max_entries as usize
    {
        diagnostics.error(
            &raw_entries.at,
            ValidationError::PrefixListOverMaxEntries {
                name: name.value.clone(),
                count: entries.len(),
                max_entries,
            },
        );
    }
    entries
}
