//! Tier 3: the worst day (C6, I1, issue 10). Floods sent with spoofed or real sources through a
//! `sgwall lab`, with real TCP sessions held across them: established flows keep working, a
//! flood of half-open connections locks nobody out, spoofed packets never create state, and a
//! denied flood does not starve an allowed connection.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use sgwall_tests::{
    flood::{Flood, spoofed_source, syn, udp},
    lab::{TcpEchoServer, TcpSession, TestLab, UdpEndpoint},
    privileged,
};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 6, 0, 10);
const PORT: u16 = 8080;
/// Established flows web-1 may hold (C6).
const ALLOWANCE: u32 = 200;
/// Sessions held open through each flood.
const SESSIONS: usize = 50;

/// web-1 open on TCP 8080 to all of 10.0.0.0/8 (the flood's spoofed range included), with a
/// small allowance, and a client inside that range.
fn config() -> String {
    format!(
        r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{PORT}"
  cidr = ["10.0.0.0/8"]

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["{WEB}"]
security_groups = ["web"]
conntrack = {{ max_flows = {ALLOWANCE} }}

[[lab.client]]
name = "client"
addresses = ["{CLIENT}"]
"#
    )
}

fn sessions(lab: &TestLab, count: usize) -> Vec<TcpSession> {
    let client = lab.namespace("client");
    (0..count)
        .map(|n| {
            let mut session =
                TcpSession::connect(&client, IpAddr::V4(CLIENT), IpAddr::V4(WEB), PORT)
                    .unwrap_or_else(|| panic!("session {n} did not connect"));
            assert!(session.exchange(), "session {n} carries data");
            session
        })
        .collect()
}

/// Exchanges a message on every session; returns how many got their echo.
fn exchange_all(sessions: &mut [TcpSession]) -> usize {
    sessions
        .iter_mut()
        .map(TcpSession::exchange)
        .filter(|ok| *ok)
        .count()
}

