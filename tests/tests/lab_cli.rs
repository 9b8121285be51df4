//! Tier 4: `sgwall lab` as a user runs it: up, probe (text and JSON), down, and the demo. Each
//! test gives the lab its own prefix, state and pin directories, so it never meets a lab a
//! person has up on the same machine.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use sgwall_tests::{lab::STATE_ROOT, privileged, sgwall_bin, unique_name};

/// A lab's command-line options; `lab down` on drop, so a failing test leaves nothing behind.
struct CliLab {
    prefix: String,
    state_dir: PathBuf,
    pin_dir: PathBuf,
}

impl CliLab {
    fn new() -> Self {
        let name = unique_name();
        Self {
            prefix: format!("{name}-"),
            state_dir: Path::new(STATE_ROOT).join(&name),
            pin_dir: Path::new("/sys/fs/bpf").join(&name),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(sgwall_bin())
            .arg("lab")
            .args(args)
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("running sgwall lab {args:?}: {e}"))
    }

    fn namespaces(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for CliLab {
    fn drop(&mut self) {
        let output = self.run(&["down"]);
        if !output.status.success() {
            eprintln!("cleanup: {}", text(&output));
        }
        // Only when no other lab uses it.
        let _ = std::fs::remove_dir(STATE_ROOT);
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn lab_up_probe_and_down_from_the_command_line() {
    if !privileged() {
        return;
    }
    let lab = CliLab::new();
    let config = example("three-tier.toml");
    let up = lab.run(&["up", "--config", &config.to_string_lossy()]);
    assert!(up.status.success(), "{}", text(&up));
    let shown = String::from_utf8_lossy(&up.stdout);
    for interface in ["sgw-web1", "sgw-app1", "sgw-db1"] {
        assert!(
            shown.contains(&format!("enforcing {interface} (")),
            "{shown}"
        );
    }
    assert_eq!(lab.namespaces().len(), 6, "router, 3 instances, 2 clients");

    let probe = lab.run(&["probe"]);
    assert!(probe.status.success(), "{}", text(&probe));
    let matrix = String::from_utf8_lossy(&probe.stdout);
    assert!(
        matrix.contains("every cell agrees with the reference evaluator"),
        "{matrix}"
    );
    assert!(!matrix.contains('\x1b'), "no colour when not a terminal");

    let json = lab.run(&["probe", "--json", "--timeout-ms", "800"]);
    assert!(json.status.success(), "{}", text(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("probe --json: {e}: {}", text(&json)));
    assert_eq!(value["disagreements"], 0);
    assert_eq!(value["agent_running"], true);
    let cells = value["matrix"]["cells"].as_array().unwrap();
    // 9 source rows (admin has no IPv6) × 3 instances × 8 services, less each instance to
    // itself (2 families × 8 services × 3).
    assert_eq!(cells.len(), 9 * 3 * 8 - 3 * 2 * 8);
    let ssh_from_admin = cells
        .iter()
        .find(|c| {
            c["source"] == "admin"
                && c["destination"] == "web-1"
                && c["service"]["protocol"] == "tcp"
                && c["service"]["port"] == 22
        })
        .unwrap();
    assert_eq!(ssh_from_admin["expected"]["passes"], true);
    assert_eq!(ssh_from_admin["observed"], "reached");

    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("6 namespaces removed"),
        "{}",
        text(&down)
    );
    assert!(lab.namespaces().is_empty());
    assert!(!lab.pin_dir.exists(), "pins removed");
    assert!(!lab.state_dir.exists(), "state removed");

    let again = lab.run(&["down"]);
    assert!(
        again.status.success(),
        "down is idempotent: {}",
        text(&again)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
}

#[test]
fn lab_probe_without_a_lab_says_how_to_start_one() {
    if !privileged() {
        return;
    }
    let lab = CliLab::new();
    let probe = lab.run(&["probe"]);
    assert_eq!(probe.status.code(), Some(1), "{}", text(&probe));
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(stderr.contains("no lab is up"), "{stderr}");
    assert!(stderr.contains("sgwall lab up --config"), "{stderr}");
}

#[test]
fn lab_up_refuses_a_host_attachment_and_leaves_nothing() {
    if !privileged() {
        return;
    }
    let lab = CliLab::new();
    let up = lab.run(&[
        "up",
        "--config",
        &example("dual-stack.toml").to_string_lossy(),
    ]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stderr).contains("attach = \"host\""),
        "{}",
        text(&up)
    );
    assert!(lab.namespaces().is_empty());
}

#[test]
fn lab_demo_shows_the_matrix_and_the_membership_change_in_under_a_minute() {
    if !privileged() {
        return;
    }
    let lab = CliLab::new();
    let started = Instant::now();
    let demo = lab.run(&["demo"]);
    let elapsed = started.elapsed();
    let shown = text(&demo);
    assert!(demo.status.success(), "{shown}");
    assert!(
        shown.contains("every cell agrees with the reference evaluator"),
        "{shown}"
    );
    assert!(
        shown.contains("app-2 reaches db-1:3306 because it is a member of app-sg (G3)"),
        "{shown}"
    );
    assert!(shown.contains("enforcing sgw-app2 (app-2)"), "{shown}");
    assert!(
        shown.contains("probes agree with the reference evaluator"),
        "{shown}"
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // It cleans up after itself.
    assert!(lab.namespaces().is_empty());
    assert!(!lab.pin_dir.exists());
}

#[test]
fn lab_up_with_api_serves_the_lab_config_to_the_aws_cli_and_down_stops_it() {
    if !privileged()
        || !sgwall_tests::api::clients_present("the aws CLI", Command::new("aws").arg("--version"))
    {
        return;
    }
    /// The lab edits the config it is given in place: it gets a copy, removed on drop.
    struct Copy(PathBuf);
    impl Drop for Copy {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let lab = CliLab::new();
    let scratch = Copy(std::env::temp_dir().join(unique_name()));
    std::fs::create_dir_all(&scratch.0).expect("scratch dir");
    let config = scratch.0.join("three-tier.toml");
    std::fs::copy(example("three-tier.toml"), &config).expect("config copy");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let up = lab.run(&[
        "up",
        "--config",
        &config.to_string_lossy(),
        "--api",
        &port.to_string(),
    ]);
    assert!(up.status.success(), "{}", text(&up));
    let shown = String::from_utf8_lossy(&up.stdout).into_owned();
    let credentials = shown
        .split_whitespace()
        .find_map(|word| word.strip_prefix("AWS_SHARED_CREDENTIALS_FILE="))
        .unwrap_or_else(|| panic!("no credentials in {shown}"))
        .to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = |args: &[&str]| {
        Command::new("aws")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["--endpoint-url", &endpoint, "--output", "text"])
            .args(args)
            .output()
            .expect("aws")
    };
    let groups = aws(&[
        "ec2",
        "describe-security-groups",
        "--query",
        "SecurityGroups[].GroupName",
    ]);
    assert!(groups.status.success(), "{}", text(&groups));
    assert!(
        String::from_utf8_lossy(&groups.stdout).contains("web-sg"),
        "{}",
        text(&groups)
    );

    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "lab down stops the API"
    );
    assert!(
        !Path::new(&credentials).exists(),
        "and removes its credentials"
    );
    assert!(!lab.state_dir.exists(), "state removed");
}
