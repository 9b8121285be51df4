//! `sgwall run`: enforce a config until SIGTERM or SIGINT.

use std::{process::ExitCode, time::Duration};

use sgwall::{
    maps::Capacities,
    runtime::{self, AgentOptions, RunOptions, console::LogFormat},
};

use super::args::RunArgs;

pub fn run(args: RunArgs, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    // Before any thread exists: setns(2) applies to the calling thread, and every thread the
    // agent starts later inherits it.
    if let Some(name) = &args.netns {
        sgwall::netns::enter(&sgwall::netns::path_of(name))?;
    }
    let mut capacities = Capacities::default();
    if let Some(n) = args.conntrack_capacity {
        capacities.ct_established = n;
    }
    if let Some(n) = args.members_capacity {
        capacities.members = n;
    }
    let options = RunOptions {
        agent: AgentOptions {
            config_path: args.config,
            pin_root: args.pins.pin_dir,
            xdp_mode: args.xdp_mode,
            netns: args.netns,
            capacities,
            confirm: args.confirm.map(Duration::from_secs),
        },
        metrics_addr: args.metrics_addr,
        flow_window: Duration::from_secs(args.flow_window.max(1)),
        flow_log: args.flow_log,
        log_format,
    };
    runtime::run(options)?;
    Ok(ExitCode::SUCCESS)
}
