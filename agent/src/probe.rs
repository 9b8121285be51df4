//! Reachability probes with real sockets: a TCP connect, a UDP request and reply, an ICMP echo.
//! Each probe is bounded by its timeout and reports what the network did with it.
//!
//! Used by `sgwall lab probe` and by the integration tests; both run them inside namespaces
//! through [`crate::netns`].

use std::{
    io::{ErrorKind, Write as _},
    mem::MaybeUninit,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::{self, NetnsError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The service answered.
    Reached,
    /// The destination host answered that nothing listens there (TCP RST, ICMP port unreachable).
    Refused,
    /// An ICMP error said the destination cannot be reached.
    Unreachable,
    /// Nothing came back within the timeout: the probe or its answer was dropped.
    TimedOut,
}

impl Outcome {
    /// Whether the probe's packets got through to the destination host. A refusal proves they
    /// did: only the destination's own stack answers that way.
    pub fn got_through(self) -> bool {
        matches!(self, Outcome::Reached | Outcome::Refused)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Reached => "reached",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::TimedOut => "timed out",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "protocol", content = "port")]
pub enum Service {
    Tcp(u16),
    Udp(u16),
    IcmpEcho,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Service::Tcp(port) => write!(f, "tcp/{port}"),
            Service::Udp(port) => write!(f, "udp/{port}"),
            Service::IcmpEcho => f.write_str("icmp"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the listener thread for {0} stopped before it was ready")]
    ListenerGone(Service),
    #[error("ICMP echo is answered by the kernel and needs no listener")]
    IcmpNeedsNoListener,
}

fn io_error(what: &'static str) -> impl FnOnce(std::io::Error) -> ProbeError {
    move |source| ProbeError::Io { what, source }
}

/// One probe: from `source` (or the kernel's choice) to `destination`.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub source: Option<IpAddr>,
    pub destination: IpAddr,
    pub service: Service,
    pub timeout: Duration,
}

impl Probe {
    /// Runs the probe in the calling thread's network namespace.
    pub fn run(&self) -> Result<Outcome, ProbeError> {
        match self.service {
            Service::Tcp(port) => self.tcp(port),
            Service::Udp(port) => self.udp(port),
            Service::IcmpEcho => self.icmp_echo(),
        }
    }

    /// Runs the probe inside the named namespace.
    pub fn run_in(&self, namespace: &str) -> Result<Outcome, ProbeError> {
        let probe = *self;
        netns::run_in(namespace, move || probe.run())?
    }

    fn socket(&self, kind: Type, protocol: Protocol) -> Result<Socket, ProbeError> {
        let socket = Socket::new(Domain::for_address(self.target(0)), kind, Some(protocol))
            .map_err(io_error("creating a probe socket"))?;
        if let Some(source) = self.source {
            socket
                .bind(&SocketAddr::new(source, 0).into())
                .map_err(io_error("binding the probe source address"))?;
        }
        Ok(socket)
    }

    fn target(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.destination, port)
    }

    fn tcp(&self, port: u16) -> Result<Outcome, ProbeError> {
        let socket = self.socket(Type::STREAM, Protocol::TCP)?;
        match socket.connect_timeout(&self.target(port).into(), self.timeout) {
            Ok(()) => Ok(Outcome::Reached),
            Err(error) => Ok(classify_error(&error)),
        }
    }

    fn udp(&self, port: u16) -> Result<Outcome, ProbeError> {
        let socket = self.socket(Type::DGRAM, Protocol::UDP)?;
        socket
            .connect(&self.target(port).into())
            .map_err(io_error("connecting the UDP probe socket"))?;
        let socket: std::net::UdpSocket = socket.into();
        let nonce = next_nonce();
        let request = format!("sgwall-probe {nonce}");
        let deadline = Instant::now() + self.timeout;
        // Resend a few times: a datagram can be lost while neighbours are still being resolved.
        let resend_every = self.timeout / 3;
        let mut buffer = [0u8; 256];
        while Instant::now() < deadline {
            if let Err(error) = socket.send(request.as_bytes()) {
                return Ok(classify_error(&error));
            }
            let round_end = (Instant::now() + resend_every).min(deadline);
            while let Some(left) = round_end.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                socket
                    .set_read_timeout(Some(left))
                    .map_err(io_error("setting the UDP probe timeout"))?;
                match socket.recv(&mut buffer) {
                    Ok(len) if buffer[..len] == *request.as_bytes() => {
                        return Ok(Outcome::Reached);
                    }
                    Ok(_) => continue,
                    Err(error) if is_timeout(&error) => break,
                    Err(error) => return Ok(classify_error(&error)),
                }
            }
        }
        Ok(Outcome::TimedOut)
    }

    fn icmp_echo(&self) -> Result<Outcome, ProbeError> {
        let v6 = self.destination.is_ipv6();
        let protocol = if v6 {
            Protocol::ICMPV6
        } else {
            Protocol::ICMPV4
        };
        let socket = self.socket(Type::RAW, protocol)?;
        let identifier = next_nonce();
        let sequence = 1u16;
        let request_type = if v6 { 128 } else { 8 };
        let reply_type = if v6 { 129 } else { 0 };
        const PAYLOAD: &[u8] = b"sgwall-echo-probe";
        let mut request = [0u8; 8 + PAYLOAD.len()];
        request[0] = request_type;
        request[4..6].copy_from_slice(&identifier.to_be_bytes());
        request[6..8].copy_from_slice(&sequence.to_be_bytes());
        request[8..].copy_from_slice(PAYLOAD);
        if !v6 {
            // The kernel fills in the ICMPv6 checksum itself; ICMPv4 is ours to compute.
            let checksum = internet_checksum(&request);
            request[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        if let Err(error) = socket.send_to(&request, &self.target(0).into()) {
            return Ok(classify_error(&error));
        }

        let deadline = Instant::now() + self.timeout;
        let mut buffer = [MaybeUninit::<u8>::uninit(); 1500];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(io_error("setting the ICMP probe timeout"))?;
            let (len, from) = match socket.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(error) if is_timeout(&error) => break,
                Err(error) => return Ok(classify_error(&error)),
            };
            // SAFETY: recv_from initialised the first `len` bytes.
            let packet: Vec<u8> = buffer[..len]
                .iter()
                .map(|byte| unsafe { byte.assume_init() })
                .collect();
            // Raw IPv4 sockets hand over the IP header too; IPv6 ones start at ICMPv6.
            let icmp = if v6 {
                &packet[..]
            } else {
                let header_len = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
                packet.get(header_len..).unwrap_or(&[])
            };
            if icmp.len() < 8 {
                continue;
            }
            let echo_matches = |body: &[u8]| {
                body.len() >= 8
                    && body[4..6] == identifier.to_be_bytes()
                    && body[6..8] == sequence.to_be_bytes()
            };
            if icmp[0] == reply_type
                && echo_matches(icmp)
                && from.as_socket().map(|a| a.ip()) == Some(self.destination)
            {
                return Ok(Outcome::Reached);
            }
            if filter_common::is_icmp_error(
                if v6 {
                    filter_common::PROTO_ICMPV6
                } else {
                    filter_common::PROTO_ICMP
                },
                icmp[0],
            ) && embedded_echo_matches(icmp, v6, &echo_matches)
            {
                return Ok(Outcome::Unreachable);
            }
        }
        Ok(Outcome::TimedOut)
    }
}

