//! H6: an agent whose map layout differs from the pinned one carries every tracked flow over.
//!
//! Maps of another layout are never reused (their bytes would be misread), so a new layout
//! starts with empty tables. Without this, every flow admitted only as a reply (C1) would be
//! cut at the upgrade. The old layout's conntrack entries are decoded with that layout's own
//! frozen types (never today's, which may have moved on), converted, and written into the new
//! maps before the new programs take over the links; once they have, the old maps get no more
//! updates and a second pass picks up flows that started in between. Only then is the old
//! layout removed.
//!
//! Every layout change ships its decoder here (see docs/design.md, "Layout changes").

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};
use filter_common::{
    CT_STATE_CLOSING, CT_STATE_ESTABLISHED, CT_STATE_HALF_OPEN, CT_STATE_NEW, CtEntry, CtKey,
    LAYOUT_VERSION, map_names,
};

use super::maps::{CtPool, PinnedMapError, PinnedMaps};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "{dir}: no migration from map layout v{from} to v{LAYOUT_VERSION} is known; its tracked \
         flows are not carried over"
    )]
    Unsupported { dir: PathBuf, from: u32 },
    #[error("opening {path} of an older layout: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("{path}: keys of {key} bytes and values of {value} bytes, not those of layout v{from}")]
    Shape {
        path: PathBuf,
        from: u32,
        key: u32,
        value: u32,
    },
    #[error(transparent)]
    Pinned(#[from] PinnedMapError),
    #[error("writing a carried flow into {map}: {source}")]
    Write {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// Layout v1 (before issue 10): the conntrack types as that layout pinned them. Frozen.
mod v1 {
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct CtKey {
        pub ifindex: u32,
        pub family: u8,
        pub proto: u8,
        pub _pad: [u8; 2],
        pub local_addr: [u8; 16],
        pub remote_addr: [u8; 16],
        pub local_port: u16,
        pub remote_port: u16,
    }
    const _: () = assert!(core::mem::size_of::<CtKey>() == 44);

    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct CtEntry {
        pub created_ns: u64,
        pub last_seen_ns: u64,
        pub packets: [u64; 2],
        pub bytes: [u64; 2],
        pub generation: u64,
        pub rule_id: u32,
        pub ifslot: u16,
        pub selector: u16,
        pub origin: u8,
        pub state: u8,
        pub flags: u8,
        pub _pad: [u8; 5],
    }
    const _: () = assert!(core::mem::size_of::<CtEntry>() == 72);

    // SAFETY: plain `repr(C)` integers and byte arrays, every padding byte a named field.
    unsafe impl aya::Pod for CtKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtEntry {}
}

/// Layout v2 (issue 10): the half-open state and `reply_isn`. Frozen. v3 (issue 15: network
/// ACLs and prefix lists) changed the interface configuration and added maps, all rebuilt from
/// the config, and left the conntrack types as they are here.
mod v2 {
    pub use super::v1::CtKey;

    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct CtEntry {
        pub created_ns: u64,
        pub last_seen_ns: u64,
        pub packets: [u64; 2],
        pub bytes: [u64; 2],
        pub generation: u64,
        pub rule_id: u32,
        pub ifslot: u16,
        pub selector: u16,
        pub origin: u8,
        pub state: u8,
        pub flags: u8,
        pub _pad: u8,
        pub reply_isn: u32,
    }
    const _: () = assert!(core::mem::size_of::<CtEntry>() == 72);

    // SAFETY: plain `repr(C)` integers, every padding byte a named field.
    unsafe impl aya::Pod for CtEntry {}
}

/// A flow read from an older layout, in today's types. `entry.ifslot` is still the old
/// layout's slot: [`carry`] gives it the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CarriedFlow {
    pub pool: CtPool,
    pub key: CtKey,
    pub entry: CtEntry,
}

/// v1 → v2: v2 gave the padding after `flags` a meaning (`reply_isn`, the SYN-ACK's number a
/// half-open flow waits to see acknowledged) and added the half-open state. A v1 flow is never
/// half-open, so the new field stays zero and every state keeps its number.
fn from_v1(pool: CtPool, key: v1::CtKey, entry: v1::CtEntry) -> Option<CarriedFlow> {
    if ![CT_STATE_NEW, CT_STATE_ESTABLISHED, CT_STATE_CLOSING].contains(&entry.state) {
        return None;
    }
    Some(CarriedFlow {
        pool,
        key: CtKey {
            ifindex: key.ifindex,
            family: key.family,
            proto: key.proto,
            _pad: [0; 2],
            local_addr: key.local_addr,
            remote_addr: key.remote_addr,
            local_port: key.local_port,
            remote_port: key.remote_port,
        },
        entry: CtEntry {
            created_ns: entry.created_ns,
            last_seen_ns: entry.last_seen_ns,
            packets: entry.packets,
            bytes: entry.bytes,
            // Judged under no generation of the new maps: with the C4 cut option the flow is
            // judged once more against the rules now in force, as after any policy change.
            generation: 0,
            rule_id: entry.rule_id,
            ifslot: entry.ifslot,
            selector: entry.selector,
            origin: entry.origin,
            state: entry.state,
            flags: entry.flags,
            _pad: 0,
            reply_isn: 0,
        },
    })
}

/// v2 → v3: the conntrack types did not change; every field carries over, the generation
/// reset as for v1.
fn from_v2(pool: CtPool, key: v2::CtKey, entry: v2::CtEntry) -> Option<CarriedFlow> {
    let states = [
        CT_STATE_NEW,
        CT_STATE_HALF_OPEN,
        CT_STATE_ESTABLISHED,
        CT_STATE_CLOSING,
    ];
    if !states.contains(&entry.state) {
        return None;
    }
    let mut flow = from_v1(
        pool,
        key,
        v1::CtEntry {
            created_ns: entry.created_ns,
            last_seen_ns: entry.last_seen_ns,
            packets: entry.packets,
            bytes: entry.bytes,
            generation: entry.generation,
            rule_id: entry.rule_id,
            ifslot: entry.ifslot,
            selector: entry.selector,
            origin: entry.origin,
            // Checked above; v1 has no half-open state, so the state is set after.
            state: CT_STATE_NEW,
            flags: entry.flags,
            _pad: [0; 5],
        },
    )?;
    flow.entry.state = entry.state;
    flow.entry.reply_isn = entry.reply_isn;
    Some(flow)
}

/// The layout version a stale layout directory (`v<N>`) holds.
pub fn layout_of(dir: &Path) -> Option<u32> {
    dir.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()
}

/// Reads every tracked flow of the older layout pinned in `dir` (`<pin-dir>/v<N>`).
pub fn read_flows(dir: &Path) -> Result<Vec<CarriedFlow>, MigrateError> {
    let from = layout_of(dir).unwrap_or(0);
    let mut flows = Vec::new();
    for pool in CtPool::BOTH {
        let path = dir.join("maps").join(pool.map_name());
        if !path.exists() {
            continue;
        }
        match from {
            1 => {
                for (key, entry) in read_pool::<v1::CtKey, v1::CtEntry>(&path, from)? {
                    flows.extend(from_v1(pool, key, entry));
                }
            }
            // v3 (issue 15) and v4 (issue 12: the instance's MAC in the interface
            // configuration, 48 reasons per counter row) left conntrack as v2 had it.
            2 | 3 => {
                for (key, entry) in read_pool::<v2::CtKey, v2::CtEntry>(&path, from)? {
                    flows.extend(from_v2(pool, key, entry));
                }
            }
            _ => {
                return Err(MigrateError::Unsupported {
                    dir: dir.to_path_buf(),
                    from,
                });
            }
        }
    }
    Ok(flows)
}

fn read_pool<K: Pod, V: Pod>(path: &Path, from: u32) -> Result<Vec<(K, V)>, MigrateError> {
    let open = |source| MigrateError::Open {
        path: path.to_path_buf(),
        source,
    };
    let data = MapData::from_pin(path).map_err(open)?;
    let info = data.info().map_err(open)?;
    if info.key_size() as usize != size_of::<K>() || info.value_size() as usize != size_of::<V>() {
        return Err(MigrateError::Shape {
            path: path.to_path_buf(),
            from,
            key: info.key_size(),
            value: info.value_size(),
        });
    }
    let map = Map::from_map_data(data).map_err(open)?;
    let table: HashMap<MapData, K, V> = HashMap::try_from(map).map_err(open)?;
    // An entry deleted while we iterate is skipped, which is what it would be anyway.
    Ok(table.iter().filter_map(Result::ok).collect())
}

/// What [`carry`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub established: usize,
    pub embryonic: usize,
    /// Flows of interfaces this agent does not enforce (or that are gone): left behind.
    pub left: usize,
}

