//! Turns the raw document into checked values: parses protocols, ports, CIDRs and addresses,
//! resolves references, enforces quotas and uniqueness. Every problem is reported; an item with
//! a problem is left out of the result, which is only turned into a `model::Config` when no error
//! was reported at all.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;

use super::{
    diagnostic::{Diagnostics, Location},
    document::{
        Located, RawConntrack, RawDocument, RawGroup, RawInstance, RawLabClient, RawMember,
        RawQuotas, RawRule, RawRules, Scalar,
    },
    messages::{RuleName, ValidationError, ValidationWarning},
};
use crate::model::{
    AttachMode, Conntrack, Direction, HostIngressHook, Instance, LabClient, Member, Peer,
    PortRange, Protocol, Quotas, default_egress,
};

/// R8, and the AWS limit on group names.
const MAX_TEXT_CHARS: usize = 255;
/// R7: the hard limit on groups x rules per interface, and so on one interface's rules.
const MAX_RULES_PER_INTERFACE: u32 = 1000;
/// R7: groups per interface may be raised up to 16.
const MAX_GROUPS_PER_INTERFACE: i64 = 16;
/// Linux IFNAMSIZ (16) minus the terminating NUL.
const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// What validation produced. Complete only when no error was reported.
pub(crate) struct Checked {
    pub quotas: Quotas,
    pub groups: Vec<CheckedGroup>,
    pub instances: Vec<CheckedInstance>,
    pub members: Vec<Member>,
    pub lab_clients: Vec<LabClient>,
}

pub(crate) struct CheckedGroup {
    pub name: String,
    pub description: String,
    pub ingress: Vec<CheckedRule>,
    /// Empty when `egress_is_default`: the default rules are materialised in the model only.
    pub egress: Vec<CheckedRule>,
    pub egress_is_default: bool,
}

impl CheckedGroup {
    pub fn rules(&self, direction: Direction) -> &[CheckedRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Effective rules (one per peer) in `direction`, the default egress included.
    fn effective_rule_count(&self, direction: Direction) -> usize {
        if direction == Direction::Egress && self.egress_is_default {
            return default_egress().iter().map(|rule| rule.peers.len()).sum();
        }
        self.rules(direction)
            .iter()
            .map(|rule| rule.peers.len())
            .sum()
    }
}

/// A valid rule with the location of each peer; `index` is its position in the file.
pub(crate) struct CheckedRule {
    pub index: usize,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub peers: Vec<Located<Peer>>,
    pub description: String,
}

pub(crate) struct CheckedInstance {
    pub instance: Instance,
    pub security_groups_at: Location,
}

pub(crate) fn validate(raw: &RawDocument, diagnostics: &mut Diagnostics) -> Checked {
    let quotas = check_quotas(raw.quotas.as_ref(), diagnostics);
    let known_groups = check_group_names(&raw.groups, diagnostics);
    let groups: Vec<CheckedGroup> = raw
        .groups
        .iter()
        .filter_map(|group| check_group(group, &known_groups, quotas, diagnostics))
        .collect();

    let mut registry = Registry::default();
    let instances: Vec<CheckedInstance> = raw
        .instances
        .iter()
        .filter_map(|instance| {
            check_instance(instance, &known_groups, quotas, &mut registry, diagnostics)
        })
        .collect();
    let members = raw
        .members
        .iter()
        .filter_map(|member| check_member(member, &known_groups, &mut registry, diagnostics))
        .collect();
    let lab_clients = raw
        .lab_clients
        .iter()
        .filter_map(|client| check_lab_client(client, &mut registry, diagnostics))
        .collect();
    check_interface_rule_totals(&instances, &groups, diagnostics);

    Checked {
        quotas,
        groups,
        instances,
        members,
        lab_clients,
    }
}

/// R7.
fn check_quotas(raw: Option<&RawQuotas>, diagnostics: &mut Diagnostics) -> Quotas {
    let mut quotas = Quotas::default();
    let Some(raw) = raw else {
        return quotas;
    };
    let mut in_range = |quota: &'static str, value: &Located<i64>, max: i64| {
        if (1..=max).contains(&value.value) {
            true
        } else {
            diagnostics.error(
                &value.at,
                ValidationError::QuotaOutOfRange {
                    quota,
                    min: 1,
                    max,
                    value: value.value,
                },
            );
            false
        }
    };
    let groups = raw
        .groups_per_interface
        .as_ref()
        .filter(|groups| in_range("groups_per_interface", groups, MAX_GROUPS_PER_INTERFACE));
    let rules = raw
        .rules_per_group
        .as_ref()
        .filter(|rules| in_range("rules_per_group", rules, i64::from(MAX_RULES_PER_INTERFACE)));
    // In range, so the conversions cannot fail; a failure would only keep the default.
    if let Some(groups) = groups {
        quotas.groups_per_interface =
            u32::try_from(groups.value).unwrap_or(quotas.groups_per_interface);
    }
    if let Some(rules) = rules {
        quotas.rules_per_group = u32::try_from(rules.value).unwrap_or(quotas.rules_per_group);
    }
    let product = i64::from(quotas.groups_per_interface) * i64::from(quotas.rules_per_group);
    if product > i64::from(MAX_RULES_PER_INTERFACE) {
        // Point at whichever quota was written; the later one if both were.
        let at = rules.or(groups).map(|value| value.at.clone());
        if let Some(at) = at {
            diagnostics.error(
                &at,
                ValidationError::QuotaProductTooLarge {
                    groups: i64::from(quotas.groups_per_interface),
                    rules: i64::from(quotas.rules_per_group),
                    product,
                },
            );
        }
    }
    quotas
}

