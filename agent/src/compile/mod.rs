//! The compiler: a validated [`Config`] in, the datapath's map contents out. Pure: no kernel,
//! no aya types. `docs/design.md` ("Rule matching without a loop over rules") explains the
//! shape; this module fills it.
//!
//! Output is slot-free and ifindex-free: which policy slot and which interface index the entries
//! land in is decided when they are applied (`crate::maps`).

pub mod ranges;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use filter_common::{
    ACL_SAME_SUBNET_BIT, ATTACH_HOST, ATTACH_PORT, AclBits, AddrKey, DIR_EGRESS, DIR_INGRESS,
    FAMILY_V4, FAMILY_V6, IFACE_F_CUT_ON_POLICY_CHANGE, IFACE_F_DHCP, IFACE_F_HAS_ACL,
    IFACE_F_HAS_PREFIX_LISTS, IFACE_F_MAC, IFACE_F_RELATED_ICMP, IFACE_F_SOURCE_DEST_CHECK,
    IfaceConfig, MAX_IFSLOTS, MAX_RULE_IDS_PER_SLOT, MAX_RULES_PER_DIRECTION, PROTO_TCP, PROTO_UDP,
    RuleBitmap,
};
use ipnet::IpNet;

use crate::model::{
    AclAction, AclEntry, AttachMode, Config, Direction, EffectiveRule, Instance, NetworkAcl, Peer,
    PortRange, Protocol, Subnet, effective_rules,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("{count} interfaces configured; one agent enforces at most {max}")]
    TooManyInterfaces { count: usize, max: usize },
    #[error(
        "instance {instance}: {count} {direction} rules after expanding peers; the datapath holds at most {max} (R7)"
    )]
    TooManyRules {
        instance: String,
        direction: Direction,
        count: usize,
        max: usize,
    },
    #[error("{needed} rules across all interfaces; the rule id space holds {max}")]
    RuleIdsExhausted { needed: usize, max: usize },
    #[error("interface name {0:?} is longer than 15 bytes")]
    InterfaceNameTooLong(String),
}

/// A CIDR rule entry for one interface and direction (or the exempt list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrEntry {
    /// `DIR_INGRESS`, `DIR_EGRESS` or `DIR_EXEMPT`.
    pub dir: u8,
    pub family: u8,
    pub addr: [u8; 16],
    /// Bits of the CIDR itself (0..=32 or 0..=128).
    pub prefix_len: u8,
    pub rules: RuleBitmap,
}

/// A protocol/selector entry for one interface and direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEntry {
    pub dir: u8,
    pub proto: u8,
    pub selector: u16,
    /// Bits of the selector (0..=16).
    pub prefix_len: u8,
    pub rules: RuleBitmap,
}

/// A network ACL as one interface's datapath sees it (N1-N4). Bit 0 of its bitmaps stands for
/// the interface's own subnet (an all-protocols allow: traffic inside the subnet skips the ACL,
/// N4); bit `i + 1` is entry `i` of the ACL's entries for that direction, in number order, so
/// the lowest set bit of `cidr & (port | all_protocols)` is the first entry that matches (N2).
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledAcl {
    pub subnet: String,
    pub acl: String,
    /// The ACL's entries per direction (indexed by `Direction::index()`), sorted by number.
    pub entries: [Vec<AclEntry>; 2],
    /// `ACL_CIDRS` entries; only word 0 of each bitmap is used.
    pub cidrs: Vec<CidrEntry>,
    /// `ACL_PORTS` entries; only word 0 of each bitmap is used.
    pub ports: Vec<PortEntry>,
}

