//! The lab network: one namespace per host (instance or client), each joined by a veth pair to
//! a shared router namespace that forwards between them.
//!
//! Addressing avoids any shared subnet, so instances may sit in the same /24 or anywhere else:
//! a host carries its addresses as /32 and /128 on `eth0`, with default routes through a
//! gateway that exists on every router-side interface (169.254.0.1 and fe80::1, link-local so
//! they collide with nothing routable); the router holds a host route to each address through
//! the right interface. The router-side end of an instance's veth is named exactly as the
//! config's `interface`, because that is where the agent enforces (attach = "port").
//!
//! [`plan`] is pure and decides every name and command; [`build`] runs them with `ip`.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::IpAddr,
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

use crate::{
    model::{AttachMode, Config},
    netns,
};

/// The gateway every host routes through (present on each router-side interface).
pub const GATEWAY_V4: &str = "169.254.0.1";
pub const GATEWAY_V6: &str = "fe80::1";
/// The host-side interface in every host namespace.
pub const HOST_INTERFACE: &str = "eth0";
/// Router-side interface names of clients: not in any config, so they get a fixed stem.
const CLIENT_INTERFACE_STEM: &str = "sgwlc";
/// Linux interface names hold at most 15 bytes.
const IFNAMSIZ_MAX: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "instance {instance} uses attach = \"host\": the lab puts every instance behind a router \
         as a VM or container port; use attach = \"port\" to try this policy in the lab"
    )]
    HostAttachment { instance: String },
    #[error(
        "instance {instance} finds its interface by pattern or MAC: the lab creates each \
         instance's interface, so it needs its name (interface = \"...\")"
    )]
    LocatedInterface { instance: String },
    #[error("the config has no instances: the lab needs at least one to enforce")]
    NoInstances,
    #[error("{a} and {b} would share the namespace {namespace}; rename one of them")]
    NamespaceClash {
        a: String,
        b: String,
        namespace: String,
    },
    #[error("instance {instance} uses interface {interface}, a name the lab keeps for clients")]
    InterfaceClash { instance: String, interface: String },
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("setting {key} in namespace {namespace}: {reason}")]
    Sysctl {
        namespace: String,
        key: String,
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// Enforced by the agent on its router-side interface.
    Instance,
    /// Unfiltered: a stand-in for the internet, an admin network, a peer elsewhere.
    Client,
}

/// One host of the lab: an instance or a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub kind: HostKind,
    pub namespace: String,
    /// The router-side end of the host's veth.
    pub router_interface: String,
    pub addresses: Vec<IpAddr>,
    /// Takes its IPv4 address from the router's DHCP server (`[lab] dhcp`, I6) rather than
    /// having it set by the lab.
    #[serde(default)]
    pub dhcp: bool,
}

impl Host {
    /// The host's first address of the family of `v6`, the one probes use.
    pub fn address(&self, v6: bool) -> Option<IpAddr> {
        self.addresses.iter().copied().find(|a| a.is_ipv6() == v6)
    }
}

/// Every name the lab will create, decided before anything is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub router: String,
    pub hosts: Vec<Host>,
}

impl Topology {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every namespace, router last (deleting the router last keeps hosts' veths orderly).
    pub fn namespaces(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| h.namespace.clone())
            .chain(std::iter::once(self.router.clone()))
            .collect()
    }
}

/// A namespace name from a host name: the prefix, then the name with anything but
/// `[A-Za-z0-9._-]` replaced, so it is a safe file name under /run/netns.
pub fn namespace_name(prefix: &str, host: &str) -> String {
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{cleaned}")
}

/// The router namespace of a lab with this prefix.
pub fn router_name(prefix: &str) -> String {
    format!("{prefix}router")
}

/// Decides the topology for `config`: its instances (all `attach = "port"`), then its lab
/// clients.
pub fn plan(config: &Config, prefix: &str) -> Result<Topology, TopologyError> {
    if config.instances.is_empty() {
        return Err(TopologyError::NoInstances);
    }
    let router = router_name(prefix);
    let mut hosts = Vec::new();
    for instance in &config.instances {
        if instance.attach == AttachMode::Host {
            return Err(TopologyError::HostAttachment {
                instance: instance.name.clone(),
            });
        }
        if instance.is_located() {
            return Err(TopologyError::LocatedInterface {
                instance: instance.name.clone(),
            });
        }
        if instance.interface.starts_with(CLIENT_INTERFACE_STEM) {
            return Err(TopologyError::InterfaceClash {
                instance: instance.name.clone(),
                interface: instance.interface.clone(),
            });
        }
        hosts.push(Host {
            name: instance.name.clone(),
            kind: HostKind::Instance,
            namespace: namespace_name(prefix, &instance.name),
            router_interface: instance.interface.clone(),
            addresses: instance.addresses.clone(),
            dhcp: config.lab.dhcp
                && instance.dhcp
                && instance.addresses.iter().any(IpAddr::is_ipv4),
        });
    }
    for (index, client) in config.lab.clients.iter().enumerate() {
        hosts.push(Host {
            name: client.name.clone(),
            kind: HostKind::Client,
            namespace: namespace_name(prefix, &client.name),
            router_interface: client_interface(index),
            addresses: client.addresses.clone(),
            dhcp: false,
        });
    }
    let topology = Topology { router, hosts };
    check_unique_namespaces(&topology)?;
    Ok(topology)
}

