//! Tier 2: the packet-path fuzzer (issue 17). Frames built from valid ones by mutation
//! (`sgwall_tests::fuzz`) go through the real eBPF object under BPF_PROG_TEST_RUN and through
//! the reference reading of bytes (`sgwall::eval::wire`) and evaluator, with a reference
//! conntrack: verdict and reason must agree on every frame, so no frame is admitted that the
//! evaluator denies.
//!
//! `cargo xtask test` runs a bounded pass (SGWALL_FUZZ_SECONDS, 40 s by default);
//! `cargo xtask fuzz --minutes N` runs longer, writes each disagreement under
//! `target/fuzz/disagreements/`, and a disagreement that reproduces on a fresh datapath belongs
//! in `tests/fuzz-regressions/` (one case per file), which every run replays first.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sgwall::{
    eval::{self, Frame, Reason, Session, Transport, wire},
    model::{Config, Direction, MacAddr},
    testgen::{self, Rng},
};
use sgwall_tests::{datapath::TestDatapath, fuzz, packet::from_eval, privileged};

const STEPS_PER_SEED: usize = 200;

fn budget() -> Duration {
    let seconds = std::env::var("SGWALL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    Duration::from_secs(seconds)
}

fn first_seed() -> u64 {
    std::env::var("SGWALL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A datapath with every interface the random configs use.
fn datapath() -> TestDatapath {
    let all_interfaces = testgen::INTERFACES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            format!("[[instance]]\nname = \"i{index}\"\ninterface = \"{name}\"\naddresses = [\"10.0.9.{index}\"]\nsecurity_groups = [\"g\"]\n")
        })
        .collect::<String>();
    TestDatapath::from_toml(&format!(
        "[[security_group]]\nname = \"g\"\n{all_interfaces}"
    ))
}

fn seed_config(seed: u64) -> (Rng, Config) {
    let mut rng = Rng::new(seed);
    // The configs the kept cases were found with: no network ACLs, which the differential
    // test of prog_test_run covers.
    let config = testgen::random_groups_config(&mut rng);
    (rng, config)
}

/// What the reference makes of `frame`.
fn reference(
    session: &mut Session,
    instance: &str,
    direction: Direction,
    frame: &[u8],
    now: f64,
) -> Reason {
    // Port security (I7) judges the frame's source MAC: for ARP before the ARP body is read,
    // for IP once the headers are.
    let source_mac = frame
        .get(6..12)
        .and_then(|bytes| <[u8; 6]>::try_from(bytes).ok())
        .map(MacAddr);
    match wire::parse(frame) {
        Ok(parsed) => {
            session
                .process_frame(instance, direction, source_mac, &parsed, now)
                .reason
        }
        Err(Reason::BadArp) => session
            .config
            .instance(instance)
            .and_then(|i| eval::port_security(i, direction, source_mac))
            .map_or(Reason::BadArp, |refused| refused.reason),
        Err(reason) => reason,
    }
}

/// The datapath's reason, or the panic a broken invariant of `send` raised (two counters for
/// one packet, a reason whose verdict is not the one returned).
fn datapath_reason(
    dp: &mut TestDatapath,
    instance: &str,
    direction: Direction,
    frame: &[u8],
) -> Result<Reason, String> {
    catch_unwind(AssertUnwindSafe(|| {
        dp.send(instance, direction, frame).reason
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
            + &format!(" (frame of {} bytes: {})", frame.len(), fuzz::hex(frame))
    })
}

struct Case {
    seed: u64,
    instance: String,
    direction: Direction,
    frame: Vec<u8>,
}

impl Case {
    fn line(&self) -> String {
        format!(
            "seed={} instance={} direction={} frame={}",
            self.seed,
            self.instance,
            self.direction,
            fuzz::hex(&self.frame)
        )
    }

    fn parse(line: &str) -> Option<Case> {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        Some(Case {
            seed: fields.get("seed")?.parse().ok()?,
            instance: fields.get("instance")?.to_string(),
            direction: match *fields.get("direction")? {
                "ingress" => Direction::Ingress,
                "egress" => Direction::Egress,
                _ => return None,
            },
            frame: fuzz::from_hex(fields.get("frame")?)?,
        })
    }

    /// Judged alone, on a fresh datapath and session with the seed's config: (datapath,
    /// reference).
    fn replay(&self, dp: &mut TestDatapath) -> (Result<Reason, String>, Reason) {
        let (_, config) = seed_config(self.seed);
        dp.flush_conntrack();
        dp.reconfigure(config.clone());
        let mut session = Session::new(config);
        let expected = reference(
            &mut session,
            &self.instance,
            self.direction,
            &self.frame,
            0.0,
        );
        (
            datapath_reason(dp, &self.instance, self.direction, &self.frame),
            expected,
        )
    }
}

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-regressions")
}

fn write_disagreement(case: &Case, detail: &str) {
    let Some(dir) = std::env::var_os("SGWALL_FUZZ_CORPUS").map(PathBuf::from) else {
        return;
    };
    let dir = dir.join("disagreements");
    if std::fs::create_dir_all(&dir).is_ok() {
        let name = format!(
            "seed{}-{}.case",
            case.seed,
            &fuzz::hex(&case.frame)[..16.min(case.frame.len() * 2)]
        );
        let _ = std::fs::write(dir.join(name), format!("{}\n# {detail}\n", case.line()));
    }
}

/// Every case once found and kept: each must now agree.
#[test]
fn fuzz_regressions_agree_with_the_reference() {
    if !privileged() {
        return;
    }
    let mut dp = datapath();
    let mut replayed = 0;
    let entries = std::fs::read_dir(regressions_dir()).expect("tests/fuzz-regressions");
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("readable case");
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let case = Case::parse(line)
                .unwrap_or_else(|| panic!("{}: not a case: {line}", entry.path().display()));
            let (datapath, expected) = case.replay(&mut dp);
            assert_eq!(datapath, Ok(expected), "{}: {line}", entry.path().display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "the regression cases are found");
}

/// Mutated frames interleaved with valid conversation packets (so conntrack state builds up
/// and mutations meet tracked flows): datapath and reference agree on every one.
#[test]
fn fuzz_mutated_frames_get_the_reference_verdict_and_reason() {
    if !privileged() {
        return;
    }
    let budget = budget();
    let mut dp = datapath();
    let started = Instant::now();
    let mut frames: u64 = 0;
    let mut mutated_frames: u64 = 0;
    let mut kernel_refused: u64 = 0;
    let mut reasons = BTreeMap::<Reason, u64>::new();
    let mut disagreements = Vec::new();
    let mut seed = first_seed();
    while started.elapsed() < budget && disagreements.len() < 10 {
        let (mut rng, config) = seed_config(seed);
        dp.flush_conntrack();
        dp.reconfigure(config.clone());
        let mut session = Session::new(config.clone());
        let mut conversations = testgen::Conversations::default();
        for step in 0..STEPS_PER_SEED {
            let (instance, direction, packet) = conversations.next(&mut rng, &config);
            let mut frame = from_eval(&packet);
            // The reference reading of an unchanged frame is the packet it was built from.
            // (Other protocols may be IPv6 extension headers, which the reading walks or refuses.)
            let plain = !matches!(packet.fragment, sgwall::eval::Fragment::Later { .. })
                && !matches!(
                    packet.transport,
                    Transport::Icmp {
                        quoted: Some(_),
                        ..
                    } | Transport::Other(_)
                );
            if plain {
                assert_eq!(
                    wire::parse(&frame),
                    Ok(Frame::Ip(packet.clone())),
                    "seed {seed} step {step}"
                );
            }
            let mutations = if rng.chance(60) {
                mutated_frames += 1;
                fuzz::mutate(&mut rng, &mut frame)
            } else {
                Vec::new()
            };
            let now = started.elapsed().as_secs_f64();
            let expected = reference(&mut session, &instance, direction, &frame, now);
            if fuzz::refused_by_test_run(&frame) {
                assert!(
                    matches!(expected, Reason::BadIpv4 | Reason::BadIpv6),
                    "seed {seed} step {step}: the reference admits a frame shorter than its IP header: {expected:?}"
                );
                kernel_refused += 1;
                continue;
            }
            let datapath = datapath_reason(&mut dp, &instance, direction, &frame);
            frames += 1;
            *reasons.entry(expected).or_default() += 1;
            if datapath != Ok(expected) {
                let case = Case {
                    seed,
                    instance: instance.clone(),
                    direction,
                    frame: frame.clone(),
                };
                let (alone, alone_expected) = case.replay(&mut dp);
                let detail = format!(
                    "step {step}, mutations {mutations:?}: datapath {datapath:?}, reference {expected:?}; \
                     alone on a fresh datapath: datapath {alone:?}, reference {alone_expected:?}"
                );
                write_disagreement(&case, &detail);
                disagreements.push(format!("{}\n    {detail}", case.line()));
                // Both sides' state is suspect from here: on to the next seed.
                break;
            }
        }
        seed += 1;
    }
    let per_second = frames as f64 / started.elapsed().as_secs_f64();
    println!(
        "fuzz: {frames} frames ({mutated_frames} mutated, {kernel_refused} more refused by BPF_PROG_TEST_RUN) over seeds {}..{seed} in {:.0} s ({per_second:.0}/s), {} disagreements; reasons {reasons:?}",
        first_seed(),
        started.elapsed().as_secs_f64(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    // The mutations reach the parser's every refusal, not only the policy's.
    for reason in [
        Reason::BadVlan,
        Reason::BadIpv4,
        Reason::BadIpv6,
        Reason::TruncatedL4,
        Reason::TinyFirstFragment,
        Reason::Ipv6ExtensionChain,
        Reason::Ipv6UnknownExtension,
        Reason::NonIp,
        Reason::NewFlow,
        Reason::NoRule,
    ] {
        assert!(
            reasons.contains_key(&reason),
            "{reason:?} never met: {reasons:?}"
        );
    }
}
