//! `sgwall run` and `sgwall down`.
//!
//! The agent runs in the foreground. It reloads on SIGHUP and when the config file changes; on
//! SIGTERM or SIGINT it exits and leaves enforcement in place (pinned links and maps keep the
//! programs attached and the policy loaded). `sgwall down` stops an agent still running and
//! removes the pins, which detaches everything.

pub mod agent;
pub mod events;
pub mod link_events;
pub mod links;
pub mod paths;
pub mod state;

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

pub use self::agent::{Agent, AgentOptions, ReloadOutcome, RuntimeError};
use self::paths::Paths;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub agent: AgentOptions,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<SocketAddr>,
    /// Flow records are aggregated over windows of this length (AWS: 60 s or 600 s).
    pub flow_window: Duration,
    /// Also append flow records to this file.
    pub flow_log: Option<PathBuf>,
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
    let lock_path = paths.state_dir.join("agent.lock");
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
    let mut stdout = std::io::stdout();
    let _lock = lock_pins(&Paths::new(&options.agent.pin_root))?;
    // Watch before starting: a save while the agent starts (after it has read the config) must
    // not be lost. Changes seen meanwhile wait in the channel and cause a reload at once.
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(16);
    let _watcher = watch_config(&options.agent.config_path, changed_tx)?;
    let mut agent = Agent::start(options.agent.clone(), &mut stdout)?;
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
        &mut agent.datapath.ebpf,
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
        crate::inspect::metrics::serve(address, agent.paths.clone()).await?;
    }

    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&mut agent, "SIGHUP", &mut stdout),
            Some(()) = changed_rx.recv() => {
                tokio::time::sleep(CONFIG_SETTLE).await;
                while changed_rx.try_recv().is_ok() {}
                reload(&mut agent, "config file changed", &mut stdout);
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
                if let Err(error) = agent.poll_interfaces(&mut stdout) {
                    tracing::error!("following interfaces: {error}");
                }
            }
            _ = tick.tick() => {
                if let Err(error) = agent.poll_interfaces(&mut stdout) {
                    tracing::error!("following interfaces: {error}");
                }
                if let Err(error) = agent.housekeeping() {
                    tracing::error!("housekeeping: {error}");
                }
                events.flush_window(&agent);
            }
            ready = events.readable() => {
                if let Err(error) = ready {
                    tracing::error!("reading flow events: {error}");
                }
                events.drain(&agent);
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
    events.flush_all(&agent);
    let _ = std::fs::remove_file(&pid_file);
    tracing::info!(
        "exiting; enforcement stays in place (pinned under {})",
        options.agent.pin_root.display()
    );
    Ok(())
}

/// Reloads, and says what happened on stdout in a stable form (the lab and scripts wait on
/// it): `reloaded generation N: ...` or `reload rejected: ...`; details go to the log.
fn reload(agent: &mut Agent, why: &str, out: &mut std::io::Stdout) {
    use std::io::Write as _;
    let line = match agent.reload(out) {
        Ok(outcome) => {
            let what = match outcome {
                ReloadOutcome::Unchanged => "unchanged".to_string(),
                ReloadOutcome::MembershipDelta { members_written } => {
                    format!("membership delta, {members_written} addresses")
                }
                ReloadOutcome::Flipped { .. } => "new policy generation".to_string(),
            };
            let line = format!("reloaded generation {}: {what}", agent.applied.generation);
            tracing::info!("{why}: {line}");
            line
        }
        Err(RuntimeError::Config(error)) => {
            tracing::error!("{why}: config rejected, the running policy stays in force:\n{error}");
            format!(
                "reload rejected: invalid config, generation {} stays in force",
                agent.applied.generation
            )
        }
        Err(error) => {
            tracing::error!("{why}: reload failed, the running policy stays in force: {error}");
            format!(
                "reload rejected: {error}; generation {} stays in force",
                agent.applied.generation
            )
        }
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
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
    if let Some(pid) = running_agent(&paths) {
        // SAFETY: kill(2) with a pid read from the agent's own pid file.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_alive(pid) {
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

/// The pid of the agent owning these pins, if it is alive.
pub fn running_agent(paths: &Paths) -> Option<i32> {
    let text = std::fs::read_to_string(paths.pid_file()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    (pid > 0 && process_alive(pid)).then_some(pid)
}

fn process_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state is 'Z'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}
