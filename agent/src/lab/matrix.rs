//! The reachability matrix: what `sgwall lab probe` checks. Every source host probes every
//! destination instance on every service the rules talk about, in each address family both
//! have; each cell holds what the reference evaluator expects and what the network did.
//!
//! A probe "gets through" when its packets reached the destination and an answer came back
//! (a TCP RST counts: only the destination's stack sends one). The expectation follows the
//! packets across every enforced interface on the way: the outbound leg on the source's
//! interface when the source is an instance, the inbound leg on the destination's, then the
//! answer back through both, with a reference conntrack session carrying the flow (C1).

use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::topology::Host;
use crate::{
    eval::{
        Decision, Fragment, Frame, IpPacket, Reason, Session, TCP_ACK, TCP_SYN, Transport,
        describe_acl_verdict,
    },
    model::{Config, Direction, PortRange, Protocol, effective_rules},
    probe::{Outcome, Probe, ProbeError, Service},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn is_v6(self) -> bool {
        self == Family::Ipv6
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::Ipv4 => "v4",
            Family::Ipv6 => "v6",
        }
    }
}

/// The services to probe for `config`: for TCP and UDP, every port a rule names (for a range:
/// its first and last port and one inside), plus one port no rule names; and ICMP echo.
pub fn services(config: &Config) -> Vec<Service> {
    let mut tcp = BTreeSet::new();
    let mut udp = BTreeSet::new();
    let mut ranges = Vec::new();
    for group in &config.security_groups {
        for rule in group.ingress.iter().chain(&group.egress) {
            let PortRange::Ports { from, to } = rule.ports else {
                continue;
            };
            let ports = match rule.protocol {
                Protocol::Tcp => &mut tcp,
                Protocol::Udp => &mut udp,
                _ => continue,
            };
            ranges.push((from, to));
            // Port 0 cannot be connected to; 1 stands for it.
            let from = from.max(1);
            if from > to {
                continue;
            }
            ports.insert(from);
            ports.insert(to);
            if to - from >= 2 {
                ports.insert(from + (to - from) / 2);
            }
        }
    }
    if let Some(unused) = unused_port(&ranges) {
        tcp.insert(unused);
        udp.insert(unused);
    }
    tcp.into_iter()
        .map(Service::Tcp)
        .chain(udp.into_iter().map(Service::Udp))
        .chain(std::iter::once(Service::IcmpEcho))
        .collect()
}

/// A port no TCP or UDP rule admits, to show what no rule opens (R1); `None` when the rules
/// cover every port.
pub fn unused_port(ranges: &[(u16, u16)]) -> Option<u16> {
    let covered = |port: u16| ranges.iter().any(|&(from, to)| (from..=to).contains(&port));
    (9999..=u16::MAX)
        .chain(1..9999)
        .find(|&port| !covered(port))
}

/// What the reference evaluator says about one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub passes: bool,
    /// Where and why it is dropped, or which rule admits it at the destination.
    pub why: String,
    /// A network ACL refused it (N2-N4), not the groups: `why` names the entry.
    pub refused_by_acl: bool,
}

/// One probe of the matrix, with its expectation and (once run) its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub source: String,
    pub destination: String,
    pub family: Family,
    pub service: Service,
    pub source_address: IpAddr,
    pub destination_address: IpAddr,
    pub expected: Expectation,
    pub observed: Option<Outcome>,
    /// How many times the probe ran (a second time only when the first did not get through
    /// although expected to, to tell a slow machine from a drop).
    pub attempts: u32,
}

impl Cell {
    pub fn got_through(&self) -> Option<bool> {
        self.observed.map(Outcome::got_through)
    }

    pub fn agrees(&self) -> bool {
        self.got_through() == Some(self.expected.passes)
    }
}

/// A row of the matrix: one source in one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub source: String,
    pub family: Family,
    /// Whether the source is enforced (an instance) or not (a client).
    pub filtered: bool,
}

/// The whole matrix.
#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub rows: Vec<Row>,
    pub destinations: Vec<String>,
    pub services: Vec<Service>,
    pub cells: Vec<Cell>,
    pub timeout_ms: u64,
    pub elapsed_ms: u64,
}

impl Matrix {
    pub fn cell(
        &self,
        source: &str,
        family: Family,
        destination: &str,
        service: Service,
    ) -> Option<&Cell> {
        self.cells.iter().find(|c| {
            c.source == source
                && c.family == family
                && c.destination == destination
                && c.service == service
        })
    }

    pub fn disagreements(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| !c.agrees()).collect()
    }
}

