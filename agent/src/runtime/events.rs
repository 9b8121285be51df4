//! Flow events from the datapath, turned into flow records (`pins::flow_log`) aggregated per
//! capture window.
//!
//! ACCEPT records come from conntrack: each tracked flow gives one record per direction with the
//! packets and bytes it carried during the window (its counters' growth), and flows admitted
//! without an entry (C8, ICMP other than echo) give one record per admitted first packet.
//! REJECT records come from denied-flow events, which the datapath rate-limits per CPU; a
//! window in which some were suppressed marks its REJECT records `SKIPDATA`, as AWS does.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use filter_common::{
    CtEntry, CtKey, DIR_INGRESS, EVENT_FLOW_DENIED, EVENT_FLOW_NEW, FlowEvent, Reason,
};
use tokio::io::unix::AsyncFd;

use super::agent::Agent;
use crate::{
    compile::ip_of,
    pins::{
        epoch_seconds,
        flow_log::{self, FlowRecord, RecordKey, Tally},
        maps::{CtPool, PinnedMapError, PinnedMaps},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("opening the flow event ring buffer: {0}")]
    Ring(#[from] PinnedMapError),
    #[error("watching the flow event ring buffer: {0}")]
    Poll(std::io::Error),
}

pub struct EventConsumer {
    ring: AsyncFd<RingBuf<MapData>>,
    window: Duration,
    window_start: SystemTime,
    tallies: BTreeMap<RecordKey, Tally>,
    suppressed: u64,
    /// Conntrack counters at the end of the previous window, per flow.
    baseline: StdHashMap<CtKey, ([u64; 2], [u64; 2])>,
    maps: PinnedMaps,
    outputs: Vec<PathBuf>,
}

/// What records need of the policy in force: interface names by ifindex, and what names the
/// network ACL entries a REJECT can cite.
#[derive(Clone, Debug, Default)]
pub struct InterfaceNames {
    names: StdHashMap<u32, String>,
    /// Global rule id of an ACL entry → `acl:NAME#NUMBER`.
    acl_entries: StdHashMap<u32, String>,
    /// Interface → `acl:NAME`, for interfaces whose subnet's ACL is enforced.
    acls: StdHashMap<String, String>,
}

impl InterfaceNames {
    pub fn get(&self, ifindex: &u32) -> Option<&String> {
        self.names.get(ifindex)
    }

    /// What refused a denied flow (the `reject-reason` field): the ACL entry for N2's
    /// refusals, else the reason's name.
    fn reject_reason(&self, interface: &str, reason: Option<Reason>, rule_id: u32) -> String {
        let acl = || self.acls.get(interface).map_or("acl:?", String::as_str);
        match reason {
            Some(Reason::AclDeny) => self
                .acl_entries
                .get(&rule_id)
                .cloned()
                .unwrap_or_else(|| format!("{}#?", acl())),
            Some(Reason::AclImplicitDeny) => format!("{}#*", acl()),
            Some(reason) => reason.name().to_string(),
            None => "unknown".to_string(),
        }
    }
}

/// The [`InterfaceNames`] of the policy in force.
pub fn interface_names(agent: &Agent) -> InterfaceNames {
    let names = agent
        .applied
        .ifindexes
        .iter()
        .map(|(name, index)| (*index, name.clone()))
        .collect();
    let acl_entries = agent
        .state
        .rules
        .iter()
        .filter(|rule| rule.acl_action.is_some())
        .map(|rule| (rule.id, format!("{}#{}", rule.group, rule.rule_index)))
        .collect();
    let acls = agent
        .applied
        .policy
        .interfaces
        .iter()
        .filter_map(|interface| {
            let acl = interface.acl.as_ref()?;
            Some((interface.interface.clone(), format!("acl:{}", acl.acl)))
        })
        .collect();
    InterfaceNames {
        names,
        acl_entries,
        acls,
    }
}

impl EventConsumer {
    pub fn start(
        maps: &PinnedMaps,
        window: Duration,
        extra_log: Option<PathBuf>,
        state_log: PathBuf,
    ) -> Result<Self, EventsError> {
        let ring: RingBuf<MapData> = maps.events()?;
        // SAFETY: the ring buffer owns its fd and lives as long as the registration, which is
        // dropped with it; nothing else closes or re-registers that fd.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|error| EventsError::Poll(std::io::Error::other(error.to_string())))?;
        let mut outputs = vec![state_log];
        outputs.extend(extra_log);
        Ok(Self {
            ring,
            window,
            window_start: SystemTime::now(),
            tallies: BTreeMap::new(),
            suppressed: 0,
            baseline: StdHashMap::new(),
            maps: maps.clone(),
            outputs,
        })
    }

    /// Resolves when events are waiting.
    pub async fn readable(&mut self) -> Result<(), std::io::Error> {
        let mut guard = self.ring.readable_mut().await?;
        // Cleared before draining: an event that lands after the drain raises it again.
        guard.clear_ready();
        Ok(())
    }

    /// Reads every waiting event into the window's tallies. Returns whether one of them was a
    /// new flow refused for want of allowance (C6), so the agent can sweep expired flows at
    /// once.
    pub fn drain(&mut self, interfaces: &InterfaceNames) -> bool {
        let ring = self.ring.get_mut();
        let mut allowance_exceeded = false;
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            // SAFETY: the datapath writes whole FlowEvent records; the length was checked and
            // the read is unaligned-safe.
            let event = unsafe { (item.as_ptr() as *const FlowEvent).read_unaligned() };
            allowance_exceeded |= event.kind == EVENT_FLOW_DENIED
                && u32::from(event.reason) == Reason::ConntrackFull as u32;
            record_event(&mut self.tallies, &mut self.suppressed, interfaces, &event);
        }
        allowance_exceeded
    }

    /// Writes the window's records once it is over.
    pub fn flush_window(&mut self, interfaces: &InterfaceNames) {
        if self.window_start.elapsed().unwrap_or_default() >= self.window {
            self.flush_all(interfaces);
        }
    }

    /// Writes the records of the window so far and starts a new one.
    pub fn flush_all(&mut self, interfaces: &InterfaceNames) {
        self.drain(interfaces);
        let start = epoch_seconds(self.window_start);
        let end = epoch_seconds(SystemTime::now());
        self.collect_conntrack(interfaces);
        let skipped = self.suppressed > 0;
        let records: Vec<FlowRecord> = std::mem::take(&mut self.tallies)
            .into_iter()
            .filter(|(_, tally)| tally.packets > 0)
            .map(|(key, tally)| FlowRecord {
                skipped_data: skipped && !key.accept,
                key,
                tally,
                start,
                end,
            })
            .collect();
        self.suppressed = 0;
        self.window_start = SystemTime::now();
        if records.is_empty() {
            return;
        }
        for output in &self.outputs {
            if let Err(error) = flow_log::append(output, &records) {
                tracing::warn!("writing flow records: {error}");
            }
        }
    }

    /// Adds the traffic tracked flows carried since the last window.
    fn collect_conntrack(&mut self, interfaces: &InterfaceNames) {
        let mut seen: StdHashMap<CtKey, ([u64; 2], [u64; 2])> = StdHashMap::new();
        for pool in CtPool::BOTH {
            let Ok(table) = self.maps.conntrack(pool) else {
                continue;
            };
            for (key, entry) in table.iter().filter_map(Result::ok) {
                let before = self.baseline.get(&key).copied().unwrap_or_default();
                let Some(interface) = interfaces.get(&key.ifindex) else {
                    continue;
                };
                for side in 0..2 {
                    let packets = entry.packets[side].saturating_sub(before.0[side]);
                    let bytes = entry.bytes[side].saturating_sub(before.1[side]);
                    if packets == 0 {
                        continue;
                    }
                    let tally = self
                        .tallies
                        .entry(ct_record_key(interface, &key, &entry, side))
                        .or_default();
                    tally.packets += packets;
                    tally.bytes += bytes;
                }
                seen.insert(key, (entry.packets, entry.bytes));
            }
        }
        self.baseline = seen;
    }
}

