//! `sgwall lab`: a network of namespaces that reproduces a config's instances behind a router,
//! with `sgwall run` enforcing them, and probes that compare real traffic with the reference
//! evaluator.
//!
//! - [`topology`]: names, addresses and routes, and building them with `ip`.
//! - [`agent`]: starting, watching and stopping `sgwall run` in the router namespace.
//! - [`matrix`]: which probes to send, what the evaluator expects of each, running them.
//! - [`render`]: the matrix as text.
//! - [`demo`]: the built-in three-tier demo.
//!
//! A lab is recorded in its state directory (`state.json`) from before its first namespace is
//! made, so `lab down` (or the next `lab up`) can remove whatever a failed or killed run left.
//! Every namespace name starts with the lab's prefix; cleanup also removes any namespace with
//! that prefix and nothing else.

pub mod agent;
pub mod api;
pub mod cli;
pub mod demo;
pub mod dhcp;
pub mod matrix;
pub mod render;
pub mod topology;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::{self, ConfigError},
    model::Config,
    pins::Paths,
    probe::{Listener, ProbeError, Service},
    runtime::console::AgentEvent,
};
use agent::{LabAgent, LabAgentError, LabAgentSpec};
use matrix::{Matrix, Participants, ProbeOptions};
use topology::{Host, HostKind, Topology, TopologyError};

pub const DEFAULT_PREFIX: &str = "sgwl-";
pub const DEFAULT_STATE_DIR: &str = "/run/sgwall-lab";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sgwall-lab";
const STATE_FILE: &str = "state.json";
const AGENT_LOG: &str = "agent.log";
const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Agent(#[from] LabAgentError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Dhcp(#[from] dhcp::DhcpError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the lab state {path}: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no lab is up (no {0}); start one with `sgwall lab up --config FILE`")]
    NotUp(PathBuf),
    #[error("the lab state {path} is from another sgwall version; run `sgwall lab down` first")]
    StateVersion { path: PathBuf },
    #[error("the lab has no agent running: start the lab again with `sgwall lab up`")]
    NoAgent,
    #[error("{0}")]
    Api(String),
    #[error("the lab has no host {0}")]
    NoHost(String),
    #[error(
        "the lab prefix {0:?} must be letters, digits, '.', '_' or '-' (and not empty): cleanup \
         removes every namespace that starts with it"
    )]
    Prefix(String),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}

/// Where a lab lives and how its agent is started.
#[derive(Clone, Debug)]
pub struct LabSettings {
    /// Every namespace name starts with it.
    pub prefix: String,
    pub state_dir: PathBuf,
    /// The agent's `--pin-dir`.
    pub pin_dir: PathBuf,
    /// The `sgwall` binary to run the agent and `sgwall down` with.
    pub agent_binary: PathBuf,
    /// More `sgwall run` options for the agent (`--flow-window 1`, `--metrics-addr ...`).
    pub agent_args: Vec<String>,
    /// Tie the agent's life to the thread that starts it (tests).
    pub agent_dies_with_caller: bool,
    /// How long to wait for the agent to enforce every interface.
    pub agent_timeout: Duration,
}

impl LabSettings {
    /// The settings `sgwall lab` uses unless told otherwise.
    pub fn standard(agent_binary: PathBuf) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            agent_binary,
            agent_args: Vec::new(),
            agent_dies_with_caller: false,
            agent_timeout: Duration::from_secs(60),
        }
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE)
    }
}

/// What `state.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub prefix: String,
    /// The config the agent enforces.
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    pub topology: Topology,
    pub agent: Option<AgentRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentRecord {
    pub pid: u32,
    pub log: PathBuf,
    pub binary: PathBuf,
}

/// Options of `lab up`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpOptions {
    /// Leave the lab up when a step fails (the agent does not start, an interface is not
    /// enforced), for inspection; the failure is still reported.
    pub keep_going: bool,
}

/// What `lab up` did.
#[derive(Clone, Debug)]
pub struct UpReport {
    pub namespaces: usize,
    pub agent_pid: Option<u32>,
    /// The agent's enforcing events, one per instance.
    pub enforcing: Vec<AgentEvent>,
    pub topology_time: Duration,
    pub agent_time: Duration,
    /// Failed steps (only with `keep_going`; otherwise the first failure is the error).
    pub problems: Vec<String>,
}

