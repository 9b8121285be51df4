//! `cargo xtask bench`: builds the benchmark binary (`tests/src/bin/sgwall-bench`) in release
//! mode and runs it. Orchestration only: the binary measures and writes every file.
//!
//! A full run writes BENCHMARKS.md at the workspace root and its raw figures to
//! `target/bench/*.json`; `--quick` and `--smoke` write under `target/bench/quick` and
//! `target/bench/smoke` and leave the committed BENCHMARKS.md alone.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, run_checked, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Fewer rounds and shorter runs: every figure in a few minutes.
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// Check that every benchmark runs and writes sane numbers (no speed judgement); for CI.
    #[arg(long)]
    smoke: bool,
    /// Only these sections (micro-rules, micro-members, micro-flows, e2e, control), comma
    /// separated; the report keeps the other sections' last figures.
    #[arg(long)]
    only: Option<String>,
    /// Measure nothing: rebuild the report from the last run's figures (after editing the
    /// analysis in tests/src/bin/sgwall-bench/notes.md).
    #[arg(long)]
    report_only: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if !sgwall_preflight::is_root() {
        bail!("the benchmarks load eBPF programs and create namespaces: run them as root");
    }
    // The agent binary too: the file-save figure runs `sgwall run` as a user would.
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "sgwall-tests",
        "--bin",
        "sgwall-bench",
        "--package",
        "sgwall",
        "--bin",
        "sgwall",
    ]))?;
    let (mode, out_dir, report, flag) = if args.smoke {
        let dir = target_dir().join("bench").join("smoke");
        ("smoke", dir.clone(), dir.join("BENCHMARKS.md"), " --smoke")
    } else if args.quick {
        let dir = target_dir().join("bench").join("quick");
        ("quick", dir.clone(), dir.join("BENCHMARKS.md"), " --quick")
    } else {
        (
            "full",
            target_dir().join("bench"),
            workspace_root().join("BENCHMARKS.md"),
            "",
        )
    };
    let mut command = Command::new(target_dir().join("release").join("sgwall-bench"));
    command
        .env("SGWALL_BIN", target_dir().join("release").join("sgwall"))
        .args([
            "--mode",
            mode,
            "--command",
            &format!("cargo xtask bench{flag}"),
        ])
        .arg("--out-dir")
        .arg(&out_dir)
        .arg("--report")
        .arg(&report);
    if let Some(only) = &args.only {
        command.args(["--only", only]);
    }
    if args.report_only {
        command.arg("--report-only");
    }
    run_checked(&mut command)
}
