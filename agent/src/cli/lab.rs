//! `sgwall lab`: what each subcommand prints lives in `sgwall::lab::cli`.

use std::{process::ExitCode, time::Duration};

use sgwall::lab::{self, LabSettings, UpOptions, matrix::ProbeOptions};

use super::args::{LabArgs, LabCommand};

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let settings = LabSettings {
        prefix: args.prefix,
        state_dir: args.state_dir,
        pin_dir: args.pin_dir,
        ..LabSettings::standard(std::env::current_exe()?)
    };
    let mut out = anstream::stdout();
    let succeeded = match args.command {
        LabCommand::Up {
            config,
            keep_going,
            api,
            api_credentials,
        } => {
            let up = lab::cli::up(&settings, &config, UpOptions { keep_going }, &mut out)?;
            match api {
                Some(port) if up => {
                    lab::cli::api(&settings, port, api_credentials.as_deref(), &mut out)?
                }
                _ => up,
            }
        }
        LabCommand::Probe {
            json,
            timeout_ms,
            parallel,
        } => lab::cli::probe(
            &settings,
            json,
            ProbeOptions {
                timeout: Duration::from_millis(timeout_ms),
                parallelism: parallel,
            },
            &mut out,
        )?,
        LabCommand::Down => lab::cli::down(&settings, &mut out)?,
        LabCommand::Demo { keep, timeout_ms } => {
            lab::cli::demo(&settings, keep, Duration::from_millis(timeout_ms), &mut out)?
        }
    };
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