/// Which hosts take part, and how.
pub struct Participants<'a> {
    /// Every host that sends probes.
    pub sources: Vec<&'a Host>,
    /// Instances that receive them.
    pub destinations: Vec<&'a Host>,
}

/// Plans every cell, each with its expectation. A host counts as an instance (filtered) when
/// the config has an instance of its name; otherwise it is an unfiltered client.
pub fn plan(config: &Config, participants: &Participants<'_>, services: &[Service]) -> Matrix {
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    for source in &participants.sources {
        for family in Family::BOTH {
            let Some(source_address) = source.address(family.is_v6()) else {
                continue;
            };
            rows.push(Row {
                source: source.name.clone(),
                family,
                filtered: config.instance(&source.name).is_some(),
            });
            for destination in &participants.destinations {
                if destination.name == source.name {
                    continue;
                }
                let Some(destination_address) = destination.address(family.is_v6()) else {
                    continue;
                };
                for &service in services {
                    cells.push(Cell {
                        source: source.name.clone(),
                        destination: destination.name.clone(),
                        family,
                        service,
                        source_address,
                        destination_address,
                        expected: expect(
                            config,
                            &source.name,
                            source_address,
                            &destination.name,
                            destination_address,
                            service,
                        ),
                        observed: None,
                        attempts: 0,
                    });
                }
            }
        }
    }
    Matrix {
        rows,
        destinations: participants
            .destinations
            .iter()
            .map(|h| h.name.clone())
            .collect(),
        services: services.to_vec(),
        cells,
        timeout_ms: 0,
        elapsed_ms: 0,
    }
}

/// An ephemeral port for the modelled probe: the answer's destination port. Rules never see it
/// on a tracked flow; on an untracked one (C8) the reverse direction admits every port anyway.
const MODEL_SOURCE_PORT: u16 = 40_000;
const MODEL_ECHO_ID: u16 = 4242;

/// The first packet of a probe, and the destination's answer to it.
pub fn probe_packets(
    source: IpAddr,
    destination: IpAddr,
    service: Service,
) -> (IpPacket, IpPacket) {
    let v6 = destination.is_ipv6();
    let (forward, answer) = match service {
        Service::Tcp(port) => (
            Transport::tcp(MODEL_SOURCE_PORT, port, TCP_SYN),
            Transport::tcp(port, MODEL_SOURCE_PORT, TCP_SYN | TCP_ACK),
        ),
        Service::Udp(port) => (
            Transport::Udp {
                src_port: MODEL_SOURCE_PORT,
                dst_port: port,
            },
            Transport::Udp {
                src_port: port,
                dst_port: MODEL_SOURCE_PORT,
            },
        ),
        Service::IcmpEcho => {
            let (request, reply) = if v6 { (128, 129) } else { (8, 0) };
            let echo = |icmp_type| Transport::Icmp {
                icmp_type,
                code: 0,
                echo_id: MODEL_ECHO_ID,
                quoted: None,
            };
            (echo(request), echo(reply))
        }
    };
    let packet = |src, dst, transport| IpPacket {
        src,
        dst,
        transport,
        fragment: Fragment::Whole,
    };
    (
        packet(source, destination, forward),
        packet(destination, source, answer),
    )
}

/// The evaluator's verdict on one probe from host `source` to instance `destination`.
pub fn expect(
    config: &Config,
    source: &str,
    source_address: IpAddr,
    destination: &str,
    destination_address: IpAddr,
    service: Service,
) -> Expectation {
    let (forward, answer) = probe_packets(source_address, destination_address, service);
    let source_filtered = config.instance(source).is_some();
    let destination_filtered = config.instance(destination).is_some();
    // (instance, direction, packet, whether it is the answer)
    let mut legs: Vec<(&str, Direction, &IpPacket, bool)> = Vec::new();
    if source_filtered {
        legs.push((source, Direction::Egress, &forward, false));
    }
    if destination_filtered {
        legs.push((destination, Direction::Ingress, &forward, false));
        legs.push((destination, Direction::Egress, &answer, true));
    }
    if source_filtered {
        legs.push((source, Direction::Ingress, &answer, true));
    }
    let mut session = Session::new(config.clone());
    let mut admitted_by = None;
    for (instance, direction, packet, is_answer) in legs {
        let decision = session.process(instance, direction, &Frame::Ip(packet.clone()), 0.0);
        if !decision.admitted() {
            let what = if is_answer {
                "the answer is dropped"
            } else {
                "dropped"
            };
            let by = match (decision.acl, config.instance(instance)) {
                (Some(verdict), Some(enforced)) => {
                    describe_acl_verdict(config, enforced, direction, verdict)
                }
                _ => decision.reason.describe().to_string(),
            };
            return Expectation {
                passes: false,
                why: format!("{what} on {instance} {direction}: {by}"),
                refused_by_acl: decision.acl.is_some(),
            };
        }
        if instance == destination && direction == Direction::Ingress {
            admitted_by = describe_rule(config, instance, direction, &decision).or_else(|| {
                (decision.reason == Reason::Exempt)
                    .then(|| "its exempt list (I3), whatever the rules".to_string())
            });
        }
    }
    Expectation {
        passes: true,
        why: match admitted_by {
            Some(rule) => format!("admitted on {destination} ingress by {rule}"),
            None if destination_filtered => format!("admitted on {destination} ingress"),
            None => format!("{destination} is not enforced"),
        },
        refused_by_acl: false,
    }
}