impl CompiledAcl {
    /// The entry behind an ACL bit, `None` for the own-subnet bit.
    pub fn entry(&self, direction: Direction, bit: u8) -> Option<&AclEntry> {
        let index = usize::from(bit).checked_sub(1)?;
        self.entries[usize::from(direction.index())].get(index)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompiledInterface {
    pub instance: String,
    pub interface: String,
    pub ifslot: u16,
    /// The `IFACES` value (everything but the key's slot and ifindex).
    pub config: IfaceConfig,
    /// Effective rules per direction, indexed by `Direction::index()`; position = rule id.
    pub rules: [Vec<EffectiveRule>; 2],
    pub cidrs: Vec<CidrEntry>,
    pub ports: Vec<PortEntry>,
    /// Per direction: group name → the rules whose peer is that group.
    pub group_rules: [BTreeMap<String, RuleBitmap>; 2],
    /// Per direction: prefix list name → the rules whose peer is that list (P1).
    pub prefix_list_rules: [BTreeMap<String, RuleBitmap>; 2],
    /// The instance's own addresses (I1, I5).
    pub local_addrs: Vec<AddrKey>,
    /// The network ACL of the instance's subnet, unless it admits everything (the default ACL)
    /// or the instance is in no subnet: then the interface pays nothing for ACLs.
    pub acl: Option<CompiledAcl>,
}

impl CompiledInterface {
    /// The `GROUP_BITS` value for a membership set: every rule whose group is in the set.
    pub fn group_bits(&self, dir: u8, groups: &BTreeSet<String>) -> RuleBitmap {
        let mut bits = RuleBitmap::EMPTY;
        for group in groups {
            if let Some(rules) = self.group_rules[usize::from(dir & 1)].get(group) {
                bits.union_with(rules);
            }
        }
        bits
    }

    /// The `PREFIX_LIST_BITS` value for a prefix list set: every rule whose list is in the set.
    pub fn prefix_list_bits(&self, dir: u8, lists: &BTreeSet<String>) -> RuleBitmap {
        let mut bits = RuleBitmap::EMPTY;
        for list in lists {
            if let Some(rules) = self.prefix_list_rules[usize::from(dir & 1)].get(list) {
                bits.union_with(rules);
            }
        }
        bits
    }

    pub fn rules(&self, direction: Direction) -> &[EffectiveRule] {
        &self.rules[usize::from(direction.index())]
    }
}

/// One `PREFIX_LISTS` trie entry: a distinct CIDR of some prefix list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefixListPrefix {
    pub family: u8,
    pub addr: [u8; 16],
    /// Bits of the CIDR itself.
    pub prefix_len: u8,
}

impl PrefixListPrefix {
    pub fn of(net: &IpNet) -> Self {
        let (family, addr) = family_and_bytes(net.network());
        Self {
            family,
            addr,
            prefix_len: net.prefix_len(),
        }
    }

    pub fn net(&self) -> IpNet {
        // The bytes and length came from an `IpNet`, so this cannot fail; a host route would
        // only ever be narrower.
        IpNet::new(ip_of(self.family, &self.addr), self.prefix_len)
            .unwrap_or_else(|_| IpNet::from(ip_of(self.family, &self.addr)))
    }
}

/// The whole compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub interfaces: Vec<CompiledInterface>,
    /// Every address of every interface with groups attached → its membership set id.
    pub members: BTreeMap<AddrKey, u64>,
    /// Membership set id → the groups in it.
    pub sets: BTreeMap<u64, BTreeSet<String>>,
    /// Membership set id → how many addresses use it: a delta must not scan 100k members to
    /// learn whether a set is new or no longer used.
    pub set_members: BTreeMap<u64, usize>,
    /// The `PREFIX_LISTS` trie: every distinct CIDR of every prefix list → the id of the set of
    /// lists with an entry covering it (P1). Like membership, it is not slotted: editing a
    /// list's entries rewrites only these (see [`PrefixListDelta`]).
    pub prefix_list_entries: BTreeMap<PrefixListPrefix, u64>,
    /// Prefix list set id → the lists in it.
    pub prefix_list_sets: BTreeMap<u64, BTreeSet<String>>,
}

/// The writes that make the datapath agree with new prefix list entries (P1) under the rules in
/// force, in order: bits for sets no entry used before, then trie entries, then deletions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixListDelta {
    pub new_sets: Vec<u64>,
    /// `Some(set)` writes the entry, `None` deletes it.
    pub entries: Vec<(PrefixListPrefix, Option<u64>)>,
}

/// Where an address's membership set changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    pub addresses: Vec<IpAddr>,
    /// The complete new set of groups for these addresses; empty removes them.
    pub groups: BTreeSet<String>,
}

/// The writes a membership change needs, in order: new sets' group bits, then member entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Sets that no member used before: their `GROUP_BITS` must be written first.
    pub new_sets: Vec<u64>,
    /// `Some(set)` writes the member, `None` deletes it.
    pub members: Vec<(AddrKey, Option<u64>)>,
}

