//! Developer tasks. Every task that needs the toolchain or system packages runs `setup` first,
//! so a new user never has to.

mod bench;
mod fuzz;
mod setup;
mod test;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "sgwall developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (rust-src, bpf-linker, Debian packages).
    /// Fast and silent about work already done.
    Setup,
    /// Run all four test tiers: unit, BPF_PROG_TEST_RUN, veth-namespace integration, smoke.
    Test(test::TestArgs),
    /// cargo fmt --check, and clippy on the workspace and on the eBPF crate.
    Lint,
    /// Benchmarks: BPF_PROG_TEST_RUN microbenchmarks, end to end against nftables and
    /// iptables + ipset, control plane. Writes BENCHMARKS.md and target/bench/*.json.
    Bench(bench::BenchArgs),
    /// The packet-path fuzzer for longer than `cargo xtask test` runs it: mutated frames through
    /// the real object and the reference, from the seed after the last run's (kept in
    /// target/fuzz/next-seed); disagreements are written under target/fuzz/disagreements.
    Fuzz {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Start here instead of after the last run.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Build the release binary and run the built-in lab demo (`sgwall lab demo`).
    Demo {
        /// Arguments passed on to `sgwall lab demo`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    // Errors are for people: one readable chain, no backtrace (RUST_BACKTRACE is often set).
    if let Err(error) = run_task(Cli::parse().command) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run_task(task: Task) -> Result<()> {
    match task {
        Task::Setup => setup::run(),
        Task::Test(args) => {
            setup::run()?;
            test::run(&args)
        }
        Task::Lint => {
            setup::run()?;
            lint()
        }
        Task::Bench(args) => {
            setup::run()?;
            bench::run(&args)
        }
        Task::Fuzz { minutes, seed } => {
            setup::run()?;
            fuzz::run(minutes, seed)
        }
        Task::Demo { args } => {
            setup::run()?;
            demo(&args)
        }
    }
}

pub fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a command to completion in the workspace root, failing with the command line on error.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn lint() -> Result<()> {
    run_checked(cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "filter-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate is linted for the target it runs on.
    run_checked(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--package",
                "filter-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--",
                "-D",
                "warnings",
            ])
            .env("CARGO_TARGET_DIR", target_dir().join("ebpf-clippy"))
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )?;
    println!("lint: fmt and clippy are clean");
    Ok(())
}

fn demo(args: &[String]) -> Result<()> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "sgwall",
        "--bin",
        "sgwall",
    ]))?;
    let binary = target_dir().join("release").join("sgwall");
    let mut command = Command::new(binary);
    command.args(["lab", "demo"]).args(args);
    run_checked(&mut command)
}
