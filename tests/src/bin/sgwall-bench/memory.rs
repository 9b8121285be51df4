//! Memory the datapath's maps hold, as the kernel charges it: the `memlock` line of each map's
//! fdinfo. Hash maps are preallocated, so their figure follows `max_entries`, not the fill.

use std::{collections::BTreeSet, os::fd::AsRawFd as _};

use anyhow::{Context as _, Result};
use aya::maps::MapInfo;
use serde::Serialize;
use sgwall::datapath::loader::Datapath;

#[derive(Clone, Debug, Serialize)]
pub struct MapMemory {
    pub name: String,
    pub max_entries: u32,
    pub memlock_bytes: u64,
}

/// Every map the datapath's programs use, with its memlock.
pub fn datapath_maps(datapath: &Datapath) -> Result<Vec<MapMemory>> {
    let mut ids = BTreeSet::new();
    for (_, program) in datapath.ebpf.programs() {
        let Ok(info) = program.info() else {
            // Programs not loaded (the bench baseline) have no info and no maps of their own.
            continue;
        };
        if let Some(map_ids) = info.map_ids()? {
            ids.extend(map_ids);
        }
    }
    let mut maps = Vec::new();
    for id in ids {
        let info = MapInfo::from_id(id).with_context(|| format!("map id {id}"))?;
        let fd = info.fd()?;
        let fdinfo = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            std::os::fd::AsFd::as_fd(&fd).as_raw_fd()
        ))?;
        let memlock = fdinfo
            .lines()
            .find_map(|line| line.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        maps.push(MapMemory {
            name: info.name_as_str().unwrap_or("?").to_string(),
            max_entries: info.max_entries(),
            memlock_bytes: memlock,
        });
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.memlock_bytes));
    Ok(maps)
}

pub fn total(maps: &[MapMemory]) -> u64 {
    maps.iter().map(|m| m.memlock_bytes).sum()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
