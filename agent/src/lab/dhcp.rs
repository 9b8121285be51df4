//! The lab router's DHCPv4 server (`[lab] dhcp = true`): instances with DHCP on (I6) take
//! their IPv4 address from it through the filter, as a VM takes its lease from its host,
//! instead of having it set by the lab.
//!
//! Each instance's lease is fixed: its first configured IPv4 address, as a /32 with the
//! router's link-local gateway, the lab's addressing (see `topology`). The server answers
//! DISCOVER and REQUEST on the instance's router-side interface only, and only while the lab
//! is coming up: the client (busybox `udhcpc`) quits once it holds the lease. [`reply`] is
//! pure; [`lease_all`] runs server and clients.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use super::topology::{GATEWAY_V4, HOST_INTERFACE, Host};
use crate::netns;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed part of a BOOTP message, before the magic cookie.
const FIXED_LEN: usize = 236;
const OPTION_PAD: u8 = 0;
const OPTION_MASK: u8 = 1;
const OPTION_ROUTER: u8 = 3;
const OPTION_LEASE_TIME: u8 = 51;
const OPTION_MESSAGE_TYPE: u8 = 53;
const OPTION_SERVER_ID: u8 = 54;
const OPTION_END: u8 = 255;
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const LEASE_SECONDS: u32 = 24 * 3600;
/// How long the clients try, in all: udhcpc's tries times its wait.
const CLIENT_TRIES: &str = "5";
const CLIENT_WAIT_SECONDS: &str = "1";

/// The client's hook: the lease as the lab would have set it by hand (`topology`).
const CLIENT_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/32" dev "$interface"
    ip route add "$router/32" dev "$interface"
    ip route add default via "$router" dev "$interface" src "$ip"
    ;;
esac
"#;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("the lab's DHCP server on {interface}: {source}")]
    Server {
        interface: String,
        source: std::io::Error,
    },
    #[error("entering namespace {0}: {1}")]
    Namespace(String, netns::NetnsError),
    #[error("running busybox udhcpc (the lab's DHCP client; install busybox-static): {0}")]
    Client(std::io::Error),
    #[error("{host} got no DHCP lease through the filter (udhcpc: {output})")]
    NoLease { host: String, output: String },
    #[error("writing the DHCP client's script {path}: {source}")]
    Script {
        path: String,
        source: std::io::Error,
    },
}

/// The reply to a client's DHCPv4 `request` that `address` is leased to: OFFER for DISCOVER,
/// ACK for REQUEST, nothing for anything else (including a malformed message).
pub fn reply(request: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    if request.len() < FIXED_LEN + MAGIC_COOKIE.len()
        || request[0] != BOOTREQUEST
        || request[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE
    {
        return None;
    }
    let answer = match message_type(&request[FIXED_LEN + 4..])? {
        DISCOVER => OFFER,
        REQUEST => ACK,
        _ => return None,
    };
    let gateway: Ipv4Addr = GATEWAY_V4.parse().ok()?;
    let mut out = vec![0u8; FIXED_LEN];
    out[0] = BOOTREPLY;
    // htype, hlen, xid, secs and flags as the client sent them.
    out[1..12].copy_from_slice(&request[1..12]);
    out[16..20].copy_from_slice(&address.octets());
    out[20..24].copy_from_slice(&gateway.octets());
    // chaddr.
    out[28..44].copy_from_slice(&request[28..44]);
    out.extend_from_slice(&MAGIC_COOKIE);
    out.extend_from_slice(&[OPTION_MESSAGE_TYPE, 1, answer]);
    out.extend_from_slice(&[OPTION_SERVER_ID, 4]);
    out.extend_from_slice(&gateway.octets());
    out.extend_from_slice(&[OPTION_LEASE_TIME, 4]);
    out.extend_from_slice(&LEASE_SECONDS.to_be_bytes());
    out.extend_from_slice(&[OPTION_MASK, 4, 255, 255, 255, 255]);
    out.extend_from_slice(&[OPTION_ROUTER, 4]);
    out.extend_from_slice(&gateway.octets());
    out.push(OPTION_END);
    Some(out)
}

/// The DHCP message type option of `options`, walked in bounds.
fn message_type(options: &[u8]) -> Option<u8> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            OPTION_END => return None,
            OPTION_PAD => at += 1,
            code => {
                let length = usize::from(*options.get(at + 1)?);
                let value = options.get(at + 2..at + 2 + length)?;
                if code == OPTION_MESSAGE_TYPE && length == 1 {
                    return Some(value[0]);
                }
                at += 2 + length;
            }
        }
    }
    None
}

