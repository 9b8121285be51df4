//! One test (at least) per statement of `../shared/ec2-sg-semantics.md` that a verdict can
//! show. Statements about parsing (H2, H3) and about the runtime (H4) are shown in tiers 2-3;
//! validation statements (R7, R8, G5) in `config`'s tests.

use std::path::Path;

use super::*;

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
    packet(
        src,
        dst,
        Transport::Tcp {
            src_port: sport,
            dst_port: dport,
            flags,
        },
    )
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
    packet(
        src,
        dst,
        Transport::Icmp {
            icmp_type,
            code,
            echo_id: 7,
            quoted: None,
        },
    )
}

/// Judges a lone packet (no tracked flow).
fn judge(config: &Config, instance: &str, direction: Direction, frame: &Frame) -> Decision {
    let instance = config.instance(instance).expect("instance");
    evaluate(config, instance, direction, frame, &CtView::default())
}

const WEB_APP_DB: &str = r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "80"
  cidr = ["0.0.0.0/0"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "22"
  cidr = ["198.51.100.0/24"]

[[security_group]]
name = "app"
egress = []
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8080"
  groups = ["web"]

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["10.0.1.10", "fd00:1::10"]
security_groups = ["web"]

[[instance]]
name = "app-1"
interface = "sgw-app1"
addresses = ["10.0.2.10"]
security_groups = ["app"]

[[member]]
name = "web-9"
addresses = ["10.0.1.99"]
security_groups = ["web"]
"#;

#[test]
fn r1_rules_only_allow_and_unmatched_traffic_drops() {
    let config = config(WEB_APP_DB);
    let denied = judge(
        &config,
        "web-1",
        Direction::Ingress,
        &tcp("203.0.113.1", 4000, "10.0.1.10", 443, TCP_SYN),
    );
    assert_eq!(
        denied,
        Decision {
            reason: Reason::NoRule,
            rule: None
        }
    );
    let ssh = judge(
        &config,
        "web-1",
        Direction::Ingress,
        &tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN),
    );
    assert_eq!(
        ssh,
        Decision {
            reason: Reason::NewFlow,
            rule: Some(1)
        }
    );
}

#[test]
fn r2_default_egress_allows_everything_and_empty_egress_nothing() {
    let config = config(WEB_APP_DB);
    for destination in ["203.0.113.1", "10.9.9.9"] {
        let out = judge(
            &config,
            "web-1",
            Direction::Egress,
            &udp("10.0.1.10", 5000, destination, 53),
        );
        assert!(out.admitted(), "default egress to {destination}: {out:?}");
    }
    let out_v6 = judge(
        &config,
        "web-1",
        Direction::Egress,
        &udp("fd00:1::10", 5000, "2001:db8::1", 53),
    );
    assert!(out_v6.admitted(), "default egress covers ::/0 too");
    let blocked = judge(
        &config,
        "app-1",
        Direction::Egress,
        &udp("10.0.2.10", 5000, "203.0.113.1", 53),
    );
    assert_eq!(
        blocked.reason,
        Reason::NoRule,
        "egress = [] admits nothing outbound"
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
    assert_eq!(
        judge(&config, "i", Direction::Ingress, &gre).rule,
        Some(0),
        "protocol number, all ports"
    );
    let https = tcp("10.2.2.2", 1000, "10.1.1.1", 443, TCP_SYN);
    assert_eq!(
        judge(&config, "i", Direction::Ingress, &https).rule,
        Some(1),
        "6 is tcp"
    );
    let echo = icmp("10.2.2.2", "10.1.1.1", 8, 0);
    assert_eq!(
        judge(&config, "i", Direction::Ingress, &echo).rule,
        Some(2),
        "type 8, any code"
    );
    let timestamp = icmp("10.2.2.2", "10.1.1.1", 13, 0);
    assert_eq!(
        judge(&config, "i", Direction::Ingress, &timestamp).reason,
        Reason::NoRule
    );
    let anything = udp("192.0.2.9", 1, "10.1.1.1", 9);
    assert_eq!(
        judge(&config, "i", Direction::Ingress, &anything).rule,
        Some(3),
        "`all` protocols and ports"
    );
}

#[test]
fn r4_only_the_destination_port_of_the_first_packet_is_matched() {
    let config = config(WEB_APP_DB);
    let from_port_80 = tcp("203.0.113.1", 80, "10.0.1.10", 4000, TCP_SYN);
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &from_port_80).reason,
        Reason::NoRule
    );
    let to_port_80 = tcp("203.0.113.1", 4000, "10.0.1.10", 80, TCP_SYN);
    assert!(judge(&config, "web-1", Direction::Ingress, &to_port_80).admitted());
}

