//! `sgwall lab up --api PORT`: a `sgwall api` over the lab's config, so the `aws` CLI, boto3
//! and Terraform drive the lab. It runs in the background with its own session like the
//! agent; its pid, log and credentials sit in the lab's state directory, and `lab down` stops
//! it and removes them.

use std::{
    fs::OpenOptions,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{LabError, LabSettings, io_error};

const PID_FILE: &str = "api.pid";
const LOG_FILE: &str = "api.log";
const CREDENTIALS_FILE: &str = "api-credentials";
/// The access key of the credentials a lab makes for itself.
pub const LAB_ACCESS_KEY: &str = "AKIDSGWALLLAB";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running lab API.
#[derive(Clone, Debug)]
pub struct LabApi {
    pub pid: u32,
    pub endpoint: String,
    pub credentials: PathBuf,
    pub log: PathBuf,
}

/// Writes credentials with a fresh random secret (readable by root only).
fn make_credentials(path: &Path) -> Result<(), LabError> {
    let mut secret = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut secret))
        .map_err(io_error("reading", Path::new("/dev/urandom")))?;
    let text = format!(
        "# Made by `sgwall lab up --api`; removed by `sgwall lab down`.\n[default]\naws_access_key_id = {LAB_ACCESS_KEY}\naws_secret_access_key = {}\n",
        hex::encode(secret)
    );
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_error("creating", path))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io_error("writing", path))
}

/// Starts `sgwall api --listen 127.0.0.1:PORT` over `config` and waits until it listens.
pub fn start(
    settings: &LabSettings,
    config: &Path,
    port: u16,
    credentials: Option<&Path>,
) -> Result<LabApi, LabError> {
    let state_dir = &settings.state_dir;
    let credentials = match credentials {
        Some(path) => path.to_path_buf(),
        None => {
            let path = state_dir.join(CREDENTIALS_FILE);
            make_credentials(&path)?;
            path
        }
    };
    let log_path = state_dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log_path)
        .map_err(io_error("creating", &log_path))?;
    let log_for_stderr = log.try_clone().map_err(io_error("opening", &log_path))?;
    let mut command = Command::new(&settings.agent_binary);
    command
        .args([
            "api",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--credentials",
        ])
        .arg(&credentials)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);
    super::agent::detach(&mut command, settings.agent_dies_with_caller);
    let mut child = command
        .spawn()
        .map_err(io_error("starting", &settings.agent_binary))?;
    let pid = child.id();
    let pid_path = state_dir.join(PID_FILE);
    std::fs::write(&pid_path, pid.to_string()).map_err(io_error("writing", &pid_path))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(endpoint) = text
            .lines()
            .find_map(|line| line.strip_prefix("sgwall api: listening on "))
        {
            return Ok(LabApi {
                pid,
                endpoint: endpoint.trim().to_string(),
                credentials,
                log: log_path,
            });
        }
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_file(&pid_path);
            return Err(LabError::Api(format!(
                "sgwall api did not start listening on 127.0.0.1:{port}; its log ({}) says:\n{}",
                log_path.display(),
                text.trim_end()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the lab's API, if one runs, and removes its files. Problems are returned as text.
pub fn stop(state_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let pid_path = state_dir.join(PID_FILE);
    // Only a process that is still `sgwall api` (a stale pid file may name another by now).
    let is_api = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"api"))
    };
    if let Some(pid) = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| is_api(*pid))
    {
        let pid = Pid::from_raw(pid);
        if kill(pid, Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while crate::process::alive(pid.as_raw().unsigned_abs()) && Instant::now() < deadline {
                // Reaps it when this process is its parent (`lab up` then `lab down` in tests).
                let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                std::thread::sleep(Duration::from_millis(20));
            }
            if crate::process::alive(pid.as_raw().unsigned_abs()) {
                let _ = kill(pid, Signal::SIGKILL);
                problems.push(format!("sgwall api (pid {pid}) ignored SIGTERM: killed"));
            }
        }
    }
    for name in [PID_FILE, LOG_FILE, CREDENTIALS_FILE] {
        let path = state_dir.join(name);
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("removing {}: {error}", path.display()));
        }
    }
    problems
}
