//! Tier 2: the real eBPF object under BPF_PROG_TEST_RUN, with maps filled by the real
//! compiler, fed hand-built frames. Each test names the statement of
//! `../shared/ec2-sg-semantics.md` it shows; the last one runs thousands of random packets
//! against random policies and compares every verdict with the reference evaluator.

use std::{net::IpAddr, time::Instant};

use filter_common::{Reason::*, *};
use sgwall::{
    eval::{Fragment as EvalFragment, Frame, IpPacket as EvalPacket, Session, Transport},
    maps::Capacities,
    model::{
        Direction::{self, Egress, Ingress},
        MacAddr,
    },
    testgen,
};
use sgwall_tests::{
    datapath::{TestDatapath, parse},
    packet::{
        ETH_P_IPV4, Ext, IpPacket, L4, arp, ethernet, from_eval, from_mac, icmp_error,
        strip_ethernet, v4,
    },
    privileged,
};

const SYN_ACK: u8 = TCP_SYN | TCP_ACK;

const THREE_TIER: &str = include_str!("../../examples/three-tier.toml");

/// A policy touching every feature the datapath has.
const BASE: &str = include_str!("../fixtures/every-feature.toml");

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    IpPacket::new(v4(src), v4(dst), L4::tcp(sport, dport, flags)).build()
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    IpPacket::new(v4(src), v4(dst), L4::udp(sport, dport)).build()
}

fn icmp(src: &str, dst: &str, ty: u8, code: u8) -> Vec<u8> {
    let l4 = L4::Icmp {
        ty,
        code,
        rest: [0, 7, 0, 1],
        body: b"x".to_vec(),
    };
    IpPacket::new(v4(src), v4(dst), l4).build()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A copy of `frame` with `edit` applied: malformed variants of a good frame.
fn edited(frame: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = frame.to_vec();
    edit(&mut frame);
    frame
}

/// Both directions of one TCP or UDP conversation: `out` frames go from the client to the
/// server, `back` frames the other way.
#[derive(Clone, Copy)]
struct Conversation {
    client: &'static str,
    client_port: u16,
    server: &'static str,
    server_port: u16,
}

fn between(
    client: &'static str,
    client_port: u16,
    server: &'static str,
    server_port: u16,
) -> Conversation {
    Conversation {
        client,
        client_port,
        server,
        server_port,
    }
}

impl Conversation {
    fn tcp_out(self, flags: u8) -> Vec<u8> {
        tcp(
            self.client,
            self.client_port,
            self.server,
            self.server_port,
            flags,
        )
    }

    fn tcp_back(self, flags: u8) -> Vec<u8> {
        tcp(
            self.server,
            self.server_port,
            self.client,
            self.client_port,
            flags,
        )
    }

    fn udp_out(self) -> Vec<u8> {
        udp(self.client, self.client_port, self.server, self.server_port)
    }

    fn udp_back(self) -> Vec<u8> {
        udp(self.server, self.server_port, self.client, self.client_port)
    }
}

/// One packet of a scenario: the instance whose interface sees the frame, the direction it
/// travels there, the frame, and the reason the datapath must count it under (which also fixes
/// whether it passes: `TestDatapath::send` checks the verdict against the reason).
type Row = (&'static str, Direction, Vec<u8>, Reason);

/// Sends the rows in order, each checked; a failure names its row.
fn expect_rows(dp: &mut TestDatapath, rows: &[Row]) {
    for (index, (instance, direction, frame, reason)) in rows.iter().enumerate() {
        let sent = dp.send(instance, *direction, frame);
        assert_eq!(
            sent.reason,
            *reason,
            "row {index} ({instance}, {direction}): expected {}, got {sent}",
            reason.name()
        );
    }
}

/// The handshake of a TCP connection to `instance`: the SYN starts a flow, the SYN-ACK makes
/// it half-open, and the client's ACK of the SYN-ACK establishes it.
fn accepted(instance: &'static str, connection: Conversation) -> [Row; 3] {
    [
        (instance, Ingress, connection.tcp_out(TCP_SYN), NewFlow),
        (instance, Egress, connection.tcp_back(SYN_ACK), Reply),
        (instance, Ingress, connection.tcp_out(TCP_ACK), Tracked),
    ]
}

fn base() -> TestDatapath {
    TestDatapath::from_toml(BASE)
}

#[test]
fn r1_unmatched_inbound_drops_and_matched_inbound_passes() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let to_web = |port| tcp("203.0.113.10", 40000, "10.0.1.10", port, TCP_SYN);
    expect_rows(&mut dp, &[("web-1", Ingress, to_web(8080), NoRule)]);
    let https = dp.send("web-1", Ingress, &to_web(443));
    assert!(https.admitted, "{https}");
}

#[test]
fn r2_default_egress_admits_and_empty_egress_admits_nothing() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let dns = |from| udp(from, 5000, "203.0.113.1", 53);
    let dns_v6 = IpPacket::new(ip("fd00:1::10"), ip("2001:db8::1"), L4::udp(5000, 53)).build();
    expect_rows(
        &mut dp,
        &[
            ("web-1", Egress, dns("10.0.1.10"), NewFlow),
            ("web-1", Egress, dns_v6, NewFlow),
            ("app-1", Egress, dns("10.0.2.10"), NoRule),
        ],
    );
}

#[test]
fn r3_protocol_numbers_all_and_icmp_type_code() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let raw = |proto| {
        let payload = vec![0; 8];
        IpPacket::new(v4("10.9.9.9"), v4("10.0.1.10"), L4::Raw { proto, payload }).build()
    };
    let echo = L4::echo_request(false, 5, 1);
    let echo = IpPacket::new(v4("10.9.9.9"), v4("10.0.1.10"), echo).build();
    let timestamp = icmp("10.9.9.9", "10.0.1.10", ICMP_TIMESTAMP, 0);
    let from_app_2 = udp("10.0.2.20", 1, "10.0.2.10", 9999);
    let to_web = |port| udp("10.9.9.9", 9, "10.0.1.10", port);
    expect_rows(
        &mut dp,
        &[
            // 47 (GRE) has a rule, 50 (ESP) has none.
            ("web-1", Ingress, raw(47), NewFlow),
            ("web-1", Ingress, raw(50), NoRule),
            ("web-1", Ingress, echo, NewFlow),
            ("web-1", Ingress, timestamp, NoRule),
            // `all` from a group (app's self-reference): any protocol and port.
            ("app-1", Ingress, from_app_2, NewFlow),
            // A port range.
            ("web-1", Ingress, to_web(1500), NewFlow),
            ("web-1", Ingress, to_web(2001), NoRule),
        ],
    );
}

#[test]
fn r4_only_the_destination_port_counts() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let from_port_22 = tcp("198.51.100.7", 22, "10.0.1.10", 4000, TCP_SYN);
    let to_port_22 = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, from_port_22, NoRule),
            ("web-1", Ingress, to_port_22, NewFlow),
        ],
    );
}

#[test]
fn r5_address_families_stay_apart() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    // SSH is allowed from an IPv4 range only; the same from IPv6 is not.
    let ssh_v6 = L4::tcp(4000, 22, TCP_SYN);
    let ssh_v6 = IpPacket::new(ip("2001:db8::7"), ip("fd00:1::10"), ssh_v6).build();
    let echo_v6 = L4::echo_request(true, 9, 1);
    let echo_v6 = IpPacket::new(ip("fd00:9::1"), ip("fd00:1::10"), echo_v6).build();
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, ssh_v6, NoRule),
            ("web-1", Ingress, echo_v6, NewFlow),
        ],
    );
}

#[test]
fn r6_rules_of_two_groups_are_unioned() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let too_big = |dst| {
        let (ty, code) = (ICMP_DEST_UNREACHABLE, ICMP_FRAGMENTATION_NEEDED);
        icmp("192.0.2.1", dst, ty, code)
    };
    expect_rows(
        &mut dp,
        &[
            // Path MTU discovery comes from the second group attached to web-1.
            ("web-1", Ingress, too_big("10.0.1.10"), RuleUntrackedIcmp),
            ("nat-1", Ingress, too_big("10.0.4.10"), NoRule),
        ],
    );
}