#[test]
fn r5_any_ipv4_never_matches_ipv6() {
    let config = config(WEB_APP_DB);
    let v6 = tcp("2001:db8::1", 4000, "fd00:1::10", 80, TCP_SYN);
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &v6).reason,
        Reason::NoRule
    );
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
    assert_eq!(judge(&config, "i", Direction::Ingress, &dns).rule, Some(1));
    let reordered = self::config(&text.replace(r#"["a", "b"]"#, r#"["b", "a"]"#));
    let decision = judge(&reordered, "i", Direction::Ingress, &dns);
    assert!(decision.admitted(), "order does not change the verdict");
    assert_eq!(decision.rule, Some(0), "order only renumbers rules");
}

#[test]
fn g1_group_reference_matches_every_member_here_or_elsewhere() {
    let config = config(WEB_APP_DB);
    for member in ["10.0.1.10", "10.0.1.99"] {
        let from_web = tcp(member, 4000, "10.0.2.10", 8080, TCP_SYN);
        assert_eq!(
            judge(&config, "app-1", Direction::Ingress, &from_web).reason,
            Reason::NewFlow,
            "{member}"
        );
    }
    let stranger = tcp("10.0.1.50", 4000, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        judge(&config, "app-1", Direction::Ingress, &stranger).reason,
        Reason::NoRule
    );
}

#[test]
fn g2_all_addresses_of_a_member_count() {
    let config = config(WEB_APP_DB);
    let instance = config.instance("app-1").expect("app-1");
    let rule = &effective_rules(&config, instance, Direction::Ingress)[0];
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
    let newcomer = tcp("10.0.1.77", 4000, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &newcomer, 0.0)
            .reason,
        Reason::NoRule
    );
    let joined = WEB_APP_DB.replace(
        r#"addresses = ["10.0.1.99"]"#,
        r#"addresses = ["10.0.1.99", "10.0.1.77"]"#,
    );
    session.reconfigure(config(&joined));
    let retry = tcp("10.0.1.77", 4001, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &retry, 1.0)
            .reason,
        Reason::NewFlow
    );
    session.reconfigure(config(WEB_APP_DB));
    let after_leaving = tcp("10.0.1.77", 4002, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &after_leaving, 2.0)
            .reason,
        Reason::NoRule
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
    let peer = udp("10.0.0.2", 1, "10.0.0.1", 9999);
    assert!(judge(&config, "a", Direction::Ingress, &peer).admitted());
    let outsider = udp("10.0.0.3", 1, "10.0.0.1", 9999);
    assert!(!judge(&config, "a", Direction::Ingress, &outsider).admitted());
}

#[test]
fn c1_reply_passes_whatever_the_reverse_rules_say() {
    let mut session = Session::new(config(WEB_APP_DB));
    let request = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &request, 0.0)
            .reason,
        Reason::NewFlow
    );
    let reply = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    assert_eq!(
        session
            .process("app-1", Direction::Egress, &reply, 0.1)
            .reason,
        Reason::Reply,
        "egress = [] yet the reply passes"
    );
    let unsolicited = tcp("10.0.2.10", 8080, "10.0.1.10", 4001, TCP_SYN | TCP_ACK);
    assert_eq!(
        session
            .process("app-1", Direction::Egress, &unsolicited, 0.2)
            .reason,
        Reason::NoRule
    );
}

