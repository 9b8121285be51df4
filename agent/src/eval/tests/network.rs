//! Managed prefix lists (P1) and network ACLs (N1-N4), on `examples/network-acl.toml`:
//! web-1 and web-2 in subnet "public" (10.0.1.0/24, ACL "public-acl"), app-1 in "private"
//! (10.0.2.0/24, ACL "private-acl"), SSH to the web tier from prefix list "office".

use super::*;
use crate::model::AclAction;

const NETWORK_ACL: &str = include_str!("../../../../examples/network-acl.toml");

fn acl_entry(number: u16, action: AclAction) -> Option<AclVerdict> {
    Some(AclVerdict::Entry { number, action })
}

#[test]
fn p1_a_rule_naming_a_prefix_list_matches_any_of_its_entries() {
    let config = config(NETWORK_ACL);
    let ssh = |from| tcp(from, 4000, "10.0.1.10", 22, TCP_SYN);
    // Rule 1 of web-sg: tcp 22 from pl:office (198.51.100.0/24 and 192.0.2.0/28).
    assert_eq!(
        judge(&config, "web-1", Ingress, &ssh("198.51.100.7")).rule,
        Some(1)
    );
    expect_judged(
        &config,
        &[
            ("web-1", Ingress, ssh("198.51.100.7"), NewFlow),
            // Allowed by the ACL (110 covers 198.51.100.0/24 only), so the groups decide.
            ("web-1", Ingress, ssh("192.0.2.5"), AclImplicitDeny),
        ],
    );
    // Without the ACL in the way, any entry of the list matches.
    let no_subnets = config_without_subnets(NETWORK_ACL);
    expect_judged(
        &no_subnets,
        &[
            ("web-1", Ingress, ssh("192.0.2.5"), NewFlow),
            ("web-1", Ingress, ssh("192.0.2.16"), NoRule),
            ("web-1", Ingress, ssh("203.0.113.10"), NoRule),
        ],
    );
}

/// The config with its subnets (and so its ACLs' effect) removed.
fn config_without_subnets(text: &str) -> Config {
    let mut config = config(text);
    config.subnets.clear();
    config
}

#[test]
fn p1_editing_entries_judges_new_flows_by_them_and_keeps_tracked_ones() {
    let before = config_without_subnets(NETWORK_ACL);
    let mut session = Session::new(before.clone());
    let syn = tcp("192.0.2.5", 4000, "10.0.1.10", 22, TCP_SYN);
    let reply = tcp("10.0.1.10", 22, "192.0.2.5", 4000, TCP_SYN | TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("web-1", Ingress, syn.clone(), 0.0, NewFlow),
            ("web-1", Egress, reply.clone(), 0.1, Reply),
        ],
    );
    let mut after = before;
    after.prefix_lists[0]
        .entries
        .retain(|e| e.cidr.to_string() != "192.0.2.0/28");
    session.reconfigure(after);
    let other_syn = tcp("192.0.2.5", 4001, "10.0.1.10", 22, TCP_SYN);
    let ack = tcp("192.0.2.5", 4000, "10.0.1.10", 22, TCP_ACK);
    expect_steps(
        &mut session,
        &[
            // C4: the tracked flow goes on.
            ("web-1", Ingress, ack, 1.0, Tracked),
            // A new flow is judged by the entries now in force.
            ("web-1", Ingress, other_syn, 1.1, NoRule),
        ],
    );
}

#[test]
fn n1_no_subnet_means_no_acl_and_the_default_acl_admits_everything() {
    let no_subnets = config_without_subnets(NETWORK_ACL);
    // HTTPS from anywhere with egress open to anywhere: untracked (C8).
    let https = tcp("198.18.0.10", 4000, "10.0.1.10", 443, TCP_SYN);
    let decision = judge(&no_subnets, "web-1", Ingress, &https);
    assert_eq!((decision.reason, decision.acl), (Untracked, None));

    let default_acl = config(&NETWORK_ACL.replace("network_acl = \"public-acl\"\n", ""));
    let decision = judge(&default_acl, "web-1", Ingress, &https);
    assert_eq!(decision.reason, Untracked);
    assert_eq!(decision.acl, acl_entry(100, AclAction::Allow));
}

#[test]
fn n1_a_custom_acl_without_entries_denies_everything() {
    let text = NETWORK_ACL.replace("network_acl = \"private-acl\"", "network_acl = \"empty\"")
        + "\n[[network_acl]]\nname = \"empty\"\n";
    let config = config(&text);
    let api = tcp("10.0.1.10", 4000, "10.0.2.10", 8080, TCP_SYN);
    let decision = judge(&config, "app-1", Ingress, &api);
    assert_eq!(decision.reason, AclImplicitDeny);
    assert_eq!(decision.acl, Some(AclVerdict::NoEntry));
    assert_eq!(
        decision.acl.map(AclVerdict::number_text).as_deref(),
        Some("*")
    );
}