/// What `lab down` removed.
#[derive(Clone, Debug, Default)]
pub struct LabDownReport {
    pub agent_stopped: Option<u32>,
    pub namespaces: Vec<String>,
    pub pins_removed: bool,
    /// Cleanup steps that failed; cleanup carries on past each.
    pub problems: Vec<String>,
}

impl LabDownReport {
    pub fn removed_anything(&self) -> bool {
        self.agent_stopped.is_some() || !self.namespaces.is_empty() || self.pins_removed
    }
}

/// A lab that is up.
#[derive(Debug)]
pub struct Lab {
    settings: LabSettings,
    state: LabState,
    agent: Option<LabAgent>,
}

impl Lab {
    /// Builds the lab for the config at `config_path` and starts the agent on it. A lab
    /// already up under the same settings is removed first.
    pub fn up(
        settings: &LabSettings,
        config_path: &Path,
        options: UpOptions,
    ) -> Result<(Lab, UpReport), LabError> {
        let prefix_ok = !settings.prefix.is_empty()
            && settings
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !prefix_ok {
            return Err(LabError::Prefix(settings.prefix.clone()));
        }
        let config = config::load(config_path)?.config;
        let topology = topology::plan(&config, &settings.prefix)?;
        let config_path = std::fs::canonicalize(config_path)
            .map_err(io_error("resolving the config path", config_path))?;
        // Whatever an earlier lab left goes first; its problems are the old lab's, not ours.
        let _ = Lab::down_keeping(settings, Some(&config_path));

        std::fs::create_dir_all(&settings.state_dir).map_err(io_error(
            "creating the lab state directory",
            &settings.state_dir,
        ))?;
        let mut lab = Lab {
            settings: settings.clone(),
            state: LabState {
                version: STATE_VERSION,
                prefix: settings.prefix.clone(),
                config: config_path,
                pin_dir: settings.pin_dir.clone(),
                topology,
                agent: None,
            },
            agent: None,
        };
        // Recorded before anything exists, so that a failure at any later step can be undone.
        lab.save()?;

        let result = lab.bring_up(options);
        match result {
            Ok(report) => Ok((lab, report)),
            Err(error) => {
                if !options.keep_going {
                    let _ = lab.take_down();
                }
                Err(error)
            }
        }
    }

    fn bring_up(&mut self, options: UpOptions) -> Result<UpReport, LabError> {
        let started = Instant::now();
        topology::build(&self.state.topology)?;
        let topology_time = started.elapsed();

        let agent_started = Instant::now();
        let mut problems = Vec::new();
        let mut enforcing = Vec::new();
        self.start_agent()?;
        let interfaces = self.instance_interfaces();
        match self.wait_enforcing(&interfaces, 0) {
            Ok(events) => enforcing = events,
            Err(error) if options.keep_going => problems.push(error.to_string()),
            Err(error) => return Err(error),
        }
        // Leases only once the agent enforces: DHCP goes through the filter, as a VM's does.
        let dhcp_hosts: Vec<&Host> = self
            .state
            .topology
            .hosts
            .iter()
            .filter(|h| h.dhcp)
            .collect();
        if !dhcp_hosts.is_empty() {
            match dhcp::lease_all(
                &self.state.topology.router,
                &dhcp_hosts,
                &self.settings.state_dir,
            ) {
                Ok(()) => {}
                Err(error) if options.keep_going => problems.push(error.to_string()),
                Err(error) => return Err(error.into()),
            }
        }
        let report = UpReport {
            namespaces: self.state.topology.namespaces().len(),
            agent_pid: self.agent.as_ref().map(|a| a.pid),
            enforcing,
            topology_time,
            agent_time: agent_started.elapsed(),
            problems,
        };
        Ok(report)
    }

    /// Starts the lab's agent over the lab's pins (again, after [`Lab::kill_agent`]: as after
    /// a crash or an upgrade). Its log is appended to.
    pub fn start_agent(&mut self) -> Result<(), LabError> {
        let log = self.settings.state_dir.join(AGENT_LOG);
        let agent = agent::spawn(&LabAgentSpec {
            binary: self.settings.agent_binary.clone(),
            config: self.state.config.clone(),
            netns: self.state.topology.router.clone(),
            pin_dir: self.state.pin_dir.clone(),
            log: log.clone(),
            extra_args: self.settings.agent_args.clone(),
            die_with_caller: self.settings.agent_dies_with_caller,
        })?;
        self.state.agent = Some(AgentRecord {
            pid: agent.pid,
            log,
            binary: self.settings.agent_binary.clone(),
        });
        self.agent = Some(agent);
        self.save()
    }