#[test]
fn c2_state_is_per_interface() {
    let mut session = Session::new(config(WEB_APP_DB));
    let to_app = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    session.process("app-1", Direction::Ingress, &to_app, 0.0);
    // The same tuple seen on web-1 is not a reply there: web-1 has its own table.
    let on_web = tcp("10.0.2.10", 8080, "10.0.1.10", 4000, TCP_SYN | TCP_ACK);
    assert_eq!(
        session
            .process("web-1", Direction::Ingress, &on_web, 0.1)
            .reason,
        Reason::NoRule
    );
}

#[test]
fn c3_icmp_echo_is_tracked_like_a_flow() {
    let mut session = Session::new(config(WEB_APP_DB));
    let request = packet(
        "10.0.1.10",
        "203.0.113.1",
        Transport::Icmp {
            icmp_type: 8,
            code: 0,
            echo_id: 42,
            quoted: None,
        },
    );
    assert_eq!(
        session
            .process("web-1", Direction::Egress, &request, 0.0)
            .reason,
        Reason::NewFlow
    );
    let reply = packet(
        "203.0.113.1",
        "10.0.1.10",
        Transport::Icmp {
            icmp_type: 0,
            code: 0,
            echo_id: 42,
            quoted: None,
        },
    );
    assert_eq!(
        session
            .process("web-1", Direction::Ingress, &reply, 0.1)
            .reason,
        Reason::Reply,
        "no inbound ICMP rule needed"
    );
    let other_id = packet(
        "203.0.113.1",
        "10.0.1.10",
        Transport::Icmp {
            icmp_type: 0,
            code: 0,
            echo_id: 43,
            quoted: None,
        },
    );
    assert_eq!(
        session
            .process("web-1", Direction::Ingress, &other_id, 0.2)
            .reason,
        Reason::NoRule
    );
}

