//! Tier 3: `sgwall run` as a daemon, with real traffic through a router namespace. Each test
//! starts the real binary over its own pin directory; guards stop it and run `sgwall down`.
//!
//! Topology: a router namespace holds every instance's host-side interface (named as the config
//! names it) and the client's link; instances sit behind it in their own namespaces.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sgwall_tests::{
    AgentProcess, Listener, NetNs, Outcome, PinDir, Probe, Service, VethPair, privileged,
};

const PROBE: Duration = Duration::from_millis(800);
const ENFORCING: Duration = Duration::from_secs(60);

struct Net {
    router: NetNs,
    client: NetNs,
    instances: Vec<NetNs>,
    _links: Vec<VethPair>,
}

/// Instance `i` is 10.7.i.10 behind router interface `names[i]` (10.7.i.1); the client is
/// 10.6.0.10 behind 10.6.0.1.
fn net(names: &[&str]) -> Net {
    let router = NetNs::new();
    let client = NetNs::new();
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let mut links = vec![VethPair::named(
        &client,
        "eth0",
        &["10.6.0.10/24"],
        &router,
        "client0",
        &["10.6.0.1/24"],
    )];
    client.exec(&["ip", "route", "add", "default", "via", "10.6.0.1"]);
    let mut instances = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let instance = NetNs::new();
        links.push(VethPair::named(
            &instance,
            "eth0",
            &[&format!("10.7.{index}.10/24")],
            &router,
            name,
            &[&format!("10.7.{index}.1/24")],
        ));
        instance.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("10.7.{index}.1"),
        ]);
        instances.push(instance);
    }
    Net {
        router,
        client,
        instances,
        _links: links,
    }
}

fn instance_address(index: usize) -> IpAddr {
    format!("10.7.{index}.10").parse().expect("address")
}

fn probe(from: &NetNs, to: IpAddr, service: Service) -> Outcome {
    Probe {
        source: None,
        destination: to,
        service,
        timeout: PROBE,
    }
    .run_in(from.name())
    .expect("probe runs")
}

/// Polls until `probe` gives `expected` (config reloads take effect asynchronously), bounded.
fn eventually(what: &str, expected: Outcome, mut probe: impl FnMut() -> Outcome) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = probe();
    while last != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = probe();
    }
    assert_eq!(last, expected, "{what}");
}

struct ConfigFile {
    path: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config_file(text: &str) -> ConfigFile {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sgwt-runtime-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sgwall.toml");
    std::fs::write(&path, text).expect("config");
    ConfigFile {
        path,
        _dir: TempDir(dir),
    }
}

fn rewrite(path: &Path, text: &str) {
    // Like an editor: write elsewhere, rename over.
    let temporary = path.with_extension("toml.new");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn web_config(port: &str) -> String {
    format!(
        r#"
[[security_group]]
name = "web"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{port}"
  cidr = ["10.6.0.0/24"]
[[instance]]
name = "web-1"
interface = "sgw-web1"
addresses = ["10.7.0.10"]
security_groups = ["web"]
"#
    )
}

#[test]
fn rule_change_takes_effect_and_invalid_config_keeps_the_old_policy() {
    if !privileged() {
        return;
    }
    let net = net(&["sgw-web1"]);
    let _a = Listener::start(net.instances[0].name(), Service::Tcp(8080)).unwrap();
    let _b = Listener::start(net.instances[0].name(), Service::Tcp(9090)).unwrap();
    let pins = PinDir::new();
    let config = config_file(&web_config("8080"));
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for(
        "enforcing sgw-web1 (web-1): port via tc-ingress,tc-egress",
        ENFORCING,
    );
    let web = instance_address(0);
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::Reached
    );
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9090)),
        Outcome::TimedOut,
        "R1"
    );

    rewrite(&config.path, &web_config("9090"));
    eventually("the new rule admits 9090", Outcome::Reached, || {
        probe(&net.client, web, Service::Tcp(9090))
    });
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::TimedOut,
        "the old rule is gone"
    );

    rewrite(&config.path, &web_config("90x0"));
    agent.wait_for(
        "config rejected, the running policy stays in force",
        Duration::from_secs(10),
    );
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9090)),
        Outcome::Reached,
        "old policy still enforced"
    );
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::TimedOut,
        "old policy still enforced"
    );
    let status: serde_json::Value =
        serde_json::from_str(&agent.command(&["status", "--json"])).expect("status json");
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
    // The client plays app-2: once it is a member of app-sg it reaches the database.
    let net = net(&["sgw-db1"]);
    let _mysql = Listener::start(net.instances[0].name(), Service::Tcp(3306)).unwrap();
    let db_sg = r#"
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
"#;
    let pins = PinDir::new();
    let config = config_file(db_sg);
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("enforcing sgw-db1", ENFORCING);
    let db = instance_address(0);
    assert_eq!(
        probe(&net.client, db, Service::Tcp(3306)),
        Outcome::TimedOut,
        "not a member yet"
    );

    let joined = format!(
        "{db_sg}\n[[member]]\nname = \"app-2\"\naddresses = [\"10.6.0.10\"]\nsecurity_groups = [\"app-sg\"]\n"
    );
    rewrite(&config.path, &joined);
    eventually(
        "app-2 reaches db-1 once in app-sg",
        Outcome::Reached,
        || probe(&net.client, db, Service::Tcp(3306)),
    );
    agent.wait_for("membership delta", Duration::from_secs(5));

    rewrite(&config.path, db_sg);
    eventually(
        "app-2 no longer reaches db-1 after leaving",
        Outcome::TimedOut,
        || probe(&net.client, db, Service::Tcp(3306)),
    );
}