    /// The lab recorded under `settings`, if one is up.
    pub fn open(settings: &LabSettings) -> Result<Lab, LabError> {
        let path = settings.state_file();
        let state = read_state(&path)?.ok_or(LabError::NotUp(path.clone()))?;
        if state.version != STATE_VERSION {
            return Err(LabError::StateVersion { path });
        }
        let agent = state
            .agent
            .as_ref()
            .filter(|record| agent::is_lab_agent(record.pid, &state.pin_dir))
            .map(|record| LabAgent::adopt(record.pid, record.log.clone()));
        Ok(Lab {
            settings: settings.clone(),
            state,
            agent,
        })
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn topology(&self) -> &Topology {
        &self.state.topology
    }

    pub fn settings(&self) -> &LabSettings {
        &self.settings
    }

    pub fn config_path(&self) -> &Path {
        &self.state.config
    }

    /// The config the agent enforces, as it is now on disk.
    pub fn config(&self) -> Result<Config, LabError> {
        Ok(config::load(&self.state.config)?.config)
    }

    /// The namespace of host `name`.
    pub fn namespace_of(&self, name: &str) -> Result<&str, LabError> {
        self.state
            .topology
            .host(name)
            .map(|h| h.namespace.as_str())
            .ok_or_else(|| LabError::NoHost(name.to_string()))
    }

    pub fn router_namespace(&self) -> &str {
        &self.state.topology.router
    }

    fn instance_interfaces(&self) -> Vec<String> {
        self.state
            .topology
            .hosts
            .iter()
            .filter(|h| h.kind == HostKind::Instance)
            .map(|h| h.router_interface.clone())
            .collect()
    }

    pub fn agent_mut(&mut self) -> Result<&mut LabAgent, LabError> {
        self.agent.as_mut().ok_or(LabError::NoAgent)
    }

    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(LabAgent::running)
    }

    /// Kills the agent with SIGKILL, as a crash would; what it pinned keeps enforcing.
    pub fn kill_agent(&mut self) -> Result<(), LabError> {
        if let Some(mut agent) = self.agent.take() {
            agent.kill()?;
        }
        Ok(())
    }

    /// Current length of the agent log (see [`Lab::wait_enforcing`]).
    pub fn log_position(&self) -> u64 {
        // From the file, which outlives any one agent: after `kill_agent` the position must
        // still be the end of what the dead agent wrote, or a restart would be "seen" in it.
        std::fs::metadata(self.settings.state_dir.join(AGENT_LOG)).map_or(0, |m| m.len())
    }

    /// Waits until the agent says it enforces each of `interfaces`, counting only what it
    /// printed after log position `since`.
    pub fn wait_enforcing(
        &mut self,
        interfaces: &[String],
        since: u64,
    ) -> Result<Vec<AgentEvent>, LabError> {
        let timeout = self.settings.agent_timeout;
        Ok(self
            .agent_mut()?
            .wait_enforcing(interfaces, since, timeout)?)
    }

    /// Replaces the config the agent enforces, has it reload (SIGHUP, besides its own file
    /// watch) and waits until it says it did: the new policy is in force on return. Returns
    /// the agent's reload event.
    pub fn write_config(&mut self, text: &str) -> Result<AgentEvent, LabError> {
        let since = self.replace_config(text)?;
        self.agent_mut()?.reload()?;
        self.wait_reloaded(since)
    }

