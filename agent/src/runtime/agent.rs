//! The agent's state machine: start, reload, follow interfaces, retire old generations, expire
//! conntrack entries. Synchronous; `runtime::run` drives it from signals, timers and the config
//! watcher.
//!
//! Failure rules (H4): a config that fails validation changes nothing; a datapath that fails to
//! load changes nothing (pinned programs keep enforcing the old policy); every update goes
//! through `maps::apply_full` or `maps::apply_membership`, whose intermediate states never admit
//! what both old and new policy deny.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use aya::maps::PerCpuValues;
use filter_common::{
    IFSLOT_UNCONFIGURED, MAX_RULE_IDS_PER_SLOT, Timeouts, ct_entry_is_live, map_names,
    rule_hit_index, slot_of_generation, timeout_secs,
};

use super::{
    confirm,
    console::{AgentEvent, Console, ReloadOutcome},
    links::{self, LinkOutcome, LinkPinError},
};
use crate::{
    compile::{self, CompileError, CompiledPolicy, MembershipChange, ip_of},
    config::{self, ConfigError},
    datapath::{
        attach::XdpAttachMode,
        loader::{Datapath, DatapathError, LoadOptions},
        sys,
    },
    error_text::with_causes,
    locate::{self, NotFound, Resolved},
    maps::{self, Applied, Capacities, MapError, PolicyMaps},
    model::{Config, Hook},
    pins::{
        Paths, epoch_seconds,
        maps::{CtPool, PinnedMapError, PinnedMaps, monotonic_ns},
        migrate::{self, CarriedFlow},
        state::{self, InterfaceState, InterfaceStatus, Reloads, RuleState, State, StateError},
    },
};

