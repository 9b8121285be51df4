//! The worst day, measured (C6, I1, issue 10): a `sgwall lab` (web-1 behind the router, where
//! a release `sgwall run` enforces it; a client in the same /8) under three floods, with real
//! sessions held across them.
//!
//! - a SYN flood from spoofed sources whose SYN-ACKs go nowhere (the shape of the issue 10
//!   report): sessions kept, new connections during the flood, time to a new connection after;
//! - a flood of spoofed UDP datagrams to a UDP echo service, one per source: each is answered
//!   once and never again from its source, so it stays embryonic and uses no allowance;
//! - a denied UDP flood at full speed against an allowed TCP transfer: the transfer's
//!   throughput with and without it.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sgwall::probe::{Listener, Service};
use sgwall_tests::{
    flood::{Flood, spoofed_source, syn, udp},
    lab::{TcpEchoServer, TcpSession, TestLab},
};

use crate::{Mode, report::TargetRow, traffic};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 6, 0, 10);
const ECHO_PORT: u16 = 8080;
const IPERF_PORT: u16 = 5201;
const UDP_ECHO_PORT: u16 = 7;
const DENIED_PORT: u16 = 9999;

pub struct Params {
    allowance: u32,
    sessions: usize,
    syns: u32,
    syn_seconds: u64,
    /// Spoofed UDP datagrams to the echo service; 0 skips that flood (it costs the UDP
    /// timeout, 30 s, to measure).
    udp_spoofed: u32,
    denied_datagrams: u32,
    transfer_seconds: u32,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            // The issue 10 report: max_flows = 2000, 40,000 SYNs in 10 s, 50 sessions.
            Mode::Full => Params {
                allowance: 2000,
                sessions: 50,
                syns: 40_000,
                syn_seconds: 10,
                udp_spoofed: 4000,
                denied_datagrams: 2_000_000,
                transfer_seconds: 5,
            },
            Mode::Quick => Params {
                allowance: 500,
                sessions: 50,
                syns: 10_000,
                syn_seconds: 5,
                udp_spoofed: 1000,
                denied_datagrams: 600_000,
                transfer_seconds: 3,
            },
            Mode::Smoke => Params {
                allowance: 50,
                sessions: 10,
                syns: 500,
                syn_seconds: 1,
                udp_spoofed: 0,
                denied_datagrams: 50_000,
                transfer_seconds: 1,
            },
        }
    }
}

#[derive(Serialize)]
pub struct FloodsResult {
    pub allowance: u32,
    pub sessions: usize,
    pub syn: SynFlood,
    pub udp_spoofed: Option<UdpFlood>,
    pub denied: DeniedFlood,
}

#[derive(Serialize)]
pub struct SynFlood {
    pub sent: u32,
    pub seconds: u64,
    /// Echo round trips on the held sessions during the flood, and how many came back.
    pub exchanges: usize,
    pub exchanges_ok: usize,
    /// Held sessions still carrying data after the flood.
    pub sessions_kept: usize,
    pub new_tried: usize,
    pub new_ok: usize,
    /// From the flood's end to the first new connection, milliseconds (None: not in 60 s).
    pub reconnect_ms: Option<f64>,
    /// Spoofed flows in the established pool (must be 0) and half-open in the embryonic one.
    pub spoofed_established: usize,
    pub spoofed_half_open: usize,
}

#[derive(Serialize)]
pub struct UdpFlood {
    pub sent: u32,
    pub exchanges_ok_during: usize,
    pub exchanges_during: usize,
    /// New flows the datapath refused for want of allowance (C6), and the established
    /// entries web-1 held, right after the flood.
    pub refused: u64,
    pub established_after: u64,
    /// The flood's own flows in each pool right after it (established must be 0).
    pub spoofed_established: usize,
    pub spoofed_embryonic: usize,
    pub reconnect_ms: Option<f64>,
}

struct SpoofedFlows {
    established: usize,
    embryonic: usize,
    half_open: usize,
}

