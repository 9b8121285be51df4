//! `cargo xtask test`: the four test tiers, each a `cargo test` run, with a summary at the end.
//!
//! Tiers 2-4 need root and kernel features. Without them the tier is skipped with a visible
//! message, except under `CI=true`, where a tier that cannot run is a failure.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, run_checked, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Only run these tiers (1 unit, 2 prog-test-run, 3 integration, 4 smoke), e.g. `--tier 2,3`.
    #[arg(long, value_delimiter = ',')]
    tier: Vec<u8>,
    /// Only run tests whose name contains this string (passed to the test binaries).
    filter: Option<String>,
}

struct Tier {
    number: u8,
    name: &'static str,
    cargo_args: &'static [&'static str],
    /// Passed after `--` to the test binaries.
    harness_args: &'static [&'static str],
    privileged: bool,
    /// A hung test must not eat the CI budget: the tier is killed after this long.
    timeout: Duration,
}

const TIERS: &[Tier] = &[
    Tier {
        number: 1,
        name: "unit",
        cargo_args: &[
            "--workspace",
            "--exclude",
            "sgwall-tests",
            "--exclude",
            "filter-ebpf",
        ],
        harness_args: &[],
        privileged: false,
        timeout: Duration::from_secs(20 * 60),
    },
    Tier {
        number: 2,
        name: "prog-test-run",
        cargo_args: &[
            "--package",
            "sgwall-tests",
            "--test",
            "prog_test_run",
            "--test",
            "fuzz",
        ],
        harness_args: &[],
        privileged: true,
        timeout: Duration::from_secs(15 * 60),
    },
    Tier {
        number: 3,
        name: "integration",
        cargo_args: &[
            "--package",
            "sgwall-tests",
            "--test",
            "integration",
            "--test",
            "runtime",
            "--test",
            "lab",
            "--test",
            "network_acl",
            "--test",
            "floods",
            "--test",
            "api",
            "--test",
            "guest",
            "--test",
            "taps",
            "--test",
            "confirm",
        ],
        // Namespaces, links and the pinned maps are shared kernel state: one test at a time.
        harness_args: &["--test-threads=1"],
        privileged: true,
        timeout: Duration::from_secs(25 * 60),
    },
    Tier {
        number: 4,
        name: "smoke",
        cargo_args: &[
            "--package",
            "sgwall-tests",
            "--test",
            "smoke",
            "--test",
            "lab_cli",
        ],
        harness_args: &["--test-threads=1"],
        privileged: true,
        timeout: Duration::from_secs(10 * 60),
    },
];

#[derive(Default)]
struct Outcome {
    passed: u64,
    failed: u64,
    ignored: u64,
    summary_lines: Vec<String>,
}

enum TierResult {
    Ran {
        outcome: Outcome,
        success: bool,
        elapsed: Duration,
        timed_out: bool,
    },
    Skipped(String),
    CannotRun(String),
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn run(args: &TestArgs) -> Result<()> {
    let selected: Vec<&Tier> = TIERS
        .iter()
        .filter(|tier| args.tier.is_empty() || args.tier.contains(&tier.number))
        .collect();
    if selected.is_empty() {
        bail!("no tier matches {:?}; tiers are 1-4", args.tier);
    }
    let ci = in_ci();
    let problem = sgwall_preflight::privilege_problem();

    if selected.iter().any(|tier| tier.privileged) && problem.is_none() {
        // Tiers 3 and 4 drive the binary itself.
        run_checked(cargo().args(["build", "--package", "sgwall", "--bin", "sgwall"]))?;
    }
    let binary = target_dir().join("debug").join("sgwall");

    let mut results = Vec::new();
    for tier in &selected {
        let result = match (&problem, tier.privileged) {
            (Some(reason), true) if ci => {
                println!(
                    "\nFAILED tier {} ({}): {reason}. Under CI=true a privileged tier may not skip.",
                    tier.number, tier.name
                );
                TierResult::CannotRun(reason.clone())
            }
            (Some(reason), true) => {
                println!(
                    "\nSKIPPED tier {} ({}): {reason}. Run as root to include it.",
                    tier.number, tier.name
                );
                TierResult::Skipped(reason.clone())
            }
            _ => run_tier(tier, args.filter.as_deref(), &binary)?,
        };
        results.push((tier, result));
    }

    println!("\n==== sgwall test summary ====");
    let mut failed = false;
    for (tier, result) in &results {
        let label = format!("tier {} {:<14}", tier.number, tier.name);
        match result {
            TierResult::Ran {
                outcome,
                success,
                elapsed,
                timed_out,
            } => {
                for line in &outcome.summary_lines {
                    println!("  {label} | {line}");
                }
                let verdict = match (success, timed_out) {
                    (_, true) => "TIMED OUT",
                    (true, false) => "ok",
                    (false, false) => "FAILED",
                };
                println!(
                    "{label}: {verdict}: {} passed, {} failed, {} ignored in {:.1}s",
                    outcome.passed,
                    outcome.failed,
                    outcome.ignored,
                    elapsed.as_secs_f64()
                );
                failed |= !success || *timed_out;
            }
            TierResult::Skipped(reason) => println!("{label}: SKIPPED ({reason})"),
            TierResult::CannotRun(reason) => {
                println!("{label}: FAILED, cannot run under CI ({reason})");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some tiers failed");
    }
    Ok(())
}

fn run_tier(tier: &Tier, filter: Option<&str>, binary: &std::path::Path) -> Result<TierResult> {
    println!("\n==== tier {} ({}) ====", tier.number, tier.name);
    let mut command = cargo();
    command
        .arg("test")
        .args(tier.cargo_args)
        .arg("--")
        .args(tier.harness_args)
        .args(filter)
        .current_dir(workspace_root())
        .env("SGWALL_BIN", binary)
        .stdout(Stdio::piped())
        // Its own process group, so a timeout kills the test binaries too, not just cargo.
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting cargo test for tier {}", tier.number))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;

    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("test result:") && lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for cargo test")? {
            break status;
        }
        if started.elapsed() > tier.timeout {
            timed_out = true;
            // SAFETY: kill(2) on the process group this function created.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            break child.wait().context("reaping cargo test")?;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = reader.join();

    let mut outcome = Outcome::default();
    for line in lines_rx.try_iter() {
        outcome.passed += count_before(&line, " passed");
        outcome.failed += count_before(&line, " failed");
        outcome.ignored += count_before(&line, " ignored");
        outcome.summary_lines.push(line);
    }
    Ok(TierResult::Ran {
        success: status.success() && outcome.failed == 0,
        outcome,
        elapsed: started.elapsed(),
        timed_out,
    })
}

/// `count_before("... 12 passed; ...", " passed")` is 12.
fn count_before(line: &str, label: &str) -> u64 {
    line.find(label)
        .and_then(|end| line[..end].rsplit([' ', '.']).next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}