#[test]
fn g1_g2_g4_group_references_members_and_self() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let to_app = |from, port| tcp(from, 40000, "10.0.2.10", port, TCP_SYN);
    let members = ["10.0.1.10", "10.0.1.99", "10.0.4.10", "10.0.5.10"];
    let mut rows: Vec<Row> = members
        .map(|member| ("app-1", Ingress, to_app(member, 8080), NewFlow))
        .to_vec();
    let web_v6 = L4::tcp(40000, 8080, TCP_SYN);
    let web_v6 = IpPacket::new(ip("fd00:1::10"), ip("fd00:2::10"), web_v6).build();
    rows.extend([
        ("app-1", Ingress, web_v6, NewFlow),
        ("app-1", Ingress, to_app("10.0.1.11", 8080), NoRule),
        // G4: app members talk to each other on anything.
        ("app-1", Ingress, to_app("10.0.2.20", 5432), NewFlow),
    ]);
    expect_rows(&mut dp, &rows);
}

#[test]
fn c1_reply_passes_without_a_reverse_rule() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let web = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    expect_rows(&mut dp, &accepted("app-1", web));
    assert_eq!(
        dp.established_flows().len(),
        1,
        "the completed handshake moves the flow to the established pool"
    );
    let unsolicited = between("10.0.1.10", 40002, "10.0.2.10", 8080);
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, web.tcp_out(TCP_ACK), Tracked),
            ("app-1", Egress, unsolicited.tcp_back(TCP_ACK), NoRule),
        ],
    );
}

#[test]
fn c2_state_is_kept_per_interface() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let web = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    expect_rows(
        &mut dp,
        &[("app-1", Ingress, web.tcp_out(TCP_SYN), NewFlow)],
    );
    // The same tuple on app-2's interface is nobody's reply.
    let sent = dp.send("app-2", Egress, &web.tcp_back(SYN_ACK));
    assert!(!sent.admitted, "{sent}");
}

#[test]
fn c3_icmp_echo_is_tracked() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let (instance, remote) = (v4("10.0.1.10"), v4("203.0.113.1"));
    let request = IpPacket::new(instance, remote, L4::echo_request(false, 77, 1)).build();
    let reply = |id| IpPacket::new(remote, instance, L4::echo_reply(false, id, 1)).build();
    expect_rows(
        &mut dp,
        &[
            ("web-1", Egress, request, NewFlow),
            ("web-1", Ingress, reply(77), Reply),
            ("web-1", Ingress, reply(78), NoRule),
        ],
    );
}

#[test]
fn c4_removed_rule_keeps_tracked_flows_and_the_cut_option_cuts_them() {
    if !privileged() {
        return;
    }
    let without_ssh = BASE.replace(
        r#"cidr = ["198.51.100.0/24"]"#,
        r#"cidr = ["192.0.2.0/24"]"#,
    );
    let with_cut = |text: &str| {
        text.replacen(
            "security_groups = [\"web\", \"pmtud\"]\n",
            "security_groups = [\"web\", \"pmtud\"]\nconntrack = { cut_on_rule_removal = true }\n",
            1,
        )
    };
    let ssh = between("198.51.100.7", 4000, "10.0.1.10", 22);
    let new_ssh = between("198.51.100.7", 4001, "10.0.1.10", 22);
    for (cut, expected) in [(false, Tracked), (true, ConntrackCut)] {
        let (before, after) = if cut {
            (with_cut(BASE), with_cut(&without_ssh))
        } else {
            (BASE.to_string(), without_ssh.clone())
        };
        let mut dp = TestDatapath::from_toml(&before);
        expect_rows(&mut dp, &accepted("web-1", ssh));
        dp.reconfigure(parse(&after));
        expect_rows(
            &mut dp,
            &[
                ("web-1", Ingress, ssh.tcp_out(TCP_ACK), expected),
                ("web-1", Ingress, new_ssh.tcp_out(TCP_SYN), NoRule),
            ],
        );
    }
}

#[test]
fn c5_an_expired_entry_admits_nothing() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let dns = between("10.9.9.9", 5000, "10.0.1.10", 1500);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, dns.udp_out(), NewFlow),
            ("web-1", Egress, dns.udp_back(), Reply),
        ],
    );
    dp.age_flows(29);
    expect_rows(&mut dp, &[("web-1", Ingress, dns.udp_out(), Tracked)]);
    dp.age_flows(31);
    // UDP idles out after 30 s: the next packet is a new flow again.
    expect_rows(&mut dp, &[("web-1", Ingress, dns.udp_out(), NewFlow)]);
    assert!(
        dp.established_flows().is_empty(),
        "the datapath deleted the expired entry it met"
    );

    // A stream (both ways more than once) lives 180 s.
    let mut dp = base();
    let stream = between("10.9.9.9", 5001, "10.0.1.10", 1500);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, stream.udp_out(), NewFlow),
            ("web-1", Egress, stream.udp_back(), Reply),
            ("web-1", Ingress, stream.udp_out(), Tracked),
            ("web-1", Egress, stream.udp_back(), Reply),
        ],
    );
    dp.age_flows(100);
    expect_rows(&mut dp, &[("web-1", Egress, stream.udp_back(), Reply)]);

    // TCP after FIN closes in 10 s.
    let mut dp = base();
    let web = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    expect_rows(&mut dp, &accepted("app-1", web));
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, web.tcp_out(TCP_FIN | TCP_ACK), Tracked),
            ("app-1", Egress, web.tcp_back(TCP_ACK), Reply),
        ],
    );
    dp.age_flows(11);
    expect_rows(&mut dp, &[("app-1", Egress, web.tcp_back(TCP_ACK), NoRule)]);
}

#[test]
fn c6_full_allowance_drops_new_flows_and_keeps_established_ones() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let [first, second, third] =
        [40001, 40002, 40003].map(|port| between("10.0.1.10", port, "10.0.2.20", 8080));
    let elsewhere = between("10.0.1.10", 40003, "10.0.2.10", 8080);
    expect_rows(&mut dp, &accepted("app-2", first));
    expect_rows(&mut dp, &accepted("app-2", second));
    expect_rows(
        &mut dp,
        &[
            ("app-2", Ingress, third.tcp_out(TCP_SYN), ConntrackFull),
            ("app-2", Ingress, first.tcp_out(TCP_ACK), Tracked),
            // Other interfaces have their own allowance.
            ("app-1", Ingress, elsewhere.tcp_out(TCP_SYN), NewFlow),
        ],
    );
}

#[test]
fn c6_full_established_table_refuses_new_flows_not_old_ones() {
    if !privileged() {
        return;
    }
    let capacities = Capacities {
        ct_established: 1,
        ..Capacities::default()
    };
    let mut dp = TestDatapath::with_capacities(parse(BASE), capacities);
    let first = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    let second = between("10.0.1.10", 40002, "10.0.2.10", 8080);
    expect_rows(&mut dp, &accepted("app-1", first));
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, second.tcp_out(TCP_SYN), NewFlow),
            ("app-1", Egress, second.tcp_back(SYN_ACK), Reply),
            // The handshake's last ACK would move the flow into the full table.
            ("app-1", Ingress, second.tcp_out(TCP_ACK), ConntrackFull),
            ("app-1", Ingress, first.tcp_out(TCP_ACK), Tracked),
        ],
    );
}

