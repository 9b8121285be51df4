use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use sgwall::{
    import::aws::{self, Attachment, AwsImportRequest},
    lab::{self, LabSettings},
};

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
    /// A lab of network namespaces enforced by sgwall: build it from a config, probe it with
    /// real traffic against the reference evaluator, or run the built-in demo.
    Lab(LabArgs),
}

#[derive(Debug, clap::Args)]
struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
    /// Where the lab records its state (namespaces, agent pid, config).
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Prefix of every namespace the lab creates; cleanup removes those and nothing else.
    #[arg(long, global = true, value_name = "PREFIX", default_value = lab::DEFAULT_PREFIX)]
    prefix: String,
    /// The agent's pin directory on bpffs.
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the topology a config describes (a namespace per instance and lab client, behind
    /// a router) and start `sgwall run` on it.
    Up {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Leave the lab up when a step fails, for inspection.
        #[arg(long)]
        keep_going: bool,
    },
    /// Probe every source against every instance and compare with the reference evaluator;
    /// exits non-zero when any cell disagrees.
    Probe {
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
        /// How long a probe waits for an answer.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        timeout_ms: u64,
        /// Probes in flight at once.
        #[arg(long, value_name = "N", default_value_t = 48)]
        parallel: usize,
    },
    /// Stop the agent, remove its pins, the namespaces and the lab state. Idempotent.
    Down,
    /// The built-in three-tier demo: lab up, the matrix, a live membership change, lab down.
    Demo {
        /// Leave the lab up at the end.
        #[arg(long)]
        keep: bool,
        /// How long a probe waits for an answer.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        timeout_ms: u64,
    },
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
        Command::Lab(args) => lab_command(args),
    }
}

fn lab_command(args: LabArgs) -> anyhow::Result<ExitCode> {
    let settings = LabSettings {
        prefix: args.prefix,
        state_dir: args.state_dir,
        pin_dir: args.pin_dir,
        ..LabSettings::standard(std::env::current_exe()?)
    };
    let mut out = anstream::stdout();
    let result = match args.command {
        LabCommand::Up { config, keep_going } => {
            lab::cli::up(&settings, &config, lab::UpOptions { keep_going }, &mut out)
        }
        LabCommand::Probe {
            json,
            timeout_ms,
            parallel,
        } => lab::cli::probe(
            &settings,
            json,
            lab::matrix::RunOptions {
                timeout: Duration::from_millis(timeout_ms),
                parallelism: parallel,
            },
            &mut out,
        ),
        LabCommand::Down => lab::cli::down(&settings, &mut out),
        LabCommand::Demo { keep, timeout_ms } => {
            lab::cli::demo(&settings, keep, Duration::from_millis(timeout_ms), &mut out)
        }
    };
    // Lab errors are printed as their message alone: they say what to do, a backtrace would
    // only bury that.
    Ok(match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    })
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