/// Serves `address` on `interface` until `stop`.
fn serve(interface: &str, address: Ipv4Addr, stop: &AtomicBool) -> std::io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)).into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let client = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    let mut buffer = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((length, _)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if let Some(answer) = reply(&buffer[..length], address) {
            // The client has no address yet: the answer is broadcast on its link.
            socket.send_to(&answer, client)?;
        }
    }
    Ok(())
}

/// Gives every host in `hosts` its lease: a server thread per host in the router namespace,
/// `udhcpc` in the host's namespace, then the servers stop. `script_dir` holds the client's
/// hook.
pub fn lease_all(router: &str, hosts: &[&Host], script_dir: &Path) -> Result<(), DhcpError> {
    let script = script_dir.join("udhcpc.sh");
    std::fs::write(&script, CLIENT_SCRIPT)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|source| DhcpError::Script {
            path: script.display().to_string(),
            source,
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for host in hosts {
        let Some(std::net::IpAddr::V4(address)) = host.address(false) else {
            continue;
        };
        let interface = host.router_interface.clone();
        let stop = Arc::clone(&stop);
        servers.push((
            interface.clone(),
            netns::spawn_in(router, move || serve(&interface, address, &stop)),
        ));
    }
    let leased = hosts.iter().try_for_each(|host| lease(host, &script));
    stop.store(true, Ordering::Relaxed);
    for (interface, server) in servers {
        match server.join() {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(source))) => return Err(DhcpError::Server { interface, source }),
            Ok(Err(error)) => return Err(DhcpError::Namespace(router.to_string(), error)),
            Err(_) => {
                return Err(DhcpError::Server {
                    interface,
                    source: std::io::Error::other("the server thread panicked"),
                });
            }
        }
    }
    leased
}

fn lease(host: &Host, script: &Path) -> Result<(), DhcpError> {
    let output = Command::new("ip")
        .args(["netns", "exec", &host.namespace, "busybox", "udhcpc"])
        .args(["-i", HOST_INTERFACE, "-f", "-q", "-n"])
        .args([
            "-t",
            CLIENT_TRIES,
            "-T",
            CLIENT_WAIT_SECONDS,
            "-A",
            "1",
            "-s",
        ])
        .arg(script)
        .output()
        .map_err(DhcpError::Client)?;
    if output.status.success() {
        return Ok(());
    }
    Err(DhcpError::NoLease {
        host: host.name.clone(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(message: u8) -> Vec<u8> {
        let mut out = vec![0u8; FIXED_LEN];
        out[0] = BOOTREQUEST;
        out[1] = 1;
        out[2] = 6;
        out[4..8].copy_from_slice(&[1, 2, 3, 4]);
        out[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        out.extend_from_slice(&MAGIC_COOKIE);
        out.extend_from_slice(&[OPTION_PAD, 12, 3, b'v', b'm', b'1']);
        out.extend_from_slice(&[OPTION_MESSAGE_TYPE, 1, message, OPTION_END]);
        out
    }

    #[test]
    fn offers_on_discover_and_acks_on_request_the_instances_address() {
        let address = Ipv4Addr::new(10, 7, 0, 10);
        for (asked, answered) in [(DISCOVER, OFFER), (REQUEST, ACK)] {
            let out = reply(&request(asked), address).expect("a reply");
            assert_eq!(out[0], BOOTREPLY);
            assert_eq!(out[4..8], [1, 2, 3, 4], "the transaction id");
            assert_eq!(out[16..20], address.octets(), "yiaddr");
            assert_eq!(out[28..34], [0x52, 0x54, 0, 0x12, 0x34, 0x56], "chaddr");
            assert_eq!(message_type(&out[FIXED_LEN + 4..]), Some(answered));
        }
    }

    #[test]
    fn ignores_what_is_not_a_clients_discover_or_request() {
        let address = Ipv4Addr::new(10, 7, 0, 10);
        let mut server_reply = request(DISCOVER);
        server_reply[0] = BOOTREPLY;
        let mut truncated = request(DISCOVER);
        truncated.truncate(FIXED_LEN + 6);
        // An option whose length runs past the end.
        let mut overrun = request(DISCOVER);
        overrun.truncate(FIXED_LEN + 4);
        overrun.extend_from_slice(&[12, 200, 1]);
        for message in [
            request(7),
            server_reply,
            truncated,
            overrun,
            vec![BOOTREQUEST; 10],
        ] {
            assert_eq!(reply(&message, address), None);
        }
    }
}