/// Issue 10 (C5, C6): SYN in, SYN-ACK out and no ACK, as for a spoofed source: the flow stays
/// half-open in the embryonic pool, never reaches the established pool, and idles out 60 s
/// after its last packet (the clock is driven through the entry's timestamps).
#[test]
fn c5_c6_a_half_open_tcp_flow_is_not_established_and_expires_after_60_seconds() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let ssh = between("198.51.100.7", 4000, "10.0.1.10", 22);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, ssh.tcp_out(TCP_SYN), NewFlow),
            ("web-1", Egress, ssh.tcp_back(SYN_ACK), Reply),
        ],
    );
    assert!(
        dp.established_flows().is_empty(),
        "half-open is not established"
    );
    let states: Vec<u8> = dp.embryonic_flows().iter().map(|(_, e)| e.state).collect();
    assert_eq!(states, [CT_STATE_HALF_OPEN]);
    dp.age_flows(59);
    // Still live: the retransmitted SYN-ACK is a reply, and refreshes the flow.
    expect_rows(&mut dp, &[("web-1", Egress, ssh.tcp_back(SYN_ACK), Reply)]);
    dp.age_flows(60);
    // Gone: the late ACK passes on the ingress rule alone and establishes nothing.
    expect_rows(
        &mut dp,
        &[("web-1", Ingress, ssh.tcp_out(TCP_ACK), RuleNoEntry)],
    );
    assert!(dp.established_flows().is_empty());
}

/// Issue 10, the UDP case: a datagram answered once stays embryonic (a spoofed source never
/// speaks again); the originator's next datagram after the reply establishes the flow.
#[test]
fn c6_a_udp_flow_is_established_when_its_originator_speaks_after_a_reply() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let spoofed = between("10.9.9.21", 5000, "10.0.1.10", 1500);
    let real = between("10.9.9.7", 5000, "10.0.1.10", 1500);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, spoofed.udp_out(), NewFlow),
            ("web-1", Egress, spoofed.udp_back(), Reply),
            ("web-1", Ingress, real.udp_out(), NewFlow),
            ("web-1", Egress, real.udp_back(), Reply),
        ],
    );
    assert!(dp.established_flows().is_empty());
    expect_rows(&mut dp, &[("web-1", Ingress, real.udp_out(), Tracked)]);
    let established: Vec<u16> = dp
        .established_flows()
        .iter()
        .map(|(key, _)| key.remote_port)
        .collect();
    assert_eq!(established, [5000]);
    assert_eq!(
        dp.embryonic_flows().len(),
        1,
        "the answered-once flow stays embryonic"
    );
}

/// Issue 10: only the originator's ACK of the SYN-ACK's own sequence number establishes the
/// flow; a blind ACK with another number (or a SYN) leaves it half-open.
#[test]
fn c6_only_an_ack_of_the_syn_ack_establishes_a_tcp_flow() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let (client, server) = (ip("198.51.100.7"), ip("10.0.1.10"));
    let segment = |from, to, flags, seq, ack| {
        let (sport, dport) = if from == client {
            (4000, 22)
        } else {
            (22, 4000)
        };
        IpPacket::new(from, to, L4::tcp_numbered(sport, dport, flags, seq, ack)).build()
    };
    let steps = [
        (client, TCP_SYN, 7, 0, NewFlow, 0),
        (server, SYN_ACK, 1000, 8, Reply, 0),
        (client, TCP_ACK, 8, 1000, Tracked, 0),
        (
            client,
            TCP_ACK,
            8,
            1001 + TCP_HANDSHAKE_ACK_WINDOW,
            Tracked,
            0,
        ),
        (client, SYN_ACK, 8, 1001, Tracked, 0),
        (client, TCP_ACK, 8, 1001, Tracked, 1),
    ];
    for (index, (from, flags, seq, ack, reason, established)) in steps.into_iter().enumerate() {
        let (to, direction) = if from == client {
            (server, Ingress)
        } else {
            (client, Egress)
        };
        let sent = dp.send("web-1", direction, &segment(from, to, flags, seq, ack));
        assert_eq!(sent.reason, reason, "step {index}: {sent}");
        assert_eq!(dp.established_flows().len(), established, "step {index}");
    }
}

/// Issue 10 (C6): spoofed SYNs at twice the allowance leave half-open flows that take no
/// established slot, so a real client still connects at once.
#[test]
fn c6_half_open_flows_at_twice_the_allowance_keep_nobody_out() {
    if !privileged() {
        return;
    }
    let policy = BASE.replacen(
        "security_groups = [\"web\", \"pmtud\"]\n",
        "security_groups = [\"web\", \"pmtud\"]\nconntrack = { max_flows = 4 }\n",
        1,
    );
    let mut dp = TestDatapath::from_toml(&policy);
    let spoofed = [
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.23",
        "198.51.100.24",
    ];
    let more = [
        "198.51.100.25",
        "198.51.100.26",
        "198.51.100.27",
        "198.51.100.28",
    ];
    for source in spoofed.into_iter().chain(more) {
        let flood = between(source, 4000, "10.0.1.10", 22);
        expect_rows(
            &mut dp,
            &[
                ("web-1", Ingress, flood.tcp_out(TCP_SYN), NewFlow),
                ("web-1", Egress, flood.tcp_back(SYN_ACK), Reply),
            ],
        );
    }
    assert!(dp.established_flows().is_empty());
    expect_rows(
        &mut dp,
        &accepted("web-1", between("198.51.100.7", 4000, "10.0.1.10", 22)),
    );
    assert_eq!(dp.established_flows().len(), 1);
}

#[test]
fn c6_a_flood_of_new_flows_does_not_evict_established_ones() {
    if !privileged() {
        return;
    }
    let capacities = Capacities {
        ct_embryonic: 64,
        ..Capacities::default()
    };
    let mut dp = TestDatapath::with_capacities(parse(BASE), capacities);
    let established = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    expect_rows(&mut dp, &accepted("app-1", established));
    for port in 0..1000u16 {
        let flood = between("10.0.1.99", 1024 + port, "10.0.2.10", 8080);
        dp.send("app-1", Ingress, &flood.tcp_out(TCP_SYN));
    }
    assert!(
        dp.embryonic_flows().len() <= 64,
        "the flood stayed in its own pool"
    );
    expect_rows(
        &mut dp,
        &[("app-1", Ingress, established.tcp_out(TCP_ACK), Tracked)],
    );
}

#[test]
fn c7_icmp_errors_are_related_only_with_related_icmp() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let to_app_1 = between("10.0.1.10", 40001, "10.0.2.10", 8080);
    let to_app_2 = between("10.0.1.10", 40001, "10.0.2.20", 8080);
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, to_app_1.tcp_out(TCP_SYN), NewFlow),
            ("app-2", Ingress, to_app_2.tcp_out(TCP_SYN), NewFlow),
        ],
    );
    // The router says it cannot deliver the SYN-ACK the instance sent.
    let host_unreachable = |flow: Conversation| {
        let quoted = flow.tcp_back(SYN_ACK);
        let error = icmp_error(false, ICMP_DEST_UNREACHABLE, 1, strip_ethernet(&quoted));
        IpPacket::new(v4("10.0.9.1"), v4(flow.server), error).build()
    };
    let unrelated = between("10.0.1.10", 49999, "10.0.2.20", 8080);
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, host_unreachable(to_app_1), NoRule),
            ("app-2", Ingress, host_unreachable(to_app_2), RelatedIcmp),
            ("app-2", Ingress, host_unreachable(unrelated), NoRule),
        ],
    );
}

