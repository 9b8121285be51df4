//! Tier 3: `sgwall run` as a daemon, with real traffic. Each test builds a `sgwall lab`
//! (instances behind a router namespace where the agent enforces their ports, and a client)
//! over its own pin directory, and drives the real agent: config edits through its file
//! watch, crashes, restarts, interfaces that come late, `sgwall down`, the inspection commands.
//! The lab's guard stops the agent and runs `sgwall down` on drop.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sgwall::{
    netns,
    runtime::console::{AgentEvent, Rejection, ReloadOutcome},
};
use sgwall_tests::{
    Outcome, Service,
    lab::{TcpEchoServer, TcpSession, TestLab},
    privileged,
};

/// The client every test probes from: inside the CIDR the web rules admit.
const CLIENT: &str = r#"
[[lab.client]]
name = "client"
addresses = ["10.6.0.10"]
"#;

/// Group `web` admits TCP `port` from the client's network.
fn web_group(port: &str) -> String {
    format!(
        r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{port}"
  cidr = ["10.6.0.0/24"]
"#
    )
}

/// `web-1`: 10.7.0.10 on sgw-web1, in `web`.
const WEB_INSTANCE: &str = r#"
[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["10.7.0.10"]
security_groups = ["web"]
"#;

/// `web-1` admitting TCP `port` from the client.
fn web_config(port: &str) -> String {
    format!("{}{WEB_INSTANCE}{CLIENT}", web_group(port))
}

fn web_address() -> IpAddr {
    IpAddr::from([10, 7, 0, 10])
}

/// One TCP probe from the client to web-1.
fn probe_web(lab: &TestLab, port: u16) -> Outcome {
    lab.probe("client", "web-1", Service::Tcp(port), false)
}

fn assert_reloaded(event: &AgentEvent, expected: ReloadOutcome) {
    assert!(
        matches!(event, AgentEvent::Reloaded { outcome, .. } if *outcome == expected),
        "expected a reload with {expected:?}, got {event:?}"
    );
}

#[test]
fn rule_change_takes_effect_and_invalid_config_keeps_the_old_policy() {
    if !privileged() {
        return;
    }
    let mut lab = TestLab::up(&web_config("8080"));
    let _a = lab.listen("web-1", Service::Tcp(8080));
    let _b = lab.listen("web-1", Service::Tcp(9090));
    assert_eq!(probe_web(&lab, 8080), Outcome::Reached);
    assert_eq!(probe_web(&lab, 9090), Outcome::TimedOut, "R1");

    // Saved like an editor does; the agent's file watch alone makes it reload.
    let since = lab.replace_config(&web_config("9090"));
    let reloaded = lab.wait_reloaded(since);
    assert_reloaded(&reloaded, ReloadOutcome::Flipped);
    assert_eq!(
        probe_web(&lab, 9090),
        Outcome::Reached,
        "the new rule admits"
    );
    assert_eq!(
        probe_web(&lab, 8080),
        Outcome::TimedOut,
        "the old rule is gone"
    );

    let since = lab.replace_config(&web_config("90x0"));
    match lab.wait_rejected(since) {
        Rejection::InvalidConfig { errors } => assert!(errors.contains("ports"), "{errors}"),
        other => panic!("rejected for another reason: {other:?}"),
    }
    assert_eq!(
        probe_web(&lab, 9090),
        Outcome::Reached,
        "old policy still enforced"
    );
    assert_eq!(
        probe_web(&lab, 8080),
        Outcome::TimedOut,
        "old policy still enforced"
    );
    let status = lab.sgwall_json(&["status", "--json"]);
    assert_eq!(status["reloads_rejected"], 1);
    assert!(
        status["last_reload_error"]
            .as_str()
            .unwrap_or("")
            .contains("ports"),
        "{status}"
    );
}

#[test]
fn g3_membership_change_admits_a_new_app_instance_without_touching_db_sg() {
    if !privileged() {
        return;
    }
    // The client plays app-2 from a second address of its own, which the config does not
    // know until app-2 joins as a member: then it reaches the database.
    let db_sg = format!(
        r#"
[[security_group]]
name = "app-sg"
[[security_group]]
name = "db-sg"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "3306"
  groups = ["app-sg"]
[[instance]]
name = "db-1"
interface = "sgw-db1"
addresses = ["10.7.0.10"]
security_groups = ["db-sg"]
{CLIENT}"#
    );
    let app_2 = IpAddr::from([10, 6, 0, 20]);
    let mut lab = TestLab::up(&db_sg);
    lab.add_unconfigured_address("client", app_2);
    let _mysql = lab.listen("db-1", Service::Tcp(3306));
    let probe_db = |lab: &TestLab| lab.probe_from("client", app_2, "db-1", Service::Tcp(3306));
    assert_eq!(probe_db(&lab), Outcome::TimedOut, "not a member yet");

    let joined = format!(
        "{db_sg}\n[[member]]\nname = \"app-2\"\naddresses = [\"{app_2}\"]\nsecurity_groups = [\"app-sg\"]\n"
    );
    // Joining and leaving are membership deltas of app-2's one address: no new generation.
    let change_membership = |lab: &mut TestLab, config: &str| {
        let since = lab.replace_config(config);
        let reloaded = lab.wait_reloaded(since);
        assert_reloaded(
            &reloaded,
            ReloadOutcome::MembershipDelta {
                members_written: 1,
                prefix_list_entries_written: 0,
            },
        );
    };
    change_membership(&mut lab, &joined);
    assert_eq!(
        probe_db(&lab),
        Outcome::Reached,
        "app-2 reaches db-1 in app-sg"
    );

    change_membership(&mut lab, &db_sg);
    assert_eq!(
        probe_db(&lab),
        Outcome::TimedOut,
        "app-2 no longer reaches db-1 after leaving"
    );
}

#[test]
fn h4_kill_9_keeps_established_tcp_and_a_denied_probe_gets_nothing_through_a_restart() {
    if !privileged() {
        return;
    }
    let mut lab = TestLab::up(&web_config("7000"));
    let web = web_address();
    let web_ns = lab.namespace("web-1");
    let client_ns = lab.namespace("client");
    let _echo = TcpEchoServer::start(&web_ns, 7000);
    let mut session = TcpSession::connect(&client_ns, lab.address("client", false), web, 7000)
        .expect("the client connects to web-1:7000");
    assert!(session.exchange(), "before");

    // A denied UDP flood runs throughout the crash and the restart; a receiver counts arrivals.
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, stop) = (received.clone(), stop.clone());
        netns::run_in(&web_ns, move || {
            let socket = UdpSocket::bind("0.0.0.0:5353").expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv(&mut buffer).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .expect("receiver in web-1")
    };
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        netns::run_in(&client_ns, move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if socket
                        .send_to(b"denied", SocketAddr::new(web, 5353))
                        .is_ok()
                    {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .expect("sender in the client")
    };

    // The flood is under way before the crash and goes on after the restart.
    let flood_passes = |count: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while sent.load(Ordering::Relaxed) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            sent.load(Ordering::Relaxed) >= count,
            "the flood really runs"
        );
    };
    flood_passes(500);
    lab.kill_agent();
    assert!(
        session.exchange(),
        "agent dead: the pinned datapath still tracks the session"
    );
    lab.restart_agent(&["sgw-web1"]);
    assert!(session.exchange(), "after restart");
    flood_passes(sent.load(Ordering::Relaxed) + 500);
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    receiver.join().expect("receiver");
    assert_eq!(
        received.load(Ordering::Relaxed),
        0,
        "H4: no denied packet got through"
    );
}

