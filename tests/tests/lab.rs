//! Tier 3: the semantics of `../shared/ec2-sg-semantics.md` shown with real traffic. Each test
//! builds a `sgwall lab` topology (a namespace per instance and client, behind a router where
//! `sgwall run` enforces each instance's port), sends traffic, and checks it both against the
//! statement and against the reference evaluator. Test names start with the statement IDs.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sgwall::{
    eval::{Fragment, Frame, IpPacket, QuotedFlow, Reason, Session, TCP_SYN, Transport},
    lab::matrix::{Family, Matrix, ProbeOptions},
    model::Direction,
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

/// Asserts one service from `source` to `destination` in both families.
fn assert_service(
    matrix: &Matrix,
    source: &str,
    destination: &str,
    service: Service,
    passes: bool,
) {
    for family in Family::BOTH {
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
}

const CLOSED_GROUP: &str = r#"
[[security_group]]
name = "closed"
description = "no inbound rule; egress never set, so the AWS default"
"#;

#[test]
fn r1_default_deny_inbound_r2_default_egress_c1_c3_replies_c2_state_per_interface() {
    if !privileged() {
        return;
    }
    let config = format!(
        "{CLOSED_GROUP}{}{}{CLIENTS}",
        instance("a", 1, &["closed"], ""),
        instance("b", 2, &["closed"], "")
    );
    let lab = TestLab::up(&config);
    let services = [Service::Tcp(7000), Service::Udp(7000), Service::IcmpEcho];
    let matrix = lab.matrix(&["client", "a"], &["a", "b", "client"], &services);
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
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "inbound-only"
egress = []
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  cidr = {CLIENT_NETS}
{}{CLIENTS}"#,
        instance("a", 1, &["inbound-only"], "")
    );
    let lab = TestLab::up(&config);
    let inbound = lab.matrix(&["client"], &["a"], &[Service::Tcp(80), Service::Tcp(81)]);
    // C1: the SYN-ACK leaves a although its group admits nothing outbound.
    assert_service(&inbound, "client", "a", Service::Tcp(80), true);
    assert_service(&inbound, "client", "a", Service::Tcp(81), false);
    // R2: egress set to [] admits nothing outbound.
    let outbound = lab.matrix(
        &["a"],
        &["client"],
        &[Service::Tcp(7000), Service::Udp(7000), Service::IcmpEcho],
    );
    assert_pair(&outbound, "a", "client", false);
}

#[test]
fn g1_group_reference_g2_every_member_address_g4_self_reference_r6_two_groups_union() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  cidr = {CLIENT_NETS}

[[security_group]]
name = "app"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 8080
  groups = ["web"]

[[security_group]]
name = "ssh"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  cidr = {CLIENT_NETS}

[[security_group]]
name = "mesh"
description = "the default-group pattern: members talk freely"
  [[security_group.ingress]]
  protocol = "all"
  groups = ["mesh"]
{}{}{}{CLIENTS}"#,
        instance("w", 1, &["web", "mesh"], "")
            .replace(r#"["10.1.0.10", "#, r#"["10.1.0.10", "10.1.0.11", "#),
        instance("p", 2, &["app", "ssh"], ""),
        instance("m", 3, &["mesh"], ""),
    );
    let lab = TestLab::up(&config);
    let services = [
        Service::Tcp(22),
        Service::Tcp(80),
        Service::Tcp(8080),
        Service::Udp(5353),
        Service::IcmpEcho,
    ];
    let matrix = lab.matrix(&["w", "p", "m", "client"], &["w", "p", "m"], &services);
    // G1: app admits members of web (w) on 8080, and nobody else.
    assert_service(&matrix, "w", "p", Service::Tcp(8080), true);
    assert_service(&matrix, "m", "p", Service::Tcp(8080), false);
    assert_service(&matrix, "client", "p", Service::Tcp(8080), false);
    // R6: p's second group (ssh) adds to the first: 22 from the client as well.
    assert_service(&matrix, "client", "p", Service::Tcp(22), true);
    assert_service(&matrix, "w", "p", Service::Tcp(22), false);
    // G4: mesh members reach each other on everything; a non-member reaches no member.
    assert_pair(&matrix, "m", "w", true);
    assert_pair(&matrix, "w", "m", true);
    assert_pair(&matrix, "p", "m", false);
    assert_service(&matrix, "client", "w", Service::Tcp(80), true);
    assert_service(&matrix, "client", "w", Service::Tcp(8080), false);
    // G2: w's secondary address is a member too (the matrix used its first address of each
    // family, IPv6 included).
    let secondary = ip("10.1.0.11");
    let expected = sgwall::lab::matrix::expect(
        &lab.config(),
        "w",
        secondary,
        "p",
        lab.address("p", false),
        Service::Tcp(8080),
    );
    assert!(expected.passes, "{}", expected.why);
    let _listener = lab.listen("p", Service::Tcp(8080));
    assert_eq!(
        lab.probe_from("w", secondary, "p", Service::Tcp(8080)),
        Outcome::Reached
    );
}

