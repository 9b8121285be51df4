//! Tier 3: network ACLs (N1-N4) and managed prefix lists (P1) with real traffic. Each test
//! builds a `sgwall lab` topology from a config with `[[subnet]]`, `[[network_acl]]` and
//! `[[prefix_list]]` tables, sends traffic, and checks it against the statement and against the
//! reference evaluator (every matrix cell must agree). Test names start with the statement IDs.
//!
//! The instances use IPv4 only: ACL entries carry one CIDR each (N2), and one family shows each
//! statement as well as two.

use std::time::{Duration, Instant};

use sgwall::{
    lab::matrix::Matrix,
    probe::Service,
    runtime::console::{AgentEvent, ReloadOutcome},
};
use sgwall_tests::{
    lab::{TcpEchoServer, TcpSession, TestLab},
    privileged,
};

/// `client` at 10.9.0.10, `other` at 10.8.0.10: unfiltered hosts outside every subnet.
const CLIENTS: &str = r#"
[[lab.client]]
name = "client"
addresses = ["10.9.0.10"]

[[lab.client]]
name = "other"
addresses = ["10.8.0.10"]
"#;

/// Admits TCP 7000-7002 and ICMP from every private address: what the groups allow is never
/// what refuses the probes below, so each refusal is the ACL's.
const OPEN_GROUP: &str = r#"
[[security_group]]
name = "open"
ingress = [
  { protocol = "tcp", ports = "7000-7002", cidr = ["10.0.0.0/8"] },
  { protocol = "icmp", cidr = ["10.0.0.0/8"] },
]
"#;

const TCP: [Service; 3] = [Service::Tcp(7000), Service::Tcp(7001), Service::Tcp(7002)];

/// An `[[instance]]` at 10.N.0.10 on interface `sgw-NAME`, in group `open`.
fn instance(name: &str, n: u8) -> String {
    format!(
        r#"
[[instance]]
name = "{name}"
interface = "sgw-{name}"
attach = "port"
addresses = ["10.{n}.0.10"]
security_groups = ["open"]
"#
    )
}

/// A `[[network_acl]]` named `name` with `ingress` and `egress` entries, each
/// `(number, action, protocol, ports, cidr)`; `ports` empty for none.
type Entry<'a> = (u16, &'a str, &'a str, &'a str, &'a str);

fn acl(name: &str, ingress: &[Entry], egress: &[Entry]) -> String {
    let entries = |direction: &str, entries: &[Entry]| -> String {
        entries
            .iter()
            .map(|(number, action, protocol, ports, cidr)| {
                let ports = if ports.is_empty() {
                    String::new()
                } else {
                    format!("\nports = \"{ports}\"")
                };
                format!(
                    "\n[[network_acl.{direction}]]\nnumber = {number}\naction = \"{action}\"\n\
                     protocol = \"{protocol}\"{ports}\ncidr = \"{cidr}\"\n"
                )
            })
            .collect()
    };
    format!(
        "\n[[network_acl]]\nname = \"{name}\"\n{}{}",
        entries("ingress", ingress),
        entries("egress", egress)
    )
}

/// A `[[subnet]]`; `acl` empty for the default ACL.
fn subnet(name: &str, cidr: &str, acl: &str) -> String {
    let acl = if acl.is_empty() {
        String::new()
    } else {
        format!("network_acl = \"{acl}\"\n")
    };
    format!("\n[[subnet]]\nname = \"{name}\"\ncidr = [\"{cidr}\"]\n{acl}")
}

/// Replies of TCP flows, both ways: stateless ACLs need the ephemeral ports (N3).
const EPHEMERAL_OUT: Entry = (100, "allow", "tcp", "1024-65535", "0.0.0.0/0");

fn up(config: &str) -> Option<TestLab> {
    privileged().then(|| TestLab::up(config))
}

