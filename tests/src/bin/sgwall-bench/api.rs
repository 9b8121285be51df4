//! API call to enforcement (issue 14): a real boto3 client calls AuthorizeSecurityGroupIngress
//! on a real `sgwall api` over the config a real `sgwall run` follows; the time runs from just
//! before the call until the first UDP datagram the new rule admits reaches the server's socket
//! (sent from the client end every 0.5 ms). Each rule is revoked by id before the next call, and
//! every call admits a fresh source port (an admitted flow stays tracked, C4).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    process::{ChildStdin, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sgwall_tests::{api::ApiServer, packet::L4};

use crate::{
    Mode,
    control::Watched,
    e2e::{self, CLIENT, SERVER},
    report::TargetRow,
    stats::{Summary, percentile},
};

pub struct Params {
    pub calls: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        Self {
            calls: match mode {
                Mode::Full => 1_000,
                Mode::Quick => 100,
                Mode::Smoke => 3,
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ApiResult {
    pub calls: usize,
    pub rules: usize,
    /// Milliseconds from the call to its answer (boto3's own overhead included).
    pub answer_ms: Summary,
    pub answer_ms_p99: f64,
    /// Milliseconds from the call to the first admitted packet.
    pub enforced_ms: Summary,
    pub enforced_ms_p50: f64,
    pub enforced_ms_p99: f64,
}

/// The client: one boto3 process for every call, so Python's start is not measured. Times are
/// CLOCK_MONOTONIC nanoseconds, the clock `Instant` reads too.
const CLIENT_SCRIPT: &str = r#"
import os, sys, time, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["SGWALL_ENDPOINT"])
group, cidr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ec2.describe_security_groups(GroupNames=[group])
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "authorize":
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        answer = ec2.authorize_security_group_ingress(GroupName=group, IpPermissions=[
            {"IpProtocol": "udp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}])
        t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        print(t0, t1, answer["SecurityGroupRules"][0]["SecurityGroupRuleId"], flush=True)
    elif words[0] == "revoke":
        ec2.revoke_security_group_ingress(GroupName=group, SecurityGroupRuleIds=[words[1]])
        print("revoked", flush=True)
"#;

struct Client {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    child: std::process::Child,
}

impl Client {
    fn ask(&mut self, line: &str) -> Result<String> {
        writeln!(self.stdin, "{line}")?;
        self.answer()
    }

    fn answer(&mut self) -> Result<String> {
        let mut answer = String::new();
        self.stdout.read_line(&mut answer)?;
        if answer.is_empty() {
            bail!("the boto3 client ended (see its stderr above)");
        }
        Ok(answer.trim().to_string())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn monotonic_ns() -> Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

/// The `Instant` of a CLOCK_MONOTONIC reading taken by another process.
fn instant_of(ns: u64) -> Result<Instant> {
    let ago = monotonic_ns()?.saturating_sub(ns);
    Instant::now()
        .checked_sub(Duration::from_nanos(ago))
        .context("a monotonic time from before this process could count")
}

pub fn run(params: &Params) -> Result<ApiResult> {
    let (watched, _open, closed) = Watched::start_closed()?;
    let api = ApiServer::start(&watched.path);
    let group = closed.groups[0].name.clone();
    let mut command = api.python_command(
        CLIENT_SCRIPT,
        &[&group, &format!("{CLIENT}/32"), &e2e::UDP_PORT.to_string()],
    );
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the boto3 client")?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("no pipes to the boto3 client");
    };
    let mut client = Client {
        stdin,
        stdout: BufReader::new(stdout),
        child,
    };
    if client.answer()? != "ready" {
        bail!("the boto3 client did not start");
    }
    let mut answer_ms = Vec::new();
    let mut enforced_ms = Vec::new();
    for n in 0..params.calls {
        let frame = watched.topology.frame(
            CLIENT,
            SERVER,
            L4::udp(20_000 + (n % 40_000) as u16, e2e::UDP_PORT),
        );
        let reply = client.ask("authorize")?;
        let words: Vec<&str> = reply.split_whitespace().collect();
        let [t0, t1, rule] = words[..] else {
            bail!("the boto3 client answered {reply:?}");
        };
        let (t0, t1): (u64, u64) = (t0.parse()?, t1.parse()?);
        enforced_ms.push(
            watched
                .until_admitted(&frame, instant_of(t0)?)?
                .as_secs_f64()
                * 1e3,
        );
        answer_ms.push(t1.saturating_sub(t0) as f64 / 1e6);
        if client.ask(&format!("revoke {rule}"))? != "revoked" {
            bail!("revoking {rule} failed");
        }
        // Let the revocation's reload land before the next call is timed.
        std::thread::sleep(Duration::from_millis(400));
        watched.drain();
        if n % 50 == 0 || n + 1 == params.calls {
            eprintln!(
                "  api: call {}/{}: {:.0} ms to enforcement, {:.0} ms to the answer",
                n + 1,
                params.calls,
                enforced_ms.last().copied().unwrap_or_default(),
                answer_ms.last().copied().unwrap_or_default()
            );
        }
    }
    drop(client);
    drop(api);
    watched.stop();
    Ok(ApiResult {
        calls: params.calls,
        rules: closed.rules_of(&closed.instances[0]).len(),
        answer_ms_p99: percentile(&answer_ms, 99.0),
        answer_ms: Summary::of(&answer_ms),
        enforced_ms_p50: percentile(&enforced_ms, 50.0),
        enforced_ms_p99: percentile(&enforced_ms, 99.0),
        enforced_ms: Summary::of(&enforced_ms),
    })
}

pub fn fragment(result: &ApiResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::from("### EC2 API call to enforcement\n\n");
    out.push_str(header);
    let _ = writeln!(
        out,
        "A boto3 client calls AuthorizeSecurityGroupIngress on `sgwall api` (file store: the \
         config `sgwall run` follows, {} rules on the interface) {} times; each time a UDP \
         frame the new rule admits is sent from the client end every 0.5 ms until the server's \
         socket gets one, then the rule is revoked by id. Milliseconds. The agent waits 150 ms \
         (`CONFIG_SETTLE`) after a save before it reloads. The etcd store does not exist yet.\n",
        result.rules, result.calls
    );
    let _ = writeln!(out, "| | p50 | p99 | median (min–max) |\n|---|---|---|---|");
    let _ = writeln!(
        out,
        "| call answered (boto3's time included) | {:.0} | {:.0} | {} |",
        result.answer_ms.median,
        result.answer_ms_p99,
        result.answer_ms.show(0)
    );
    let _ = writeln!(
        out,
        "| first packet admitted | {:.0} | {:.0} | {} |\n",
        result.enforced_ms_p50,
        result.enforced_ms_p99,
        result.enforced_ms.show(0)
    );
    let targets = vec![TargetRow {
        target: "EC2 API Authorize to enforcement, file store: p99 ≤ 250 ms".into(),
        measured: format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            result.enforced_ms_p50, result.enforced_ms_p99
        ),
        met: Some(result.enforced_ms_p99 <= 250.0),
    }];
    (out, targets)
}