/// Reports bad and duplicate group names; returns every name written, so that a reference to a
/// group that exists but has other errors is not also reported as unknown.
fn check_group_names(groups: &[RawGroup], diagnostics: &mut Diagnostics) -> BTreeSet<String> {
    let mut first_seen: HashMap<&str, &Location> = HashMap::new();
    for name in groups.iter().filter_map(|group| group.name.as_ref()) {
        let length = name.value.chars().count();
        if length == 0 || length > MAX_TEXT_CHARS {
            diagnostics.error(&name.at, ValidationError::GroupNameLength { length });
        }
        match first_seen.get(name.value.as_str()) {
            Some(first) => {
                let first = diagnostics.describe(first);
                diagnostics.error(
                    &name.at,
                    ValidationError::DuplicateGroupName {
                        name: name.value.clone(),
                        first,
                    },
                );
            }
            None => {
                first_seen.insert(&name.value, &name.at);
            }
        }
    }
    first_seen.into_keys().map(str::to_string).collect()
}

fn check_group(
    raw: &RawGroup,
    known_groups: &BTreeSet<String>,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedGroup> {
    let group_name = raw
        .name
        .as_ref()
        .map_or_else(|| raw.at.field.clone(), |name| name.value.clone());
    if let Some(description) = &raw.description {
        check_description(description, diagnostics);
    }
    let ingress = check_rules(
        &raw.ingress,
        &group_name,
        Direction::Ingress,
        known_groups,
        quotas,
        diagnostics,
    );
    let egress = raw.egress.as_ref().map(|rules| {
        check_rules(
            rules,
            &group_name,
            Direction::Egress,
            known_groups,
            quotas,
            diagnostics,
        )
    });
    Some(CheckedGroup {
        name: raw.name.as_ref()?.value.clone(),
        description: raw
            .description
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default(),
        ingress,
        egress_is_default: egress.is_none(),
        egress: egress.unwrap_or_default(),
    })
}

/// The rules of one group and direction: each rule, then duplicates and the R7 quota.
fn check_rules(
    raw: &RawRules,
    group: &str,
    direction: Direction,
    known_groups: &BTreeSet<String>,
    quotas: Quotas,
    diagnostics: &mut Diagnostics,
) -> Vec<CheckedRule> {
    let rules: Vec<CheckedRule> = raw
        .rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let name = RuleName {
                group: group.to_string(),
                direction,
                index,
            };
            check_rule(rule, name, known_groups, diagnostics)
        })
        .collect();

    let mut first_seen: HashMap<(Protocol, PortRange, &Peer), &Location> = HashMap::new();
    for rule in &rules {
        for peer in &rule.peers {
            match first_seen.get(&(rule.protocol, rule.ports, &peer.value)) {
                Some(first) => {
                    let first = diagnostics.describe(first);
                    diagnostics.error(
                        &peer.at,
                        ValidationError::DuplicateRule {
                            rule: rule_text(rule.protocol, rule.ports, &peer.value, direction),
                            first,
                        },
                    );
                }
                None => {
                    first_seen.insert((rule.protocol, rule.ports, &peer.value), &peer.at);
                }
            }
        }
    }

    if let Some(at) = &raw.at {
        // R7: a group reference is one rule in each family.
        let (mut ipv4, mut ipv6) = (0, 0);
        for peer in rules.iter().flat_map(|rule| &rule.peers) {
            match &peer.value {
                Peer::Cidr(IpNet::V4(_)) => ipv4 += 1,
                Peer::Cidr(IpNet::V6(_)) => ipv6 += 1,
                Peer::Group(_) => {
                    ipv4 += 1;
                    ipv6 += 1;
                }
            }
        }
        for (family, count) in [("IPv4", ipv4), ("IPv6", ipv6)] {
            if count > quotas.rules_per_group as usize {
                diagnostics.error(
                    at,
                    ValidationError::GroupRulesOverQuota {
                        group: group.to_string(),
                        direction,
                        family,
                        count,
                        quota: quotas.rules_per_group,
                    },
                );
            }
        }
    }
    rules
}

