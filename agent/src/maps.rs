//! Applying a compiled policy to the datapath's maps, through a small trait.
//!
//! [`PolicyMaps`] is the seam: the kernel implementation lives in `datapath::kernel_maps`, and
//! [`MemoryMaps`] here is a plain in-memory one, so the reconciliation order (the part that keeps
//! updates atomic, see `docs/design.md` "Atomic updates") is tested without root. `MemoryMaps`
//! also answers lookups the way the datapath does ([`MemoryMaps::classify`]), which is the model
//! the property tests compare with the reference evaluator.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::{
    AclBits, AddrKey, CIDR_KEY_FIXED_BITS, CidrKey, GroupBitsKey, IFACE_F_HAS_ACL,
    IFACE_F_HAS_PREFIX_LISTS, IfaceConfig, IfaceKey, LocalAddrKey, MemberValue,
    PORT_KEY_FIXED_BITS, PREFIX_LIST_KEY_FIXED_BITS, PROTO_TCP, PROTO_UDP, PeerBits, PortKey,
    RuleBitmap, acl_first_match, any_match_in, first_match, slot_of_generation,
};

use crate::compile::{
    CompiledInterface, CompiledPolicy, MembershipChange, MembershipDelta, PrefixListDelta,
    PrefixListPrefix, prefix_list_set_id, set_id,
};

/// An LPM trie key: the prefix length in bits over `data`, as the kernel lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lpm<K> {
    pub prefix_len: u32,
    pub data: K,
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The kernel refused an operation. The source is the kernel side's own error (aya's,
    /// boxed so that this module stays free of aya types).
    #[error("{map}: {operation} failed: {source}")]
    Kernel {
        map: &'static str,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{map} is full ({capacity} entries); raise its capacity or reduce the policy")]
    Full { map: &'static str, capacity: usize },
}

/// One map, by key and value.
pub trait Table<K, V> {
    fn get(&self, key: &K) -> Result<Option<V>, MapError>;
    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError>;
    /// Removing an absent key is not an error.
    fn delete(&mut self, key: &K) -> Result<(), MapError>;
    fn keys(&self) -> Result<Vec<K>, MapError>;
}

/// The policy maps the agent writes.
pub trait PolicyMaps {
    fn generation(&self) -> Result<u64, MapError>;
    fn set_generation(&mut self, generation: u64) -> Result<(), MapError>;
    fn ifaces(&mut self) -> &mut dyn Table<IfaceKey, IfaceConfig>;
    fn cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, RuleBitmap>;
    fn ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, RuleBitmap>;
    fn group_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap>;
    fn members(&mut self) -> &mut dyn Table<AddrKey, MemberValue>;
    fn local_addrs(&mut self) -> &mut dyn Table<LocalAddrKey, u32>;
    fn acl_cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, AclBits>;
    fn acl_ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, AclBits>;
    fn prefix_lists(&mut self) -> &mut dyn Table<Lpm<AddrKey>, MemberValue>;
    fn prefix_list_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap>;
}

/// A map held in memory, with an optional capacity like a kernel map's `max_entries`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryTable<K: Ord, V> {
    pub entries: BTreeMap<K, V>,
    pub capacity: Option<usize>,
    pub name: &'static str,
}

impl<K: Ord, V> Default for MemoryTable<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            capacity: None,
            name: "memory",
        }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> for MemoryTable<K, V> {
    fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        Ok(self.entries.get(key).cloned())
    }

    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        if let Some(capacity) = self.capacity
            && self.entries.len() >= capacity
            && !self.entries.contains_key(key)
        {
            return Err(MapError::Full {
                map: self.name,
                capacity,
            });
        }
        self.entries.insert(key.clone(), value.clone());
        Ok(())
    }

    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        self.entries.remove(key);
        Ok(())
    }

    fn keys(&self) -> Result<Vec<K>, MapError> {
        Ok(self.entries.keys().cloned().collect())
    }
}

