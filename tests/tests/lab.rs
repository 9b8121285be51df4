//! Tier 3: the semantics of `../shared/ec2-sg-semantics.md` shown with real traffic. Each test
//! builds a `sgwall lab` topology (a namespace per instance and client, behind a router where
//! `sgwall run` enforces each instance's port), sends traffic, and checks it both against the
//! statement and against the reference evaluator. Test names start with the statement IDs.
//!
//! Rules are written one per line as inline tables, so that a group reads as its rule table.
//! The helpers below keep each test to its topology and its expectations: `up` (the lab, or a
//! skip where tier 3 cannot run), the matrix assertions, the evaluator's packets and replays,
//! and `rule_removal` for the C4/C8 cases that differ only in their rule and their outcome.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sgwall::{
    config::load_str,
    eval::{
        Decision, Fragment, Frame, IpPacket, QuotedFlow, Reason, Session, TCP_ACK, TCP_SYN,
        Transport, classify, evaluate,
    },
    lab::matrix::{Family, Matrix, ProbeOptions, expect},
    model::{Config, Direction},
    probe::{Outcome, Service},
};
use sgwall_tests::{
    lab::{
        PROBE_TIMEOUT, TcpEchoServer, TcpSession, TestLab, UdpEndpoint, raw_ip_delivered, udp_echo,
    },
    privileged,
};

/// Two unfiltered hosts: `client` (inside the CIDRs the rules name) and `other` (outside).
const CLIENTS: &str = r#"
[[lab.client]]
name = "client"
addresses = ["10.9.0.10", "fd00:9::10"]

[[lab.client]]
name = "other"
addresses = ["10.8.0.10", "fd00:8::10"]
"#;

/// `client`'s networks, as a rule peer.
const CLIENT_NETS: &str = r#"["10.9.0.0/24", "fd00:9::/64"]"#;

/// Every address, as a rule peer: the C8 case.
const ANYWHERE: &str = r#"["0.0.0.0/0", "::/0"]"#;

const CLOSED_GROUP: &str = r#"
[[security_group]]
name = "closed"
description = "no inbound rule; egress never set, so the AWS default"
"#;

/// The IPv4 addresses of `client` and of the instance `instance` numbers 1.
const CLIENT_V4: &str = "10.9.0.10";
const INSTANCE_1_V4: &str = "10.1.0.10";

/// TCP flags of a data segment.
const TCP_PSH_ACK: u8 = 0x08 | TCP_ACK;

/// An `[[instance]]` with addresses 10.N.0.10 and fd00:N::10 on interface `sgw-NAME`.
fn instance(name: &str, n: u8, groups: &[&str], extra: &str) -> String {
    let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        r#"
[[instance]]
name = "{name}"
interface = "sgw-{name}"
attach = "port"
addresses = ["10.{n}.0.10", "fd00:{n}::10"]
security_groups = [{}]
{extra}
"#,
        groups.join(", ")
    )
}

/// `groups`, then `instances`, then the two clients.
fn topology(groups: &str, instances: &[String]) -> String {
    format!("{groups}{}{CLIENTS}", instances.concat())
}

/// The lab for `config`; `None` (the test returns, visibly skipped) where tier 3 cannot run.
fn up(config: &str) -> Option<TestLab> {
    privileged().then(|| TestLab::up(config))
}

