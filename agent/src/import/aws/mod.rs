//! `sgwall import aws`: turns the JSON of `aws ec2 describe-security-groups` (and optionally
//! `aws ec2 describe-network-interfaces`) into a native sgwall config.
//!
//! Groups keep their AWS names and rules reference peers by name. Interfaces become `[[member]]`
//! entries (named by their ENI id) unless `--attach ENI=IFACE` maps them to a local
//! `[[instance]]`. What sgwall cannot express (prefix lists) is reported and left out. The output
//! is validated with [`crate::config::load_str`] before it is returned, so it always passes
//! `sgwall check`.
//!
//! `schema` holds the CLI's JSON shapes, `convert` turns them into native groups and
//! interfaces, `write` prints those as TOML; this file reads the input and checks the output.

mod convert;
mod errors;
mod request;
mod schema;
mod write;

use std::{fs, path::Path};

pub use errors::{AwsRuleName, ImportError, ImportWarning};
pub use request::{Attachment, AwsImport, AwsImportRequest};

use crate::config;
use schema::{DescribeNetworkInterfaces, DescribeSecurityGroups};
use write::Sources;

/// Reads the files of `request` and imports them.
pub fn import_files(request: &AwsImportRequest) -> Result<AwsImport, ImportError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let groups: DescribeSecurityGroups = schema::parse(
        &read(&request.security_groups)?,
        &request.security_groups,
        GROUPS_COMMAND,
    )?;
    let interfaces: Option<DescribeNetworkInterfaces> = match &request.network_interfaces {
        Some(path) => Some(schema::parse(&read(path)?, path, INTERFACES_COMMAND)?),
        None => None,
    };
    let sources = Sources {
        security_groups: request.security_groups.display().to_string(),
        network_interfaces: request
            .network_interfaces
            .as_ref()
            .map(|path| path.display().to_string()),
    };
    let imported = import(&groups, interfaces.as_ref(), &request.attach, &sources)?;
    if request.strict && !imported.warnings.is_empty() {
        return Err(ImportError::Strict {
            warnings: imported.warnings,
        });
    }
    Ok(imported)
}

/// Imports already-read JSON; `groups_json` and `interfaces_json` are the files' contents.
pub fn import_json(
    groups_json: &str,
    interfaces_json: Option<&str>,
    attach: &[Attachment],
) -> Result<AwsImport, ImportError> {
    const INPUT: &str = "<input>";
    let groups: DescribeSecurityGroups =
        schema::parse(groups_json, Path::new(INPUT), GROUPS_COMMAND)?;
    let interfaces: Option<DescribeNetworkInterfaces> = interfaces_json
        .map(|json| schema::parse(json, Path::new(INPUT), INTERFACES_COMMAND))
        .transpose()?;
    let sources = Sources {
        security_groups: INPUT.to_string(),
        network_interfaces: interfaces_json.map(|_| INPUT.to_string()),
    };
    import(&groups, interfaces.as_ref(), attach, &sources)
}

const GROUPS_COMMAND: &str = "describe-security-groups";
const INTERFACES_COMMAND: &str = "describe-network-interfaces";

/// Converts, writes, then loads the text like `sgwall check` so that no import that fails it
/// is ever returned.
fn import(
    described: &DescribeSecurityGroups,
    interfaces: Option<&DescribeNetworkInterfaces>,
    attach: &[Attachment],
    sources: &Sources,
) -> Result<AwsImport, ImportError> {
    let mut warnings = Vec::new();
    let (groups, interfaces) = convert::convert(described, interfaces, attach, &mut warnings)?;
    let toml = write::write_config(&groups, &interfaces, &warnings, sources);
    match config::load_str(&toml, Path::new("<import>")) {
        Ok(_) => Ok(AwsImport { toml, warnings }),
        Err(error) => Err(ImportError::InvalidOutput(error)),
    }
}

#[cfg(test)]
mod tests;
