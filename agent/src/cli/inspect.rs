//! `sgwall status`, `conntrack` and `rules`: read what an agent pinned.

use std::process::ExitCode;

use sgwall::{inspect, pins::Paths};

use super::{
    args::{InspectArgs, RulesArgs},
    output,
};

pub fn status(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let status = inspect::status(Paths::new(&args.pins.pin_dir))?;
    output::report(&status, args.json, inspect::Status::render)?;
    Ok(ExitCode::SUCCESS)
}

pub fn conntrack(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let pinned = inspect::Pinned::open(Paths::new(&args.pins.pin_dir))?;
    let flows = pinned.flows()?;
    output::report(&flows, args.json, |flows| inspect::render_flows(flows))?;
    Ok(ExitCode::SUCCESS)
}

pub fn rules(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let pinned = inspect::Pinned::open(Paths::new(&args.inspect.pins.pin_dir))?;
    let rules = pinned.rule_hits()?;
    if args.inspect.json && !args.hits {
        return output::report(&pinned.state.rules, true, |_| String::new())
            .map(|()| ExitCode::SUCCESS);
    }
    output::report(&rules, args.inspect.json, |rules| {
        let mut text = inspect::render_rules(rules, args.hits);
        let unused = rules.iter().filter(|r| r.unused).count();
        if args.hits && unused > 0 {
            text.push_str(&format!(
                "\n{unused} rules admitted no flow yet: review them (AWS: audit unused rules).\n"
            ));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}
