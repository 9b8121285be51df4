//! Tier 2: the real eBPF object under BPF_PROG_TEST_RUN, with maps filled by the real
//! compiler, fed hand-built frames. Each test names the statement of
//! `../shared/ec2-sg-semantics.md` it shows; the last one runs thousands of random packets
//! against random policies and compares every verdict with the reference evaluator.

use std::{net::IpAddr, time::Instant};

use filter_common::*;
use sgwall::{
    eval::{Frame, Session},
    maps::Capacities,
    model::Direction::{Egress, Ingress},
    testgen,
};
use sgwall_tests::{
    datapath::{Sent, TestDatapath, parse},
    packet::{
        ETH_P_IPV4, Ext, IpPacket, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, arp, ethernet,
        from_eval, icmp_error, strip_ethernet, v4,
    },
    privileged,
};

const THREE_TIER: &str = include_str!("../../examples/three-tier.toml");

/// A policy touching every feature the datapath has.
const BASE: &str = r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "80"
  cidr = ["0.0.0.0/0", "::/0"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "22"
  cidr = ["198.51.100.0/24"]
  [[security_group.ingress]]
  protocol = "udp"
  ports = "1000-2000"
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "icmp"
  icmp_type = 8
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "icmpv6"
  icmp_type = 128
  cidr = ["fd00::/8"]
  [[security_group.ingress]]
  protocol = 47
  cidr = ["10.0.0.0/8"]

[[security_group]]
name = "pmtud"
  [[security_group.ingress]]
  protocol = "icmp"
  icmp_type = 3
  icmp_code = 4
  cidr = ["0.0.0.0/0"]

[[security_group]]
name = "app"
egress = []
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8080"
  groups = ["web"]
  [[security_group.ingress]]
  protocol = "all"
  groups = ["app"]

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["10.0.1.10", "fd00:1::10"]
security_groups = ["web", "pmtud"]

[[instance]]
name = "app-1"
interface = "sgw-app1"
addresses = ["10.0.2.10", "fd00:2::10"]
security_groups = ["app"]

[[instance]]
name = "app-2"
interface = "sgw-app2"
addresses = ["10.0.2.20"]
security_groups = ["app"]
related_icmp = true
exempt = ["169.254.169.254/32"]
conntrack = { max_flows = 2 }

[[instance]]
name = "nat-1"
interface = "sgw-nat1"
addresses = ["10.0.4.10"]
security_groups = ["web"]
source_dest_check = false

[[instance]]
name = "host-1"
interface = "sgw-host1"
attach = "host"
addresses = ["10.0.5.10"]
security_groups = ["web"]

[[member]]
name = "web-9"
addresses = ["10.0.1.99"]
security_groups = ["web"]
"#;

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

fn expect(sent: Sent, reason: u32) {
    assert_eq!(
        sent.reason,
        reason,
        "expected {}, got {sent}",
        reason_name(reason)
    );
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
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("203.0.113.10", 40000, "10.0.1.10", 8080, TCP_SYN),
        ),
        REASON_NO_RULE,
    );
    assert!(
        dp.send(
            "web-1",
            Ingress,
            &tcp("203.0.113.10", 40000, "10.0.1.10", 443, TCP_SYN)
        )
        .admitted
    );
}

#[test]
fn r2_default_egress_admits_and_empty_egress_admits_nothing() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send("web-1", Egress, &udp("10.0.1.10", 5000, "203.0.113.1", 53)),
        REASON_NEW_FLOW,
    );
    let v6 = IpPacket::new(
        "fd00:1::10".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        L4::udp(5000, 53),
    )
    .build();
    expect(dp.send("web-1", Egress, &v6), REASON_NEW_FLOW);
    expect(
        dp.send("app-1", Egress, &udp("10.0.2.10", 5000, "203.0.113.1", 53)),
        REASON_NO_RULE,
    );
}

