//! Every command and option of `sgwall`, as clap types. The commands themselves are in the
//! sibling modules, one a file.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use sgwall::{
    datapath::attach::XdpAttachMode,
    import::aws::{Attachment, PrefixListEntries},
    lab, pins,
    runtime::console::LogFormat,
};

/// EC2 security group semantics on Linux interfaces, enforced with eBPF.
#[derive(Debug, Parser)]
#[command(name = "sgwall", version)]
pub struct Cli {
    /// Log lines (stderr) and `run`'s events (stdout) as human-readable text or as JSON
    /// objects, one a line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Keep the change of the host NIC's rules that `sgwall run --confirm` holds on probation.
    Confirm(PinArgs),
    /// Interfaces, policy generation, map fill and counters.
    Status(InspectArgs),
    /// Tracked flows with their state, age and idle time.
    Conntrack(InspectArgs),
    /// Every rule of every interface, with `--hits` how many flows it admitted.
    Rules(RulesArgs),
    /// Flow records (AWS VPC Flow Logs version 2 field order, then reject-reason), ACCEPT and
    /// REJECT.
    Flows(FlowsArgs),
    /// A lab of network namespaces enforced by sgwall: build it from a config, probe it with
    /// real traffic against the reference evaluator, or run the built-in demo.
    Lab(LabArgs),
    /// Serve the security-group part of the EC2 Query API (and STS GetCallerIdentity), so the
    /// `aws` CLI, boto3 and Terraform edit the config that `sgwall run` follows.
    Api(ApiArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Where to listen: a loopback address, or any address with --tls-cert and --tls-key.
    /// Port 0 picks a free port (the address is printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// Who may call: an AWS shared-credentials file (profiles with aws_access_key_id and
    /// aws_secret_access_key; `sgwall_access = read-only` for describe-only callers).
    #[arg(long, value_name = "FILE")]
    pub credentials: PathBuf,
    /// The sgwall TOML config the API edits in place (the one `sgwall run` follows).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// PEM certificate chain for TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    /// Where the lab records its state (namespaces, agent pid, config).
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Prefix of every namespace the lab creates; cleanup removes those and nothing else.
    #[arg(long, global = true, value_name = "PREFIX", default_value = lab::DEFAULT_PREFIX)]
    pub prefix: String,
    /// The agent's pin directory on bpffs.
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the topology a config describes (a namespace per instance and lab client, behind
    /// a router) and start `sgwall run` on it.
    Up {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Leave the lab up when a step fails, for inspection.
        #[arg(long)]
        keep_going: bool,
        /// Also serve the EC2 API over the lab's config on 127.0.0.1:PORT (`sgwall api`), so
        /// the aws CLI, boto3 and Terraform drive the lab.
        #[arg(long, value_name = "PORT")]
        api: Option<u16>,
        /// The API's credentials file; without it the lab makes one with a random secret.
        #[arg(long, value_name = "FILE", requires = "api")]
        api_credentials: Option<PathBuf>,
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
pub struct PlanArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// The agent's bpffs pin directory.
    #[arg(long, value_name = "DIR", default_value = pins::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub pins: PinArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[command(flatten)]
    pub inspect: InspectArgs,
    /// Show how many new flows each rule admitted, and flag the rules none did.
    #[arg(long)]
    pub hits: bool,
}

#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub inspect: InspectArgs,
    /// Keep printing records as the agent writes them (until interrupted).
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub pins: PinArgs,
    /// Enter this network namespace (`ip netns` name) first: the interfaces live there.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// How XDP attaches on `attach = "host"` interfaces.
    #[arg(long, value_enum, default_value_t = XdpAttachMode::Auto)]
    pub xdp_mode: XdpAttachMode,
    /// Serve Prometheus metrics; without an address, on loopback (127.0.0.1:9469).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9469")]
    pub metrics_addr: Option<SocketAddr>,
    /// A reload that changes the rules of an `attach = "host"` interface (the host's own NIC)
    /// is rolled back to the previous policy unless `sgwall confirm` runs within this many
    /// seconds.
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
    /// Flow records aggregate traffic over windows of this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub flow_window: u64,
    /// Also append flow records to this file.
    #[arg(long, value_name = "FILE")]
    pub flow_log: Option<PathBuf>,
    /// Established flows the tracking table holds (all interfaces).
    #[arg(long, value_name = "N")]
    pub conntrack_capacity: Option<usize>,
    /// Addresses with group memberships the member map holds.
    #[arg(long, value_name = "N")]
    pub members_capacity: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// From the JSON of `aws ec2 describe-security-groups`, `describe-network-interfaces`,
    /// `describe-managed-prefix-lists`, `get-managed-prefix-list-entries`,
    /// `describe-network-acls` and `describe-subnets`.
    Aws(AwsImportArgs),
    /// From the JSON of `terraform show -json` (a state, or a saved plan): security groups and
    /// their rule resources, network ACLs, subnets and managed prefix lists.
    Terraform(TerraformImportArgs),
    /// From a CloudFormation template (YAML or JSON, short or long intrinsics): security groups
    /// and their rule resources, network ACLs and their entries and associations, subnets and
    /// prefix lists. Parameters' defaults, Ref, Fn::GetAtt of ids and Fn::Sub are resolved.
    Cloudformation(CloudFormationImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct CloudFormationImportArgs {
    /// The template.
    #[arg(value_name = "TEMPLATE")]
    pub template: PathBuf,
    /// Fail instead of leaving out what could not be imported.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, clap::Args)]
pub struct TerraformImportArgs {
    /// The output of `terraform show -json` (state) or `terraform show -json PLANFILE` (plan).
    #[arg(value_name = "PLAN_OR_STATE.json")]
    pub path: PathBuf,
    /// Fail instead of leaving out what could not be imported.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The sgwall TOML config.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct AwsImportArgs {
    /// Output of `aws ec2 describe-security-groups`.
    #[arg(long, value_name = "SG.json")]
    pub security_groups: PathBuf,
    /// Output of `aws ec2 describe-network-interfaces`: interfaces become members.
    #[arg(long, value_name = "ENI.json")]
    pub network_interfaces: Option<PathBuf>,
    /// Output of `aws ec2 describe-managed-prefix-lists`: lists rules name (P1).
    #[arg(long, value_name = "PL.json")]
    pub prefix_lists: Option<PathBuf>,
    /// Output of `aws ec2 get-managed-prefix-list-entries --prefix-list-id PL_ID`, once per
    /// list: a list is imported only with its entries.
    #[arg(long, value_name = "PL_ID=ENTRIES.json")]
    pub prefix_list_entries: Vec<PrefixListEntries>,
    /// Output of `aws ec2 describe-network-acls` (N2).
    #[arg(long, value_name = "ACL.json")]
    pub network_acls: Option<PathBuf>,
    /// Output of `aws ec2 describe-subnets`: each subnet with the ACL associated with it (N1).
    #[arg(long, value_name = "SUBNETS.json")]
    pub subnets: Option<PathBuf>,
    /// Enforce this ENI on a local interface: it becomes an instance instead of a member.
    #[arg(long, value_name = "ENI_ID=IFACE")]
    pub attach: Vec<Attachment>,
    /// Fail instead of leaving out what could not be imported (a prefix list without entries).
    #[arg(long)]
    pub strict: bool,
}
