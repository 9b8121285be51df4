//! One test (at least) per statement of `../shared/ec2-sg-semantics.md` that a verdict can
//! show. Statements about parsing (H2, H3) and about the runtime (H4) are shown in tiers 2-3;
//! validation statements (R7, R8, G5) in `config`'s tests.

use std::path::Path;

use filter_common::{
    ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TIMESTAMP, ICMPV6_ECHO_REQUEST,
    ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERTISEMENT,
    IPV6_UNWALKABLE_EXTENSIONS, TCP_HANDSHAKE_ACK_WINDOW,
};

// The explicit import wins over the glob of reasons, which has a `Fragment` too.
use super::Fragment;
use super::*;
use crate::model::Direction::{Egress, Ingress};
use Reason::*;

const WEB_APP_DB: &str = include_str!("web-app-db.toml");

fn config(text: &str) -> Config {
    match crate::config::load_str(text, Path::new("eval-test.toml")) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("invalid test config:\n{error}"),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn packet(src: &str, dst: &str, transport: Transport) -> Frame {
    Frame::Ip(IpPacket {
        src: ip(src),
        dst: ip(dst),
        transport,
        fragment: Fragment::Whole,
    })
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Frame {
    packet(src, dst, Transport::tcp(sport, dport, flags))
}

/// A TCP segment with explicit sequence and acknowledgement numbers.
fn tcp_numbered(
    (src, sport): (&str, u16),
    (dst, dport): (&str, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> Frame {
    let transport = Transport::Tcp {
        src_port: sport,
        dst_port: dport,
        flags,
        seq,
        ack,
    };
    packet(src, dst, transport)
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Frame {
    packet(
        src,
        dst,
        Transport::Udp {
            src_port: sport,
            dst_port: dport,
        },
    )
}

fn icmp(src: &str, dst: &str, icmp_type: u8, code: u8) -> Frame {
    echo(src, dst, icmp_type, code, 7)
}

fn echo(src: &str, dst: &str, icmp_type: u8, code: u8, echo_id: u16) -> Frame {
    let transport = Transport::Icmp {
        icmp_type,
        code,
        echo_id,
        quoted: None,
    };
    packet(src, dst, transport)
}

/// Judges a lone packet (no tracked flow).
fn judge(config: &Config, instance: &str, direction: Direction, frame: &Frame) -> Decision {
    let instance = config.instance(instance).expect("instance");
    evaluate(config, instance, direction, frame, &CtView::default())
}

/// A packet judged alone: the instance whose interface sees it, the direction it travels
/// there, and the reason the evaluator must give it.
type Lone = (&'static str, Direction, Frame, Reason);

fn expect_judged(config: &Config, rows: &[Lone]) {
    for (index, (instance, direction, frame, reason)) in rows.iter().enumerate() {
        let decision = judge(config, instance, *direction, frame);
        assert_eq!(
            decision.reason, *reason,
            "row {index}: {instance} {direction} {frame:?}"
        );
    }
}

/// A packet of a session: as [`Lone`], with the time (in seconds) it is seen at.
type Step = (&'static str, Direction, Frame, f64, Reason);

/// Feeds the steps to the session in order, each checked; a failure names its step.
fn expect_steps(session: &mut Session, steps: &[Step]) {
    for (index, (instance, direction, frame, at, reason)) in steps.iter().enumerate() {
        let decision = session.process(instance, *direction, frame, *at);
        assert_eq!(
            decision.reason, *reason,
            "step {index} at {at} s: {instance} {direction} {frame:?}"
        );
    }
}

/// The rule (its id in the effective rules) that admits a lone packet.
fn admitting_rule(config: &Config, instance: &str, frame: &Frame) -> Option<u16> {
    judge(config, instance, Ingress, frame).rule
}

#[test]
fn r1_rules_only_allow_and_unmatched_traffic_drops() {
    let config = config(WEB_APP_DB);
    let https = tcp("203.0.113.1", 4000, "10.0.1.10", 443, TCP_SYN);
    let ssh = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    let denied = judge(&config, "web-1", Ingress, &https);
    assert_eq!(denied, Decision::because(NoRule));
    let admitted = judge(&config, "web-1", Ingress, &ssh);
    assert_eq!(admitted, Decision::by_rule(NewFlow, 1));
}

#[test]
fn r2_default_egress_allows_everything_and_empty_egress_nothing() {
    let config = config(WEB_APP_DB);
    let dns = |from, to| udp(from, 5000, to, 53);
    expect_judged(
        &config,
        &[
            ("web-1", Egress, dns("10.0.1.10", "203.0.113.1"), NewFlow),
            ("web-1", Egress, dns("10.0.1.10", "10.9.9.9"), NewFlow),
            // Default egress covers ::/0 too.
            ("web-1", Egress, dns("fd00:1::10", "2001:db8::1"), NewFlow),
            // egress = [] admits nothing outbound.
            ("app-1", Egress, dns("10.0.2.10", "203.0.113.1"), NoRule),
        ],
    );
}

#[test]
fn r3_protocols_numbers_all_and_icmp_type_code() {
    let config = config(
        r#"
[[security_group]]
name = "g"
  [[security_group.ingress]]
  protocol = "47"
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = 6
  ports = "443"
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "icmp"
  icmp_type = 8
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "all"
  cidr = ["192.0.2.0/24"]
[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.1.1.1"]
security_groups = ["g"]
"#,
    );
    let gre = packet("10.2.2.2", "10.1.1.1", Transport::Other(47));
    let https = tcp("10.2.2.2", 1000, "10.1.1.1", 443, TCP_SYN);
    let echo = icmp("10.2.2.2", "10.1.1.1", ICMP_ECHO_REQUEST, 0);
    let timestamp = icmp("10.2.2.2", "10.1.1.1", ICMP_TIMESTAMP, 0);
    let anything = udp("192.0.2.9", 1, "10.1.1.1", 9);
    // A protocol number, all ports; 6 is tcp; type 8, any code; `all` protocols and ports.
    for (frame, rule) in [(&gre, 0), (&https, 1), (&echo, 2), (&anything, 3)] {
        assert_eq!(admitting_rule(&config, "i", frame), Some(rule), "{frame:?}");
    }
    expect_judged(&config, &[("i", Ingress, timestamp, NoRule)]);
}

#[test]
fn r4_only_the_destination_port_of_the_first_packet_is_matched() {
    let config = config(WEB_APP_DB);
    let from_port_80 = tcp("203.0.113.1", 80, "10.0.1.10", 4000, TCP_SYN);
    let to_port_80 = tcp("203.0.113.1", 4000, "10.0.1.10", 80, TCP_SYN);
    expect_judged(
        &config,
        &[
            ("web-1", Ingress, from_port_80, NoRule),
            ("web-1", Ingress, to_port_80, Untracked),
        ],
    );
}

#[test]
fn r5_any_ipv4_never_matches_ipv6() {
    let config = config(WEB_APP_DB);
    let v6 = tcp("2001:db8::1", 4000, "fd00:1::10", 80, TCP_SYN);
    expect_judged(&config, &[("web-1", Ingress, v6, NoRule)]);
}

#[test]
fn r6_rules_of_all_attached_groups_are_unioned() {
    let text = r#"
[[security_group]]
name = "a"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "1000-2000"
  cidr = ["10.0.0.0/8"]
[[security_group]]
name = "b"
  [[security_group.ingress]]
  protocol = "udp"
  ports = "53"
  cidr = ["10.0.0.0/8"]
[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.1.1.1"]
security_groups = ["a", "b"]
"#;
    let config = config(text);
    let dns = udp("10.2.2.2", 5000, "10.1.1.1", 53);
    assert_eq!(admitting_rule(&config, "i", &dns), Some(1));
    let reordered = self::config(&text.replace(r#"["a", "b"]"#, r#"["b", "a"]"#));
    let decision = judge(&reordered, "i", Ingress, &dns);
    assert!(decision.admitted(), "order does not change the verdict");
    assert_eq!(decision.rule, Some(0), "order only renumbers rules");
}

#[test]
fn g1_group_reference_matches_every_member_here_or_elsewhere() {
    let config = config(WEB_APP_DB);
    let from = |member| tcp(member, 4000, "10.0.2.10", 8080, TCP_SYN);
    expect_judged(
        &config,
        &[
            // A member with an interface here, and one described elsewhere.
            ("app-1", Ingress, from("10.0.1.10"), NewFlow),
            ("app-1", Ingress, from("10.0.1.99"), NewFlow),
            ("app-1", Ingress, from("10.0.1.50"), NoRule),
        ],
    );
}

#[test]
fn g2_all_addresses_of_a_member_count() {
    let config = config(WEB_APP_DB);
    let instance = config.instance("app-1").expect("app-1");
    let rule = &effective_rules(&config, instance, Ingress)[0];
    let service = Service {
        proto: PROTO_TCP,
        port: Some(8080),
        icmp: None,
    };
    assert!(
        rule_admits(&config, rule, ip("fd00:1::10"), &service),
        "the IPv6 address of web-1 counts"
    );
}

#[test]
fn g3_membership_change_takes_effect_without_editing_rules() {
    let mut session = Session::new(config(WEB_APP_DB));
    let from_newcomer = |port| tcp("10.0.1.77", port, "10.0.2.10", 8080, TCP_SYN);
    expect_steps(
        &mut session,
        &[("app-1", Ingress, from_newcomer(4000), 0.0, NoRule)],
    );
    let joined = WEB_APP_DB.replace(
        r#"addresses = ["10.0.1.99"]"#,
        r#"addresses = ["10.0.1.99", "10.0.1.77"]"#,
    );
    session.reconfigure(config(&joined));
    expect_steps(
        &mut session,
        &[("app-1", Ingress, from_newcomer(4001), 1.0, NewFlow)],
    );
    session.reconfigure(config(WEB_APP_DB));
    expect_steps(
        &mut session,
        &[("app-1", Ingress, from_newcomer(4002), 2.0, NoRule)],
    );
}

#[test]
fn g4_a_group_may_reference_itself() {
    let config = config(
        r#"
[[security_group]]
name = "default"
  [[security_group.ingress]]
  protocol = "all"
  groups = ["default"]
[[instance]]
name = "a"
interface = "sgw-a"
addresses = ["10.0.0.1"]
security_groups = ["default"]
[[instance]]
name = "b"
interface = "sgw-b"
addresses = ["10.0.0.2"]
security_groups = ["default"]
"#,
    );
    let from = |peer| udp(peer, 1, "10.0.0.1", 9999);
    expect_judged(
        &config,
        &[
            ("a", Ingress, from("10.0.0.2"), NewFlow),
            ("a", Ingress, from("10.0.0.3"), NoRule),
        ],
    );
}

#[test]
fn c1_reply_passes_whatever_the_reverse_rules_say() {
    let mut session = Session::new(config(WEB_APP_DB));
    let request = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    let reply = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    let unsolicited = tcp("10.0.2.10", 8080, "10.0.1.10", 4001, TCP_SYN | TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("app-1", Ingress, request, 0.0, NewFlow),
            // egress = [] yet the reply passes.
            ("app-1", Egress, reply, 0.1, Reply),
            ("app-1", Egress, unsolicited, 0.2, NoRule),
        ],
    );
}

#[test]
fn c2_state_is_per_interface() {
    let mut session = Session::new(config(WEB_APP_DB));
    let to_app = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    // The same tuple seen on web-1 is not a reply there: web-1 has its own table.
    let on_web = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("app-1", Ingress, to_app, 0.0, NewFlow),
            ("web-1", Ingress, on_web, 0.1, NoRule),
        ],
    );
}

#[test]
fn c3_icmp_echo_is_tracked_like_a_flow() {
    let mut session = Session::new(config(WEB_APP_DB));
    let request = echo("10.0.1.10", "203.0.113.1", ICMP_ECHO_REQUEST, 0, 42);
    let reply = |id| echo("203.0.113.1", "10.0.1.10", ICMP_ECHO_REPLY, 0, id);
    expect_steps(
        &mut session,
        &[
            ("web-1", Egress, request, 0.0, NewFlow),
            // No inbound ICMP rule needed.
            ("web-1", Ingress, reply(42), 0.1, Reply),
            ("web-1", Ingress, reply(43), 0.2, NoRule),
        ],
    );
}

#[test]
fn c4_removing_a_rule_keeps_tracked_flows_unless_the_cut_option_is_on() {
    let ssh = |port, flags| tcp("198.51.100.7", port, "10.0.1.10", 22, flags);
    let without_ssh = WEB_APP_DB.replace(
        r#"cidr = ["198.51.100.0/24"]"#,
        r#"cidr = ["192.0.2.0/24"]"#,
    );
    for (cut, expected) in [(false, Tracked), (true, ConntrackCut)] {
        let option = if cut {
            "conntrack = { cut_on_rule_removal = true }\n"
        } else {
            ""
        };
        let with_option = |text: &str| {
            text.replace(
                "security_groups = [\"web\"]\n\n[[instance]]",
                &format!("security_groups = [\"web\"]\n{option}\n[[instance]]"),
            )
        };
        let mut session = Session::new(config(&with_option(WEB_APP_DB)));
        expect_steps(
            &mut session,
            &[("web-1", Ingress, ssh(4000, TCP_SYN), 0.0, NewFlow)],
        );
        session.reconfigure(config(&with_option(&without_ssh)));
        expect_steps(
            &mut session,
            &[
                ("web-1", Ingress, ssh(4000, TCP_ACK), 1.0, expected),
                ("web-1", Ingress, ssh(4001, TCP_SYN), 1.1, NoRule),
            ],
        );
    }
}

#[test]
fn c5_idle_timeouts_by_protocol_and_state() {
    let text = r#"
[[security_group]]
name = "dns"
egress = []
  [[security_group.ingress]]
  protocol = "udp"
  ports = "53"
  cidr = ["10.0.0.0/8"]
[[instance]]
name = "i"
interface = "sgw-i"
addresses = ["10.1.1.1"]
security_groups = ["dns"]
conntrack = { udp_timeout = 30, udp_stream_timeout = 120 }
"#;
    let query = || udp("10.2.2.2", 5000, "10.1.1.1", 53);
    let answer = || udp("10.1.1.1", 53, "10.2.2.2", 5000);
    let mut session = Session::new(config(text));
    expect_steps(
        &mut session,
        &[
            ("i", Ingress, query(), 0.0, NewFlow),
            ("i", Egress, answer(), 29.0, Reply),
            // 30 s idle: gone.
            ("i", Egress, answer(), 59.5, NoRule),
        ],
    );

    // Both ways more than once: a stream, kept for the stream timeout.
    let mut session = Session::new(config(text));
    expect_steps(
        &mut session,
        &[
            ("i", Ingress, query(), 0.0, NewFlow),
            ("i", Egress, answer(), 0.5, Reply),
            ("i", Ingress, query(), 1.0, Tracked),
            ("i", Egress, answer(), 1.5, Reply),
            ("i", Egress, answer(), 100.0, Reply),
            ("i", Egress, answer(), 221.0, NoRule),
        ],
    );
}

#[test]
fn c6_full_allowance_drops_new_flows_and_keeps_established_ones() {
    let text = WEB_APP_DB.replace(
        "security_groups = [\"app\"]\n",
        "security_groups = [\"app\"]\nconntrack = { max_flows = 1 }\n",
    );
    let mut session = Session::new(config(&text));
    let first = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    let first_reply = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    let first_ack = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_ACK);
    let second = tcp("10.0.1.99", 4000, "10.0.2.10", 8080, TCP_SYN);
    let first_more = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_ACK | TCP_PSH);
    expect_steps(
        &mut session,
        &[
            ("app-1", Ingress, first, 0.0, NewFlow),
            ("app-1", Egress, first_reply, 0.1, Reply),
            ("app-1", Ingress, first_ack, 0.2, Tracked),
            ("app-1", Ingress, second, 0.3, ConntrackFull),
            ("app-1", Ingress, first_more, 0.4, Tracked),
        ],
    );
}

/// Issue 10: half-open TCP flows (SYN-ACK sent, never acknowledged, as from spoofed sources)
/// stay embryonic: they never use the allowance, so they cannot lock new connections out.
#[test]
fn c6_half_open_flows_never_use_the_allowance() {
    let text = WEB_APP_DB.replacen(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nconntrack = { max_flows = 1 }\n",
        1,
    );
    let mut session = Session::new(config(&text));
    // SSH from the admin range: a tracked flow (port 80 from anywhere would be untracked, C8).
    let syn = |src| tcp(src, 4000, "10.0.1.10", 22, TCP_SYN);
    let syn_ack = |dst| tcp("10.0.1.10", 22, dst, 4000, TCP_SYN | TCP_ACK);
    let ack = |src| tcp(src, 4000, "10.0.1.10", 22, TCP_ACK);
    let mut steps = Vec::new();
    // Three spoofed half-open flows: each SYN is a new flow although the allowance is one.
    let spoofed = ["198.51.100.21", "198.51.100.22", "198.51.100.23"];
    for (index, source) in spoofed.into_iter().enumerate() {
        let at = index as f64;
        steps.push(("web-1", Ingress, syn(source), at, NewFlow));
        steps.push(("web-1", Egress, syn_ack(source), at + 0.5, Reply));
    }
    // A real client completes its handshake and takes the one slot...
    steps.push(("web-1", Ingress, syn("198.51.100.7"), 4.0, NewFlow));
    steps.push(("web-1", Egress, syn_ack("198.51.100.7"), 4.1, Reply));
    steps.push(("web-1", Ingress, ack("198.51.100.7"), 4.2, Tracked));
    // ...and only then is the allowance used up.
    steps.push(("web-1", Ingress, syn("198.51.100.8"), 4.3, ConntrackFull));
    expect_steps(&mut session, &steps);
    let established: Vec<_> = session
        .flows
        .iter()
        .filter(|(_, flow)| flow.established)
        .map(|(key, _)| key.remote)
        .collect();
    assert_eq!(established, [ip("198.51.100.7")]);
    let half_open = session
        .flows
        .values()
        .filter(|flow| !flow.established && flow.reply_isn.is_some())
        .count();
    assert_eq!(half_open, 3);
}

/// Issue 10, the UDP case: a spoofed datagram answered once (the reply goes nowhere) leaves
/// an embryonic flow that uses no allowance; an originator that speaks again after the reply
/// establishes its flow.
#[test]
fn c6_a_udp_flow_is_established_when_its_originator_speaks_after_a_reply() {
    let text = WEB_APP_DB.replacen(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nconntrack = { max_flows = 1 }\n",
        1,
    )
    .replace(
        "  ports = \"22\"\n  cidr = [\"198.51.100.0/24\"]\n",
        "  ports = \"22\"\n  cidr = [\"198.51.100.0/24\"]\n  [[security_group.ingress]]\n  protocol = \"udp\"\n  ports = \"53\"\n  cidr = [\"198.51.100.0/24\"]\n",
    );
    let mut session = Session::new(config(&text));
    let query = |src| udp(src, 5000, "10.0.1.10", 53);
    let answer = |dst| udp("10.0.1.10", 53, dst, 5000);
    let mut steps = Vec::new();
    for (index, spoofed) in ["198.51.100.21", "198.51.100.22"].into_iter().enumerate() {
        let at = index as f64;
        steps.push(("web-1", Ingress, query(spoofed), at, NewFlow));
        steps.push(("web-1", Egress, answer(spoofed), at + 0.5, Reply));
    }
    steps.push(("web-1", Ingress, query("198.51.100.7"), 3.0, NewFlow));
    steps.push(("web-1", Egress, answer("198.51.100.7"), 3.1, Reply));
    steps.push(("web-1", Ingress, query("198.51.100.7"), 3.2, Tracked));
    steps.push(("web-1", Ingress, query("198.51.100.8"), 3.3, ConntrackFull));
    expect_steps(&mut session, &steps);
    let established: Vec<_> = session
        .flows
        .iter()
        .filter(|(_, flow)| flow.established)
        .map(|(key, _)| key.remote)
        .collect();
    assert_eq!(established, [ip("198.51.100.7")]);
}

/// C5 and issue 10: a half-open TCP flow is "not yet established": it idles out after 60 s,
/// and its late ACK is judged by the rules alone, with no entry.
#[test]
fn c5_a_half_open_tcp_flow_expires_after_60_seconds() {
    let mut session = Session::new(config(WEB_APP_DB));
    let syn = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    let syn_ack = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    let ack = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_ACK);
    let late_reply = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("app-1", Ingress, syn, 0.0, NewFlow),
            ("app-1", Egress, syn_ack.clone(), 0.5, Reply),
            // A retransmitted SYN-ACK just inside the 60 s refreshes the flow...
            ("app-1", Egress, syn_ack, 59.5, Reply),
            // ...and 60 s after it, the flow is gone: the ACK passes on the ingress rule
            // alone, with no entry, and nothing admits another SYN-ACK (app has no egress).
            ("app-1", Ingress, ack, 119.5, RuleNoEntry),
            ("app-1", Egress, late_reply, 119.6, NoRule),
        ],
    );
    assert!(session.flows.values().all(|flow| !flow.established));
}

/// Issue 10: only an ACK of the SYN-ACK's own sequence number completes the handshake; a
/// blind ACK with another number leaves the flow half-open.
#[test]
fn c6_only_an_ack_of_the_syn_ack_establishes_a_tcp_flow() {
    let mut session = Session::new(config(WEB_APP_DB));
    let client = ("10.0.1.10", 4000);
    let server = ("10.0.2.10", 8080);
    let steps = [
        (client, server, TCP_SYN, 7, 0, NewFlow, false),
        (server, client, TCP_SYN | TCP_ACK, 1000, 8, Reply, false),
        // Guesses: the SYN-ACK's own number, and one past the handshake window.
        (client, server, TCP_ACK, 8, 1000, Tracked, false),
        (
            client,
            server,
            TCP_ACK,
            8,
            1001 + TCP_HANDSHAKE_ACK_WINDOW,
            Tracked,
            false,
        ),
        // A SYN with the ACK is not the handshake's last segment either.
        (client, server, TCP_SYN | TCP_ACK, 8, 1001, Tracked, false),
        (client, server, TCP_ACK, 8, 1001, Tracked, true),
    ];
    for (index, (from, to, flags, seq, ack, reason, established)) in steps.into_iter().enumerate() {
        let direction = if from == client { Ingress } else { Egress };
        let frame = tcp_numbered(from, to, flags, seq, ack);
        let decision = session.process("app-1", direction, &frame, index as f64);
        assert_eq!(decision.reason, reason, "step {index}");
        let flow = session.flows.values().next().expect("one flow");
        assert_eq!(flow.established, established, "step {index}");
    }
}

#[test]
fn c7_icmp_errors_need_a_rule_unless_related_icmp_is_on() {
    let text = WEB_APP_DB.replacen(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nRELATED\n",
        1,
    );
    let quoted = QuotedFlow {
        proto: PROTO_UDP,
        src: ip("10.0.1.10"),
        dst: ip("203.0.113.1"),
        src_port: 5000,
        dst_port: 53,
    };
    let port_unreachable = Transport::Icmp {
        icmp_type: ICMP_DEST_UNREACHABLE,
        code: 3,
        echo_id: 0,
        quoted: Some(quoted),
    };
    let error = || packet("203.0.113.1", "10.0.1.10", port_unreachable);
    let request = || udp("10.0.1.10", 5000, "203.0.113.1", 53);
    for (related, expected) in [(false, NoRule), (true, RelatedIcmp)] {
        let line = if related { "related_icmp = true" } else { "" };
        let mut session = Session::new(config(&text.replace("RELATED", line)));
        expect_steps(
            &mut session,
            &[
                ("web-1", Egress, request(), 0.0, NewFlow),
                ("web-1", Ingress, error(), 0.1, expected),
            ],
        );
    }
    // An error about a flow that does not exist is never related.
    let mut session = Session::new(config(&text.replace("RELATED", "related_icmp = true")));
    expect_steps(&mut session, &[("web-1", Ingress, error(), 0.0, NoRule)]);
}

#[test]
fn c8_flows_open_both_ways_from_anywhere_are_untracked() {
    let config = config(WEB_APP_DB);
    let http = tcp("203.0.113.1", 4000, "10.0.1.10", 80, TCP_SYN);
    let ssh = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    let outbound = tcp("10.0.1.10", 4000, "203.0.113.1", 443, TCP_SYN);
    expect_judged(
        &config,
        &[
            ("web-1", Ingress, http, Untracked),
            // Not from anywhere: tracked.
            ("web-1", Ingress, ssh, NewFlow),
            // Inbound is not open on all ports: tracked.
            ("web-1", Egress, outbound, NewFlow),
        ],
    );
}

#[test]
fn i1_source_destination_check() {
    let config_on = config(WEB_APP_DB);
    let spoofed = || udp("10.9.9.9", 5000, "203.0.113.1", 53);
    let misaddressed = tcp("203.0.113.1", 4000, "10.0.1.11", 80, TCP_SYN);
    expect_judged(
        &config_on,
        &[
            ("web-1", Egress, spoofed(), SpoofedSource),
            ("web-1", Ingress, misaddressed, SpoofedDestination),
        ],
    );
    let config_off = config(&WEB_APP_DB.replacen(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nsource_dest_check = false\n",
        1,
    ));
    // A NAT instance.
    expect_judged(&config_off, &[("web-1", Egress, spoofed(), NewFlow)]);
}

#[test]
fn i2_arp_and_neighbour_discovery_bypass_rules_but_arp_is_checked() {
    let config = config(WEB_APP_DB);
    let arp = |sender: &str| Frame::Arp {
        sender: sender.parse().expect("v4"),
    };
    let solicitation = icmp(
        "fe80::1",
        "ff02::1:ff00:10",
        ICMPV6_NEIGHBOR_SOLICITATION,
        0,
    );
    expect_judged(
        &config,
        &[
            ("web-1", Egress, arp("10.0.1.10"), Arp),
            // An address probe.
            ("web-1", Egress, arp("0.0.0.0"), Arp),
            ("web-1", Egress, arp("10.0.2.10"), ArpSpoof),
            // Inbound ARP is not checked.
            ("web-1", Ingress, arp("10.0.2.10"), Arp),
            ("app-1", Egress, solicitation, Icmpv6Link),
        ],
    );
}

#[test]
fn i3_exempt_destinations_skip_the_rules() {
    let config = config(&WEB_APP_DB.replace(
        "security_groups = [\"app\"]\n",
        "security_groups = [\"app\"]\nexempt = [\"169.254.169.254/32\"]\n",
    ));
    let to = |destination| tcp("10.0.2.10", 4000, destination, 80, TCP_SYN);
    expect_judged(
        &config,
        &[
            ("app-1", Egress, to("169.254.169.254"), Exempt),
            // Nothing is exempt by default.
            ("app-1", Egress, to("169.254.169.253"), NoRule),
        ],
    );
}

#[test]
fn i3_exempt_list_is_judged_after_the_source_check_and_before_the_destination_check() {
    let config = config(&WEB_APP_DB.replace(
        "security_groups = [\"app\"]\n",
        "security_groups = [\"app\"]\nexempt = [\"169.254.169.254/32\"]\n",
    ));
    expect_judged(
        &config,
        &[
            // An instance never reaches an exempt address with a spoofed source...
            (
                "app-1",
                Egress,
                tcp("10.9.9.9", 4000, "169.254.169.254", 80, TCP_SYN),
                SpoofedSource,
            ),
            // ...but the exempt address reaches it at any address.
            (
                "app-1",
                Ingress,
                tcp("169.254.169.254", 80, "10.0.2.99", 4000, TCP_SYN),
                Exempt,
            ),
        ],
    );
}

/// A VM whose MAC the config gives (I5, I7), and one with DHCP turned off (I6).
const VMS: &str = r#"
[[security_group]]
name = "vm"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "22"
  cidr = ["10.0.0.0/8"]

[[instance]]
name = "vm-1"
interface = "vnet1"
mac = "52:54:00:12:34:56"
addresses = ["10.0.6.10"]
security_groups = ["vm"]

[[instance]]
name = "vm-2"
interface = "vnet2"
addresses = ["10.0.7.10", "fe80::7"]
security_groups = ["vm"]
dhcp = false

[[instance]]
name = "nat-1"
interface = "vnet3"
addresses = ["10.0.8.10"]
security_groups = ["vm"]
source_dest_check = false
"#;

/// vm-1's EUI-64 link-local address.
const VM1_LINK_LOCAL: &str = "fe80::5054:ff:fe12:3456";

#[test]
fn i5_link_local_addresses_are_the_instances_own() {
    let config = config(VMS);
    let vm_1 = config.instance("vm-1").expect("vm-1");
    assert_eq!(vm_1.eui64_link_local(), Some(ip(VM1_LINK_LOCAL)));
    assert_eq!(
        vm_1.own_addresses(),
        vec![ip("10.0.6.10"), ip(VM1_LINK_LOCAL)]
    );
    let ping = |src, dst| echo(src, dst, ICMPV6_ECHO_REQUEST, 0, 1);
    expect_judged(
        &config,
        &[
            ("vm-1", Egress, ping(VM1_LINK_LOCAL, "fe80::1"), NewFlow),
            ("vm-1", Ingress, ping("fe80::1", VM1_LINK_LOCAL), NoRule),
            ("vm-1", Egress, ping("fe80::2", "fe80::1"), SpoofedSource),
            // Written in `addresses`, a link-local address is the instance's too.
            ("vm-2", Egress, ping("fe80::7", "fe80::1"), NewFlow),
            (
                "vm-2",
                Egress,
                ping(VM1_LINK_LOCAL, "fe80::1"),
                SpoofedSource,
            ),
        ],
    );
    // Group membership (G1) counts `addresses` only.
    assert!(!config.group_members("vm").contains(&ip(VM1_LINK_LOCAL)));
}

#[test]
fn i6_dhcp_passes_without_rules_and_leaves_no_state() {
    let mut session = Session::new(config(VMS));
    let broadcast = "255.255.255.255";
    expect_steps(
        &mut session,
        &[
            (
                "vm-1",
                Egress,
                udp("0.0.0.0", 68, broadcast, 67),
                0.0,
                DhcpClient,
            ),
            (
                "vm-1",
                Ingress,
                udp("10.0.6.1", 67, "10.0.6.10", 68),
                0.1,
                DhcpServerReply,
            ),
            (
                "vm-1",
                Ingress,
                udp("10.0.6.1", 67, broadcast, 68),
                0.2,
                DhcpServerReply,
            ),
            (
                "vm-1",
                Egress,
                udp("10.0.6.10", 68, "10.0.6.1", 67),
                0.3,
                DhcpClient,
            ),
            (
                "vm-1",
                Egress,
                udp(VM1_LINK_LOCAL, 546, "ff02::1:2", 547),
                0.4,
                DhcpClient,
            ),
            (
                "vm-1",
                Ingress,
                udp("fe80::1", 547, VM1_LINK_LOCAL, 546),
                0.5,
                DhcpServerReply,
            ),
            // Spoofed sources still never leave; replies go to the instance's addresses only.
            (
                "vm-1",
                Egress,
                udp("10.9.9.9", 68, broadcast, 67),
                0.6,
                SpoofedSource,
            ),
            (
                "vm-1",
                Egress,
                udp("0.0.0.0", 68, "10.0.6.1", 67),
                0.7,
                SpoofedSource,
            ),
            (
                "vm-1",
                Ingress,
                udp("10.0.6.1", 67, "10.0.6.11", 68),
                0.8,
                SpoofedDestination,
            ),
            // The DISCOVER opened nothing else.
            (
                "vm-1",
                Ingress,
                udp("10.0.6.1", 67, "10.0.6.10", 5000),
                0.9,
                NoRule,
            ),
            (
                "vm-2",
                Egress,
                udp("0.0.0.0", 68, broadcast, 67),
                1.0,
                SpoofedSource,
            ),
            (
                "vm-2",
                Ingress,
                udp("10.0.7.1", 67, "10.0.7.10", 68),
                1.1,
                NoRule,
            ),
            // Without the source/destination check, DHCP works too.
            (
                "nat-1",
                Egress,
                udp("0.0.0.0", 68, broadcast, 67),
                1.2,
                DhcpClient,
            ),
        ],
    );
    assert!(session.flows.is_empty(), "{:?}", session.flows);
    let host = config(&VMS.replace("source_dest_check = false", "attach = \"host\""));
    let host_dhcp = udp("10.0.8.1", 67, "10.0.8.10", 68);
    // Off by default on the host's own NIC.
    expect_judged(&host, &[("nat-1", Ingress, host_dhcp.clone(), NoRule)]);
    let host_on = config(&VMS.replace(
        "source_dest_check = false",
        "attach = \"host\"\ndhcp = true",
    ));
    expect_judged(&host_on, &[("nat-1", Ingress, host_dhcp, DhcpServerReply)]);
}

#[test]
fn i7_guards_stop_an_instance_acting_as_router_or_dhcp_server_or_from_another_mac() {
    let config = config(VMS);
    let vm_1 = config.instance("vm-1").expect("vm-1");
    let advertisement = |src| icmp(src, "ff02::1", ICMPV6_ROUTER_ADVERTISEMENT, 0);
    let redirect = |src, dst| icmp(src, dst, ICMPV6_REDIRECT, 0);
    expect_judged(
        &config,
        &[
            (
                "vm-1",
                Egress,
                advertisement(VM1_LINK_LOCAL),
                RouterAdvertisementGuard,
            ),
            (
                "vm-1",
                Egress,
                redirect(VM1_LINK_LOCAL, "fe80::1"),
                RedirectGuard,
            ),
            (
                "vm-1",
                Egress,
                udp("10.0.6.10", 67, "255.255.255.255", 68),
                DhcpServerGuard,
            ),
            (
                "vm-1",
                Egress,
                udp(VM1_LINK_LOCAL, 547, "fe80::1", 546),
                DhcpServerGuard,
            ),
            // The router's own messages reach the instance.
            ("vm-1", Ingress, advertisement("fe80::1"), Icmpv6Link),
            ("vm-1", Ingress, redirect("fe80::1", VM1_LINK_LOCAL), NoRule),
            // Without the check, no guards: a NAT instance may route.
            ("nat-1", Egress, advertisement("fe80::8"), Icmpv6Link),
            (
                "nat-1",
                Egress,
                udp("10.0.8.10", 67, "255.255.255.255", 68),
                NewFlow,
            ),
        ],
    );
    let other_mac = Some("52:54:00:00:00:99".parse().expect("mac"));
    let own_mac = vm_1.mac;
    let ssh_out = tcp("10.0.6.10", 4000, "10.1.1.1", 22, TCP_SYN);
    let cases = [
        ("vm-1", Egress, other_mac, ssh_out.clone(), MacSpoof),
        ("vm-1", Egress, other_mac, Frame::NonIp, MacSpoof),
        ("vm-1", Egress, own_mac, ssh_out.clone(), NewFlow),
        (
            "vm-1",
            Ingress,
            other_mac,
            tcp("10.1.1.1", 4000, "10.0.6.10", 22, TCP_SYN),
            NewFlow,
        ),
        // No MAC in the config: nothing to check it against.
        (
            "vm-2",
            Egress,
            other_mac,
            tcp("10.0.7.10", 4000, "10.1.1.1", 22, TCP_SYN),
            NewFlow,
        ),
        ("nat-1", Egress, other_mac, ssh_out, NewFlow),
    ];
    for (index, (name, direction, mac, frame, reason)) in cases.into_iter().enumerate() {
        let instance = config.instance(name).expect("instance");
        let decision = evaluate_frame(
            &config,
            instance,
            direction,
            mac,
            &frame,
            &CtView::default(),
        );
        assert_eq!(
            decision.reason, reason,
            "case {index}: {name} {direction} {frame:?}"
        );
    }
}

#[test]
fn i4_non_ip_frames_drop() {
    let config = config(WEB_APP_DB);
    expect_judged(&config, &[("web-1", Ingress, Frame::NonIp, NonIp)]);
}

#[test]
fn h1_later_fragments_follow_their_first_fragment() {
    let mut session = Session::new(config(WEB_APP_DB));
    let fragment = |transport, fragment| {
        Frame::Ip(IpPacket {
            src: ip("10.0.1.10"),
            dst: ip("203.0.113.1"),
            transport,
            fragment,
        })
    };
    let udp = |dst_port| Transport::Udp {
        src_port: 5000,
        dst_port,
    };
    let orphan = || fragment(udp(0), Fragment::Later { id: 9, offset: 185 });
    let first = fragment(udp(53), Fragment::First { id: 9 });
    let tcp = Transport::tcp(1, 2, 0);
    let overlap = fragment(tcp, Fragment::Later { id: 3, offset: 1 });
    expect_steps(
        &mut session,
        &[
            ("web-1", Egress, orphan(), 0.0, FragmentWithoutFirst),
            ("web-1", Egress, first, 0.1, NewFlow),
            ("web-1", Egress, orphan(), 0.2, Reason::Fragment),
            ("web-1", Egress, overlap, 0.3, OverlappingFragment),
            // Too late.
            ("web-1", Egress, orphan(), 40.0, FragmentWithoutFirst),
        ],
    );
}

#[test]
fn g5_r7_r8_are_validation_errors_not_verdicts() {
    let unknown_group = WEB_APP_DB.replace(r#"groups = ["web"]"#, r#"groups = ["nope"]"#);
    let error = crate::config::load_str(&unknown_group, Path::new("g5.toml"))
        .map(|_| ())
        .expect_err("G5: an unknown group is rejected");
    assert!(error.to_string().contains("nope"), "{error}");
}

#[test]
fn h2_ipv6_unknown_extension_headers_drop_but_the_same_number_in_ipv4_is_a_protocol() {
    let config = config(WEB_APP_DB);
    for next_header in IPV6_UNWALKABLE_EXTENSIONS {
        let v6 = packet("2001:db8::1", "fd00:1::10", Transport::Other(next_header));
        let v4 = packet("203.0.113.1", "10.0.1.10", Transport::Other(next_header));
        expect_judged(
            &config,
            &[
                ("web-1", Ingress, v6, Ipv6UnknownExtension),
                ("web-1", Ingress, v4, NoRule),
            ],
        );
    }
}

mod network;