/// "web-sg rule 2 (tcp 22 from 198.51.100.0/24: SSH from the admin network only)".
fn describe_rule(
    config: &Config,
    instance: &str,
    direction: Direction,
    decision: &Decision,
) -> Option<String> {
    let id = decision.rule?;
    let instance = config.instance(instance)?;
    let rules = effective_rules(config, instance, direction);
    let rule = rules.get(usize::from(id))?;
    let ports = match rule.ports {
        PortRange::Any => String::new(),
        other => format!(" {other}"),
    };
    let peer_word = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let description = if rule.description.is_empty() {
        String::new()
    } else {
        format!(": {}", rule.description)
    };
    Some(format!(
        "{} rule {} ({}{ports} {peer_word} {}{description})",
        rule.group,
        rule.rule_index + 1,
        rule.protocol,
        rule.peer,
    ))
}

/// How probes run.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallelism: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1000),
            parallelism: 64,
        }
    }
}

/// Runs the probes of every cell, from the source's namespace (found by `namespace_of`), in
/// parallel. A cell that did not get through although expected to is probed once more with
/// twice the timeout, so a loaded machine is not taken for a drop; a cell that got through
/// although expected not to is never retried (a pass is never an accident).
pub fn run(
    matrix: &mut Matrix,
    namespace_of: &(dyn Fn(&str) -> Option<String> + Sync),
    options: ProbeOptions,
) -> Result<(), ProbeError> {
    let started = Instant::now();
    let first: Vec<usize> = (0..matrix.cells.len()).collect();
    run_batch(
        matrix,
        &first,
        namespace_of,
        options.timeout,
        options.parallelism,
    )?;
    let again: Vec<usize> = (0..matrix.cells.len())
        .filter(|&i| {
            let cell = &matrix.cells[i];
            cell.expected.passes && cell.got_through() == Some(false)
        })
        .collect();
    if !again.is_empty() {
        run_batch(
            matrix,
            &again,
            namespace_of,
            options.timeout * 2,
            options.parallelism,
        )?;
    }
    matrix.timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX);
    matrix.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(())
}