fn load(config: &str) -> Config {
    load_str(config, std::path::Path::new("lab-test.toml"))
        .unwrap_or_else(|error| panic!("{error}"))
        .config
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Asserts that every probed cell from `source` to `destination` (all services and both
/// families) did, or did not, get through.
fn assert_pair(matrix: &Matrix, source: &str, destination: &str, passes: bool) {
    let cells: Vec<_> = matrix
        .cells
        .iter()
        .filter(|c| c.source == source && c.destination == destination)
        .collect();
    assert!(!cells.is_empty(), "no cells {source} → {destination}");
    for cell in cells {
        assert_eq!(
            cell.got_through(),
            Some(passes),
            "{source} → {destination} {} {}: {:?} ({})",
            cell.service,
            cell.family.label(),
            cell.observed,
            cell.expected.why
        );
    }
}

/// Asserts one cell: `service` from `source` to `destination` in `family`.
fn assert_cell(
    matrix: &Matrix,
    (source, family, destination): (&str, Family, &str),
    service: Service,
    passes: bool,
) {
    let cell = matrix
        .cell(source, family, destination, service)
        .unwrap_or_else(|| panic!("no cell {source} → {destination} {service}"));
    assert_eq!(
        cell.got_through(),
        Some(passes),
        "{source} → {destination} {service} {}: {:?} ({})",
        family.label(),
        cell.observed,
        cell.expected.why
    );
}

/// Asserts one service from `source` to `destination` in both families.
fn assert_service(
    matrix: &Matrix,
    source: &str,
    destination: &str,
    service: Service,
    passes: bool,
) {
    for family in Family::BOTH {
        assert_cell(matrix, (source, family, destination), service, passes);
    }
}

/// Asserts each `(source, destination, service, passes)` in both families.
fn assert_services(matrix: &Matrix, expected: &[(&str, &str, Service, bool)]) {
    for &(source, destination, service, passes) in expected {
        assert_service(matrix, source, destination, service, passes);
    }
}

fn tcp(src: &str, src_port: u16, dst: &str, dst_port: u16, flags: u8) -> IpPacket {
    IpPacket {
        src: ip(src),
        dst: ip(dst),
        transport: Transport::tcp(src_port, dst_port, flags),
        fragment: Fragment::Whole,
    }
}

fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, fragment: Fragment) -> IpPacket {
    IpPacket {
        src,
        dst,
        transport: Transport::Udp { src_port, dst_port },
        fragment,
    }
}

/// Feeds `steps` (direction, packet, time) at `instance`'s interface to the evaluator, in
/// order.
fn replay(
    session: &mut Session,
    instance: &str,
    steps: &[(Direction, &IpPacket, f64)],
) -> Vec<Decision> {
    steps
        .iter()
        .map(|&(direction, packet, now)| {
            session.process(instance, direction, &Frame::Ip(packet.clone()), now)
        })
        .collect()
}

/// Whether each of `steps` was admitted.
fn admitted(
    session: &mut Session,
    instance: &str,
    steps: &[(Direction, &IpPacket, f64)],
) -> Vec<bool> {
    replay(session, instance, steps)
        .iter()
        .map(Decision::admitted)
        .collect()
}

/// TCP, UDP and ping on one port: what a closed or exempt interface is probed with.
const MIXED: [Service; 3] = [Service::Tcp(7000), Service::Udp(7000), Service::IcmpEcho];

#[test]
fn r1_default_deny_inbound_r2_default_egress_c1_c3_replies_c2_state_per_interface() {
    let instances = [
        instance("a", 1, &["closed"], ""),
        instance("b", 2, &["closed"], ""),
    ];
    let Some(lab) = up(&topology(CLOSED_GROUP, &instances)) else {
        return;
    };
    let matrix = lab.matrix(&["client", "a"], &["a", "b", "client"], &MIXED);
    // R1: nothing inbound without a rule, in either family, any protocol.
    assert_pair(&matrix, "client", "a", false);
    assert_pair(&matrix, "client", "b", false);
    // R2, C1 and C3: the default egress lets a out, and the answers (echo replies too) come
    // back with no inbound rule.
    assert_pair(&matrix, "a", "client", true);
    // C2: a's egress admits and tracks the flow, but b's interface judges it alone.
    assert_pair(&matrix, "a", "b", false);
}

#[test]
fn c1_reply_passes_without_a_reverse_rule_r2_empty_egress_admits_nothing_out() {
    let groups = r#"
[[security_group]]
name = "inbound-only"
egress = []
ingress = [{ protocol = "tcp", ports = 80, cidr = ["10.9.0.0/24", "fd00:9::/64"] }]
"#;
    let Some(lab) = up(&topology(
        groups,
        &[instance("a", 1, &["inbound-only"], "")],
    )) else {
        return;
    };
    let inbound = lab.matrix(&["client"], &["a"], &[Service::Tcp(80), Service::Tcp(81)]);
    assert_services(
        &inbound,
        &[
            // C1: the SYN-ACK leaves a although its group admits nothing outbound.
            ("client", "a", Service::Tcp(80), true),
            ("client", "a", Service::Tcp(81), false),
        ],
    );
    // R2: egress set to [] admits nothing outbound.
    let outbound = lab.matrix(&["a"], &["client"], &MIXED);
    assert_pair(&outbound, "a", "client", false);
}

#[test]
fn g1_group_reference_g2_every_member_address_g4_self_reference_r6_two_groups_union() {
    let groups = r#"
[[security_group]]
name = "web"
ingress = [{ protocol = "tcp", ports = 80, cidr = ["10.9.0.0/24", "fd00:9::/64"] }]

[[security_group]]
name = "app"
ingress = [{ protocol = "tcp", ports = 8080, groups = ["web"] }]

[[security_group]]
name = "ssh"
ingress = [{ protocol = "tcp", ports = 22, cidr = ["10.9.0.0/24", "fd00:9::/64"] }]

[[security_group]]
name = "mesh"
description = "the default-group pattern: members talk freely"
ingress = [{ protocol = "all", groups = ["mesh"] }]
"#;
    let instances = [
        instance("w", 1, &["web", "mesh"], "")
            .replace(r#"["10.1.0.10", "#, r#"["10.1.0.10", "10.1.0.11", "#),
        instance("p", 2, &["app", "ssh"], ""),
        instance("m", 3, &["mesh"], ""),
    ];
    let Some(lab) = up(&topology(groups, &instances)) else {
        return;
    };
    let services = [
        Service::Tcp(22),
        Service::Tcp(80),
        Service::Tcp(8080),
        Service::Udp(5353),
        Service::IcmpEcho,
    ];
    let matrix = lab.matrix(&["w", "p", "m", "client"], &["w", "p", "m"], &services);
    assert_services(
        &matrix,
        &[
            // G1: app admits members of web (w) on 8080, and nobody else.
            ("w", "p", Service::Tcp(8080), true),
            ("m", "p", Service::Tcp(8080), false),
            ("client", "p", Service::Tcp(8080), false),
            // R6: p's second group (ssh) adds to the first: 22 from the client as well.
            ("client", "p", Service::Tcp(22), true),
            ("w", "p", Service::Tcp(22), false),
            // w's own group admits the client on 80 only.
            ("client", "w", Service::Tcp(80), true),
            ("client", "w", Service::Tcp(8080), false),
        ],
    );
    // G4: mesh members reach each other on everything; a non-member reaches no member.
    assert_pair(&matrix, "m", "w", true);
    assert_pair(&matrix, "w", "m", true);
    assert_pair(&matrix, "p", "m", false);
    // G2: w's secondary address is a member too (the matrix used its first address of each
    // family, IPv6 included).
    let secondary = ip("10.1.0.11");
    let p = lab.address("p", false);
    let expected = expect(&lab.config(), "w", secondary, "p", p, Service::Tcp(8080));
    assert!(expected.passes, "{}", expected.why);
    let _listener = lab.listen("p", Service::Tcp(8080));
    assert_eq!(
        lab.probe_from("w", secondary, "p", Service::Tcp(8080)),
        Outcome::Reached
    );
}

#[test]
fn r3_port_range_ends_r4_destination_port_only_r6_overlapping_rules() {
    let groups = r#"
[[security_group]]
name = "ranges"
ingress = [
  { protocol = "tcp", ports = "8000-8010", cidr = ["10.9.0.0/24", "fd00:9::/64"] },
  { protocol = "tcp", ports = 8005, cidr = ["10.9.0.10/32", "fd00:9::10/128"], description = "inside the range above: overlapping rules simply both admit" },
  { protocol = "tcp", ports = "8008-8020", cidr = ["10.9.0.0/16", "fd00:9::/48"] },
]
"#;
    let Some(lab) = up(&topology(groups, &[instance("r", 1, &["ranges"], "")])) else {
        return;
    };
    let ports = [
        (7999, false),
        (8000, true),
        (8005, true),
        (8010, true),
        (8015, true),
        (8020, true),
        (8021, false),
    ];
    let mut services: Vec<Service> = ports.iter().map(|(p, _)| Service::Tcp(*p)).collect();
    services.push(Service::Udp(8005));
    let matrix = lab.matrix(&["client", "other"], &["r"], &services);
    for (port, passes) in ports {
        assert_service(&matrix, "client", "r", Service::Tcp(port), passes);
    }
    // R4: only the destination port counts; a source port the rules admit does not help.
    let _closed = lab.listen("r", Service::Tcp(7999));
    for v6 in [false, true] {
        let from_admitted_port = TcpSession::connect_from_port(
            &lab.namespace("client"),
            SocketAddr::new(lab.address("client", v6), 8005),
            lab.address("r", v6),
            7999,
        );
        assert!(
            from_admitted_port.is_none(),
            "source port 8005 → 7999 (v6 {v6})"
        );
    }
    // The protocol is part of the rule: the same port over UDP is not admitted.
    assert_service(&matrix, "client", "r", Service::Udp(8005), false);
    assert_pair(&matrix, "other", "r", false);
}

#[test]
fn r3_protocol_number_rule_numeric_tcp_and_all() {
    let groups = r#"
[[security_group]]
name = "numbers"
ingress = [
  { protocol = 200, cidr = ["10.9.0.0/24", "fd00:9::/64"], description = "an unassigned protocol, by number: no ports" },
  { protocol = 6, ports = 22, cidr = ["10.9.0.0/24", "fd00:9::/64"], description = "6 is tcp" },
  { protocol = "all", cidr = ["10.8.0.0/24", "fd00:8::/64"] },
]
"#;
    let Some(lab) = up(&topology(groups, &[instance("n", 1, &["numbers"], "")])) else {
        return;
    };
    let (client, other, n) = (
        lab.namespace("client"),
        lab.namespace("other"),
        lab.namespace("n"),
    );
    let config = lab.config();
    for v6 in [false, true] {
        let (from, to) = (lab.address("client", v6), lab.address("n", v6));
        // Not 253/254: IPv6 takes those for experimental extension headers (H2).
        for (protocol, passes) in [(200, true), (201, false)] {
            let raw = Frame::Ip(IpPacket {
                src: from,
                dst: to,
                transport: Transport::Other(protocol),
                fragment: Fragment::Whole,
            });
            let n_instance = config.instance("n").unwrap();
            let decision = evaluate(
                &config,
                n_instance,
                Direction::Ingress,
                &raw,
                &Default::default(),
            );
            assert_eq!(
                decision.admitted(),
                passes,
                "evaluator, protocol {protocol}"
            );
            assert_eq!(
                raw_ip_delivered(&client, from, &n, to, protocol),
                passes,
                "client → n, IP protocol {protocol}, v6 {v6}"
            );
        }
        // `all` admits any protocol, numbered ones too.
        let from_other = lab.address("other", v6);
        assert!(
            raw_ip_delivered(&other, from_other, &n, to, 201),
            "other → n, protocol 201 under `all`, v6 {v6}"
        );
    }
    let services = [
        Service::Tcp(22),
        Service::Tcp(23),
        Service::Udp(22),
        Service::IcmpEcho,
    ];
    let matrix = lab.matrix(&["client", "other"], &["n"], &services);
    for (service, passes) in services.into_iter().zip([true, false, false, false]) {
        assert_service(&matrix, "client", "n", service, passes);
    }
    assert_pair(&matrix, "other", "n", true);
}

#[test]
fn r3_icmp_type_and_code_icmpv6_echo_separate_from_icmp() {
    let groups = r#"
[[security_group]]
name = "echo"
ingress = [
  { protocol = "icmp", icmp_type = 8, icmp_code = 0, cidr = ["10.9.0.0/24"] },
  { protocol = "icmpv6", icmp_type = 128, cidr = ["fd00:9::/64"] },
]

[[security_group]]
name = "wrong-code"
ingress = [
  { protocol = "icmp", icmp_type = 8, icmp_code = 1, cidr = ["10.9.0.0/24"] },
  { protocol = "icmpv6", icmp_type = 129, cidr = ["fd00:9::/64"], description = "echo reply, not request" },
]

[[security_group]]
name = "any-icmp"
ingress = [
  { protocol = "icmp", cidr = ["10.9.0.0/24"], description = "every ICMP type: ICMPv6 is another protocol" },
]
"#;
    let instances = [
        instance("e", 1, &["echo"], ""),
        instance("c", 2, &["wrong-code"], ""),
        instance("y", 3, &["any-icmp"], ""),
    ];
    let Some(lab) = up(&topology(groups, &instances)) else {
        return;
    };
    let matrix = lab.matrix(&["client"], &["e", "c", "y"], &[Service::IcmpEcho]);
    assert_pair(&matrix, "client", "e", true);
    assert_pair(&matrix, "client", "c", false);
    // Any icmp type admits ping; an icmp rule does not admit ICMPv6.
    let y = |family| ("client", family, "y");
    assert_cell(&matrix, y(Family::Ipv4), Service::IcmpEcho, true);
    assert_cell(&matrix, y(Family::Ipv6), Service::IcmpEcho, false);
}

#[test]
fn r5_dual_stack_each_family_has_its_own_rules() {
    let groups = r#"
[[security_group]]
name = "dual"
ingress = [
  { protocol = "tcp", ports = 80, cidr = ["0.0.0.0/0"] },
  { protocol = "tcp", ports = 443, cidr = ["::/0"] },
  { protocol = "tcp", ports = 22, cidr = ["10.9.0.10/32", "fd00:9::10/128"] },
]
"#;
    let Some(lab) = up(&topology(groups, &[instance("d", 1, &["dual"], "")])) else {
        return;
    };
    let services = [Service::Tcp(80), Service::Tcp(443), Service::Tcp(22)];
    let matrix = lab.matrix(&["client", "other"], &["d"], &services);
    for (family, port, passes) in [
        (Family::Ipv4, 80, true),
        (Family::Ipv6, 80, false),
        (Family::Ipv4, 443, false),
        (Family::Ipv6, 443, true),
        (Family::Ipv4, 22, true),
        (Family::Ipv6, 22, true),
    ] {
        assert_cell(&matrix, ("client", family, "d"), Service::Tcp(port), passes);
    }
    assert_service(&matrix, "other", "d", Service::Tcp(22), false);
}

#[test]
fn h1_fragmented_udp_passes_when_allowed_and_is_dropped_when_not() {
    let groups = r#"
[[security_group]]
name = "udp"
ingress = [{ protocol = "udp", ports = 5000, cidr = ["10.9.0.0/24", "fd00:9::/64"] }]
"#;
    let Some(lab) = up(&topology(groups, &[instance("f", 1, &["udp"], "")])) else {
        return;
    };
    let _allowed = lab.listen("f", Service::Udp(5000));
    let _denied = lab.listen("f", Service::Udp(5001));
    let client = lab.namespace("client");
    // Over the veth MTU of 1500 either way: the datagram and its echo travel as fragments.
    const LARGE: usize = 4000;
    for v6 in [false, true] {
        let source = lab.address("client", v6);
        let f = lab.address("f", v6);
        for (port, length, passes, what) in [
            (5000, 100, true, "small, allowed"),
            (
                5000,
                LARGE,
                true,
                "fragmented, allowed: every fragment passes both ways",
            ),
            (5001, LARGE, false, "fragmented, not allowed: dropped"),
            (5001, 100, false, "small, not allowed"),
        ] {
            assert_eq!(
                udp_echo(&client, source, SocketAddr::new(f, port), length),
                passes,
                "{what}, v6 {v6}"
            );
        }
    }
    // The evaluator: later fragments follow their first fragment.
    let mut session = Session::new(lab.config());
    let fragment = |port, fragment| udp(ip(CLIENT_V4), 40000, ip(INSTANCE_1_V4), port, fragment);
    for (port, id, passes) in [(5000, 1, true), (5001, 2, false)] {
        let first = fragment(port, Fragment::First { id });
        let later = fragment(port, Fragment::Later { id, offset: 185 });
        let steps = [
            (Direction::Ingress, &first, 0.0),
            (Direction::Ingress, &later, 0.0),
        ];
        let decisions = replay(&mut session, "f", &steps);
        assert_eq!(
            (decisions[0].admitted(), decisions[1].admitted()),
            (passes, passes)
        );
        if !passes {
            assert_eq!(decisions[1].reason, Reason::FragmentWithoutFirst);
        }
    }
}

/// A group admitting TCP `ports` from `peers` (no rule at all without `with_rule`); the
/// instance `s` uses it with `extra`.
fn session_config(peers: &str, ports: &str, extra: &str, with_rule: bool) -> String {
    let ingress = if with_rule {
        format!("ingress = [{{ protocol = \"tcp\", ports = {ports}, cidr = {peers} }}]")
    } else {
        String::new()
    };
    let groups = format!("\n[[security_group]]\nname = \"svc\"\n{ingress}\n");
    topology(&groups, &[instance("s", 1, &["svc"], extra)])
}

/// Opens a session per family from the client to s:7000 and checks it carries data.
fn open_sessions(lab: &TestLab) -> Vec<TcpSession> {
    let client = lab.namespace("client");
    [false, true]
        .into_iter()
        .map(|v6| {
            let mut session = TcpSession::connect(
                &client,
                lab.address("client", v6),
                lab.address("s", v6),
                7000,
            )
            .unwrap_or_else(|| panic!("connecting to s:7000 (v6 {v6}) while the rule admits it"));
            assert!(session.exchange(), "a fresh session carries data (v6 {v6})");
            session
        })
        .collect()
}

fn new_connection(lab: &TestLab, v6: bool) -> bool {
    TcpSession::connect(
        &lab.namespace("client"),
        lab.address("client", v6),
        lab.address("s", v6),
        7000,
    )
    .is_some()
}

/// A client's SYN to s:7000 from `src_port`.
fn syn_to_s(src_port: u16) -> IpPacket {
    tcp(CLIENT_V4, src_port, INSTANCE_1_V4, 7000, TCP_SYN)
}

/// The answer of s:7000 to `syn_to_s(dst_port)`.
fn syn_ack_from_s(dst_port: u16) -> IpPacket {
    tcp(INSTANCE_1_V4, 7000, CLIENT_V4, dst_port, TCP_SYN | TCP_ACK)
}

/// The client's ACK of `syn_ack_from_s(src_port)`, which completes the handshake (issue 10).
fn handshake_ack_to_s(src_port: u16) -> IpPacket {
    tcp(CLIENT_V4, src_port, INSTANCE_1_V4, 7000, TCP_ACK)
}

/// The reference conntrack's view of C4: a flow admitted under the old rules, then the rule
/// removed. Returns (a packet of the old flow admitted, a new flow admitted).
fn evaluator_after_rule_removal(before: &str, after: &str) -> (bool, bool) {
    let mut session = Session::new(load(before));
    let handshake = [
        (Direction::Ingress, &syn_to_s(40000), 0.0),
        (Direction::Egress, &syn_ack_from_s(40000), 0.1),
    ];
    assert_eq!(admitted(&mut session, "s", &handshake), [true, true]);
    session.reconfigure(load(after));
    let data = tcp(CLIENT_V4, 40000, INSTANCE_1_V4, 7000, TCP_PSH_ACK);
    let later = [
        (Direction::Ingress, &data, 1.0),
        (Direction::Ingress, &syn_to_s(40001), 1.0),
    ];
    let old_and_new = admitted(&mut session, "s", &later);
    (old_and_new[0], old_and_new[1])
}

/// C4 and C8: sessions to s:7000 opened under a rule, then the rule removed.
struct RuleRemoval<'a> {
    peers: &'a str,
    ports: &'a str,
    extra: &'a str,
    /// C8: the rule admits its flows untracked.
    untracked: bool,
    /// Whether the established sessions go on once the rule is gone.
    survives: bool,
}

/// Checks `case` with the evaluator, then with real sessions; a new connection is refused
/// after the change in every case.
fn rule_removal(case: RuleRemoval) {
    let before = session_config(case.peers, case.ports, case.extra, true);
    let after = session_config(case.peers, case.ports, case.extra, false);
    let config = load(&before);
    let s = config.instance("s").unwrap();
    let verdict = classify(&config, s, Direction::Ingress, &syn_to_s(40000)).unwrap();
    assert_eq!(verdict.untracked, case.untracked, "whether C8 applies");
    assert_eq!(
        evaluator_after_rule_removal(&before, &after),
        (case.survives, false)
    );

    let Some(mut lab) = up(&before) else {
        return;
    };
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    lab.reconfigure(&after);
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        assert!(
            !new_connection(&lab, v6),
            "a new connection after the rule went (v6 {v6})"
        );
        if case.survives {
            for _ in 0..3 {
                assert!(
                    session.exchange(),
                    "the established session goes on (v6 {v6})"
                );
            }
        } else {
            assert!(
                !session.exchange(),
                "the session ends with its rule (v6 {v6})"
            );
        }
    }
}

