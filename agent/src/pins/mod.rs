//! What an agent leaves for everyone else to find: pins on bpffs, state in /run. The agent
//! (`runtime`) writes them; `inspect`, `plan`, `lab` and `sgwall down` read them, through this
//! module only.
//!
//! ```text
//! <pin-dir>/v<LAYOUT>/maps/<MAP>             pinned maps (policy, conntrack, counters)
//! <pin-dir>/links/<iface>/<hook>             pinned links: programs stay attached without us
//! /run/sgwall/<hash of pin-dir>/             state.json, agent.pid, agent.lock, flows.log
//! ```
//!
//! Everything is derived from the pin directory, so several agents (tests, labs) never share
//! anything unless they share a pin directory. Links sit outside the layout directory: they do
//! not depend on the maps' layout, and an agent with a new layout must find and take over the
//! links an older one pinned (XDP allows one program per interface).
//!
//! - [`state`]: `state.json`, the rule table and interface status the maps cannot tell.
//! - [`maps`]: typed openers for the pinned maps.
//! - [`flow_log`]: `flows.log`, its record schema, writing and reading it.
//! - [`migrate`]: tracked flows carried from an older layout's maps into this one's (H6).

pub mod flow_log;
pub mod maps;
pub mod migrate;
pub mod state;

use std::{
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use filter_common::LAYOUT_VERSION;

use crate::{ids::fnv1a, model::Hook};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sgwall";
const STATE_ROOT: &str = "/run/sgwall";

#[derive(Debug, thiserror::Error)]
pub enum PinDirError {
    #[error(
        "the pin directory {pin_dir} is not on bpffs ({existing} is on another filesystem). \
         `ip netns exec` remounts /sys, which hides bpffs: to enforce inside a network \
         namespace, run `sgwall run --netns NAME` from the host's mount namespace instead; \
         otherwise mount bpffs (`mount -t bpf bpf /sys/fs/bpf`) or pick a --pin-dir on it"
    )]
    NotBpffs { pin_dir: PathBuf, existing: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub pin_root: PathBuf,
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn new(pin_root: &Path) -> Self {
        Self {
            pin_root: pin_root.to_path_buf(),
            state_dir: Path::new(STATE_ROOT).join(format!(
                "{:016x}",
                fnv1a(pin_root.as_os_str().as_bytes().iter().copied())
            )),
        }
    }

    /// Refuses a pin directory whose pins could not be maps or links: one that is not on
    /// bpffs, judged by the directory or, when it does not exist yet, its nearest existing
    /// ancestor.
    pub fn check_on_bpffs(&self) -> Result<(), PinDirError> {
        match sgwall_preflight::pin_dir_off_bpffs(&self.pin_root) {
            None => Ok(()),
            Some(existing) => Err(PinDirError::NotBpffs {
                pin_dir: self.pin_root.clone(),
                existing,
            }),
        }
    }

    /// Where maps of this layout are pinned. Maps of another layout are never reused: their
    /// bytes would be misread.
    pub fn layout_dir(&self) -> PathBuf {
        self.pin_root.join(format!("v{LAYOUT_VERSION}"))
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.layout_dir().join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn links_dir(&self) -> PathBuf {
        self.pin_root.join("links")
    }

    /// Map directories of other layouts under this pin directory (left by older versions).
    pub fn stale_layouts(&self) -> Vec<PathBuf> {
        let current = self.layout_dir();
        let Ok(entries) = std::fs::read_dir(&self.pin_root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path != &current
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('v') && n[1..].parse::<u32>().is_ok())
            })
            .collect()
    }

    pub fn link(&self, interface: &str, hook: Hook) -> PathBuf {
        self.links_dir().join(interface).join(hook.name())
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("agent.pid")
    }

    /// Held (flock) by the agent that owns these pins, for as long as it runs.
    /// Where `sgwall confirm` leaves the generation it confirms (`--confirm`).
    pub fn confirm_file(&self) -> PathBuf {
        self.state_dir.join("confirm")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join("agent.lock")
    }

    pub fn flow_log(&self) -> PathBuf {
        self.state_dir.join("flows.log")
    }

    /// The pid of the agent owning these pins, if it is alive.
    pub fn running_agent(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_file()).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        if pid == 0 || !crate::process::alive(pid) {
            return None;
        }
        i32::try_from(pid).ok()
    }
}

/// Times in `state.json` and `flows.log`: whole seconds since the epoch.
pub fn epoch_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