#[test]
fn h4_kill_9_keeps_established_tcp_and_a_denied_probe_gets_nothing_through_a_restart() {
    if !privileged() {
        return;
    }
    let net = net(&["sgw-web1"]);
    let pins = PinDir::new();
    let config = config_file(&web_config("7000"));
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    let web = instance_address(0);

    // An echo server on 7000 and an established connection to it from the client.
    let echo = net.instances[0].run(|| std::net::TcpListener::bind("0.0.0.0:7000").expect("bind"));
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut stream, _) = echo.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buffer = [0u8; 64];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
    });
    let mut connection = net.client.run(move || {
        let stream = std::net::TcpStream::connect_timeout(
            &SocketAddr::new(web, 7000),
            Duration::from_secs(2),
        )
        .expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        stream
    });
    let mut round_trip = |message: &[u8]| {
        use std::io::{Read as _, Write as _};
        connection.write_all(message).expect("send");
        let mut answer = vec![0u8; message.len()];
        connection
            .read_exact(&mut answer)
            .expect("the established connection answers");
        assert_eq!(answer, message);
    };
    round_trip(b"before");

    // A denied UDP flood runs throughout the crash and the restart; a receiver counts arrivals.
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, stop) = (received.clone(), stop.clone());
        net.instances[0].run(move || {
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
    };
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        net.client.run(move || {
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
    };

    agent.kill();
    round_trip(b"agent dead");
    agent.restart();
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    round_trip(b"after restart");
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    receiver.join().expect("receiver");
    assert!(sent.load(Ordering::Relaxed) > 1000, "the flood really ran");
    assert_eq!(
        received.load(Ordering::Relaxed),
        0,
        "H4: no denied packet got through"
    );
    drop(connection);
    let _ = server.join();
}

#[test]
fn an_interface_created_after_start_gets_enforced() {
    if !privileged() {
        return;
    }
    let net = net(&[]);
    let pins = PinDir::new();
    let config = config_file(&web_config("8080"));
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("waiting for sgw-web1 (web-1): no such interface", ENFORCING);

    // The VM comes up later, its tap created down: the agent attaches at once, and only then
    // does the link come up, so not one packet crosses it unfiltered.
    let late = NetNs::new();
    let _link = VethPair::named_with_right_up(
        &late,
        "eth0",
        &["10.7.0.10/24"],
        &net.router,
        "sgw-web1",
        &["10.7.0.1/24"],
        false,
    );
    agent.wait_for("enforcing sgw-web1 (web-1)", Duration::from_secs(10));
    net.router.exec(&["ip", "link", "set", "sgw-web1", "up"]);
    late.exec(&["ip", "route", "add", "default", "via", "10.7.0.1"]);
    let _a = Listener::start(late.name(), Service::Tcp(8080)).unwrap();
    let _b = Listener::start(late.name(), Service::Tcp(9090)).unwrap();
    let web = instance_address(0);
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::Reached
    );
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9090)),
        Outcome::TimedOut
    );
}

#[test]
fn down_restores_open_traffic() {
    if !privileged() {
        return;
    }
    let net = net(&["sgw-web1"]);
    let _b = Listener::start(net.instances[0].name(), Service::Tcp(9090)).unwrap();
    let pins = PinDir::new();
    let config = config_file(&web_config("8080"));
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    let web = instance_address(0);
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9090)),
        Outcome::TimedOut
    );

    // A second agent on the same pins would fight the first over maps and links.
    let second = std::process::Command::new(sgwall_tests::sgwall_bin())
        .args(["run", "--config"])
        .arg(&config.path)
        .args(["--netns", net.router.name(), "--pin-dir"])
        .arg(pins.path())
        .output()
        .expect("second agent runs");
    assert!(!second.status.success());
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(
        refusal.contains(&format!("another agent (pid {})", agent.pid())),
        "{refusal}"
    );

    let out = agent.command(&["down"]);
    assert!(out.contains("detached tc-ingress from sgw-web1"), "{out}");
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9090)),
        Outcome::Reached,
        "open again"
    );
    assert!(!pins.path().exists(), "pins removed");
}