/// Tries a new connection every 100 ms for at most `limit`; how long it took to get one.
fn time_to_connect(lab: &TestLab, limit: Duration) -> Option<Duration> {
    let client = lab.namespace("client");
    let started = Instant::now();
    while started.elapsed() < limit {
        if TcpSession::connect(&client, IpAddr::V4(CLIENT), IpAddr::V4(WEB), PORT).is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Established entries of web-1's conntrack whose remote address is in 10.200.0.0/16, and
/// half-open ones, from `sgwall conntrack --json`.
fn spoofed_flows(lab: &TestLab) -> (usize, usize) {
    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    let spoofed: Vec<&serde_json::Value> = flows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|flow| {
            flow["remote"]
                .as_str()
                .is_some_and(|remote| remote.starts_with("10.200."))
        })
        .collect();
    let established = spoofed
        .iter()
        .filter(|flow| flow["pool"] == "established")
        .count();
    let half_open = spoofed
        .iter()
        .filter(|flow| flow["state"] == "half-open" && flow["pool"] == "embryonic")
        .count();
    (established, half_open)
}

/// Issue 10 and C6: SYNs from 20 times the allowance of spoofed sources, whose SYN-ACKs go
/// nowhere (the router has no route back to them). Every established session keeps
/// exchanging data during the flood, new connections still get in during it and right after
/// it, and no spoofed flow takes an established slot: each stays half-open.
#[test]
fn c6_spoofed_syn_flood_keeps_established_flows_and_locks_nobody_out() {
    if !privileged() {
        return;
    }
    let lab = TestLab::up(&config());
    let _server = TcpEchoServer::start(&lab.namespace("web-1"), PORT);
    let mut held = sessions(&lab, SESSIONS);

    let flood = Flood {
        count: 20 * ALLOWANCE,
        duration: Duration::from_secs(4),
    }
    .start(&lab.namespace("client"), |n| {
        syn(spoofed_source([10, 200], n), 40_000, WEB, PORT)
    });
    let mut exchanged = 0;
    let mut rounds = 0;
    let mut new_during = 0;
    let flood_started = Instant::now();
    let mut last_try: Option<Instant> = None;
    while flood_started.elapsed() < Duration::from_secs(3) {
        exchanged += exchange_all(&mut held);
        rounds += 1;
        // Each connection made here holds an established slot for the closing timeout (C5,
        // 10 s) after it ends: a few tries show new connections get in without the test
        // itself using up the allowance it then measures.
        if last_try.is_none_or(|at| at.elapsed() >= Duration::from_millis(250)) {
            last_try = Some(Instant::now());
            new_during += usize::from(time_to_connect(&lab, Duration::from_millis(1)).is_some());
        }
    }
    let sent = flood.join();
    assert!(sent >= 20 * ALLOWANCE * 9 / 10, "the flood sent {sent}");
    assert!(
        exchanged * 100 >= rounds * SESSIONS * 99,
        "C6: {exchanged} of {} exchanges during the flood",
        rounds * SESSIONS
    );
    assert!(new_during > 0, "no new connection got in during the flood");

    let (established, half_open) = spoofed_flows(&lab);
    assert_eq!(
        established, 0,
        "a spoofed half-open flow took an established slot"
    );
    assert!(half_open > 0, "the half-open flows are shown as such");
    // "Within a few seconds" (issue 10): in practice the first attempt gets in.
    let took = time_to_connect(&lab, Duration::from_secs(10));
    assert!(
        took.is_some_and(|took| took <= Duration::from_secs(5)),
        "a new connection after the flood took {took:?} ({half_open} half-open flows)"
    );
    assert_eq!(exchange_all(&mut held), SESSIONS, "every session survived");
}

/// I1: a flood of spoofed sources from an instance is dropped and counted, and creates no
/// tracking entry at all.
#[test]
fn i1_a_spoofed_flood_from_an_instance_creates_no_tracking_entry() {
    if !privileged() {
        return;
    }
    let lab = TestLab::up(&config());
    let receiver = UdpEndpoint::bind(&lab.namespace("client"), IpAddr::V4(CLIENT), 9000);
    let sent = Flood {
        count: 2000,
        duration: Duration::from_secs(1),
    }
    .start(&lab.namespace("web-1"), |n| {
        udp(spoofed_source([10, 201], n), 5000, CLIENT, 9000)
    })
    .join();
    assert!(sent >= 1800, "the flood sent {sent}");
    let payload = b"sgwall".to_vec();
    assert_eq!(
        receiver.receive(&payload, Duration::from_millis(500)),
        None,
        "I1: a spoofed datagram got out"
    );
    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    assert_eq!(flows.as_array().map_or(0, Vec::len), 0, "{flows}");
    let status = lab.sgwall_json(&["status", "--json"]);
    let spoofed: u64 = status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["reason"] == "spoofed_source")
        .filter_map(|row| row["packets"].as_u64())
        .sum();
    assert!(
        spoofed >= u64::from(sent),
        "{spoofed} counted of {sent}: {status}"
    );
}

/// C6: a denied UDP flood at full speed does not starve an allowed TCP session on the same
/// interface, and none of it gets through.
#[test]
fn c6_a_denied_udp_flood_does_not_starve_an_allowed_connection() {
    if !privileged() {
        return;
    }
    let lab = TestLab::up(&config());
    let _server = TcpEchoServer::start(&lab.namespace("web-1"), PORT);
    let mut held = sessions(&lab, 1);
    let listener = UdpEndpoint::bind(&lab.namespace("web-1"), IpAddr::V4(WEB), 9999);
    let flood = Flood {
        count: 200_000,
        duration: Duration::from_secs(3),
    }
    .start(&lab.namespace("client"), |n| {
        udp(CLIENT, 10_000 + (n % 50_000) as u16, WEB, 9999)
    });
    let started = Instant::now();
    let (mut exchanged, mut rounds) = (0, 0);
    while started.elapsed() < Duration::from_secs(2) {
        exchanged += exchange_all(&mut held);
        rounds += 1;
    }
    let sent = flood.join();
    assert!(sent > 10_000, "the flood sent {sent}");
    assert_eq!(
        exchanged, rounds,
        "the allowed session starved during the flood"
    );
    let payload = b"sgwall".to_vec();
    assert_eq!(
        listener.receive(&payload, Duration::from_millis(200)),
        None::<SocketAddr>,
        "R1: a denied datagram arrived"
    );
}