/// web-1's conntrack entries whose remote address starts with `prefix`, by pool and state,
/// from `sgwall conntrack --json` (what an operator would look at).
fn spoofed_flows(lab: &TestLab, prefix: &str) -> SpoofedFlows {
    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    let spoofed: Vec<&serde_json::Value> = flows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|flow| {
            flow["remote"]
                .as_str()
                .is_some_and(|remote| remote.starts_with(prefix))
        })
        .collect();
    let count = |keep: &dyn Fn(&serde_json::Value) -> bool| {
        spoofed.iter().filter(|flow| keep(flow)).count()
    };
    SpoofedFlows {
        established: count(&|flow| flow["pool"] == "established"),
        embryonic: count(&|flow| flow["pool"] == "embryonic"),
        half_open: count(&|flow| flow["state"] == "half-open"),
    }
}

/// web-1's established entries and its `conntrack_allowance_exceeded` count.
fn allowance(lab: &TestLab) -> (u64, u64) {
    let status = lab.sgwall_json(&["status", "--json"]);
    let established = status["allowances"][0]["established"].as_u64().unwrap_or(0);
    let refused = status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["reason"] == "conntrack_allowance_exceeded")
        .filter_map(|row| row["packets"].as_u64())
        .sum();
    (established, refused)
}

#[derive(Serialize)]
pub struct DeniedFlood {
    pub sent: u32,
    pub datagrams_per_second: f64,
    pub throughput_alone_mbps: f64,
    pub throughput_under_flood_mbps: f64,
}