fn check_rule(
    raw: &RawRule,
    name: RuleName,
    known_groups: &BTreeSet<String>,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedRule> {
    let errors_before = diagnostics.errors.len();
    let protocol = raw
        .protocol
        .as_ref()
        .and_then(|protocol| check_protocol(protocol, diagnostics));
    let ports = protocol.and_then(|protocol| check_selector(raw, protocol, diagnostics));

    let mut peers = Vec::new();
    for cidr in &raw.cidr {
        let Some(net) = check_cidr(cidr, diagnostics) else {
            continue;
        };
        if let Some(protocol) = protocol {
            check_icmp_family(protocol, net, &cidr.at, diagnostics);
        }
        peers.push(Located {
            value: Peer::Cidr(net),
            at: cidr.at.clone(),
        });
    }
    for group in &raw.groups {
        if known_groups.contains(&group.value) {
            peers.push(Located {
                value: Peer::Group(group.value.clone()),
                at: group.at.clone(),
            });
        } else {
            diagnostics.error(
                &group.at,
                ValidationError::UnknownGroupReference {
                    rule: name.clone(),
                    group: group.value.clone(),
                },
            );
        }
    }
    if !raw.peers_written {
        diagnostics.error(&raw.at, ValidationError::NoPeer);
    }
    if let Some(description) = &raw.description {
        check_description(description, diagnostics);
    }

    if diagnostics.errors.len() > errors_before {
        return None;
    }
    Some(CheckedRule {
        index: name.index,
        protocol: protocol?,
        ports: ports?,
        peers,
        description: raw
            .description
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default(),
    })
}

/// R3: names, `-1`, numbers and numeric strings; 6/17/1/58 become their names.
fn check_protocol(raw: &Located<Scalar>, diagnostics: &mut Diagnostics) -> Option<Protocol> {
    let number = match &raw.value {
        Scalar::Text(text) => match text.as_str() {
            "tcp" => return Some(Protocol::Tcp),
            "udp" => return Some(Protocol::Udp),
            "icmp" => return Some(Protocol::Icmp),
            "icmpv6" => return Some(Protocol::Icmpv6),
            "all" | "-1" => return Some(Protocol::All),
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<i64>().unwrap_or(i64::MAX)
            }
            _ => {
                diagnostics.error(
                    &raw.at,
                    ValidationError::UnknownProtocol {
                        protocol: text.clone(),
                    },
                );
                return None;
            }
        },
        Scalar::Integer(number) => *number,
    };
    if number == -1 {
        return Some(Protocol::All);
    }
    match u8::try_from(number) {
        Ok(number) => Some(Protocol::from_number(number)),
        Err(_) => {
            diagnostics.error(
                &raw.at,
                ValidationError::ProtocolNumberOutOfRange { number },
            );
            None
        }
    }
}

