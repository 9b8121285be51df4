//! Tier 3: instances that name their interface by the guest's MAC or by a pattern, as on a
//! libvirt or Proxmox host, with veths standing in for taps: `sgwall run` finds the interface
//! when it appears, enforces the instance's policy on it, lets it go when it disappears, finds
//! it again under a new name, and never gives up an enforced interface because a second one
//! matches.

use std::time::Duration;

use sgwall::runtime::console::{AgentEvent, LogFormat};
use sgwall_tests::{
    AgentProcess, Listener, NetNs, Outcome, PinDir, Probe, Service, TempDir, VethPair, privileged,
    status_json, unique_name,
};

const WAIT: Duration = Duration::from_secs(20);
const GUEST_MAC: &str = "52:54:00:aa:00:01";

fn config(pattern: &str) -> String {
    format!(
        r#"
[[security_group]]
name = "vm"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8080"
  cidr = ["10.88.0.0/16"]

# libvirt: the tap carries the guest's MAC with the first octet fe.
[[instance]]
name = "mac-vm"
mac = "52:54:00:aa:00:01"
addresses = ["10.88.0.2"]
security_groups = ["vm"]

# Proxmox: tap<VMID>i<N>, whichever N.
[[instance]]
name = "glob-vm"
interface = "{pattern}"
addresses = ["10.88.1.2"]
security_groups = ["vm"]
"#
    )
}

fn probe(host: &NetNs, destination: &str, port: u16) -> Outcome {
    Probe {
        source: None,
        destination: destination.parse().expect("address"),
        service: Service::Tcp(port),
        timeout: Duration::from_millis(1500),
    }
    .run_in(host.name())
    .expect("probe runs")
}

fn enforcing(interface: &str, instance: &str) -> impl Fn(&AgentEvent) -> bool {
    let (interface, instance) = (interface.to_string(), instance.to_string());
    move |event| {
        matches!(event, AgentEvent::Enforcing { interface: i, instance: n, .. }
            if *i == interface && *n == instance)
    }
}

fn waiting(instance: &str) -> impl Fn(&AgentEvent) -> bool {
    let instance = instance.to_string();
    move |event| matches!(event, AgentEvent::Waiting { instance: n, .. } if *n == instance)
}

/// A VM's link: `tap` on the host, `eth0` in the VM's namespace at 10.88.`subnet`.2, which
/// listens on 8080 and 8081. With `guest_mac`, eth0 has it and the tap has it with the first
/// octet fe, as libvirt does.
struct Vm {
    _ns: NetNs,
    link: Option<VethPair>,
    _listeners: Vec<Listener>,
}

impl Vm {
    fn start(host: &NetNs, tap: &str, guest_mac: Option<&str>, subnet: u8) -> Self {
        let ns = NetNs::new();
        let host_address = format!("10.88.{subnet}.1/24");
        let address = format!("10.88.{subnet}.2/24");
        let link = VethPair::named(host, tap, &[&host_address], &ns, "eth0", &[&address]);
        if let Some(mac) = guest_mac {
            ns.exec(&["ip", "link", "set", "dev", "eth0", "address", mac]);
            let tap_mac = format!("fe{}", &mac[2..]);
            host.exec(&["ip", "link", "set", "dev", tap, "address", &tap_mac]);
        }
        let listeners = [8080, 8081]
            .into_iter()
            .map(|port| Listener::start(ns.name(), Service::Tcp(port)).expect("listens"))
            .collect();
        Self {
            _ns: ns,
            link: Some(link),
            _listeners: listeners,
        }
    }

    /// The VM stops: its tap goes (the pair's guard deletes it).
    fn stop(&mut self) {
        self.link = None;
    }
}

#[test]
fn i7_taps_found_by_the_guests_mac_or_a_pattern_are_followed_as_they_come_and_go() {
    if !privileged() {
        return;
    }
    let host = NetNs::new();
    let pattern_stem = unique_name();
    let pattern = format!("{pattern_stem}p*");
    let dir = TempDir::new();
    let config_path = dir.path().join("taps.toml");
    std::fs::write(&config_path, config(&pattern)).expect("config");
    let pins = PinDir::new();
    let mut agent =
        AgentProcess::start(LogFormat::Json, &config_path, host.name(), pins.path(), &[]);
    agent.wait_event("mac-vm waiting", WAIT, waiting("mac-vm"));
    agent.wait_event("glob-vm waiting", WAIT, waiting("glob-vm"));

    // libvirt starts the VM: vnet3 with the guest's MAC, fe first.
    let mut vm = Vm::start(&host, "vnet3", Some(GUEST_MAC), 0);
    agent.wait_event("vnet3 found by MAC", WAIT, enforcing("vnet3", "mac-vm"));
    assert_eq!(probe(&host, "10.88.0.2", 8080), Outcome::Reached, "R1 rule");
    assert_eq!(
        probe(&host, "10.88.0.2", 8081),
        Outcome::TimedOut,
        "no rule"
    );

    // It stops, and starts again as vnet5: the policy follows the MAC.
    vm.stop();
    agent.wait_events("mac-vm waiting again", WAIT, 2, waiting("mac-vm"));
    let _vm = Vm::start(&host, "vnet5", Some(GUEST_MAC), 0);
    agent.wait_event("vnet5 found by MAC", WAIT, enforcing("vnet5", "mac-vm"));
    assert_eq!(
        probe(&host, "10.88.0.2", 8081),
        Outcome::TimedOut,
        "enforced on vnet5"
    );
    assert_eq!(probe(&host, "10.88.0.2", 8080), Outcome::Reached);

    // A tap matching the pattern; then a second one: the first stays enforced (H4).
    let first = format!("{pattern_stem}p0");
    let _proxmox = Vm::start(&host, &first, None, 1);
    agent.wait_event("the pattern's tap", WAIT, enforcing(&first, "glob-vm"));
    assert_eq!(probe(&host, "10.88.1.2", 8081), Outcome::TimedOut);
    let second = format!("{pattern_stem}p1");
    let _other = Vm::start(&host, &second, None, 2);
    // Long enough for the agent's 500 ms poll to have seen the second tap several times.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        probe(&host, "10.88.1.2", 8081),
        Outcome::TimedOut,
        "a second match takes nothing away"
    );
    let status = status_json(pins.path());
    let glob_vm = status["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["instance"] == "glob-vm")
        .cloned()
        .unwrap_or_default();
    assert_eq!(glob_vm["interface"], first.as_str(), "{status}");
    assert_eq!(glob_vm["status"], "enforcing", "{status}");
}