#[test]
fn r3_protocol_numbers_all_and_icmp_type_code() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let gre = IpPacket::new(
        v4("10.9.9.9"),
        v4("10.0.1.10"),
        L4::Raw {
            proto: 47,
            payload: vec![0; 8],
        },
    )
    .build();
    expect(dp.send("web-1", Ingress, &gre), REASON_NEW_FLOW);
    let esp = IpPacket::new(
        v4("10.9.9.9"),
        v4("10.0.1.10"),
        L4::Raw {
            proto: 50,
            payload: vec![0; 8],
        },
    )
    .build();
    expect(dp.send("web-1", Ingress, &esp), REASON_NO_RULE);
    let echo = IpPacket::new(
        v4("10.9.9.9"),
        v4("10.0.1.10"),
        L4::echo_request(false, 5, 1),
    )
    .build();
    expect(dp.send("web-1", Ingress, &echo), REASON_NEW_FLOW);
    expect(
        dp.send("web-1", Ingress, &icmp("10.9.9.9", "10.0.1.10", 13, 0)),
        REASON_NO_RULE,
    );
    // `all` from a group (app's self-reference): any protocol and port.
    expect(
        dp.send("app-1", Ingress, &udp("10.0.2.20", 1, "10.0.2.10", 9999)),
        REASON_NEW_FLOW,
    );
    // A port range.
    expect(
        dp.send("web-1", Ingress, &udp("10.9.9.9", 9, "10.0.1.10", 1500)),
        REASON_NEW_FLOW,
    );
    expect(
        dp.send("web-1", Ingress, &udp("10.9.9.9", 9, "10.0.1.10", 2001)),
        REASON_NO_RULE,
    );
}

#[test]
fn r4_only_the_destination_port_counts() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("198.51.100.7", 22, "10.0.1.10", 4000, TCP_SYN),
        ),
        REASON_NO_RULE,
    );
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
}

#[test]
fn r5_address_families_stay_apart() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    // SSH is allowed from an IPv4 range only; the same from IPv6 is not.
    let ssh_v6 = IpPacket::new(
        "2001:db8::7".parse().unwrap(),
        "fd00:1::10".parse().unwrap(),
        L4::tcp(4000, 22, TCP_SYN),
    )
    .build();
    expect(dp.send("web-1", Ingress, &ssh_v6), REASON_NO_RULE);
    let echo_v6 = IpPacket::new(
        "fd00:9::1".parse().unwrap(),
        "fd00:1::10".parse().unwrap(),
        L4::echo_request(true, 9, 1),
    )
    .build();
    expect(dp.send("web-1", Ingress, &echo_v6), REASON_NEW_FLOW);
}

#[test]
fn r6_rules_of_two_groups_are_unioned() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    // Path MTU discovery comes from the second group attached to web-1.
    expect(
        dp.send("web-1", Ingress, &icmp("192.0.2.1", "10.0.1.10", 3, 4)),
        REASON_RULE_UNTRACKED_ICMP,
    );
    expect(
        dp.send("nat-1", Ingress, &icmp("192.0.2.1", "10.0.4.10", 3, 4)),
        REASON_NO_RULE,
    );
}

#[test]
fn g1_g2_g4_group_references_members_and_self() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    for member in ["10.0.1.10", "10.0.1.99", "10.0.4.10", "10.0.5.10"] {
        expect(
            dp.send(
                "app-1",
                Ingress,
                &tcp(member, 40000, "10.0.2.10", 8080, TCP_SYN),
            ),
            REASON_NEW_FLOW,
        );
    }
    let web_v6 = IpPacket::new(
        "fd00:1::10".parse().unwrap(),
        "fd00:2::10".parse().unwrap(),
        L4::tcp(40000, 8080, TCP_SYN),
    )
    .build();
    expect(dp.send("app-1", Ingress, &web_v6), REASON_NEW_FLOW);
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.11", 40000, "10.0.2.10", 8080, TCP_SYN),
        ),
        REASON_NO_RULE,
    );
    // G4: app members talk to each other on anything.
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.2.20", 40000, "10.0.2.10", 5432, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
}