/// R3: what the port part of a rule means depends on the protocol.
fn check_selector(
    raw: &RawRule,
    protocol: Protocol,
    diagnostics: &mut Diagnostics,
) -> Option<PortRange> {
    let errors_before = diagnostics.errors.len();
    let selector = match protocol {
        Protocol::Tcp | Protocol::Udp => {
            reject_icmp_fields(raw, protocol, diagnostics);
            match &raw.ports {
                Some(ports) => check_ports(ports, diagnostics),
                // Written but of the wrong type: already reported.
                None if raw.has("ports") => None,
                None => {
                    diagnostics.error(
                        &raw.at.child("ports", raw.at.span.clone()),
                        ValidationError::PortsRequired {
                            protocol: protocol.to_string(),
                        },
                    );
                    None
                }
            }
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            if let Some(ports) = &raw.ports {
                diagnostics.error(
                    &ports.at,
                    ValidationError::PortsNotAllowedForIcmp {
                        protocol: protocol.to_string(),
                    },
                );
            }
            check_icmp(raw, diagnostics)
        }
        Protocol::All | Protocol::Number(_) => {
            reject_icmp_fields(raw, protocol, diagnostics);
            if let Some(ports) = &raw.ports {
                diagnostics.warning(
                    &ports.at,
                    ValidationWarning::PortsIgnored {
                        protocol: protocol.to_string(),
                    },
                );
            }
            Some(PortRange::Any)
        }
    };
    if diagnostics.errors.len() > errors_before {
        return None;
    }
    selector
}

fn reject_icmp_fields(raw: &RawRule, protocol: Protocol, diagnostics: &mut Diagnostics) {
    let fields = [("icmp_type", &raw.icmp_type), ("icmp_code", &raw.icmp_code)];
    for (field, value) in fields {
        if let Some(value) = value {
            diagnostics.error(
                &value.at,
                ValidationError::IcmpFieldForOtherProtocol {
                    field,
                    protocol: protocol.to_string(),
                },
            );
        }
    }
}

/// R3: `"N"`, `"A-B"` or an integer, within 0-65535 and ordered.
fn check_ports(raw: &Located<Scalar>, diagnostics: &mut Diagnostics) -> Option<PortRange> {
    let port = |value: i64, diagnostics: &mut Diagnostics| match u16::try_from(value) {
        Ok(port) => Some(port),
        Err(_) => {
            diagnostics.error(&raw.at, ValidationError::PortOutOfRange { port: value });
            None
        }
    };
    let (from, to) = match &raw.value {
        Scalar::Integer(value) => {
            let single = port(*value, diagnostics)?;
            (single, single)
        }
        Scalar::Text(text) => {
            let Some((from, to)) = parse_port_text(text) else {
                diagnostics.error(
                    &raw.at,
                    ValidationError::InvalidPorts {
                        ports: text.clone(),
                    },
                );
                return None;
            };
            let from = port(from, diagnostics);
            let to = port(to, diagnostics);
            (from?, to?)
        }
    };
    if from > to {
        diagnostics.error(
            &raw.at,
            ValidationError::ReversedPortRange {
                from: u32::from(from),
                to: u32::from(to),
            },
        );
        return None;
    }
    Some(PortRange::Ports { from, to })
}

/// `"N"` or `"A-B"` with decimal digits only; range checks are the caller's.
fn parse_port_text(text: &str) -> Option<(i64, i64)> {
    let number = |digits: &str| {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Too many digits to be a port: report it as out of range rather than invalid.
        Some(digits.parse::<i64>().unwrap_or(i64::MAX))
    };
    match text.split_once('-') {
        Some((from, to)) => Some((number(from)?, number(to)?)),
        None => {
            let single = number(text)?;
            Some((single, single))
        }
    }
}