/// Writes `flows` into the new layout's conntrack, each under the new slot of its interface
/// (`slots`: ifindex → slot). A flow already there (the first pass carried it, or the new
/// programs have since seen it) is left as it is. With `count`, established flows are added to
/// their interface's allowance count (C6): only before the new programs run, since the agent
/// cannot add atomically beside the datapath; flows the second pass carries are not counted
/// against the allowance until they end (a handful, started in the milliseconds of the swap).
pub fn carry(
    flows: &[CarriedFlow],
    new_maps: &PinnedMaps,
    slots: &BTreeMap<u32, u16>,
    count: bool,
) -> Result<Carried, MigrateError> {
    let mut carried = Carried::default();
    let mut counted: BTreeMap<u16, u64> = BTreeMap::new();
    for pool in CtPool::BOTH {
        let mut table = new_maps.conntrack(pool)?;
        for flow in flows.iter().filter(|flow| flow.pool == pool) {
            let Some(&slot) = slots.get(&flow.key.ifindex) else {
                carried.left += 1;
                continue;
            };
            if table.get(&flow.key, 0).is_ok() {
                continue;
            }
            let entry = CtEntry {
                ifslot: slot,
                ..flow.entry
            };
            table
                .insert(flow.key, entry, 0)
                .map_err(|source| MigrateError::Write {
                    map: pool.map_name(),
                    source,
                })?;
            match pool {
                CtPool::Established => {
                    carried.established += 1;
                    *counted.entry(slot).or_default() += 1;
                }
                CtPool::Embryonic => carried.embryonic += 1,
            }
        }
    }
    if count {
        let mut counts = new_maps.ct_count()?;
        for (slot, added) in counted {
            let write = |source| MigrateError::Write {
                map: map_names::CT_COUNT,
                source,
            };
            let mut value = counts.get(&u32::from(slot), 0).map_err(write)?;
            value.inserted += added;
            counts.set(u32::from(slot), value, 0).map_err(write)?;
        }
    }
    Ok(carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_entry(state: u8) -> v1::CtEntry {
        v1::CtEntry {
            created_ns: 10,
            last_seen_ns: 20,
            packets: [3, 4],
            bytes: [300, 400],
            generation: 7,
            rule_id: 12,
            ifslot: 5,
            selector: 2,
            origin: 1,
            state,
            flags: 1,
            _pad: [0; 5],
        }
    }

    fn v1_key() -> v1::CtKey {
        v1::CtKey {
            ifindex: 42,
            family: 4,
            proto: 6,
            _pad: [0; 2],
            local_addr: [10, 7, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [10, 6, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            local_port: 7000,
            remote_port: 40000,
        }
    }

    #[test]
    fn h6_a_v2_half_open_flow_keeps_its_state_and_the_syn_ack_number() {
        let v1 = v1_entry(CT_STATE_NEW);
        let entry = v2::CtEntry {
            created_ns: v1.created_ns,
            last_seen_ns: v1.last_seen_ns,
            packets: v1.packets,
            bytes: v1.bytes,
            generation: 9,
            rule_id: v1.rule_id,
            ifslot: v1.ifslot,
            selector: v1.selector,
            origin: v1.origin,
            state: CT_STATE_HALF_OPEN,
            flags: v1.flags,
            _pad: 0,
            reply_isn: 0xdead_beef,
        };
        let flow = from_v2(CtPool::Embryonic, v1_key(), entry).expect("carried");
        assert_eq!(flow.entry.state, CT_STATE_HALF_OPEN);
        assert_eq!(flow.entry.reply_isn, 0xdead_beef);
        assert_eq!(flow.entry.packets, [3, 4]);
        assert_eq!(flow.key.local_port, 7000);
        assert_eq!(
            flow.entry.generation, 0,
            "judged again under the cut option"
        );
        let unknown = v2::CtEntry {
            state: 200,
            ..entry
        };
        assert_eq!(from_v2(CtPool::Embryonic, v1_key(), unknown), None);
    }

    #[test]
    fn h6_a_v1_flow_keeps_its_tuple_counts_timestamps_and_state() {
        let flow = from_v1(
            CtPool::Established,
            v1_key(),
            v1_entry(CT_STATE_ESTABLISHED),
        )
        .expect("an established v1 flow is carried");
        assert_eq!(flow.key.ifindex, 42);
        assert_eq!(flow.key.local_port, 7000);
        assert_eq!(flow.key.remote_addr[..4], [10, 6, 0, 10]);
        assert_eq!(flow.entry.packets, [3, 4]);
        assert_eq!(flow.entry.bytes, [300, 400]);
        assert_eq!((flow.entry.created_ns, flow.entry.last_seen_ns), (10, 20));
        assert_eq!(flow.entry.state, CT_STATE_ESTABLISHED);
        assert_eq!((flow.entry.origin, flow.entry.flags), (1, 1));
        assert_eq!(flow.entry.reply_isn, 0);
        assert_eq!(
            flow.entry.generation, 0,
            "judged again under the cut option"
        );
    }

    #[test]
    fn h6_a_v1_entry_in_a_state_v1_never_had_is_not_carried() {
        assert!(from_v1(CtPool::Embryonic, v1_key(), v1_entry(0)).is_none());
        assert!(from_v1(CtPool::Embryonic, v1_key(), v1_entry(9)).is_none());
        assert!(from_v1(CtPool::Embryonic, v1_key(), v1_entry(CT_STATE_NEW)).is_some());
    }

    #[test]
    fn the_layout_of_a_stale_directory_is_its_number() {
        assert_eq!(layout_of(Path::new("/sys/fs/bpf/sgwall/v1")), Some(1));
        assert_eq!(layout_of(Path::new("/sys/fs/bpf/sgwall/links")), None);
    }
}