#[test]
fn r3_port_range_ends_r4_destination_port_only_r6_overlapping_rules() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "ranges"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8000-8010"
  cidr = {CLIENT_NETS}
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 8005
  cidr = ["10.9.0.10/32", "fd00:9::10/128"]
  description = "inside the range above: overlapping rules simply both admit"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8008-8020"
  cidr = ["10.9.0.0/16", "fd00:9::/48"]
{}{CLIENTS}"#,
        instance("r", 1, &["ranges"], "")
    );
    let lab = TestLab::up(&config);
    let ports = [7999, 8000, 8005, 8010, 8015, 8020, 8021];
    let mut services: Vec<Service> = ports.iter().map(|p| Service::Tcp(*p)).collect();
    services.push(Service::Udp(8005));
    let matrix = lab.matrix(&["client", "other"], &["r"], &services);
    for (port, passes) in [
        (7999, false),
        (8000, true),
        (8005, true),
        (8010, true),
        (8015, true),
        (8020, true),
        (8021, false),
    ] {
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
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "numbers"
  [[security_group.ingress]]
  protocol = 200
  cidr = {CLIENT_NETS}
  description = "an unassigned protocol, by number: no ports"
  [[security_group.ingress]]
  protocol = 6
  ports = 22
  cidr = {CLIENT_NETS}
  description = "6 is tcp"
  [[security_group.ingress]]
  protocol = "all"
  cidr = ["10.8.0.0/24", "fd00:8::/64"]
{}{CLIENTS}"#,
        instance("n", 1, &["numbers"], "")
    );
    let lab = TestLab::up(&config);
    let (client, other, n) = (
        lab.namespace("client"),
        lab.namespace("other"),
        lab.namespace("n"),
    );
    let session = Session::new(lab.config());
    for v6 in [false, true] {
        let (from, to) = (lab.address("client", v6), lab.address("n", v6));
        let raw = |protocol| IpPacket {
            src: from,
            dst: to,
            transport: Transport::Other(protocol),
            fragment: Fragment::Whole,
        };
        // Not 253/254: IPv6 takes those for experimental extension headers (H2).
        for (protocol, passes) in [(200, true), (201, false)] {
            let decision = sgwall::eval::evaluate(
                &session.config,
                session.config.instance("n").unwrap(),
                Direction::Ingress,
                &Frame::Ip(raw(protocol)),
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
    let matrix = lab.matrix(
        &["client", "other"],
        &["n"],
        &[
            Service::Tcp(22),
            Service::Tcp(23),
            Service::Udp(22),
            Service::IcmpEcho,
        ],
    );
    assert_service(&matrix, "client", "n", Service::Tcp(22), true);
    assert_service(&matrix, "client", "n", Service::Tcp(23), false);
    assert_service(&matrix, "client", "n", Service::Udp(22), false);
    assert_service(&matrix, "client", "n", Service::IcmpEcho, false);
    assert_pair(&matrix, "other", "n", true);
}

#[test]
fn r3_icmp_type_and_code_icmpv6_echo_separate_from_icmp() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "echo"
  [[security_group.ingress]]
  protocol = "icmp"
  icmp_type = 8
  icmp_code = 0
  cidr = ["10.9.0.0/24"]
  [[security_group.ingress]]
  protocol = "icmpv6"
  icmp_type = 128
  cidr = ["fd00:9::/64"]

[[security_group]]
name = "wrong-code"
  [[security_group.ingress]]
  protocol = "icmp"
  icmp_type = 8
  icmp_code = 1
  cidr = ["10.9.0.0/24"]
  [[security_group.ingress]]
  protocol = "icmpv6"
  icmp_type = 129
  cidr = ["fd00:9::/64"]
  description = "echo reply, not request"

[[security_group]]
name = "any-icmp"
  [[security_group.ingress]]
  protocol = "icmp"
  cidr = ["10.9.0.0/24"]
  description = "every ICMP type: ICMPv6 is another protocol"
{}{}{}{CLIENTS}"#,
        instance("e", 1, &["echo"], ""),
        instance("c", 2, &["wrong-code"], ""),
        instance("y", 3, &["any-icmp"], ""),
    );
    let lab = TestLab::up(&config);
    let matrix = lab.matrix(&["client"], &["e", "c", "y"], &[Service::IcmpEcho]);
    assert_pair(&matrix, "client", "e", true);
    assert_pair(&matrix, "client", "c", false);
    let y_v4 = matrix
        .cell("client", Family::Ipv4, "y", Service::IcmpEcho)
        .unwrap();
    let y_v6 = matrix
        .cell("client", Family::Ipv6, "y", Service::IcmpEcho)
        .unwrap();
    assert_eq!(y_v4.got_through(), Some(true), "icmp any type admits ping");
    assert_eq!(
        y_v6.got_through(),
        Some(false),
        "an icmp rule does not admit ICMPv6"
    );
}