#[test]
fn an_interface_created_after_start_gets_enforced() {
    if !privileged() {
        return;
    }
    // The lab starts with another instance; web-1 joins the config before its interface
    // exists.
    let other = r#"
[[instance]]
name = "other-1"
interface = "sgw-oth1"
addresses = ["10.7.1.10"]
security_groups = ["web"]
"#;
    let mut lab = TestLab::up(&format!("{}{other}{CLIENT}", web_group("8080")));
    let since = lab.log_position();
    lab.reconfigure(&format!(
        "{}{WEB_INSTANCE}{other}{CLIENT}",
        web_group("8080")
    ));
    lab.wait_event(since, "web-1 waiting for its interface", |event| {
        let waiting = AgentEvent::Waiting {
            interface: "sgw-web1".into(),
            instance: "web-1".into(),
        };
        (*event == waiting).then_some(())
    });

    // The VM comes up later, its tap created down: the agent attaches at once, and only then
    // does the link come up, so not one packet crosses it unfiltered.
    let since = lab.log_position();
    let host = lab.add_instance_link_down("web-1", "sgw-web1", &[web_address()]);
    let enforcing = lab.wait_enforcing("sgw-web1", since);
    assert_eq!(
        enforcing.to_string(),
        "enforcing sgw-web1 (web-1): port via tc-ingress,tc-egress"
    );
    lab.bring_link_up(&host);
    let _a = lab.listen("web-1", Service::Tcp(8080));
    let _b = lab.listen("web-1", Service::Tcp(9090));
    assert_eq!(probe_web(&lab, 8080), Outcome::Reached);
    assert_eq!(probe_web(&lab, 9090), Outcome::TimedOut);
}

