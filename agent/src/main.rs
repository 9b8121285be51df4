use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

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
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => Ok(check(&args)),
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