/// R3: type and code, -1 meaning any; a code needs a type.
fn check_icmp(raw: &RawRule, diagnostics: &mut Diagnostics) -> Option<PortRange> {
    let mut valid = true;
    let mut value = |field: &'static str, raw: &Option<Located<i64>>| -> Option<u8> {
        let raw = raw.as_ref()?;
        if raw.value == -1 {
            return None;
        }
        match u8::try_from(raw.value) {
            Ok(value) => Some(value),
            Err(_) => {
                diagnostics.error(
                    &raw.at,
                    ValidationError::IcmpValueOutOfRange {
                        field,
                        value: raw.value,
                    },
                );
                valid = false;
                None
            }
        }
    };
    let icmp_type = value("icmp_type", &raw.icmp_type);
    let code = value("icmp_code", &raw.icmp_code);
    let type_is_any = match &raw.icmp_type {
        Some(icmp_type) => icmp_type.value == -1,
        // A type of the wrong type is reported already; do not blame the code as well.
        None => !raw.has("icmp_type"),
    };
    if let (Some(code), true) = (code, type_is_any) {
        if let Some(at) = raw.icmp_code.as_ref().map(|c| &c.at) {
            diagnostics.error(
                at,
                ValidationError::IcmpCodeWithoutType {
                    code: i64::from(code),
                },
            );
        }
        valid = false;
    }
    valid.then_some(PortRange::Icmp { icmp_type, code })
}

/// R5: the CIDR parses and has no host bits.
fn check_cidr(raw: &Located<String>, diagnostics: &mut Diagnostics) -> Option<IpNet> {
    match raw.value.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            diagnostics.error(
                &raw.at,
                ValidationError::CidrHostBits {
                    cidr: raw.value.clone(),
                    network: net.trunc().to_string(),
                },
            );
            None
        }
        Err(_) => {
            let error = match raw.value.parse::<IpAddr>() {
                Ok(address) => ValidationError::CidrWithoutPrefix {
                    cidr: raw.value.clone(),
                    prefix_len: if address.is_ipv4() { 32 } else { 128 },
                },
                Err(_) => ValidationError::InvalidCidr {
                    cidr: raw.value.clone(),
                },
            };
            diagnostics.error(&raw.at, error);
            None
        }
    }
}

/// R5: icmp never matches an IPv6 peer and icmpv6 never an IPv4 one.
fn check_icmp_family(protocol: Protocol, net: IpNet, at: &Location, diagnostics: &mut Diagnostics) {
    let mismatch = match (protocol, net) {
        (Protocol::Icmp, IpNet::V6(_)) => Some(("icmp", "IPv6", "icmpv6")),
        (Protocol::Icmpv6, IpNet::V4(_)) => Some(("icmpv6", "IPv4", "icmp")),
        _ => None,
    };
    if let Some((protocol, family, instead)) = mismatch {
        diagnostics.error(
            at,
            ValidationError::IcmpFamilyMismatch {
                protocol,
                family,
                cidr: net.to_string(),
                instead,
            },
        );
    }
}

/// R8.
fn check_description(raw: &Located<String>, diagnostics: &mut Diagnostics) {
    let length = raw.value.chars().count();
    if length > MAX_TEXT_CHARS {
        diagnostics.error(&raw.at, ValidationError::DescriptionTooLong { length });
    }
}

/// First use of each name, interface and address across instances, members and lab clients.
#[derive(Default)]
struct Registry {
    names: HashMap<String, Location>,
    interfaces: HashMap<String, Location>,
    addresses: HashMap<IpAddr, Location>,
}

impl Registry {
    fn claim_name(&mut self, name: &Located<String>, diagnostics: &mut Diagnostics) {
        if name.value.is_empty() {
            diagnostics.error(&name.at, ValidationError::EmptyName);
            return;
        }
        if let Some(first) = self.names.get(&name.value) {
            let first = diagnostics.describe(first);
            diagnostics.error(
                &name.at,
                ValidationError::DuplicateName {
                    name: name.value.clone(),
                    first,
                },
            );
        } else {
            self.names.insert(name.value.clone(), name.at.clone());
        }
    }

