use std::{
    io::{BufRead as _, Seek as _},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use sgwall::{
    datapath::attach::XdpAttachMode,
    import::aws::{self, Attachment, AwsImportRequest},
    inspect,
    lab::{self, LabSettings},
    maps::Capacities,
    runtime::{self, AgentOptions, RunOptions, paths::Paths},
};

/// EC2 security group semantics on Linux interfaces, enforced with eBPF.
#[derive(Debug, Parser)]
#[command(name = "sgwall", version)]
struct Cli {
    /// Log lines as human-readable text or as JSON objects (to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file: print every error and warning, and a summary when it is valid.
    Check(CheckArgs),
    /// Convert another system's security groups into an sgwall config (printed to stdout).
    #[command(subcommand)]
    Import(ImportSource),
    /// What a config compiles to: effective rules per interface, datapath map entries and fill
    /// against capacity. Needs no privileges and touches nothing.
    Plan(PlanArgs),
    /// Enforce a config: load the datapath, attach to every configured interface, and keep
    /// following the config (file changes, SIGHUP) and the interfaces. Enforcement stays in
    /// place when the agent exits; `sgwall down` removes it.
    Run(RunArgs),
    /// Stop the agent, detach every program and remove the pins: traffic is unfiltered again.
    Down(PinArgs),
    /// Interfaces, policy generation, map fill and counters.
    Status(InspectArgs),
    /// Tracked flows with their state, age and idle time.
    Conntrack(InspectArgs),
    /// Every rule of every interface, with `--hits` how many flows it admitted.
    Rules(RulesArgs),
    /// Flow records (AWS VPC Flow Logs version 2 field order), ACCEPT and REJECT.
    Flows(FlowsArgs),
    /// A lab of network namespaces enforced by sgwall: build it from a config, probe it with
    /// real traffic against the reference evaluator, or run the built-in demo.
    Lab(LabArgs),
}

#[derive(Debug, clap::Args)]
struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
    /// Where the lab records its state (namespaces, agent pid, config).
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Prefix of every namespace the lab creates; cleanup removes those and nothing else.
    #[arg(long, global = true, value_name = "PREFIX", default_value = lab::DEFAULT_PREFIX)]
    prefix: String,
    /// The agent's pin directory on bpffs.
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the topology a config describes (a namespace per instance and lab client, behind
    /// a router) and start `sgwall run` on it.
    Up {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Leave the lab up when a step fails, for inspection.
        #[arg(long)]
        keep_going: bool,
    },
    /// Probe every source against every instance and compare with the reference evaluator;
    /// exits non-zero when any cell disagrees.
    Probe {
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
        /// How long a probe waits for an answer.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        timeout_ms: u64,
        /// Probes in flight at once.
        #[arg(long, value_name = "N", default_value_t = 64)]
        parallel: usize,
    },
    /// Stop the agent, remove its pins, the namespaces and the lab state. Idempotent.
    Down,
    /// The built-in three-tier demo: lab up, the matrix, a live membership change, lab down.
    Demo {
        /// Leave the lab up at the end.
        #[arg(long)]
        keep: bool,
        /// How long a probe waits for an answer.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct PinArgs {
    /// The agent's bpffs pin directory.
    #[arg(long, value_name = "DIR", default_value = runtime::paths::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    #[command(flatten)]
    pins: PinArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RulesArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// Show how many new flows each rule admitted, and flag the rules none did.
    #[arg(long)]
    hits: bool,
}

#[derive(Debug, clap::Args)]
struct FlowsArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// Keep printing records as the agent writes them (until interrupted).
    #[arg(long)]
    follow: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    pins: PinArgs,
    /// Enter this network namespace (`ip netns` name) first: the interfaces live there.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// How XDP attaches on `attach = "host"` interfaces.
    #[arg(long, value_enum, default_value_t = XdpAttachMode::Auto)]
    xdp_mode: XdpAttachMode,
    /// Serve Prometheus metrics; without an address, on loopback (127.0.0.1:9469).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9469")]
    metrics_addr: Option<SocketAddr>,
    /// Flow records aggregate traffic over windows of this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    flow_window: u64,
    /// Also append flow records to this file.
    #[arg(long, value_name = "FILE")]
    flow_log: Option<PathBuf>,
    /// Established flows the tracking table holds (all interfaces).
    #[arg(long, value_name = "N")]
    conntrack_capacity: Option<usize>,
    /// Addresses with group memberships the member map holds.
    #[arg(long, value_name = "N")]
    members_capacity: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// From the JSON of `aws ec2 describe-security-groups` and `describe-network-interfaces`.
    Aws(AwsImportArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct AwsImportArgs {
    /// Output of `aws ec2 describe-security-groups`.
    #[arg(long, value_name = "SG.json")]
    security_groups: PathBuf,
    /// Output of `aws ec2 describe-network-interfaces`: interfaces become members.
    #[arg(long, value_name = "ENI.json")]
    network_interfaces: Option<PathBuf>,
    /// Enforce this ENI on a local interface: it becomes an instance instead of a member.
    #[arg(long, value_name = "ENI_ID=IFACE")]
    attach: Vec<Attachment>,
    /// Fail instead of leaving out what sgwall cannot express (prefix lists).
    #[arg(long)]
    strict: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check(args) => Ok(check(&args)),
        Command::Import(ImportSource::Aws(args)) => import_aws(args),
        Command::Plan(args) => plan(&args),
        Command::Run(args) => run(args),
        Command::Down(args) => down(&args),
        Command::Status(args) => status(&args),
        Command::Conntrack(args) => conntrack(&args),
        Command::Rules(args) => rules(&args),
        Command::Flows(args) => flows(&args),
        Command::Lab(args) => lab_command(args),
    }
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

fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let loaded = match sgwall::config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    let plan = sgwall::plan::plan(&loaded.config, &Capacities::default())?;
    if args.json {
        print_json(&plan)?;
    } else {
        print!("{}", plan.render());
    }
    let overflows = plan.overflows();
    for overflow in &overflows {
        eprintln!("error: {overflow}");
    }
    Ok(if overflows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
        },
        metrics_addr: args.metrics_addr,
        flow_window: Duration::from_secs(args.flow_window.max(1)),
        flow_log: args.flow_log,
    };
    runtime::run(options)?;
    Ok(ExitCode::SUCCESS)
}

fn down(args: &PinArgs) -> anyhow::Result<ExitCode> {
    let report = runtime::down(&args.pin_dir)?;
    if let Some(pid) = report.stopped_agent {
        println!("stopped the agent (pid {pid})");
    }
    for (interface, hook) in &report.detached {
        println!("detached {hook} from {interface}");
    }
    if report.detached.is_empty() && !report.removed_pins {
        println!("nothing pinned under {}", args.pin_dir.display());
    } else {
        println!("removed {}", args.pin_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn status(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let status = inspect::status(Paths::new(&args.pins.pin_dir))?;
    if args.json {
        print_json(&status)?;
    } else {
        print!("{}", status.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn conntrack(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let pinned = inspect::Pinned::open(Paths::new(&args.pins.pin_dir))?;
    let flows = pinned.flows()?;
    if args.json {
        print_json(&flows)?;
    } else {
        print!("{}", inspect::render_flows(&flows));
    }
    Ok(ExitCode::SUCCESS)
}

fn rules(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let pinned = inspect::Pinned::open(Paths::new(&args.inspect.pins.pin_dir))?;
    let rules = pinned.rule_hits()?;
    if args.inspect.json {
        if args.hits {
            print_json(&rules)?;
        } else {
            print_json(&pinned.state.rules)?;
        }
    } else {
        let text = inspect::render_rules(&rules, args.hits);
        print!("{text}");
        let unused = rules.iter().filter(|r| r.unused).count();
        if args.hits && unused > 0 {
            println!(
                "\n{unused} rules admitted no flow yet: review them (AWS: audit unused rules)."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn flows(args: &FlowsArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::new(&args.inspect.pins.pin_dir);
    let log = paths.flow_log();
    let mut file = match std::fs::File::open(&log) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !args.follow => {
            eprintln!("no flow records yet ({} does not exist)", log.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&paths.state_dir)?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            std::fs::File::open(&log)?
        }
        Err(error) => return Err(error).with_context(|| log.display().to_string()),
    };
    if !args.inspect.json {
        println!(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
        );
    }
    let mut position = 0u64;
    loop {
        file.seek(std::io::SeekFrom::Start(position))?;
        let mut reader = std::io::BufReader::new(&file);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            position += line.len() as u64;
            print_flow_line(line.trim_end(), args.inspect.json)?;
            line.clear();
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_flow_line(line: &str, json: bool) -> anyhow::Result<()> {
    if !json {
        println!("{line}");
        return Ok(());
    }
    const FIELDS: [&str; 14] = [
        "version",
        "account-id",
        "interface-id",
        "srcaddr",
        "dstaddr",
        "srcport",
        "dstport",
        "protocol",
        "packets",
        "bytes",
        "start",
        "end",
        "action",
        "log-status",
    ];
    let record: serde_json::Map<String, serde_json::Value> = FIELDS
        .iter()
        .zip(line.split(' '))
        .map(|(field, value)| {
            (
                field.to_string(),
                serde_json::Value::String(value.to_string()),
            )
        })
        .collect();
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

fn lab_command(args: LabArgs) -> anyhow::Result<ExitCode> {
    let settings = LabSettings {
        prefix: args.prefix,
        state_dir: args.state_dir,
        pin_dir: args.pin_dir,
        ..LabSettings::standard(std::env::current_exe()?)
    };
    let mut out = anstream::stdout();
    let result = match args.command {
        LabCommand::Up { config, keep_going } => {
            lab::cli::up(&settings, &config, lab::UpOptions { keep_going }, &mut out)
        }
        LabCommand::Probe {
            json,
            timeout_ms,
            parallel,
        } => lab::cli::probe(
            &settings,
            json,
            lab::matrix::RunOptions {
                timeout: Duration::from_millis(timeout_ms),
                parallelism: parallel,
            },
            &mut out,
        ),
        LabCommand::Down => lab::cli::down(&settings, &mut out),
        LabCommand::Demo { keep, timeout_ms } => {
            lab::cli::demo(&settings, keep, Duration::from_millis(timeout_ms), &mut out)
        }
    };
    // Lab errors are printed as their message alone: they say what to do, a backtrace would
    // only bury that.
    Ok(match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    })
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

fn import_aws(args: AwsImportArgs) -> anyhow::Result<ExitCode> {
    let request = AwsImportRequest {
        security_groups: args.security_groups,
        network_interfaces: args.network_interfaces,
        attach: args.attach,
        strict: args.strict,
    };
    let imported = aws::import_files(&request)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", imported.toml);
    Ok(ExitCode::SUCCESS)
}