#[test]
fn r5_dual_stack_each_family_has_its_own_rules() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "dual"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 80
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 443
  cidr = ["::/0"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  cidr = ["10.9.0.10/32", "fd00:9::10/128"]
{}{CLIENTS}"#,
        instance("d", 1, &["dual"], "")
    );
    let lab = TestLab::up(&config);
    let matrix = lab.matrix(
        &["client", "other"],
        &["d"],
        &[Service::Tcp(80), Service::Tcp(443), Service::Tcp(22)],
    );
    for (family, port, passes) in [
        (Family::Ipv4, 80, true),
        (Family::Ipv6, 80, false),
        (Family::Ipv4, 443, false),
        (Family::Ipv6, 443, true),
        (Family::Ipv4, 22, true),
        (Family::Ipv6, 22, true),
    ] {
        let cell = matrix
            .cell("client", family, "d", Service::Tcp(port))
            .unwrap();
        assert_eq!(
            cell.got_through(),
            Some(passes),
            "client {} tcp/{port}",
            family.label()
        );
    }
    assert_service(&matrix, "other", "d", Service::Tcp(22), false);
}

#[test]
fn h1_fragmented_udp_passes_when_allowed_and_is_dropped_when_not() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "udp"
  [[security_group.ingress]]
  protocol = "udp"
  ports = 5000
  cidr = {CLIENT_NETS}
{}{CLIENTS}"#,
        instance("f", 1, &["udp"], "")
    );
    let lab = TestLab::up(&config);
    let _allowed = lab.listen("f", Service::Udp(5000));
    let _denied = lab.listen("f", Service::Udp(5001));
    let client = lab.namespace("client");
    // Over the veth MTU of 1500 either way: the datagram and its echo travel as fragments.
    const LARGE: usize = 4000;
    for v6 in [false, true] {
        let source = lab.address("client", v6);
        let f = lab.address("f", v6);
        let target = |port| SocketAddr::new(f, port);
        assert!(
            udp_echo(&client, source, target(5000), 100),
            "small, allowed, v6 {v6}"
        );
        assert!(
            udp_echo(&client, source, target(5000), LARGE),
            "fragmented, allowed: every fragment passes both ways, v6 {v6}"
        );
        assert!(
            !udp_echo(&client, source, target(5001), LARGE),
            "fragmented, not allowed: dropped, v6 {v6}"
        );
        assert!(
            !udp_echo(&client, source, target(5001), 100),
            "small, not allowed, v6 {v6}"
        );
    }
    // The evaluator: later fragments follow their first fragment.
    let mut session = Session::new(lab.config());
    let fragment = |port, fragment| {
        Frame::Ip(IpPacket {
            src: ip("10.9.0.10"),
            dst: ip("10.1.0.10"),
            transport: Transport::Udp {
                src_port: 40000,
                dst_port: port,
            },
            fragment,
        })
    };
    for (port, id, passes) in [(5000, 1, true), (5001, 2, false)] {
        let first = session.process(
            "f",
            Direction::Ingress,
            &fragment(port, Fragment::First { id }),
            0.0,
        );
        let later = session.process(
            "f",
            Direction::Ingress,
            &fragment(port, Fragment::Later { id, offset: 185 }),
            0.0,
        );
        assert_eq!((first.admitted(), later.admitted()), (passes, passes));
        if !passes {
            assert_eq!(later.reason, Reason::FragmentWithoutFirst);
        }
    }
}

