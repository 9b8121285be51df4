use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sgwall::import::aws::{self, Attachment, AwsImportRequest};

/// EC2 security group semantics on Linux interfaces, enforced with eBPF.
#[derive(Debug, Parser)]
#[command(name = "sgwall", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file: print every error and warning, and a summary when it is valid.
    Check(CheckArgs),
    /// Convert another system's security groups into an sgwall config (printed to stdout).
    #[command(subcommand)]
    Import(ImportSource),
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// From the JSON of `aws ec2 describe-security-groups` and `describe-network-interfaces`.
    Aws(AwsImportArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct AwsImportArgs {
    /// Output of `aws ec2 describe-security-groups`.
    #[arg(long, value_name = "SG.json")]
    security_groups: PathBuf,
    /// Output of `aws ec2 describe-network-interfaces`: interfaces become members.
    #[arg(long, value_name = "ENI.json")]
    network_interfaces: Option<PathBuf>,
    /// Enforce this ENI on a local interface: it becomes an instance instead of a member.
    #[arg(long, value_name = "ENI_ID=IFACE")]
    attach: Vec<Attachment>,
    /// Fail instead of leaving out what sgwall cannot express (prefix lists).
    #[arg(long)]
    strict: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => Ok(check(&args)),
        Command::Import(ImportSource::Aws(args)) => import_aws(args),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let report = sgwall::config::check_report(&args.config);
    for line in &report.stderr {
        eprintln!("{line}");
    }
    match &report.stdout {
        Some(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn import_aws(args: AwsImportArgs) -> anyhow::Result<ExitCode> {
    let request = AwsImportRequest {
        security_groups: args.security_groups,
        network_interfaces: args.network_interfaces,
        attach: args.attach,
        strict: args.strict,
    };
    let imported = aws::import_files(&request)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", imported.toml);
    Ok(ExitCode::SUCCESS)
}