pub fn addr_key(ip: IpAddr) -> AddrKey {
    let (family, addr) = family_and_bytes(ip);
    AddrKey {
        family,
        _pad: [0; 3],
        addr,
    }
}

/// Family tag and 16 network-order bytes (IPv4 in the first four).
pub fn family_and_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

pub fn ip_of(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// The membership set id of a group set: FNV-1a over the sorted names. Content-derived, so a
/// restarted agent computes the ids already in the pinned maps and rewrites nothing.
pub fn set_id(groups: &BTreeSet<String>) -> u64 {
    fnv1a(
        groups
            .iter()
            .flat_map(|group| group.bytes().chain(std::iter::once(0))),
    )
}

/// The set id of a set of prefix lists, derived like [`set_id`] from the sorted names.
pub fn prefix_list_set_id(lists: &BTreeSet<String>) -> u64 {
    set_id(lists)
}

/// Every distinct CIDR of every prefix list, with the set of lists having an entry that covers
/// it. The trie's longest match for an address then holds exactly the lists that contain the
/// address: any entry containing the address also contains its longest match.
pub fn prefix_list_trie(
    config: &Config,
) -> (
    BTreeMap<PrefixListPrefix, u64>,
    BTreeMap<u64, BTreeSet<String>>,
) {
    let all: Vec<(&str, IpNet)> = config
        .prefix_lists
        .iter()
        .flat_map(|list| {
            list.entries
                .iter()
                .map(move |entry| (list.name.as_str(), entry.cidr))
        })
        .collect();
    let distinct: BTreeSet<IpNet> = all.iter().map(|(_, net)| *net).collect();
    let mut entries = BTreeMap::new();
    let mut sets = BTreeMap::new();
    for net in distinct {
        let lists: BTreeSet<String> = all
            .iter()
            .filter(|(_, covering)| covering.contains(&net))
            .map(|(name, _)| name.to_string())
            .collect();
        let id = prefix_list_set_id(&lists);
        entries.insert(PrefixListPrefix::of(&net), id);
        sets.insert(id, lists);
    }
    (entries, sets)
}

/// A stable hash for ids that must come out the same in every agent process, which `std`'s
/// randomly seeded hashers do not. It lives with the other ids (R9).
pub use crate::ids::fnv1a;

/// Gives every enforced interface a small stable index. Interfaces keep the slot they had in
/// `previous` (counters and conntrack allowances are indexed by it); new ones take the lowest
/// free slot.
pub fn assign_ifslots(
    config: &Config,
    previous: &BTreeMap<String, u16>,
) -> Result<BTreeMap<String, u16>, CompileError> {
    if config.instances.len() > MAX_IFSLOTS {
        return Err(CompileError::TooManyInterfaces {
            count: config.instances.len(),
            max: MAX_IFSLOTS,
        });
    }
    let mut assigned = BTreeMap::new();
    let mut used = BTreeSet::new();
    for instance in &config.instances {
        if let Some(&slot) = previous.get(&instance.interface)
            && used.insert(slot)
        {
            assigned.insert(instance.interface.clone(), slot);
        }
    }
    let mut next_free = 0u16;
    for instance in &config.instances {
        if assigned.contains_key(&instance.interface) {
            continue;
        }
        while used.contains(&next_free) {
            next_free += 1;
        }
        used.insert(next_free);
        assigned.insert(instance.interface.clone(), next_free);
    }
    Ok(assigned)
}

pub fn compile(
    config: &Config,
    ifslots: &BTreeMap<String, u16>,
) -> Result<CompiledPolicy, CompileError> {
    // Interfaces the caller has no slot for yet get the lowest free ones.
    let ifslots = assign_ifslots(config, ifslots)?;
    let mut interfaces = Vec::with_capacity(config.instances.len());
    let mut next_rule_id = 0usize;
    for instance in &config.instances {
        let ifslot = ifslots
            .get(&instance.interface)
            .copied()
            .unwrap_or_default();
        let compiled = compile_interface(config, instance, ifslot, &mut next_rule_id)?;
        interfaces.push(compiled);
    }
    if next_rule_id > MAX_RULE_IDS_PER_SLOT {
        return Err(CompileError::RuleIdsExhausted {
            needed: next_rule_id,
            max: MAX_RULE_IDS_PER_SLOT,
        });
    }

    let mut members = BTreeMap::new();
    let mut sets = BTreeMap::new();
    for (addresses, groups) in config.memberships() {
        let groups: BTreeSet<String> = groups.iter().cloned().collect();
        if groups.is_empty() {
            continue;
        }
        let id = set_id(&groups);
        sets.insert(id, groups);
        for address in addresses {
            members.insert(addr_key(*address), id);
        }
    }
    let mut set_members: BTreeMap<u64, usize> = BTreeMap::new();
    for id in members.values() {
        *set_members.entry(*id).or_default() += 1;
    }
    let (prefix_list_entries, prefix_list_sets) = prefix_list_trie(config);
    Ok(CompiledPolicy {
        interfaces,
        members,
        sets,
        set_members,
        prefix_list_entries,
        prefix_list_sets,
    })
}

fn compile_interface(
    config: &Config,
    instance: &Instance,
    ifslot: u16,
    next_rule_id: &mut usize,
) -> Result<CompiledInterface, CompileError> {
    let name_bytes = instance.interface.as_bytes();
    // An instance still looking for its interface carries what it looks for instead, which
    // may be longer: it has no `IFACES` entry until the interface is found and named.
    let name_bytes = match (name_bytes.len() > 15, instance.is_located()) {
        (false, _) => name_bytes,
        (true, true) => &[],
        (true, false) => {
            return Err(CompileError::InterfaceNameTooLong(
                instance.interface.clone(),
            ));
        }
    };
    let rules = [
        effective_rules(config, instance, Direction::Ingress),
        effective_rules(config, instance, Direction::Egress),
    ];
    for (direction, list) in Direction::BOTH.iter().zip(rules.iter()) {
        if list.len() > MAX_RULES_PER_DIRECTION {
            return Err(CompileError::TooManyRules {
                instance: instance.name.clone(),
                direction: *direction,
                count: list.len(),
                max: MAX_RULES_PER_DIRECTION,
            });
        }
    }

    let mut name = [0u8; 16];
    name[..name_bytes.len()].copy_from_slice(name_bytes);
    let mut flags = 0u8;
    if instance.attach == AttachMode::Port && instance.source_dest_check {
        flags |= IFACE_F_SOURCE_DEST_CHECK;
    }
    if instance.related_icmp {
        flags |= IFACE_F_RELATED_ICMP;
    }
    if instance.conntrack.cut_on_rule_removal {
        flags |= IFACE_F_CUT_ON_POLICY_CHANGE;
    }
    if !instance.exempt.is_empty() {
        flags |= filter_common::IFACE_F_HAS_EXEMPT;
    }
    if instance.dhcp {
        flags |= IFACE_F_DHCP;
    }
    if instance.mac.is_some() {
        flags |= IFACE_F_MAC;
    }
    let has_prefix_lists = rules
        .iter()
        .flatten()
        .any(|rule| matches!(rule.peer, Peer::PrefixList(_)));
    if has_prefix_lists {
        flags |= IFACE_F_HAS_PREFIX_LISTS;
    }
    let acl = config
        .acl_of(instance)
        .filter(|(_, acl)| !acl.admits_everything())
        .map(|(subnet, acl)| compile_acl(subnet, acl));
    if acl.is_some() {
        flags |= IFACE_F_HAS_ACL;
    }
    let mut iface = IfaceConfig {
        ifslot,
        attach: match instance.attach {
            AttachMode::Port => ATTACH_PORT,
            AttachMode::Host => ATTACH_HOST,
        },
        flags,
        max_flows: instance.conntrack.max_flows,
        timeouts: instance.conntrack.timeouts(),
        rule_base: [0; 2],
        rule_count: [0; 2],
        mac: instance.mac.map_or([0; 6], |mac| mac.0),
        _pad: [0; 6],
        name,
        acl_rule_base: [0; 2],
        acl_allow: [0; 2],
        acl_all_protocols: [0; 2],
        all_protocols: [RuleBitmap::EMPTY; 2],
        untracked: [RuleBitmap::EMPTY; 4],
    };

    let mut cidrs = Vec::new();
    let mut ports = Vec::new();
    let mut group_rules: [BTreeMap<String, RuleBitmap>; 2] = Default::default();
    let mut prefix_list_rules: [BTreeMap<String, RuleBitmap>; 2] = Default::default();
    for direction in Direction::BOTH {
        let dir = direction.index();
        let list = &rules[usize::from(dir)];
        iface.rule_base[usize::from(dir)] = *next_rule_id as u32;
        iface.rule_count[usize::from(dir)] = list.len() as u16;
        *next_rule_id += list.len();

        for rule in list {
            let bit = usize::from(rule.id);
            if rule.protocol == Protocol::All {
                iface.all_protocols[usize::from(dir)].set(bit);
            }
            let by_name = match &rule.peer {
                Peer::Group(group) => Some((&mut group_rules, group)),
                Peer::PrefixList(list) => Some((&mut prefix_list_rules, list)),
                Peer::Cidr(_) => None,
            };
            if let Some((by_name, name)) = by_name {
                by_name[usize::from(dir)]
                    .entry(name.clone())
                    .or_insert(RuleBitmap::EMPTY)
                    .set(bit);
            }
        }
        let cidr_rules: Vec<(IpNet, u16)> = list
            .iter()
            .filter_map(|rule| match &rule.peer {
                Peer::Cidr(net) => Some((*net, rule.id)),
                Peer::Group(_) | Peer::PrefixList(_) => None,
            })
            .collect();
        cidrs.extend(cidr_entries(dir, &cidr_rules));
        let selectors: Vec<(Protocol, PortRange, u16)> = list
            .iter()
            .map(|rule| (rule.protocol, rule.ports, rule.id))
            .collect();
        ports.extend(port_entries(dir, &selectors));
        for (proto_index, proto) in [PROTO_TCP, PROTO_UDP].into_iter().enumerate() {
            iface.untracked[untracked_index(dir, proto_index)] = untracked_rules(
                list,
                &rules[usize::from(direction.reverse().index())],
                proto,
            );
        }
    }
    if let Some(acl) = &acl {
        for direction in Direction::BOTH {
            let dir = usize::from(direction.index());
            iface.acl_rule_base[dir] = *next_rule_id as u32;
            *next_rule_id += acl.entries[dir].len() + 1;
            let (allow, all_protocols) = acl_masks(&acl.entries[dir]);
            iface.acl_allow[dir] = allow;
            iface.acl_all_protocols[dir] = all_protocols;
        }
    }
    for exempt in &instance.exempt {
        let (family, addr) = family_and_bytes(exempt.network());
        let mut marker = RuleBitmap::EMPTY;
        marker.set(0);
        cidrs.push(CidrEntry {
            dir: filter_common::DIR_EXEMPT,
            family,
            addr,
            prefix_len: exempt.prefix_len(),
            rules: marker,
        });
    }

    Ok(CompiledInterface {
        instance: instance.name.clone(),
        interface: instance.interface.clone(),
        ifslot,
        config: iface,
        rules,
        cidrs,
        ports,
        group_rules,
        prefix_list_rules,
        local_addrs: instance.own_addresses().into_iter().map(addr_key).collect(),
        acl,
    })
}

/// The ACL bit of entry `index` (in number order); bit 0 is the own subnet.
fn acl_bit(index: usize) -> u16 {
    index as u16 + 1
}

fn compile_acl(subnet: &Subnet, acl: &NetworkAcl) -> CompiledAcl {
    let mut cidrs = Vec::new();
    let mut ports = Vec::new();
    for direction in Direction::BOTH {
        let dir = direction.index();
        let entries = acl.entries(direction);
        let own_subnet = subnet
            .cidrs
            .iter()
            .map(|net| (*net, u16::from(ACL_SAME_SUBNET_BIT)));
        let by_cidr: Vec<(IpNet, u16)> = own_subnet
            .chain(
                entries
                    .iter()
                    .enumerate()
                    .map(|(index, entry)| (entry.cidr, acl_bit(index))),
            )
            .collect();
        cidrs.extend(cidr_entries(dir, &by_cidr));
        let selectors: Vec<(Protocol, PortRange, u16)> = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (entry.protocol, entry.ports, acl_bit(index)))
            .collect();
        ports.extend(port_entries(dir, &selectors));
    }
    CompiledAcl {
        subnet: subnet.name.clone(),
        acl: acl.name.clone(),
        entries: [
            acl.entries(Direction::Ingress).to_vec(),
            acl.entries(Direction::Egress).to_vec(),
        ],
        cidrs,
        ports,
    }
}