fn client_interface(index: usize) -> String {
    let name = format!("{CLIENT_INTERFACE_STEM}{index}");
    debug_assert!(name.len() <= IFNAMSIZ_MAX);
    name
}

fn check_unique_namespaces(topology: &Topology) -> Result<(), TopologyError> {
    let mut seen: Vec<(&str, &str)> = vec![(topology.router.as_str(), "the router")];
    for host in &topology.hosts {
        if let Some((_, first)) = seen.iter().find(|(ns, _)| *ns == host.namespace) {
            return Err(TopologyError::NamespaceClash {
                a: first.to_string(),
                b: host.name.clone(),
                namespace: host.namespace.clone(),
            });
        }
        seen.push((&host.namespace, &host.name));
    }
    Ok(())
}

/// The `ip -batch` lines run inside the router namespace for `hosts`.
pub fn router_commands(hosts: &[Host]) -> Vec<String> {
    let mut lines = vec!["link set lo up".to_string()];
    for host in hosts {
        lines.extend(router_link_commands(host));
        lines.extend(router_up_commands(host));
    }
    lines
}

/// The router side of a host's veth, with the gateway addresses, still down.
fn router_link_commands(host: &Host) -> Vec<String> {
    let interface = &host.router_interface;
    vec![
        format!(
            "link add {interface} type veth peer name {HOST_INTERFACE} netns {}",
            host.namespace
        ),
        format!("addr add {GATEWAY_V4}/32 dev {interface}"),
        format!("addr add {GATEWAY_V6}/64 dev {interface} nodad"),
    ]
}

/// The router side of a host's veth brought up, and the host routes through it (a route
/// needs its device up).
fn router_up_commands(host: &Host) -> Vec<String> {
    let interface = &host.router_interface;
    let mut lines = vec![format!("link set {interface} up")];
    for address in &host.addresses {
        let prefix = if address.is_ipv6() { 128 } else { 32 };
        lines.push(format!("route add {address}/{prefix} dev {interface}"));
    }
    lines
}

/// The `ip -batch` lines run inside a host's namespace once its veth end is there.
pub fn host_commands(host: &Host) -> Vec<String> {
    let mut lines = vec![
        "link set lo up".to_string(),
        format!("link set {HOST_INTERFACE} up"),
    ];
    for address in &host.addresses {
        match address {
            // The DHCP client sets it, and the routes with it (`dhcp.rs`).
            IpAddr::V4(_) if host.dhcp => {}
            IpAddr::V4(_) => lines.push(format!("addr add {address}/32 dev {HOST_INTERFACE}")),
            // nodad: usable at once, not after duplicate address detection.
            IpAddr::V6(_) => {
                lines.push(format!("addr add {address}/128 dev {HOST_INTERFACE} nodad"))
            }
        }
    }
    if let Some(source) = host.address(false).filter(|_| !host.dhcp) {
        lines.push(format!("route add {GATEWAY_V4}/32 dev {HOST_INTERFACE}"));
        lines.push(format!(
            "route add default via {GATEWAY_V4} dev {HOST_INTERFACE} src {source}"
        ));
    }
    if let Some(source) = host.address(true) {
        lines.push(format!(
            "route add ::/0 via {GATEWAY_V6} dev {HOST_INTERFACE} src {source}"
        ));
    }
    lines
}

/// Kernel settings of the router namespace, applied before any interface exists so that the
/// `default` entries reach the new interfaces.
const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv6/conf/default/forwarding", "1"),
    // Probes of the spoofing tests (I1) carry sources the router has no route back to.
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
];

const HOST_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
    // ARP always claims the host's primary address, as a VM's ARP would; with the default a
    // packet from a secondary, unconfigured address would make ARP claim it too.
    ("net/ipv4/conf/all/arp_announce", "2"),
    ("net/ipv4/conf/default/arp_announce", "2"),
];

