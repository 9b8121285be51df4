//! Names and text: group names (unique, 1 to 255 characters), descriptions (R8), interface
//! names as Linux allows them, and the registry that gives each name, interface and address of
//! instances, members and lab clients to one owner.

use std::{collections::BTreeSet, net::IpAddr};

use super::{addresses::check_address, first_seen::FirstSeen};
use crate::{
    config::{
        diagnostic::{Diagnostics, Location},
        document::{Located, RawGroup},
        messages::ValidationError,
    },
    model::{InterfaceMatch, MacAddr},
};

/// R8, and the AWS limit on group names.
const MAX_TEXT_CHARS: usize = 255;
/// Linux IFNAMSIZ (16) minus the terminating NUL.
const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Reports bad and duplicate names of one kind of object (security groups, prefix lists,
/// network ACLs, subnets); returns every name written, so that a reference to an object that
/// exists but has other errors is not also reported as unknown.
pub(super) fn check_names<'a>(
    kind: &'static str,
    names: impl IntoIterator<Item = &'a Located<String>>,
    diagnostics: &mut Diagnostics,
) -> BTreeSet<String> {
    let mut first_seen = FirstSeen::default();
    for name in names {
        let length = name.value.chars().count();
        if length == 0 || length > MAX_TEXT_CHARS {
            diagnostics.error(&name.at, ValidationError::NameLength { kind, length });
        }
        first_seen.report_again(name.value.as_str(), &name.at, diagnostics, |first| {
            ValidationError::DuplicateObjectName {
                kind,
                name: name.value.clone(),
                first,
            }
        });
    }
    first_seen.into_keys().map(str::to_string).collect()
}

/// Group names, as [`check_names`] checks them.
pub(super) fn check_group_names(
    groups: &[RawGroup],
    diagnostics: &mut Diagnostics,
) -> BTreeSet<String> {
    check_names(
        "security group",
        groups.iter().filter_map(|group| group.name.as_ref()),
        diagnostics,
    )
}

/// An AWS-style id (`pl-…`, `acl-…`): the prefix and 8 or 17 lowercase hex digits, used once.
pub(super) fn check_id(
    kind: &'static str,
    prefix: &'static str,
    id: &Located<String>,
    first_seen: &mut FirstSeen<String>,
    diagnostics: &mut Diagnostics,
) {
    let hex = id
        .value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'));
    let well_formed = hex.is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        diagnostics.error(
            &id.at,
            ValidationError::InvalidId {
                kind,
                prefix,
                id: id.value.clone(),
            },
        );
        return;
    }
    first_seen.report_again(id.value.clone(), &id.at, diagnostics, |first| {
        ValidationError::DuplicateObjectId {
            kind,
            id: id.value.clone(),
            first,
        }
    });
}

/// The id of an object the config gives none: the prefix and 17 hex digits of a hash of its
/// name, so it is the same in every agent and across restarts.
pub(crate) fn derived_id(prefix: &str, name: &str) -> String {
    format!(
        "{prefix}-0{:016x}",
        crate::ids::fnv1a(prefix.bytes().chain(name.bytes()))
    )
}

/// R8.
pub(super) fn check_description(raw: &Located<String>, diagnostics: &mut Diagnostics) {
    let length = raw.value.chars().count();
    if length > MAX_TEXT_CHARS {
        diagnostics.error(&raw.at, ValidationError::DescriptionTooLong { length });
    }
}

/// What Linux `dev_valid_name()` rejects.
fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_INTERFACE_NAME_BYTES {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are reserved")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains(':') {
        Some("it contains ':'")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else {
        None
    }
}

/// How messages name an instance or member, even one whose name is missing.
pub(super) fn owner_name(kind: &str, name: Option<&Located<String>>, at: &Location) -> String {
    match name {
        Some(name) => format!("{kind} \"{}\"", name.value),
        None => at.field.clone(),
    }
}

