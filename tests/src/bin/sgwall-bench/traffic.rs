//! Traffic for the end-to-end figures: a raw frame blaster (AF_PACKET with `sendmmsg`), UDP
//! counters of a namespace, a TCP connection-rate loop and iperf3.
//!
//! The blaster writes prebuilt Ethernet frames straight to the client's veth
//! (`PACKET_QDISC_BYPASS`), so the sender's own stack costs almost nothing and many distinct
//! flows are cheap to produce. On a veth the receive side runs in softirq on the sending CPU,
//! so a filter's per-packet cost shows up directly in the rate the sender achieves.

use std::{
    io::Read as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use sgwall::netns;

/// A TX-only packet socket bound to one interface of the namespace it was created in.
pub struct Blaster {
    fd: OwnedFd,
}

impl Blaster {
    /// Creates the socket in namespace `ns`, bound to `interface`.
    pub fn new(ns: &str, interface: &str) -> Result<Self> {
        let interface = interface.to_string();
        netns::run_in(ns, move || Self::here(&interface))?
    }

    fn here(interface: &str) -> Result<Self> {
        let name = std::ffi::CString::new(interface)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {interface}");
        }
        // Protocol 0: the socket receives nothing, it only sends.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer and length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
        }
        // SAFETY: zeroed sockaddr_ll is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = ifindex as i32;
        // SAFETY: `address` is a sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("binding the packet socket");
        }
        Ok(Self { fd })
    }

    /// Sends one frame.
    pub fn send_one(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: a valid buffer of the given length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("send on the packet socket");
        }
        Ok(())
    }

    /// Sends `frames` round-robin in batches until `duration` has passed; returns the frames
    /// the kernel accepted and the time it took.
    pub fn blast(&self, frames: &[Vec<u8>], duration: Duration) -> Result<(u64, Duration)> {
        const BATCH: usize = 64;
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: a zeroed mmsghdr is valid (null name, no control data).
        let mut headers: Vec<libc::mmsghdr> = (0..iovecs.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()) {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        let started = Instant::now();
        let mut sent = 0u64;
        let mut at = 0usize;
        while started.elapsed() < duration {
            let count = BATCH.min(headers.len() - at);
            // SAFETY: `headers[at..at + count]` point at live iovecs over live frames.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    headers.as_mut_ptr().add(at),
                    count as u32,
                    0,
                )
            };
            if rc < 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::ENOBUFS) {
                    continue;
                }
                return Err(error).context("sendmmsg");
            }
            sent += rc as u64;
            at = (at + rc as usize) % headers.len();
        }
        Ok((sent, started.elapsed()))
    }
}

/// UDP counters of a namespace (`/proc/net/snmp`, which is per network namespace).
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub no_ports: u64,
    pub in_errors: u64,
}

impl UdpCounters {
    /// Datagrams that reached UDP: delivered, refused for want of a socket, or dropped at a
    /// full socket buffer. All of them got through any filter in front.
    pub fn reached_udp(&self) -> u64 {
        self.in_datagrams + self.no_ports + self.in_errors
    }

    pub fn read(ns: &str) -> Result<Self> {
        let text = netns::run_in(ns, || std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            bail!("no Udp lines in /proc/net/snmp");
        };
        let mut counters = UdpCounters::default();
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let value: u64 = value.parse().unwrap_or(0);
            match name {
                "InDatagrams" => counters.in_datagrams = value,
                "NoPorts" => counters.no_ports = value,
                "InErrors" => counters.in_errors = value,
                _ => {}
            }
        }
        Ok(counters)
    }
}

/// Opens `count` UDP flows from `client_ns` to a server socket in `server_ns`, each answered
/// once, so every conntrack along the way holds them as established. Returns the client ports
/// and the server socket (keep it open: a closed port would answer with ICMP instead).
pub fn establish_udp_flows(
    client_ns: &str,
    client: Ipv4Addr,
    server_ns: &str,
    server: SocketAddr,
    count: u16,
    first_port: u16,
) -> Result<(Vec<u16>, UdpSocket)> {
    let socket = netns::run_in(server_ns, move || UdpSocket::bind(server))??;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let clients: Vec<UdpSocket> = netns::run_in(client_ns, move || {
        (0..count)
            .map(|k| {
                let socket = UdpSocket::bind(SocketAddr::from((client, first_port + k)))?;
                socket.connect(server)?;
                socket.set_read_timeout(Some(Duration::from_millis(500)))?;
                Ok(socket)
            })
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    let mut buffer = [0u8; 64];
    for client in &clients {
        let mut answered = false;
        for _ in 0..5 {
            client.send(b"hello")?;
            if let Ok((_, from)) = socket.recv_from(&mut buffer) {
                socket.send_to(b"hello back", from)?;
                if client.recv(&mut buffer).is_ok() {
                    answered = true;
                    break;
                }
            }
        }
        if !answered {
            bail!(
                "UDP flow from port {:?} was not answered",
                client.local_addr()
            );
        }
    }
    socket.set_nonblocking(true)?;
    Ok(((0..count).map(|k| first_port + k).collect(), socket))
}

/// New TCP connections per second from `client_ns` to `server`: `workers` threads each
/// connect, wait for the server's close, close, and go again until `duration` has passed.
/// Returns (completed, failed, elapsed).
pub fn connection_rate(
    client_ns: &str,
    server_ns: &str,
    server: SocketAddr,
    workers: usize,
    duration: Duration,
) -> Result<(u64, u64, Duration)> {
    let listener = netns::run_in(server_ns, move || TcpListener::bind(server))??;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let fd = listener.as_raw_fd();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    // The server closes first, so the TIME_WAIT state stays on its side and
                    // client ports free up at once.
                    Ok((stream, _)) => drop(stream),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        let mut poll = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd.
                        unsafe { libc::poll(&mut poll, 1, 20) };
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let completed = completed.clone();
            let failed = failed.clone();
            netns::spawn_in(client_ns, move || {
                let mut buffer = [0u8; 16];
                while started.elapsed() < duration {
                    match TcpStream::connect_timeout(&server, Duration::from_millis(500)) {
                        Ok(mut stream) => {
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                            match stream.read(&mut buffer) {
                                Ok(0) => {
                                    completed.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = acceptor.join();
    Ok((
        completed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        elapsed,
    ))
}

/// An iperf3 server in a namespace, killed on drop.
pub struct Iperf3Server {
    child: Child,
}

impl Iperf3Server {
    pub fn start(ns: &str, port: u16) -> Result<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?;
        // iperf3 needs a moment to listen.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { child })
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One iperf3 TCP run; returns the receiver's bits per second.
pub fn iperf3_tcp(ns: &str, server: Ipv4Addr, port: u16, seconds: u32) -> Result<f64> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "iperf3",
            "-c",
            &server.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &seconds.to_string(),
            "-J",
        ])
        .output()
        .context("running iperf3 -c")?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&output.stderr)))?;
    if let Some(error) = json.get("error") {
        bail!("iperf3: {error}");
    }
    json.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .context("iperf3 JSON has no end.sum_received.bits_per_second")
}