    /// Replaces the config file only, as an editor would, by a rename (the agent never reads
    /// half of it); the agent's file watch makes it reload. Returns the log position before
    /// the change, for [`Lab::wait_reloaded`].
    pub fn replace_config(&mut self, text: &str) -> Result<u64, LabError> {
        let since = self.log_position();
        let path = self.state.config.clone();
        let temporary = path.with_extension("toml.new");
        std::fs::write(&temporary, text).map_err(io_error("writing", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error("replacing", &path))?;
        Ok(since)
    }

    /// Waits until the agent reports a reload after log position `since`; a rejected reload
    /// is an error.
    pub fn wait_reloaded(&mut self, since: u64) -> Result<AgentEvent, LabError> {
        let timeout = self.settings.agent_timeout;
        Ok(self.agent_mut()?.wait_reloaded(since, timeout)?)
    }

    /// Waits until the agent reports an event after log position `since` for which `wanted`
    /// gives a value (`what` names it in the error).
    pub fn wait_event<T>(
        &mut self,
        since: u64,
        what: &str,
        wanted: impl FnMut(&AgentEvent) -> Option<T>,
    ) -> Result<T, LabError> {
        let timeout = self.settings.agent_timeout;
        Ok(self.agent_mut()?.wait_event(since, timeout, what, wanted)?)
    }

    /// Adds hosts to the running lab: namespaces, veths, addresses and routes. The caller
    /// updates the config if they are to be instances.
    pub fn add_hosts(&mut self, hosts: Vec<Host>) -> Result<(), LabError> {
        self.record_new_hosts(&hosts)?;
        topology::add_hosts(&self.state.topology, &hosts)?;
        Ok(())
    }

    /// Adds hosts as a tap made before its VM runs: the router-side interface exists (the
    /// agent can attach to it) but stays down, so nothing crosses it until
    /// [`Lab::bring_link_up`].
    pub fn add_hosts_link_down(&mut self, hosts: &[Host]) -> Result<(), LabError> {
        self.record_new_hosts(hosts)?;
        topology::add_links(&self.state.topology, hosts)?;
        Ok(())
    }

    /// Records new hosts, then makes their namespaces. Recorded first, so that cleanup knows
    /// them even if creating them fails halfway.
    fn record_new_hosts(&mut self, hosts: &[Host]) -> Result<(), LabError> {
        self.state.topology.hosts.extend(hosts.iter().cloned());
        self.save()?;
        topology::create_namespaces(hosts)?;
        Ok(())
    }

    /// Brings the link of a host added by [`Lab::add_hosts_link_down`] up, with its routes.
    pub fn bring_link_up(&mut self, host: &Host) -> Result<(), LabError> {
        topology::bring_link_up(&self.state.topology, host)?;
        Ok(())
    }

    /// Probes every source host against every instance of the current config that has a
    /// namespace here, with listeners on every probed TCP and UDP port.
    pub fn probe(&self, options: ProbeOptions) -> Result<Matrix, LabError> {
        let config = self.config()?;
        let services = matrix::services(&config);
        self.probe_services(&config, &services, None, options)
    }

    /// Like [`Lab::probe`], for chosen services and (optionally) chosen sources and
    /// destinations.
    pub fn probe_services(
        &self,
        config: &Config,
        services: &[Service],
        only: Option<(&[&str], &[&str])>,
        options: ProbeOptions,
    ) -> Result<Matrix, LabError> {
        let hosts = &self.state.topology.hosts;
        let (sources, destinations): (Vec<&Host>, Vec<&Host>) = match only {
            None => (
                hosts.iter().collect(),
                hosts
                    .iter()
                    .filter(|h| config.instance(&h.name).is_some())
                    .collect(),
            ),
            Some((sources, destinations)) => (
                pick_hosts(hosts, sources)?,
                pick_hosts(hosts, destinations)?,
            ),
        };
        let mut listeners = Vec::new();
        for destination in &destinations {
            for service in services {
                if *service != Service::IcmpEcho {
                    listeners.push(Listener::start(&destination.namespace, *service)?);
                }
            }
        }
        let participants = Participants {
            sources,
            destinations,
        };
        let mut planned = matrix::plan(config, &participants, services);
        let namespaces: BTreeMap<String, String> = hosts
            .iter()
            .map(|h| (h.name.clone(), h.namespace.clone()))
            .collect();
        matrix::run(
            &mut planned,
            &|name: &str| namespaces.get(name).cloned(),
            options,
        )?;
        drop(listeners);
        Ok(planned)
    }

    fn save(&self) -> Result<(), LabError> {
        let path = self.settings.state_file();
        let text = serde_json::to_string_pretty(&self.state).map_err(|source| LabError::State {
            path: path.clone(),
            source,
        })?;
        let temporary = path.with_extension("json.new");
        std::fs::write(&temporary, text).map_err(io_error("writing", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error("replacing", &path))
    }

    /// Takes this lab down (see [`Lab::down`]).
    pub fn take_down(mut self) -> LabDownReport {
        self.stop_and_remove(None)
    }

    fn stop_and_remove(&mut self, keep: Option<&Path>) -> LabDownReport {
        let mut report = LabDownReport::default();
        if let Some(mut agent) = self.agent.take() {
            let pid = agent.pid;
            match agent.stop() {
                Ok(()) => report.agent_stopped = Some(pid),
                Err(error) => report.problems.push(error.to_string()),
            }
        }
        finish_down(&self.settings, Some(&self.state), keep, &mut report);
        report
    }

    /// Removes everything the lab under `settings` made: stops the agent, runs `sgwall down`
    /// on its pins, deletes its namespaces (and any other with its prefix), removes the pin
    /// and state directories. Idempotent: with nothing there it does nothing.
    pub fn down(settings: &LabSettings) -> LabDownReport {
        Lab::down_keeping(settings, None)
    }

    /// [`Lab::down`], leaving the file `keep` in the state directory (the config a new lab
    /// is about to use).
    fn down_keeping(settings: &LabSettings, keep: Option<&Path>) -> LabDownReport {
        match Lab::open(settings) {
            Ok(mut lab) => lab.stop_and_remove(keep),
            Err(_) => {
                let state = read_state(&settings.state_file()).ok().flatten();
                let mut report = LabDownReport::default();
                finish_down(settings, state.as_ref(), keep, &mut report);
                report
            }
        }
    }
}

fn pick_hosts<'a>(hosts: &'a [Host], names: &[&str]) -> Result<Vec<&'a Host>, LabError> {
    names
        .iter()
        .map(|name| {
            hosts
                .iter()
                .find(|h| h.name == *name)
                .ok_or_else(|| LabError::NoHost(name.to_string()))
        })
        .collect()
}