#[test]
fn c8_untracked_flows_and_their_immediate_cut() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let http = between("203.0.113.5", 4000, "10.0.1.10", 80);
    expect_rows(
        &mut dp,
        &[("web-1", Ingress, http.tcp_out(TCP_SYN), Untracked)],
    );
    assert!(dp.embryonic_flows().is_empty());
    // The reply is judged by the egress rules (all to anywhere), not by conntrack, and as a
    // SYN-ACK it starts no tracked flow of its own.
    expect_rows(
        &mut dp,
        &[("web-1", Egress, http.tcp_back(SYN_ACK), RuleNoEntry)],
    );
    // Removing the rule cuts the flow at once: there is no entry to keep it alive.
    dp.reconfigure(parse(&BASE.replace(r#"ports = "80""#, r#"ports = "81""#)));
    expect_rows(
        &mut dp,
        &[("web-1", Ingress, http.tcp_out(TCP_ACK), NoRule)],
    );
}

#[test]
fn i1_source_destination_check_and_its_off_switch() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let spoofed = tcp("10.9.9.9", 4000, "10.0.2.20", 22, TCP_SYN);
    expect_rows(&mut dp, &[("app-1", Egress, spoofed, SpoofedSource)]);
    assert!(
        dp.embryonic_flows().is_empty() && dp.established_flows().is_empty(),
        "no state from a spoofed packet"
    );
    let misaddressed = tcp("10.0.1.10", 4000, "10.0.2.99", 8080, TCP_SYN);
    let forwarded = udp("10.5.5.5", 4000, "203.0.113.1", 53);
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, misaddressed, SpoofedDestination),
            // A NAT instance forwards for others.
            ("nat-1", Egress, forwarded.clone(), NewFlow),
            // The host's own NIC is not an instance port: no check.
            ("host-1", Egress, forwarded, NewFlow),
        ],
    );
}

#[test]
fn i2_arp_and_neighbour_discovery_pass_and_spoofed_arp_drops() {
    if !privileged() {
        return;
    }
    const REQUEST: u16 = 1;
    const REPLY: u16 = 2;
    let mut dp = base();
    let arp = |op, sender: &str, target: &str| {
        arp(op, sender.parse().expect("v4"), target.parse().expect("v4"))
    };
    let stolen = arp(REPLY, "10.0.2.1", "10.0.2.10");
    let solicitation = L4::Icmp {
        ty: ICMPV6_NEIGHBOR_SOLICITATION,
        code: 0,
        rest: [0; 4],
        body: vec![0; 16],
    };
    let solicitation = IpPacket::new(ip("fe80::1"), ip("ff02::1:ff00:10"), solicitation).build();
    let truncated = arp(REPLY, "10.0.2.10", "10.0.2.1")[..30].to_vec();
    expect_rows(
        &mut dp,
        &[
            ("app-1", Egress, arp(REPLY, "10.0.2.10", "10.0.2.1"), Arp),
            // An address probe (RFC 5227).
            ("app-1", Egress, arp(REQUEST, "0.0.0.0", "10.0.2.10"), Arp),
            ("app-1", Egress, stolen, ArpSpoof),
            ("app-1", Ingress, arp(REQUEST, "10.0.2.1", "10.0.2.10"), Arp),
            ("app-1", Egress, solicitation, Icmpv6Link),
            ("app-1", Egress, truncated, BadArp),
        ],
    );
}

/// One packet of a scenario as the reference evaluator sees it: the instance, the direction,
/// the frame's source MAC (`None`: the test frames' own, [`SRC_MAC`]), the frame, and the
/// reason both the datapath and the evaluator must give.
type EvalRow = (&'static str, Direction, Option<[u8; 6]>, Frame, Reason);

/// Builds each row's frame on the wire, sends it, and checks that the datapath, the reference
/// evaluator (with its own conntrack) and the row agree; a failure names its row.
fn expect_evaluated(dp: &mut TestDatapath, rows: &[EvalRow]) {
    let mut session = Session::new(dp.config.clone());
    for (index, (instance, direction, mac, frame, reason)) in rows.iter().enumerate() {
        let wire = match frame {
            Frame::Ip(packet) => from_eval(packet),
            Frame::Arp { sender } => arp(2, *sender, "10.0.0.1".parse().expect("v4")),
            Frame::NonIp => ethernet(None, 0x88cc, &[0u8; 46]),
        };
        let wire = mac.map_or(wire.clone(), |mac| from_mac(&wire, mac));
        let source_mac = mac.map(MacAddr);
        let evaluated = session.process_frame(instance, *direction, source_mac, frame, 0.0);
        let sent = dp.send(instance, *direction, &wire);
        assert_eq!(
            (sent.reason, evaluated.reason),
            (*reason, *reason),
            "row {index} ({instance}, {direction}, {frame:?}): expected {}, datapath {sent}, \
             evaluator {}",
            reason.name(),
            evaluated.reason.name()
        );
    }
}

fn packet(src: &str, dst: &str, transport: Transport) -> Frame {
    Frame::Ip(EvalPacket {
        src: ip(src),
        dst: ip(dst),
        transport,
        fragment: EvalFragment::Whole,
    })
}

fn udp_packet(src: &str, src_port: u16, dst: &str, dst_port: u16) -> Frame {
    packet(src, dst, Transport::Udp { src_port, dst_port })
}

fn icmp_packet(src: &str, dst: &str, icmp_type: u8) -> Frame {
    let transport = Transport::Icmp {
        icmp_type,
        code: 0,
        echo_id: 7,
        quoted: None,
    };
    packet(src, dst, transport)
}

fn tcp_packet(src: &str, dst: &str, dst_port: u16) -> Frame {
    let transport = Transport::Tcp {
        src_port: 40000,
        dst_port,
        flags: TCP_SYN,
        seq: 1,
        ack: 0,
    };
    packet(src, dst, transport)
}

/// vm-1's link-local address: the EUI-64 one of its MAC, 02:00:00:00:00:01 (I5).
const VM1_LINK_LOCAL: &str = "fe80::ff:fe00:1";
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

#[test]
fn i5_link_local_addresses_are_the_instances_own() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let echo = |src: &str, dst: &str, icmp_type| icmp_packet(src, dst, icmp_type);
    let other_echo = |src: &str, dst: &str| {
        let transport = Transport::Icmp {
            icmp_type: ICMPV6_ECHO_REQUEST,
            code: 0,
            echo_id: 8,
            quoted: None,
        };
        packet(src, dst, transport)
    };
    expect_evaluated(
        &mut dp,
        &[
            // The EUI-64 address of vm-1's MAC is its own: a ping to the host's link-local
            // address leaves (default egress) and its reply returns (C1).
            (
                "vm-1",
                Egress,
                None,
                echo(VM1_LINK_LOCAL, "fe80::1", ICMPV6_ECHO_REQUEST),
                NewFlow,
            ),
            (
                "vm-1",
                Ingress,
                None,
                echo("fe80::1", VM1_LINK_LOCAL, ICMPV6_ECHO_REPLY),
                Reply,
            ),
            // To it, the source/destination check lets the packet through to the rules.
            (
                "vm-1",
                Ingress,
                None,
                other_echo("fe80::1", VM1_LINK_LOCAL),
                NoRule,
            ),
            // Another link-local address is not vm-1's.
            (
                "vm-1",
                Egress,
                None,
                echo("fe80::5", "fe80::1", ICMPV6_ECHO_REQUEST),
                SpoofedSource,
            ),
            // Without a MAC, only a link-local address in `addresses` is the instance's.
            (
                "web-1",
                Egress,
                None,
                echo(VM1_LINK_LOCAL, "fe80::1", ICMPV6_ECHO_REQUEST),
                SpoofedSource,
            ),
            (
                "vm-2",
                Egress,
                None,
                echo("fe80::7", "fe80::1", ICMPV6_ECHO_REQUEST),
                NewFlow,
            ),
            // Neighbour discovery from it passes as always (I2).
            (
                "vm-1",
                Egress,
                None,
                echo(
                    VM1_LINK_LOCAL,
                    "ff02::1:ff00:1",
                    ICMPV6_NEIGHBOR_SOLICITATION,
                ),
                Icmpv6Link,
            ),
        ],
    );
}

