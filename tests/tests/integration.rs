//! Tier 3: the datapath attached to veth interfaces in namespaces, with real traffic.

use std::{collections::BTreeMap, time::Duration};

use sgwall::{
    compile,
    datapath::{
        attach::{XdpAttachMode, attach},
        loader::{Datapath, LoadOptions},
    },
    maps::apply_full,
    model::Hook,
};
use sgwall_tests::{
    Listener, NetNs, Outcome, Probe, Service, VethPair, datapath::parse, packet::v4, privileged,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

fn server_config(interface: &str, port: u16) -> String {
    format!(
        r#"
[[security_group]]
name = "server"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "{port}"
  cidr = ["10.201.0.0/24"]
[[instance]]
name = "server"
interface = "{interface}"
attach = "host"
addresses = ["10.201.0.2"]
security_groups = ["server"]
"#
    )
}

/// The tiers are wired: the real object attaches (XDP inbound, TC egress) to a veth inside a
/// namespace; traffic flows while the policy admits it and stops when the policy drops it.
#[test]
fn attached_filter_enforces_the_compiled_policy_on_real_traffic() {
    if !privileged() {
        return;
    }
    let client = NetNs::new();
    let server = NetNs::new();
    let link = VethPair::new(&client, &["10.201.0.1/24"], &server, &["10.201.0.2/24"]);
    let server_if = link.right.clone();
    let server_ifindex = server.ifindex(&server_if);
    let _listener = Listener::start(server.name(), Service::Tcp(8080)).unwrap();
    let probe = Probe {
        source: None,
        destination: v4("10.201.0.2"),
        service: Service::Tcp(8080),
        timeout: PROBE_TIMEOUT,
    };
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::Reached,
        "before attach"
    );

    // A policy that only opens another port: the probe must stop.
    let denying = parse(&server_config(&server_if, 9999));
    let ifindexes = BTreeMap::from([(server_if.clone(), server_ifindex)]);
    let interface = server_if.clone();
    let denying_for_thread = denying.clone();
    let ifindexes_for_thread = ifindexes.clone();
    let (mut datapath, applied, links) = server.run(move || {
        let mut datapath = Datapath::load(&LoadOptions::default()).expect("loads");
        let compiled = compile::compile(&denying_for_thread, &BTreeMap::new()).expect("compiles");
        let applied =
            apply_full(&mut datapath.maps, None, compiled, ifindexes_for_thread).expect("applies");
        let links: Vec<_> = [Hook::XdpIngress, Hook::TcEgress]
            .into_iter()
            .map(|hook| {
                attach(&mut datapath.ebpf, &interface, hook, XdpAttachMode::Auto).expect("attaches")
            })
            .collect();
        (datapath, applied, links)
    });
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::TimedOut,
        "port not admitted: dropped"
    );

    let admitting = parse(&server_config(&server_if, 8080));
    let compiled = compile::compile(&admitting, &BTreeMap::new()).expect("compiles");
    apply_full(&mut datapath.maps, Some(&applied), compiled, ifindexes).expect("applies");
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::Reached,
        "port admitted: passes"
    );

    drop(links);
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::Reached,
        "detached: open again"
    );
}