#[test]
fn c4_removing_a_rule_keeps_tracked_flows_unless_the_cut_option_is_on() {
    let ssh = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    let without_ssh = WEB_APP_DB.replace(
        r#"cidr = ["198.51.100.0/24"]"#,
        r#"cidr = ["192.0.2.0/24"]"#,
    );
    for (cut, expected) in [(false, Reason::Tracked), (true, Reason::ConntrackCut)] {
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
        assert_eq!(
            session
                .process("web-1", Direction::Ingress, &ssh, 0.0)
                .reason,
            Reason::NewFlow
        );
        session.reconfigure(config(&with_option(&without_ssh)));
        let more = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_ACK);
        assert_eq!(
            session
                .process("web-1", Direction::Ingress, &more, 1.0)
                .reason,
            expected,
            "cut option {cut}"
        );
        let new_session = tcp("198.51.100.7", 4001, "10.0.1.10", 22, TCP_SYN);
        assert_eq!(
            session
                .process("web-1", Direction::Ingress, &new_session, 1.1)
                .reason,
            Reason::NoRule
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
    let mut session = Session::new(config(text));
    let query = udp("10.2.2.2", 5000, "10.1.1.1", 53);
    let answer = udp("10.1.1.1", 53, "10.2.2.2", 5000);
    session.process("i", Direction::Ingress, &query, 0.0);
    assert_eq!(
        session
            .process("i", Direction::Egress, &answer, 29.0)
            .reason,
        Reason::Reply
    );
    assert_eq!(
        session
            .process("i", Direction::Egress, &answer, 59.5)
            .reason,
        Reason::NoRule,
        "30 s idle: gone"
    );

    // Both ways more than once: a stream, kept for the stream timeout.
    let mut session = Session::new(config(text));
    for at in [0.0, 1.0] {
        session.process("i", Direction::Ingress, &query, at);
        session.process("i", Direction::Egress, &answer, at + 0.5);
    }
    assert_eq!(
        session
            .process("i", Direction::Egress, &answer, 100.0)
            .reason,
        Reason::Reply
    );
    assert_eq!(
        session
            .process("i", Direction::Egress, &answer, 221.0)
            .reason,
        Reason::NoRule
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
    session.process("app-1", Direction::Ingress, &first, 0.0);
    assert_eq!(
        session
            .process("app-1", Direction::Egress, &first_reply, 0.1)
            .reason,
        Reason::Reply
    );
    let second = tcp("10.0.1.99", 4000, "10.0.2.10", 8080, TCP_SYN);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &second, 0.2)
            .reason,
        Reason::ConntrackFull
    );
    let first_more = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_ACK);
    assert_eq!(
        session
            .process("app-1", Direction::Ingress, &first_more, 0.3)
            .reason,
        Reason::Tracked
    );
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
    let error = packet(
        "203.0.113.1",
        "10.0.1.10",
        Transport::Icmp {
            icmp_type: 3,
            code: 3,
            echo_id: 0,
            quoted: Some(quoted),
        },
    );
    let request = udp("10.0.1.10", 5000, "203.0.113.1", 53);
    for (related, expected) in [(false, Reason::NoRule), (true, Reason::RelatedIcmp)] {
        let line = if related { "related_icmp = true" } else { "" };
        let mut session = Session::new(config(&text.replace("RELATED", line)));
        session.process("web-1", Direction::Egress, &request, 0.0);
        assert_eq!(
            session
                .process("web-1", Direction::Ingress, &error, 0.1)
                .reason,
            expected,
            "related_icmp = {related}"
        );
    }
    // An error about a flow that does not exist is never related.
    let mut session = Session::new(config(&text.replace("RELATED", "related_icmp = true")));
    assert_eq!(
        session
            .process("web-1", Direction::Ingress, &error, 0.0)
            .reason,
        Reason::NoRule
    );
}

#[test]
fn c8_flows_open_both_ways_from_anywhere_are_untracked() {
    let config = config(WEB_APP_DB);
    let http = tcp("203.0.113.1", 4000, "10.0.1.10", 80, TCP_SYN);
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &http).reason,
        Reason::Untracked
    );
    let ssh = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &ssh).reason,
        Reason::NewFlow,
        "not from anywhere: tracked"
    );
    let outbound = tcp("10.0.1.10", 4000, "203.0.113.1", 443, TCP_SYN);
    assert_eq!(
        judge(&config, "web-1", Direction::Egress, &outbound).reason,
        Reason::NewFlow,
        "inbound is not open on all ports: tracked"
    );
}

#[test]
fn i1_source_destination_check() {
    let config_on = config(WEB_APP_DB);
    let spoofed = udp("10.9.9.9", 5000, "203.0.113.1", 53);
    assert_eq!(
        judge(&config_on, "web-1", Direction::Egress, &spoofed).reason,
        Reason::SpoofedSource
    );
    let misaddressed = tcp("203.0.113.1", 4000, "10.0.1.11", 80, TCP_SYN);
    assert_eq!(
        judge(&config_on, "web-1", Direction::Ingress, &misaddressed).reason,
        Reason::SpoofedDestination
    );
    let config_off = config(&WEB_APP_DB.replacen(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nsource_dest_check = false\n",
        1,
    ));
    assert!(
        judge(&config_off, "web-1", Direction::Egress, &spoofed).admitted(),
        "NAT instance"
    );
}

