//! `sgwall run` and `sgwall down`.
//!
//! The agent runs in the foreground. It reloads on SIGHUP and when the config file changes; on
//! SIGTERM or SIGINT it exits and leaves enforcement in place (pinned links and maps keep the
//! programs attached and the policy loaded). `sgwall down` stops an agent still running and
//! removes the pins, which detaches everything.

pub mod agent;
pub mod confirm;
pub mod console;
pub mod events;
pub mod link_events;
pub mod links;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use notify::Watcher as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

pub use self::agent::{Agent, AgentOptions, RuntimeError};
use self::{
    console::{AgentEvent, Console, LogFormat, Rejection},
    events::interface_names,
};
use crate::{
    error_text::with_causes,
    inspect::metrics::{self, MetricsError},
    pins::{Paths, PinDirError},
};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub agent: AgentOptions,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<SocketAddr>,
    /// Flow records are aggregated over windows of this length (AWS: 60 s or 600 s).
    pub flow_window: Duration,
    /// Also append flow records to this file.
    pub flow_log: Option<PathBuf>,
    /// How events are written on stdout (the log on stderr is set up by the caller).
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("starting the event loop: {0}")]
    EventLoop(std::io::Error),
    #[error("watching {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    PinDir(#[from] PinDirError),
    #[error(
        "another agent (pid {pid}) already enforces with the pins under {pin_dir}; stop it first (or use another --pin-dir)"
    )]
    AlreadyRunning { pid: String, pin_dir: PathBuf },
}

/// How often timers are checked, and interfaces looked at even without a link notification.
const TICK: Duration = Duration::from_millis(500);
/// Editors save in several steps (truncate, write, rename): wait for the burst to end.
const CONFIG_SETTLE: Duration = Duration::from_millis(150);

/// Runs the agent until SIGTERM or SIGINT. Call after entering the target network namespace:
/// the event loop's threads inherit it.
pub fn run(options: RunOptions) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::EventLoop)?;
    runtime.block_on(run_loop(options))
}

/// Holds the agent's exclusive lock on its pin directory for as long as it lives: two agents
/// writing the same maps and links would undo each other.
fn lock_pins(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, RunError> {
    let io_error = |path: PathBuf| move |source| RunError::Io { path, source };
    std::fs::create_dir_all(&paths.state_dir).map_err(io_error(paths.state_dir.clone()))?;
    let lock_path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(lock_path.clone()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        RunError::AlreadyRunning {
            pid: std::fs::read_to_string(paths.pid_file())
                .map(|pid| pid.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string()),
            pin_dir: paths.pin_root.clone(),
        }
    })
}

