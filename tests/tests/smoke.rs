//! Tier 4: the `sgwall` binary as a user runs it.

use std::{path::Path, process::Command, time::Duration};

use sgwall::runtime::console::{AgentEvent, LogFormat};
use sgwall_tests::{AgentProcess, privileged, sgwall_bin};

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

/// Issue 15: each importer's output, ACLs, subnets and prefix lists included, passes `check`.
#[test]
fn p1_n1_n2_every_importer_output_passes_check() {
    if !privileged() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures");
    let path = |relative: &str| fixtures.join(relative).to_str().unwrap().to_string();
    let imports: [Vec<String>; 3] = [
        [
            "aws",
            "--security-groups",
            &path("aws/security-groups.json"),
            "--prefix-lists",
            &path("aws/managed-prefix-lists.json"),
            "--prefix-list-entries",
            &format!(
                "pl-02cd2c6b={}",
                path("aws/prefix-list-entries-cloudfront.json")
            ),
            "--prefix-list-entries",
            &format!(
                "pl-0123456789abcdef0={}",
                path("aws/prefix-list-entries-partners.json")
            ),
            "--network-acls",
            &path("aws/network-acls.json"),
            "--subnets",
            &path("aws/subnets.json"),
            "--strict",
        ]
        .map(String::from)
        .to_vec(),
        ["terraform", &path("terraform/state.json"), "--strict"]
            .map(String::from)
            .to_vec(),
        [
            "cloudformation",
            &path("cloudformation/template.yaml"),
            "--strict",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let directory = std::env::temp_dir().join(format!("sgwt-smoke-imports-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    for (index, args) in imports.iter().enumerate() {
        let mut command = vec!["import"];
        command.extend(args.iter().map(String::as_str));
        let output = sgwall(&command);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let imported = directory.join(format!("imported-{index}.toml"));
        std::fs::write(&imported, &output.stdout).unwrap();
        let check = sgwall(&["check", "--config", imported.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
        assert!(check.status.success(), "{args:?}: {check:?}");
        assert!(
            stdout.contains("prefix lists") && stdout.contains("network ACLs"),
            "{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&directory);
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
    // The refused agent took its pin directory's lock (under /run/sgwall); `down` removes it.
    let _ = sgwall(&["down", "--pin-dir", pins.path().to_str().unwrap()]);
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

#[test]
fn errors_print_one_line_with_their_cause_and_no_backtrace_even_with_rust_backtrace() {
    if !privileged() {
        return;
    }
    let pins = sgwall_tests::PinDir::new();
    let missing = pins.path().join("no-such-config.toml");
    for (args, message) in [
        (
            vec!["status", "--pin-dir", pins.path().to_str().unwrap()],
            "error: no sgwall datapath is pinned under",
        ),
        (
            vec![
                "run",
                "--config",
                missing.to_str().unwrap(),
                "--pin-dir",
                pins.path().to_str().unwrap(),
            ],
            "error: ",
        ),
    ] {
        let output = Command::new(sgwall_bin())
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap_or_else(|e| panic!("running sgwall {args:?}: {e}"));
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        for trace in ["backtrace", "Caused by", "panicked", "Error: "] {
            assert!(
                !stderr.contains(trace),
                "{args:?} printed {trace:?}: {stderr}"
            );
        }
    }
    // The refused `run` made the agent's state directory; `down` removes it.
    let _ = sgwall(&["down", "--pin-dir", pins.path().to_str().unwrap()]);
}

#[test]
fn run_under_ip_netns_exec_says_the_pins_are_off_bpffs_and_names_netns() {
    if !privileged() {
        return;
    }
    // `ip netns exec` remounts /sys for the namespace, so /sys/fs/bpf is a bare sysfs
    // directory there and the pin directory (on the host's bpffs) is out of sight.
    let namespace = sgwall_tests::NetNs::new();
    let pins = sgwall_tests::PinDir::new();
    let config = example("three-tier.toml");
    let output = Command::new("ip")
        .args(["netns", "exec", namespace.name()])
        .arg(sgwall_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--pin-dir")
        .arg(pins.path())
        .output()
        .unwrap_or_else(|e| panic!("running ip netns exec: {e}"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: the pin directory {} is not on bpffs",
            pins.path().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("sgwall run --netns NAME"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(pins.path()).unwrap().count(),
        0,
        "nothing was pinned"
    );
}

#[test]
fn run_prints_its_events_as_stable_text_lines_or_as_json_objects() {
    if !privileged() {
        return;
    }
    // A namespace without the config's interfaces: the agent reports each one waiting.
    let namespace = sgwall_tests::NetNs::new();
    let config = example("three-tier.toml");
    let expected = [
        "waiting for sgw-web1 (web-1): no such interface",
        "waiting for sgw-app1 (app-1): no such interface",
        "waiting for sgw-db1 (db-1): no such interface",
    ];
    for format in [LogFormat::Text, LogFormat::Json] {
        let pins = sgwall_tests::PinDir::new();
        let mut agent = AgentProcess::start(format, &config, namespace.name(), pins.path(), &[]);
        // The datapath loads first.
        let lines = agent.stdout_lines(expected.len(), Duration::from_secs(60));
        let texts: Vec<String> = lines
            .iter()
            .map(|line| {
                AgentEvent::from_line(line)
                    .unwrap_or_else(|| panic!("not an event: {line}"))
                    .to_string()
            })
            .collect();
        assert_eq!(texts, expected, "{format:?}");
        match format {
            // Byte for byte what scripts and the docs know.
            LogFormat::Text => assert_eq!(lines, expected),
            LogFormat::Json => {
                for line in &lines {
                    let object: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(object["event"], "waiting", "{line}");
                }
            }
        }
    }
}
