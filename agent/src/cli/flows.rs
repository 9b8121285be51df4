//! `sgwall flows`: the agent's flow records, as written or as JSON, optionally followed.

use std::process::ExitCode;

use sgwall::pins::{Paths, flow_log};

use super::{args::FlowsArgs, output};

pub fn run(args: &FlowsArgs) -> anyhow::Result<ExitCode> {
    let log = Paths::new(&args.inspect.pins.pin_dir).flow_log();
    let Some(mut reader) = flow_log::FlowLogReader::open(&log, args.follow)? else {
        output::diagnostic(&format!(
            "no flow records yet ({} does not exist)",
            log.display()
        ));
        return Ok(ExitCode::SUCCESS);
    };
    let json = args.inspect.json;
    if !json {
        output::line(&flow_log::header());
    }
    reader.tail(args.follow, &mut |line| {
        if json {
            let record = serde_json::to_string(&flow_log::line_as_json(line))?;
            output::line(&record);
        } else {
            output::line(line);
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