/// The policy maps in memory: the reconciliation tests' stand-in for the kernel, and the model
/// of the datapath's lookups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryMaps {
    pub generation: u64,
    pub ifaces: MemoryTable<IfaceKey, IfaceConfig>,
    pub cidrs: MemoryTable<Lpm<CidrKey>, RuleBitmap>,
    pub ports: MemoryTable<Lpm<PortKey>, RuleBitmap>,
    pub group_bits: MemoryTable<GroupBitsKey, RuleBitmap>,
    pub members: MemoryTable<AddrKey, MemberValue>,
    pub local_addrs: MemoryTable<LocalAddrKey, u32>,
    pub acl_cidrs: MemoryTable<Lpm<CidrKey>, AclBits>,
    pub acl_ports: MemoryTable<Lpm<PortKey>, AclBits>,
    pub prefix_lists: MemoryTable<Lpm<AddrKey>, MemberValue>,
    pub prefix_list_bits: MemoryTable<GroupBitsKey, RuleBitmap>,
}

impl PolicyMaps for MemoryMaps {
    fn generation(&self) -> Result<u64, MapError> {
        Ok(self.generation)
    }
    fn set_generation(&mut self, generation: u64) -> Result<(), MapError> {
        self.generation = generation;
        Ok(())
    }
    fn ifaces(&mut self) -> &mut dyn Table<IfaceKey, IfaceConfig> {
        &mut self.ifaces
    }
    fn cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, RuleBitmap> {
        &mut self.cidrs
    }
    fn ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, RuleBitmap> {
        &mut self.ports
    }
    fn group_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        &mut self.group_bits
    }
    fn members(&mut self) -> &mut dyn Table<AddrKey, MemberValue> {
        &mut self.members
    }
    fn local_addrs(&mut self) -> &mut dyn Table<LocalAddrKey, u32> {
        &mut self.local_addrs
    }
    fn acl_cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, AclBits> {
        &mut self.acl_cidrs
    }
    fn acl_ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, AclBits> {
        &mut self.acl_ports
    }
    fn prefix_lists(&mut self) -> &mut dyn Table<Lpm<AddrKey>, MemberValue> {
        &mut self.prefix_lists
    }
    fn prefix_list_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        &mut self.prefix_list_bits
    }
}

/// What the agent remembers about the policy it put in the maps.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub generation: u64,
    pub policy: CompiledPolicy,
    /// Interface name → ifindex, for the interfaces present when applied.
    pub ifindexes: BTreeMap<String, u32>,
}

fn iface_key(slot: u8, ifindex: u32) -> IfaceKey {
    IfaceKey {
        slot,
        _pad: [0; 3],
        ifindex,
    }
}

fn cidr_key(slot: u8, ifslot: u16, entry: &crate::compile::CidrEntry) -> Lpm<CidrKey> {
    Lpm {
        prefix_len: CIDR_KEY_FIXED_BITS + u32::from(entry.prefix_len),
        data: CidrKey {
            slot,
            dir: entry.dir,
            family: entry.family,
            _pad: 0,
            ifslot,
            _pad2: [0; 2],
            addr: entry.addr,
        },
    }
}

fn port_key(slot: u8, ifslot: u16, entry: &crate::compile::PortEntry) -> Lpm<PortKey> {
    Lpm {
        prefix_len: PORT_KEY_FIXED_BITS + u32::from(entry.prefix_len),
        data: PortKey {
            slot,
            dir: entry.dir,
            proto: entry.proto,
            _pad: 0,
            ifslot,
            selector: entry.selector.to_be_bytes(),
        },
    }
}

fn group_bits_key(slot: u8, dir: u8, ifslot: u16, set: u64) -> GroupBitsKey {
    GroupBitsKey {
        slot,
        dir,
        _pad: [0; 2],
        ifslot,
        _pad2: [0; 2],
        set_id: set,
    }
}

fn prefix_list_key(prefix: &PrefixListPrefix) -> Lpm<AddrKey> {
    Lpm {
        prefix_len: PREFIX_LIST_KEY_FIXED_BITS + u32::from(prefix.prefix_len),
        data: AddrKey {
            family: prefix.family,
            _pad: [0; 3],
            addr: prefix.addr,
        },
    }
}

fn prefix_of(key: &Lpm<AddrKey>) -> PrefixListPrefix {
    PrefixListPrefix {
        family: key.data.family,
        addr: key.data.addr,
        prefix_len: key.prefix_len.saturating_sub(PREFIX_LIST_KEY_FIXED_BITS) as u8,
    }
}

fn local_addr_key(ifslot: u16, addr: &AddrKey) -> LocalAddrKey {
    LocalAddrKey {
        ifslot,
        family: addr.family,
        _pad: 0,
        addr: addr.addr,
    }
}

