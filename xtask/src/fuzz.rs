//! `cargo xtask fuzz --minutes N`: the tier 2 packet-path fuzzer (tests/tests/fuzz.rs) run for
//! longer, each run starting from the seed after the last one's, so runs add up instead of
//! repeating each other. A disagreement is written under target/fuzz/disagreements with the
//! case line to paste into tests/fuzz-regressions/.

use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::{cargo, run_checked, target_dir};

pub fn run(minutes: u64, seed: Option<u64>) -> Result<()> {
    let dir = target_dir().join("fuzz");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let next_seed_file = dir.join("next-seed");
    let first_seed = match seed {
        Some(seed) => seed,
        None => std::fs::read_to_string(&next_seed_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0),
    };
    let seeds_per_minute_bound = 10_000;
    println!(
        "fuzz: {minutes} min from seed {first_seed}; disagreements go to {}",
        dir.display()
    );
    let started = Instant::now();
    let result = run_checked(
        cargo()
            .args(["test", "--package", "sgwall-tests", "--test", "fuzz", "--"])
            .args(["--nocapture", "--test-threads=1", "fuzz_"])
            .env("SGWALL_FUZZ_SECONDS", (minutes * 60).to_string())
            .env("SGWALL_FUZZ_SEED", first_seed.to_string())
            .env("SGWALL_FUZZ_CORPUS", &dir),
    );
    // The run prints how far it got; without parsing it, the next run starts past any seed
    // this one can have reached.
    let next = first_seed + (minutes.max(1) * seeds_per_minute_bound);
    std::fs::write(&next_seed_file, next.to_string())
        .with_context(|| format!("writing {}", next_seed_file.display()))?;
    println!(
        "fuzz: {:.0} s; the next run starts at seed {next}",
        started.elapsed().as_secs_f64()
    );
    result
}