#[test]
fn down_restores_open_traffic() {
    if !privileged() {
        return;
    }
    let mut lab = TestLab::up(&web_config("8080"));
    let _b = lab.listen("web-1", Service::Tcp(9090));
    assert_eq!(probe_web(&lab, 9090), Outcome::TimedOut);

    // A second agent on the same pins would fight the first over maps and links.
    let second = std::process::Command::new(sgwall_tests::sgwall_bin())
        .args(["run", "--config"])
        .arg(lab.config_path())
        .args(["--netns", lab.lab().router_namespace(), "--pin-dir"])
        .arg(lab.pin_dir())
        .output()
        .expect("second agent runs");
    assert!(!second.status.success());
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(
        refusal.contains(&format!("another agent (pid {})", lab.agent_pid())),
        "{refusal}"
    );

    let out = lab.sgwall(&["down"]);
    assert!(out.contains("detached tc-ingress from sgw-web1"), "{out}");
    assert_eq!(probe_web(&lab, 9090), Outcome::Reached, "open again");
    assert!(!lab.pin_dir().exists(), "pins removed");
}

#[test]
fn inspection_commands_report_a_real_run() {
    if !privileged() {
        return;
    }
    let metrics_port = 19_000 + (std::process::id() % 1000) as u16;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut lab = TestLab::up_with(
        &web_config("8080"),
        &["--flow-window", "1", "--metrics-addr", &metrics],
    );
    let _a = lab.listen("web-1", Service::Tcp(8080));
    let web = web_address();
    // A connection held open (so conntrack shows it), and a denied attempt.
    let held = netns::run_in(&lab.namespace("client"), move || {
        std::net::TcpStream::connect_timeout(&SocketAddr::new(web, 8080), Duration::from_secs(2))
            .expect("connect")
    })
    .expect("in the client");
    assert_eq!(probe_web(&lab, 9999), Outcome::TimedOut);

    let status = lab.sgwall_json(&["status", "--json"]);
    assert_eq!(status["interfaces"][0]["status"], "enforcing", "{status}");
    assert_eq!(
        status["interfaces"][0]["hooks"],
        serde_json::json!(["tc-ingress", "tc-egress"])
    );
    assert!(status["generation"].as_u64().unwrap_or(0) >= 1);
    let counted = |reason: &str| {
        status["counters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|row| row["reason"] == reason && row["packets"].as_u64().unwrap_or(0) > 0)
    };
    assert!(
        counted("new_flow") && counted("no_rule") && counted("ct_reply"),
        "{status}"
    );
    assert!(
        status["maps"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["map"] == "SGW_CT_EST"))
    );
    assert!(lab.sgwall(&["status"]).contains("enforcing"));

    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    let flow = flows
        .as_array()
        .and_then(|f| f.iter().find(|f| f["local"] == "10.7.0.10:8080"))
        .unwrap_or_else(|| panic!("the held connection is tracked: {flows}"));
    // The probe listener closes its side at once, so the flow may already be closing.
    assert!(
        flow["state"] == "established" || flow["state"] == "closing",
        "{flow}"
    );
    assert_eq!(flow["origin"], "ingress");
    assert!(
        flow["packets"][1].as_u64().unwrap_or(0) > 0,
        "replies counted: {flow}"
    );
    assert!(lab.sgwall(&["conntrack"]).contains("10.7.0.10:8080"));

    let rules = lab.sgwall_json(&["rules", "--hits", "--json"]);
    let rules = rules.as_array().expect("rules");
    let ingress = rules
        .iter()
        .find(|r| r["direction"] == "ingress")
        .expect("ingress rule");
    assert_eq!(
        ingress["hits"], 1,
        "the held connection, one new flow: {ingress}"
    );
    assert_eq!(ingress["unused"], false);
    assert!(
        rules.iter().any(|r| r["unused"] == true),
        "default egress to ::/0 never used"
    );
    assert!(lab.sgwall(&["rules", "--hits"]).contains("unused"));

    // A reload that flips the generation (a new rule) keeps the hits of the rules that stay.
    let with_more = web_config("8080").replace(
        "[[instance]]",
        "  [[security_group.ingress]]\n  protocol = \"udp\"\n  ports = \"53\"\n  cidr = [\"10.6.0.0/24\"]\n[[instance]]",
    );
    let since = lab.replace_config(&with_more);
    assert_eq!(
        lab.wait_reloaded(since),
        AgentEvent::Reloaded {
            generation: 2,
            outcome: ReloadOutcome::Flipped
        }
    );
    // Past the grace period, the retired generation's hits are folded into the totals.
    std::thread::sleep(Duration::from_millis(600));
    let rules = lab.sgwall_json(&["rules", "--hits", "--json"]);
    let kept = rules
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["direction"] == "ingress" && r["ports"] == "8080")
        })
        .expect("the 8080 rule");
    assert_eq!(kept["hits"], 1, "hits survive the generation flip: {kept}");

    // Flow records appear once a (1 s) window closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut records = String::new();
    while Instant::now() < deadline && !(records.contains("ACCEPT") && records.contains("REJECT")) {
        std::thread::sleep(Duration::from_millis(500));
        records = lab.sgwall(&["flows"]);
    }
    assert!(
        records.starts_with("version account-id interface-id"),
        "{records}"
    );
    assert!(
        records.contains(" 10.6.0.10 10.7.0.10 ") && records.contains(" 8080 6 "),
        "{records}"
    );
    assert!(
        records.contains("ACCEPT") && records.contains("REJECT"),
        "{records}"
    );
    let json_line = lab.sgwall(&["flows", "--json"]);
    assert!(json_line.contains("\"action\":\"REJECT\""), "{json_line}");

    let body = netns::run_in(lab.lab().router_namespace(), move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(metrics.as_str()).expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        stream.read_to_string(&mut body).expect("response");
        body
    })
    .expect("in the router");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for metric in [
        "sgwall_packets_total{interface=\"sgw-web1\",direction=\"ingress\",verdict=\"drop\",reason=\"no_rule\"}",
        "sgwall_rule_hits_total{interface=\"sgw-web1\",direction=\"ingress\"",
        "sgwall_conntrack_allowance_exceeded_total{interface=\"sgw-web1\"} 0",
        "sgwall_reloads_total{result=\"applied\"}",
        "sgwall_map_capacity{map=\"SGW_CT_EST\"}",
    ] {
        assert!(body.contains(metric), "missing {metric} in:\n{body}");
    }
    drop(held);
}