/// Writes the `GROUP_BITS` entries of one membership set for every interface, into `slot`.
fn write_set_bits(
    maps: &mut dyn PolicyMaps,
    slot: u8,
    interfaces: &[CompiledInterface],
    set: u64,
    groups: &BTreeSet<String>,
) -> Result<(), MapError> {
    for interface in interfaces {
        for dir in CompiledPolicy::directions() {
            let bits = interface.group_bits(dir, groups);
            if !bits.is_empty() {
                maps.group_bits()
                    .put(&group_bits_key(slot, dir, interface.ifslot, set), &bits)?;
            }
        }
    }
    Ok(())
}

/// Writes the `PREFIX_LIST_BITS` entries of one prefix list set for every interface, into
/// `slot`.
fn write_prefix_list_set_bits(
    maps: &mut dyn PolicyMaps,
    slot: u8,
    interfaces: &[CompiledInterface],
    set: u64,
    lists: &BTreeSet<String>,
) -> Result<(), MapError> {
    for interface in interfaces {
        for dir in CompiledPolicy::directions() {
            let bits = interface.prefix_list_bits(dir, lists);
            if !bits.is_empty() {
                maps.prefix_list_bits()
                    .put(&group_bits_key(slot, dir, interface.ifslot, set), &bits)?;
            }
        }
    }
    Ok(())
}

/// Deletes every slotted entry of `slot`.
pub fn clear_slot(maps: &mut dyn PolicyMaps, slot: u8) -> Result<(), MapError> {
    delete_where(maps.ifaces(), |key| key.slot == slot)?;
    delete_where(maps.cidrs(), |key| key.data.slot == slot)?;
    delete_where(maps.ports(), |key| key.data.slot == slot)?;
    delete_where(maps.group_bits(), |key| key.slot == slot)?;
    delete_where(maps.acl_cidrs(), |key| key.data.slot == slot)?;
    delete_where(maps.acl_ports(), |key| key.data.slot == slot)?;
    delete_where(maps.prefix_list_bits(), |key| key.slot == slot)
}

fn delete_where<K, V>(
    table: &mut dyn Table<K, V>,
    doomed: impl Fn(&K) -> bool,
) -> Result<(), MapError> {
    for key in table.keys()? {
        if doomed(&key) {
            table.delete(&key)?;
        }
    }
    Ok(())
}

