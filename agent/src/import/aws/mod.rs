//! `sgwall import aws`: turns the JSON of `aws ec2 describe-security-groups` (and optionally
//! `describe-network-interfaces`, `describe-managed-prefix-lists` with each list's
//! `get-managed-prefix-list-entries`, `describe-network-acls` and `describe-subnets`) into a
//! native sgwall config.
//!
//! Groups keep their AWS names and rules reference peers by name (prefix lists by id).
//! Interfaces become `[[member]]` entries (named by their ENI id) unless `--attach ENI=IFACE`
//! maps them to a local `[[instance]]`. ACLs and subnets keep their AWS ids as names. What sgwall
//! cannot carry over (a prefix list whose entries were not given) is reported and left out. The
//! output is validated with [`crate::config::load_str`] before it is returned, so it always
//! passes `sgwall check`.
//!
//! `schema` holds the CLI's JSON shapes, `convert` and `network` turn them into native objects,
//! `write` prints those as TOML; this file reads the input and checks the output.

mod convert;
mod errors;
pub(crate) mod network;
mod request;
pub(crate) mod schema;
pub(crate) mod write;

use std::{fs, path::Path};

pub use errors::{AwsRuleName, ImportError, ImportWarning};
pub use request::{Attachment, AwsImport, AwsImportRequest, PrefixListEntries};

use crate::config;
use network::NetworkInputs;
use schema::{DescribeNetworkInterfaces, DescribeSecurityGroups};
use write::Sources;

fn read(path: &Path) -> Result<String, ImportError> {
    fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses the output of `aws ec2 {command}` at `path`, noting it in `sources`.
fn read_output<T: serde::de::DeserializeOwned>(
    path: &Path,
    command: &'static str,
    sources: &mut Sources,
) -> Result<T, ImportError> {
    sources.files.push((command, path.display().to_string()));
    schema::parse(&read(path)?, path, command)
}

/// Reads the files of `request` and imports them.
pub fn import_files(request: &AwsImportRequest) -> Result<AwsImport, ImportError> {
    let mut sources = Sources {
        tool: "aws",
        files: Vec::new(),
    };
    let groups: DescribeSecurityGroups =
        read_output(&request.security_groups, GROUPS_COMMAND, &mut sources)?;
    let interfaces: Option<DescribeNetworkInterfaces> = request
        .network_interfaces
        .as_deref()
        .map(|path| read_output(path, INTERFACES_COMMAND, &mut sources))
        .transpose()?;
    let mut network = NetworkInputs {
        prefix_lists: request
            .prefix_lists
            .as_deref()
            .map(|path| read_output(path, PREFIX_LISTS_COMMAND, &mut sources))
            .transpose()?,
        network_acls: request
            .network_acls
            .as_deref()
            .map(|path| read_output(path, ACLS_COMMAND, &mut sources))
            .transpose()?,
        subnets: request
            .subnets
            .as_deref()
            .map(|path| read_output(path, SUBNETS_COMMAND, &mut sources))
            .transpose()?,
        prefix_list_entries: Vec::new(),
    };
    for entries in &request.prefix_list_entries {
        let parsed = read_output(&entries.path, ENTRIES_COMMAND, &mut sources)?;
        network
            .prefix_list_entries
            .push((entries.id.clone(), parsed));
    }
    let imported = import(
        &groups,
        interfaces.as_ref(),
        &network,
        &request.attach,
        &sources,
    )?;
    imported.strict(request.strict)
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
    let mut sources = Sources {
        tool: "aws",
        files: vec![(GROUPS_COMMAND, INPUT.to_string())],
    };
    if interfaces_json.is_some() {
        sources.files.push((INTERFACES_COMMAND, INPUT.to_string()));
    }
    import(
        &groups,
        interfaces.as_ref(),
        &NetworkInputs::default(),
        attach,
        &sources,
    )
}

const GROUPS_COMMAND: &str = "describe-security-groups";
const INTERFACES_COMMAND: &str = "describe-network-interfaces";
const PREFIX_LISTS_COMMAND: &str = "describe-managed-prefix-lists";
const ENTRIES_COMMAND: &str = "get-managed-prefix-list-entries";
const ACLS_COMMAND: &str = "describe-network-acls";
const SUBNETS_COMMAND: &str = "describe-subnets";

/// Converts, writes, then loads the text like `sgwall check` so that no import that fails it
/// is ever returned.
pub(crate) fn import(
    described: &DescribeSecurityGroups,
    interfaces: Option<&DescribeNetworkInterfaces>,
    network: &NetworkInputs,
    attach: &[Attachment],
    sources: &Sources,
) -> Result<AwsImport, ImportError> {
    let mut warnings = Vec::new();
    let network = network::convert(network, &mut warnings)?;
    let (groups, interfaces) =
        convert::convert(described, interfaces, attach, &network, &mut warnings)?;
    let toml = write::write_config(&groups, &interfaces, &network, &warnings, sources);
    match config::load_str(&toml, Path::new("<import>")) {
        Ok(_) => Ok(AwsImport { toml, warnings }),
        Err(error) => Err(ImportError::InvalidOutput(error)),
    }
}

#[cfg(test)]
mod tests;