#[test]
fn c4_established_tcp_outlives_its_rule_while_new_connections_are_refused() {
    rule_removal(RuleRemoval {
        // A CIDR narrower than 0.0.0.0/0, or the flow would be untracked (C8).
        peers: CLIENT_NETS,
        ports: "7000",
        extra: "",
        untracked: false,
        survives: true,
    });
}

#[test]
fn c4_cut_on_rule_removal_cuts_the_established_session() {
    rule_removal(RuleRemoval {
        peers: CLIENT_NETS,
        ports: "7000",
        extra: "conntrack = { cut_on_rule_removal = true }",
        untracked: false,
        survives: false,
    });
}

#[test]
fn c8_untracked_flow_stops_at_once_when_its_rule_goes() {
    // Every TCP port from anywhere, with the default egress (everything to anywhere): neither
    // direction is tracked, so no table entry holds the session up once the rule goes.
    rule_removal(RuleRemoval {
        peers: ANYWHERE,
        ports: "\"0-65535\"",
        extra: "",
        untracked: true,
        survives: false,
    });
}

#[test]
fn c8_single_port_from_anywhere_is_untracked_and_its_replies_start_no_flow() {
    // One port from anywhere, with the default egress: the inbound SYN is untracked, and the
    // server's SYN-ACK, admitted by the egress rule, must not start a tracked flow of its own
    // (TCP is tracked from its SYN), or the session would outlive its rule.
    rule_removal(RuleRemoval {
        peers: ANYWHERE,
        ports: "7000",
        extra: "",
        untracked: true,
        survives: false,
    });
}