#[test]
fn inspection_commands_report_a_real_run() {
    if !privileged() {
        return;
    }
    let net = net(&["sgw-web1"]);
    let _a = Listener::start(net.instances[0].name(), Service::Tcp(8080)).unwrap();
    let pins = PinDir::new();
    let config = config_file(&web_config("8080"));
    let metrics_port = 19_000 + (std::process::id() % 1000) as u16;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut agent = AgentProcess::start(
        &config.path,
        net.router.name(),
        pins.path(),
        &["--flow-window", "1", "--metrics-addr", &metrics],
    );
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    let web = instance_address(0);
    // A connection held open (so conntrack shows it), and a denied attempt.
    let held = net.client.run(move || {
        std::net::TcpStream::connect_timeout(&SocketAddr::new(web, 8080), Duration::from_secs(2))
            .expect("connect")
    });
    assert_eq!(
        probe(&net.client, web, Service::Tcp(9999)),
        Outcome::TimedOut
    );

    let status: serde_json::Value =
        serde_json::from_str(&agent.command(&["status", "--json"])).expect("json");
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
    assert!(agent.command(&["status"]).contains("enforcing"));

    let flows: serde_json::Value =
        serde_json::from_str(&agent.command(&["conntrack", "--json"])).expect("json");
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
    assert!(agent.command(&["conntrack"]).contains("10.7.0.10:8080"));

    let rules: serde_json::Value =
        serde_json::from_str(&agent.command(&["rules", "--hits", "--json"])).expect("json");
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
    assert!(agent.command(&["rules", "--hits"]).contains("unused"));

    // A reload that flips the generation (a new rule) keeps the hits of the rules that stay.
    let with_more = web_config("8080").replace(
        "[[instance]]",
        "  [[security_group.ingress]]\n  protocol = \"udp\"\n  ports = \"53\"\n  cidr = [\"10.6.0.0/24\"]\n[[instance]]",
    );
    rewrite(&config.path, &with_more);
    agent.wait_for(
        "reloaded generation 2: new policy generation",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(600));
    let rules: serde_json::Value =
        serde_json::from_str(&agent.command(&["rules", "--hits", "--json"])).expect("json");
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
        records = agent.command(&["flows"]);
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
    let json_line = agent.command(&["flows", "--json"]);
    assert!(json_line.contains("\"action\":\"REJECT\""), "{json_line}");

    let body = net.router.run(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(metrics.as_str()).expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        stream.read_to_string(&mut body).expect("response");
        body
    });
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

#[test]
fn c5_c6_expired_flows_are_swept_and_credited_back_to_the_allowance() {
    if !privileged() {
        return;
    }
    let net = net(&["sgw-web1"]);
    let _a = Listener::start(net.instances[0].name(), Service::Tcp(8080)).unwrap();
    let pins = PinDir::new();
    let config = config_file(&web_config("8080"));
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    // The listener answers and closes: the flow is established, then closing (10 s, C5).
    assert_eq!(
        probe(&net.client, instance_address(0), Service::Tcp(8080)),
        Outcome::Reached
    );
    let established = |agent: &AgentProcess| {
        let status: serde_json::Value =
            serde_json::from_str(&agent.command(&["status", "--json"])).expect("json");
        status["allowances"][0]["established"]
            .as_u64()
            .expect("count")
    };
    assert_eq!(
        established(&agent),
        1,
        "the flow counts against the allowance (C6)"
    );

    // No packet meets the entry again: only the agent's sweep can remove it.
    let deadline = Instant::now() + Duration::from_secs(40);
    while established(&agent) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(established(&agent), 0, "swept and credited back");
    let flows: serde_json::Value =
        serde_json::from_str(&agent.command(&["conntrack", "--json"])).expect("json");
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
    let net = net(&["sgw-web1"]);
    let _a = Listener::start(net.instances[0].name(), Service::Tcp(8080)).unwrap();
    let pins = PinDir::new();
    let limited = web_config("8080").replace(
        "security_groups = [\"web\"]\n",
        "security_groups = [\"web\"]\nconntrack = { max_flows = 1 }\n",
    );
    let config = config_file(&limited);
    let mut agent = AgentProcess::start(&config.path, net.router.name(), pins.path(), &[]);
    agent.wait_for("enforcing sgw-web1", ENFORCING);
    let web = instance_address(0);
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::Reached,
        "the first flow fits"
    );
    assert_eq!(
        probe(&net.client, web, Service::Tcp(8080)),
        Outcome::TimedOut,
        "C6: the allowance is used up, a new flow is dropped"
    );
    // The eBPF program's own log line (aya-log) reaches the agent's log.
    agent.wait_for(
        "conntrack allowance or table full on ifindex",
        Duration::from_secs(5),
    );
    let status: serde_json::Value =
        serde_json::from_str(&agent.command(&["status", "--json"])).expect("json");
    let exceeded = status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|row| row["reason"] == "conntrack_allowance_exceeded");
    assert!(exceeded, "{status}");
}
