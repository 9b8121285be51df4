//! Floods for the worst-day tests (C6, I1): IPv4 packets written whole through a raw socket
//! (`IPPROTO_RAW` implies `IP_HDRINCL`), so the source address is whatever the test says,
//! spoofed included. Every flood is bounded in count and in time, and paced so that two cores
//! still run the rest of the test.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sgwall::netns;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::packet::{IpPacket, L4, strip_ethernet};

/// What a flood sends: `count` packets over `duration`, packet `n` made by `packet(n)`.
pub struct Flood {
    pub count: u32,
    pub duration: Duration,
}

/// A flood running on its own thread in a namespace; `join` waits for it and returns how many
/// packets the kernel took.
pub struct RunningFlood {
    thread: Option<JoinHandle<Result<u32, netns::NetnsError>>>,
}

impl RunningFlood {
    pub fn join(mut self) -> u32 {
        self.wait()
    }

    fn wait(&mut self) -> u32 {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(sent))) => sent,
            Some(Ok(Err(e))) => panic!("flood: {e}"),
            Some(Err(_)) => panic!("the flood thread panicked"),
            None => 0,
        }
    }
}

impl Drop for RunningFlood {
    fn drop(&mut self) {
        // A flood always ends by itself (bounded count and time): wait for it, so no thread
        // outlives the namespace it sends from.
        if self.thread.is_some() && !std::thread::panicking() {
            self.wait();
        }
    }
}

impl Flood {
    /// Starts sending from namespace `namespace`. `packet(n)` returns an IPv4 datagram (IP
    /// header first); its destination address is where the kernel routes it.
    pub fn start(
        &self,
        namespace: &str,
        packet: impl Fn(u32) -> Vec<u8> + Send + 'static,
    ) -> RunningFlood {
        let count = self.count;
        let duration = self.duration;
        let thread = netns::spawn_in(namespace, move || {
            let Ok(socket) = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))) else {
                return 0;
            };
            let started = Instant::now();
            let deadline = started + duration + Duration::from_secs(5);
            let mut sent = 0;
            for n in 0..count {
                // Paced: packet n leaves no earlier than n/count of the way through.
                let due = started + duration.mul_f64(f64::from(n) / f64::from(count.max(1)));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if Instant::now() > deadline {
                    break;
                }
                let datagram = packet(n);
                let Some(destination) = ipv4_destination(&datagram) else {
                    continue;
                };
                let target = SockAddr::from(SocketAddr::new(IpAddr::V4(destination), 0));
                if socket.send_to(&datagram, &target).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        RunningFlood {
            thread: Some(thread),
        }
    }
}

fn ipv4_destination(datagram: &[u8]) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = datagram.get(16..20)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

/// The `n`th address of a /16 flood range, skipping .0 and .255 of each /24.
pub fn spoofed_source(range: [u8; 2], n: u32) -> Ipv4Addr {
    let host = n % (254 * 256);
    Ipv4Addr::new(
        range[0],
        range[1],
        (host / 254) as u8,
        (host % 254 + 1) as u8,
    )
}

/// A TCP SYN from `source`, as an IPv4 datagram with valid checksums.
pub fn syn(source: Ipv4Addr, source_port: u16, destination: Ipv4Addr, port: u16) -> Vec<u8> {
    ip_datagram(
        source,
        destination,
        L4::tcp(source_port, port, filter_common::TCP_SYN),
    )
}

/// A UDP datagram from `source`, with valid checksums.
pub fn udp(source: Ipv4Addr, source_port: u16, destination: Ipv4Addr, port: u16) -> Vec<u8> {
    ip_datagram(source, destination, L4::udp(source_port, port))
}

fn ip_datagram(source: Ipv4Addr, destination: Ipv4Addr, l4: L4) -> Vec<u8> {
    let frame = IpPacket::new(IpAddr::V4(source), IpAddr::V4(destination), l4).build();
    strip_ethernet(&frame).to_vec()
}
