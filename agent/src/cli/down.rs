//! `sgwall down`: stop the agent and remove its enforcement.

use std::process::ExitCode;

use sgwall::runtime;

use super::{args::PinArgs, output};

pub fn run(args: &PinArgs) -> anyhow::Result<ExitCode> {
    let report = runtime::down(&args.pin_dir)?;
    if let Some(pid) = report.stopped_agent {
        output::line(&format!("stopped the agent (pid {pid})"));
    }
    for (interface, hook) in &report.detached {
        output::line(&format!("detached {hook} from {interface}"));
    }
    if report.detached.is_empty() && !report.removed_pins {
        output::line(&format!("nothing pinned under {}", args.pin_dir.display()));
    } else {
        output::line(&format!("removed {}", args.pin_dir.display()));
    }
    Ok(ExitCode::SUCCESS)
}
