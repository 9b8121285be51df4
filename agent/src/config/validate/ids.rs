//! R9 ids and AWS tags: an id the config sets must be well formed, and no two objects may share
//! an id, whether written or derived; tags follow AWS's limits.

use super::first_seen::FirstSeen;
use crate::{
    config::{
        diagnostic::{Diagnostics, Location},
        document::{Located, RawTags},
        messages::ValidationError,
    },
    ids::{self, IdKind},
    model::Tags,
};

/// AWS's tag limits.
const MAX_TAGS: usize = 50;
const MAX_TAG_KEY_CHARS: usize = 128;
const MAX_TAG_VALUE_CHARS: usize = 256;

/// The id written in the config, when it is well formed; otherwise `derived`. `owner` is
/// where the object is, for the id derived for it.
pub(super) fn id_or_derived(
    kind: IdKind,
    written: Option<&Located<String>>,
    owner: &Location,
    derived: impl FnOnce() -> String,
    diagnostics: &mut Diagnostics,
) -> CheckedId {
    let derived_for_owner = |value| CheckedId {
        value,
        at: owner.clone(),
        written: false,
    };
    match written {
        Some(id) if ids::is_well_formed(kind, &id.value) => CheckedId {
            value: id.value.clone(),
            at: id.at.clone(),
            written: true,
        },
        Some(id) => {
            diagnostics.error(
                &id.at,
                ValidationError::InvalidId {
                    kind: kind.noun(),
                    prefix: kind.prefix(),
                    id: id.value.clone(),
                },
            );
            derived_for_owner(derived())
        }
        None => derived_for_owner(derived()),
    }
}

/// An id and where it came from: written at `at`, or derived for the object at `at`.
pub(crate) struct CheckedId {
    pub value: String,
    pub at: Location,
    pub written: bool,
}

/// R9: no written id is used twice, and no derived id equals a written one. Two derived ids
/// are equal only when their keys are (a duplicate name or rule, reported as such), so they are
/// not reported again here.
pub(super) fn check_unique<'a>(
    all: impl IntoIterator<Item = &'a CheckedId>,
    diagnostics: &mut Diagnostics,
) {
    let (written, derived): (Vec<&CheckedId>, Vec<&CheckedId>) =
        all.into_iter().partition(|id| id.written);
    let mut first_seen = FirstSeen::default();
    for id in written.into_iter().chain(derived) {
        if id.written || first_seen.contains(&id.value) {
            first_seen.report_again(id.value.clone(), &id.at, diagnostics, |first| {
                ValidationError::DuplicateId {
                    id: id.value.clone(),
                    first,
                }
            });
        }
    }
}

pub(super) fn check_tags(raw: Option<&RawTags>, diagnostics: &mut Diagnostics) -> Tags {
    let Some(raw) = raw else {
        return Tags::new();
    };
    if raw.value.len() > MAX_TAGS {
        diagnostics.error(
            &raw.at,
            ValidationError::TooManyTags {
                count: raw.value.len(),
            },
        );
    }
    let mut tags = Tags::new();
    for (key, value) in &raw.value {
        let length = key.value.chars().count();
        if length == 0 || length > MAX_TAG_KEY_CHARS {
            diagnostics.error(&key.at, ValidationError::TagKeyLength { length });
        } else if key.value.to_ascii_lowercase().starts_with("aws:") {
            diagnostics.error(
                &key.at,
                ValidationError::TagKeyReserved {
                    key: key.value.clone(),
                },
            );
        }
        let length = value.value.chars().count();
        if length > MAX_TAG_VALUE_CHARS {
            diagnostics.error(&value.at, ValidationError::TagValueTooLong { length });
        }
        tags.insert(key.value.clone(), value.value.clone());
    }
    tags
}