/// (allow, all protocols) masks of one direction's ACL bits; the own-subnet bit is both.
fn acl_masks(entries: &[AclEntry]) -> (AclBits, AclBits) {
    let mut allow: AclBits = 1 << ACL_SAME_SUBNET_BIT;
    let mut all_protocols: AclBits = 1 << ACL_SAME_SUBNET_BIT;
    for (index, entry) in entries.iter().enumerate() {
        let bit = 1u64 << acl_bit(index);
        if entry.action == AclAction::Allow {
            allow |= bit;
        }
        if entry.protocol == Protocol::All {
            all_protocols |= bit;
        }
    }
    (allow, all_protocols)
}

/// Index into `IfaceConfig::untracked`: direction-major, then TCP (0) or UDP (1).
pub fn untracked_index(dir: u8, proto_index: usize) -> usize {
    usize::from(dir & 1) * 2 + proto_index
}

/// One entry per distinct CIDR, carrying every rule (or ACL entry) bit whose prefix contains
/// it. The trie's longest match for an address then holds exactly the bits that match the
/// address: any prefix containing the address also contains the longest such entry.
fn cidr_entries(dir: u8, cidr_rules: &[(IpNet, u16)]) -> Vec<CidrEntry> {
    let distinct: BTreeSet<IpNet> = cidr_rules.iter().map(|(net, _)| *net).collect();
    distinct
        .into_iter()
        .map(|net| {
            let mut bits = RuleBitmap::EMPTY;
            for (rule_net, id) in cidr_rules {
                if rule_net.contains(&net) {
                    bits.set(usize::from(*id));
                }
            }
            let (family, addr) = family_and_bytes(net.network());
            CidrEntry {
                dir,
                family,
                addr,
                prefix_len: net.prefix_len(),
                rules: bits,
            }
        })
        .collect()
}