#[test]
fn i6_dhcp_client_traffic_and_server_replies_pass_without_rules_or_state() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let broadcast = "255.255.255.255";
    expect_evaluated(
        &mut dp,
        &[
            // DISCOVER and REQUEST from no address, to the broadcast address.
            (
                "vm-1",
                Egress,
                None,
                udp_packet("0.0.0.0", 68, broadcast, 67),
                DhcpClient,
            ),
            // OFFER and ACK, broadcast or to the address being given.
            (
                "vm-1",
                Ingress,
                None,
                udp_packet("10.0.6.1", 67, broadcast, 68),
                DhcpServerReply,
            ),
            (
                "vm-1",
                Ingress,
                None,
                udp_packet("10.0.6.1", 67, "10.0.6.10", 68),
                DhcpServerReply,
            ),
            // A renewal, from its own address to the server.
            (
                "vm-1",
                Egress,
                None,
                udp_packet("10.0.6.10", 68, "10.0.6.1", 67),
                DhcpClient,
            ),
            // DHCPv6 from the link-local address (I5), and the server's reply to it.
            (
                "vm-1",
                Egress,
                None,
                udp_packet(VM1_LINK_LOCAL, 546, "ff02::1:2", 547),
                DhcpClient,
            ),
            (
                "vm-1",
                Ingress,
                None,
                udp_packet("fe80::1", 547, VM1_LINK_LOCAL, 546),
                DhcpServerReply,
            ),
            // Spoofed sources still never get out (I1), nor a reply in to another address.
            (
                "vm-1",
                Egress,
                None,
                udp_packet("10.9.9.9", 68, broadcast, 67),
                SpoofedSource,
            ),
            (
                "vm-1",
                Egress,
                None,
                udp_packet("0.0.0.0", 68, "10.0.6.1", 67),
                SpoofedSource,
            ),
            (
                "vm-1",
                Egress,
                None,
                udp_packet("fe80::5", 546, "ff02::1:2", 547),
                SpoofedSource,
            ),
            (
                "vm-1",
                Ingress,
                None,
                udp_packet("10.0.6.1", 67, "10.0.6.99", 68),
                SpoofedDestination,
            ),
            // The DISCOVER opened nothing: the server's other ports are judged by the rules.
            (
                "vm-1",
                Ingress,
                None,
                udp_packet("10.0.6.1", 67, "10.0.6.10", 5000),
                NoRule,
            ),
            // `dhcp = false`: DHCP is judged like anything else.
            (
                "vm-2",
                Egress,
                None,
                udp_packet("0.0.0.0", 68, broadcast, 67),
                SpoofedSource,
            ),
            (
                "vm-2",
                Ingress,
                None,
                udp_packet("10.0.7.1", 67, "10.0.7.10", 68),
                NoRule,
            ),
            // The host's own NIC has DHCP off unless the config turns it on.
            (
                "host-1",
                Ingress,
                None,
                udp_packet("10.0.5.1", 67, "10.0.5.10", 68),
                NoRule,
            ),
            // Without the source/destination check DHCP still works.
            (
                "nat-1",
                Egress,
                None,
                udp_packet("0.0.0.0", 68, broadcast, 67),
                DhcpClient,
            ),
            (
                "nat-1",
                Ingress,
                None,
                udp_packet("10.0.4.1", 67, broadcast, 68),
                DhcpServerReply,
            ),
        ],
    );
    assert!(
        dp.embryonic_flows().is_empty() && dp.established_flows().is_empty(),
        "DHCP leaves no conntrack state"
    );
    // A DHCP datagram is never fragmented: a first fragment from 0.0.0.0 is just spoofed.
    let fragment = IpPacket::new(v4("0.0.0.0"), v4("255.255.255.255"), L4::udp(68, 67))
        .fragment(5, 0, true)
        .build();
    expect_rows(&mut dp, &[("vm-1", Egress, fragment, SpoofedSource)]);
}

#[test]
fn i7_guards_drop_router_dhcp_server_and_foreign_mac_frames_from_the_instance() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let from_other = Some(OTHER_MAC);
    expect_evaluated(
        &mut dp,
        &[
            // The instance may not act as the router...
            (
                "vm-1",
                Egress,
                None,
                icmp_packet(VM1_LINK_LOCAL, "ff02::1", ICMPV6_ROUTER_ADVERTISEMENT),
                RouterAdvertisementGuard,
            ),
            (
                "vm-1",
                Egress,
                None,
                icmp_packet(VM1_LINK_LOCAL, "fe80::1", ICMPV6_REDIRECT),
                RedirectGuard,
            ),
            // ...while the router's own advertisements reach it (I2) and a redirect to it is
            // judged by the rules.
            (
                "vm-1",
                Ingress,
                None,
                icmp_packet("fe80::1", "ff02::1", ICMPV6_ROUTER_ADVERTISEMENT),
                Icmpv6Link,
            ),
            (
                "vm-1",
                Ingress,
                None,
                icmp_packet("fe80::1", VM1_LINK_LOCAL, ICMPV6_REDIRECT),
                NoRule,
            ),
            // ...nor as the DHCP server, even from its own address.
            (
                "vm-1",
                Egress,
                None,
                udp_packet("10.0.6.10", 67, "255.255.255.255", 68),
                DhcpServerGuard,
            ),
            (
                "vm-1",
                Egress,
                None,
                udp_packet(VM1_LINK_LOCAL, 547, "fe80::1", 546),
                DhcpServerGuard,
            ),
            (
                "web-1",
                Egress,
                None,
                udp_packet("10.0.1.10", 67, "10.0.1.20", 68),
                DhcpServerGuard,
            ),
            // Port security: every frame from vm-1 carries its MAC, whatever it holds.
            (
                "vm-1",
                Egress,
                from_other,
                tcp_packet("10.0.6.10", "203.0.113.1", 80),
                MacSpoof,
            ),
            (
                "vm-1",
                Egress,
                from_other,
                Frame::Arp {
                    sender: "10.0.6.10".parse().expect("v4"),
                },
                MacSpoof,
            ),
            ("vm-1", Egress, from_other, Frame::NonIp, MacSpoof),
            (
                "vm-1",
                Egress,
                None,
                tcp_packet("10.0.6.10", "203.0.113.1", 80),
                NewFlow,
            ),
            // Frames to it may come from any MAC; an instance without a MAC in the config
            // sends from any.
            (
                "vm-1",
                Ingress,
                from_other,
                tcp_packet("203.0.113.1", "10.0.6.10", 80),
                Untracked,
            ),
            (
                "web-1",
                Egress,
                from_other,
                tcp_packet("10.0.1.10", "203.0.113.1", 80),
                NewFlow,
            ),
            // The guards are part of the source/destination check: a NAT instance without it
            // may advertise routes and serve DHCP, judged by its rules.
            (
                "nat-1",
                Egress,
                None,
                icmp_packet("fe80::4", "ff02::1", ICMPV6_ROUTER_ADVERTISEMENT),
                Icmpv6Link,
            ),
            (
                "nat-1",
                Egress,
                None,
                udp_packet("10.0.4.10", 67, "255.255.255.255", 68),
                NewFlow,
            ),
        ],
    );
}

#[test]
fn i3_exempt_list_comes_after_the_source_check_and_before_the_destination_check() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let metadata = "169.254.169.254";
    expect_evaluated(
        &mut dp,
        &[
            (
                "app-2",
                Egress,
                None,
                tcp_packet("10.0.2.20", metadata, 80),
                Exempt,
            ),
            // Never with a spoofed source.
            (
                "app-2",
                Egress,
                None,
                tcp_packet("10.9.9.9", metadata, 80),
                SpoofedSource,
            ),
            // From an exempt address, even to an address not the instance's own.
            (
                "app-2",
                Ingress,
                None,
                tcp_packet(metadata, "10.0.2.99", 4000),
                Exempt,
            ),
            (
                "app-1",
                Ingress,
                None,
                tcp_packet(metadata, "10.0.2.99", 4000),
                SpoofedDestination,
            ),
        ],
    );
}

#[test]
fn i3_exempt_addresses_skip_the_rules() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let metadata = |from| tcp(from, 4000, "169.254.169.254", 80, TCP_SYN);
    expect_rows(
        &mut dp,
        &[
            ("app-2", Egress, metadata("10.0.2.20"), Exempt),
            ("app-1", Egress, metadata("10.0.2.10"), NoRule),
        ],
    );
}