fn config(allowance: u32) -> String {
    format!(
        r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{ECHO_PORT}"
  cidr = ["10.0.0.0/8"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{IPERF_PORT}"
  cidr = ["10.6.0.0/24"]
  [[security_group.ingress]]
  protocol = "udp"
  ports = "{UDP_ECHO_PORT}"
  cidr = ["10.0.0.0/8"]

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["{WEB}"]
security_groups = ["web"]
conntrack = {{ max_flows = {allowance}, udp_timeout = 30 }}

[[lab.client]]
name = "client"
addresses = ["{CLIENT}"]
"#
    )
}

/// Each flood gets a lab of its own, so that no flow of one (the sessions of the last one,
/// closing for 10 s) holds the allowance during the next.
pub fn run(params: &Params) -> Result<FloodsResult> {
    let syn = {
        let lab = TestLab::up(&config(params.allowance));
        let _server = TcpEchoServer::start(&lab.namespace("web-1"), ECHO_PORT);
        syn_flood(&lab, params)?
    };
    let udp_spoofed = if params.udp_spoofed > 0 {
        let lab = TestLab::up(&config(params.allowance));
        let _server = TcpEchoServer::start(&lab.namespace("web-1"), ECHO_PORT);
        let _echo = Listener::start(&lab.namespace("web-1"), Service::Udp(UDP_ECHO_PORT))
            .context("UDP echo on web-1")?;
        Some(udp_flood(&lab, params)?)
    } else {
        None
    };
    let denied = {
        let lab = TestLab::up(&config(params.allowance));
        denied_flood(&lab.namespace("web-1"), &lab.namespace("client"), params)?
    };
    Ok(FloodsResult {
        allowance: params.allowance,
        sessions: params.sessions,
        syn,
        udp_spoofed,
        denied,
    })
}

fn held_sessions(lab: &TestLab, count: usize) -> Result<Vec<TcpSession>> {
    let client = lab.namespace("client");
    (0..count)
        .map(|n| {
            let mut session =
                TcpSession::connect(&client, IpAddr::V4(CLIENT), IpAddr::V4(WEB), ECHO_PORT)
                    .with_context(|| format!("session {n}"))?;
            if !session.exchange() {
                bail!("session {n} carries no data");
            }
            Ok(session)
        })
        .collect()
}

fn exchange_all(sessions: &mut [TcpSession]) -> usize {
    sessions
        .iter_mut()
        .map(TcpSession::exchange)
        .filter(|ok| *ok)
        .count()
}

fn connects(lab: &TestLab) -> bool {
    TcpSession::connect(
        &lab.namespace("client"),
        IpAddr::V4(CLIENT),
        IpAddr::V4(WEB),
        ECHO_PORT,
    )
    .is_some()
}

/// Milliseconds until a new connection gets in, trying every 100 ms for at most `limit`.
fn reconnect_ms(lab: &TestLab, limit: Duration) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if connects(lab) {
            return Some(started.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Exchanges on the held sessions and tries new connections for most of `seconds`: (echoes
/// tried, echoes answered, connections tried, connections made).
fn during(
    lab: &TestLab,
    held: &mut [TcpSession],
    seconds: u64,
    try_new: bool,
) -> (usize, usize, usize, usize) {
    let (mut exchanges, mut ok, mut tried, mut new_ok) = (0, 0, 0, 0);
    let started = Instant::now();
    // Leave the last second of the flood alone, so "during" never runs past its end.
    let span = Duration::from_secs(seconds.saturating_sub(1).max(1));
    while started.elapsed() < span {
        exchanges += held.len();
        ok += exchange_all(held);
        if try_new {
            tried += 1;
            new_ok += usize::from(connects(lab));
        }
    }
    (exchanges, ok, tried, new_ok)
}

fn syn_flood(lab: &TestLab, params: &Params) -> Result<SynFlood> {
    let mut held = held_sessions(lab, params.sessions)?;
    let flood = Flood {
        count: params.syns,
        duration: Duration::from_secs(params.syn_seconds),
    }
    .start(&lab.namespace("client"), |n| {
        syn(spoofed_source([10, 200], n), 40_000, WEB, ECHO_PORT)
    });
    let (exchanges, exchanges_ok, new_tried, new_ok) =
        during(lab, &mut held, params.syn_seconds, true);
    let sent = flood.join();
    let reconnect_ms = reconnect_ms(lab, Duration::from_secs(60));
    let spoofed = spoofed_flows(lab, "10.200.");
    Ok(SynFlood {
        sent,
        seconds: params.syn_seconds,
        exchanges,
        exchanges_ok,
        sessions_kept: exchange_all(&mut held),
        new_tried,
        new_ok,
        reconnect_ms,
        spoofed_established: spoofed.established,
        spoofed_half_open: spoofed.half_open,
    })
}

fn udp_flood(lab: &TestLab, params: &Params) -> Result<UdpFlood> {
    let mut held = held_sessions(lab, params.sessions.min(10))?;
    let seconds = 3;
    let flood = Flood {
        count: params.udp_spoofed,
        duration: Duration::from_secs(seconds),
    }
    .start(&lab.namespace("client"), |n| {
        udp(spoofed_source([10, 202], n), 40_000, WEB, UDP_ECHO_PORT)
    });
    let (_, refused_before) = allowance(lab);
    // No new connections during this one: each would hold a slot for 10 s after it closes,
    // and the time to reconnect after the flood must measure the flood's flows alone.
    let (exchanges_during, exchanges_ok_during, _, _) = during(lab, &mut held, seconds, false);
    let sent = flood.join();
    let (established_after, refused_after) = allowance(lab);
    let spoofed = spoofed_flows(lab, "10.202.");
    Ok(UdpFlood {
        sent,
        exchanges_ok_during,
        exchanges_during,
        refused: refused_after - refused_before,
        established_after,
        spoofed_established: spoofed.established,
        spoofed_embryonic: spoofed.embryonic,
        reconnect_ms: reconnect_ms(lab, Duration::from_secs(60)),
    })
}

fn denied_flood(web_ns: &str, client_ns: &str, params: &Params) -> Result<DeniedFlood> {
    let _iperf = traffic::Iperf3Server::start(web_ns, IPERF_PORT)?;
    let alone = traffic::iperf3_tcp(client_ns, WEB, IPERF_PORT, params.transfer_seconds)? / 1e6;
    let seconds = u64::from(params.transfer_seconds) + 1;
    let started = Instant::now();
    let flood = Flood {
        count: params.denied_datagrams,
        duration: Duration::from_secs(seconds),
    }
    .start(client_ns, |n| {
        udp(CLIENT, 10_000 + (n % 50_000) as u16, WEB, DENIED_PORT)
    });
    let under = traffic::iperf3_tcp(client_ns, WEB, IPERF_PORT, params.transfer_seconds)? / 1e6;
    let sent = flood.join();
    Ok(DeniedFlood {
        sent,
        datagrams_per_second: f64::from(sent) / started.elapsed().as_secs_f64(),
        throughput_alone_mbps: alone,
        throughput_under_flood_mbps: under,
    })
}

fn ms(value: Option<f64>) -> String {
    value.map_or("not within 60 s".into(), |ms| format!("{ms:.0} ms"))
}

pub fn fragment(result: &FloodsResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::from("### Floods\n\n");
    out.push_str(header);
    let s = &result.syn;
    let _ = writeln!(
        out,
        "web-1 admits TCP 8080 from 10.0.0.0/8 with `max_flows = {}`; {} sessions from the \
         client are held open through each flood, each exchanging an echo per round.\n",
        result.allowance, result.sessions
    );
    let _ = writeln!(
        out,
        "| flood | sent | held-session echoes during it | new connections during it | first new connection after it | spoofed flows established |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| SYN, spoofed 10.200.0.0/16, SYN-ACKs go nowhere, over {} s | {} | {}/{} | {}/{} | {} | {} ({} half-open, embryonic) |",
        s.seconds,
        s.sent,
        s.exchanges_ok,
        s.exchanges,
        s.new_ok,
        s.new_tried,
        ms(s.reconnect_ms),
        s.spoofed_established,
        s.spoofed_half_open
    );
    if let Some(u) = &result.udp_spoofed {
        let _ = writeln!(
            out,
            "| UDP to an echo service, spoofed 10.202.0.0/16, over 3 s | {} | {}/{} | {} new flows refused (C6) | {} | {} ({} embryonic; web-1 held {} established, its sessions) |",
            u.sent,
            u.exchanges_ok_during,
            u.exchanges_during,
            u.refused,
            ms(u.reconnect_ms),
            u.spoofed_established,
            u.spoofed_embryonic,
            u.established_after,
        );
    }
    let d = &result.denied;
    let _ = writeln!(
        out,
        "\nDenied UDP flood (to a port no rule admits) at {:.0} datagrams/s, {} sent, against an \
         allowed iperf3 TCP transfer: {:.0} Mbit/s alone, {:.0} Mbit/s under the flood ({:.2}×).\n",
        d.datagrams_per_second,
        d.sent,
        d.throughput_alone_mbps,
        d.throughput_under_flood_mbps,
        d.throughput_under_flood_mbps / d.throughput_alone_mbps.max(f64::MIN_POSITIVE)
    );
    let kept = s.sessions_kept == result.sessions;
    let mut targets = vec![
        TargetRow {
            target: "spoofed SYN flood: every held session kept, none of the flood established"
                .into(),
            measured: format!(
                "{}/{} sessions kept, {} spoofed flows established",
                s.sessions_kept, result.sessions, s.spoofed_established
            ),
            met: Some(kept && s.spoofed_established == 0),
        },
        TargetRow {
            target: "spoofed SYN flood: a new connection within a few seconds after it".into(),
            measured: ms(s.reconnect_ms),
            met: Some(s.reconnect_ms.is_some_and(|ms| ms <= 5000.0)),
        },
    ];
    if let Some(u) = &result.udp_spoofed {
        targets.push(TargetRow {
            target: "spoofed UDP flood to an echo service: no slot taken, nobody refused".into(),
            measured: format!(
                "{} spoofed flows established, {} new flows refused",
                u.spoofed_established, u.refused
            ),
            met: Some(u.spoofed_established == 0 && u.refused == 0),
        });
    }
    (out, targets)
}
