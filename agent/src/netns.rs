//! Running code inside a named network namespace (`/run/netns/NAME`, as `ip netns` makes them).
//!
//! `setns(2)` changes the namespace of the calling thread only, so work is done on a fresh
//! thread that enters the namespace and then runs the closure; sockets it creates stay bound to
//! that namespace after the thread ends.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("entering network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("the thread working in network namespace {0} panicked")]
    Panicked(PathBuf),
}

pub const NETNS_RUN_DIR: &str = "/run/netns";

pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `work` on a new thread inside the namespace named `name` and returns its result.
pub fn run_in<T, F>(name: &str, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path_of(name);
    let thread_path = path.clone();
    std::thread::spawn(move || {
        enter(&thread_path)?;
        Ok(work())
    })
    .join()
    .map_err(|_| NetnsError::Panicked(path))?
}

/// Spawns a long-lived thread inside the namespace; the handle yields the closure's result.
pub fn spawn_in<T, F>(name: &str, work: F) -> std::thread::JoinHandle<Result<T, NetnsError>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path_of(name);
    std::thread::spawn(move || {
        enter(&path)?;
        Ok(work())
    })
}