fn run_batch(
    matrix: &mut Matrix,
    indexes: &[usize],
    namespace_of: &(dyn Fn(&str) -> Option<String> + Sync),
    timeout: Duration,
    parallelism: usize,
) -> Result<(), ProbeError> {
    let jobs: Vec<(usize, String, Probe)> = indexes
        .iter()
        .filter_map(|&i| {
            let cell = &matrix.cells[i];
            let namespace = namespace_of(&cell.source)?;
            Some((
                i,
                namespace,
                Probe {
                    source: Some(cell.source_address),
                    destination: cell.destination_address,
                    service: cell.service,
                    timeout,
                },
            ))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Outcome, ProbeError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallelism.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((index, namespace, probe)) = jobs.get(n) else {
                        break;
                    };
                    let outcome = probe.run_in(namespace);
                    if let Ok(mut results) = results.lock() {
                        results.push((*index, outcome));
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (index, outcome) in results {
        let cell = &mut matrix.cells[index];
        cell.observed = Some(outcome?);
        cell.attempts += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::load_str, lab::topology::HostKind};

    fn three_tier() -> Config {
        load_str(
            include_str!("../../../examples/three-tier.toml"),
            std::path::Path::new("three-tier.toml"),
        )
        .unwrap()
        .config
    }

    fn host(name: &str, addresses: &[&str]) -> Host {
        Host {
            name: name.into(),
            kind: HostKind::Instance,
            namespace: format!("ns-{name}"),
            router_interface: String::new(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            dhcp: false,
        }
    }

    #[test]
    fn services_cover_every_named_port_range_ends_and_an_unused_port() {
        let config = load_str(
            r#"
[[security_group]]
name = "sg"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8000-8010"
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "udp"
  ports = 53
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "all"
  cidr = ["10.0.0.0/8"]
[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.0.0.1"]
security_groups = ["sg"]
"#,
            std::path::Path::new("t.toml"),
        )
        .unwrap()
        .config;
        assert_eq!(
            services(&config),
            [
                Service::Tcp(8000),
                Service::Tcp(8005),
                Service::Tcp(8010),
                Service::Tcp(9999),
                Service::Udp(53),
                Service::Udp(9999),
                Service::IcmpEcho
            ]
        );
        assert_eq!(unused_port(&[(0, 65535)]), None);
        assert_eq!(unused_port(&[(9000, 10000)]), Some(10001));
    }

    #[test]
    fn n2_n4_a_refusal_by_a_network_acl_names_its_entry() {
        let config = load_str(
            include_str!("../../../examples/network-acl.toml"),
            std::path::Path::new("network-acl.toml"),
        )
        .unwrap()
        .config;
        let v4 = |a: &str| a.parse::<IpAddr>().unwrap();
        let blocked = expect(
            &config,
            "blocked",
            v4("198.18.0.10"),
            "web-1",
            v4("10.0.1.10"),
            Service::Tcp(443),
        );
        assert!(!blocked.passes && blocked.refused_by_acl, "{blocked:?}");
        assert_eq!(
            blocked.why,
            "dropped on web-1 ingress: network ACL public-acl (subnet public) ingress entry 90: \
             deny all from 198.18.0.0/15"
        );
        // Across subnets both ACLs and the groups admit it: ingress entry 100, then app-sg (G1).
        let web_to_app = expect(
            &config,
            "web-1",
            v4("10.0.1.10"),
            "app-1",
            v4("10.0.2.10"),
            Service::Tcp(8080),
        );
        assert!(
            web_to_app.passes && !web_to_app.refused_by_acl,
            "{web_to_app:?}"
        );
        // N4: web-1 and web-2 share a subnet; its ACL has no entry for 9999, yet they talk.
        let inside = expect(
            &config,
            "web-1",
            v4("10.0.1.10"),
            "web-2",
            v4("10.0.1.11"),
            Service::Tcp(9999),
        );
        assert!(inside.passes, "{inside:?}");
    }

    #[test]
    fn expectations_follow_both_legs_and_name_the_admitting_rule() {
        let config = three_tier();
        let v4 = |a: &str| a.parse::<IpAddr>().unwrap();
        // internet → web-1:80: admitted by the 0.0.0.0/0 rule, answer untracked but open (C8).
        let web = expect(
            &config,
            "internet",
            v4("203.0.113.10"),
            "web-1",
            v4("10.0.1.10"),
            Service::Tcp(80),
        );
        assert!(web.passes, "{web:?}");
        assert!(web.why.contains("web-sg rule 1"), "{}", web.why);
        // internet → db-1:3306: no rule (R1).
        let db = expect(
            &config,
            "internet",
            v4("203.0.113.10"),
            "db-1",
            v4("10.0.3.10"),
            Service::Tcp(3306),
        );
        assert!(!db.passes);
        assert_eq!(db.why, "dropped on db-1 ingress: no rule admits it (R1)");
        // app-1 → db-1:3306 by group reference (G1); web-1 → db-1 is not in app-sg.
        assert!(
            expect(
                &config,
                "app-1",
                v4("10.0.2.10"),
                "db-1",
                v4("10.0.3.10"),
                Service::Tcp(3306)
            )
            .passes
        );
        assert!(
            !expect(
                &config,
                "web-1",
                v4("10.0.1.10"),
                "db-1",
                v4("10.0.3.10"),
                Service::Tcp(3306)
            )
            .passes
        );
        // An unknown host (a client, or an interface the config does not know) is unfiltered.
        assert!(
            expect(
                &config,
                "stray",
                v4("10.9.9.9"),
                "web-1",
                v4("10.0.1.10"),
                Service::Tcp(443)
            )
            .passes
        );
    }

    #[test]
    fn plan_skips_self_and_missing_families() {
        let config = three_tier();
        let web = host("web-1", &["10.0.1.10", "fd00:1::10"]);
        let admin = host("admin", &["198.51.100.10"]);
        let participants = Participants {
            sources: vec![&web, &admin],
            destinations: vec![&web],
        };
        let services = [Service::Tcp(22)];
        let matrix = plan(&config, &participants, &services);
        assert_eq!(matrix.rows.len(), 3, "web v4, web v6, admin v4");
        assert_eq!(matrix.cells.len(), 1, "only admin → web-1, v4");
        let cell = &matrix.cells[0];
        assert!(cell.expected.passes, "SSH from the admin network");
        assert!(!cell.agrees(), "not probed yet");
    }
}