/// The record key of one direction (`side` 0: as the flow started, 1: replies) of a flow.
fn ct_record_key(interface: &str, key: &CtKey, entry: &CtEntry, side: usize) -> RecordKey {
    let local = ip_of(key.family, &key.local_addr);
    let remote = ip_of(key.family, &key.remote_addr);
    let inbound = (entry.origin == DIR_INGRESS) == (side == 0);
    let (src, dst, src_port, dst_port) = if inbound {
        (remote, local, key.remote_port, key.local_port)
    } else {
        (local, remote, key.local_port, key.remote_port)
    };
    RecordKey {
        interface: interface.to_string(),
        src,
        dst,
        src_port,
        dst_port,
        protocol: key.proto,
        accept: true,
        reject_reason: flow_log::NO_REJECT_REASON.to_string(),
    }
}

/// Folds one event into the window's tallies.
pub fn record_event(
    tallies: &mut BTreeMap<RecordKey, Tally>,
    suppressed: &mut u64,
    interfaces: &InterfaceNames,
    event: &FlowEvent,
) {
    let accept = match event.kind {
        // Tracked flows are counted from conntrack; only flows without an entry count here.
        EVENT_FLOW_NEW if u32::from(event.reason) != Reason::NewFlow as u32 => true,
        EVENT_FLOW_DENIED => false,
        _ => return,
    };
    *suppressed += u64::from(event.suppressed);
    let interface = interfaces
        .get(&event.ifindex)
        .cloned()
        .unwrap_or_else(|| format!("ifindex{}", event.ifindex));
    let reject_reason = if accept {
        flow_log::NO_REJECT_REASON.to_string()
    } else {
        interfaces.reject_reason(
            &interface,
            Reason::from_u32(u32::from(event.reason)),
            event.rule_id,
        )
    };
    let key = RecordKey {
        reject_reason,
        interface,
        src: ip_of(event.family, &event.src),
        dst: ip_of(event.family, &event.dst),
        src_port: event.src_port,
        dst_port: event.dst_port,
        protocol: event.proto,
        accept,
    };
    let tally = tallies.entry(key).or_default();
    tally.packets += 1;
    tally.bytes += event.bytes[0];
}