#[test]
fn c1_reply_passes_without_a_reverse_rule() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK),
        ),
        REASON_CT_REPLY,
    );
    assert_eq!(
        dp.established_flows().len(),
        1,
        "the first reply moves the flow to the established pool"
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_ACK),
        ),
        REASON_CT_TRACKED,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40002, TCP_ACK),
        ),
        REASON_NO_RULE,
    );
}

#[test]
fn c2_state_is_kept_per_interface() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
    // The same tuple on app-2's interface is nobody's reply.
    let elsewhere = tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK);
    let sent = dp.send("app-2", Egress, &elsewhere);
    assert!(!sent.admitted, "{sent}");
}

#[test]
fn c3_icmp_echo_is_tracked() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let request = IpPacket::new(
        v4("10.0.1.10"),
        v4("203.0.113.1"),
        L4::echo_request(false, 77, 1),
    )
    .build();
    expect(dp.send("web-1", Egress, &request), REASON_NEW_FLOW);
    let reply = IpPacket::new(
        v4("203.0.113.1"),
        v4("10.0.1.10"),
        L4::echo_reply(false, 77, 1),
    )
    .build();
    expect(dp.send("web-1", Ingress, &reply), REASON_CT_REPLY);
    let stranger = IpPacket::new(
        v4("203.0.113.1"),
        v4("10.0.1.10"),
        L4::echo_reply(false, 78, 1),
    )
    .build();
    expect(dp.send("web-1", Ingress, &stranger), REASON_NO_RULE);
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
    for (cut, expected) in [(false, REASON_CT_TRACKED), (true, REASON_CT_CUT)] {
        let (before, after) = if cut {
            (with_cut(BASE), with_cut(&without_ssh))
        } else {
            (BASE.to_string(), without_ssh.clone())
        };
        let mut dp = TestDatapath::from_toml(&before);
        expect(
            dp.send(
                "web-1",
                Ingress,
                &tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN),
            ),
            REASON_NEW_FLOW,
        );
        expect(
            dp.send(
                "web-1",
                Egress,
                &tcp("10.0.1.10", 22, "198.51.100.7", 4000, TCP_SYN | TCP_ACK),
            ),
            REASON_CT_REPLY,
        );
        dp.reconfigure(parse(&after));
        expect(
            dp.send(
                "web-1",
                Ingress,
                &tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_ACK),
            ),
            expected,
        );
        expect(
            dp.send(
                "web-1",
                Ingress,
                &tcp("198.51.100.7", 4001, "10.0.1.10", 22, TCP_SYN),
            ),
            REASON_NO_RULE,
        );
    }
}

#[test]
fn c5_an_expired_entry_admits_nothing() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send("web-1", Ingress, &udp("10.9.9.9", 5000, "10.0.1.10", 1500)),
        REASON_NEW_FLOW,
    );
    expect(
        dp.send("web-1", Egress, &udp("10.0.1.10", 1500, "10.9.9.9", 5000)),
        REASON_CT_REPLY,
    );
    dp.age_flows(29);
    expect(
        dp.send("web-1", Ingress, &udp("10.9.9.9", 5000, "10.0.1.10", 1500)),
        REASON_CT_TRACKED,
    );
    dp.age_flows(31);
    // UDP idles out after 30 s: the next packet is a new flow again.
    expect(
        dp.send("web-1", Ingress, &udp("10.9.9.9", 5000, "10.0.1.10", 1500)),
        REASON_NEW_FLOW,
    );
    assert!(
        dp.established_flows().is_empty(),
        "the datapath deleted the expired entry it met"
    );

    // A stream (both ways more than once) lives 180 s.
    let mut dp = base();
    for _ in 0..2 {
        dp.send("web-1", Ingress, &udp("10.9.9.9", 5001, "10.0.1.10", 1500));
        dp.send("web-1", Egress, &udp("10.0.1.10", 1500, "10.9.9.9", 5001));
    }
    dp.age_flows(100);
    expect(
        dp.send("web-1", Egress, &udp("10.0.1.10", 1500, "10.9.9.9", 5001)),
        REASON_CT_REPLY,
    );
    // TCP after FIN closes in 10 s.
    let mut dp = base();
    dp.send(
        "app-1",
        Ingress,
        &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
    );
    dp.send(
        "app-1",
        Egress,
        &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK),
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_FIN | TCP_ACK),
        ),
        REASON_CT_TRACKED,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_ACK),
        ),
        REASON_CT_REPLY,
    );
    dp.age_flows(11);
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_ACK),
        ),
        REASON_NO_RULE,
    );
}

