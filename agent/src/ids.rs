//! AWS-style ids (R9): `sg-`, `sgr-`, `eni-`, `vpc-` and 17 hex digits. A config may set an
//! object's id (an import keeps AWS's); otherwise it is derived from what identifies the object,
//! so every agent, every restart and every reload gives it the same id, and editing one rule
//! never changes another's.
//!
//! Derivation hashes a key that names the object, never its position: a group's key is its
//! name, a rule's is its group's id, direction, protocol, ports and peer (what AWS considers a
//! duplicate, so no two rules of one group share it), an interface's is its instance's name.

use std::fmt;

/// 64-bit FNV-1a: cheap, stable across platforms and releases (ids and pin names depend on it).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The kinds of object that carry an id, with the prefix AWS gives each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    SecurityGroup,
    SecurityGroupRule,
    NetworkInterface,
    Vpc,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::SecurityGroup => "sg",
            IdKind::SecurityGroupRule => "sgr",
            IdKind::NetworkInterface => "eni",
            IdKind::Vpc => "vpc",
        }
    }

    /// How messages name an object of this kind.
    pub fn noun(self) -> &'static str {
        match self {
            IdKind::SecurityGroup => "security group",
            IdKind::SecurityGroupRule => "security group rule",
            IdKind::NetworkInterface => "network interface",
            IdKind::Vpc => "VPC",
        }
    }

    /// The kind an id names, by its prefix.
    pub fn of(id: &str) -> Option<IdKind> {
        [
            IdKind::SecurityGroup,
            IdKind::SecurityGroupRule,
            IdKind::NetworkInterface,
            IdKind::Vpc,
        ]
        .into_iter()
        .find(|kind| is_well_formed(*kind, id))
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// The prefix, a dash and 8 or 17 lowercase hex digits: AWS's old and new id lengths (an
/// import may bring either; sgwall derives the new length).
pub fn is_well_formed(kind: IdKind, id: &str) -> bool {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The id an object gets when the config sets none: the prefix and 17 hex digits of a hash of
/// `key`. The leading digit is 0 (a 64-bit hash has 16), as in `pl-`/`acl-` ids.
pub fn derived(kind: IdKind, key: &str) -> String {
    let prefix = kind.prefix();
    format!(
        "{prefix}-0{:016x}",
        fnv1a(prefix.bytes().chain(key.bytes()))
    )
}

/// Another derived id for `key`, the `attempt`-th: for the rare case where the first is taken
/// (an explicit id elsewhere that happens to equal it).
pub fn derived_again(kind: IdKind, key: &str, attempt: u32) -> String {
    derived(kind, &format!("{key}#{attempt}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_derived_ids_have_the_prefix_and_17_hex_digits_and_depend_only_on_the_key() {
        for kind in [
            IdKind::SecurityGroup,
            IdKind::SecurityGroupRule,
            IdKind::NetworkInterface,
            IdKind::Vpc,
        ] {
            let id = derived(kind, "web-sg");
            assert!(is_well_formed(kind, &id), "{id}");
            assert_eq!(id.len(), kind.prefix().len() + 1 + 17);
            assert_eq!(id, derived(kind, "web-sg"));
            assert_ne!(id, derived(kind, "app-sg"));
            assert_eq!(IdKind::of(&id), Some(kind));
        }
        // The kind is part of the hash: a group and an interface of one name differ.
        assert_ne!(
            derived(IdKind::SecurityGroup, "x")[3..],
            derived(IdKind::NetworkInterface, "x")[4..]
        );
        assert_ne!(
            derived_again(IdKind::SecurityGroupRule, "k", 1),
            derived(IdKind::SecurityGroupRule, "k")
        );
    }

    #[test]
    fn r9_well_formed_ids_are_aws_lengths_in_lowercase_hex() {
        let kind = IdKind::SecurityGroup;
        assert!(is_well_formed(kind, "sg-0a1b2c3d4e5f60001"));
        assert!(is_well_formed(kind, "sg-1a2b3c4d"));
        for bad in [
            "sg-1",
            "sg-0A1B2C3D4E5F60001",
            "sgr-0a1b2c3d4e5f60001",
            "sg0a1b2c3d4e5f60001",
            "sg-0a1b2c3d4e5f6000g",
        ] {
            assert!(!is_well_formed(kind, bad), "{bad}");
        }
    }
}
