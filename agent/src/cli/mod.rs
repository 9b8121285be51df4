//! The `sgwall` command line, shaped like bpfman's: clap types in [`args`], one file per
//! command, all output through [`output`]. A command parses its arguments, calls the library
//! and prints; it decides nothing else.

mod api;
mod args;
mod check;
mod confirm;
mod down;
mod flows;
mod import;
mod inspect;
mod lab;
mod output;
mod plan;
mod run;

use std::process::ExitCode;

use clap::Parser as _;
use sgwall::runtime::console::LogFormat;

use self::args::{Cli, Command, ImportSource};

/// Runs the command line. Every error ends here and is printed one way (see
/// [`output::error`]); the exit code is then 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Check(args) => Ok(check::run(&args)),
        Command::Import(ImportSource::Aws(args)) => import::aws(args),
        Command::Import(ImportSource::Terraform(args)) => import::terraform(args),
        Command::Import(ImportSource::Cloudformation(args)) => import::cloudformation(args),
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(args, cli.log_format),
        Command::Down(args) => down::run(&args),
        Command::Confirm(args) => confirm::run(&args),
        Command::Status(args) => inspect::status(&args),
        Command::Conntrack(args) => inspect::conntrack(&args),
        Command::Rules(args) => inspect::rules(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Lab(args) => lab::run(args),
        Command::Api(args) => api::run(&args),
    };
    result.unwrap_or_else(|error| {
        output::error(&error);
        ExitCode::FAILURE
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