#[test]
fn i4_non_ip_frames_drop() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let lldp = ethernet(None, 0x88cc, &[0u8; 46]);
    // An 802.3 length field, not an ethertype: LLC.
    let llc = ethernet(None, 0x0026, &[0u8; 46]);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, lldp, NonIp),
            ("web-1", Egress, llc, NonIp),
        ],
    );
}

/// The first fragment of a UDP datagram to port 53, as large as a 1500-byte MTU allows.
fn first_fragment(src: IpAddr, dst: IpAddr, id: u32) -> Vec<u8> {
    let payload = if src.is_ipv6() { 1400 } else { 1472 };
    let l4 = L4::Udp {
        sport: 5000,
        dport: 53,
        payload: vec![0; payload],
    };
    IpPacket::new(src, dst, l4).fragment(id, 0, true).build()
}

/// A later fragment (`offset` in 8-byte units, more to come) of a `proto` datagram.
fn later_fragment(src: IpAddr, dst: IpAddr, proto: u8, id: u32, offset: u16) -> Vec<u8> {
    let l4 = L4::Raw {
        proto,
        payload: vec![0; if proto == PROTO_TCP { 16 } else { 64 }],
    };
    IpPacket::new(src, dst, l4)
        .fragment(id, offset, false)
        .build()
}

#[test]
fn h1_fragments_follow_their_first_fragment() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let (web, app, outside) = (v4("10.0.1.10"), v4("10.0.2.10"), v4("203.0.113.1"));
    let later = |id| later_fragment(web, outside, PROTO_UDP, id, 185);
    let first = first_fragment(web, outside, 7);
    let denied_first = first_fragment(outside, app, 9);
    let denied_rest = later_fragment(outside, app, PROTO_UDP, 9, 185);
    // A first fragment too short to hold the transport header.
    let tiny = IpPacket::new(web, outside, L4::tcp(5000, 80, TCP_SYN))
        .fragment(11, 0, true)
        .truncate_l4(8)
        .build();
    // A fragment at offset 8 bytes could rewrite the TCP flags the first was judged on.
    let overlap = later_fragment(web, outside, PROTO_TCP, 12, 1);
    let (web6, outside6) = (ip("fd00:1::10"), ip("2001:db8::1"));
    let first6 = first_fragment(web6, outside6, 0x1234_5678);
    let later6 = later_fragment(web6, outside6, PROTO_UDP, 0x1234_5678, 176);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Egress, later(7), FragmentWithoutFirst),
            ("web-1", Egress, first, NewFlow),
            ("web-1", Egress, later(7), Fragment),
            ("web-1", Egress, later(8), FragmentWithoutFirst),
            // A denied first fragment admits none of the rest.
            ("app-1", Ingress, denied_first, NoRule),
            ("app-1", Ingress, denied_rest, FragmentWithoutFirst),
            ("web-1", Egress, tiny, TinyFirstFragment),
            ("web-1", Egress, overlap, OverlappingFragment),
            // IPv6 fragments work the same way.
            ("web-1", Egress, first6, NewFlow),
            ("web-1", Egress, later6, Fragment),
        ],
    );
}

#[test]
fn h2_ipv6_extension_headers_are_walked_within_bounds() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let http = || {
        IpPacket::new(
            ip("2001:db8::7"),
            ip("fd00:1::10"),
            L4::tcp(4000, 80, TCP_SYN),
        )
    };
    let through = |chain: &[Ext]| {
        let packet = chain
            .iter()
            .fold(http(), |packet, ext| packet.ext(ext.clone()));
        packet.build()
    };
    use Ext::{DestinationOptions, HopByHop};
    let mut rows: Vec<Row> = vec![
        (
            "web-1",
            Ingress,
            through(&[HopByHop, DestinationOptions]),
            Untracked,
        ),
        (
            "web-1",
            Ingress,
            through(&[Ext::Routing(0)]),
            Ipv6RoutingType0,
        ),
        // Hop-by-hop must come first.
        (
            "web-1",
            Ingress,
            through(&[DestinationOptions, HopByHop]),
            Ipv6ExtensionChain,
        ),
        // Longer than the walk's bound.
        (
            "web-1",
            Ingress,
            through(&vec![DestinationOptions; 9]),
            Ipv6ExtensionChain,
        ),
    ];
    rows.extend(IPV6_UNWALKABLE_EXTENSIONS.map(|next_header| {
        let frame = through(&[Ext::Other(next_header)]);
        ("web-1", Ingress, frame, Ipv6UnknownExtension)
    }));
    expect_rows(&mut dp, &rows);
}

#[test]
fn h3_truncated_and_malformed_headers_drop() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let good = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    let short_tcp = L4::tcp(4000, 22, TCP_SYN);
    let short_tcp = IpPacket::new(v4("198.51.100.7"), v4("10.0.1.10"), short_tcp)
        .truncate_l4(12)
        .build();
    let short_udp = IpPacket::new(v4("10.9.9.9"), v4("10.0.1.10"), L4::udp(4000, 1500))
        .truncate_l4(6)
        .build();
    let v6 = L4::tcp(4000, 80, TCP_SYN);
    let v6 = IpPacket::new(ip("2001:db8::7"), ip("fd00:1::10"), v6).build();
    let short_ip = edited(&good, |f| f.truncate(14 + 20 + 10));
    // IHL 4: shorter than the fixed header.
    let bad_ihl = edited(&good, |f| f[14] = 0x44);
    // Version 6 in an IPv4 ethertype.
    let bad_version = edited(&good, |f| f[14] = 0x65);
    let short_v6 = edited(&v6, |f| f.truncate(14 + 40 + 4));
    // Three VLAN tags: one more than the parser walks.
    let mut tags = ethernet(Some(1), 0x8100, &[0, 2, 0x81, 0]);
    tags.extend_from_slice(&[0, 3]);
    tags.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    tags.extend_from_slice(&[0u8; 40]);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, short_ip, BadIpv4),
            ("web-1", Ingress, bad_ihl, BadIpv4),
            ("web-1", Ingress, bad_version, BadIpv4),
            ("web-1", Ingress, short_tcp, TruncatedL4),
            ("web-1", Ingress, short_udp, TruncatedL4),
            ("web-1", Ingress, short_v6, BadIpv6),
            ("web-1", Ingress, tags, BadVlan),
        ],
    );
}

#[test]
fn vlan_tags_and_ipv4_options_are_parsed_not_rejected() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let to_web = |sport, dport| {
        IpPacket::new(
            v4("198.51.100.7"),
            v4("10.0.1.10"),
            L4::tcp(sport, dport, TCP_SYN),
        )
    };
    let tagged = to_web(4000, 22).vlan(42).build();
    let with_options = to_web(4001, 22)
        .ipv4_options(&[1, 1, 1, 1, 1, 1, 1, 0])
        .build();
    let denied_with_options = to_web(4002, 23).ipv4_options(&[1, 1, 1, 0]).build();
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, tagged, NewFlow),
            ("web-1", Ingress, with_options, NewFlow),
            ("web-1", Ingress, denied_with_options, NoRule),
        ],
    );
}

#[test]
fn host_attachment_judges_inbound_in_xdp_and_outbound_in_tc() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let ssh = between("198.51.100.7", 4000, "10.0.5.10", 22);
    let telnet = between("203.0.113.9", 4000, "10.0.5.10", 23);
    expect_rows(&mut dp, &accepted("host-1", ssh));
    expect_rows(
        &mut dp,
        &[
            ("host-1", Ingress, telnet.tcp_out(TCP_SYN), NoRule),
            ("host-1", Ingress, ssh.tcp_out(TCP_RST), Tracked),
        ],
    );
}

