//! The soak (issue 17): a release `sgwall run` on a lab through many reloads under traffic,
//! half of them generation flips (a rule changes), half membership deltas (members of the group
//! web-1's rule names come and go). It measures what a long life would show: the agent's
//! memory and file descriptors, the maps' fill once the first config is back (nothing leaks),
//! a TCP session held throughout (C4), and the counters (every packet counted once).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sgwall::netns;
use sgwall_tests::lab::{TcpEchoServer, TcpSession, TestLab};

use crate::{Mode, report::TargetRow};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 10);
const ECHO_PORT: u16 = 8080;
const FLIPPED_PORT: [u16; 2] = [9000, 9001];
const DENIED_PORT: u16 = 9999;
/// Member addresses come from this pool (10.50.0.0/16).
const MEMBER_POOL: usize = 1000;

pub struct Params {
    flips: usize,
    membership_reloads: usize,
    members_changed: usize,
    counted_datagrams: u64,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            // Issue 17: 10k reloads, 100k membership changes.
            Mode::Full => Params {
                flips: 5000,
                membership_reloads: 5000,
                members_changed: 20,
                counted_datagrams: 10_000,
            },
            Mode::Quick => Params {
                flips: 300,
                membership_reloads: 300,
                members_changed: 20,
                counted_datagrams: 2000,
            },
            Mode::Smoke => Params {
                flips: 15,
                membership_reloads: 15,
                members_changed: 20,
                counted_datagrams: 200,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct AgentUse {
    pub rss_kib: u64,
    pub fds: u64,
}

#[derive(Serialize)]
pub struct SoakResult {
    pub reloads: usize,
    pub flips: usize,
    pub membership_changes: usize,
    pub seconds: f64,
    pub background_datagrams: u64,
    /// After a warm-up of 20 reloads, and at the end.
    pub agent_before: AgentUse,
    pub agent_after: AgentUse,
    /// Entries per map with the first config in force, before and after the soak (reached the
    /// same way both times).
    pub maps_before: Vec<(String, u64)>,
    pub maps_after: Vec<(String, u64)>,
    pub session_kept: bool,
    /// Datagrams sent to a denied port in a quiet window, and the packets web-1's counters
    /// gained in that window, by reason.
    pub counted_sent: u64,
    pub counted_by_reason: Vec<(String, u64)>,
}

/// `flip` picks the UDP port the second rule opens; `members` are indexes into the pool.
fn config(flip: usize, members: &[usize]) -> String {
    let mut text = format!(
        r#"
[[security_group]]
name = "app"
egress = []

[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{ECHO_PORT}"
  cidr = ["10.6.0.0/24"]
  [[security_group.ingress]]
  protocol = "udp"
  ports = "{}"
  cidr = ["10.6.0.0/24"]
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "5432"
  groups = ["app"]

[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["{WEB}"]
security_groups = ["web"]

[[lab.client]]
name = "client"
addresses = ["10.6.0.10"]
"#,
        FLIPPED_PORT[flip % 2]
    );
    for &member in members {
        let _ = write!(
            text,
            "\n[[member]]\nname = \"m{member}\"\naddresses = [\"10.50.{}.{}\"]\nsecurity_groups = [\"app\"]\n",
            member / 250,
            member % 250 + 1
        );
    }
    text
}

/// Map entries once the first config is in force after a flip away from it and back, so that
/// both policy slots hold the same two generations whenever this is measured.
fn settled_fill(lab: &mut TestLab, first: &[usize]) -> Vec<(String, u64)> {
    lab.reconfigure(&config(1, first));
    lab.reconfigure(&config(0, first));
    // After the grace period the retired slot's hits are folded: let that happen first.
    std::thread::sleep(Duration::from_millis(500));
    map_fill(lab)
}

fn agent_use(pid: u32) -> Result<AgentUse> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("the agent (pid {pid}) is gone"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(AgentUse { rss_kib, fds })
}

fn map_fill(lab: &TestLab) -> Vec<(String, u64)> {
    let status = lab.sgwall_json(&["status", "--json"]);
    status["maps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|map| {
            let name = map["map"].as_str()?;
            // Conntrack and fragments follow the traffic, not the policy.
            if name.contains("CT_") || name.contains("FRAG") {
                return None;
            }
            Some((name.to_string(), map["entries"].as_u64()?))
        })
        .collect()
}

/// web-1's ingress counters by reason, from `sgwall status`.
fn ingress_counters(lab: &TestLab) -> Vec<(String, u64)> {
    let status = lab.sgwall_json(&["status", "--json"]);
    status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["direction"] == "ingress")
        .filter_map(|row| {
            Some((
                row["reason"].as_str()?.to_string(),
                row["packets"].as_u64()?,
            ))
        })
        .collect()
}

/// A sender of UDP datagrams from the client to web-1, alternating the flipped ports and the
/// denied one, until stopped.
struct Background {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(client_ns: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            netns::run_in(client_ns, move || {
                std::thread::spawn(move || {
                    let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
                        return;
                    };
                    let ports = [FLIPPED_PORT[0], FLIPPED_PORT[1], DENIED_PORT];
                    // Bounded: an hour at most, whatever happens to the caller.
                    let deadline = Instant::now() + Duration::from_secs(3600);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let to = SocketAddr::new(IpAddr::V4(WEB), ports[n % ports.len()]);
                        if socket.send_to(b"soak", to).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                        std::thread::sleep(Duration::from_micros(500));
                    }
                })
            })
            .context("the background sender in the client")?
        };
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn run(params: &Params) -> Result<SoakResult> {
    let mut members: Vec<usize> = (0..MEMBER_POOL / 2).collect();
    let mut lab = TestLab::up(&config(0, &members));
    let _server = TcpEchoServer::start(&lab.namespace("web-1"), ECHO_PORT);
    let client_ns = lab.namespace("client");
    let mut session = TcpSession::connect(
        &client_ns,
        lab.address("client", false),
        IpAddr::V4(WEB),
        ECHO_PORT,
    )
    .context("the held session connects")?;
    let background = Background::start(&client_ns)?;
    let pid = lab.agent_pid();

    let first: Vec<usize> = members.clone();
    let maps_before = settled_fill(&mut lab, &first);
    let started = Instant::now();
    let (mut flip, mut next_member) = (0usize, MEMBER_POOL / 2);
    let mut membership_changes = 0;
    let total = params.flips + params.membership_reloads;
    let mut agent_before = None;
    for reload in 0..total {
        if reload == 20.min(total / 2) {
            agent_before = Some(agent_use(pid)?);
        }
        // Interleaved: a flip, then a membership delta, and so on.
        if reload % 2 == 0 && flip < params.flips {
            flip += 1;
        } else {
            // Half leave, as many new ones join: the group's size stays the same.
            for _ in 0..params.members_changed / 2 {
                members.remove(0);
                members.push(next_member % MEMBER_POOL);
                next_member += 1;
            }
            membership_changes += params.members_changed;
        }
        lab.reconfigure(&config(flip, &members));
    }
    let seconds = started.elapsed().as_secs_f64();
    let agent_after = agent_use(pid)?;
    let background_datagrams = background.stop();
    let session_kept = session.exchange();

    // The first config again, reached the same way: every map must hold what it held then.
    let maps_after = settled_fill(&mut lab, &first);

    // A quiet window: only our datagrams reach web-1 (the session is idle, the sender
    // stopped); each must be counted under exactly one reason.
    std::thread::sleep(Duration::from_millis(300));
    let before = ingress_counters(&lab);
    let counted_sent = send_denied(&client_ns, params.counted_datagrams)?;
    std::thread::sleep(Duration::from_millis(300));
    let after = ingress_counters(&lab);
    let counted_by_reason: Vec<(String, u64)> = after
        .iter()
        .filter_map(|(reason, packets)| {
            let was = before
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, p)| *p);
            (packets > &was).then(|| (reason.clone(), packets - was))
        })
        .collect();
    Ok(SoakResult {
        reloads: total,
        flips: params.flips,
        membership_changes,
        seconds,
        background_datagrams,
        agent_before: agent_before.unwrap_or(agent_after),
        agent_after,
        maps_before,
        maps_after,
        session_kept,
        counted_sent,
        counted_by_reason,
    })
}