#[test]
fn c5_udp_flow_idles_out_after_the_configured_udp_timeout() {
    // 30 s is the shortest UDP timeout (C5): this test waits it out once.
    const TIMEOUT: u64 = 30;
    let extra = format!("conntrack = {{ udp_timeout = {TIMEOUT} }}");
    let Some(lab) = up(&topology(
        CLOSED_GROUP,
        &[instance("u", 1, &["closed"], &extra)],
    )) else {
        return;
    };
    let (u_address, client_address) = (ip(INSTANCE_1_V4), ip(CLIENT_V4));
    let u = UdpEndpoint::bind(&lab.namespace("u"), u_address, 40000);
    let client = UdpEndpoint::bind(&lab.namespace("client"), client_address, 7000);
    let (to_client, to_u) = (
        SocketAddr::new(client_address, 7000),
        SocketAddr::new(u_address, 40000),
    );
    let wait = PROBE_TIMEOUT * 2;

    u.send_to(b"request", to_client);
    assert!(client.receive(b"request", wait).is_some(), "egress (R2)");
    client.send_to(b"reply-1", to_u);
    assert!(u.receive(b"reply-1", wait).is_some(), "the reply (C1)");
    // A second datagram back, still one flow and not a stream (that needs two each way).
    client.send_to(b"reply-2", to_u);
    assert!(u.receive(b"reply-2", wait).is_some(), "the flow is live");
    let last_packet = Instant::now();

    // The evaluator, on the same timeline.
    let mut session = Session::new(lab.config());
    let out = udp(u_address, 40000, client_address, 7000, Fragment::Whole);
    let back = udp(client_address, 7000, u_address, 40000, Fragment::Whole);
    let idle = TIMEOUT as f64 + 3.0;
    let timeline = [
        (Direction::Egress, &out, 0.0),
        (Direction::Ingress, &back, 0.1),
        (Direction::Ingress, &back, 0.2),
        (Direction::Ingress, &back, 0.2 + idle),
    ];
    let decisions = replay(&mut session, "u", &timeline);
    let live: Vec<bool> = decisions[..3].iter().map(Decision::admitted).collect();
    assert_eq!(live, [true, true, true]);
    assert_eq!(decisions[3].reason, Reason::NoRule);

    std::thread::sleep(Duration::from_secs_f64(idle).saturating_sub(last_packet.elapsed()));
    client.send_to(b"late", to_u);
    assert!(
        u.receive(b"late", wait).is_none(),
        "after {idle} s idle the flow is gone and nothing admits the datagram"
    );
}

