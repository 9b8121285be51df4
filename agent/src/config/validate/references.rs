//! G5: every security group a rule references or an instance or member attaches exists, and
//! an attachment lists each group once.

use std::collections::BTreeSet;

use super::first_seen::FirstSeen;
use crate::{
    config::{
        diagnostic::Diagnostics,
        document::Located,
        messages::{RuleName, ValidationError},
    },
    model::Peer,
};

/// Every group name written, valid or not: a reference to a group that exists but has other
/// errors is not also reported as unknown.
pub(super) struct KnownGroups(BTreeSet<String>);

impl KnownGroups {
    pub fn new(names: BTreeSet<String>) -> Self {
        Self(names)
    }

    /// A rule's group peer, if the group exists.
    pub fn rule_peer(
        &self,
        group: &Located<String>,
        rule: &RuleName,
        diagnostics: &mut Diagnostics,
    ) -> Option<Located<Peer>> {
        if self.0.contains(&group.value) {
            return Some(Located {
                value: Peer::Group(group.value.clone()),
                at: group.at.clone(),
            });
        }
        diagnostics.error(
            &group.at,
            ValidationError::UnknownGroupReference {
                rule: rule.clone(),
                group: group.value.clone(),
            },
        );
        None
    }

    /// The groups attached to an instance or member (`owner`): each exists and is listed once.
    pub fn check_attached(
        &self,
        raw: &Located<Vec<Located<String>>>,
        owner: &str,
        diagnostics: &mut Diagnostics,
    ) -> Vec<String> {
        if raw.value.is_empty() {
            diagnostics.error(&raw.at, ValidationError::NoSecurityGroups);
        }
        let mut first_seen = FirstSeen::default();
        for group in &raw.value {
            if !self.0.contains(&group.value) {
                diagnostics.error(
                    &group.at,
                    ValidationError::UnknownAttachedGroup {
                        owner: owner.to_string(),
                        group: group.value.clone(),
                    },
                );
            }
            first_seen.report_again(group.value.as_str(), &group.at, diagnostics, |first| {
                ValidationError::DuplicateAttachedGroup {
                    group: group.value.clone(),
                    first,
                }
            });
        }
        raw.value.iter().map(|group| group.value.clone()).collect()
    }
}
