//! What the command line asks to import, and what an import returns.

use std::{path::PathBuf, str::FromStr};

use super::errors::{ImportError, ImportWarning};

/// What to import, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsImportRequest {
    pub security_groups: PathBuf,
    pub network_interfaces: Option<PathBuf>,
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

/// A config text and what could not be carried over.
#[derive(Clone, Debug)]
pub struct AwsImport {
    pub toml: String,
    pub warnings: Vec<ImportWarning>,
}