#[test]
fn n2_lowest_number_first_the_first_match_wins_and_star_denies() {
    let config = config(NETWORK_ACL);
    let to_web = |from, port| tcp(from, 4000, "10.0.1.10", port, TCP_SYN);
    // 90 deny 198.18.0.0/15 comes before 100 allow 443 from anywhere.
    let blocked = judge(&config, "web-1", Ingress, &to_web("198.18.0.10", 443));
    assert_eq!(blocked.reason, AclDeny);
    assert_eq!(blocked.acl, acl_entry(90, AclAction::Deny));
    let https = judge(&config, "web-1", Ingress, &to_web("203.0.113.10", 443));
    assert_eq!(https.reason, Untracked);
    assert_eq!(https.acl, acl_entry(100, AclAction::Allow));
    // No entry for port 80: the final `*`.
    let http = judge(&config, "web-1", Ingress, &to_web("203.0.113.10", 80));
    assert_eq!(
        (http.reason, http.acl),
        (AclImplicitDeny, Some(AclVerdict::NoEntry))
    );
    // Protocol and ports as in R3: ICMP echo replies are let in (130), requests are not.
    expect_judged(
        &config,
        &[
            (
                "web-1",
                Ingress,
                icmp("203.0.113.10", "10.0.1.10", ICMP_ECHO_REQUEST, 0),
                AclImplicitDeny,
            ),
            (
                "web-1",
                Ingress,
                icmp("203.0.113.10", "10.0.1.10", ICMP_DEST_UNREACHABLE, 0),
                AclImplicitDeny,
            ),
        ],
    );
}

#[test]
fn n3_replies_need_entries_of_their_own_and_a_deny_cuts_a_tracked_flow() {
    let config = config(NETWORK_ACL);
    let mut session = Session::new(config.clone());
    let out = tcp("10.0.1.10", 40000, "203.0.113.10", 443, TCP_SYN);
    let back = tcp("203.0.113.10", 443, "10.0.1.10", 40000, TCP_SYN | TCP_ACK);
    let low_out = tcp("10.0.1.10", 1000, "203.0.113.10", 443, TCP_SYN);
    let low_back = tcp("203.0.113.10", 443, "10.0.1.10", 1000, TCP_SYN | TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("web-1", Egress, out.clone(), 0.0, NewFlow),
            // Entry 120 lets replies to ephemeral ports in; the groups see a tracked reply.
            ("web-1", Ingress, back.clone(), 0.1, Reply),
            // The same flow from port 1000: conntrack would admit the reply, the ACL does not.
            ("web-1", Egress, low_out, 0.2, NewFlow),
            ("web-1", Ingress, low_back, 0.3, AclImplicitDeny),
        ],
    );
    // Adding a deny for the peer cuts the tracked flow at once, both ways.
    let denied = NETWORK_ACL.replace(
        "  [[network_acl.egress]]\n  number = 100",
        "  [[network_acl.egress]]\n  number = 50\n  action = \"deny\"\n  protocol = \"all\"\n  cidr = \"203.0.113.0/24\"\n\n  [[network_acl.egress]]\n  number = 100",
    );
    session.reconfigure(super::config(&denied));
    let ack_out = tcp("10.0.1.10", 40000, "203.0.113.10", 443, TCP_ACK);
    expect_steps(
        &mut session,
        &[
            ("web-1", Egress, ack_out.clone(), 1.0, AclDeny),
            ("web-1", Ingress, back.clone(), 1.1, Reply),
        ],
    );
    // The flow was never dropped from conntrack: without the deny it flows again (C4).
    session.reconfigure(config);
    expect_steps(&mut session, &[("web-1", Egress, ack_out, 2.0, Tracked)]);
}

const ORDER: &str = r#"
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
fn n4_inbound_the_acl_comes_first_outbound_the_groups() {
    let config = config(ORDER);
    expect_judged(
        &config,
        &[
            // Inbound, both refuse port 25: the ACL, judged first, is named.
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 4000, "10.0.1.10", 25, TCP_SYN),
                AclImplicitDeny,
            ),
            // Inbound 22: the groups would admit it, the ACL does not.
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 4000, "10.0.1.10", 22, TCP_SYN),
                AclImplicitDeny,
            ),
            // Outbound, both refuse port 25: the groups, judged first, are named.
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 25, TCP_SYN),
                NoRule,
            ),
            // Outbound 443: the groups admit it, then the ACL refuses it.
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 443, TCP_SYN),
                AclImplicitDeny,
            ),
            // Outbound 80: the ACL would pass it, the groups do not.
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 80, TCP_SYN),
                NoRule,
            ),
        ],
    );
    // What the ACL refuses outbound leaves no flow behind: no reply is let in.
    let mut session = Session::new(config);
    expect_steps(
        &mut session,
        &[
            (
                "a",
                Egress,
                tcp("10.0.1.10", 4000, "203.0.113.1", 443, TCP_SYN),
                0.0,
                AclImplicitDeny,
            ),
            (
                "a",
                Ingress,
                tcp("203.0.113.1", 443, "10.0.1.10", 4000, TCP_SYN | TCP_ACK),
                0.1,
                AclImplicitDeny,
            ),
        ],
    );
    assert!(session.flows.is_empty());
}

#[test]
fn n4_traffic_inside_one_subnet_skips_the_acl() {
    let config = config(ORDER);
    // b to a on 5000: the ACL allows only port 80, but both are in subnet "s".
    let inside = tcp("10.0.1.11", 4000, "10.0.1.10", 5000, TCP_SYN);
    let decision = judge(&config, "a", Ingress, &inside);
    assert_eq!((decision.reason, decision.acl), (NewFlow, None));
    let decision = judge(
        &config,
        "b",
        Egress,
        &tcp("10.0.1.11", 4000, "10.0.1.10", 443, TCP_SYN),
    );
    assert_eq!((decision.reason, decision.acl), (NewFlow, None));
    // The same from outside the subnet meets the ACL.
    let outside = tcp("10.0.2.11", 4000, "10.0.1.10", 5000, TCP_SYN);
    assert_eq!(
        judge(&config, "a", Ingress, &outside).reason,
        AclImplicitDeny
    );
}