/// How long after a generation flip the retired slot is left alone: far longer than any packet
/// takes to run through the programs, which read the generation once per packet.
pub const GRACE_PERIOD: Duration = Duration::from_millis(200);
/// How often expired established flows are swept out of the table, at least. A sweep reads
/// every entry (two syscalls each), so a large table is swept less often: the interval is at
/// least this many times the last sweep's duration, keeping the sweep near 5% of one CPU.
pub const CONNTRACK_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
const SWEEP_DUTY_DIVISOR: u32 = 20;
/// When the datapath refuses a new flow for want of allowance (C6), expired flows may be what
/// holds it: the agent sweeps at once, but no more often than this.
pub const URGENT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Pinned(#[from] PinnedMapError),
    #[error(transparent)]
    Link(#[from] LinkPinError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("map {map}: {source}")]
    Aya {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("writing to the console: {0}")]
    Console(std::io::Error),
    #[error("counting possible CPUs for per-CPU maps: {0}")]
    Cpus(std::io::Error),
    #[error("listing the interfaces to find those named by pattern or MAC: {0}")]
    Links(std::io::Error),
}

fn aya_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> RuntimeError {
    move |source| RuntimeError::Aya { map, source }
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub config_path: PathBuf,
    pub pin_root: PathBuf,
    pub xdp_mode: XdpAttachMode,
    pub netns: Option<String>,
    pub capacities: Capacities,
    /// Reloads that change a host attachment's rules are rolled back unless confirmed within
    /// this long (`confirm.rs`).
    pub confirm: Option<Duration>,
}

/// A slot whose generation was replaced, waiting for its grace period to pass.
struct Retiring {
    due: Instant,
    /// The rule table of the retired generation, to fold its hit counters by rule identity.
    rules: Vec<RuleState>,
    slot: u8,
}

pub struct Agent {
    pub options: AgentOptions,
    pub paths: Paths,
    /// The config as written (validated).
    pub declared: Config,
    /// The config in force: `declared` with the interfaces found by pattern or MAC named
    /// (`locate`).
    pub config: Config,
    /// Instances whose interface is not found, and why.
    not_found: BTreeMap<String, NotFound>,
    pub datapath: Datapath,
    /// The same maps as `datapath`'s, opened through their pins: what the agent reads besides
    /// the policy it writes (conntrack, rule hits).
    pub pinned: PinnedMaps,
    pub applied: Applied,
    pub state: State,
    retiring: Option<Retiring>,
    last_sweep: Instant,
    sweep_interval: Duration,
    /// A new flow was refused for want of allowance since the last sweep.
    sweep_requested: bool,
    /// A change of the host NIC's rules awaiting `sgwall confirm`.
    pending: Option<confirm::Pending>,
}

impl Agent {
    /// Loads (or reuses) the datapath, applies the config and attaches every present interface.
    pub fn start(options: AgentOptions, console: &mut Console) -> Result<Agent, RuntimeError> {
        let loaded = config::load(&options.config_path)?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let paths = Paths::new(&options.pin_root);
        let mut datapath = Datapath::load(&LoadOptions {
            pin_root: Some(options.pin_root.clone()),
            capacities: options.capacities,
            verifier_log: None,
        })?;
        let pinned = PinnedMaps::open(&paths)?;

        // What a previous agent left: its interface slots (counters and allowances are indexed
        // by them) and, if its state matches the maps, its rule table and hit totals.
        let generation = datapath.maps.generation()?;
        let previous_slots = recover_ifslots(&mut datapath.maps, generation)?;
        let previous_state = state::read(&paths.state_file())
            .ok()
            .filter(|s| s.generation == generation && generation != 0);
        // H6: an older layout's maps may still be what the attached programs use.
        let older_layouts = paths.stale_layouts();
        let carried_hit_totals = if older_layouts.is_empty() {
            None
        } else {
            state::read(&paths.state_file()).ok().map(|s| s.hit_totals)
        };

        // After a restart, instances keep the interfaces the previous agent enforced them on.
        let found_before: BTreeMap<String, String> = previous_state
            .iter()
            .flat_map(|s| s.interfaces.iter())
            .map(|i| (i.instance.clone(), i.interface.clone()))
            .collect();
        let resolved = resolve_links(&loaded.config, &found_before)?;
        let compiled = compile::compile(&resolved.config, &previous_slots)?;
        let ifindexes = present_ifindexes(&resolved.config);
        let applied = maps::apply_full(&mut datapath.maps, None, compiled, ifindexes)?;
        let retiring = previous_state.as_ref().map(|s| Retiring {
            due: Instant::now() + GRACE_PERIOD,
            rules: s.rules.clone(),
            slot: slot_of_generation(generation),
        });

        let mut agent = Agent {
            state: State {
                pid: std::process::id(),
                config: options.config_path.clone(),
                generation: applied.generation,
                started_at: epoch_seconds(SystemTime::now()),
                interfaces: Vec::new(),
                rules: Vec::new(),
                hit_totals: previous_state
                    .map(|s| s.hit_totals)
                    .or(carried_hit_totals)
                    .unwrap_or_default(),
                reloads: Reloads::default(),
                netns: options.netns.clone(),
                pending_confirmation: None,
            },
            options,
            paths,
            declared: loaded.config,
            config: resolved.config,
            not_found: resolved.not_found,
            datapath,
            pinned,
            applied,
            retiring,
            last_sweep: Instant::now(),
            sweep_interval: CONNTRACK_SWEEP_INTERVAL,
            sweep_requested: false,
            pending: None,
        };
        // Before any link runs the new programs: then every flow the old ones tracked is
        // already known to the new ones when they see its next packet.
        agent.carry_flows(&older_layouts, true);
        agent.detach_unconfigured()?;
        agent.attach_all(console)?;
        // The old maps get no more updates now: flows that started since the first pass.
        agent.carry_flows(&older_layouts, false);
        for stale in older_layouts {
            match std::fs::remove_dir_all(&stale) {
                Ok(()) => tracing::info!("removed maps of an older layout: {}", stale.display()),
                Err(error) => tracing::warn!("removing {}: {error}", stale.display()),
            }
        }
        agent.refresh_state()?;
        Ok(agent)
    }

    /// Carries the tracked flows of older layouts' maps into this one's (H6). A layout it
    /// cannot read costs its flows, never the start: the new tables only lack entries, so
    /// nothing is admitted that the rules deny.
    fn carry_flows(&mut self, older_layouts: &[PathBuf], before_swap: bool) {
        let slots: BTreeMap<u32, u16> = self
            .applied
            .ifindexes
            .iter()
            .filter_map(|(interface, ifindex)| {
                let slot = self.applied.policy.interface(interface)?.ifslot;
                Some((*ifindex, slot))
            })
            .collect();
        for dir in older_layouts {
            let carried = migrate::read_flows(dir).and_then(|flows: Vec<CarriedFlow>| {
                migrate::carry(&flows, &self.pinned, &slots, before_swap)
            });
            match carried {
                Ok(carried) => tracing::info!(
                    "carried {} established and {} embryonic flows from {} ({}){}",
                    carried.established,
                    carried.embryonic,
                    dir.display(),
                    if before_swap {
                        "before the swap"
                    } else {
                        "after it"
                    },
                    if carried.left > 0 {
                        format!(", left {} of interfaces not enforced", carried.left)
                    } else {
                        String::new()
                    }
                ),
                Err(error) => tracing::error!("{}", with_causes(&error)),
            }
        }
    }

    /// Re-reads the config. An invalid config changes nothing and is reported as an error.
    pub fn reload(&mut self, console: &mut Console) -> Result<ReloadOutcome, RuntimeError> {
        let loaded = match config::load(&self.options.config_path) {
            Ok(loaded) => loaded,
            Err(error) => {
                self.state.reloads.rejected += 1;
                self.state.reloads.last_error = Some(with_causes(&error));
                self.write_state()?;
                return Err(error.into());
            }
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let resolved = resolve_links(&loaded.config, &locate::found(&self.config))?;
        let probation = self
            .options
            .confirm
            .filter(|_| confirm::host_rules_change(&self.declared, &loaded.config));
        // What a rollback puts back: the last confirmed policy, also across several changes.
        let confirmed =
            (probation.is_some() && self.pending.is_none()).then(|| self.declared.clone());
        let outcome = self.put_in_force(loaded.config, resolved, console)?;
        if let Some(within) = probation
            && let Some(rollback_to) = self.pending.take().map(|p| p.rollback_to).or(confirmed)
        {
            let generation = self.applied.generation;
            tracing::warn!(
                "generation {generation} changes the host NIC's rules: run `sgwall confirm` \
                 within {}s or the previous policy comes back",
                within.as_secs()
            );
            self.state.pending_confirmation = Some(confirm::record(generation, within));
            self.pending = Some(confirm::Pending {
                rollback_to,
                deadline: Instant::now() + within,
            });
        }
        self.state.reloads.applied += 1;
        self.state.reloads.last_error = None;
        self.write_state()?;
        Ok(outcome)
    }

    /// Applies `declared` (as `resolved` finds its interfaces): nothing when it compiles to
    /// what is in force, membership deltas when only memberships change, a generation flip
    /// otherwise; then follows the interfaces it names.
    fn put_in_force(
        &mut self,
        declared: Config,
        resolved: Resolved,
        console: &mut Console,
    ) -> Result<ReloadOutcome, RuntimeError> {
        let slots: BTreeMap<String, u16> = self.applied.policy.ifslots();
        let compiled = compile::compile(&resolved.config, &slots)?;
        let ifindexes = present_ifindexes(&resolved.config);

        let outcome = if compiled == self.applied.policy && ifindexes == self.applied.ifindexes {
            ReloadOutcome::Unchanged
        } else if compiled.interfaces == self.applied.policy.interfaces
            && ifindexes == self.applied.ifindexes
        {
            let changes = membership_changes(&self.applied.policy, &compiled);
            let mut members_written = 0;
            for change in &changes {
                let delta =
                    maps::apply_membership(&mut self.datapath.maps, &mut self.applied, change)?;
                members_written += delta.members.len();
            }
            // P1: edited entries of a prefix list reach the datapath like a membership change.
            let lists = maps::apply_prefix_lists(
                &mut self.datapath.maps,
                &mut self.applied,
                &resolved.config,
            )?;
            ReloadOutcome::MembershipDelta {
                members_written,
                prefix_list_entries_written: lists.entries.len(),
            }
        } else {
            let retired_rules = self.state.rules.clone();
            let retired_slot = slot_of_generation(self.applied.generation);
            if self.fold_retired_hits()? {
                // apply_full clears the retired slot itself before writing into it.
                maps::drop_unused_group_bits(&mut self.datapath.maps)?;
            }
            let applied = maps::apply_full(
                &mut self.datapath.maps,
                Some(&self.applied),
                compiled,
                ifindexes,
            )?;
            self.applied = applied;
            self.retiring = Some(Retiring {
                due: Instant::now() + GRACE_PERIOD,
                rules: retired_rules,
                slot: retired_slot,
            });
            ReloadOutcome::Flipped
        };
        self.declared = declared;
        self.config = resolved.config;
        self.not_found = resolved.not_found;
        self.detach_unconfigured()?;
        self.attach_all(console)?;
        self.refresh_state()?;
        Ok(outcome)
    }

    /// Attaches interfaces that appeared, re-attaches recreated ones, and stops enforcing the
    /// ones that vanished. Returns true when anything changed.
    pub fn poll_interfaces(&mut self, console: &mut Console) -> Result<bool, RuntimeError> {
        if locate::needs_links(&self.declared) {
            let resolved = resolve_links(&self.declared, &locate::found(&self.config))?;
            if resolved.config != self.config || resolved.not_found != self.not_found {
                // An instance found its interface, lost it, or found another: its policy moves
                // with it, under a new generation like any change of the rules' interfaces.
                let outcome = self.put_in_force(self.declared.clone(), resolved, console)?;
                tracing::info!("interfaces found by pattern or MAC changed: {outcome:?}");
                return Ok(true);
            }
        }
        let present = present_ifindexes(&self.config);
        if present == self.applied.ifindexes {
            return Ok(false);
        }
        let names: BTreeSet<String> = present
            .keys()
            .chain(self.applied.ifindexes.keys())
            .cloned()
            .collect();
        for name in names {
            let now = present.get(&name).copied();
            if now != self.applied.ifindexes.get(&name).copied() {
                maps::set_interface_index(&mut self.datapath.maps, &mut self.applied, &name, now)?;
            }
        }
        self.attach_all(console)?;
        // Config and policy are unchanged, so the rule table is too: only the interfaces moved.
        self.write_state()?;
        Ok(true)
    }

    /// Timer work: retire a replaced generation after its grace period, sweep conntrack.
    pub fn housekeeping(&mut self) -> Result<(), RuntimeError> {
        if self
            .retiring
            .as_ref()
            .is_some_and(|retiring| Instant::now() >= retiring.due)
        {
            self.fold_retired_hits()?;
            maps::collect_garbage(&mut self.datapath.maps)?;
            self.write_state()?;
        }
        let since_sweep = self.last_sweep.elapsed();
        let urgent = self.sweep_requested && since_sweep >= URGENT_SWEEP_INTERVAL;
        if since_sweep >= self.sweep_interval || urgent {
            let started = Instant::now();
            self.sweep_conntrack()?;
            self.sweep_interval =
                CONNTRACK_SWEEP_INTERVAL.max(started.elapsed() * SWEEP_DUTY_DIVISOR);
            self.last_sweep = Instant::now();
            self.sweep_requested = false;
        }
        Ok(())
    }

    /// Keeps a pending change that `sgwall confirm` confirmed, or puts the last confirmed
    /// policy back once the deadline passed. Returns the rollback's outcome, if one happened.
    pub fn settle_confirmation(
        &mut self,
        console: &mut Console,
    ) -> Result<Option<ReloadOutcome>, RuntimeError> {
        let requested = confirm::take_request(&self.paths);
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        if requested.is_some_and(|generation| generation == self.applied.generation) {
            tracing::info!("generation {} confirmed", self.applied.generation);
            self.state.pending_confirmation = None;
            self.write_state()?;
            return Ok(None);
        }
        if Instant::now() < pending.deadline {
            self.pending = Some(pending);
            return Ok(None);
        }
        let unconfirmed = self.applied.generation;
        let resolved = resolve_links(&pending.rollback_to, &locate::found(&self.config))?;
        let outcome = match self.put_in_force(pending.rollback_to.clone(), resolved, console) {
            Ok(outcome) => outcome,
            Err(error) => {
                // Tried again at the next tick: the unconfirmed policy stays meanwhile.
                self.pending = Some(pending);
                return Err(error);
            }
        };
        tracing::warn!(
            "generation {unconfirmed} was not confirmed: rolled back to the previous policy \
             (generation {})",
            self.applied.generation
        );
        self.state.pending_confirmation = None;
        self.write_state()?;
        Ok(Some(outcome))
    }

    /// Asks for a conntrack sweep at the next housekeeping (within [`URGENT_SWEEP_INTERVAL`]
    /// of the last one): the datapath refused a new flow because the allowance looked used up,
    /// and entries that expired since the last sweep still count against it.
    pub fn request_sweep(&mut self) {
        self.sweep_requested = true;
    }

    /// Folds the retired generation's rule hits into the totals and zeroes them, so the slot
    /// can be cleared and reused. Returns whether a generation was retiring.
    fn fold_retired_hits(&mut self) -> Result<bool, RuntimeError> {
        let Some(retiring) = self.retiring.take() else {
            return Ok(false);
        };
        let mut hits = self.pinned.rule_hits()?;
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| RuntimeError::Cpus(source))?;
        for rule in &retiring.rules {
            if rule.id as usize >= MAX_RULE_IDS_PER_SLOT {
                continue;
            }
            let index = rule_hit_index(retiring.slot, rule.id);
            let count: u64 = hits
                .get(&index, 0)
                .map_err(aya_error(map_names::RULE_HITS))?
                .iter()
                .sum();
            if count > 0 {
                *self.state.hit_totals.entry(rule.identity()).or_default() += count;
                let zeros = PerCpuValues::try_from(vec![0u64; cpus]).map_err(RuntimeError::Cpus)?;
                hits.set(index, zeros, 0)
                    .map_err(aya_error(map_names::RULE_HITS))?;
            }
        }
        Ok(true)
    }

    /// Deletes established flows idle past their timeout and credits the interface's
    /// allowance (C5, C6). The datapath also deletes expired entries it meets; this catches the
    /// ones no packet meets again.
    pub fn sweep_conntrack(&mut self) -> Result<usize, RuntimeError> {
        let timeouts: BTreeMap<u32, Timeouts> = self
            .applied
            .policy
            .interfaces
            .iter()
            .filter_map(|i| {
                let ifindex = self.applied.ifindexes.get(&i.interface)?;
                Some((*ifindex, i.config.timeouts))
            })
            .collect();
        let now = monotonic_ns();
        let mut table = self.pinned.conntrack(CtPool::Established)?;
        let expired: Vec<_> = table
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, entry)| {
                let live = match timeouts.get(&key.ifindex) {
                    Some(timeouts) => ct_entry_is_live(
                        now,
                        entry.last_seen_ns,
                        timeout_secs(timeouts, key.proto, entry.state, entry.flags),
                    ),
                    // Its interface is gone: nothing can use the flow any more.
                    None => false,
                };
                (!live).then_some((key, entry.ifslot))
            })
            .collect();
        let mut removed_per_slot: BTreeMap<u16, u64> = BTreeMap::new();
        for (key, ifslot) in &expired {
            // Only count what this call removed: the datapath may have raced us to it.
            if table.remove(key).is_ok() {
                *removed_per_slot.entry(*ifslot).or_default() += 1;
            }
        }
        let mut removed = self.pinned.ct_removed_by_agent()?;
        for (ifslot, count) in removed_per_slot {
            if ifslot >= IFSLOT_UNCONFIGURED {
                continue;
            }
            let before = removed
                .get(&u32::from(ifslot), 0)
                .map_err(aya_error(map_names::CT_REMOVED_BY_AGENT))?;
            removed
                .set(u32::from(ifslot), before + count, 0)
                .map_err(aya_error(map_names::CT_REMOVED_BY_AGENT))?;
        }
        Ok(expired.len())
    }

    /// Pinned links of interfaces the config no longer names: detach them, so those
    /// interfaces are no longer filtered (the user removed them).
    fn detach_unconfigured(&mut self) -> Result<(), RuntimeError> {
        let configured: BTreeSet<(String, Hook)> = self
            .config
            .instances
            .iter()
            .flat_map(|i| Hook::for_instance(i).map(|h| (i.interface.clone(), h)))
            .collect();
        for (interface, hook) in links::pinned(&self.paths) {
            if !configured.contains(&(interface.clone(), hook)) {
                links::detach(&self.paths, &interface, hook)?;
                tracing::info!("detached {} from {interface}", hook.name());
            }
        }
        Ok(())
    }

    fn attach_all(&mut self, console: &mut Console) -> Result<(), RuntimeError> {
        let mut interfaces = Vec::new();
        let instances = self.config.instances.clone();
        for instance in &instances {
            let hooks = Hook::for_instance(instance);
            let ifslot = self
                .applied
                .policy
                .interface(&instance.interface)
                .map_or(0, |i| i.ifslot);
            let ifindex = self.applied.ifindexes.get(&instance.interface).copied();
            let previous = self
                .state
                .interfaces
                .iter()
                .find(|i| i.interface == instance.interface)
                .cloned();
            let (status, detail) = match (ifindex, self.not_found.get(&instance.name)) {
                (_, Some(NotFound::Ambiguous(detail))) => {
                    (InterfaceStatus::Failed, Some(detail.clone()))
                }
                (_, Some(NotFound::Absent(detail))) => {
                    (InterfaceStatus::Waiting, Some(detail.clone()))
                }
                (None, None) => (
                    InterfaceStatus::Waiting,
                    Some("no such interface".to_string()),
                ),
                (Some(index), None) => {
                    let already = previous.as_ref().is_some_and(|p| {
                        p.status == InterfaceStatus::Enforcing && p.ifindex == Some(index)
                    });
                    if already {
                        (InterfaceStatus::Enforcing, None)
                    } else {
                        match self.attach_interface(&instance.interface, index, &hooks) {
                            Ok(()) => (InterfaceStatus::Enforcing, None),
                            Err(error) => (InterfaceStatus::Failed, Some(with_causes(&error))),
                        }
                    }
                }
            };
            let current = InterfaceState {
                interface: instance.interface.clone(),
                instance: instance.name.clone(),
                attach: instance.attach.name().to_string(),
                hooks: hooks.iter().map(|h| h.name().to_string()).collect(),
                ifslot,
                ifindex,
                status,
                detail,
            };
            let changed = previous
                .as_ref()
                .is_none_or(|p| p.status != status || p.ifindex != ifindex);
            if changed {
                let event = AgentEvent::interface(&current);
                console.emit(&event).map_err(RuntimeError::Console)?;
                tracing::info!("{event}");
            }
            interfaces.push(current);
        }
        self.state.interfaces = interfaces;
        Ok(())
    }

    fn attach_interface(
        &mut self,
        interface: &str,
        ifindex: u32,
        hooks: &[Hook],
    ) -> Result<(), RuntimeError> {
        for hook in hooks {
            let outcome = links::ensure_attached(
                &mut self.datapath.ebpf,
                &self.paths,
                interface,
                ifindex,
                *hook,
                self.options.xdp_mode,
            )?;
            if outcome == LinkOutcome::Reused {
                tracing::debug!("{interface}: reused pinned {} link", hook.name());
            }
        }
        Ok(())
    }

    fn refresh_state(&mut self) -> Result<(), RuntimeError> {
        self.state.generation = self.applied.generation;
        self.state.rules = state::rule_table(&self.config, &self.applied.policy);
        self.write_state()
    }

    pub fn write_state(&self) -> Result<(), RuntimeError> {
        state::write(&self.paths.state_file(), &self.state)?;
        Ok(())
    }
}

