//! The TOML config front end: parse (keeping the position of every key and value), validate
//! against `../shared/ec2-sg-semantics.md` (R3, R5, R7, R8, G5, C5, P1, N1, N2), warn about
//! likely mistakes, and produce a [`crate::model::Config`].
//!
//! Loading never stops at the first problem: after TOML syntax, every error and warning is
//! collected with its file, line, column and field path. Any error means no `Config` at all.

mod diagnostic;
mod document;
mod lint;
mod messages;
mod validate;

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use toml::de::DeTable;

pub use diagnostic::{Diagnostic, ProblemKind, Severity};
pub(crate) use document::RULE_FIELDS;

use crate::model::{Config, Lab, Rule, SecurityGroup, default_egress};
use diagnostic::Diagnostics;
use validate::{Checked, CheckedRule};

/// A valid config and the warnings its load produced.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Every error, in file order; the warnings are kept so callers can show them too.
    #[error("{}", lines(errors))]
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    },
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path)
}

/// Validates config text; `file` is only used in diagnostics.
pub fn load_str(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let mut diagnostics = Diagnostics::new(file, text);
    let checked = match DeTable::parse(text) {
        Ok(root) => {
            let raw = document::read(&root, &mut diagnostics);
            let checked = validate::validate(&raw, &mut diagnostics);
            lint::lint(&checked, &mut diagnostics);
            Some(checked)
        }
        Err(error) => {
            let offset = error.span().map_or(0, |span| span.start);
            diagnostics.syntax_error(offset, error.message());
            None
        }
    };
    let has_errors = diagnostics.has_errors();
    let (errors, warnings) = diagnostics.into_sorted();
    match checked {
        Some(checked) if !has_errors => Ok(Loaded {
            config: into_config(checked),
            warnings,
        }),
        _ => Err(ConfigError::Invalid { errors, warnings }),
    }
}

/// Only called when validation reported no error, so everything is present.
fn into_config(checked: Checked) -> Config {
    let model_rules = |rules: Vec<CheckedRule>| -> Vec<Rule> {
        rules
            .into_iter()
            .map(|rule| Rule {
                protocol: rule.protocol,
                ports: rule.ports,
                peers: rule.peers.into_iter().map(|peer| peer.value).collect(),
                description: rule.description,
                ids: rule.ids.into_iter().map(|id| id.value).collect(),
                tags: rule.tags,
            })
            .collect()
    };
    let security_groups = checked
        .groups
        .into_iter()
        .map(|group| SecurityGroup {
            name: group.name,
            description: group.description,
            tags: group.tags,
            ingress: model_rules(group.ingress),
            egress: if group.egress_is_default {
                default_egress(&group.id.value)
            } else {
                model_rules(group.egress)
            },
            egress_is_default: group.egress_is_default,
            id: group.id.value,
        })
        .collect();
    Config {
        security_groups,
        instances: checked
            .instances
            .into_iter()
            .map(|checked| checked.instance)
            .collect(),
        members: checked.members,
        quotas: checked.quotas,
        lab: Lab {
            clients: checked.lab_clients,
            dhcp: checked.lab_dhcp,
        },
        prefix_lists: checked.prefix_lists,
        subnets: checked.subnets,
        network_acls: checked.network_acls,
        vpc: checked.vpc,
    }
}

/// What `sgwall check` prints: diagnostics and counts for stderr, the summary for stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Every warning and error in file order, then `N errors` when there are errors.
    pub stderr: Vec<String>,
    /// `FILE: ok: ...` when the config is valid.
    pub stdout: Option<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.stdout.is_some()
    }
}

/// Loads `path` and reports like `sgwall check`.
pub fn check_report(path: &Path) -> CheckReport {
    match load(path) {
        Ok(loaded) => CheckReport {
            stderr: loaded.warnings.iter().map(Diagnostic::to_string).collect(),
            stdout: Some(summary(path, &loaded.config)),
        },
        Err(ConfigError::Invalid { errors, warnings }) => {
            let mut all: Vec<&Diagnostic> = errors.iter().chain(&warnings).collect();
            all.sort_by_key(|d| (d.line, d.column, d.severity));
            let mut stderr: Vec<String> = all.iter().map(ToString::to_string).collect();
            stderr.push(format!("{} errors", errors.len()));
            CheckReport {
                stderr,
                stdout: None,
            }
        }
        Err(error @ ConfigError::Read { .. }) => CheckReport {
            stderr: vec![format!("error: {error}"), "1 errors".to_string()],
            stdout: None,
        },
    }
}

/// Rules are counted as AWS counts them: one per peer, the default egress (R2) included.
/// Prefix lists, subnets and network ACLs are named only when the config has them.
fn summary(path: &Path, config: &Config) -> String {
    let rules: usize = config
        .security_groups
        .iter()
        .flat_map(|group| group.ingress.iter().chain(&group.egress))
        .map(|rule| rule.peers.len())
        .sum();
    let mut text = format!(
        "{}: ok: {} groups, {} instances, {} members, {} rules",
        path.display(),
        config.security_groups.len(),
        config.instances.len(),
        config.members.len(),
        rules
    );
    let optional = [
        (config.prefix_lists.len(), "prefix lists"),
        (config.subnets.len(), "subnets"),
        (config.network_acls.len(), "network ACLs"),
    ];
    for (count, what) in optional {
        if count > 0 {
            text.push_str(&format!(", {count} {what}"));
        }
    }
    text
}

#[cfg(test)]
mod tests;