/// Puts `next` in force. Every intermediate state admits a subset of what the policy in force
/// before (`previous`) or `next` admits, so a packet both deny is never admitted:
///
/// 1. clear the inactive slot (left over from the generation before last);
/// 2. shrink: every member whose groups change drops to the groups it has in both policies
///    (rules only allow, so fewer groups admit less), still under the old rules;
/// 3. write the new rules into the inactive slot, with group bits for every set in use;
/// 4. flip the generation: one 8-byte store;
/// 5. grow: members get their new groups, instances their new local addresses.
///
/// Prefix list entries (P1, not slotted either) follow the same shrink and grow: before the
/// flip every trie entry holds only lists that cover it in both policies, after it the new sets.
///
/// `previous` is what this agent applied before; `None` after a restart, when the groups behind
/// the membership sets already in the maps are unknown, so changed members are removed during
/// the shrink instead (denying, briefly, only what neither old nor new policy needs).
pub fn apply_full(
    maps: &mut dyn PolicyMaps,
    previous: Option<&Applied>,
    next: CompiledPolicy,
    ifindexes: BTreeMap<String, u32>,
) -> Result<Applied, MapError> {
    let generation = maps.generation()?;
    let active = slot_of_generation(generation);
    let next_generation = generation + 1;
    let inactive = slot_of_generation(next_generation);

    clear_slot(maps, inactive)?;

    // Shrink, under the old rules.
    let empty = BTreeMap::new();
    let previous_sets = previous.map_or(&empty, |p| &p.policy.sets);
    let mut transitional_sets: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for address in maps.members().keys()? {
        let Some(current) = maps.members().get(&address)? else {
            continue;
        };
        let wanted = next.members.get(&address).copied();
        if wanted == Some(current.set_id) {
            continue;
        }
        let shrunk: BTreeSet<String> = match (previous_sets.get(&current.set_id), wanted) {
            (Some(old_groups), Some(new_id)) => next
                .sets
                .get(&new_id)
                .map(|new_groups| old_groups.intersection(new_groups).cloned().collect())
                .unwrap_or_default(),
            _ => BTreeSet::new(),
        };
        if shrunk.is_empty() {
            maps.members().delete(&address)?;
            continue;
        }
        let shrunk_id = set_id(&shrunk);
        if shrunk_id == current.set_id {
            continue;
        }
        if let Some(previous) = previous
            && !transitional_sets.contains_key(&shrunk_id)
        {
            write_set_bits(
                maps,
                active,
                &previous.policy.interfaces,
                shrunk_id,
                &shrunk,
            )?;
        }
        transitional_sets.insert(shrunk_id, shrunk);
        maps.members()
            .put(&address, &MemberValue { set_id: shrunk_id })?;
    }
    let transitional_lists = shrink_prefix_lists(maps, previous, &next, active)?;
    let wanted_local: BTreeSet<LocalAddrKey> = next
        .interfaces
        .iter()
        .flat_map(|i| i.local_addrs.iter().map(|a| local_addr_key(i.ifslot, a)))
        .collect();
    delete_where(maps.local_addrs(), |key| !wanted_local.contains(key))?;

    // The new rules, into the inactive slot.
    for interface in &next.interfaces {
        for entry in &interface.cidrs {
            maps.cidrs()
                .put(&cidr_key(inactive, interface.ifslot, entry), &entry.rules)?;
        }
        for entry in &interface.ports {
            maps.ports()
                .put(&port_key(inactive, interface.ifslot, entry), &entry.rules)?;
        }
        if let Some(acl) = &interface.acl {
            // Only word 0 carries ACL bits (N2 caps entries far below 64).
            for entry in &acl.cidrs {
                maps.acl_cidrs().put(
                    &cidr_key(inactive, interface.ifslot, entry),
                    &entry.rules.words[0],
                )?;
            }
            for entry in &acl.ports {
                maps.acl_ports().put(
                    &port_key(inactive, interface.ifslot, entry),
                    &entry.rules.words[0],
                )?;
            }
        }
    }
    let mut sets_to_write = next.sets.clone();
    sets_to_write.extend(transitional_sets);
    for (id, groups) in &sets_to_write {
        write_set_bits(maps, inactive, &next.interfaces, *id, groups)?;
    }
    let mut list_sets_to_write = next.prefix_list_sets.clone();
    list_sets_to_write.extend(transitional_lists);
    for (id, lists) in &list_sets_to_write {
        write_prefix_list_set_bits(maps, inactive, &next.interfaces, *id, lists)?;
    }
    for interface in &next.interfaces {
        if let Some(ifindex) = ifindexes.get(&interface.interface) {
            maps.ifaces()
                .put(&iface_key(inactive, *ifindex), &interface.config)?;
        }
    }

    maps.set_generation(next_generation)?;

    // Grow, under the new rules.
    for (address, set) in &next.members {
        if maps.members().get(address)?.map(|m| m.set_id) != Some(*set) {
            maps.members().put(address, &MemberValue { set_id: *set })?;
        }
    }
    for key in &wanted_local {
        maps.local_addrs().put(key, &1)?;
    }
    for (prefix, set) in &next.prefix_list_entries {
        let key = prefix_list_key(prefix);
        if maps.prefix_lists().get(&key)?.map(|m| m.set_id) != Some(*set) {
            maps.prefix_lists()
                .put(&key, &MemberValue { set_id: *set })?;
        }
    }
    // An entry only the old policy had was kept through the flip at the lists both cover (see
    // `shrink_prefix_lists`); as a longer prefix it would still hide the new policy's own
    // entry for its addresses, and with it the lists only the new policy has there.
    delete_where(maps.prefix_lists(), |key| {
        !next.prefix_list_entries.contains_key(&prefix_of(key))
    })?;

    Ok(Applied {
        generation: next_generation,
        policy: next,
        ifindexes,
    })
}

