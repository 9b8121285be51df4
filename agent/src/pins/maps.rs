//! Typed openers for the pinned maps: each map by its name with its key and value types, so
//! no caller pairs a name with the wrong type. The agent and the inspection commands open them
//! the same way; the kernel object behind a pin is the one the datapath uses.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::PathBuf,
};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use filter_common::{Counter, CtCount, CtEntry, CtKey, map_names};

use super::Paths;

#[derive(Debug, thiserror::Error)]
pub enum PinnedMapError {
    #[error("no sgwall datapath is pinned under {0} (is `sgwall run` using another --pin-dir?)")]
    NotPinned(PathBuf),
    #[error("opening pinned map {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("reading map {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

fn read_error(map: &'static str) -> impl Fn(MapError) -> PinnedMapError {
    move |source| PinnedMapError::Read { map, source }
}

/// The two conntrack pools (see docs/design.md "Connection tracking").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtPool {
    /// Flows that saw a reply: a plain hash that never evicts.
    Established,
    /// Flows still waiting for their first reply: an LRU hash a flood can only churn.
    Embryonic,
}

impl CtPool {
    pub const BOTH: [CtPool; 2] = [CtPool::Established, CtPool::Embryonic];

    pub fn map_name(self) -> &'static str {
        match self {
            CtPool::Established => map_names::CT_ESTABLISHED,
            CtPool::Embryonic => map_names::CT_EMBRYONIC,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CtPool::Established => "established",
            CtPool::Embryonic => "embryonic",
        }
    }
}

pub type ConntrackTable = HashMap<MapData, CtKey, CtEntry>;

/// The pinned maps of one pin directory.
#[derive(Clone, Debug)]
pub struct PinnedMaps {
    paths: Paths,
}

impl PinnedMaps {
    /// Fails when no datapath of this layout is pinned there.
    pub fn open(paths: &Paths) -> Result<Self, PinnedMapError> {
        if !paths.maps_dir().exists() {
            return Err(PinnedMapError::NotPinned(paths.pin_root.clone()));
        }
        Ok(Self {
            paths: paths.clone(),
        })
    }

    fn data(&self, name: &'static str) -> Result<MapData, PinnedMapError> {
        let path = self.paths.map(name);
        MapData::from_pin(&path).map_err(|source| PinnedMapError::Open { path, source })
    }

    fn map(&self, name: &'static str) -> Result<Map, PinnedMapError> {
        Map::from_map_data(self.data(name)?).map_err(|source| PinnedMapError::Open {
            path: self.paths.map(name),
            source,
        })
    }

    fn typed<T: TryFrom<Map, Error = MapError>>(
        &self,
        name: &'static str,
    ) -> Result<T, PinnedMapError> {
        T::try_from(self.map(name)?).map_err(read_error(name))
    }

    /// `SGW_ACTIVE`: the generation in force.
    pub fn generation(&self) -> Result<u64, PinnedMapError> {
        let active: Array<MapData, u64> = self.typed(map_names::ACTIVE)?;
        active.get(&0, 0).map_err(read_error(map_names::ACTIVE))
    }

    pub fn conntrack(&self, pool: CtPool) -> Result<ConntrackTable, PinnedMapError> {
        self.typed(pool.map_name())
    }

    /// `SGW_CT_COUNT`: per interface slot, established entries the datapath inserted and
    /// removed.
    pub fn ct_count(&self) -> Result<Array<MapData, CtCount>, PinnedMapError> {
        self.typed(map_names::CT_COUNT)
    }

    /// `SGW_CT_AGENT_DEL`: per interface slot, established entries the agent expired.
    pub fn ct_removed_by_agent(&self) -> Result<Array<MapData, u64>, PinnedMapError> {
        self.typed(map_names::CT_REMOVED_BY_AGENT)
    }

    /// `SGW_COUNTERS`, indexed by `filter_common::counter_index`.
    pub fn counters(&self) -> Result<PerCpuArray<MapData, Counter>, PinnedMapError> {
        self.typed(map_names::COUNTERS)
    }

    /// `SGW_RULE_HITS`, indexed by `filter_common::rule_hit_index`.
    pub fn rule_hits(&self) -> Result<PerCpuArray<MapData, u64>, PinnedMapError> {
        self.typed(map_names::RULE_HITS)
    }

    /// `SGW_EVENTS`, the datapath's flow events. One reader at a time: the agent.
    pub fn events(&self) -> Result<RingBuf<MapData>, PinnedMapError> {
        self.typed(map_names::EVENTS)
    }

    /// Entries in use and capacity of map `name`. Entries are counted for hashes and tries
    /// (arrays are always full).
    pub fn fill(&self, name: &'static str) -> Result<(u64, u32), PinnedMapError> {
        let data = self.data(name)?;
        let info = data.info().map_err(read_error(name))?;
        let capacity = info.max_entries();
        let entries = match Map::from_map_data(data).map_err(read_error(name))? {
            Map::HashMap(data) | Map::LruHashMap(data) | Map::LpmTrie(data) => {
                raw_key_count(&data, info.key_size() as usize)
            }
            _ => 0,
        };
        Ok((entries, capacity))
    }
}

/// Counts keys with BPF_MAP_GET_NEXT_KEY, whatever the key type.
fn raw_key_count(data: &MapData, key_size: usize) -> u64 {
    if key_size == 0 {
        return 0;
    }
    let fd = data.fd().as_fd().as_raw_fd();
    let mut current: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size];
    let mut count = 0;
    loop {
        #[repr(C)]
        struct Attr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            next_key: u64,
        }
        let attr = Attr {
            map_fd: fd as u32,
            _pad: 0,
            key: current.as_ref().map_or(0, |k| k.as_ptr() as u64),
            next_key: next.as_mut_ptr() as u64,
        };
        // SAFETY: BPF_MAP_GET_NEXT_KEY (4) reads `key_size` bytes at `key` (or none when null)
        // and writes `key_size` bytes at `next_key`; both buffers are that large.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                4,
                &attr as *const Attr,
                std::mem::size_of::<Attr>(),
            )
        };
        if result < 0 {
            return count;
        }
        count += 1;
        current = Some(next.clone());
    }
}

/// The clock the datapath stamps conntrack entries with (`bpf_ktime_get_ns`: CLOCK_MONOTONIC),
/// to tell an entry's age and idle time.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64,
        Err(_) => 0,
    }
}