/// Creates every namespace, link, address and route of `topology`. Namespaces that already
/// exist are an error: callers clean up first.
pub fn build(topology: &Topology) -> Result<(), TopologyError> {
    let namespaces = topology.namespaces();
    ip_batch(
        None,
        &namespaces
            .iter()
            .map(|ns| format!("netns add {ns}"))
            .collect::<Vec<_>>(),
        false,
    )?;
    sysctls(&topology.router, ROUTER_SYSCTLS)?;
    for host in &topology.hosts {
        sysctls(&host.namespace, HOST_SYSCTLS)?;
    }
    add_hosts(topology, &topology.hosts)
}

/// Links `hosts` to the lab's router: veths, addresses and routes. Their namespaces must exist
/// ([`build`] or [`create_namespaces`] makes them).
pub fn add_hosts(topology: &Topology, hosts: &[Host]) -> Result<(), TopologyError> {
    ip_batch(Some(&topology.router), &router_commands(hosts), false)?;
    for host in hosts {
        ip_batch(Some(&host.namespace), &host_commands(host), false)?;
    }
    Ok(())
}

/// Like [`add_hosts`] up to the router side of each veth, which stays down: see
/// [`bring_link_up`].
pub fn add_links(topology: &Topology, hosts: &[Host]) -> Result<(), TopologyError> {
    let lines: Vec<String> = hosts.iter().flat_map(router_link_commands).collect();
    ip_batch(Some(&topology.router), &lines, false)
}

/// The rest of [`add_hosts`] for a host whose link [`add_links`] made.
pub fn bring_link_up(topology: &Topology, host: &Host) -> Result<(), TopologyError> {
    ip_batch(Some(&topology.router), &router_up_commands(host), false)?;
    ip_batch(Some(&host.namespace), &host_commands(host), false)
}

/// Creates the namespaces of hosts that join a running lab.
pub fn create_namespaces(hosts: &[Host]) -> Result<(), TopologyError> {
    ip_batch(
        None,
        &hosts
            .iter()
            .map(|h| format!("netns add {}", h.namespace))
            .collect::<Vec<_>>(),
        false,
    )?;
    for host in hosts {
        sysctls(&host.namespace, HOST_SYSCTLS)?;
    }
    Ok(())
}

/// Deletes the given namespaces (with every interface in them), ignoring ones already gone.
pub fn delete_namespaces(namespaces: &[String]) -> Result<(), TopologyError> {
    let present = existing_namespaces()?;
    let lines: Vec<String> = namespaces
        .iter()
        .filter(|ns| present.contains(*ns))
        .map(|ns| format!("netns del {ns}"))
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    ip_batch(None, &lines, true)
}

/// Every named network namespace (as `ip netns` sees them).
pub fn existing_namespaces() -> Result<BTreeSet<String>, TopologyError> {
    match std::fs::read_dir(netns::NETNS_RUN_DIR) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(TopologyError::Spawn {
            command: format!("listing {}", netns::NETNS_RUN_DIR),
            source,
        }),
    }
}