/// The prefix list half of `apply_full`'s shrink, under the old rules: every trie entry drops to
/// the lists that cover it in both policies (an entry only the old policy has goes), so that the
/// trie admits nothing under the old rules that they did not, nor under the new rules that they
/// do not. Returns the transitional sets the new slot needs bits for too.
fn shrink_prefix_lists(
    maps: &mut dyn PolicyMaps,
    previous: Option<&Applied>,
    next: &CompiledPolicy,
    active: u8,
) -> Result<BTreeMap<u64, BTreeSet<String>>, MapError> {
    let mut transitional: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for key in maps.prefix_lists().keys()? {
        let Some(current) = maps.prefix_lists().get(&key)? else {
            continue;
        };
        let prefix = prefix_of(&key);
        if next.prefix_list_entries.get(&prefix) == Some(&current.set_id) {
            continue;
        }
        let old_lists = previous.and_then(|p| p.policy.prefix_list_sets.get(&current.set_id));
        let shrunk: BTreeSet<String> = match old_lists {
            Some(old_lists) => old_lists
                .intersection(&lists_covering(next, &prefix))
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
        if shrunk.is_empty() {
            maps.prefix_lists().delete(&key)?;
            continue;
        }
        let shrunk_id = prefix_list_set_id(&shrunk);
        if shrunk_id == current.set_id {
            continue;
        }
        if let Some(previous) = previous
            && !transitional.contains_key(&shrunk_id)
        {
            write_prefix_list_set_bits(
                maps,
                active,
                &previous.policy.interfaces,
                shrunk_id,
                &shrunk,
            )?;
        }
        transitional.insert(shrunk_id, shrunk);
        maps.prefix_lists()
            .put(&key, &MemberValue { set_id: shrunk_id })?;
    }
    Ok(transitional)
}

/// The lists of `policy` with an entry covering `prefix`: those of its longest match in the
/// policy's trie (each entry's set holds every list covering it, see `compile`).
fn lists_covering(policy: &CompiledPolicy, prefix: &PrefixListPrefix) -> BTreeSet<String> {
    let net = prefix.net();
    policy
        .prefix_list_entries
        .iter()
        .filter(|(candidate, _)| candidate.net().contains(&net))
        .max_by_key(|(candidate, _)| candidate.prefix_len)
        .and_then(|(_, set)| policy.prefix_list_sets.get(set))
        .cloned()
        .unwrap_or_default()
}

/// Editing prefix list entries (P1) as a delta in the generation in force, like a membership
/// change (G3): bits for new sets first (nothing references them yet), then the trie entries,
/// in any order (see [`CompiledPolicy::apply_prefix_lists`]). Tracked flows are untouched (C4).
pub fn apply_prefix_lists(
    maps: &mut dyn PolicyMaps,
    applied: &mut Applied,
    config: &crate::model::Config,
) -> Result<PrefixListDelta, MapError> {
    let delta = applied.policy.apply_prefix_lists(config);
    let active = slot_of_generation(maps.generation()?);
    for set in &delta.new_sets {
        if let Some(lists) = applied.policy.prefix_list_sets.get(set) {
            write_prefix_list_set_bits(maps, active, &applied.policy.interfaces, *set, lists)?;
        }
    }
    for (prefix, set) in &delta.entries {
        let key = prefix_list_key(prefix);
        match set {
            Some(id) => maps
                .prefix_lists()
                .put(&key, &MemberValue { set_id: *id })?,
            None => maps.prefix_lists().delete(&key)?,
        }
    }
    Ok(delta)
}

/// Drops what the generation in force no longer uses: the inactive slot, and group bits of sets
/// no member references. Call it a grace period after an update, once no packet can still be
/// reading the retired slot.
pub fn collect_garbage(maps: &mut dyn PolicyMaps) -> Result<(), MapError> {
    let active = slot_of_generation(maps.generation()?);
    clear_slot(maps, active ^ 1)?;
    drop_unused_group_bits(maps)
}

/// The part of [`collect_garbage`] that touches the slot in force: group bits of sets no member
/// references any more. An update that is about to clear the inactive slot itself needs only
/// this.
pub fn drop_unused_group_bits(maps: &mut dyn PolicyMaps) -> Result<(), MapError> {
    let active = slot_of_generation(maps.generation()?);
    let mut in_use = BTreeSet::new();
    for address in maps.members().keys()? {
        if let Some(member) = maps.members().get(&address)? {
            in_use.insert(member.set_id);
        }
    }
    delete_where(maps.group_bits(), |key| {
        key.slot == active && !in_use.contains(&key.set_id)
    })?;
    let mut lists_in_use = BTreeSet::new();
    for key in maps.prefix_lists().keys()? {
        if let Some(entry) = maps.prefix_lists().get(&key)? {
            lists_in_use.insert(entry.set_id);
        }
    }
    delete_where(maps.prefix_list_bits(), |key| {
        key.slot == active && !lists_in_use.contains(&key.set_id)
    })
}

/// A membership change (G3) as a delta in the generation in force: the new set's group bits
/// first (nothing references it yet), then one member write per address.
pub fn apply_membership(
    maps: &mut dyn PolicyMaps,
    applied: &mut Applied,
    change: &MembershipChange,
) -> Result<MembershipDelta, MapError> {
    let delta = applied.policy.apply_membership(change);
    let active = slot_of_generation(maps.generation()?);
    for set in &delta.new_sets {
        if let Some(groups) = applied.policy.sets.get(set) {
            write_set_bits(maps, active, &applied.policy.interfaces, *set, groups)?;
        }
    }
    for (address, set) in &delta.members {
        match set {
            Some(id) => maps.members().put(address, &MemberValue { set_id: *id })?,
            None => maps.members().delete(address)?,
        }
    }
    Ok(delta)
}

/// Starts (or stops) enforcing an interface that appeared (or went away) after the last update:
/// only its `IFACES` entry in the active slot changes.
pub fn set_interface_index(
    maps: &mut dyn PolicyMaps,
    applied: &mut Applied,
    interface: &str,
    ifindex: Option<u32>,
) -> Result<(), MapError> {
    let active = slot_of_generation(maps.generation()?);
    if let Some(old) = applied.ifindexes.remove(interface) {
        maps.ifaces().delete(&iface_key(active, old))?;
    }
    if let (Some(ifindex), Some(compiled)) = (ifindex, applied.policy.interface(interface)) {
        maps.ifaces()
            .put(&iface_key(active, ifindex), &compiled.config)?;
        applied.ifindexes.insert(interface.to_string(), ifindex);
    }
    Ok(())
}

/// The longest-prefix match over `key.data`'s bytes, as `BPF_MAP_TYPE_LPM_TRIE` does it.
fn lpm_lookup<K, V>(table: &MemoryTable<Lpm<K>, V>, data: &K, max_bits: u32) -> Option<V>
where
    K: Copy + Ord + AsBytes,
    V: Copy,
{
    let wanted = data.as_bytes();
    table
        .entries
        .iter()
        .filter(|(key, _)| {
            key.prefix_len <= max_bits
                && prefix_matches(&key.data.as_bytes(), &wanted, key.prefix_len)
        })
        .max_by_key(|(key, _)| key.prefix_len)
        .map(|(_, bits)| *bits)
}

fn prefix_matches(entry: &[u8], wanted: &[u8], prefix_len: u32) -> bool {
    let full_bytes = (prefix_len / 8) as usize;
    let rest_bits = prefix_len % 8;
    if entry[..full_bytes] != wanted[..full_bytes] {
        return false;
    }
    if rest_bits == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest_bits);
    entry[full_bytes] & mask == wanted[full_bytes] & mask
}

