//! `sgwall confirm`: keep the host NIC's new rules that `sgwall run --confirm` holds on
//! probation.

use std::process::ExitCode;

use sgwall::runtime;

use super::{args::PinArgs, output};

pub fn run(args: &PinArgs) -> anyhow::Result<ExitCode> {
    let generation = runtime::confirm::confirm(&args.pin_dir)?;
    output::line(&format!(
        "confirmed generation {generation}: it stays in force"
    ));
    Ok(ExitCode::SUCCESS)
}
