//! `sgwall import aws`: security groups from AWS's JSON, as an sgwall config on stdout.

use std::process::ExitCode;

use sgwall::import::aws::{self, AwsImportRequest};

use super::{args::AwsImportArgs, output};

pub fn aws(args: AwsImportArgs) -> anyhow::Result<ExitCode> {
    let request = AwsImportRequest {
        security_groups: args.security_groups,
        network_interfaces: args.network_interfaces,
        prefix_lists: args.prefix_lists,
        prefix_list_entries: args.prefix_list_entries,
        network_acls: args.network_acls,
        subnets: args.subnets,
        attach: args.attach,
        strict: args.strict,
    };
    let imported = aws::import_files(&request)?;
    for warning in &imported.warnings {
        output::diagnostic(&format!("warning: {warning}"));
    }
    output::text(&imported.toml);
    Ok(ExitCode::SUCCESS)
}
