//! `sgwall plan`: what a config compiles to.

use std::process::ExitCode;

use sgwall::maps::Capacities;

use super::{args::PlanArgs, output};

pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let loaded = match sgwall::config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(error) => {
            output::diagnostic(&error.to_string());
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &loaded.warnings {
        output::diagnostic(&warning.to_string());
    }
    let plan = sgwall::plan::plan(&loaded.config, &Capacities::default())?;
    output::report(&plan, args.json, |plan| plan.render())?;
    let overflows = plan.overflows();
    for overflow in &overflows {
        output::diagnostic(&format!("error: {overflow}"));
    }
    Ok(if overflows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