#[test]
fn c6_full_allowance_drops_new_flows_and_keeps_established_ones() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    for port in [40001, 40002] {
        dp.send(
            "app-2",
            Ingress,
            &tcp("10.0.1.10", port, "10.0.2.20", 8080, TCP_SYN),
        );
        expect(
            dp.send(
                "app-2",
                Egress,
                &tcp("10.0.2.20", 8080, "10.0.1.10", port, TCP_SYN | TCP_ACK),
            ),
            REASON_CT_REPLY,
        );
    }
    expect(
        dp.send(
            "app-2",
            Ingress,
            &tcp("10.0.1.10", 40003, "10.0.2.20", 8080, TCP_SYN),
        ),
        REASON_CT_FULL,
    );
    expect(
        dp.send(
            "app-2",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.20", 8080, TCP_ACK),
        ),
        REASON_CT_TRACKED,
    );
    // Other interfaces have their own allowance.
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40003, "10.0.2.10", 8080, TCP_SYN),
        ),
        REASON_NEW_FLOW,
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
    dp.send(
        "app-1",
        Ingress,
        &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK),
        ),
        REASON_CT_REPLY,
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40002, "10.0.2.10", 8080, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 8080, "10.0.1.10", 40002, TCP_SYN | TCP_ACK),
        ),
        REASON_CT_FULL,
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_ACK),
        ),
        REASON_CT_TRACKED,
    );
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
    dp.send(
        "app-1",
        Ingress,
        &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
    );
    dp.send(
        "app-1",
        Egress,
        &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK),
    );
    for port in 0..1000u16 {
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.99", 1024 + port, "10.0.2.10", 8080, TCP_SYN),
        );
    }
    assert!(
        dp.embryonic_flows().len() <= 64,
        "the flood stayed in its own pool"
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_ACK),
        ),
        REASON_CT_TRACKED,
    );
}

#[test]
fn c7_icmp_errors_are_related_only_with_related_icmp() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    for (instance, address) in [("app-1", "10.0.2.10"), ("app-2", "10.0.2.20")] {
        dp.send(
            instance,
            Ingress,
            &tcp("10.0.1.10", 40001, address, 8080, TCP_SYN),
        );
    }
    // The router says it cannot deliver the SYN-ACK the instance sent.
    let error_for = |address: &str| {
        let quoted = tcp(address, 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK);
        IpPacket::new(
            v4("10.0.9.1"),
            v4(address),
            icmp_error(false, 3, 1, strip_ethernet(&quoted)),
        )
        .build()
    };
    expect(
        dp.send("app-1", Ingress, &error_for("10.0.2.10")),
        REASON_NO_RULE,
    );
    expect(
        dp.send("app-2", Ingress, &error_for("10.0.2.20")),
        REASON_RELATED_ICMP,
    );
    let unrelated = {
        let quoted = tcp("10.0.2.20", 8080, "10.0.1.10", 49999, TCP_SYN | TCP_ACK);
        IpPacket::new(
            v4("10.0.9.1"),
            v4("10.0.2.20"),
            icmp_error(false, 3, 1, strip_ethernet(&quoted)),
        )
        .build()
    };
    expect(dp.send("app-2", Ingress, &unrelated), REASON_NO_RULE);
}

