//! `sgwall import aws|terraform|cloudformation`: security groups (and network ACLs, subnets,
//! prefix lists) from AWS's JSON, Terraform's JSON or a template, as an sgwall config on stdout.

use std::process::ExitCode;

use sgwall::import::{
    aws::{self, AwsImport, AwsImportRequest},
    cloudformation, terraform,
};

use super::{
    args::{AwsImportArgs, CloudFormationImportArgs, TerraformImportArgs},
    output,
};

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
    print(&aws::import_files(&request)?)
}

pub fn terraform(args: TerraformImportArgs) -> anyhow::Result<ExitCode> {
    print(&terraform::import_file(&args.path, args.strict)?)
}

pub fn cloudformation(args: CloudFormationImportArgs) -> anyhow::Result<ExitCode> {
    print(&cloudformation::import_file(&args.template, args.strict)?)
}

/// Warnings on stderr, the validated config on stdout.
fn print(imported: &AwsImport) -> anyhow::Result<ExitCode> {
    for warning in &imported.warnings {
        output::diagnostic(&format!("warning: {warning}"));
    }
    output::text(&imported.toml);
    Ok(ExitCode::SUCCESS)
}
