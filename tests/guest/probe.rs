//! The guest's probe (tier 3, `tests/tests/guest.rs`): what busybox cannot do, in one static
//! binary the test compiles with `rustc` alone (std only, so no crate and no cargo build for
//! the guest). Every result is one line on stdout, which `/init` prefixes and the test reads
//! from the serial console. Every wait is bounded.
//!
//!   probe tcp ADDR:PORT            connect, send, read the echo: `reached`, `no-echo`, `failed`
//!   probe udp SOURCE ADDR:PORT MSG one datagram from SOURCE (bound: a spoofed source is real)
//!   probe dhcpv6 IFACE             a DHCPv6 Solicit from the link-local address: `advertise`
//!   probe ra IFACE                 one router advertisement to all nodes: `sent`

use std::{
    io::{Read as _, Write as _},
    net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket},
    time::Duration,
};

const WAIT: Duration = Duration::from_secs(3);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["tcp", target] => tcp(target),
        ["udp", source, target, message] => udp(source, target, message),
        ["dhcpv6", interface] => dhcpv6(interface),
        ["ra", interface] => ra(interface),
        _ => Err("usage: probe tcp|udp|dhcpv6|ra ...".to_string()),
    };
    match outcome {
        Ok(line) => println!("{line}"),
        Err(error) => println!("failed {error}"),
    }
}

fn tcp(target: &str) -> Result<String, String> {
    let address: SocketAddr = target.parse().map_err(|e| format!("{target}: {e}"))?;
    let mut stream = match TcpStream::connect_timeout(&address, WAIT) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok("timeout".to_string()),
        Err(e) => return Ok(format!("refused {e}")),
    };
    stream.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    stream.write_all(b"sgwt\n").map_err(|e| e.to_string())?;
    let mut reply = [0u8; 5];
    match stream.read_exact(&mut reply) {
        Ok(()) if &reply == b"sgwt\n" => Ok("reached".to_string()),
        _ => Ok("no-echo".to_string()),
    }
}

fn udp(source: &str, target: &str, message: &str) -> Result<String, String> {
    let source: std::net::IpAddr = source.parse().map_err(|e| format!("{source}: {e}"))?;
    let target: SocketAddr = target.parse().map_err(|e| format!("{target}: {e}"))?;
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).map_err(|e| e.to_string())?;
    socket
        .send_to(message.as_bytes(), target)
        .map_err(|e| e.to_string())?;
    Ok("sent".to_string())
}

fn ifindex(interface: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
        .map_err(|e| format!("{interface}: {e}"))?;
    text.trim().parse().map_err(|e| format!("{interface}: {e}"))
}

fn mac(interface: &str) -> Result<[u8; 6], String> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .map_err(|e| format!("{interface}: {e}"))?;
    let mut mac = [0u8; 6];
    for (octet, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *octet = u8::from_str_radix(part, 16).map_err(|e| e.to_string())?;
    }
    Ok(mac)
}

/// The EUI-64 link-local address the kernel gives `mac` (I5).
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn dhcpv6(interface: &str) -> Result<String, String> {
    let index = ifindex(interface)?;
    let mac = mac(interface)?;
    let local = SocketAddrV6::new(link_local(mac), 546, 0, index);
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
    socket.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let transaction = [0x53, 0x47, 0x57];
    let mut solicit = vec![1];
    solicit.extend_from_slice(&transaction);
    // Client identifier: DUID-LL of the MAC.
    solicit.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1]);
    solicit.extend_from_slice(&mac);
    // Elapsed time 0, and one IA_NA asking for an address.
    solicit.extend_from_slice(&[0, 8, 0, 2, 0, 0]);
    solicit.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let servers = SocketAddrV6::new("ff02::1:2".parse().map_err(|_| "ff02::1:2")?, 547, 0, index);
    let mut reply = [0u8; 1500];
    for _ in 0..3 {
        socket
            .send_to(&solicit, servers)
            .map_err(|e| format!("send: {e}"))?;
        if let Ok((n, from)) = socket.recv_from(&mut reply)
            && n >= 4
            && reply[0] == 2
            && reply[1..4] == transaction
        {
            return Ok(format!("advertise from {from}"));
        }
    }
    Ok("no-advertise".to_string())
}

unsafe extern "C" {
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, length: u32) -> i32;
    fn sendto(
        fd: i32,
        buffer: *const u8,
        length: usize,
        flags: i32,
        to: *const SockaddrIn6,
        to_length: u32,
    ) -> isize;
}

#[repr(C)]
struct SockaddrIn6 {
    family: u16,
    port: u16,
    flowinfo: u32,
    address: [u8; 16],
    scope_id: u32,
}

/// A router advertisement as a router would send it (hop limit 255, default-router lifetime
/// 1800 s): through a raw ICMPv6 socket, which fills in the checksum.
fn ra(interface: &str) -> Result<String, String> {
    const AF_INET6: i32 = 10;
    const SOCK_RAW: i32 = 3;
    const IPPROTO_ICMPV6: i32 = 58;
    const IPPROTO_IPV6: i32 = 41;
    const IPV6_MULTICAST_HOPS: i32 = 18;
    let index = ifindex(interface)?;
    let advertisement: [u8; 16] = [134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    let to = SockaddrIn6 {
        family: AF_INET6 as u16,
        port: 0,
        flowinfo: 0,
        address: "ff02::1"
            .parse::<Ipv6Addr>()
            .map_err(|_| "ff02::1")?
            .octets(),
        scope_id: index,
    };
    let hops: i32 = 255;
    // SAFETY: plain syscalls on a socket this function owns, with buffers that outlive them.
    let sent = unsafe {
        let fd = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
        if fd < 0 {
            return Err("raw ICMPv6 socket".to_string());
        }
        setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, 4);
        sendto(
            fd,
            advertisement.as_ptr(),
            advertisement.len(),
            0,
            &to,
            std::mem::size_of::<SockaddrIn6>() as u32,
        )
    };
    if sent == advertisement.len() as isize {
        Ok("sent".to_string())
    } else {
        Err(format!("sendto returned {sent}"))
    }
}