/// The selector range a rule admits for its protocol (see `filter_common::selector_for`).
fn selector_range(ports: PortRange) -> (u16, u16) {
    match ports {
        PortRange::Any => (0, u16::MAX),
        PortRange::Ports { from, to } => (from, to),
        PortRange::Icmp {
            icmp_type: None, ..
        } => (0, u16::MAX),
        PortRange::Icmp {
            icmp_type: Some(t),
            code: None,
        } => (u16::from(t) << 8, (u16::from(t) << 8) | 0xff),
        PortRange::Icmp {
            icmp_type: Some(t),
            code: Some(c),
        } => {
            let selector = (u16::from(t) << 8) | u16::from(c);
            (selector, selector)
        }
    }
}

/// Protocol and selector entries for (protocol, ports, bit) of rules or ACL entries.
fn port_entries(dir: u8, selectors: &[(Protocol, PortRange, u16)]) -> Vec<PortEntry> {
    let mut by_proto: BTreeMap<u8, Vec<(u16, u16, u16)>> = BTreeMap::new();
    for (protocol, ports, bit) in selectors {
        // `all` is matched through the interface's all-protocols bitmaps instead.
        if let Some(proto) = protocol.number() {
            let (from, to) = selector_range(*ports);
            by_proto.entry(proto).or_default().push((from, to, *bit));
        }
    }
    let mut entries = Vec::new();
    for (proto, ranges) in by_proto {
        for interval in ranges::disjoint_intervals(&ranges) {
            for (selector, prefix_len) in ranges::range_to_prefixes(interval.from, interval.to) {
                entries.push(PortEntry {
                    dir,
                    proto,
                    selector,
                    prefix_len,
                    rules: interval.rules,
                });
            }
        }
    }
    entries
}