/// Established flows counted against web-1's allowance (C6), as `sgwall status` says.
fn established(lab: &TestLab) -> u64 {
    lab.sgwall_json(&["status", "--json"])["allowances"][0]["established"]
        .as_u64()
        .expect("count")
}

#[test]
fn c5_c6_expired_flows_are_swept_and_credited_back_to_the_allowance() {
    if !privileged() {
        return;
    }
    let lab = TestLab::up(&web_config("8080"));
    let _a = lab.listen("web-1", Service::Tcp(8080));
    // The listener answers and closes: the flow is established, then closing (10 s, C5).
    assert_eq!(probe_web(&lab, 8080), Outcome::Reached);
    assert_eq!(
        established(&lab),
        1,
        "the flow counts against the allowance (C6)"
    );

    // No packet meets the entry again: only the agent's sweep can remove it.
    let deadline = Instant::now() + Duration::from_secs(40);
    while established(&lab) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(established(&lab), 0, "swept and credited back");
    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    assert!(
        flows
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["pool"] != "established")),
        "{flows}"
    );
}

#[test]
fn c6_allowance_exceeded_is_counted_and_logged_from_the_datapath() {
    if !privileged() {
        return;
    }
    let limited = web_config("8080").replace(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nconntrack = { max_flows = 1 }\n",
    );
    let mut lab = TestLab::up(&limited);
    let since = lab.log_position();
    let _a = lab.listen("web-1", Service::Tcp(8080));
    assert_eq!(
        probe_web(&lab, 8080),
        Outcome::Reached,
        "the first flow fits"
    );
    assert_eq!(
        probe_web(&lab, 8080),
        Outcome::TimedOut,
        "C6: the allowance is used up, a new flow is dropped"
    );
    // The eBPF program's own log line (aya-log) reaches the agent's log.
    lab.wait_log(since, "conntrack allowance or table full on ifindex");
    let status = lab.sgwall_json(&["status", "--json"]);
    let exceeded = status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|row| row["reason"] == "conntrack_allowance_exceeded");
    assert!(exceeded, "{status}");
}

