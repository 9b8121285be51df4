//! `cargo xtask setup`: everything a fresh machine lacks, installed once, checked quickly after.
//!
//! The bpf-linker recipe follows ../shared/toolchain.md: bpf-linker must link against the same
//! LLVM as the nightly rustc, so it is built against the nightly toolchain's own libLLVM.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use sgwall_preflight::{BPFFS, GUEST_DIR, bpffs_mounted, is_root};

use crate::run_checked;

const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

/// Debian packages the tests and benchmarks call: iproute2 (`ip`), bpftool (verifier figures),
/// the peers the benchmarks compare against (nftables, iptables, ipset), iperf3, conntrack (the
/// benchmarks empty netfilter's table between measurements) and ethtool (offload state); for
/// the QEMU guest test (tier 3), QEMU, busybox (the guest's userland) and dnsmasq (the host's
/// DHCP and RA server on the tap).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "nftables",
    "iptables",
    "ipset",
    "iperf3",
    "procps",
    "conntrack",
    "ethtool",
    "qemu-system-x86",
    "busybox-static",
    "dnsmasq-base",
];

/// Debian's metapackage of the cloud kernel: the guest test's kernel is the package it depends
/// on.
const GUEST_KERNEL_META: &str = "linux-image-cloud-amd64";

pub fn run() -> Result<()> {
    let started = Instant::now();
    let mut done = Vec::new();
    ensure_rust_src(&mut done)?;
    ensure_bpf_linker(&mut done)?;
    ensure_packages(&mut done)?;
    ensure_guest_kernel(&mut done)?;
    ensure_bpffs(&mut done)?;
    ensure_python_clients(&mut done)?;
    if done.is_empty() {
        println!(
            "setup: already complete (rust-src, bpf-linker {BPF_LINKER_VERSION}, {} packages, guest kernel, bpffs, awscli and boto3) in {:.1}s",
            DEBIAN_PACKAGES.len(),
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "setup: installed {} in {:.1}s",
            done.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn command_stdout(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ensure_rust_src(done: &mut Vec<String>) -> Result<()> {
    let installed = command_stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("rustup is needed, with the nightly toolchain installed")?;
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    run_checked(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    done.push("rust-src".into());
    Ok(())
}

fn installed_bpf_linker_version() -> Option<String> {
    command_stdout(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"]))
        .map(|out| out.trim().to_string())
}

fn ensure_bpf_linker(done: &mut Vec<String>) -> Result<()> {
    if installed_bpf_linker_version().is_some_and(|v| v.ends_with(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly LLVM (about a minute)"
    );
    let sysroot = command_stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("rustc +nightly --print sysroot")?;
    let nightly_lib = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&nightly_lib)
        .with_context(|| format!("reading {}", nightly_lib.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", nightly_lib.display()))?;

    let prefix = cargo_home().join("sgwall-bpf-linker-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;

    run_checked(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
            ])
            .env("LLVM_PREFIX", &prefix)
            // A target dir inherited from an outer cargo would mix this build with ours.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    match installed_bpf_linker_version() {
        Some(version) if version.ends_with(BPF_LINKER_VERSION) => {
            done.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
            Ok(())
        }
        other => bail!(
            "bpf-linker was installed but `rustup run nightly bpf-linker --version` gives {other:?}"
        ),
    }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn missing_packages() -> Vec<&'static str> {
    DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            let status =
                command_stdout(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
            !status.is_some_and(|s| s.contains("install ok installed"))
        })
        .collect()
}

fn ensure_packages(done: &mut Vec<String>) -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}. Run as root (setup installs them) or: apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("setup: installing {}", missing.join(" "));
    run_checked(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    done.push(missing.join(" "));
    Ok(())
}

/// The guest kernel and its virtio modules, extracted from Debian's cloud kernel package into
/// `GUEST_DIR` (the package is downloaded, never installed: the host keeps its own kernel).
fn ensure_guest_kernel(done: &mut Vec<String>) -> Result<()> {
    if sgwall_preflight::guest_problem().is_none() {
        return Ok(());
    }
    if !is_root() {
        bail!("the guest kernel is missing from {GUEST_DIR}: run cargo xtask setup as root");
    }
    let depends = || command_stdout(Command::new("apt-cache").args(["depends", GUEST_KERNEL_META]));
    // On a machine whose package lists were never fetched, apt-cache knows no package yet.
    let depends = match depends().filter(|text| text.contains("Depends: ")) {
        Some(text) => text,
        None => {
            run_checked(
                Command::new("apt-get")
                    .args(["update", "-qq"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            depends().context("apt-cache depends")?
        }
    };
    let package = depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-"))
        .with_context(|| format!("{GUEST_KERNEL_META} depends on no linux-image package"))?
        .to_string();
    println!("setup: fetching the guest kernel ({package})");
    let work = PathBuf::from(GUEST_DIR).with_extension("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let in_work = |program: &str, args: &[&str]| -> Result<()> {
        let status = Command::new(program)
            .args(args)
            .current_dir(&work)
            .status()
            .with_context(|| format!("starting {program}"))?;
        if !status.success() {
            bail!("{program} {args:?} failed with {status}");
        }
        Ok(())
    };
    in_work("apt-get", &["download", "-qq", &package])?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    in_work("dpkg-deb", &["-x", &deb.to_string_lossy(), "root"])?;
    let root = work.join("root");
    let guest = PathBuf::from(GUEST_DIR);
    std::fs::create_dir_all(guest.join("modules"))?;
    let kernel = std::fs::read_dir(root.join("boot"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .context("the kernel package has no /boot/vmlinuz")?;
    std::fs::copy(&kernel, guest.join("vmlinuz"))?;
    for module in sgwall_preflight::GUEST_MODULES {
        let name = format!("{module}.ko");
        let found = walk(&root.join("lib/modules"), &name)
            .with_context(|| format!("the kernel package has no {name}"))?;
        std::fs::copy(&found, guest.join("modules").join(&name))?;
    }
    std::fs::write(guest.join("PACKAGE"), format!("{package}\n"))?;
    std::fs::remove_dir_all(&work)?;
    done.push(format!("guest kernel {package}"));
    Ok(())
}

/// The first file called `name` under `dir`.
fn walk(dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

fn ensure_bpffs(done: &mut Vec<String>) -> Result<()> {
    if bpffs_mounted() || !is_root() {
        // Without root there is nothing to pin; the privileged tiers report that themselves.
        return Ok(());
    }
    run_checked(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    done.push(format!("bpffs on {BPFFS}"));
    Ok(())
}

/// The real AWS clients the API tests drive (issue 14), from PyPI through the machine's own
/// `python3 -m pip`: present when `aws --version` runs and `python3` imports boto3.
fn ensure_python_clients(done: &mut Vec<String>) -> Result<()> {
    let has_aws = command_stdout(Command::new("aws").arg("--version")).is_some();
    let has_boto3 = command_stdout(Command::new("python3").args(["-c", "import boto3"])).is_some();
    if has_aws && has_boto3 {
        return Ok(());
    }
    println!("setup: installing awscli and boto3 from PyPI");
    let pip = |extra: &[&str]| {
        run_checked(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(extra)
                .args(["awscli", "boto3"]),
        )
    };
    // Debian's own python3 refuses pip installs without this flag (PEP 668).
    if pip(&[]).is_err() {
        pip(&["--break-system-packages"])?;
    }
    done.push("awscli and boto3".to_string());
    Ok(())
}
