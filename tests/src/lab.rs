//! Lab harness for the integration suite: a [`TestLab`] is a `sgwall lab` topology built from a
//! test's config, enforced by a real `sgwall run`, and taken down on drop (panics included).
//! Names carry the harness prefix and the test process id, so a killed run is swept by the
//! next one; the agent is started with a parent-death signal, so it dies with the test.
//!
//! Besides [`Probe`]s, it has the traffic the semantics need and a probe cannot make: long-lived
//! TCP sessions (C4, C6), UDP from fixed ports (C5), large datagrams (H1), raw IP protocols (R3).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sgwall::{
    config,
    lab::{
        Lab, LabSettings, UpOptions,
        matrix::{self, Expectation, Matrix, ProbeOptions},
        topology::{self, Host, HostKind},
    },
    model::Config,
    netns,
    probe::{Outcome, Probe, Service},
    runtime::console::{AgentEvent, Rejection},
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{PinDir, sgwall_bin, unique_name};

/// Test labs keep their state (config, agent log) under here, one directory per lab.
pub const STATE_ROOT: &str = "/run/sgwall-tests";

/// Long enough that a loaded 2-core machine answers an admitted probe well within it (the
/// lab's answers take well under a millisecond); every denied probe costs this much.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A lab that is up, with its agent enforcing; down on drop.
pub struct TestLab {
    lab: Option<Lab>,
    state_dir: PathBuf,
    config_path: PathBuf,
    // Dropped after the lab, whose `sgwall down` empties it.
    pins: PinDir,
}

/// How long the agent may take to report an event (a reload, an interface).
const AGENT_EVENT: Duration = Duration::from_secs(10);

impl TestLab {
    /// Builds the lab for `config` (TOML) and waits until every instance is enforced.
    pub fn up(config: &str) -> Self {
        Self::up_with(config, &[])
    }