/// H6: an agent with a new map layout starts over the pins of an older one, whose programs
/// are attached and tracking flows, and carries every flow over before its programs take the
/// links. web-1's group admits the client inbound and nothing outbound, so its replies pass
/// only as tracked flows (C1): with empty new tables every held session would be cut.
///
/// The older layout is made the way an upgrade finds it: the running agent stopped, its maps
/// pinned under `v1/`, its programs attached and using them. They are this build's maps,
/// renamed; v1's conntrack bytes are v2's with `reply_isn` as padding, which is all the v1
/// decoder reads differently, so what is tested is the start path: read, convert, write before
/// the swap, second pass, old layout removed, hit totals kept.
#[test]
fn h6_an_upgrade_to_a_new_map_layout_keeps_flows_admitted_only_as_replies() {
    if !privileged() {
        return;
    }
    const SESSIONS: usize = 5;
    let config = format!(
        r#"
[[security_group]]
name = "web"
egress = []
ingress = [{{ protocol = "tcp", ports = 7000, cidr = ["10.6.0.0/24"] }}]
{WEB_INSTANCE}{CLIENT}"#
    );
    let mut lab = TestLab::up(&config);
    let web = web_address();
    let _echo = TcpEchoServer::start(&lab.namespace("web-1"), 7000);
    let client_ns = lab.namespace("client");
    let mut sessions: Vec<TcpSession> = (0..SESSIONS)
        .map(|n| {
            let mut session =
                TcpSession::connect(&client_ns, lab.address("client", false), web, 7000)
                    .unwrap_or_else(|| panic!("session {n} connects"));
            assert!(session.exchange(), "session {n} before the upgrade");
            session
        })
        .collect();

    lab.kill_agent();
    let current = lab
        .pin_dir()
        .join(format!("v{}", filter_common::LAYOUT_VERSION));
    let older = lab.pin_dir().join("v1");
    std::fs::rename(&current, &older).expect("pins of an older layout");
    for (n, session) in sessions.iter_mut().enumerate() {
        assert!(
            session.exchange(),
            "session {n}: the old programs still enforce on their own maps"
        );
    }

    let since = lab.log_position();
    lab.restart_agent(&["sgw-web1"]);
    for (n, session) in sessions.iter_mut().enumerate() {
        assert!(session.exchange(), "H6: session {n} survives the upgrade");
    }
    lab.wait_log(since, &format!("carried {SESSIONS} established"));
    assert!(!older.exists(), "the older layout is removed once carried");
    assert!(current.exists());
    let flows = lab.sgwall_json(&["conntrack", "--json"]);
    let carried = flows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|flow| flow["pool"] == "established" && flow["local"] == "10.7.0.10:7000")
        .count();
    assert_eq!(carried, SESSIONS, "{flows}");
    assert_eq!(
        established(&lab),
        SESSIONS as u64,
        "C6: the carried flows count against the allowance"
    );
    // Nothing the rules deny got in on the way: web-1 still sends nothing new out, and a
    // port no rule opens stays shut.
    assert_eq!(
        probe_web(&lab, 7001),
        Outcome::TimedOut,
        "R1 after the upgrade"
    );
}