#[test]
fn c6_flow_allowance_drops_new_flows_while_established_ones_continue() {
    let config = session_config(CLIENT_NETS, "7000", "conntrack = { max_flows = 2 }", true);
    let Some(lab) = up(&config) else {
        return;
    };
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    assert!(
        !new_connection(&lab, false),
        "a third flow while two are established"
    );
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        assert!(
            session.exchange(),
            "established flows keep working (v6 {v6})"
        );
    }
    // The evaluator agrees: with the allowance used up, a new flow is dropped.
    let mut session = Session::new(lab.config());
    for port in [40000, 40001] {
        let handshake = [
            (Direction::Ingress, &syn_to_s(port), 0.0),
            (Direction::Egress, &syn_ack_from_s(port), 0.0),
            (Direction::Ingress, &handshake_ack_to_s(port), 0.0),
        ];
        assert_eq!(admitted(&mut session, "s", &handshake), [true, true, true]);
    }
    let third = [(Direction::Ingress, &syn_to_s(40002), 0.0)];
    assert_eq!(
        replay(&mut session, "s", &third)[0].reason,
        Reason::ConntrackFull
    );
}

#[test]
fn c7_icmp_errors_need_a_rule_unless_related_icmp_is_on() {
    let instances = [
        instance("strict", 1, &["closed"], ""),
        instance("related", 2, &["closed"], "related_icmp = true"),
    ];
    let Some(lab) = up(&topology(CLOSED_GROUP, &instances)) else {
        return;
    };
    // Nothing listens on the client's port 7999: its stack answers with port unreachable.
    for v6 in [false, true] {
        assert_eq!(
            lab.probe("strict", "client", Service::Udp(7999), v6),
            Outcome::TimedOut,
            "the error is dropped without an inbound ICMP rule (v6 {v6})"
        );
        assert_eq!(
            lab.probe("related", "client", Service::Udp(7999), v6),
            Outcome::Refused,
            "related_icmp admits the error about a tracked flow (v6 {v6})"
        );
    }
    // The evaluator, for IPv4.
    let mut session = Session::new(lab.config());
    for (instance, source, expected) in [
        ("strict", INSTANCE_1_V4, Reason::NoRule),
        ("related", "10.2.0.10", Reason::RelatedIcmp),
    ] {
        let out = udp(ip(source), 40000, ip(CLIENT_V4), 7999, Fragment::Whole);
        let error = IpPacket {
            src: out.dst,
            dst: out.src,
            transport: Transport::Icmp {
                icmp_type: 3,
                code: 3,
                echo_id: 0,
                quoted: Some(QuotedFlow {
                    proto: 17,
                    src: out.src,
                    dst: out.dst,
                    src_port: 40000,
                    dst_port: 7999,
                }),
            },
            fragment: Fragment::Whole,
        };
        let steps = [
            (Direction::Egress, &out, 0.0),
            (Direction::Ingress, &error, 0.1),
        ];
        let decisions = replay(&mut session, instance, &steps);
        assert!(decisions[0].admitted(), "{instance}: the datagram out");
        assert_eq!(decisions[1].reason, expected, "{instance}: the error back");
    }
}