#[test]
fn c8_untracked_flows_and_their_immediate_cut() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("203.0.113.5", 4000, "10.0.1.10", 80, TCP_SYN),
        ),
        REASON_UNTRACKED,
    );
    assert!(dp.embryonic_flows().is_empty());
    // The reply is judged by the egress rules (all to anywhere), not by conntrack, and as a
    // SYN-ACK it starts no tracked flow of its own.
    expect(
        dp.send(
            "web-1",
            Egress,
            &tcp("10.0.1.10", 80, "203.0.113.5", 4000, TCP_SYN | TCP_ACK),
        ),
        REASON_RULE_NO_ENTRY,
    );
    // Removing the rule cuts the flow at once: there is no entry to keep it alive.
    dp.reconfigure(parse(&BASE.replace(r#"ports = "80""#, r#"ports = "81""#)));
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("203.0.113.5", 4000, "10.0.1.10", 80, TCP_ACK),
        ),
        REASON_NO_RULE,
    );
}

#[test]
fn i1_source_destination_check_and_its_off_switch() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.9.9.9", 4000, "10.0.2.20", 22, TCP_SYN),
        ),
        REASON_SPOOFED_SOURCE,
    );
    assert!(
        dp.embryonic_flows().is_empty() && dp.established_flows().is_empty(),
        "no state from a spoofed packet"
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &tcp("10.0.1.10", 4000, "10.0.2.99", 8080, TCP_SYN),
        ),
        REASON_SPOOFED_DESTINATION,
    );
    // A NAT instance forwards for others.
    expect(
        dp.send("nat-1", Egress, &udp("10.5.5.5", 4000, "203.0.113.1", 53)),
        REASON_NEW_FLOW,
    );
    // The host's own NIC is not an instance port: no check.
    expect(
        dp.send("host-1", Egress, &udp("10.5.5.5", 4000, "203.0.113.1", 53)),
        REASON_NEW_FLOW,
    );
}

#[test]
fn i2_arp_and_neighbour_discovery_pass_and_spoofed_arp_drops() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "app-1",
            Egress,
            &arp(2, "10.0.2.10".parse().unwrap(), "10.0.2.1".parse().unwrap()),
        ),
        REASON_ARP,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &arp(1, "0.0.0.0".parse().unwrap(), "10.0.2.10".parse().unwrap()),
        ),
        REASON_ARP,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &arp(2, "10.0.2.1".parse().unwrap(), "10.0.2.10".parse().unwrap()),
        ),
        REASON_ARP_SPOOF,
    );
    expect(
        dp.send(
            "app-1",
            Ingress,
            &arp(1, "10.0.2.1".parse().unwrap(), "10.0.2.10".parse().unwrap()),
        ),
        REASON_ARP,
    );
    let solicitation = IpPacket::new(
        "fe80::1".parse().unwrap(),
        "ff02::1:ff00:10".parse().unwrap(),
        L4::Icmp {
            ty: 135,
            code: 0,
            rest: [0; 4],
            body: vec![0; 16],
        },
    )
    .build();
    expect(dp.send("app-1", Egress, &solicitation), REASON_ICMPV6_LINK);
    let truncated = &arp(2, "10.0.2.10".parse().unwrap(), "10.0.2.1".parse().unwrap())[..30];
    expect(dp.send("app-1", Egress, truncated), REASON_BAD_ARP);
}

#[test]
fn i3_exempt_addresses_skip_the_rules() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "app-2",
            Egress,
            &tcp("10.0.2.20", 4000, "169.254.169.254", 80, TCP_SYN),
        ),
        REASON_EXEMPT,
    );
    expect(
        dp.send(
            "app-1",
            Egress,
            &tcp("10.0.2.10", 4000, "169.254.169.254", 80, TCP_SYN),
        ),
        REASON_NO_RULE,
    );
}

