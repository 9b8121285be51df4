//! What may be written only once (a group name, an interface, a rule in its group), and where
//! it was written first, so that the message about the second one can point at the first.

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::Hash,
};

use crate::config::{
    diagnostic::{Diagnostics, Location},
    messages::ValidationError,
};

pub(super) struct FirstSeen<K>(HashMap<K, Location>);

impl<K> Default for FirstSeen<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Eq + Hash> FirstSeen<K> {
    /// Records `key` written at `at`; when it was written before, reports `duplicate` of how
    /// messages name the first place, at `at`.
    pub fn report_again(
        &mut self,
        key: K,
        at: &Location,
        diagnostics: &mut Diagnostics,
        duplicate: impl FnOnce(String) -> ValidationError,
    ) {
        match self.0.entry(key) {
            Entry::Occupied(first) => {
                let first = diagnostics.describe(first.get());
                diagnostics.error(at, duplicate(first));
            }
            Entry::Vacant(slot) => {
                slot.insert(at.clone());
            }
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.0.contains_key(key)
    }

    pub fn into_keys(self) -> impl Iterator<Item = K> {
        self.0.into_keys()
    }
}
