//! A real `sgwall api` over a lab's config, and the real clients that drive it: the `aws` CLI,
//! boto3 (a Python script) and Terraform. The server and every client die with the test.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::{in_ci, sgwall_bin, unique_name};

pub const ACCESS_KEY: &str = "AKIDSGWALLTEST";
pub const SECRET_KEY: &str = "sgwall-test-secret";
pub const REGION: &str = "us-east-1";
/// No client call may hang a test: SDKs retry a refused or unavailable endpoint with backoff
/// for many minutes. Each client runs under coreutils' `timeout`.
const CLIENT_TIMEOUT: &str = "240";

/// `program` under `timeout`, killed (and reported as exit status 124) when it runs too long.
fn bounded(program: &str) -> Command {
    let mut command = Command::new("timeout");
    command.args(["--kill-after=10", CLIENT_TIMEOUT, program]);
    command
}

/// `sgwall api` on a free loopback port, killed on drop.
pub struct ApiServer {
    child: Child,
    pub endpoint: String,
    /// Credentials file, client configs and scratch files.
    pub dir: PathBuf,
}

impl ApiServer {
    pub fn start(config: &Path) -> Self {
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let credentials = dir.join("credentials");
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
            ),
        )
        .expect("credentials");
        let mut command = Command::new(sgwall_bin());
        command
            .args(["api", "--listen", "127.0.0.1:0", "--credentials"])
            .arg(&credentials)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("starting sgwall api");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let Some(endpoint) = line.trim().strip_prefix("sgwall api: listening on ") else {
            let _ = child.kill();
            panic!("sgwall api did not start: {line:?}");
        };
        Self {
            endpoint: endpoint.to_string(),
            child,
            dir,
        }
    }

    fn client_env(&self, command: &mut Command) {
        command
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.join("credentials"))
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SGWALL_ENDPOINT", &self.endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }

    /// `aws ec2 ARGS --output text` against this endpoint.
    pub fn aws(&self, args: &[&str]) -> Output {
        let mut command = bounded("aws");
        self.client_env(&mut command);
        command
            .args(["--endpoint-url", &self.endpoint, "--output", "text"])
            .args(args);
        command.output().expect("running the aws CLI")
    }

    /// `aws ARGS` that must succeed; its trimmed stdout.
    pub fn aws_ok(&self, args: &[&str]) -> String {
        let output = self.aws(args);
        assert!(
            output.status.success(),
            "aws {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `aws ARGS` signed with the right access key and a wrong secret.
    pub fn aws_forged(&self, args: &[&str]) -> Output {
        let mut command = bounded("aws");
        self.client_env(&mut command);
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .args(["--endpoint-url", &self.endpoint, "--output", "text"])
            .args(args);
        command.output().expect("running the aws CLI")
    }

    /// Runs a Python script (boto3) with the endpoint in `SGWALL_ENDPOINT`; its output.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        let mut command = bounded("python3");
        self.client_env(&mut command);
        command.arg("-c").arg(script).args(args);
        command.output().expect("running python3")
    }

    /// A long-lived Python client (the benchmark's), with the same environment and no time
    /// bound: its owner kills it.
    pub fn python_command(&self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new("python3");
        self.client_env(&mut command);
        command.arg("-c").arg(script).args(args);
        command
    }

    /// A `terraform` command in `workdir`, with a CLI config naming the provider mirror.
    pub fn terraform(&self, workdir: &Path, args: &[&str]) -> Output {
        let mut command = bounded("terraform");
        self.client_env(&mut command);
        command
            .current_dir(workdir)
            .env("TF_CLI_CONFIG_FILE", self.dir.join("terraform.tfrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .args(args)
            .args(["-input=false", "-no-color"]);
        command.output().expect("running terraform")
    }

    /// Writes the Terraform CLI config: providers from the local filesystem mirror only.
    pub fn write_terraform_cli_config(&self, mirror: &Path) {
        std::fs::write(
            self.dir.join("terraform.tfrc"),
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .expect("terraform CLI config");
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the real clients are here. Missing ones fail under CI (setup installs them) and are
/// reported, never silently passed, elsewhere.
pub fn clients_present(what: &str, check: &mut Command) -> bool {
    let present = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    match (present, in_ci()) {
        (true, _) => true,
        (false, true) => panic!("{what} is missing under CI=true: run cargo xtask setup"),
        (false, false) => {
            eprintln!("SKIPPED (not a pass): {what} is missing; cargo xtask setup installs it");
            false
        }
    }
}