/// Byte view of an LPM key's data, in the order the kernel compares it.
pub trait AsBytes {
    fn as_bytes(&self) -> Vec<u8>;
}

impl AsBytes for CidrKey {
    fn as_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![self.slot, self.dir, self.family, self._pad];
        bytes.extend_from_slice(&self.ifslot.to_ne_bytes());
        bytes.extend_from_slice(&self._pad2);
        bytes.extend_from_slice(&self.addr);
        bytes
    }
}

impl AsBytes for AddrKey {
    fn as_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![self.family];
        bytes.extend_from_slice(&self._pad);
        bytes.extend_from_slice(&self.addr);
        bytes
    }
}

impl AsBytes for PortKey {
    fn as_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![self.slot, self.dir, self.proto, self._pad];
        bytes.extend_from_slice(&self.ifslot.to_ne_bytes());
        bytes.extend_from_slice(&self.selector);
        bytes
    }
}

/// The first packet of a flow, as classification sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStart {
    pub ifindex: u32,
    pub dir: u8,
    pub family: u8,
    /// The peer: source for ingress, destination for egress.
    pub peer: [u8; 16],
    pub proto: u8,
    pub selector: u16,
}

/// A packet as the network ACL judges it (N2, N3): every packet, not only a flow's first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclPacket {
    pub ifindex: u32,
    pub dir: u8,
    pub family: u8,
    /// The peer: source for ingress, destination for egress.
    pub peer: [u8; 16],
    pub proto: u8,
    /// Of this packet (its destination port, or ICMP type and code), replies included.
    pub selector: u16,
}

