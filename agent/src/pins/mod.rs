//! Where an agent keeps things: pins on bpffs, state in /run.
//!
//! ```text
//! <pin-dir>/v<LAYOUT>/maps/<MAP>             pinned maps (policy, conntrack, counters)
//! <pin-dir>/links/<iface>/<hook>             pinned links: programs stay attached without us
//! /run/sgwall/<hash of pin-dir>/             state.json, agent.pid, flows.log
//! ```
//!
//! Everything is derived from the pin directory, so several agents (tests, labs) never share
//! anything unless they share a pin directory. Links sit outside the layout directory: they do
//! not depend on the maps' layout, and an agent with a new layout must find and take over the
//! links an older one pinned (XDP allows one program per interface).

use std::{
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use crate::{
    compile::fnv1a,
    datapath::{attach::Hook, loader},
};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sgwall";
const STATE_ROOT: &str = "/run/sgwall";

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

    pub fn layout_dir(&self) -> PathBuf {
        loader::layout_dir(&self.pin_root)
    }

    pub fn maps_dir(&self) -> PathBuf {
        loader::maps_dir(&self.pin_root)
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

    pub fn flow_log(&self) -> PathBuf {
        self.state_dir.join("flows.log")
    }
}
