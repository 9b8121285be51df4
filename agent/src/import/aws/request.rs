//! What the command line asks to import, and what an import returns.

use std::{path::PathBuf, str::FromStr};

use super::errors::{ImportError, ImportWarning};

/// What to import, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsImportRequest {
    pub security_groups: PathBuf,
    pub network_interfaces: Option<PathBuf>,
    /// `describe-managed-prefix-lists` (P1).
    pub prefix_lists: Option<PathBuf>,
    /// `get-managed-prefix-list-entries` of each list.
    pub prefix_list_entries: Vec<PrefixListEntries>,
    /// `describe-network-acls` (N2).
    pub network_acls: Option<PathBuf>,
    /// `describe-subnets` (N1).
    pub subnets: Option<PathBuf>,
    pub attach: Vec<Attachment>,
    /// Refuse to produce a config when something could not be imported.
    pub strict: bool,
}

/// `ENI_ID=IFACE`: the ENI becomes an `[[instance]]` enforced on local interface `IFACE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub eni: String,
    pub interface: String,
}

impl FromStr for Attachment {
    type Err = ImportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((eni, interface)) if !eni.is_empty() && !interface.is_empty() => Ok(Attachment {
                eni: eni.to_string(),
                interface: interface.to_string(),
            }),
            _ => Err(ImportError::AttachSyntax {
                value: text.to_string(),
            }),
        }
    }
}

/// `PREFIX_LIST_ID=FILE`: the output of `aws ec2 get-managed-prefix-list-entries
/// --prefix-list-id PREFIX_LIST_ID`, which does not name the list itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixListEntries {
    pub id: String,
    pub path: PathBuf,
}

impl FromStr for PrefixListEntries {
    type Err = ImportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((id, path)) if id.starts_with("pl-") && !path.is_empty() => Ok(Self {
                id: id.to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(ImportError::PrefixListEntriesSyntax {
                value: text.to_string(),
            }),
        }
    }
}

/// A config text and what could not be carried over.
#[derive(Clone, Debug)]
pub struct AwsImport {
    pub toml: String,
    pub warnings: Vec<ImportWarning>,
}

impl AwsImport {
    /// With `strict`, an import that left anything out is refused.
    pub fn strict(self, strict: bool) -> Result<Self, ImportError> {
        if strict && !self.warnings.is_empty() {
            return Err(ImportError::Strict {
                warnings: self.warnings,
            });
        }
        Ok(self)
    }
}