    fn claim_interface(&mut self, interface: &Located<String>, diagnostics: &mut Diagnostics) {
        if let Some(first) = self.interfaces.get(&interface.value) {
            let first = diagnostics.describe(first);
            diagnostics.error(
                &interface.at,
                ValidationError::DuplicateInterface {
                    interface: interface.value.clone(),
                    first,
                },
            );
        } else {
            self.interfaces
                .insert(interface.value.clone(), interface.at.clone());
        }
    }

    /// Parses and claims every address of one interface or client.
    fn claim_addresses(
        &mut self,
        raw: &Located<Vec<Located<String>>>,
        diagnostics: &mut Diagnostics,
    ) -> Vec<IpAddr> {
        if raw.value.is_empty() {
            diagnostics.error(&raw.at, ValidationError::NoAddresses);
        }
        let mut addresses = Vec::new();
        for text in &raw.value {
            let Some(address) = check_address(text, diagnostics) else {
                continue;
            };
            if let Some(first) = self.addresses.get(&address) {
                let first = diagnostics.describe(first);
                diagnostics.error(
                    &text.at,
                    ValidationError::DuplicateAddress {
                        address: address.to_string(),
                        first,
                    },
                );
            } else {
                self.addresses.insert(address, text.at.clone());
            }
            addresses.push(address);
        }
        addresses
    }
}

/// A host address: no prefix, and one that can be an interface's own.
fn check_address(raw: &Located<String>, diagnostics: &mut Diagnostics) -> Option<IpAddr> {
    match raw.value.parse::<IpAddr>() {
        Ok(address) if is_unicast(address) => Some(address),
        Ok(address) => {
            diagnostics.error(
                &raw.at,
                ValidationError::NotUnicastAddress {
                    address: address.to_string(),
                },
            );
            None
        }
        Err(_) => {
            let error = match raw.value.parse::<IpNet>() {
                Ok(net) => ValidationError::AddressWithPrefix {
                    address: raw.value.clone(),
                    host: net.addr().to_string(),
                },
                Err(_) => ValidationError::InvalidAddress {
                    address: raw.value.clone(),
                },
            };
            diagnostics.error(&raw.at, error);
            None
        }
    }
}