#[test]
fn tcp_rst_starts_nothing_and_a_syn_reuses_a_closed_tuple() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let reset = between("198.51.100.7", 4000, "10.0.1.10", 22);
    expect_rows(
        &mut dp,
        &[("web-1", Ingress, reset.tcp_out(TCP_RST), RuleNoEntry)],
    );
    assert!(dp.embryonic_flows().is_empty());
    let ssh = between("198.51.100.7", 4001, "10.0.1.10", 22);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Ingress, ssh.tcp_out(TCP_SYN), NewFlow),
            ("web-1", Egress, ssh.tcp_back(TCP_RST), Reply),
            // The tuple is closing; a new SYN is judged afresh (and admitted by the rule).
            ("web-1", Ingress, ssh.tcp_out(TCP_SYN), NewFlow),
        ],
    );
}

const NETWORK_ACL: &str = include_str!("../../examples/network-acl.toml");

/// `examples/network-acl.toml` with its subnets (and so its ACLs) taken away.
fn without_subnets(text: &str) -> sgwall::model::Config {
    let mut config = parse(text);
    config.subnets.clear();
    config
}

#[test]
fn p1_a_prefix_list_matches_any_entry_and_editing_it_keeps_tracked_flows() {
    if !privileged() {
        return;
    }
    let mut config = without_subnets(NETWORK_ACL);
    let mut dp = TestDatapath::new(config.clone());
    let ssh = |from: &'static str, port| between(from, port, "10.0.1.10", 22);
    let branch = ssh("192.0.2.5", 4000);
    let mut rows = Vec::new();
    rows.extend(accepted("web-1", ssh("198.51.100.7", 4000)));
    rows.extend(accepted("web-1", branch));
    rows.push((
        "web-1",
        Ingress,
        ssh("192.0.2.16", 4000).tcp_out(TCP_SYN),
        NoRule,
    ));
    rows.push((
        "web-1",
        Ingress,
        ssh("203.0.113.5", 4000).tcp_out(TCP_SYN),
        NoRule,
    ));
    expect_rows(&mut dp, &rows);

    // The branch leaves the list: a delta, no generation flip (checked by the harness).
    config.prefix_lists[0]
        .entries
        .retain(|entry| entry.cidr.to_string() != "192.0.2.0/28");
    dp.edit_prefix_lists(config);
    expect_rows(
        &mut dp,
        &[
            // C4: the tracked flow goes on both ways.
            ("web-1", Ingress, branch.tcp_out(TCP_ACK), Tracked),
            ("web-1", Egress, branch.tcp_back(TCP_ACK), Reply),
            // New flows are judged by the entries in force.
            (
                "web-1",
                Ingress,
                ssh("192.0.2.5", 4001).tcp_out(TCP_SYN),
                NoRule,
            ),
            (
                "web-1",
                Ingress,
                ssh("198.51.100.8", 4001).tcp_out(TCP_SYN),
                NewFlow,
            ),
        ],
    );
}

#[test]
fn n1_the_default_acl_and_no_subnet_cost_nothing_and_an_empty_custom_acl_denies_all() {
    if !privileged() {
        return;
    }
    let with_default = NETWORK_ACL.replace("network_acl = \"public-acl\"\n", "");
    let dp = TestDatapath::from_toml(&with_default);
    let web = dp.policy().interface_of_instance("web-1").expect("web-1");
    assert_eq!(
        web.config.flags & IFACE_F_HAS_ACL,
        0,
        "default ACL: no lookups"
    );
    let app = dp.policy().interface_of_instance("app-1").expect("app-1");
    assert_ne!(app.config.flags & IFACE_F_HAS_ACL, 0);
    drop(dp);

    let empty = NETWORK_ACL.replace("network_acl = \"private-acl\"", "network_acl = \"empty\"")
        + "\n[[network_acl]]\nname = \"empty\"\n";
    let mut dp = TestDatapath::from_toml(&empty);
    let api = between("10.0.1.10", 4000, "10.0.2.10", 8080);
    expect_rows(
        &mut dp,
        &[
            ("app-1", Ingress, api.tcp_out(TCP_SYN), AclImplicitDeny),
            (
                "app-1",
                Egress,
                udp("10.0.2.10", 5000, "198.51.100.1", 53),
                AclImplicitDeny,
            ),
            // The web tier under the default ACL: only its groups decide.
            ("web-1", Egress, api.tcp_out(TCP_SYN), NewFlow),
        ],
    );
}

#[test]
fn n2_the_lowest_numbered_matching_entry_decides_and_counts_a_hit() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(NETWORK_ACL);
    let deny_90 = dp.acl_entry_id("web-1", Ingress, 90).expect("entry 90");
    let allow_100 = dp.acl_entry_id("web-1", Ingress, 100).expect("entry 100");
    let to_web = |from, port| tcp(from, 4000, "10.0.1.10", port, TCP_SYN);
    expect_rows(
        &mut dp,
        &[
            // 90 denies 198.18.0.0/15 before 100 allows 443 from anywhere.
            ("web-1", Ingress, to_web("198.18.0.10", 443), AclDeny),
            ("web-1", Ingress, to_web("203.0.113.10", 443), Untracked),
            // No entry for 80: the final `*`.
            (
                "web-1",
                Ingress,
                to_web("203.0.113.10", 80),
                AclImplicitDeny,
            ),
            (
                "web-1",
                Ingress,
                icmp("203.0.113.10", "10.0.1.10", 8, 0),
                AclImplicitDeny,
            ),
        ],
    );
    assert_eq!(dp.rule_hits(deny_90), 1);
    assert_eq!(dp.rule_hits(allow_100), 1);
}

#[test]
fn n3_replies_are_judged_by_the_acl_and_a_new_deny_cuts_a_tracked_flow() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(NETWORK_ACL);
    let fetch = between("10.0.1.10", 40000, "203.0.113.10", 443);
    let low_port = between("10.0.1.10", 1000, "203.0.113.10", 443);
    expect_rows(
        &mut dp,
        &[
            ("web-1", Egress, fetch.tcp_out(TCP_SYN), NewFlow),
            // 120 admits replies to ephemeral ports.
            ("web-1", Ingress, fetch.tcp_back(SYN_ACK), Reply),
            // The originator's ACK of the SYN-ACK: established (issue 10).
            ("web-1", Egress, fetch.tcp_out(TCP_ACK), Tracked),
            // A reply to port 1000: conntrack knows the flow, the stateless ACL refuses it.
            ("web-1", Egress, low_port.tcp_out(TCP_SYN), NewFlow),
            (
                "web-1",
                Ingress,
                low_port.tcp_back(SYN_ACK),
                AclImplicitDeny,
            ),
        ],
    );
    let denied = NETWORK_ACL.replace(
        "  [[network_acl.egress]]\n  number = 100",
        "  [[network_acl.egress]]\n  number = 50\n  action = \"deny\"\n  protocol = \"all\"\n  cidr = \"203.0.113.0/24\"\n\n  [[network_acl.egress]]\n  number = 100",
    );
    dp.reconfigure(parse(&denied));
    expect_rows(
        &mut dp,
        &[
            ("web-1", Egress, fetch.tcp_out(TCP_ACK), AclDeny),
            ("web-1", Ingress, fetch.tcp_back(TCP_ACK), Reply),
        ],
    );
    let tracked = dp
        .established_flows()
        .iter()
        .any(|(key, _)| key.remote_port == 443 && key.local_port == 40000);
    assert!(tracked, "the groups still track the flow the ACL cuts");
    dp.reconfigure(parse(NETWORK_ACL));
    expect_rows(
        &mut dp,
        &[("web-1", Egress, fetch.tcp_out(TCP_ACK), Tracked)],
    );
}

const ACL_ORDER: &str = r#"
[[security_group]]
name = "sg"
egress = [{ protocol = "tcp", ports = 443, cidr = ["0.0.0.0/0"] }]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = 22
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "all"
  groups = ["sg"]

[[network_acl]]
name = "acl"
ingress = [{ number = 100, action = "allow", protocol = "tcp", ports = 80, cidr = "0.0.0.0/0" }]
egress = [{ number = 100, action = "allow", protocol = "tcp", ports = 80, cidr = "0.0.0.0/0" }]

