//! Builds the eBPF object (`filter-ebpf`) with aya-build on the nightly toolchain and leaves it in
//! `OUT_DIR/sgwall-filter`, where `src/datapath/object.rs` embeds it.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for `cargo check`/clippy on a machine without
//! bpf-linker); the binary then carries an empty object and refuses to load it at run time.

use std::{env, fs, path::PathBuf, process::Command};

const EBPF_PACKAGE: &str = "filter-ebpf";
const EBPF_BINARY: &str = "sgwall-filter";

fn main() {
    if let Err(message) = build() {
        // A build script reports failure by exiting non-zero; cargo shows stderr.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let object = out_dir.join(EBPF_BINARY);

    if skip_requested() {
        println!("cargo:warning=AYA_BUILD_SKIP is set: this sgwall build carries no eBPF object");
        fs::write(&object, b"").map_err(|e| format!("writing {}: {e}", object.display()))?;
        return Ok(());
    }

    check_toolchain()?;

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let package = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| format!("package {EBPF_PACKAGE} is not in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", package.manifest_path))?;
    let ebpf_package = aya_build::Package {
        name: EBPF_PACKAGE,
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], aya_build::Toolchain::default())
        .map_err(|e| format!("building the eBPF object: {e:#}"))?;
    // The filter-common sources shape the object too, but sit outside root_dir.
    println!("cargo:rerun-if-changed=../filter-common/src");
    if !object.exists() {
        return Err(format!("aya-build did not produce {}", object.display()));
    }
    Ok(())
}

fn skip_requested() -> bool {
    env::var("AYA_BUILD_SKIP").is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

/// Fails early with a fix, rather than with a linker error deep in a nested cargo build.
fn check_toolchain() -> Result<(), String> {
    let linker = Command::new("rustup")
        .args(["run", "nightly", "bpf-linker", "--version"])
        .output();
    match linker {
        Ok(output) if output.status.success() => Ok(()),
        _ => Err("bpf-linker is not installed for the nightly toolchain.\n\
             Run `cargo xtask setup` (installs rust-src, bpf-linker and test packages),\n\
             or set AYA_BUILD_SKIP=1 to check or lint without building the eBPF object."
            .to_string()),
    }
}
