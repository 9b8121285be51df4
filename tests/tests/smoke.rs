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

fn sgwall(args: &[&str]) -> std::process::Output {
    Command::new(sgwall_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running sgwall {args:?}: {e}"))
}

#[test]
fn plan_shows_rules_maps_and_fill() {
    if !privileged() {
        return;
    }
    let config = example("three-tier.toml");
    let output = sgwall(&["plan", "--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "db-1 (sgw-db1: port via tc-ingress,tc-egress)",
        "sg:app-sg",
        "untracked tcp (C8)",
        "SGW_MEMBERS",
        "PEAK FILL",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let json = sgwall(&["plan", "--config", config.to_str().unwrap(), "--json"]);
    let plan: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("plan --json is JSON");
    assert_eq!(plan["interfaces"].as_array().map(Vec::len), Some(3));
    assert_eq!(plan["member_addresses"], 8);
}

#[test]
fn import_aws_output_passes_check() {
    if !privileged() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures/aws");
    let output = sgwall(&[
        "import",
        "aws",
        "--security-groups",
        fixtures.join("security-groups.json").to_str().unwrap(),
        "--network-interfaces",
        fixtures.join("network-interfaces.json").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("prefix list"),
        "prefix lists are reported: {stderr}"
    );
    let directory = std::env::temp_dir().join(format!("sgwt-smoke-import-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let imported = directory.join("imported.toml");
    std::fs::write(&imported, &output.stdout).unwrap();
    let check = sgwall(&["check", "--config", imported.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&directory);
    assert!(
        check.status.success(),
        "imported config fails check: {check:?}"
    );
}

#[test]
fn run_refuses_an_invalid_config_and_pins_nothing() {
    if !privileged() {
        return;
    }
    let pins = sgwall_tests::PinDir::new();
    let config = example("invalid.toml");
    let output = sgwall(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--pin-dir",
        pins.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid.toml:") && stderr.contains("error"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(pins.path()).unwrap().count(),
        0,
        "nothing was loaded or pinned"
    );
}

#[test]
fn inspection_without_a_datapath_says_so() {
    if !privileged() {
        return;
    }
    let pins = sgwall_tests::PinDir::new();
    let output = sgwall(&["status", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no sgwall datapath is pinned"), "{stderr}");
}

#[test]
fn version_and_help_name_every_command() {
    if !privileged() {
        return;
    }
    let version = sgwall(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sgwall "));
    let help = String::from_utf8_lossy(&sgwall(&["--help"]).stdout).into_owned();
    for command in [
        "check",
        "import",
        "plan",
        "run",
        "down",
        "status",
        "conntrack",
        "rules",
        "flows",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}
