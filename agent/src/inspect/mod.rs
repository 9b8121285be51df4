//! Read-only views of a running (or stopped) agent's datapath: `sgwall status`, `conntrack`,
//! `rules --hits`, `flows`, and the Prometheus metrics. They read the pinned maps and the
//! agent's `state.json`, so they work whether or not the agent is running.

pub mod metrics;

use std::{collections::BTreeMap, path::PathBuf};

use filter_common::{
    COUNTERS_LEN, CtEntry, CtKey, DIR_INGRESS, IFSLOT_UNCONFIGURED, Reason, counter_index,
    ct_state_name, map_names, rule_hit_index, slot_of_generation,
};
use serde::Serialize;

use crate::{
    compile::ip_of,
    model::Protocol,
    pins::{
        Paths,
        maps::{CtPool, PinnedMapError, PinnedMaps, monotonic_ns},
        state::{self, RuleState, State, StateError},
    },
    table::table,
};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Map(#[from] PinnedMapError),
    #[error(transparent)]
    State(#[from] StateError),
}

fn read_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> InspectError {
    move |source| InspectError::Map(PinnedMapError::Read { map, source })
}

/// The pinned maps and the state of one agent, opened read-only in spirit.
pub struct Pinned {
    pub paths: Paths,
    pub maps: PinnedMaps,
    pub state: State,
}

impl Pinned {
    pub fn open(paths: Paths) -> Result<Self, InspectError> {
        let maps = PinnedMaps::open(&paths)?;
        let state = state::read(&paths.state_file())?;
        Ok(Self { paths, maps, state })
    }

    pub fn generation(&self) -> Result<u64, InspectError> {
        Ok(self.maps.generation()?)
    }

    /// Entries in use and capacity of every pinned map with a meaningful fill.
    pub fn fill(&self) -> Result<Vec<MapFill>, InspectError> {
        let mut fills = Vec::new();
        for name in [
            map_names::IFACES,
            map_names::CIDRS,
            map_names::PORTS,
            map_names::GROUP_BITS,
            map_names::MEMBERS,
            map_names::LOCAL_ADDRS,
            map_names::CT_EMBRYONIC,
            map_names::CT_ESTABLISHED,
            map_names::FRAGMENTS,
        ] {
            let (entries, capacity) = self.maps.fill(name)?;
            fills.push(MapFill {
                map: name.to_string(),
                entries,
                capacity,
            });
        }
        Ok(fills)
    }

    /// Packets and bytes per (interface, direction, reason), summed over CPUs; zero rows left
    /// out.
    pub fn counters(&self) -> Result<Vec<CounterRow>, InspectError> {
        let counters = self.maps.counters()?;
        let mut rows_of: Vec<(u16, String)> = self
            .state
            .interfaces
            .iter()
            .map(|i| (i.ifslot, i.interface.clone()))
            .collect();
        rows_of.push((IFSLOT_UNCONFIGURED, "(unconfigured)".to_string()));
        let mut rows = Vec::new();
        for (ifslot, interface) in rows_of {
            for dir in [DIR_INGRESS, filter_common::DIR_EGRESS] {
                for reason in Reason::ALL {
                    let index = counter_index(ifslot, dir, reason as u32);
                    if index >= COUNTERS_LEN {
                        continue;
                    }
                    let values = counters
                        .get(&index, 0)
                        .map_err(read_error(map_names::COUNTERS))?;
                    let (packets, bytes) = values
                        .iter()
                        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
                    if packets == 0 {
                        continue;
                    }
                    rows.push(CounterRow {
                        interface: interface.clone(),
                        direction: direction_name(dir).to_string(),
                        verdict: if reason.passes() { "pass" } else { "drop" }.to_string(),
                        reason: reason.name().to_string(),
                        packets,
                        bytes,
                    });
                }
            }
        }
        Ok(rows)
    }

    /// Established flows per interface, against its allowance (C6).
    pub fn allowances(&self) -> Result<Vec<Allowance>, InspectError> {
        let counts = self.maps.ct_count()?;
        let removed = self.maps.ct_removed_by_agent()?;
        let mut allowances = Vec::new();
        for interface in &self.state.interfaces {
            let count = counts
                .get(&u32::from(interface.ifslot), 0)
                .map_err(read_error(map_names::CT_COUNT))?;
            let agent = removed
                .get(&u32::from(interface.ifslot), 0)
                .map_err(read_error(map_names::CT_REMOVED_BY_AGENT))?;
            allowances.push(Allowance {
                interface: interface.interface.clone(),
                established: count
                    .inserted
                    .saturating_sub(count.removed)
                    .saturating_sub(agent),
            });
        }
        Ok(allowances)
    }

    /// Every tracked flow, both pools.
    pub fn flows(&self) -> Result<Vec<TrackedFlow>, InspectError> {
        let names: BTreeMap<u32, String> = self
            .state
            .interfaces
            .iter()
            .filter_map(|i| Some((i.ifindex?, i.interface.clone())))
            .collect();
        let now = monotonic_ns();
        let mut flows = Vec::new();
        for pool in CtPool::BOTH {
            let table = self.maps.conntrack(pool)?;
            for (key, entry) in table.iter().filter_map(Result::ok) {
                flows.push(TrackedFlow::new(&key, &entry, pool.name(), &names, now));
            }
        }
        flows.sort_by(|a, b| (&a.interface, a.idle_seconds).cmp(&(&b.interface, b.idle_seconds)));
        Ok(flows)
    }

    /// Hits per rule: retired generations' totals plus the generation in force.
    pub fn rule_hits(&self) -> Result<Vec<RuleHits>, InspectError> {
        let hits = self.maps.rule_hits()?;
        let slot = slot_of_generation(self.generation()?);
        let mut rows = Vec::new();
        for rule in &self.state.rules {
            let current: u64 = hits
                .get(&rule_hit_index(slot, rule.id), 0)
                .map_err(read_error(map_names::RULE_HITS))?
                .iter()
                .sum();
            let total = current
                + self
                    .state
                    .hit_totals
                    .get(&rule.identity())
                    .copied()
                    .unwrap_or(0);
            rows.push(RuleHits {
                rule: rule.clone(),
                hits: total,
                unused: total == 0,
            });
        }
        Ok(rows)
    }
}

pub fn direction_name(dir: u8) -> &'static str {
    if dir == DIR_INGRESS {
        "ingress"
    } else {
        "egress"
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MapFill {
    pub map: String,
    pub entries: u64,
    pub capacity: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct CounterRow {
    pub interface: String,
    pub direction: String,
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Allowance {
    pub interface: String,
    pub established: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrackedFlow {
    pub interface: String,
    pub pool: String,
    pub protocol: u8,
    pub local: String,
    pub remote: String,
    /// Direction of the first packet: "ingress" (remote started it) or "egress".
    pub origin: String,
    pub state: String,
    pub age_seconds: u64,
    pub idle_seconds: u64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub rule_id: Option<u32>,
}

impl TrackedFlow {
    fn new(
        key: &CtKey,
        entry: &CtEntry,
        pool: &str,
        names: &BTreeMap<u32, String>,
        now: u64,
    ) -> Self {
        let endpoint = |addr: &[u8; 16], port: u16| {
            let ip = ip_of(key.family, addr);
            if ip.is_ipv6() {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        Self {
            interface: names
                .get(&key.ifindex)
                .cloned()
                .unwrap_or_else(|| format!("ifindex {}", key.ifindex)),
            pool: pool.to_string(),
            protocol: key.proto,
            local: endpoint(&key.local_addr, key.local_port),
            remote: endpoint(&key.remote_addr, key.remote_port),
            origin: direction_name(entry.origin).to_string(),
            state: ct_state_name(entry.state).to_string(),
            age_seconds: now.saturating_sub(entry.created_ns) / 1_000_000_000,
            idle_seconds: now.saturating_sub(entry.last_seen_ns) / 1_000_000_000,
            packets: entry.packets,
            bytes: entry.bytes,
            rule_id: (entry.rule_id != filter_common::RULE_ID_NONE).then_some(entry.rule_id),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleHits {
    #[serde(flatten)]
    pub rule: RuleState,
    pub hits: u64,
    /// No flow ever matched it: a candidate for removal (AWS advises auditing unused rules).
    pub unused: bool,
}

/// `sgwall status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub pin_dir: PathBuf,
    pub agent_pid: Option<i32>,
    pub config: PathBuf,
    pub generation: u64,
    pub reloads_applied: u64,
    pub reloads_rejected: u64,
    pub last_reload_error: Option<String>,
    /// A change of the host NIC's rules awaiting `sgwall confirm` (`run --confirm`).
    pub pending_confirmation: Option<state::PendingConfirmation>,
    pub interfaces: Vec<state::InterfaceState>,
    pub maps: Vec<MapFill>,
    pub allowances: Vec<Allowance>,
    pub counters: Vec<CounterRow>,
}

pub fn status(paths: Paths) -> Result<Status, InspectError> {
    let pinned = Pinned::open(paths.clone())?;
    Ok(Status {
        pin_dir: paths.pin_root.clone(),
        agent_pid: paths.running_agent(),
        config: pinned.state.config.clone(),
        generation: pinned.generation()?,
        reloads_applied: pinned.state.reloads.applied,
        reloads_rejected: pinned.state.reloads.rejected,
        last_reload_error: pinned.state.reloads.last_error.clone(),
        pending_confirmation: pinned.state.pending_confirmation.clone(),
        interfaces: pinned.state.interfaces.clone(),
        maps: pinned.fill()?,
        allowances: pinned.allowances()?,
        counters: pinned.counters()?,
    })
}

impl Status {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let agent = match self.agent_pid {
            Some(pid) => format!("agent pid {pid} running"),
            None => "agent not running (enforcement stays pinned)".to_string(),
        };
        out.push_str(&format!(
            "sgwall: pins {}, {agent}\nconfig {}, policy generation {}, reloads applied {}, rejected {}\n",
            self.pin_dir.display(),
            self.config.display(),
            self.generation,
            self.reloads_applied,
            self.reloads_rejected
        ));
        if let Some(error) = &self.last_reload_error {
            out.push_str(&format!("last rejected reload:\n{error}\n"));
        }
        if let Some(pending) = &self.pending_confirmation {
            out.push_str(&format!(
                "generation {} changes the host NIC's rules: rolled back at {} (epoch seconds) unless `sgwall confirm` runs first\n",
                pending.generation, pending.deadline
            ));
        }
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .interfaces
            .iter()
            .map(|i| {
                vec![
                    i.interface.clone(),
                    i.instance.clone(),
                    i.attach.clone(),
                    i.hooks.join(","),
                    i.ifindex.map_or("-".to_string(), |x| x.to_string()),
                    match &i.detail {
                        Some(detail) => format!("{} ({detail})", i.status),
                        None => i.status.to_string(),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "INTERFACE",
                "INSTANCE",
                "ATTACH",
                "HOOKS",
                "IFINDEX",
                "STATUS",
            ],
            &rows,
        ));
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .maps
            .iter()
            .map(|m| {
                vec![
                    m.map.clone(),
                    m.entries.to_string(),
                    m.capacity.to_string(),
                    format!(
                        "{:.1}%",
                        100.0 * m.entries as f64 / f64::from(m.capacity.max(1))
                    ),
                ]
            })
            .collect();
        out.push_str(&table(&["MAP", "ENTRIES", "CAPACITY", "FILL"], &rows));
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .allowances
            .iter()
            .map(|a| vec![a.interface.clone(), a.established.to_string()])
            .collect();
        out.push_str(&table(&["INTERFACE", "ESTABLISHED FLOWS"], &rows));
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .counters
            .iter()
            .map(|c| {
                vec![
                    c.interface.clone(),
                    c.direction.clone(),
                    c.verdict.clone(),
                    c.reason.clone(),
                    c.packets.to_string(),
                    c.bytes.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "INTERFACE",
                "DIRECTION",
                "VERDICT",
                "REASON",
                "PACKETS",
                "BYTES",
            ],
            &rows,
        ));
        out
    }
}

pub fn render_flows(flows: &[TrackedFlow]) -> String {
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            vec![
                f.interface.clone(),
                Protocol::from_number(f.protocol).to_string(),
                f.local.clone(),
                f.remote.clone(),
                f.origin.clone(),
                f.state.clone(),
                format!("{}s", f.age_seconds),
                format!("{}s", f.idle_seconds),
                format!("{}/{}", f.packets[0], f.packets[1]),
                format!("{}/{}", f.bytes[0], f.bytes[1]),
            ]
        })
        .collect();
    table(
        &[
            "INTERFACE",
            "PROTO",
            "LOCAL",
            "REMOTE",
            "ORIGIN",
            "STATE",
            "AGE",
            "IDLE",
            "PACKETS",
            "BYTES",
        ],
        &rows,
    )
}

pub fn render_rules(rules: &[RuleHits], with_hits: bool) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            let mut row = vec![r.rule.interface.clone()];
            row.extend(r.rule.columns());
            if with_hits {
                row.push(r.hits.to_string());
                row.push(if r.unused {
                    "unused".to_string()
                } else {
                    String::new()
                });
            }
            row
        })
        .collect();
    let mut header = vec!["INTERFACE"];
    header.extend(state::RULE_COLUMNS);
    if with_hits {
        header.extend(["HITS", ""]);
    }
    table(&header, &rows)
}