#[test]
fn i2_arp_and_neighbour_discovery_bypass_rules_but_arp_is_checked() {
    let config = config(WEB_APP_DB);
    let own = Frame::Arp {
        sender: "10.0.1.10".parse().expect("v4"),
    };
    let probe = Frame::Arp {
        sender: Ipv4Addr::UNSPECIFIED,
    };
    let stolen = Frame::Arp {
        sender: "10.0.2.10".parse().expect("v4"),
    };
    assert_eq!(
        judge(&config, "web-1", Direction::Egress, &own).reason,
        Reason::Arp
    );
    assert_eq!(
        judge(&config, "web-1", Direction::Egress, &probe).reason,
        Reason::Arp
    );
    assert_eq!(
        judge(&config, "web-1", Direction::Egress, &stolen).reason,
        Reason::ArpSpoof
    );
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &stolen).reason,
        Reason::Arp,
        "inbound ARP is not checked"
    );
    let solicitation = icmp("fe80::1", "ff02::1:ff00:10", 135, 0);
    assert_eq!(
        judge(&config, "app-1", Direction::Egress, &solicitation).reason,
        Reason::Icmpv6Link
    );
}

#[test]
fn i3_exempt_destinations_skip_the_rules() {
    let config = config(&WEB_APP_DB.replace(
        "security_groups = [\"app\"]\n",
        "security_groups = [\"app\"]\nexempt = [\"169.254.169.254/32\"]\n",
    ));
    let metadata = tcp("10.0.2.10", 4000, "169.254.169.254", 80, TCP_SYN);
    assert_eq!(
        judge(&config, "app-1", Direction::Egress, &metadata).reason,
        Reason::Exempt
    );
    let elsewhere = tcp("10.0.2.10", 4000, "169.254.169.253", 80, TCP_SYN);
    assert_eq!(
        judge(&config, "app-1", Direction::Egress, &elsewhere).reason,
        Reason::NoRule,
        "nothing is exempt by default"
    );
}

#[test]
fn i4_non_ip_frames_drop() {
    let config = config(WEB_APP_DB);
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &Frame::NonIp).reason,
        Reason::NonIp
    );
}

#[test]
fn h1_later_fragments_follow_their_first_fragment() {
    let mut session = Session::new(config(WEB_APP_DB));
    let fragment = |fragment: Fragment, dport: u16| {
        Frame::Ip(IpPacket {
            src: ip("10.0.1.10"),
            dst: ip("203.0.113.1"),
            transport: Transport::Udp {
                src_port: 5000,
                dst_port: dport,
            },
            fragment,
        })
    };
    let orphan = fragment(Fragment::Later { id: 9, offset: 185 }, 0);
    assert_eq!(
        session
            .process("web-1", Direction::Egress, &orphan, 0.0)
            .reason,
        Reason::FragmentWithoutFirst
    );
    let first = fragment(Fragment::First { id: 9 }, 53);
    assert!(
        session
            .process("web-1", Direction::Egress, &first, 0.1)
            .admitted()
    );
    assert_eq!(
        session
            .process("web-1", Direction::Egress, &orphan, 0.2)
            .reason,
        Reason::Fragment
    );
    assert_eq!(
        session
            .process("web-1", Direction::Egress, &orphan, 40.0)
            .reason,
        Reason::FragmentWithoutFirst,
        "too late"
    );

    let overlap = Frame::Ip(IpPacket {
        src: ip("10.0.1.10"),
        dst: ip("203.0.113.1"),
        transport: Transport::Tcp {
            src_port: 1,
            dst_port: 2,
            flags: 0,
        },
        fragment: Fragment::Later { id: 3, offset: 1 },
    });
    assert_eq!(
        session
            .process("web-1", Direction::Egress, &overlap, 0.3)
            .reason,
        Reason::OverlappingFragment
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
    let v6 = packet("2001:db8::1", "fd00:1::10", Transport::Other(253));
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &v6).reason,
        Reason::Ipv6UnknownExtension
    );
    let v4 = packet("203.0.113.1", "10.0.1.10", Transport::Other(253));
    assert_eq!(
        judge(&config, "web-1", Direction::Ingress, &v4).reason,
        Reason::NoRule
    );
}