/// Whether an ICMP error carries our echo request (so the error is about this probe).
fn embedded_echo_matches(icmp: &[u8], v6: bool, echo_matches: &dyn Fn(&[u8]) -> bool) -> bool {
    let inner = &icmp[8..];
    let inner_header = if v6 {
        40
    } else {
        usize::from(inner.first().copied().unwrap_or(0) & 0x0f) * 4
    };
    inner.get(inner_header..).is_some_and(echo_matches)
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn classify_error(error: &std::io::Error) -> Outcome {
    match error.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Outcome::Unreachable,
        _ if error.raw_os_error() == Some(libc::EHOSTUNREACH) => Outcome::Unreachable,
        _ => Outcome::TimedOut,
    }
}

fn next_nonce() -> u16 {
    static COUNTER: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16) ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(7)
}

/// RFC 1071 checksum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP or UDP service answering probes inside a namespace until dropped.
///
/// TCP: accepts and closes. UDP: echoes each datagram back. Bound to the IPv6 wildcard with
/// IPv4 mapped in, so one listener serves both families.
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), NetnsError>>>,
}

impl Listener {
    pub fn start(namespace: &str, service: Service) -> Result<Self, ProbeError> {
        if service == Service::IcmpEcho {
            return Err(ProbeError::IcmpNeedsNoListener);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = netns::spawn_in(namespace, move || {
            let socket = match bind_wildcard(service) {
                Ok(socket) => {
                    let _ = ready_tx.send(Ok(()));
                    socket
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            serve(socket, service, &thread_stop);
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(Self {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => match thread.join() {
                Ok(Err(netns_error)) => Err(netns_error.into()),
                _ => Err(ProbeError::ListenerGone(service)),
            },
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often a listener looks at its stop flag.
const LISTENER_POLL: Duration = Duration::from_millis(50);

fn bind_wildcard(service: Service) -> Result<Socket, ProbeError> {
    let (kind, protocol, port) = match service {
        Service::Tcp(port) => (Type::STREAM, Protocol::TCP, port),
        Service::Udp(port) => (Type::DGRAM, Protocol::UDP, port),
        Service::IcmpEcho => return Err(ProbeError::IcmpNeedsNoListener),
    };
    let socket =
        Socket::new(Domain::IPV6, kind, Some(protocol)).map_err(io_error("creating a listener"))?;
    socket
        .set_only_v6(false)
        .map_err(io_error("enabling IPv4 on the listener"))?;
    socket
        .set_reuse_address(true)
        .map_err(io_error("setting SO_REUSEADDR"))?;
    let address = SockAddr::from(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    socket
        .bind(&address)
        .map_err(io_error("binding the listener"))?;
    if kind == Type::STREAM {
        socket.listen(128).map_err(io_error("listening"))?;
    }
    socket
        .set_read_timeout(Some(LISTENER_POLL))
        .map_err(io_error("setting the listener poll interval"))?;
    socket
        .set_nonblocking(kind == Type::STREAM)
        .map_err(io_error("making the listener non-blocking"))?;
    Ok(socket)
}

fn serve(socket: Socket, service: Service, stop: &AtomicBool) {
    // Room for the largest UDP datagram: the lab echoes fragmented ones (H1) whole.
    let mut buffer = vec![MaybeUninit::<u8>::uninit(); 65_536];
    while !stop.load(Ordering::Relaxed) {
        match service {
            Service::Tcp(_) => match socket.accept() {
                Ok((connection, _)) => {
                    let mut stream: std::net::TcpStream = connection.into();
                    let _ = stream.write_all(b"sgwall\n");
                }
                Err(_) => std::thread::sleep(LISTENER_POLL),
            },
            Service::Udp(_) => {
                if let Ok((len, from)) = socket.recv_from(&mut buffer) {
                    // SAFETY: recv_from initialised the first `len` bytes.
                    let data: Vec<u8> = buffer[..len]
                        .iter()
                        .map(|byte| unsafe { byte.assume_init() })
                        .collect();
                    let _ = socket.send_to(&data, &from);
                }
            }
            Service::IcmpEcho => return,
        }
    }
}