/// A group admitting TCP 7000 from `peers`; the instance `s` uses it with `extra`.
fn session_config(peers: &str, extra: &str, with_rule: bool) -> String {
    let rule = if with_rule {
        format!(
            r#"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 7000
  cidr = {peers}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
[[security_group]]
name = "svc"{rule}
{}{CLIENTS}"#,
        instance("s", 1, &["svc"], extra)
    )
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

/// The reference conntrack's view of C4: a flow admitted under the old rules, then the rule
/// removed. Returns (a packet of the old flow admitted, a new flow admitted).
fn evaluator_after_rule_removal(before: &str, after: &str) -> (bool, bool) {
    let load = |text: &str| {
        sgwall::config::load_str(text, std::path::Path::new("c4.toml"))
            .unwrap()
            .config
    };
    let mut session = Session::new(load(before));
    let packet = |src_port, dst_port, src: &str, dst: &str, flags| {
        Frame::Ip(IpPacket {
            src: ip(src),
            dst: ip(dst),
            transport: Transport::Tcp {
                src_port,
                dst_port,
                flags,
            },
            fragment: Fragment::Whole,
        })
    };
    let syn = packet(40000, 7000, "10.9.0.10", "10.1.0.10", TCP_SYN);
    let syn_ack = packet(7000, 40000, "10.1.0.10", "10.9.0.10", TCP_SYN | 0x10);
    let data = packet(40000, 7000, "10.9.0.10", "10.1.0.10", 0x18);
    assert!(
        session
            .process("s", Direction::Ingress, &syn, 0.0)
            .admitted()
    );
    assert!(
        session
            .process("s", Direction::Egress, &syn_ack, 0.1)
            .admitted()
    );
    session.reconfigure(load(after));
    let old = session
        .process("s", Direction::Ingress, &data, 1.0)
        .admitted();
    let new = session
        .process(
            "s",
            Direction::Ingress,
            &packet(40001, 7000, "10.9.0.10", "10.1.0.10", TCP_SYN),
            1.0,
        )
        .admitted();
    (old, new)
}

#[test]
fn c4_established_tcp_outlives_its_rule_while_new_connections_are_refused() {
    if !privileged() {
        return;
    }
    // A CIDR narrower than 0.0.0.0/0, or the flow would be untracked (C8).
    let before = session_config(CLIENT_NETS, "", true);
    let after = session_config(CLIENT_NETS, "", false);
    assert_eq!(evaluator_after_rule_removal(&before, &after), (true, false));
    let mut lab = TestLab::up(&before);
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    lab.reconfigure(&after);
    for v6 in [false, true] {
        assert!(
            !new_connection(&lab, v6),
            "a new connection after the rule went (v6 {v6})"
        );
    }
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        for _ in 0..3 {
            assert!(
                session.exchange(),
                "the established session goes on (v6 {v6})"
            );
        }
    }
}

#[test]
fn c4_cut_on_rule_removal_cuts_the_established_session() {
    if !privileged() {
        return;
    }
    let extra = "conntrack = { cut_on_rule_removal = true }";
    let before = session_config(CLIENT_NETS, extra, true);
    let after = session_config(CLIENT_NETS, extra, false);
    assert_eq!(
        evaluator_after_rule_removal(&before, &after),
        (false, false)
    );
    let mut lab = TestLab::up(&before);
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    lab.reconfigure(&after);
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        assert!(!session.exchange(), "the session is cut (v6 {v6})");
        assert!(!new_connection(&lab, v6), "and no new one starts (v6 {v6})");
    }
}