fn is_any_address(peer: &Peer) -> Option<u8> {
    match peer {
        Peer::Cidr(net) if net.prefix_len() == 0 => Some(family_and_bytes(net.network()).0),
        _ => None,
    }
}

/// C8: rules in this direction whose TCP (or UDP) flows need no conntrack entry: the rule's peer
/// is 0.0.0.0/0 or ::/0, and the reverse direction admits the same family from 0.0.0.0/0 or ::/0
/// on every port of that protocol.
fn untracked_rules(rules: &[EffectiveRule], reverse: &[EffectiveRule], proto: u8) -> RuleBitmap {
    let reverse_open = |family: u8| {
        reverse.iter().any(|rule| {
            is_any_address(&rule.peer) == Some(family)
                && rule.protocol.matches(proto)
                && rule.ports.is_everything()
        })
    };
    let mut bits = RuleBitmap::EMPTY;
    for rule in rules {
        if let Some(family) = is_any_address(&rule.peer)
            && rule.protocol.matches(proto)
            && reverse_open(family)
        {
            bits.set(usize::from(rule.id));
        }
    }
    bits
}

impl CompiledPolicy {
    pub fn interface(&self, name: &str) -> Option<&CompiledInterface> {
        self.interfaces.iter().find(|i| i.interface == name)
    }

