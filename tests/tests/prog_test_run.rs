//! Tier 2: the real eBPF object under BPF_PROG_TEST_RUN, fed hand-built frames.

use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use filter_common::{IfaceConfig, IfaceKey, map_names, program_names};
use sgwall_tests::{
    packet::{IpPacket, L4, v4},
    privileged,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
/// Without a context, BPF_PROG_TEST_RUN runs the program as if on the loopback device.
const LOOPBACK_IFINDEX: u32 = 1;

fn load() -> Ebpf {
    let object = sgwall::datapath::object::bytes().expect("object embedded");
    let mut ebpf = Ebpf::load(object).expect("loading the eBPF object");
    let xdp: &mut Xdp = ebpf
        .program_mut(program_names::XDP_INGRESS)
        .expect("xdp program")
        .try_into()
        .expect("xdp type");
    xdp.load().expect("verifier accepts the XDP program");
    for name in [program_names::TC_INGRESS, program_names::TC_EGRESS] {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(name)
            .expect("tc program")
            .try_into()
            .expect("tc type");
        tc.load().expect("verifier accepts the TC program");
    }
    ebpf
}

fn run_xdp(ebpf: &mut Ebpf, frame: &[u8]) -> u32 {
    let xdp: &mut Xdp = ebpf
        .program_mut(program_names::XDP_INGRESS)
        .unwrap()
        .try_into()
        .unwrap();
    test_run(xdp, frame)
}

fn run_tc(ebpf: &mut Ebpf, name: &str, frame: &[u8]) -> u32 {
    let tc: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
    test_run(tc, frame)
}

fn test_run<P>(program: &mut P, frame: &[u8]) -> u32
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::programs::TestRunResult>,
{
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    let result: Result<_, ProgramError> = program.test_run(options);
    result.expect("BPF_PROG_TEST_RUN").return_value
}

/// Fail closed: a frame on an interface the active policy does not describe is dropped by every
/// hook; once the interface is configured, the same frame gets through.
#[test]
fn unconfigured_interface_drops_and_configured_interface_passes() {
    if !privileged() {
        return;
    }
    let mut ebpf = load();
    let frame = IpPacket::new(v4("10.0.0.1"), v4("10.0.0.2"), L4::udp(1000, 53)).build();

    assert_eq!(run_xdp(&mut ebpf, &frame), XDP_DROP);
    assert_eq!(
        run_tc(&mut ebpf, program_names::TC_INGRESS, &frame),
        TC_ACT_SHOT
    );
    assert_eq!(
        run_tc(&mut ebpf, program_names::TC_EGRESS, &frame),
        TC_ACT_SHOT
    );

    let mut active: Array<_, u64> =
        Array::try_from(ebpf.map_mut(map_names::ACTIVE).unwrap()).unwrap();
    active.set(0, 0, 0).unwrap();
    let mut ifaces: HashMap<_, IfaceKey, IfaceConfig> =
        HashMap::try_from(ebpf.map_mut(map_names::IFACES).unwrap()).unwrap();
    let key = IfaceKey {
        slot: 0,
        _pad: [0; 3],
        ifindex: LOOPBACK_IFINDEX,
    };
    let config: IfaceConfig = unsafe { std::mem::zeroed() };
    ifaces.insert(key, config, 0).unwrap();

    assert_eq!(run_xdp(&mut ebpf, &frame), XDP_PASS);
    assert_eq!(
        run_tc(&mut ebpf, program_names::TC_INGRESS, &frame),
        TC_ACT_UNSPEC
    );
    assert_eq!(
        run_tc(&mut ebpf, program_names::TC_EGRESS, &frame),
        TC_ACT_UNSPEC
    );
}