    /// [`TestLab::up`], with more `sgwall run` options for the agent.
    pub fn up_with(config: &str, agent_args: &[&str]) -> Self {
        let name = unique_name();
        let state_dir = Path::new(STATE_ROOT).join(&name);
        std::fs::create_dir_all(&state_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
        let config_path = state_dir.join("config.toml");
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let pins = PinDir::new();
        let settings = LabSettings {
            prefix: format!("{name}-"),
            state_dir: state_dir.clone(),
            pin_dir: pins.path().to_path_buf(),
            agent_binary: sgwall_bin(),
            agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
            agent_dies_with_caller: true,
            agent_timeout: Duration::from_secs(60),
        };
        let mut test_lab = TestLab {
            lab: None,
            state_dir: state_dir.clone(),
            config_path: config_path.clone(),
            pins,
        };
        match Lab::up(&settings, &config_path, UpOptions::default()) {
            Ok((lab, _)) => test_lab.lab = Some(lab),
            Err(error) => panic!("lab up: {error}"),
        }
        test_lab
    }

    pub fn lab(&self) -> &Lab {
        self.lab
            .as_ref()
            .unwrap_or_else(|| panic!("the lab is down"))
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        self.lab
            .as_mut()
            .unwrap_or_else(|| panic!("the lab is down"))
    }

    /// The config the agent enforces now.
    pub fn config(&self) -> Config {
        self.lab().config().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn host(&self, name: &str) -> &Host {
        self.lab()
            .topology()
            .host(name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    pub fn namespace(&self, host: &str) -> String {
        self.host(host).namespace.clone()
    }

    /// `host`'s first address of the family.
    pub fn address(&self, host: &str, v6: bool) -> IpAddr {
        self.host(host)
            .address(v6)
            .unwrap_or_else(|| panic!("{host} has no {} address", if v6 { "IPv6" } else { "IPv4" }))
    }

    /// One probe from `from` to `to` (host names) in the family.
    pub fn probe(&self, from: &str, to: &str, service: Service, v6: bool) -> Outcome {
        self.probe_from(from, self.address(from, v6), to, service)
    }

    /// One probe from an explicit source address of `from`.
    pub fn probe_from(&self, from: &str, source: IpAddr, to: &str, service: Service) -> Outcome {
        let probe = Probe {
            source: Some(source),
            destination: self.address(to, source.is_ipv6()),
            service,
            timeout: PROBE_TIMEOUT,
        };
        probe
            .run_in(&self.namespace(from))
            .unwrap_or_else(|e| panic!("probe {from} → {to} {service}: {e}"))
    }

    /// One probe between explicit addresses, sent from `from`'s namespace.
    pub fn probe_to(
        &self,
        from: &str,
        source: IpAddr,
        destination: IpAddr,
        service: Service,
    ) -> Outcome {
        let probe = Probe {
            source: Some(source),
            destination,
            service,
            timeout: PROBE_TIMEOUT,
        };
        probe
            .run_in(&self.namespace(from))
            .unwrap_or_else(|e| panic!("probe {from} → {destination} {service}: {e}"))
    }

    /// What the reference evaluator expects of that probe.
    pub fn expect(&self, from: &str, to: &str, service: Service, v6: bool) -> Expectation {
        matrix::expect(
            &self.config(),
            from,
            self.address(from, v6),
            to,
            self.address(to, v6),
            service,
        )
    }

    /// Probes `from` → `to` and asserts that the evaluator and the network both say `passes`.
    /// A listener is started for TCP and UDP.
    pub fn check(&self, from: &str, to: &str, service: Service, v6: bool, passes: bool) {
        let expected = self.expect(from, to, service, v6);
        let family = if v6 { "v6" } else { "v4" };
        assert_eq!(
            expected.passes, passes,
            "evaluator on {from} → {to} {service} {family}: {}",
            expected.why
        );
        let _listener = self.listen(to, service);
        let observed = self.probe(from, to, service, v6);
        assert_eq!(
            observed.got_through(),
            passes,
            "{from} → {to} {service} {family}: observed {observed}; the evaluator says {}",
            expected.why
        );
    }

    /// A TCP or UDP listener in `host` (none for ICMP).
    pub fn listen(&self, host: &str, service: Service) -> Option<crate::Listener> {
        (service != Service::IcmpEcho).then(|| {
            crate::Listener::start(&self.namespace(host), service)
                .unwrap_or_else(|e| panic!("listener {service} in {host}: {e}"))
        })
    }

    /// The lab probe matrix for chosen sources, destinations and services; asserts that every
    /// cell agrees with the evaluator and returns it for further checks.
    pub fn matrix(&self, sources: &[&str], destinations: &[&str], services: &[Service]) -> Matrix {
        let matrix = self
            .lab()
            .probe_services(
                &self.config(),
                services,
                Some((sources, destinations)),
                ProbeOptions {
                    timeout: PROBE_TIMEOUT,
                    parallelism: 32,
                },
            )
            .unwrap_or_else(|e| panic!("probing: {e}"));
        let disagreements = sgwall::lab::render::disagreement_lines(&matrix);
        assert!(
            disagreements.is_empty(),
            "cells disagree with the evaluator:\n{}\n\n{}",
            disagreements.join("\n"),
            anstream::adapter::strip_str(&sgwall::lab::render::matrix_text(&matrix, 200))
        );
        matrix
    }

    /// Replaces the config and waits until the agent says it reloaded it: the new policy is
    /// in force on return.
    pub fn reconfigure(&mut self, config: &str) {
        config::load_str(config, &self.config_path)
            .unwrap_or_else(|e| panic!("the new config is invalid: {e}"));
        self.lab_mut()
            .write_config(config)
            .unwrap_or_else(|e| panic!("reconfiguring: {e}"));
    }

    /// Replaces the config file only, as an editor saves it (no SIGHUP: the agent's file
    /// watch must see it). Returns the agent log position before, for the `wait_*` methods.
    pub fn replace_config(&mut self, config: &str) -> u64 {
        self.lab_mut()
            .replace_config(config)
            .unwrap_or_else(|e| panic!("replacing the config: {e}"))
    }

    /// Waits for the agent's reload event after log position `since`; a rejection fails.
    pub fn wait_reloaded(&mut self, since: u64) -> AgentEvent {
        self.lab_mut()
            .wait_reloaded(since)
            .unwrap_or_else(|e| panic!("waiting for the reload: {e}"))
    }

    /// Waits for the agent to reject a reload after log position `since`.
    pub fn wait_rejected(&mut self, since: u64) -> Rejection {
        self.wait_event(since, "a rejected reload", |event| match event {
            AgentEvent::ReloadRejected { rejection, .. } => Some(rejection.clone()),
            _ => None,
        })
    }

    /// Waits for an agent event after log position `since` that `wanted` picks.
    pub fn wait_event<T>(
        &mut self,
        since: u64,
        what: &str,
        wanted: impl FnMut(&AgentEvent) -> Option<T>,
    ) -> T {
        self.lab_mut()
            .wait_event(since, what, wanted)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until `interface` is enforced, as the agent reports after log position `since`.
    pub fn wait_enforcing(&mut self, interface: &str, since: u64) -> AgentEvent {
        let mut events = self
            .lab_mut()
            .wait_enforcing(&[interface.to_string()], since)
            .unwrap_or_else(|e| panic!("{e}"));
        events.remove(0)
    }

    /// Waits until the agent's log, after position `since`, holds `text` (a log line of its
    /// own or of the datapath's, not an event).
    pub fn wait_log(&mut self, since: u64, text: &str) {
        let deadline = Instant::now() + AGENT_EVENT;
        let agent = self.lab_mut().agent_mut().unwrap_or_else(|e| panic!("{e}"));
        loop {
            let log = agent.log_since(since).unwrap_or_else(|e| panic!("{e}"));
            if log.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent never logged {text:?} within {AGENT_EVENT:?}; its log ends with:\n{}",
                agent.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent log position: what the agent says from now on is after it.
    pub fn log_position(&self) -> u64 {
        self.lab().log_position()
    }

    pub fn agent_pid(&mut self) -> u32 {
        self.lab_mut()
            .agent_mut()
            .unwrap_or_else(|e| panic!("{e}"))
            .pid
    }

    /// SIGKILL, as a crash would: what the agent pinned keeps enforcing.
    pub fn kill_agent(&mut self) {
        self.lab_mut()
            .kill_agent()
            .unwrap_or_else(|e| panic!("killing the agent: {e}"));
    }

    /// Starts the agent again over the same pins (after a crash, or as an upgrade would) and
    /// waits until it enforces every instance again.
    pub fn restart_agent(&mut self, instance_interfaces: &[&str]) {
        let since = self.log_position();
        let lab = self.lab_mut();
        lab.start_agent()
            .unwrap_or_else(|e| panic!("starting the agent: {e}"));
        let interfaces: Vec<String> = instance_interfaces.iter().map(|i| i.to_string()).collect();
        lab.wait_enforcing(&interfaces, since)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds instance `name` to the running lab as a VM's tap made before the VM starts: the
    /// router-side `interface` exists, down, until [`TestLab::bring_link_up`].
    pub fn add_instance_link_down(
        &mut self,
        name: &str,
        interface: &str,
        addresses: &[IpAddr],
    ) -> Host {
        let host = Host {
            name: name.to_string(),
            kind: HostKind::Instance,
            namespace: topology::namespace_name(&self.lab().state().prefix, name),
            router_interface: interface.to_string(),
            addresses: addresses.to_vec(),
            dhcp: false,
        };
        self.lab_mut()
            .add_hosts_link_down(std::slice::from_ref(&host))
            .unwrap_or_else(|e| panic!("adding {name}: {e}"));
        host
    }

    pub fn bring_link_up(&mut self, host: &Host) {
        self.lab_mut()
            .bring_link_up(host)
            .unwrap_or_else(|e| panic!("bringing {} up: {e}", host.name));
    }

    /// The agent's pin directory.
    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// The config file the agent watches.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Runs `sgwall ARGS --pin-dir PINS` (an inspection command, `down`) and returns its
    /// stdout; a failure fails the test.
    pub fn sgwall(&self, args: &[&str]) -> String {
        let output = std::process::Command::new(sgwall_bin())
            .args(args)
            .arg("--pin-dir")
            .arg(self.pin_dir())
            .output()
            .unwrap_or_else(|e| panic!("running sgwall {args:?}: {e}"));
        assert!(
            output.status.success(),
            "sgwall {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// [`TestLab::sgwall`] of a `--json` command, parsed.
    pub fn sgwall_json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.sgwall(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("sgwall {args:?} is not JSON ({e}): {text}"))
    }

    /// Adds an address to `host`'s interface that the config does not know, with a router
    /// route back to it (for spoofing, I1).
    pub fn add_unconfigured_address(&self, host: &str, address: IpAddr) {
        let (prefix, extra) = if address.is_ipv6() {
            ("128", " nodad")
        } else {
            ("32", "")
        };
        let namespace = self.namespace(host);
        let interface = self.host(host).router_interface.clone();
        sgwall::lab::topology::ip_batch(
            Some(&namespace),
            &[format!("addr add {address}/{prefix} dev eth0{extra}")],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        sgwall::lab::topology::ip_batch(
            Some(self.lab().router_namespace()),
            &[format!("route add {address}/{prefix} dev {interface}")],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take() {
            let report = lab.take_down();
            for problem in report.problems {
                eprintln!("cleanup: {problem}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.state_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("cleanup: removing {}: {e}", self.state_dir.display());
        }
        // Only when no other lab uses it.
        let _ = std::fs::remove_dir(STATE_ROOT);
    }
}

fn socket_in<T: Send + 'static>(namespace: &str, make: impl FnOnce() -> T + Send + 'static) -> T {
    netns::run_in(namespace, make).unwrap_or_else(|e| panic!("in namespace {namespace}: {e}"))
}

/// A TCP server that echoes what each connection sends, until dropped.
pub struct TcpEchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), netns::NetnsError>>>,
}

impl TcpEchoServer {
    pub fn start(namespace: &str, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = netns::spawn_in(namespace, move || {
            let socket =
                Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).and_then(|s| {
                    s.set_only_v6(false)?;
                    s.set_reuse_address(true)?;
                    s.bind(&SockAddr::from(SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        port,
                    )))?;
                    s.listen(16)?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                });
            let listener: std::net::TcpListener = match socket {
                Ok(socket) => {
                    let _ = ready_tx.send(Ok(()));
                    socket.into()
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut connections = Vec::new();
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stop = Arc::clone(&thread_stop);
                        connections.push(std::thread::spawn(move || echo(stream, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for connection in connections {
                let _ = connection.join();
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            other => panic!("TCP echo server on port {port}: {other:?}"),
        }
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An established TCP connection to a [`TcpEchoServer`].
pub struct TcpSession {
    stream: TcpStream,
    sent: u32,
}

impl TcpSession {
    /// Connects from `source` inside `namespace`; `None` when the connection does not complete.
    pub fn connect(
        namespace: &str,
        source: IpAddr,
        destination: IpAddr,
        port: u16,
    ) -> Option<TcpSession> {
        Self::connect_from_port(namespace, SocketAddr::new(source, 0), destination, port)
    }

    /// Like [`TcpSession::connect`], from a chosen source port too.
    pub fn connect_from_port(
        namespace: &str,
        source: SocketAddr,
        destination: IpAddr,
        port: u16,
    ) -> Option<TcpSession> {
        let stream = socket_in(namespace, move || {
            let socket = Socket::new(
                Domain::for_address(SocketAddr::new(destination, port)),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .ok()?;
            socket.set_reuse_address(true).ok()?;
            socket.bind(&source.into()).ok()?;
            socket
                .connect_timeout(&SocketAddr::new(destination, port).into(), PROBE_TIMEOUT)
                .ok()?;
            Some(TcpStream::from(socket))
        })?;
        Some(TcpSession { stream, sent: 0 })
    }

    /// Sends a line and waits (bounded) for its echo: whether the session still carries data
    /// both ways.
    pub fn exchange(&mut self) -> bool {
        self.sent += 1;
        let message = format!("sgwall-session-{}\n", self.sent);
        if self.stream.write_all(message.as_bytes()).is_err() {
            return false;
        }
        let deadline = Instant::now() + PROBE_TIMEOUT * 2;
        let mut received = Vec::new();
        let mut buffer = [0u8; 256];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut buffer) {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    received.extend_from_slice(&buffer[..n]);
                    if received.ends_with(message.as_bytes()) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// A UDP socket bound to a fixed address and port inside a namespace.
pub struct UdpEndpoint {
    socket: UdpSocket,
}

impl UdpEndpoint {
    pub fn bind(namespace: &str, address: IpAddr, port: u16) -> Self {
        let socket = socket_in(namespace, move || {
            UdpSocket::bind(SocketAddr::new(address, port))
        })
        .unwrap_or_else(|e| panic!("binding UDP {address}:{port}: {e}"));
        Self { socket }
    }

    pub fn send_to(&self, payload: &[u8], to: SocketAddr) {
        self.socket
            .send_to(payload, to)
            .unwrap_or_else(|e| panic!("sending to {to}: {e}"));
    }

    /// Waits up to `timeout` for a datagram equal to `payload`; returns its sender.
    pub fn receive(&self, payload: &[u8], timeout: Duration) -> Option<SocketAddr> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 65_536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.socket.recv_from(&mut buffer) {
                Ok((n, from)) if buffer[..n] == *payload => return Some(from),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        None
    }
}

/// Sends a datagram of `length` bytes from `source` in `namespace` to a UDP echo listener and
/// waits for it whole: sent up to three times within the timeout, as the probe does.
pub fn udp_echo(namespace: &str, source: IpAddr, destination: SocketAddr, length: usize) -> bool {
    let endpoint = UdpEndpoint::bind(namespace, source, 0);
    let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
    (0..3).any(|_| {
        endpoint.send_to(&payload, destination);
        endpoint.receive(&payload, PROBE_TIMEOUT).is_some()
    })
}

/// Sends one raw IP datagram of protocol `protocol` from `from_ns` and reports whether a raw
/// socket in `to_ns` received it (IPv4 raw sockets hand over the IP header too).
pub fn raw_ip_delivered(
    from_ns: &str,
    source: IpAddr,
    to_ns: &str,
    destination: IpAddr,
    protocol: u8,
) -> bool {
    let domain = if destination.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let proto = Protocol::from(i32::from(protocol));
    let receiver = socket_in(to_ns, move || Socket::new(domain, Type::RAW, Some(proto)))
        .unwrap_or_else(|e| panic!("raw socket for protocol {protocol}: {e}"));
    let sender = socket_in(from_ns, move || {
        let socket = Socket::new(domain, Type::RAW, Some(proto))?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        Ok::<_, std::io::Error>(socket)
    })
    .unwrap_or_else(|e| panic!("raw socket for protocol {protocol}: {e}"));
    let marker = format!("sgwall-raw-{protocol}-{}", std::process::id());
    let target = SockAddr::from(SocketAddr::new(destination, 0));
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    // Twice, in case the first went while the neighbour was still being resolved.
    for _ in 0..2 {
        if sender.send_to(marker.as_bytes(), &target).is_err() {
            return false;
        }
        let round_end = (Instant::now() + PROBE_TIMEOUT / 2).min(deadline);
        while let Some(left) = round_end.checked_duration_since(Instant::now()) {
            if left.is_zero() || receiver.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let Ok(n) = receiver.recv(&mut buffer) else {
                break;
            };
            // SAFETY: recv initialised the first `n` bytes.
            let data: Vec<u8> = buffer[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if data.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                return true;
            }
        }
    }
    false
}
