//! Tier 4: the `sgwall` binary as a user runs it.

use std::{path::Path, process::Command};

use sgwall_tests::{privileged, sgwall_bin};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn check_accepts_the_demo_config() {
    if !privileged() {
        return;
    }
    let output = Command::new(sgwall_bin())
        .args(["check", "--config"])
        .arg(example("three-tier.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .trim_end()
            .ends_with("ok: 3 groups, 3 instances, 1 members, 13 rules"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_error_and_fails() {
    if !privileged() {
        return;
    }
    let output = Command::new(sgwall_bin())
        .args(["check", "--config"])
        .arg(example("invalid.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().last(), Some("13 errors"), "{stderr}");
    assert!(output.stdout.is_empty());
}