#[test]
fn i4_non_ip_frames_drop() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let lldp = ethernet(None, 0x88cc, &[0u8; 46]);
    expect(dp.send("web-1", Ingress, &lldp), REASON_NON_IP);
    let llc = ethernet(None, 0x0026, &[0u8; 46]);
    expect(dp.send("web-1", Egress, &llc), REASON_NON_IP);
}

#[test]
fn h1_fragments_follow_their_first_fragment() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let later = |id: u32| {
        IpPacket::new(
            v4("10.0.1.10"),
            v4("203.0.113.1"),
            L4::Raw {
                proto: 17,
                payload: vec![0; 64],
            },
        )
        .fragment(id, 185, false)
        .build()
    };
    expect(
        dp.send("web-1", Egress, &later(7)),
        REASON_FRAGMENT_WITHOUT_FIRST,
    );
    let first = IpPacket::new(
        v4("10.0.1.10"),
        v4("203.0.113.1"),
        L4::Udp {
            sport: 5000,
            dport: 53,
            payload: vec![0; 1472],
        },
    )
    .fragment(7, 0, true)
    .build();
    expect(dp.send("web-1", Egress, &first), REASON_NEW_FLOW);
    expect(dp.send("web-1", Egress, &later(7)), REASON_FRAGMENT);
    expect(
        dp.send("web-1", Egress, &later(8)),
        REASON_FRAGMENT_WITHOUT_FIRST,
    );

    // A denied first fragment admits none of the rest.
    let denied_first = IpPacket::new(
        v4("203.0.113.1"),
        v4("10.0.2.10"),
        L4::Udp {
            sport: 5000,
            dport: 53,
            payload: vec![0; 1472],
        },
    )
    .fragment(9, 0, true)
    .build();
    expect(dp.send("app-1", Ingress, &denied_first), REASON_NO_RULE);
    let denied_rest = IpPacket::new(
        v4("203.0.113.1"),
        v4("10.0.2.10"),
        L4::Raw {
            proto: 17,
            payload: vec![0; 64],
        },
    )
    .fragment(9, 185, false)
    .build();
    expect(
        dp.send("app-1", Ingress, &denied_rest),
        REASON_FRAGMENT_WITHOUT_FIRST,
    );

    // A first fragment too short to hold the transport header.
    let tiny = IpPacket::new(
        v4("10.0.1.10"),
        v4("203.0.113.1"),
        L4::tcp(5000, 80, TCP_SYN),
    )
    .fragment(11, 0, true)
    .truncate_l4(8)
    .build();
    expect(dp.send("web-1", Egress, &tiny), REASON_TINY_FIRST_FRAGMENT);
    // A fragment at offset 8 bytes could rewrite the TCP flags the first was judged on.
    let overlap = IpPacket::new(
        v4("10.0.1.10"),
        v4("203.0.113.1"),
        L4::Raw {
            proto: 6,
            payload: vec![0; 16],
        },
    )
    .fragment(12, 1, false)
    .build();
    expect(
        dp.send("web-1", Egress, &overlap),
        REASON_OVERLAPPING_FRAGMENT,
    );

    // IPv6 fragments work the same way.
    let (src, dst): (IpAddr, IpAddr) = (
        "fd00:1::10".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    );
    let first6 = IpPacket::new(
        src,
        dst,
        L4::Udp {
            sport: 5000,
            dport: 53,
            payload: vec![0; 1400],
        },
    )
    .fragment(0x1234_5678, 0, true)
    .build();
    expect(dp.send("web-1", Egress, &first6), REASON_NEW_FLOW);
    let later6 = IpPacket::new(
        src,
        dst,
        L4::Raw {
            proto: 17,
            payload: vec![0; 64],
        },
    )
    .fragment(0x1234_5678, 176, false)
    .build();
    expect(dp.send("web-1", Egress, &later6), REASON_FRAGMENT);
}

