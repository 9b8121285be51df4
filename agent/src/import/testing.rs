//! What the importers' tests share: fixtures, loading an import back like `sgwall check`, and
//! a group's rules one line per peer.

use std::path::{Path, PathBuf};

use crate::{
    config::{self, Loaded},
    import::aws::AwsImport,
    model::{Config, Direction, SecurityGroup},
};

/// `agent/tests/fixtures/KIND/NAME`.
pub fn fixture(kind: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
        .join(name)
}

/// The import's output, loaded back like `sgwall check` would.
pub fn reload(imported: &AwsImport) -> Loaded {
    match config::load_str(&imported.toml, Path::new("imported.toml")) {
        Ok(loaded) => loaded,
        Err(error) => panic!("{error}\n--- output ---\n{}", imported.toml),
    }
}

/// One line per effective rule and peer: `protocol selector peer (description)`.
pub fn rule_lines(group: &SecurityGroup, direction: Direction) -> Vec<String> {
    group
        .rules(direction)
        .iter()
        .flat_map(|rule| {
            rule.peers.iter().map(move |peer| {
                format!(
                    "{} {} {} ({})",
                    rule.protocol, rule.ports, peer, rule.description
                )
            })
        })
        .collect()
}

/// [`rule_lines`] of the group named `group`, which must be imported.
pub fn rules(config: &Config, group: &str, direction: Direction) -> Vec<String> {
    rule_lines(
        config
            .group(group)
            .unwrap_or_else(|| panic!("group {group} is imported")),
        direction,
    )
}

/// A network ACL's entries in one direction: `number action protocol ports cidr`.
pub fn acl_lines(config: &Config, acl: &str, direction: Direction) -> Vec<String> {
    config
        .network_acl(acl)
        .unwrap_or_else(|| panic!("network ACL {acl} is imported"))
        .entries(direction)
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e.number, e.action, e.protocol, e.ports, e.cidr
            )
        })
        .collect()
}