fn is_unicast(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// What Linux `dev_valid_name()` rejects.
fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_INTERFACE_NAME_BYTES {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are reserved")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains(':') {
        Some("it contains ':'")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else {
        None
    }
}

/// G5 for attachments: each group exists and is listed once.
fn check_attached_groups(
    raw: &Located<Vec<Located<String>>>,
    owner: &str,
    known_groups: &BTreeSet<String>,
    diagnostics: &mut Diagnostics,
) -> Vec<String> {
    if raw.value.is_empty() {
        diagnostics.error(&raw.at, ValidationError::NoSecurityGroups);
    }
    let mut first_seen: HashMap<&str, &Location> = HashMap::new();
    for group in &raw.value {
        if !known_groups.contains(&group.value) {
            diagnostics.error(
                &group.at,
                ValidationError::UnknownAttachedGroup {
                    owner: owner.to_string(),
                    group: group.value.clone(),
                },
            );
        }
        match first_seen.get(group.value.as_str()) {
            Some(first) => {
                let first = diagnostics.describe(first);
                diagnostics.error(
                    &group.at,
                    ValidationError::DuplicateAttachedGroup {
                        group: group.value.clone(),
                        first,
                    },
                );
            }
            None => {
                first_seen.insert(&group.value, &group.at);
            }
        }
    }
    raw.value.iter().map(|group| group.value.clone()).collect()
}

fn check_instance(
    raw: &RawInstance,
    known_groups: &BTreeSet<String>,
    quotas: Quotas,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedInstance> {
    let errors_before = diagnostics.errors.len();
    if let Some(name) = &raw.name {
        registry.claim_name(name, diagnostics);
    }
    let owner = owner_name("instance", raw.name.as_ref(), &raw.at);
    if let Some(interface) = &raw.interface {
        match interface_name_problem(&interface.value) {
            Some(reason) => diagnostics.error(
                &interface.at,
                ValidationError::InvalidInterfaceName {
                    interface: interface.value.clone(),
                    reason,
                },
            ),
            None => registry.claim_interface(interface, diagnostics),
        }
    }
    let attach = match raw.attach.as_ref().map(|a| (a.value.as_str(), a)) {
        None | Some(("port", _)) => Some(AttachMode::Port),
        Some(("host", _)) => Some(AttachMode::Host),
        Some((value, raw)) => {
            diagnostics.error(
                &raw.at,
                ValidationError::UnknownAttachMode {
                    value: value.to_string(),
                },
            );
            None
        }
    };
    let host_ingress_hook = match raw
        .host_ingress_hook
        .as_ref()
        .map(|h| (h.value.as_str(), h))
    {
        None | Some(("xdp", _)) => Some(HostIngressHook::Xdp),
        Some(("tc", _)) => Some(HostIngressHook::Tc),
        Some((value, raw)) => {
            diagnostics.error(
                &raw.at,
                ValidationError::UnknownHostIngressHook {
                    value: value.to_string(),
                },
            );
            None
        }
    };
    if let (Some(AttachMode::Port), Some(hook)) = (attach, &raw.host_ingress_hook) {
        diagnostics.warning(&hook.at, ValidationWarning::HostIngressHookIgnored);
    }
    let addresses = raw
        .addresses
        .as_ref()
        .map(|addresses| registry.claim_addresses(addresses, diagnostics));
    let security_groups = raw.security_groups.as_ref().map(|groups| {
        let attached = check_attached_groups(groups, &owner, known_groups, diagnostics);
        if attached.len() > quotas.groups_per_interface as usize {
            diagnostics.error(
                &groups.at,
                ValidationError::InstanceGroupsOverQuota {
                    instance: raw
                        .name
                        .as_ref()
                        .map_or_else(String::new, |n| n.value.clone()),
                    count: attached.len(),
                    quota: quotas.groups_per_interface,
                },
            );
        }
        attached
    });
    let exempt: Vec<IpNet> = raw
        .exempt
        .iter()
        .filter_map(|cidr| check_cidr(cidr, diagnostics))
        .collect();
    let conntrack = match &raw.conntrack {
        Some(conntrack) => check_conntrack(conntrack, diagnostics),
        None => Conntrack::default(),
    };

    if diagnostics.errors.len() > errors_before {
        return None;
    }
    Some(CheckedInstance {
        instance: Instance {
            name: raw.name.as_ref()?.value.clone(),
            interface: raw.interface.as_ref()?.value.clone(),
            attach: attach?,
            host_ingress_hook: host_ingress_hook?,
            addresses: addresses?,
            security_groups: security_groups?,
            source_dest_check: raw.source_dest_check.as_ref().is_none_or(|v| v.value),
            related_icmp: raw.related_icmp.as_ref().is_some_and(|v| v.value),
            exempt,
            conntrack,
        },
        security_groups_at: raw.security_groups.as_ref()?.at.clone(),
    })
}

/// How messages name an instance or member, even one whose name is missing.
fn owner_name(kind: &str, name: Option<&Located<String>>, at: &Location) -> String {
    match name {
        Some(name) => format!("{kind} \"{}\"", name.value),
        None => at.field.clone(),
    }
}

/// C5 and C6 ranges.
fn check_conntrack(raw: &RawConntrack, diagnostics: &mut Diagnostics) -> Conntrack {
    let defaults = Conntrack::default();
    let mut in_range = |field: &'static str,
                        value: &Option<Located<i64>>,
                        (min, max): (i64, i64),
                        unit: &'static str,
                        default: u32| {
        let Some(value) = value else {
            return default;
        };
        match u32::try_from(value.value) {
            Ok(seconds) if (min..=max).contains(&value.value) => seconds,
            _ => {
                diagnostics.error(
                    &value.at,
                    ValidationError::ConntrackOutOfRange {
                        field,
                        min,
                        max,
                        unit,
                        value: value.value,
                    },
                );
                default
            }
        }
    };
    const SECONDS: &str = " seconds";
    Conntrack {
        tcp_established_timeout: in_range(
            "tcp_established_timeout",
            &raw.tcp_established_timeout,
            (60, 432_000),
            SECONDS,
            defaults.tcp_established_timeout,
        ),
        udp_timeout: in_range(
            "udp_timeout",
            &raw.udp_timeout,
            (30, 60),
            SECONDS,
            defaults.udp_timeout,
        ),
        udp_stream_timeout: in_range(
            "udp_stream_timeout",
            &raw.udp_stream_timeout,
            (60, 180),
            SECONDS,
            defaults.udp_stream_timeout,
        ),
        max_flows: in_range(
            "max_flows",
            &raw.max_flows,
            (1, 4_194_304),
            "",
            defaults.max_flows,
        ),
        cut_on_rule_removal: raw
            .cut_on_rule_removal
            .as_ref()
            .map_or(defaults.cut_on_rule_removal, |v| v.value),
    }
}

fn check_member(
    raw: &RawMember,
    known_groups: &BTreeSet<String>,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<Member> {
    let errors_before = diagnostics.errors.len();
    if let Some(name) = &raw.name {
        registry.claim_name(name, diagnostics);
    }
    let owner = owner_name("member", raw.name.as_ref(), &raw.at);
    let addresses = raw
        .addresses
        .as_ref()
        .map(|addresses| registry.claim_addresses(addresses, diagnostics));
    let security_groups = raw
        .security_groups
        .as_ref()
        .map(|groups| check_attached_groups(groups, &owner, known_groups, diagnostics));
    if diagnostics.errors.len() > errors_before {
        return None;
    }
    Some(Member {
        name: raw.name.as_ref()?.value.clone(),
        addresses: addresses?,
        security_groups: security_groups?,
    })
}

fn check_lab_client(
    raw: &RawLabClient,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<LabClient> {
    let errors_before = diagnostics.errors.len();
    if let Some(name) = &raw.name {
        registry.claim_name(name, diagnostics);
    }
    let addresses = raw
        .addresses
        .as_ref()
        .map(|addresses| registry.claim_addresses(addresses, diagnostics));
    if diagnostics.errors.len() > errors_before {
        return None;
    }
    Some(LabClient {
        name: raw.name.as_ref()?.value.clone(),
        addresses: addresses?,
    })
}

/// R7: all effective rules of an interface's groups, per direction, within 1000 (the datapath's
/// rule bitmap holds no more).
fn check_interface_rule_totals(
    instances: &[CheckedInstance],
    groups: &[CheckedGroup],
    diagnostics: &mut Diagnostics,
) {
    let by_name: HashMap<&str, &CheckedGroup> = groups
        .iter()
        .map(|group| (group.name.as_str(), group))
        .collect();
    for checked in instances {
        for direction in Direction::BOTH {
            let count: usize = checked
                .instance
                .security_groups
                .iter()
                .filter_map(|name| by_name.get(name.as_str()))
                .map(|group| group.effective_rule_count(direction))
                .sum();
            if count > MAX_RULES_PER_INTERFACE as usize {
                diagnostics.error(
                    &checked.security_groups_at,
                    ValidationError::InstanceRulesOverQuota {
                        instance: checked.instance.name.clone(),
                        direction,
                        count,
                    },
                );
            }
        }
    }
}

/// How messages show one effective rule: `tcp 80 from 10.0.0.0/8`, `all to ::/0`.
pub(crate) fn rule_text(
    protocol: Protocol,
    ports: PortRange,
    peer: &Peer,
    direction: Direction,
) -> String {
    let service = match (protocol, ports) {
        (Protocol::All, _) => "all".to_string(),
        (Protocol::Number(number), _) => format!("protocol {number}"),
        (_, PortRange::Any) => protocol.to_string(),
        (_, ports) => format!("{protocol} {ports}"),
    };
    let preposition = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    format!("{service} {preposition} {peer}")
}