/// Interface slots recorded in the active slot of a pinned `IFACES` map, by interface name.
fn recover_ifslots(
    maps: &mut dyn PolicyMaps,
    generation: u64,
) -> Result<BTreeMap<String, u16>, RuntimeError> {
    let active = slot_of_generation(generation);
    let mut slots = BTreeMap::new();
    for key in maps.ifaces().keys()? {
        if key.slot != active {
            continue;
        }
        if let Some(config) = maps.ifaces().get(&key)? {
            let end = config.name.iter().position(|b| *b == 0).unwrap_or(16);
            let name = String::from_utf8_lossy(&config.name[..end]).into_owned();
            slots.insert(name, config.ifslot);
        }
    }
    Ok(slots)
}

/// The config with the interfaces found by pattern or MAC named; the interfaces are listed
/// only when some instance looks for one.
fn resolve_links(
    declared: &Config,
    found_before: &BTreeMap<String, String>,
) -> Result<Resolved, RuntimeError> {
    if !locate::needs_links(declared) {
        return Ok(Resolved {
            config: declared.clone(),
            not_found: BTreeMap::new(),
        });
    }
    let links = sys::links().map_err(RuntimeError::Links)?;
    Ok(locate::resolve(declared, &links, found_before))
}

/// Interfaces of the config that exist right now, with their index.
pub fn present_ifindexes(config: &Config) -> BTreeMap<String, u32> {
    config
        .instances
        .iter()
        .filter_map(|i| sys::ifindex(&i.interface).map(|index| (i.interface.clone(), index)))
        .collect()
}

/// Addresses whose membership set differs between two compiled policies, grouped by their
/// new set, ready for `apply_membership`.
fn membership_changes(old: &CompiledPolicy, new: &CompiledPolicy) -> Vec<MembershipChange> {
    let mut by_set: BTreeMap<Option<u64>, Vec<IpAddr>> = BTreeMap::new();
    let addresses: BTreeSet<_> = old.members.keys().chain(new.members.keys()).collect();
    for address in addresses {
        let before = old.members.get(address).copied();
        let after = new.members.get(address).copied();
        if before != after {
            by_set
                .entry(after)
                .or_default()
                .push(ip_of(address.family, &address.addr));
        }
    }
    by_set
        .into_iter()
        .map(|(set, addresses)| MembershipChange {
            addresses,
            groups: set
                .and_then(|id| new.sets.get(&id).cloned())
                .unwrap_or_default(),
        })
        .collect()
}