#[test]
fn h2_ipv6_extension_headers_are_walked_within_bounds() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let (src, dst): (IpAddr, IpAddr) = (
        "2001:db8::7".parse().unwrap(),
        "fd00:1::10".parse().unwrap(),
    );
    let http = || IpPacket::new(src, dst, L4::tcp(4000, 80, TCP_SYN));
    expect(
        dp.send(
            "web-1",
            Ingress,
            &http()
                .ext(Ext::HopByHop)
                .ext(Ext::DestinationOptions)
                .build(),
        ),
        REASON_UNTRACKED,
    );
    expect(
        dp.send("web-1", Ingress, &http().ext(Ext::Other(135)).build()),
        REASON_IPV6_UNKNOWN_EXT,
    );
    expect(
        dp.send("web-1", Ingress, &http().ext(Ext::Routing(0)).build()),
        REASON_IPV6_ROUTING_TYPE0,
    );
    expect(
        dp.send(
            "web-1",
            Ingress,
            &http()
                .ext(Ext::DestinationOptions)
                .ext(Ext::HopByHop)
                .build(),
        ),
        REASON_IPV6_EXT_CHAIN,
    );
    let mut long = http();
    for _ in 0..9 {
        long = long.ext(Ext::DestinationOptions);
    }
    expect(
        dp.send("web-1", Ingress, &long.build()),
        REASON_IPV6_EXT_CHAIN,
    );
}

#[test]
fn h3_truncated_and_malformed_headers_drop() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let good = tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_SYN);
    let mut short_ip = good.clone();
    short_ip.truncate(14 + 20 + 10);
    expect(dp.send("web-1", Ingress, &short_ip), REASON_BAD_IPV4);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    expect(dp.send("web-1", Ingress, &bad_ihl), REASON_BAD_IPV4);
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    expect(dp.send("web-1", Ingress, &bad_version), REASON_BAD_IPV4);
    let short_tcp = IpPacket::new(
        v4("198.51.100.7"),
        v4("10.0.1.10"),
        L4::tcp(4000, 22, TCP_SYN),
    )
    .truncate_l4(12)
    .build();
    expect(dp.send("web-1", Ingress, &short_tcp), REASON_TRUNCATED_L4);
    let short_udp = IpPacket::new(v4("10.9.9.9"), v4("10.0.1.10"), L4::udp(4000, 1500))
        .truncate_l4(6)
        .build();
    expect(dp.send("web-1", Ingress, &short_udp), REASON_TRUNCATED_L4);
    let v6 = IpPacket::new(
        "2001:db8::7".parse().unwrap(),
        "fd00:1::10".parse().unwrap(),
        L4::tcp(4000, 80, TCP_SYN),
    )
    .build();
    let mut short_v6 = v6.clone();
    short_v6.truncate(14 + 40 + 4);
    expect(dp.send("web-1", Ingress, &short_v6), REASON_BAD_IPV6);
    let mut tags = ethernet(Some(1), 0x8100, &[0, 2, 0x81, 0]);
    tags.extend_from_slice(&[0, 3]);
    tags.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    tags.extend_from_slice(&[0u8; 40]);
    expect(dp.send("web-1", Ingress, &tags), REASON_BAD_VLAN);
}

#[test]
fn vlan_tags_and_ipv4_options_are_parsed_not_rejected() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    let tagged = IpPacket::new(
        v4("198.51.100.7"),
        v4("10.0.1.10"),
        L4::tcp(4000, 22, TCP_SYN),
    )
    .vlan(42)
    .build();
    expect(dp.send("web-1", Ingress, &tagged), REASON_NEW_FLOW);
    let with_options = IpPacket::new(
        v4("198.51.100.7"),
        v4("10.0.1.10"),
        L4::tcp(4001, 22, TCP_SYN),
    )
    .ipv4_options(&[1, 1, 1, 1, 1, 1, 1, 0])
    .build();
    expect(dp.send("web-1", Ingress, &with_options), REASON_NEW_FLOW);
    let denied_with_options = IpPacket::new(
        v4("198.51.100.7"),
        v4("10.0.1.10"),
        L4::tcp(4002, 23, TCP_SYN),
    )
    .ipv4_options(&[1, 1, 1, 0])
    .build();
    expect(
        dp.send("web-1", Ingress, &denied_with_options),
        REASON_NO_RULE,
    );
}