async fn run_loop(options: RunOptions) -> Result<(), RunError> {
    let mut console = Console::stdout(options.log_format);
    let paths = Paths::new(&options.agent.pin_root);
    paths.check_on_bpffs()?;
    let _lock = lock_pins(&paths)?;
    // Watch before starting: a save while the agent starts (after it has read the config) must
    // not be lost. Changes seen meanwhile wait in the channel and cause a reload at once.
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(16);
    let _watcher = watch_config(&options.agent.config_path, changed_tx)?;
    let mut agent = Agent::start(options.agent.clone(), &mut console)?;
    let pid_file = agent.paths.pid_file();
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).map_err(|source| {
        RunError::Io {
            path: pid_file.clone(),
            source,
        }
    })?;
    tracing::info!(
        generation = agent.applied.generation,
        "enforcing {} with pins under {}",
        options.agent.config_path.display(),
        options.agent.pin_root.display()
    );

    // eBPF-side log lines (aya-log) go through the `log` crate into our tracing output.
    let mut ebpf_logger = match aya_log::EbpfLogger::init(&mut agent.datapath.ebpf) {
        // SAFETY: the logger owns its fd for as long as the registration lives.
        Ok(logger) => unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        }
        .map_err(|error| tracing::warn!("eBPF logs unavailable: {error}"))
        .ok(),
        Err(error) => {
            tracing::warn!("eBPF logs unavailable: {error}");
            None
        }
    };

    let mut events = events::EventConsumer::start(
        &agent.pinned,
        options.flow_window,
        options.flow_log.clone(),
        agent.paths.flow_log(),
    )?;

    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::EventLoop)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::EventLoop)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::EventLoop)?;
    let mut link_events = match link_events::LinkEvents::subscribe() {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!("no link notifications ({error}); interfaces are polled every {TICK:?}");
            None
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    if let Some(address) = options.metrics_addr {
        metrics::serve(address, agent.paths.clone()).await?;
    }

    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&mut agent, "SIGHUP", &mut console),
            Some(()) = changed_rx.recv() => {
                tokio::time::sleep(CONFIG_SETTLE).await;
                while changed_rx.try_recv().is_ok() {}
                reload(&mut agent, "config file changed", &mut console);
            }
            changed = async {
                match link_events.as_mut() {
                    Some(events) => events.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(error) = changed {
                    tracing::warn!("link notifications: {error}");
                }
                if let Err(error) = agent.poll_interfaces(&mut console) {
                    tracing::error!("following interfaces: {error}");
                }
            }
            _ = tick.tick() => {
                if let Err(error) = agent.poll_interfaces(&mut console) {
                    tracing::error!("following interfaces: {error}");
                }
                if let Err(error) = agent.housekeeping() {
                    tracing::error!("housekeeping: {error}");
                }
                match agent.settle_confirmation(&mut console) {
                    Ok(Some(outcome)) => {
                        let event = AgentEvent::Reloaded { generation: agent.applied.generation, outcome };
                        if let Err(error) = console.emit(&event) {
                            tracing::warn!("writing to the console: {error}");
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::error!("rolling back an unconfirmed change: {}", with_causes(&error)),
                }
                events.flush_window(&interface_names(&agent));
            }
            ready = events.readable() => {
                if let Err(error) = ready {
                    tracing::error!("reading flow events: {error}");
                }
                if events.drain(&interface_names(&agent)) {
                    agent.request_sweep();
                }
            }
            Ok(mut guard) = async {
                match ebpf_logger.as_mut() {
                    Some(logger) => logger.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    events.flush_all(&interface_names(&agent));
    let _ = std::fs::remove_file(&pid_file);
    tracing::info!(
        "exiting; enforcement stays in place (pinned under {})",
        options.agent.pin_root.display()
    );
    Ok(())
}

/// Reloads, and says what happened on stdout ([`AgentEvent::Reloaded`] or
/// [`AgentEvent::ReloadRejected`]: the lab and scripts wait on it); details go to the log.
fn reload(agent: &mut Agent, why: &str, console: &mut Console) {
    let result = agent.reload(console);
    let generation = agent.applied.generation;
    let event = match result {
        Ok(outcome) => {
            let event = AgentEvent::Reloaded {
                generation,
                outcome,
            };
            tracing::info!("{why}: {event}");
            event
        }
        Err(RuntimeError::Config(error)) => {
            tracing::error!("{why}: config rejected, the running policy stays in force:\n{error}");
            AgentEvent::ReloadRejected {
                generation,
                rejection: Rejection::InvalidConfig {
                    errors: error.to_string(),
                },
            }
        }
        Err(error) => {
            let error = with_causes(&error);
            tracing::error!("{why}: reload failed, the running policy stays in force: {error}");
            AgentEvent::ReloadRejected {
                generation,
                rejection: Rejection::Failed { error },
            }
        }
    };
    if let Err(error) = console.emit(&event) {
        tracing::warn!("writing to the console: {error}");
    }
}

/// Watches the config's directory, not the file: editors replace files by renaming.
fn watch_config(
    config: &Path,
    changed: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, RunError> {
    let directory = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let file_name = config.file_name().map(|n| n.to_os_string());
    let watch_error = |source| RunError::Watch {
        path: directory.clone(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let ours = event
            .paths
            .iter()
            .any(|path| path.file_name().map(|n| n.to_os_string()) == file_name);
        if ours {
            let _ = changed.try_send(());
        }
    })
    .map_err(watch_error)?;
    watcher
        .watch(&directory, notify::RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

#[derive(Debug, thiserror::Error)]
pub enum DownError {
    #[error("the agent (pid {pid}) did not exit after SIGTERM within {seconds} s")]
    AgentStuck { pid: i32, seconds: u64 },
    #[error(transparent)]
    Link(#[from] links::LinkPinError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped_agent: Option<i32>,
    pub detached: Vec<(String, &'static str)>,
    pub removed_pins: bool,
}

/// Stops the agent of `pin_root` if it runs, detaches every pinned link and removes the pins
/// and the state: the interfaces are unfiltered afterwards.
pub fn down(pin_root: &Path) -> Result<DownReport, DownError> {
    let paths = Paths::new(pin_root);
    let mut report = DownReport::default();
    if let Some(pid) = paths.running_agent() {
        // SAFETY: kill(2) with a pid read from the agent's own pid file.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while u32::try_from(pid).is_ok_and(crate::process::alive) {
            if std::time::Instant::now() > deadline {
                return Err(DownError::AgentStuck { pid, seconds: 10 });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        report.stopped_agent = Some(pid);
    }
    for (interface, hook) in links::pinned(&paths) {
        if links::detach(&paths, &interface, hook)? {
            report.detached.push((interface, hook.name()));
        }
    }
    for directory in [&paths.pin_root, &paths.state_dir] {
        match std::fs::remove_dir_all(directory) {
            Ok(()) => report.removed_pins |= directory == &paths.pin_root,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DownError::Io {
                    path: directory.clone(),
                    source,
                });
            }
        }
    }
    // The shared state root too, once no other agent keeps state there.
    if let Some(root) = paths.state_dir.parent() {
        let _ = std::fs::remove_dir(root);
    }
    Ok(report)
}