#[test]
fn c8_untracked_flow_stops_at_once_when_its_rule_goes() {
    if !privileged() {
        return;
    }
    // Every TCP port from anywhere, with the default egress (everything to anywhere): neither
    // direction is tracked, so no table entry holds the session up once the rule goes.
    let anywhere = r#"["0.0.0.0/0", "::/0"]"#;
    let before = session_config(anywhere, "", true).replace("ports = 7000", "ports = \"0-65535\"");
    let after = session_config(anywhere, "", false);
    {
        let config = sgwall::config::load_str(&before, std::path::Path::new("c8.toml"))
            .unwrap()
            .config;
        let syn = IpPacket {
            src: ip("10.9.0.10"),
            dst: ip("10.1.0.10"),
            transport: Transport::Tcp {
                src_port: 40000,
                dst_port: 7000,
                flags: TCP_SYN,
            },
            fragment: Fragment::Whole,
        };
        let verdict = sgwall::eval::classify(
            &config,
            config.instance("s").unwrap(),
            Direction::Ingress,
            &syn,
        )
        .unwrap();
        assert!(verdict.untracked, "C8 applies to this rule");
    }
    assert_eq!(
        evaluator_after_rule_removal(&before, &after),
        (false, false)
    );
    let mut lab = TestLab::up(&before);
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    lab.reconfigure(&after);
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        assert!(
            !session.exchange(),
            "an untracked session ends with its rule (v6 {v6})"
        );
    }
}

#[test]
fn c8_single_port_from_anywhere_is_untracked_and_its_replies_start_no_flow() {
    if !privileged() {
        return;
    }
    // One port from anywhere, with the default egress: the inbound SYN is untracked, and the
    // server's SYN-ACK, admitted by the egress rule, must not start a tracked flow of its own
    // (TCP is tracked from its SYN), or the session would outlive its rule.
    let anywhere = r#"["0.0.0.0/0", "::/0"]"#;
    let before = session_config(anywhere, "", true);
    let after = session_config(anywhere, "", false);
    assert_eq!(
        evaluator_after_rule_removal(&before, &after),
        (false, false)
    );
    let mut lab = TestLab::up(&before);
    let _server = TcpEchoServer::start(&lab.namespace("s"), 7000);
    let mut sessions = open_sessions(&lab);
    lab.reconfigure(&after);
    for (session, v6) in sessions.iter_mut().zip([false, true]) {
        assert!(
            !session.exchange(),
            "an untracked session ends with its rule (v6 {v6})"
        );
    }
}

#[test]
fn c5_udp_flow_idles_out_after_the_configured_udp_timeout() {
    if !privileged() {
        return;
    }
    // 30 s is the shortest UDP timeout (C5): this test waits it out once.
    const TIMEOUT: u64 = 30;
    let config = format!(
        "{CLOSED_GROUP}{}{CLIENTS}",
        instance(
            "u",
            1,
            &["closed"],
            &format!("conntrack = {{ udp_timeout = {TIMEOUT} }}")
        )
    );
    let lab = TestLab::up(&config);
    let (u_address, client_address) = (ip("10.1.0.10"), ip("10.9.0.10"));
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
    let datagram = |src: IpAddr, src_port, dst: IpAddr, dst_port| {
        Frame::Ip(IpPacket {
            src,
            dst,
            transport: Transport::Udp { src_port, dst_port },
            fragment: Fragment::Whole,
        })
    };
    let out = datagram(u_address, 40000, client_address, 7000);
    let back = datagram(client_address, 7000, u_address, 40000);
    let idle = TIMEOUT as f64 + 3.0;
    assert!(
        session
            .process("u", Direction::Egress, &out, 0.0)
            .admitted()
    );
    assert!(
        session
            .process("u", Direction::Ingress, &back, 0.1)
            .admitted()
    );
    assert!(
        session
            .process("u", Direction::Ingress, &back, 0.2)
            .admitted()
    );
    assert_eq!(
        session
            .process("u", Direction::Ingress, &back, 0.2 + idle)
            .reason,
        Reason::NoRule
    );

    std::thread::sleep(Duration::from_secs_f64(idle).saturating_sub(last_packet.elapsed()));
    client.send_to(b"late", to_u);
    assert!(
        u.receive(b"late", wait).is_none(),
        "after {idle} s idle the flow is gone and nothing admits the datagram"
    );
}