/// The network ACL's verdict on a packet, as the datapath reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelAcl {
    /// The interface has no ACL to consult (no subnet, or the default ACL).
    NotFiltered,
    /// The lowest matching bit (0: the own subnet) and whether its entry allows.
    Entry { bit: u8, allows: bool },
    /// No entry matches: the final `*` denies.
    NoEntry,
}

/// What classification found for a flow's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelMatch {
    pub rule: u16,
    /// Some admitting rule makes the flow untracked (C8).
    pub untracked: bool,
}

impl MemoryMaps {
    /// The rule the datapath would pick for the first packet of a flow, by the same lookups:
    /// `(CIDRS | GROUP_BITS[MEMBERS] | PREFIX_LIST_BITS[PREFIX_LISTS]) & (PORTS |
    /// all_protocols)`, lowest bit. `None` when the
    /// interface has no configuration in the active slot; `Some(None)` when no rule matches.
    pub fn classify(&self, flow: &FlowStart) -> Option<Option<ModelMatch>> {
        let slot = slot_of_generation(self.generation);
        let iface = self.ifaces.entries.get(&iface_key(slot, flow.ifindex))?;
        let cidr = CidrKey {
            slot,
            dir: flow.dir,
            family: flow.family,
            _pad: 0,
            ifslot: iface.ifslot,
            _pad2: [0; 2],
            addr: flow.peer,
        };
        let cidr_bits = lpm_lookup(&self.cidrs, &cidr, CIDR_KEY_FIXED_BITS + 128);
        let member = self.members.entries.get(&AddrKey {
            family: flow.family,
            _pad: [0; 3],
            addr: flow.peer,
        });
        let group_bits = member.and_then(|m| {
            self.group_bits
                .entries
                .get(&group_bits_key(slot, flow.dir, iface.ifslot, m.set_id))
                .copied()
        });
        let list_bits = (iface.flags & IFACE_F_HAS_PREFIX_LISTS != 0)
            .then(|| {
                let address = AddrKey {
                    family: flow.family,
                    _pad: [0; 3],
                    addr: flow.peer,
                };
                lpm_lookup(
                    &self.prefix_lists,
                    &address,
                    PREFIX_LIST_KEY_FIXED_BITS + 128,
                )
            })
            .flatten()
            .and_then(|set| {
                self.prefix_list_bits
                    .entries
                    .get(&group_bits_key(slot, flow.dir, iface.ifslot, set.set_id))
                    .copied()
            });
        let peer = PeerBits {
            cidr: cidr_bits.as_ref(),
            group: group_bits.as_ref(),
            prefix_list: list_bits.as_ref(),
        };
        let port = PortKey {
            slot,
            dir: flow.dir,
            proto: flow.proto,
            _pad: 0,
            ifslot: iface.ifslot,
            selector: flow.selector.to_be_bytes(),
        };
        let port_bits = lpm_lookup(&self.ports, &port, PORT_KEY_FIXED_BITS + 16);
        let all_protocols = &iface.all_protocols[usize::from(flow.dir & 1)];
        let Some(rule) = first_match(&peer, port_bits.as_ref(), all_protocols) else {
            return Some(None);
        };
        let untracked = (flow.proto == PROTO_TCP || flow.proto == PROTO_UDP)
            && any_match_in(
                &peer,
                port_bits.as_ref(),
                all_protocols,
                &iface.untracked
                    [usize::from(flow.dir & 1) * 2 + usize::from(flow.proto == PROTO_UDP)],
            );
        Some(Some(ModelMatch { rule, untracked }))
    }