/// The probed cell from `source` to `destination` for `service`, asserted to get through or
/// not, and, when refused, to name the ACL (`by_acl`) or not.
fn assert_cell(
    matrix: &Matrix,
    source: &str,
    destination: &str,
    service: Service,
    passes: bool,
    by_acl: bool,
) {
    let cell = matrix
        .cells
        .iter()
        .find(|c| c.source == source && c.destination == destination && c.service == service)
        .unwrap_or_else(|| panic!("no cell {source} → {destination} {service}"));
    assert_eq!(
        cell.got_through(),
        Some(passes),
        "{source} → {destination} {service}: {}",
        cell.expected.why
    );
    assert_eq!(
        cell.expected.refused_by_acl, by_acl,
        "{source} → {destination} {service}: {}",
        cell.expected.why
    );
}

fn why<'a>(matrix: &'a Matrix, source: &str, destination: &str, service: Service) -> &'a str {
    matrix
        .cells
        .iter()
        .find(|c| c.source == source && c.destination == destination && c.service == service)
        .map(|c| c.expected.why.as_str())
        .unwrap_or_else(|| panic!("no cell {source} → {destination} {service}"))
}

#[test]
fn n1_default_acl_admits_everything_and_a_new_custom_acl_denies_everything() {
    let config = format!(
        "{OPEN_GROUP}{}{}{}{}{}{CLIENTS}",
        acl("fresh", &[], &[]),
        subnet("defaulted", "10.1.0.0/24", ""),
        subnet("custom", "10.2.0.0/24", "fresh"),
        instance("a", 1),
        instance("b", 2),
    );
    let Some(lab) = up(&config) else {
        return;
    };
    let matrix = lab.matrix(&["client"], &["a", "b"], &[Service::Tcp(7000)]);
    assert_cell(&matrix, "client", "a", Service::Tcp(7000), true, false);
    // The groups admit it; the new ACL, with no entry, refuses it with its final `*`.
    assert_cell(&matrix, "client", "b", Service::Tcp(7000), false, true);
    let reason = why(&matrix, "client", "b", Service::Tcp(7000));
    assert!(reason.contains("network ACL fresh"), "{reason}");
    assert!(reason.contains("entry *"), "{reason}");
}

