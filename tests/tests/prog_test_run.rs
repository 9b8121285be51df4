//! Tier 2: the real eBPF object under BPF_PROG_TEST_RUN, with maps filled by the real
//! compiler, fed hand-built frames. Test names cite `../shared/ec2-sg-semantics.md`.

use filter_common::*;
use sgwall::model::Direction::{Egress, Ingress};
use sgwall_tests::{
    datapath::TestDatapath,
    packet::{IpPacket, L4, TCP_ACK, TCP_SYN, v4},
    privileged,
};

const THREE_TIER: &str = include_str!("../../examples/three-tier.toml");

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    IpPacket::new(v4(src), v4(dst), L4::tcp(sport, dport, flags)).build()
}

#[test]
fn r1_unmatched_inbound_is_dropped_and_matched_inbound_admitted() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let denied = dp.send(
        "web-1",
        Ingress,
        &tcp("203.0.113.10", 40000, "10.0.1.10", 8080, TCP_SYN),
    );
    assert_eq!(
        (denied.admitted, denied.reason),
        (false, REASON_NO_RULE),
        "{denied}"
    );
    let admitted = dp.send(
        "web-1",
        Ingress,
        &tcp("203.0.113.10", 40000, "10.0.1.10", 443, TCP_SYN),
    );
    assert!(admitted.admitted, "{admitted}");
}

#[test]
fn c8_inbound_from_anywhere_with_open_egress_is_untracked() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let sent = dp.send(
        "web-1",
        Ingress,
        &tcp("203.0.113.10", 40000, "10.0.1.10", 80, TCP_SYN),
    );
    assert_eq!(sent.reason, REASON_UNTRACKED, "{sent}");
    assert!(
        dp.embryonic_flows().is_empty(),
        "no conntrack entry for an untracked flow"
    );
}

#[test]
fn g1_c1_group_reference_admits_and_reply_passes_without_reverse_rule() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let syn = dp.send(
        "app-1",
        Ingress,
        &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_SYN),
    );
    assert_eq!(syn.reason, REASON_NEW_FLOW, "{syn}");
    let reply = dp.send(
        "app-1",
        Egress,
        &tcp("10.0.2.10", 8080, "10.0.1.10", 40001, TCP_SYN | TCP_ACK),
    );
    assert_eq!(reply.reason, REASON_CT_REPLY, "{reply}");
    assert_eq!(
        dp.established_flows().len(),
        1,
        "the reply promoted the flow"
    );
    let ack = dp.send(
        "app-1",
        Ingress,
        &tcp("10.0.1.10", 40001, "10.0.2.10", 8080, TCP_ACK),
    );
    assert_eq!(ack.reason, REASON_CT_TRACKED, "{ack}");
}

#[test]
fn i1_spoofed_source_is_dropped_before_conntrack() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let sent = dp.send(
        "app-1",
        Egress,
        &tcp("10.9.9.9", 40000, "10.0.3.10", 3306, TCP_SYN),
    );
    assert_eq!(sent.reason, REASON_SPOOFED_SOURCE, "{sent}");
    assert!(dp.embryonic_flows().is_empty());
    assert!(dp.established_flows().is_empty());
}

#[test]
fn g1_member_elsewhere_reaches_db() {
    if !privileged() {
        return;
    }
    let mut dp = TestDatapath::from_toml(THREE_TIER);
    let sent = dp.send(
        "db-1",
        Ingress,
        &tcp("10.0.2.99", 50000, "10.0.3.10", 3306, TCP_SYN),
    );
    assert_eq!(sent.reason, REASON_NEW_FLOW, "{sent}");
    let web = dp.send(
        "db-1",
        Ingress,
        &tcp("10.0.1.10", 50000, "10.0.3.10", 3306, TCP_SYN),
    );
    assert_eq!(web.reason, REASON_NO_RULE, "{web}");
}