#[test]
fn c6_flow_allowance_drops_new_flows_while_established_ones_continue() {
    if !privileged() {
        return;
    }
    let config = session_config(CLIENT_NETS, "conntrack = { max_flows = 2 }", true);
    let lab = TestLab::up(&config);
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
    let tcp = |src_port, dst_port, src: &str, dst: &str, flags| {
        Frame::Ip(IpPacket {
            src: ip(src),
            dst: ip(dst),
            transport: Transport::Tcp {
                src_port,
                dst_port,
                flags,
            },
            fragment: Fragment::Whole,
        })
    };
    for port in [40000, 40001] {
        session.process(
            "s",
            Direction::Ingress,
            &tcp(port, 7000, "10.9.0.10", "10.1.0.10", TCP_SYN),
            0.0,
        );
        session.process(
            "s",
            Direction::Egress,
            &tcp(7000, port, "10.1.0.10", "10.9.0.10", TCP_SYN | 0x10),
            0.0,
        );
    }
    assert_eq!(
        session
            .process(
                "s",
                Direction::Ingress,
                &tcp(40002, 7000, "10.9.0.10", "10.1.0.10", TCP_SYN),
                0.0
            )
            .reason,
        Reason::ConntrackFull
    );
}

#[test]
fn c7_icmp_errors_need_a_rule_unless_related_icmp_is_on() {
    if !privileged() {
        return;
    }
    let config = format!(
        "{CLOSED_GROUP}{}{}{CLIENTS}",
        instance("strict", 1, &["closed"], ""),
        instance("related", 2, &["closed"], "related_icmp = true"),
    );
    let lab = TestLab::up(&config);
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
        ("strict", "10.1.0.10", Reason::NoRule),
        ("related", "10.2.0.10", Reason::RelatedIcmp),
    ] {
        let out = IpPacket {
            src: ip(source),
            dst: ip("10.9.0.10"),
            transport: Transport::Udp {
                src_port: 40000,
                dst_port: 7999,
            },
            fragment: Fragment::Whole,
        };
        assert!(
            session
                .process(instance, Direction::Egress, &Frame::Ip(out.clone()), 0.0)
                .admitted()
        );
        let error = IpPacket {
            src: ip("10.9.0.10"),
            dst: ip(source),
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
        assert_eq!(
            session
                .process(instance, Direction::Ingress, &Frame::Ip(error), 0.1)
                .reason,
            expected
        );
    }
}

#[test]
fn i1_spoofed_addresses_are_dropped_unless_source_dest_check_is_off() {
    if !privileged() {
        return;
    }
    let config = format!(
        r#"
[[security_group]]
name = "svc"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 7000
  cidr = {CLIENT_NETS}
{}{}{CLIENTS}"#,
        instance("checked", 1, &["svc"], ""),
        instance("nat", 2, &["svc"], "source_dest_check = false"),
    );
    let lab = TestLab::up(&config);
    // Addresses the instances carry but the config does not know.
    for (host, extra) in [
        ("checked", "10.1.0.99"),
        ("checked", "fd00:1::99"),
        ("nat", "10.2.0.99"),
        ("nat", "fd00:2::99"),
    ] {
        lab.add_unconfigured_address(host, ip(extra));
    }
    let _client_listener = lab.listen("client", Service::Tcp(7000));
    let _checked_listener = lab.listen("checked", Service::Tcp(7000));
    let _nat_listener = lab.listen("nat", Service::Tcp(7000));
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
        // Outbound from a source the instance does not own.
        for (host, source, passes) in [
            ("checked", lab.address("checked", v6), true),
            ("checked", spoofed(1), false),
            ("nat", spoofed(2), true),
        ] {
            let expected = sgwall::lab::matrix::expect(
                &config,
                host,
                source,
                "client",
                client,
                Service::Tcp(7000),
            );
            assert_eq!(expected.passes, passes, "evaluator: {}", expected.why);
            let observed = lab.probe_from(host, source, "client", Service::Tcp(7000));
            assert_eq!(
                observed.got_through(),
                passes,
                "{host} from {source} → client: {observed} ({})",
                expected.why
            );
        }
        // Inbound to an address the instance does not own, although the rule admits the port.
        for (host, destination, passes) in [
            ("checked", lab.address("checked", v6), true),
            ("checked", spoofed(1), false),
            ("nat", spoofed(2), true),
        ] {
            let expected = sgwall::lab::matrix::expect(
                &config,
                "client",
                client,
                host,
                destination,
                Service::Tcp(7000),
            );
            assert_eq!(expected.passes, passes, "evaluator: {}", expected.why);
            let observed = lab.probe_to("client", client, destination, Service::Tcp(7000));
            assert_eq!(
                observed.got_through(),
                passes,
                "client → {host} at {destination}: {observed}"
            );
        }
    }
}