#[test]
fn n2_lowest_number_first_match_wins_and_the_final_entry_denies() {
    let config = format!(
        "{OPEN_GROUP}{}{}{}{CLIENTS}",
        acl(
            "numbered",
            &[
                // Written out of order: 90 is judged before 100 and wins for 7001.
                (100, "allow", "tcp", "7000-7001", "10.9.0.0/24"),
                (90, "deny", "tcp", "7001", "10.9.0.0/24"),
                (110, "allow", "icmp", "", "10.9.0.0/24"),
            ],
            &[EPHEMERAL_OUT, (110, "allow", "icmp", "", "10.9.0.0/24")],
        ),
        subnet("s", "10.1.0.0/24", "numbered"),
        instance("a", 1),
    );
    // Flow records within a second, to see what they say of the refusals.
    let Some(lab) = privileged().then(|| TestLab::up_with(&config, &["--flow-window", "1"])) else {
        return;
    };
    let mut services = TCP.to_vec();
    services.push(Service::IcmpEcho);
    let matrix = lab.matrix(&["client"], &["a"], &services);
    assert_cell(&matrix, "client", "a", Service::Tcp(7000), true, false);
    assert_cell(&matrix, "client", "a", Service::Tcp(7001), false, true);
    assert!(why(&matrix, "client", "a", Service::Tcp(7001)).contains("ingress entry 90: deny"));
    // The groups admit 7002; no entry does, so `*` denies.
    assert_cell(&matrix, "client", "a", Service::Tcp(7002), false, true);
    assert!(why(&matrix, "client", "a", Service::Tcp(7002)).contains("entry *"));
    assert_cell(&matrix, "client", "a", Service::IcmpEcho, true, false);

    // `rules --hits` counts ACL entries like rules: 90 refused the 7001 probe (and its retry),
    // 100 admitted the 7000 one; the ICMP entries saw the echo both ways.
    let rules = lab.sgwall_json(&["rules", "--hits", "--json"]);
    let hits = |direction: &str, number: u64| -> u64 {
        rules
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| {
                r["group"] == "acl:numbered"
                    && r["direction"] == direction
                    && r["rule_index"] == number
            })
            .unwrap_or_else(|| panic!("no ACL entry {direction} {number} in {rules}"))["hits"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(hits("ingress", 90) >= 1, "{rules}");
    assert!(hits("ingress", 100) >= 1, "{rules}");
    assert!(
        hits("ingress", 110) >= 1 && hits("egress", 110) >= 1,
        "{rules}"
    );
    assert!(lab.sgwall(&["rules", "--hits"]).contains("acl:numbered#90"));

    // Each REJECT record names what refused it: entry 90, or the final entry.
    let wanted = [
        "\"reject-reason\":\"acl:numbered#90\"",
        "\"reject-reason\":\"acl:numbered#*\"",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut records = String::new();
    while Instant::now() < deadline && !wanted.iter().all(|w| records.contains(w)) {
        std::thread::sleep(Duration::from_millis(500));
        records = lab.sgwall(&["flows", "--json"]);
    }
    for w in wanted {
        assert!(records.contains(w), "no record with {w}:\n{records}");
    }
    assert!(
        records.contains("\"reject-reason\":\"-\""),
        "ACCEPTs name nothing: {records}"
    );
}

/// N3's ACL: inbound TCP 7000 from `client`'s network, and with `ephemeral` the replies out.
fn n3_config(inbound_deny: bool, ephemeral: bool) -> String {
    let mut ingress = vec![(100, "allow", "tcp", "7000", "10.9.0.0/24")];
    if inbound_deny {
        ingress.push((50, "deny", "tcp", "7000", "10.9.0.10/32"));
    }
    let egress = if ephemeral {
        vec![EPHEMERAL_OUT]
    } else {
        vec![(100, "allow", "tcp", "7000", "0.0.0.0/0")]
    };
    format!(
        "{OPEN_GROUP}{}{}{}{CLIENTS}",
        acl("stateless", &ingress, &egress),
        subnet("s", "10.1.0.0/24", "stateless"),
        instance("a", 1),
    )
}

#[test]
fn n3_replies_need_ephemeral_ports_and_a_deny_entry_cuts_a_flow_the_groups_track() {
    // The groups track the flow and would admit its replies (C1); the stateless ACL does not.
    let Some(mut lab) = up(&n3_config(false, false)) else {
        return;
    };
    let matrix = lab.matrix(&["client"], &["a"], &[Service::Tcp(7000)]);
    assert_cell(&matrix, "client", "a", Service::Tcp(7000), false, true);
    let reason = why(&matrix, "client", "a", Service::Tcp(7000));
    assert!(
        reason.contains("answer is dropped on a egress") && reason.contains("entry *"),
        "{reason}"
    );

    lab.reconfigure(&n3_config(false, true));
    let _server = TcpEchoServer::start(&lab.namespace("a"), 7000);
    let client = lab.namespace("client");
    let (from, to) = (lab.address("client", false), lab.address("a", false));
    let mut session = TcpSession::connect(&client, from, to, 7000)
        .expect("connecting once the replies' ephemeral ports are allowed");
    assert!(session.exchange(), "a fresh session carries data");

    // A deny entry ahead of the allow cuts the established session at once: every packet is
    // judged, whatever the groups track.
    lab.reconfigure(&n3_config(true, true));
    assert!(
        !session.exchange(),
        "the deny entry cuts the tracked session"
    );
    assert!(
        TcpSession::connect(&client, from, to, 7000).is_none(),
        "a new connection under the deny entry"
    );

    // The groups never stopped tracking it: with the entry gone the same session goes on,
    // once TCP retransmits (bounded: a few exchanges of two probe timeouts each).
    lab.reconfigure(&n3_config(false, true));
    let resumed = (0..5).any(|_| session.exchange());
    assert!(
        resumed,
        "the tracked session resumes when the deny entry goes"
    );
}

#[test]
fn n4_one_subnet_skips_its_acl_inbound_before_the_groups_outbound_after() {
    // a and b share subnet "s" (10.0.0.0/14) whose ACL denies everything; c is elsewhere.
    let config = format!(
        "{OPEN_GROUP}{}{}{}{}{}{CLIENTS}",
        acl("closed", &[], &[]),
        subnet("s", "10.0.0.0/14", "closed"),
        instance("a", 1),
        instance("b", 2),
        instance("c", 5),
    );
    let Some(lab) = up(&config) else {
        return;
    };
    let matrix = lab.matrix(&["a", "client"], &["b", "c"], &[Service::Tcp(7000)]);
    // Inside the subnet: the groups alone decide, both ways.
    assert_cell(&matrix, "a", "b", Service::Tcp(7000), true, false);
    // Inbound, the ACL refuses before the groups are asked, though they admit it.
    assert_cell(&matrix, "client", "b", Service::Tcp(7000), false, true);
    let inbound = why(&matrix, "client", "b", Service::Tcp(7000));
    assert!(
        inbound.starts_with("dropped on b ingress: network ACL closed"),
        "{inbound}"
    );
    // Outbound, after the groups (a's default egress admits it): refused as it leaves a's
    // subnet, before c (outside it) ever sees it.
    assert_cell(&matrix, "a", "c", Service::Tcp(7000), false, true);
    let outbound = why(&matrix, "a", "c", Service::Tcp(7000));
    assert!(
        outbound.starts_with("dropped on a egress: network ACL closed"),
        "{outbound}"
    );
    assert_cell(&matrix, "client", "c", Service::Tcp(7000), true, false);
}

/// A group admitting TCP 7000-7001 from prefix list `clients`, whose entries are `entries`.
fn p1_config(entries: &str) -> String {
    format!(
        r#"
[[prefix_list]]
name = "clients"
family = "IPv4"
max_entries = 5
entries = [{entries}]

[[security_group]]
name = "by-list"
ingress = [{{ protocol = "tcp", ports = "7000-7001", prefix_lists = ["clients"] }}]

[[instance]]
name = "a"
interface = "sgw-a"
attach = "port"
addresses = ["10.1.0.10"]
security_groups = ["by-list"]
{CLIENTS}"#
    )
}

#[test]
fn p1_prefix_list_peer_matches_its_entries_and_edits_apply_as_a_delta_keeping_flows() {
    let before = p1_config(r#"{ cidr = "10.9.0.0/24" }"#);
    let after = p1_config(r#"{ cidr = "10.8.0.0/24", description = "other, not client" }"#);
    let Some(mut lab) = up(&before) else {
        return;
    };
    let matrix = lab.matrix(&["client", "other"], &["a"], &[Service::Tcp(7000)]);
    assert_cell(&matrix, "client", "a", Service::Tcp(7000), true, false);
    assert_cell(&matrix, "other", "a", Service::Tcp(7000), false, false);

    // The session uses 7001, so the probes' listener on 7000 is free.
    let _server = TcpEchoServer::start(&lab.namespace("a"), 7001);
    let client = lab.namespace("client");
    let (from, to) = (lab.address("client", false), lab.address("a", false));
    let mut session = TcpSession::connect(&client, from, to, 7001).expect("client's session");
    assert!(session.exchange());

    // The entries change, no rule does: applied like a membership change (G3), no flip.
    let since = lab.replace_config(&after);
    let event = lab.wait_reloaded(since);
    // One entry deleted, one written.
    assert!(
        matches!(
            event,
            AgentEvent::Reloaded {
                outcome: ReloadOutcome::MembershipDelta {
                    members_written: 0,
                    prefix_list_entries_written: 2,
                },
                ..
            }
        ),
        "an entry edit reloads as a delta: {event}"
    );
    let matrix = lab.matrix(&["client", "other"], &["a"], &[Service::Tcp(7000)]);
    assert_cell(&matrix, "client", "a", Service::Tcp(7000), false, false);
    assert_cell(&matrix, "other", "a", Service::Tcp(7000), true, false);
    // C4: the flow the old entry admitted is still tracked, and goes on.
    for _ in 0..3 {
        assert!(session.exchange(), "the tracked session outlives the entry");
    }
}