[[subnet]]
name = "s"
cidr = ["10.0.1.0/24"]
network_acl = "acl"

[[instance]]
name = "a"
interface = "sgw-a"
addresses = ["10.0.1.10"]
security_groups = ["sg"]

[[instance]]
name = "b"
interface = "sgw-b"
addresses = ["10.0.1.11"]
security_groups = ["sg"]
"#;

#[test]
fn n4_the_acl_comes_before_the_groups_inbound_after_them_outbound_and_not_inside_the_subnet() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(ACL_ORDER);
    // Port 443: the groups admit it from b to a; the ACL would refuse it.
    let inside = between("10.0.1.11", 4000, "10.0.1.10", 443);
    expect_rows(
        &mut dp,
        &[
            // Inbound, both refuse 25; the ACL, first, is the one counted.
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 4000, "10.0.1.10", 25, TCP_SYN),
                AclImplicitDeny,
            ),
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 4000, "10.0.1.10", 22, TCP_SYN),
                AclImplicitDeny,
            ),
            // Outbound, both refuse 25; the groups, first, are the ones counted.
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 25, TCP_SYN),
                NoRule,
            ),
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 80, TCP_SYN),
                NoRule,
            ),
            // The groups admit 443 out, the ACL refuses it: no flow is left behind.
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4001, "203.0.113.1", 443, TCP_SYN),
                AclImplicitDeny,
            ),
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 443, "10.0.1.10", 4001, SYN_ACK),
                AclImplicitDeny,
            ),
            // Inside the subnet the ACL does not apply, either way.
            ("b", Egress, inside.tcp_out(TCP_SYN), NewFlow),
            ("a", Ingress, inside.tcp_out(TCP_SYN), NewFlow),
            ("a", Egress, inside.tcp_back(SYN_ACK), Reply),
            (
                "a",
                Ingress,
                tcp("10.0.2.11", 4000, "10.0.1.10", 443, TCP_SYN),
                AclImplicitDeny,
            ),
        ],
    );
    let left_behind = dp
        .embryonic_flows()
        .iter()
        .chain(dp.established_flows().iter())
        .any(|(key, _)| key.local_port == 4001);
    assert!(
        !left_behind,
        "what the ACL refused outbound started no flow"
    );
}

/// Thousands of random packets against random compiled policies, with prefix lists and
/// subnets under random network ACLs: every verdict and reason equals the reference
/// evaluator's (with its reference conntrack), every packet a rule admits increments exactly
/// that rule's hit counter, and every packet an ACL entry judges that entry's. A third of the
/// packets answer the one before (replies meet conntrack and the stateless ACL, C1, N3), and
/// each policy's prefix lists are edited halfway through, as a delta (P1).
#[test]
fn differential_random_policies_match_the_reference_evaluator() {
    if !privileged() {
        return;
    }
    let all_interfaces = testgen::INTERFACES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            format!("[[instance]]\nname = \"i{index}\"\ninterface = \"{name}\"\naddresses = [\"10.0.9.{index}\"]\nsecurity_groups = [\"g\"]\n")
        })
        .collect::<String>();
    let mut dp = TestDatapath::from_toml(&format!(
        "[[security_group]]\nname = \"g\"\n{all_interfaces}"
    ));
    let started = Instant::now();
    let mut packets = 0;
    let mut acl_judged = 0;
    let mut acl_refused = 0;
    let mut seen = std::collections::BTreeMap::<Reason, usize>::new();
    let mut established = 0;
    for seed in 0..40u64 {
        let mut rng = testgen::Rng::new(seed);
        let mut config = testgen::random_config(&mut rng);
        dp.flush_conntrack();
        dp.reconfigure(config.clone());
        let mut session = Session::new(config.clone());
        let mut conversations = testgen::Conversations::default();
        for step in 0..100 {
            // P1: entries edited mid-sequence, applied as a delta (no flip), flows kept.
            if step == 70 && !config.prefix_lists.is_empty() {
                let other = testgen::random_config(&mut rng);
                for (list, replacement) in config.prefix_lists.iter_mut().zip(&other.prefix_lists) {
                    list.entries = replacement.entries.clone();
                }
                dp.edit_prefix_lists(config.clone());
                session.reconfigure(config.clone());
            }
            let (instance, direction, packet) = conversations.next(&mut rng, &config);
            let expected = session.process(
                &instance,
                direction,
                &Frame::Ip(packet.clone()),
                started.elapsed().as_secs_f64(),
            );
            let hit_rule = expected
                .rule
                .map(|bit| dp.global_rule_id(&instance, direction, bit));
            let hit_entry = match expected.acl {
                Some(sgwall::eval::AclVerdict::Entry { number, .. }) => {
                    dp.acl_entry_id(&instance, direction, number)
                }
                _ => None,
            };
            let hits_before = hit_rule.map(|rule| dp.rule_hits(rule));
            let entry_hits_before = hit_entry.map(|entry| dp.rule_hits(entry));
            let sent = dp.send(&instance, direction, &from_eval(&packet));
            *seen.entry(sent.reason).or_default() += 1;
            assert_eq!(
                sent.reason, expected.reason,
                "seed {seed} step {step}: {instance} {direction} {packet:?}: datapath {sent}, evaluator {:?}",
                expected
            );
            if let (Some(rule), Some(before)) = (hit_rule, hits_before) {
                assert_eq!(
                    dp.rule_hits(rule),
                    before + 1,
                    "seed {seed}: hit counter of rule {rule}"
                );
            }
            if let (Some(entry), Some(before)) = (hit_entry, entry_hits_before) {
                assert_eq!(
                    dp.rule_hits(entry),
                    before + 1,
                    "seed {seed}: hit counter of ACL entry {entry}"
                );
                acl_judged += 1;
            }
            acl_refused += usize::from(matches!(expected.reason, AclDeny | AclImplicitDeny));
            packets += 1;
        }
        established += dp.established_flows().len();
    }
    assert_eq!(packets, 4000);
    assert!(
        acl_judged > 100 && acl_refused > 100,
        "random ACLs judged too little: {acl_judged} entry hits, {acl_refused} refusals"
    );
    // The conversations reach conntrack: replies, tracked packets, completed handshakes.
    println!("reasons: {seen:?}; established flows at the end of each seed: {established}");
    for reason in [Tracked, Reply, NewFlow, NoRule, RuleNoEntry] {
        assert!(
            seen.get(&reason).copied().unwrap_or(0) >= 20,
            "{reason:?}: {seen:?}"
        );
    }
    // Fewer than without ACLs: random ACLs refuse about a third of the packets, handshakes
    // included.
    assert!(established >= 10, "{established} flows established");
}

/// The verifier accepts every program on this kernel, within its limits. Prints the figures
/// `docs/design.md` records.
#[test]
fn verifier_accepts_every_program_within_limits() {
    if !privileged() {
        return;
    }
    let dp = base();
    let stacks =
        sgwall_tests::datapath::stack_depths(sgwall::datapath::object::bytes().expect("object"));
    println!("| program | verified instructions | stack bytes |");
    println!("| --- | --- | --- |");
    for name in [
        program_names::XDP_INGRESS,
        program_names::TC_INGRESS,
        program_names::TC_EGRESS,
        program_names::XDP_DECIDE,
        program_names::TC_DECIDE,
    ] {
        let program = dp.datapath.ebpf.program(name).expect("program");
        let info = program.info().expect("loaded");
        let verified = info
            .verified_instruction_count()
            .expect("kernel reports it");
        let stack = stacks[name];
        println!("| {name} | {verified} | {stack} |");
        assert!(verified < 1_000_000, "{name}: {verified} instructions");
        assert!(stack <= 512, "{name}: {stack} bytes of stack");
        assert!(stack > 0, "{name}: the stack scan found nothing");
    }
}