/// Runs `ip [-n namespace] -batch -` with `lines` on stdin. `force` keeps going past errors
/// (cleanup); otherwise the first failing line fails the batch.
pub fn ip_batch(
    namespace: Option<&str>,
    lines: &[String],
    force: bool,
) -> Result<(), TopologyError> {
    let mut command = Command::new("ip");
    if let Some(ns) = namespace {
        command.args(["-n", ns]);
    }
    if force {
        command.arg("-force");
    }
    command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let shown = match namespace {
        Some(ns) => format!("ip -n {ns} -batch"),
        None => "ip -batch".to_string(),
    };
    let mut child = command.spawn().map_err(|source| TopologyError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let script = lines.join("\n") + "\n";
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| TopologyError::Spawn {
                command: shown.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| TopologyError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TopologyError::Command {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs `ip` with `args` (optionally inside `namespace`), for one-off commands.
pub fn ip(namespace: Option<&str>, args: &[&str]) -> Result<(), TopologyError> {
    let line = args.join(" ");
    ip_batch(namespace, &[line], false)
}

/// Writes `/proc/sys` entries from a thread inside the namespace: `/proc/sys/net` shows the
/// network namespace of the thread that opens it.
fn sysctls(
    namespace: &str,
    settings: &'static [(&'static str, &'static str)],
) -> Result<(), TopologyError> {
    let result = netns::run_in(namespace, move || {
        for (key, value) in settings {
            let path = format!("/proc/sys/{key}");
            if let Err(error) = std::fs::write(&path, value) {
                return Err((key.to_string(), error.to_string()));
            }
        }
        Ok(())
    });
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err((key, reason))) => Err(TopologyError::Sysctl {
            namespace: namespace.to_string(),
            key,
            reason,
        }),
        Err(error) => Err(TopologyError::Sysctl {
            namespace: namespace.to_string(),
            key: "(entering the namespace)".to_string(),
            reason: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config(text: &str) -> Config {
        load_str(text, std::path::Path::new("test.toml"))
            .map(|l| l.config)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const TWO: &str = r#"
[[security_group]]
name = "sg"
[[instance]]
name = "web 1"
interface = "sgw-web1"
addresses = ["10.0.1.10", "fd00:1::10"]
security_groups = ["sg"]
[[lab.client]]
name = "internet"
addresses = ["203.0.113.10"]
"#;

    #[test]
    fn plan_names_namespaces_by_prefix_and_keeps_the_configured_interface() {
        let topology = plan(&config(TWO), "sgwl-").unwrap();
        assert_eq!(topology.router, "sgwl-router");
        let web = topology.host("web 1").unwrap();
        assert_eq!(web.namespace, "sgwl-web_1");
        assert_eq!(web.router_interface, "sgw-web1");
        assert_eq!(web.kind, HostKind::Instance);
        let internet = topology.host("internet").unwrap();
        assert_eq!(internet.router_interface, "sgwlc0");
        assert_eq!(internet.kind, HostKind::Client);
        assert_eq!(
            topology.namespaces(),
            ["sgwl-web_1", "sgwl-internet", "sgwl-router"]
        );
    }

    #[test]
    fn host_and_router_commands_use_host_routes_through_a_link_local_gateway() {
        let topology = plan(&config(TWO), "p-").unwrap();
        let web = topology.host("web 1").unwrap();
        assert_eq!(
            host_commands(web),
            [
                "link set lo up",
                "link set eth0 up",
                "addr add 10.0.1.10/32 dev eth0",
                "addr add fd00:1::10/128 dev eth0 nodad",
                "route add 169.254.0.1/32 dev eth0",
                "route add default via 169.254.0.1 dev eth0 src 10.0.1.10",
                "route add ::/0 via fe80::1 dev eth0 src fd00:1::10",
            ]
        );
        let router = router_commands(&topology.hosts);
        assert!(
            router.contains(&"link add sgw-web1 type veth peer name eth0 netns p-web_1".into())
        );
        assert!(router.contains(&"route add 10.0.1.10/32 dev sgw-web1".into()));
        assert!(router.contains(&"route add fd00:1::10/128 dev sgw-web1".into()));
        assert!(router.contains(&"route add 203.0.113.10/32 dev sgwlc0".into()));
        // A v4-only client gets no IPv6 default route.
        let internet = topology.host("internet").unwrap();
        assert!(!host_commands(internet).iter().any(|l| l.contains("::/0")));
    }

    #[test]
    fn plan_refuses_host_attachments_and_name_clashes() {
        let host = TWO.replace(
            "interface = \"sgw-web1\"",
            "interface = \"sgw-web1\"\nattach = \"host\"",
        );
        assert!(matches!(
            plan(&config(&host), "p-"),
            Err(TopologyError::HostAttachment { .. })
        ));
        let clash = TWO.replace("name = \"internet\"", "name = \"web/1\"");
        assert!(matches!(
            plan(&config(&clash), "p-"),
            Err(TopologyError::NamespaceClash { .. })
        ));
        let router = TWO.replace("name = \"internet\"", "name = \"router\"");
        assert!(matches!(
            plan(&config(&router), "p-"),
            Err(TopologyError::NamespaceClash { .. })
        ));
        let by_mac = TWO.replace("interface = \"sgw-web1\"", "mac = \"52:54:00:12:34:56\"");
        assert!(matches!(
            plan(&config(&by_mac), "p-"),
            Err(TopologyError::LocatedInterface { .. })
        ));
    }

    #[test]
    fn dhcp_hosts_get_no_ipv4_address_or_route_from_the_lab_i6() {
        let with_dhcp = format!("[lab]\ndhcp = true\n{TWO}");
        let topology = plan(&config(&with_dhcp), "p-").expect("plans");
        let web = topology.host("web 1").expect("web 1");
        assert!(web.dhcp);
        let lines = host_commands(web);
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("10.0.1.10") && !l.contains(GATEWAY_V4)),
            "{lines:?}"
        );
        assert!(!topology.host("internet").expect("client").dhcp);
        let without = plan(&config(TWO), "p-").expect("plans");
        assert!(!without.host("web 1").expect("web 1").dhcp);
    }
}
