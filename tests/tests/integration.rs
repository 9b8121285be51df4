//! Tier 3: the datapath attached to veth interfaces in namespaces, with real traffic.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use filter_common::{IfaceConfig, IfaceKey, map_names, program_names};
use sgwall_tests::{Listener, NetNs, Outcome, Probe, Service, VethPair, packet::v4, privileged};

const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// The tiers are wired: the real object attaches (XDP and both TC hooks) to a veth inside a
/// namespace, traffic stops while the filter drops it and flows once the filter passes it.
#[test]
fn attached_filter_stops_and_passes_real_traffic() {
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

    // Load and attach inside the server namespace; the Ebpf value owns the links.
    let mut ebpf = server.run(move || {
        let object = sgwall::datapath::object::bytes().unwrap();
        let mut ebpf = Ebpf::load(object).unwrap();
        let xdp: &mut Xdp = ebpf
            .program_mut(program_names::XDP_INGRESS)
            .unwrap()
            .try_into()
            .unwrap();
        xdp.load().unwrap();
        xdp.attach(&server_if, XdpMode::default()).unwrap();
        for (name, hook) in [
            (program_names::TC_INGRESS, TcAttachType::Ingress),
            (program_names::TC_EGRESS, TcAttachType::Egress),
        ] {
            let tc: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
            tc.load().unwrap();
            tc.attach(&server_if, hook).unwrap();
        }
        ebpf
    });
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::TimedOut,
        "unconfigured: dropped"
    );

    let mut active: Array<_, u64> =
        Array::try_from(ebpf.map_mut(map_names::ACTIVE).unwrap()).unwrap();
    active.set(0, 0, 0).unwrap();
    let mut ifaces: HashMap<_, IfaceKey, IfaceConfig> =
        HashMap::try_from(ebpf.map_mut(map_names::IFACES).unwrap()).unwrap();
    let key = IfaceKey {
        slot: 0,
        _pad: [0; 3],
        ifindex: server_ifindex,
    };
    let config: IfaceConfig = unsafe { std::mem::zeroed() };
    ifaces.insert(key, config, 0).unwrap();
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::Reached,
        "configured: passed"
    );

    ifaces.remove(&key).unwrap();
    assert_eq!(
        probe.run_in(client.name()).unwrap(),
        Outcome::TimedOut,
        "removed: dropped again"
    );
}