    /// The network ACL's verdict the datapath would reach for a packet, by the same lookups:
    /// `ACL_CIDRS & (ACL_PORTS | acl_all_protocols)`, lowest bit, `acl_allow`. `None` when the
    /// interface has no configuration in the active slot.
    pub fn acl(&self, packet: &AclPacket) -> Option<ModelAcl> {
        let slot = slot_of_generation(self.generation);
        let iface = self.ifaces.entries.get(&iface_key(slot, packet.ifindex))?;
        if iface.flags & IFACE_F_HAS_ACL == 0 {
            return Some(ModelAcl::NotFiltered);
        }
        let cidr = CidrKey {
            slot,
            dir: packet.dir,
            family: packet.family,
            _pad: 0,
            ifslot: iface.ifslot,
            _pad2: [0; 2],
            addr: packet.peer,
        };
        let port = PortKey {
            slot,
            dir: packet.dir,
            proto: packet.proto,
            _pad: 0,
            ifslot: iface.ifslot,
            selector: packet.selector.to_be_bytes(),
        };
        let dir = usize::from(packet.dir & 1);
        let matched = acl_first_match(
            lpm_lookup(&self.acl_cidrs, &cidr, CIDR_KEY_FIXED_BITS + 128).unwrap_or(0),
            lpm_lookup(&self.acl_ports, &port, PORT_KEY_FIXED_BITS + 16).unwrap_or(0),
            iface.acl_all_protocols[dir],
        );
        Some(match matched {
            Some(bit) => ModelAcl::Entry {
                bit,
                allows: iface.acl_allow[dir] >> bit & 1 != 0,
            },
            None => ModelAcl::NoEntry,
        })
    }

    pub fn with_capacities(capacities: &crate::maps::Capacities) -> Self {
        let mut maps = MemoryMaps::default();
        maps.ifaces.capacity = Some(capacities.ifaces);
        maps.ifaces.name = filter_common::map_names::IFACES;
        maps.cidrs.capacity = Some(capacities.cidrs);
        maps.cidrs.name = filter_common::map_names::CIDRS;
        maps.ports.capacity = Some(capacities.ports);
        maps.ports.name = filter_common::map_names::PORTS;
        maps.group_bits.capacity = Some(capacities.group_bits);
        maps.group_bits.name = filter_common::map_names::GROUP_BITS;
        maps.members.capacity = Some(capacities.members);
        maps.members.name = filter_common::map_names::MEMBERS;
        maps.local_addrs.capacity = Some(capacities.local_addrs);
        maps.local_addrs.name = filter_common::map_names::LOCAL_ADDRS;
        maps.acl_cidrs.capacity = Some(capacities.acl_cidrs);
        maps.acl_cidrs.name = filter_common::map_names::ACL_CIDRS;
        maps.acl_ports.capacity = Some(capacities.acl_ports);
        maps.acl_ports.name = filter_common::map_names::ACL_PORTS;
        maps.prefix_lists.capacity = Some(capacities.prefix_lists);
        maps.prefix_lists.name = filter_common::map_names::PREFIX_LISTS;
        maps.prefix_list_bits.capacity = Some(capacities.prefix_list_bits);
        maps.prefix_list_bits.name = filter_common::map_names::PREFIX_LIST_BITS;
        maps
    }
}

/// Map sizes (`max_entries`) the agent loads the datapath with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capacities {
    pub ifaces: usize,
    pub cidrs: usize,
    pub ports: usize,
    pub group_bits: usize,
    pub members: usize,
    pub local_addrs: usize,
    pub acl_cidrs: usize,
    pub acl_ports: usize,
    pub prefix_lists: usize,
    pub prefix_list_bits: usize,
    pub ct_established: usize,
    pub ct_embryonic: usize,
    pub fragments: usize,
}

impl Default for Capacities {
    fn default() -> Self {
        use filter_common::*;
        Self {
            ifaces: IFACE_CAPACITY as usize,
            cidrs: CIDR_CAPACITY_DEFAULT as usize,
            ports: PORT_CAPACITY_DEFAULT as usize,
            group_bits: GROUP_BITS_CAPACITY_DEFAULT as usize,
            members: MEMBERS_CAPACITY_DEFAULT as usize,
            local_addrs: LOCAL_ADDR_CAPACITY_DEFAULT as usize,
            acl_cidrs: ACL_CIDR_CAPACITY_DEFAULT as usize,
            acl_ports: ACL_PORT_CAPACITY_DEFAULT as usize,
            prefix_lists: PREFIX_LIST_CAPACITY_DEFAULT as usize,
            prefix_list_bits: PREFIX_LIST_BITS_CAPACITY_DEFAULT as usize,
            ct_established: CT_ESTABLISHED_CAPACITY_DEFAULT as usize,
            ct_embryonic: CT_EMBRYONIC_CAPACITY_DEFAULT as usize,
            fragments: FRAG_CAPACITY_DEFAULT as usize,
        }
    }
}

#[cfg(test)]
mod tests;