/// Whether `interface` is a shell-style pattern (`tap101i*`) rather than a name.
pub(super) fn is_interface_pattern(interface: &str) -> bool {
    interface.contains(['*', '?', '['])
}

/// First use of each name, interface (or pattern, or MAC that finds one) and address across
/// instances, members and lab clients.
#[derive(Default)]
pub(super) struct Registry {
    names: FirstSeen<String>,
    interfaces: FirstSeen<String>,
    host_macs: FirstSeen<MacAddr>,
    addresses: FirstSeen<IpAddr>,
}

impl Registry {
    /// What instances, members and lab clients all claim: a name in their one namespace (the
    /// lab and the CLI address them by it) and addresses of their own. Returns the addresses
    /// that parse, when they were written.
    pub fn claim_host(
        &mut self,
        name: Option<&Located<String>>,
        addresses: Option<&Located<Vec<Located<String>>>>,
        diagnostics: &mut Diagnostics,
    ) -> Option<Vec<IpAddr>> {
        if let Some(name) = name {
            self.claim_name(name, diagnostics);
        }
        addresses.map(|addresses| self.claim_addresses(addresses, diagnostics))
    }

    fn claim_name(&mut self, name: &Located<String>, diagnostics: &mut Diagnostics) {
        if name.value.is_empty() {
            diagnostics.error(&name.at, ValidationError::EmptyName);
            return;
        }
        self.names
            .report_again(name.value.clone(), &name.at, diagnostics, |first| {
                ValidationError::DuplicateName {
                    name: name.value.clone(),
                    first,
                }
            });
    }

    /// A valid interface name, or pattern, that no other instance enforces. Returns how the
    /// interface is found, when it is valid.
    pub fn claim_interface(
        &mut self,
        interface: &Located<String>,
        diagnostics: &mut Diagnostics,
    ) -> Option<InterfaceMatch> {
        let pattern = is_interface_pattern(&interface.value);
        if pattern && let Err(error) = glob::Pattern::new(&interface.value) {
            diagnostics.error(
                &interface.at,
                ValidationError::InvalidInterfacePattern {
                    pattern: interface.value.clone(),
                    reason: error.msg.to_string(),
                },
            );
            return None;
        }
        if let Some(reason) = interface_name_problem(&interface.value) {
            diagnostics.error(
                &interface.at,
                ValidationError::InvalidInterfaceName {
                    interface: interface.value.clone(),
                    reason,
                },
            );
        } else {
            let key = interface.value.clone();
            self.interfaces
                .report_again(key, &interface.at, diagnostics, |first| {
                    ValidationError::DuplicateInterface {
                        interface: interface.value.clone(),
                        first,
                    }
                });
            return Some(if pattern {
                InterfaceMatch::Glob(interface.value.clone())
            } else {
                InterfaceMatch::Name
            });
        }
        None
    }

    /// The MAC an instance's interface is found by, claimed by no other instance.
    pub fn claim_host_mac(
        &mut self,
        mac: MacAddr,
        at: &Location,
        diagnostics: &mut Diagnostics,
    ) -> InterfaceMatch {
        self.host_macs.report_again(mac, at, diagnostics, |first| {
            ValidationError::DuplicateHostMac {
                mac: mac.to_string(),
                first,
            }
        });
        InterfaceMatch::HostMac(mac)
    }

    /// Parses and claims every address of one interface or client.
    fn claim_addresses(
        &mut self,
        raw: &Located<Vec<Located<String>>>,
        diagnostics: &mut Diagnostics,
    ) -> Vec<IpAddr> {
        if raw.value.is_empty() {
            diagnostics.error(&raw.at, ValidationError::NoAddresses);
        }
        let mut addresses = Vec::new();
        for text in &raw.value {
            let Some(address) = check_address(text, diagnostics) else {
                continue;
            };
            self.addresses
                .report_again(address, &text.at, diagnostics, |first| {
                    ValidationError::DuplicateAddress {
                        address: address.to_string(),
                        first,
                    }
                });
            addresses.push(address);
        }
        addresses
    }
}