fn read_state(path: &Path) -> Result<Option<LabState>, LabError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| LabError::State {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LabError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Everything after the agent: its pins, the namespaces, the directories.
fn finish_down(
    settings: &LabSettings,
    state: Option<&LabState>,
    keep: Option<&Path>,
    report: &mut LabDownReport,
) {
    report.problems.extend(api::stop(&settings.state_dir));
    let pin_dir = state.map_or(settings.pin_dir.clone(), |s| s.pin_dir.clone());
    let existing = topology::existing_namespaces().unwrap_or_default();

    let agent_paths = Paths::new(&pin_dir);
    if pin_dir.exists() || agent_paths.state_dir.exists() {
        // What `sgwall down` does: detach every pinned link, remove the pins and the agent's
        // state.
        if let Err(error) = crate::runtime::down(&pin_dir) {
            report.problems.push(format!("sgwall down: {error}"));
        }
        // Whatever that left is ours to remove: the directory belongs to the lab alone.
        if pin_dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&pin_dir)
        {
            report
                .problems
                .push(format!("removing {}: {error}", pin_dir.display()));
        }
        report.pins_removed = true;
    }

    let mut namespaces: Vec<String> = state.map(|s| s.topology.namespaces()).unwrap_or_default();
    let prefix = state.map_or(settings.prefix.as_str(), |s| s.prefix.as_str());
    namespaces.extend(
        existing
            .iter()
            .filter(|ns| !prefix.is_empty() && ns.starts_with(prefix))
            .cloned(),
    );
    namespaces.sort();
    namespaces.dedup();
    namespaces.retain(|ns| existing.contains(ns));
    if let Err(error) = topology::delete_namespaces(&namespaces) {
        report.problems.push(error.to_string());
    }
    report.namespaces = namespaces;

    if settings.state_dir.exists() {
        for name in [STATE_FILE, AGENT_LOG, demo::CONFIG_FILE] {
            let path = settings.state_dir.join(name);
            let kept = keep.is_some_and(|keep| {
                keep == path || std::fs::canonicalize(&path).is_ok_and(|p| p == keep)
            });
            if kept {
                continue;
            }
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                report
                    .problems
                    .push(format!("removing {}: {error}", path.display()));
            }
        }
        // Only when empty: the directory may be shared with things that are not the lab's.
        let _ = std::fs::remove_dir(&settings.state_dir);
    }
}