#[test]
fn host_attachment_judges_inbound_in_xdp_and_outbound_in_tc() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "host-1",
            Ingress,
            &tcp("198.51.100.7", 4000, "10.0.5.10", 22, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
    expect(
        dp.send(
            "host-1",
            Egress,
            &tcp("10.0.5.10", 22, "198.51.100.7", 4000, TCP_SYN | TCP_ACK),
        ),
        REASON_CT_REPLY,
    );
    expect(
        dp.send(
            "host-1",
            Ingress,
            &tcp("203.0.113.9", 4000, "10.0.5.10", 23, TCP_SYN),
        ),
        REASON_NO_RULE,
    );
    expect(
        dp.send(
            "host-1",
            Ingress,
            &tcp("198.51.100.7", 4000, "10.0.5.10", 22, TCP_RST),
        ),
        REASON_CT_TRACKED,
    );
}

#[test]
fn tcp_rst_starts_nothing_and_a_syn_reuses_a_closed_tuple() {
    if !privileged() {
        return;
    }
    let mut dp = base();
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("198.51.100.7", 4000, "10.0.1.10", 22, TCP_RST),
        ),
        REASON_RULE_NO_ENTRY,
    );
    assert!(dp.embryonic_flows().is_empty());
    dp.send(
        "web-1",
        Ingress,
        &tcp("198.51.100.7", 4001, "10.0.1.10", 22, TCP_SYN),
    );
    dp.send(
        "web-1",
        Egress,
        &tcp("10.0.1.10", 22, "198.51.100.7", 4001, TCP_RST),
    );
    // The tuple is closing; a new SYN is judged afresh (and admitted by the rule).
    expect(
        dp.send(
            "web-1",
            Ingress,
            &tcp("198.51.100.7", 4001, "10.0.1.10", 22, TCP_SYN),
        ),
        REASON_NEW_FLOW,
    );
}

/// Thousands of random packets against random compiled policies: every verdict and reason
/// equals the reference evaluator's (with its reference conntrack), and every packet a rule
/// admits increments exactly that rule's hit counter.
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
    for seed in 0..40u64 {
        let mut rng = testgen::Rng::new(seed);
        let config = testgen::random_config(&mut rng);
        dp.flush_conntrack();
        dp.reconfigure(config.clone());
        let mut session = Session::new(config.clone());
        for _ in 0..100 {
            let (instance, direction, packet) = testgen::random_packet(&mut rng, &config);
            let expected = session.process(
                &instance,
                direction,
                &Frame::Ip(packet.clone()),
                started.elapsed().as_secs_f64(),
            );
            let hit_rule = expected
                .rule
                .map(|bit| dp.global_rule_id(&instance, direction, bit));
            let hits_before = hit_rule.map(|rule| dp.rule_hits(rule));
            let sent = dp.send(&instance, direction, &from_eval(&packet));
            assert_eq!(
                sent.reason,
                expected.reason.code(),
                "seed {seed}: {instance} {direction} {packet:?}: datapath {sent}, evaluator {:?}",
                expected
            );
            if let (Some(rule), Some(before)) = (hit_rule, hits_before) {
                assert_eq!(
                    dp.rule_hits(rule),
                    before + 1,
                    "seed {seed}: hit counter of rule {rule}"
                );
            }
            packets += 1;
        }
    }
    assert_eq!(packets, 4000);
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