#[test]
fn i1_spoofed_addresses_are_dropped_unless_source_dest_check_is_off() {
    let groups = r#"
[[security_group]]
name = "svc"
ingress = [{ protocol = "tcp", ports = 7000, cidr = ["10.9.0.0/24", "fd00:9::/64"] }]
"#;
    let instances = [
        instance("checked", 1, &["svc"], ""),
        instance("nat", 2, &["svc"], "source_dest_check = false"),
    ];
    let Some(lab) = up(&topology(groups, &instances)) else {
        return;
    };
    // Addresses the instances carry but the config does not know.
    for (host, extra) in [
        ("checked", "10.1.0.99"),
        ("checked", "fd00:1::99"),
        ("nat", "10.2.0.99"),
        ("nat", "fd00:2::99"),
    ] {
        lab.add_unconfigured_address(host, ip(extra));
    }
    let service = Service::Tcp(7000);
    let _client_listener = lab.listen("client", service);
    let _checked_listener = lab.listen("checked", service);
    let _nat_listener = lab.listen("nat", service);
    let config = lab.config();
    for v6 in [false, true] {
        let spoofed = |n: u8| {
            if v6 {
                ip(&format!("fd00:{n}::99"))
            } else {
                ip(&format!("10.{n}.0.99"))
            }
        };
        let client = lab.address("client", v6);
        for (host, address, passes) in [
            ("checked", lab.address("checked", v6), true),
            ("checked", spoofed(1), false),
            ("nat", spoofed(2), true),
        ] {
            // Outbound from a source the instance does not own, and inbound to an address the
            // instance does not own although the rule admits the port.
            let outbound = expect(&config, host, address, "client", client, service);
            let inbound = expect(&config, "client", client, host, address, service);
            let observed = [
                (
                    format!("{host} from {address} → client"),
                    outbound,
                    lab.probe_from(host, address, "client", service),
                ),
                (
                    format!("client → {host} at {address}"),
                    inbound,
                    lab.probe_to("client", client, address, service),
                ),
            ];
            for (what, expected, outcome) in observed {
                assert_eq!(
                    expected.passes, passes,
                    "evaluator, {what}: {}",
                    expected.why
                );
                assert_eq!(
                    outcome.got_through(),
                    passes,
                    "{what}: {outcome} ({})",
                    expected.why
                );
            }
        }
    }
}