fn send_denied(client_ns: &str, count: u64) -> Result<u64> {
    netns::run_in(client_ns, move || -> Result<u64> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        let mut sent = 0;
        for _ in 0..count {
            socket.send_to(b"count me", SocketAddr::new(IpAddr::V4(WEB), DENIED_PORT))?;
            sent += 1;
            // Slow enough that no datagram is lost before the filter sees it.
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(sent)
    })
    .context("sending in the client")?
}

pub fn fragment(result: &SoakResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::new();
    let _ = writeln!(out, "### Soak\n\n{header}\n");
    let _ = writeln!(
        out,
        "web-1 behind a release `sgwall run`: {} reloads in {:.0} s ({} generation flips, the rest \
         membership deltas: {} membership changes in all), while the client sends {} UDP datagrams \
         to web-1 and holds a TCP session.\n",
        result.reloads,
        result.seconds,
        result.flips,
        result.membership_changes,
        result.background_datagrams
    );
    let _ = writeln!(out, "| | after 20 reloads | at the end |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| agent resident memory | {} KiB | {} KiB |",
        result.agent_before.rss_kib, result.agent_after.rss_kib
    );
    let _ = writeln!(
        out,
        "| agent file descriptors | {} | {} |\n",
        result.agent_before.fds, result.agent_after.fds
    );
    let leaks: Vec<String> = leaked(result);
    let _ = writeln!(
        out,
        "Map entries with the first config back, against the same before the soak: {}.\n",
        if leaks.is_empty() {
            "no map holds more".to_string()
        } else {
            leaks.join(", ")
        }
    );
    let counted: u64 = result.counted_by_reason.iter().map(|(_, p)| p).sum();
    let _ = writeln!(
        out,
        "Counters: {} datagrams to a denied port in a quiet window; web-1's ingress counters gained {counted} ({}).\n",
        result.counted_sent,
        result
            .counted_by_reason
            .iter()
            .map(|(reason, packets)| format!("{reason} {packets}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss_growth = result.agent_after.rss_kib as f64 / result.agent_before.rss_kib.max(1) as f64;
    let targets = vec![
        TargetRow {
            target: "soak: agent memory flat (≤ 1.2× after the warm-up), file descriptors equal"
                .into(),
            measured: format!(
                "{:.2}× memory, {} → {} fds",
                rss_growth, result.agent_before.fds, result.agent_after.fds
            ),
            met: Some(rss_growth <= 1.2 && result.agent_after.fds <= result.agent_before.fds),
        },
        TargetRow {
            target: "soak: no map leaks an entry; the held session survives (C4)".into(),
            measured: format!(
                "{} maps differ; session {}",
                leaks.len(),
                if result.session_kept { "kept" } else { "lost" }
            ),
            met: Some(leaks.is_empty() && result.session_kept),
        },
        TargetRow {
            target: "soak: every packet counted under exactly one reason".into(),
            measured: format!("{} sent, {counted} counted", result.counted_sent),
            met: Some(counted == result.counted_sent),
        },
    ];
    (out, targets)
}

fn leaked(result: &SoakResult) -> Vec<String> {
    result
        .maps_after
        .iter()
        .filter_map(|(name, after)| {
            let before = result.maps_before.iter().find(|(n, _)| n == name)?.1;
            // Fewer is no leak: whether the retired policy slot still holds the generation
            // before has been emptied depends on when housekeeping last ran.
            (*after > before).then(|| format!("{name} {before} → {after}"))
        })
        .collect()
}

/// The smoke run checks the shape of the figures; the soak's own properties are checked here
/// in every mode, since a leak is a bug at any size.
pub fn check(result: &SoakResult) -> Result<()> {
    if !result.session_kept {
        bail!("the held session died during the soak");
    }
    let leaks = leaked(result);
    if !leaks.is_empty() {
        bail!("maps leaked entries: {}", leaks.join(", "));
    }
    Ok(())
}