    pub fn interface_of_instance(&self, instance: &str) -> Option<&CompiledInterface> {
        self.interfaces.iter().find(|i| i.instance == instance)
    }

    /// Interface name → slot, to compile the next policy with the same slots.
    pub fn ifslots(&self) -> BTreeMap<String, u16> {
        self.interfaces
            .iter()
            .map(|i| (i.interface.clone(), i.ifslot))
            .collect()
    }

    /// Membership sets some address uses right now.
    pub fn sets_in_use(&self) -> BTreeSet<u64> {
        self.set_members.keys().copied().collect()
    }

    /// Applies a membership change to the compiled state and returns the writes that make the
    /// datapath agree (G3), without recompiling anything else. Costs O(log n) per address.
    pub fn apply_membership(&mut self, change: &MembershipChange) -> MembershipDelta {
        let mut delta = MembershipDelta::default();
        let new_set = (!change.groups.is_empty()).then(|| set_id(&change.groups));
        if let Some(id) = new_set {
            if !self.set_members.contains_key(&id) {
                delta.new_sets.push(id);
            }
            self.sets.insert(id, change.groups.clone());
        }
        for address in &change.addresses {
            let key = addr_key(*address);
            let before = self.members.get(&key).copied();
            if before == new_set {
                continue;
            }
            if let Some(old) = before
                && let Some(count) = self.set_members.get_mut(&old)
            {
                *count -= 1;
                if *count == 0 {
                    self.set_members.remove(&old);
                    self.sets.remove(&old);
                }
            }
            match new_set {
                Some(id) => {
                    self.members.insert(key, id);
                    *self.set_members.entry(id).or_default() += 1;
                }
                None => {
                    self.members.remove(&key);
                }
            }
            delta.members.push((key, new_set));
        }
        if let Some(id) = new_set
            && !self.set_members.contains_key(&id)
        {
            // Every address already had the set: nothing uses it that did not before.
            self.sets.remove(&id);
            delta.new_sets.retain(|s| *s != id);
        }
        delta
    }

    /// Prefix list sets some trie entry uses right now.
    pub fn prefix_list_sets_in_use(&self) -> BTreeSet<u64> {
        self.prefix_list_entries.values().copied().collect()
    }

    /// Replaces the prefix list entries with those of `config` (the rules stay) and returns the
    /// writes that make the datapath agree (P1), like a membership change (G3): no generation
    /// flip. Any order of these writes is safe: while they happen, each trie entry holds its old
    /// set or its new one, and an entry's old set only names lists that (before) covered every
    /// address under it, its new set lists that (after) cover them, so each packet matches what
    /// the old entries or the new entries admit, never more.
    pub fn apply_prefix_lists(&mut self, config: &Config) -> PrefixListDelta {
        let (entries, sets) = prefix_list_trie(config);
        let mut delta = PrefixListDelta::default();
        for (id, lists) in &sets {
            if !self.prefix_list_sets.contains_key(id) {
                delta.new_sets.push(*id);
                self.prefix_list_sets.insert(*id, lists.clone());
            }
        }
        for (prefix, id) in &entries {
            if self.prefix_list_entries.get(prefix) != Some(id) {
                delta.entries.push((*prefix, Some(*id)));
            }
        }
        for prefix in self.prefix_list_entries.keys() {
            if !entries.contains_key(prefix) {
                delta.entries.push((*prefix, None));
            }
        }
        self.prefix_list_entries = entries;
        self.prefix_list_sets = sets;
        delta
    }

    /// Directions as the datapath numbers them.
    pub fn directions() -> [u8; 2] {
        [DIR_INGRESS, DIR_EGRESS]
    }
}

#[cfg(test)]
mod tests;
