//! `sgwall check`: validate a config.

use std::process::ExitCode;

use super::{args::CheckArgs, output};

pub fn run(args: &CheckArgs) -> ExitCode {
    let report = sgwall::config::check_report(&args.config);
    for line in &report.stderr {
        output::diagnostic(line);
    }
    match &report.stdout {
        Some(summary) => {
            output::line(summary);
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}
