//! Tier 3: commit-confirmed on the host's own NIC (`sgwall run --confirm`). A veth end in a
//! namespace plays the host's NIC (`attach = "host"`), a second namespace the operator's
//! machine. A change that would lock the operator out of "SSH" (TCP 8022) is rolled back by
//! itself when nobody confirms it, and kept when `sgwall confirm` answers; a port both
//! policies deny is never reached at any moment in between (H4).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sgwall::runtime::console::{AgentEvent, LogFormat};
use sgwall_tests::{
    AgentProcess, Listener, NetNs, Outcome, PinDir, Probe, Service, TempDir, VethPair, privileged,
    sgwall_bin,
};

const CONFIRM_SECONDS: u64 = 3;
const SSH: u16 = 8022;
const WEB: u16 = 8080;
/// Denied by both policies.
const CLOSED: u16 = 9999;

fn config(interface: &str, port: u16) -> String {
    format!(
        r#"
[[security_group]]
name = "host"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{port}"
  cidr = ["10.203.0.0/24"]
[[instance]]
name = "host"
interface = "{interface}"
attach = "host"
addresses = ["10.203.0.2"]
security_groups = ["host"]
"#
    )
}

fn probe(operator: &str, port: u16) -> Outcome {
    Probe {
        source: None,
        destination: "10.203.0.2".parse().expect("address"),
        service: Service::Tcp(port),
        timeout: Duration::from_millis(700),
    }
    .run_in(operator)
    .expect("probe runs")
}

fn reloads(agent: &mut AgentProcess, count: usize) {
    agent.wait_events("a reload", Duration::from_secs(15), count, |event| {
        matches!(event, AgentEvent::Reloaded { .. })
    });
}

#[test]
fn h4_a_host_nic_change_nobody_confirms_is_rolled_back_and_a_confirmed_one_stays() {
    if !privileged() {
        return;
    }
    let operator = NetNs::new();
    let host = NetNs::new();
    let link = VethPair::new(&operator, &["10.203.0.1/24"], &host, &["10.203.0.2/24"]);
    let _listeners: Vec<Listener> = [SSH, WEB, CLOSED]
        .into_iter()
        .map(|port| Listener::start(host.name(), Service::Tcp(port)).expect("listens"))
        .collect();
    let dir = TempDir::new();
    let path = dir.path().join("host.toml");
    let write = |port| {
        let staged = dir.path().join("host.toml.new");
        std::fs::write(&staged, config(&link.right, port)).expect("config");
        std::fs::rename(&staged, &path).expect("config");
    };
    write(SSH);
    let pins = PinDir::new();
    let seconds = CONFIRM_SECONDS.to_string();
    let mut agent = AgentProcess::start(
        LogFormat::Json,
        &path,
        host.name(),
        pins.path(),
        &["--confirm", &seconds],
    );
    agent.wait_event("enforcing", Duration::from_secs(30), |event| {
        matches!(event, AgentEvent::Enforcing { .. })
    });
    let operator_ns = operator.name().to_string();
    assert_eq!(probe(&operator_ns, SSH), Outcome::Reached);
    assert_eq!(probe(&operator_ns, WEB), Outcome::TimedOut);

    // Probes of the closed port, all along: none may get through (H4).
    let stop = Arc::new(AtomicBool::new(false));
    let leaked = Arc::new(AtomicU32::new(0));
    let watcher = {
        let (stop, leaked, ns) = (Arc::clone(&stop), Arc::clone(&leaked), operator_ns.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                if probe(&ns, CLOSED) != Outcome::TimedOut {
                    leaked.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // The mistake: SSH closed. Nobody confirms; it comes back by itself.
    write(WEB);
    reloads(&mut agent, 1);
    assert_eq!(
        probe(&operator_ns, SSH),
        Outcome::TimedOut,
        "the change is in force"
    );
    assert_eq!(probe(&operator_ns, WEB), Outcome::Reached);
    reloads(&mut agent, 2);
    assert_eq!(probe(&operator_ns, SSH), Outcome::Reached, "rolled back");
    assert_eq!(probe(&operator_ns, WEB), Outcome::TimedOut, "rolled back");
    assert!(
        agent.output().contains("was not confirmed: rolled back"),
        "{}",
        agent.output()
    );

    // The same change, confirmed: it stays past the deadline.
    write(WEB);
    reloads(&mut agent, 3);
    let confirmed = std::process::Command::new(sgwall_bin())
        .args(["confirm", "--pin-dir"])
        .arg(pins.path())
        .output()
        .expect("sgwall confirm");
    assert!(
        confirmed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&confirmed.stdout),
        String::from_utf8_lossy(&confirmed.stderr)
    );
    std::thread::sleep(Duration::from_secs(CONFIRM_SECONDS + 1));
    assert_eq!(probe(&operator_ns, WEB), Outcome::Reached, "confirmed");
    assert_eq!(probe(&operator_ns, SSH), Outcome::TimedOut, "confirmed");
    let again = std::process::Command::new(sgwall_bin())
        .args(["confirm", "--pin-dir"])
        .arg(pins.path())
        .output()
        .expect("sgwall confirm");
    assert!(!again.status.success(), "nothing is pending any more");

    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    assert_eq!(
        leaked.load(Ordering::Relaxed),
        0,
        "the closed port was reached"
    );
}