#[test]
fn i3_exempt_cidrs_are_never_filtered() {
    let exempt = r#"exempt = ["10.8.0.0/24"]"#;
    let Some(lab) = up(&topology(
        CLOSED_GROUP,
        &[instance("x", 1, &["closed"], exempt)],
    )) else {
        return;
    };
    let matrix = lab.matrix(&["client", "other"], &["x"], &MIXED);
    assert_pair(&matrix, "client", "x", false);
    // Only `other`'s IPv4 network is exempt.
    for service in MIXED {
        assert_cell(&matrix, ("other", Family::Ipv4, "x"), service, true);
        assert_cell(&matrix, ("other", Family::Ipv6, "x"), service, false);
    }
}

#[test]
fn g3_membership_change_takes_effect_without_editing_any_rule() {
    let groups = r#"
[[security_group]]
name = "db"
ingress = [{ protocol = "tcp", ports = 3306, groups = ["app"] }]

[[security_group]]
name = "app"

[[security_group]]
name = "plain"
"#;
    let config = |x_groups: &[&str]| {
        let instances = [
            instance("db", 1, &["db"], ""),
            instance("x", 2, x_groups, ""),
        ];
        topology(groups, &instances)
    };
    // x joins app, then leaves it again; db's rule never changes.
    let memberships: [(&[&str], bool); 3] = [
        (&["plain"], false),
        (&["plain", "app"], true),
        (&["plain"], false),
    ];
    let Some(mut lab) = up(&config(memberships[0].0)) else {
        return;
    };
    for (step, (x_groups, admitted)) in memberships.into_iter().enumerate() {
        if step > 0 {
            lab.reconfigure(&config(x_groups));
        }
        let matrix = lab.matrix(&["x"], &["db"], &[Service::Tcp(3306)]);
        assert_pair(&matrix, "x", "db", admitted);
    }
}