#[test]
fn i3_exempt_cidrs_are_never_filtered() {
    if !privileged() {
        return;
    }
    let config = format!(
        "{CLOSED_GROUP}{}{CLIENTS}",
        instance("x", 1, &["closed"], r#"exempt = ["10.8.0.0/24"]"#),
    );
    let lab = TestLab::up(&config);
    let services = [Service::Tcp(7000), Service::Udp(7000), Service::IcmpEcho];
    let matrix = lab.matrix(&["client", "other"], &["x"], &services);
    assert_pair(&matrix, "client", "x", false);
    for service in services {
        let v4_cell = matrix.cell("other", Family::Ipv4, "x", service).unwrap();
        let v6_cell = matrix.cell("other", Family::Ipv6, "x", service).unwrap();
        assert_eq!(v4_cell.got_through(), Some(true), "exempt: {service}");
        assert_eq!(
            v6_cell.got_through(),
            Some(false),
            "not exempt: {service} v6"
        );
    }
}

#[test]
fn g3_membership_change_takes_effect_without_editing_any_rule() {
    if !privileged() {
        return;
    }
    let config = |x_groups: &[&str]| {
        format!(
            r#"
[[security_group]]
name = "db"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 3306
  groups = ["app"]

[[security_group]]
name = "app"

[[security_group]]
name = "plain"
{}{}{CLIENTS}"#,
            instance("db", 1, &["db"], ""),
            instance("x", 2, x_groups, ""),
        )
    };
    let mut lab = TestLab::up(&config(&["plain"]));
    let mysql = [Service::Tcp(3306)];
    let before = lab.matrix(&["x"], &["db"], &mysql);
    assert_pair(&before, "x", "db", false);

    lab.reconfigure(&config(&["plain", "app"]));
    let joined = lab.matrix(&["x"], &["db"], &mysql);
    assert_pair(&joined, "x", "db", true);

    lab.reconfigure(&config(&["plain"]));
    let left = lab.matrix(&["x"], &["db"], &mysql);
    assert_pair(&left, "x", "db", false);
}

#[test]
fn lab_probe_three_tier_matrix_agrees_with_the_evaluator() {
    if !privileged() {
        return;
    }
    let lab = TestLab::up(include_str!("../../examples/three-tier.toml"));
    let matrix = lab
        .lab()
        .probe(ProbeOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let disagreements = sgwall::lab::render::disagreement_lines(&matrix);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // 5 sources (9 source-family rows), 3 instances, 8 services.
    assert_eq!(matrix.rows.len(), 9);
    assert_eq!(matrix.services.len(), 8);
    for (source, destination, service, passes) in [
        ("internet", "web-1", Service::Tcp(443), true),
        ("internet", "app-1", Service::Tcp(8080), false),
        ("web-1", "app-1", Service::Tcp(8080), true),
        ("app-1", "db-1", Service::Tcp(3306), true),
        ("web-1", "db-1", Service::Tcp(3306), false),
    ] {
        assert_service(&matrix, source, destination, service, passes);
    }
    let ssh = matrix
        .cell("admin", Family::Ipv4, "web-1", Service::Tcp(22))
        .unwrap();
    assert_eq!(ssh.got_through(), Some(true));
    let ssh_internet = matrix
        .cell("internet", Family::Ipv4, "web-1", Service::Tcp(22))
        .unwrap();
    assert_eq!(ssh_internet.got_through(), Some(false));
}