#[test]
fn lab_probe_three_tier_matrix_agrees_with_the_evaluator() {
    let Some(lab) = up(include_str!("../../examples/three-tier.toml")) else {
        return;
    };
    let matrix = lab
        .lab()
        .probe(ProbeOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let disagreements = sgwall::lab::render::disagreement_lines(&matrix);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // 5 sources (9 source-family rows), 3 instances, 8 services.
    assert_eq!(matrix.rows.len(), 9);
    assert_eq!(matrix.services.len(), 8);
    assert_services(
        &matrix,
        &[
            ("internet", "web-1", Service::Tcp(443), true),
            ("internet", "app-1", Service::Tcp(8080), false),
            ("web-1", "app-1", Service::Tcp(8080), true),
            ("app-1", "db-1", Service::Tcp(3306), true),
            ("web-1", "db-1", Service::Tcp(3306), false),
        ],
    );
    let ssh = Service::Tcp(22);
    assert_cell(&matrix, ("admin", Family::Ipv4, "web-1"), ssh, true);
    assert_cell(&matrix, ("internet", Family::Ipv4, "web-1"), ssh, false);
}

/// The packets counted under `reason` on `interface` going `direction` (`sgwall status`).
fn counted(lab: &TestLab, interface: &str, direction: &str, reason: &str) -> u64 {
    sgwall_tests::counted(
        &lab.sgwall_json(&["status", "--json"]),
        interface,
        direction,
        reason,
    )
}

#[test]
fn i6_lab_instances_take_their_address_from_the_routers_dhcp_through_the_filter() {
    let web = format!(
        r#"
[lab]
dhcp = true

[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8080"
  cidr = {CLIENT_NETS}
"#
    );
    let config = topology(
        &web,
        &[
            instance("dhcp-1", 1, &["web"], ""),
            instance("static-2", 2, &["web"], "dhcp = false"),
        ],
    );
    let Some(lab) = up(&config) else { return };
    let shown = std::process::Command::new("ip")
        .args([
            "-n",
            &lab.namespace("dhcp-1"),
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .expect("ip addr");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("inet 10.1.0.10/32"),
        "the lease is the instance's address: {}",
        String::from_utf8_lossy(&shown.stdout)
    );
    for host in ["dhcp-1", "static-2"] {
        lab.check("client", host, Service::Tcp(8080), false, true);
        lab.check("client", host, Service::Tcp(8081), false, false);
    }
    assert!(
        counted(&lab, "sgw-dhcp-1", "egress", "dhcp_client") >= 2,
        "DISCOVER, REQUEST"
    );
    assert!(
        counted(&lab, "sgw-dhcp-1", "ingress", "dhcp_server_reply") >= 2,
        "OFFER, ACK"
    );
    assert_eq!(counted(&lab, "sgw-static-2", "egress", "dhcp_client"), 0);
}
