//! Tier 3: a real Linux guest under QEMU (TCG: KVM does not work on these machines) on a tap
//! that `sgwall run` enforces, as on a libvirt host: the instance names its interface by the
//! guest's MAC (the tap carries it with the first octet 0xfe), DHCP and router advertisements
//! come from dnsmasq on the tap, and the guest is Debian's cloud kernel with a busybox
//! initramfs the test builds. The guest's `/init` (below) gets its lease, probes the host and
//! reports each result as an `SGWT ...` line on the serial console, which the test reads.
//!
//! Everything the test starts (namespace and tap, agent, dnsmasq, QEMU, the initramfs
//! directory) is owned by a guard, so a failing test leaves nothing behind.

use std::{
    io::BufRead as _,
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use sgwall::runtime::console::{AgentEvent, LogFormat};
use sgwall_preflight::{GUEST_DIR, GUEST_MODULES, guest_problem};
use sgwall_tests::{
    AgentProcess, NetNs, Outcome, PinDir, Probe, Service, TempDir, counted, in_ci,
    lab::{TcpEchoServer, UdpEndpoint},
    privileged, run, status_json, unique_name,
};

const GUEST_MAC: &str = "52:54:00:12:34:56";
/// What libvirt gives the tap of a guest with `GUEST_MAC`.
const TAP_MAC: &str = "fe:54:00:12:34:56";
const GUEST_V4: &str = "10.77.0.50";
const HOST_V4: &str = "10.77.0.1";
/// The guest's SLAAC address from dnsmasq's prefix: EUI-64 of its MAC.
const GUEST_SLAAC: &str = "fd77::5054:ff:fe12:3456";

const CONFIG: &str = r#"
[[security_group]]
name = "vm"
  [[security_group.ingress]]
  protocol = "tcp"
  ports = "8080"
  cidr = ["10.77.0.0/24"]
  [[security_group.egress]]
  protocol = "tcp"
  ports = "7001"
  cidr = ["10.77.0.1/32"]
  [[security_group.egress]]
  protocol = "udp"
  ports = "7003"
  cidr = ["10.77.0.1/32"]
  [[security_group.egress]]
  protocol = "icmpv6"
  icmp_type = 128
  cidr = ["::/0"]

# No interface: the agent finds the tap by the guest's MAC, as libvirt names it vnetN afresh.
[[instance]]
name = "guest"
mac = "52:54:00:12:34:56"
addresses = ["10.77.0.50", "fd77::5054:ff:fe12:3456"]
security_groups = ["vm"]
"#;

/// The guest's `/init`. Each probe's result is one `SGWT` line.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
report() { echo "SGWT $*"; }
for m in MODULES; do insmod /modules/$m.ko || report "insmod $m failed"; done
# ARP for the spoofed probe's address must not claim it (I2 would drop it, hiding I1).
echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
ip link set eth0 up
report up
udhcpc -i eth0 -f -q -n -t 10 -T 1 -A 1 -s /lease.sh >/dev/null 2>&1
report "lease $(ip -4 addr show dev eth0 | grep -o 'inet [0-9.]*' | grep -o '[0-9.]*$')"
httpd -p 8080 -h /www
httpd -p 8081 -h /www
report ready
n=0
until ip -6 addr show dev eth0 | grep fd77:: | grep -vq tentative || [ $n -ge 40 ]; do
  sleep 0.25; n=$((n+1))
done
report "slaac $(ip -6 addr show dev eth0 | grep -o 'fd77::[0-9a-f:]*' | head -n 1)"
report "tcp 7001 $(/probe tcp 10.77.0.1:7001)"
report "tcp 7002 $(/probe tcp 10.77.0.1:7002)"
report "udp own $(/probe udp 10.77.0.50 10.77.0.1:7003 own)"
ip addr add 10.77.0.99/32 dev eth0
report "udp spoofed $(/probe udp 10.77.0.99 10.77.0.1:7003 spoofed)"
if ping6 -c 1 -W 3 -I eth0 fe80::1 >/dev/null 2>&1; then report "ping6 link-local ok"; else report "ping6 link-local failed"; fi
if ping6 -c 1 -W 3 fd77::1 >/dev/null 2>&1; then report "ping6 slaac ok"; else report "ping6 slaac failed"; fi
report "dhcpv6 $(/probe dhcpv6 eth0)"
report "ra $(/probe ra eth0)"
report done
while true; do sleep 60; done
"#;

/// udhcpc's hook: the address it was given goes on the interface.
const LEASE_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew) ip addr add "$ip/$mask" dev "$interface" ;;
esac
"#;

/// A child process killed and reaped on drop, its output lines gathered.
struct Spawned {
    what: &'static str,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Spawned {
    fn start(what: &'static str, command: &mut Command) -> Self {
        // A test killed outright (a timeout) takes QEMU and dnsmasq with it: `ip netns exec`
        // execs them in this very process, which keeps the parent-death signal.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let (tx, lines) = channel();
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in streams.into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            what,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Everything it printed so far.
    fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// The guest's reports (`SGWT` lines, without the prefix) up to and including the first
    /// that starts with `wanted`; fails after `timeout`.
    fn reports_until(&mut self, wanted: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let reports: Vec<String> = self
                .seen
                .iter()
                .filter_map(|line| line.split_once("SGWT ").map(|(_, r)| r.trim().to_string()))
                .collect();
            if reports.iter().any(|r| r.starts_with(wanted)) {
                return reports;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let output = self.output();
                    panic!(
                        "{} never reported `{wanted}` within {timeout:?}; output:\n{output}",
                        self.what
                    )
                }
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The initramfs: busybox, `/init`, the lease hook, the probe (compiled here, static), the
/// virtio modules and a page for httpd.
fn build_initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for sub in ["bin", "dev", "modules", "www"] {
        std::fs::create_dir_all(root.join(sub)).expect("initramfs dirs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copying busybox");
    let modules = GUEST_MODULES.join(" ");
    let executable = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).expect("writing initramfs file");
        run("chmod", &["755", &path.to_string_lossy()]);
    };
    executable(root.join("init"), &INIT.replace("MODULES", &modules));
    executable(root.join("lease.sh"), LEASE_SCRIPT);
    std::fs::write(root.join("www/index.html"), "sgwt\n").expect("page");
    for module in GUEST_MODULES {
        let name = format!("{module}.ko");
        std::fs::copy(
            Path::new(GUEST_DIR).join("modules").join(&name),
            root.join("modules").join(&name),
        )
        .expect("copying a module");
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/probe.rs");
    run(
        "rustc",
        &[
            "--edition",
            "2024",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
            &root.join("probe").to_string_lossy(),
            &source.to_string_lossy(),
        ],
    );
    // The kernel needs a console before /init runs, to give it stdout.
    run(
        "mknod",
        &[&root.join("dev/console").to_string_lossy(), "c", "5", "1"],
    );
    let image = dir.join("initramfs.cpio");
    let script = format!(
        "cd {} && find . | busybox cpio -o -H newc > {} 2>/dev/null",
        root.display(),
        image.display()
    );
    run("sh", &["-c", &script]);
    image
}

#[test]
fn i5_i6_i7_a_qemu_guest_gets_its_lease_and_link_local_through_the_filter_and_cannot_spoof_or_route()
 {
    if !privileged() {
        return;
    }
    if let Some(problem) = guest_problem() {
        assert!(!in_ci(), "the guest test cannot run under CI: {problem}");
        eprintln!("SKIPPED (not a pass): {problem}");
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new();
    let initramfs = build_initramfs(dir.path());

    let ns = NetNs::new();
    let tap = unique_name();
    let host = |command: &[&str]| ns.exec(command);
    host(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]);
    host(&["ip", "link", "set", "dev", &tap, "address", TAP_MAC]);
    host(&["ip", "addr", "add", "10.77.0.1/24", "dev", &tap]);
    host(&["ip", "addr", "add", "fd77::1/64", "dev", &tap, "nodad"]);
    host(&["ip", "addr", "add", "fe80::1/64", "dev", &tap, "nodad"]);
    // The host would take a router advertisement from the guest as a default route: that it
    // never has one shows the RA guard (I7).
    host(&["sysctl", "-qw", &format!("net.ipv6.conf.{tap}.accept_ra=1")]);
    host(&["ip", "link", "set", "dev", &tap, "up"]);

    let config = dir.path().join("guest.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let pins = PinDir::new();
    let mut agent = AgentProcess::start(LogFormat::Json, &config, ns.name(), pins.path(), &[]);
    let wanted_tap = tap.clone();
    agent.wait_event(
        "enforcing the tap found by the guest's MAC",
        Duration::from_secs(30),
        move |event| matches!(event, AgentEvent::Enforcing { interface, .. } if *interface == wanted_tap),
    );

    let mut dnsmasq = Spawned::start(
        "dnsmasq",
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--user=root",
                "--group=root",
                "--bind-interfaces",
                &format!("--interface={tap}"),
                "--except-interface=lo",
                "--dhcp-range=10.77.0.50,10.77.0.50,255.255.255.0,10m",
                "--dhcp-range=fd77::50,fd77::60,slaac,64,10m",
                "--enable-ra",
                "--log-dhcp",
                "--log-facility=-",
                &format!("--dhcp-leasefile={}", dir.path().join("leases").display()),
                &format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()),
            ]),
    );
    let _echo_allowed = TcpEchoServer::start(ns.name(), 7001);
    let _echo_denied = TcpEchoServer::start(ns.name(), 7002);
    let udp = UdpEndpoint::bind(ns.name(), HOST_V4.parse().expect("v4"), 7003);

    let kernel = Path::new(GUEST_DIR).join("vmlinuz");
    let mut guest = Spawned::start(
        "the guest",
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "qemu-system-x86_64"])
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults"])
            .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile=")),
    );

    let reports = guest.reports_until("ready", Duration::from_secs(60));
    assert!(
        reports.iter().any(|r| r == &format!("lease {GUEST_V4}")),
        "I6: the DHCPv4 lease comes through the filter with source/destination check on: \
         {reports:?}\ndnsmasq:\n{}\nagent:\n{}",
        dnsmasq.output(),
        agent.output()
    );
    // The host reaches the guest on the port its group opens, and on no other (R1, C1).
    let probe = |port| {
        Probe {
            source: None,
            destination: GUEST_V4.parse().expect("v4"),
            service: Service::Tcp(port),
            timeout: Duration::from_secs(3),
        }
        .run_in(ns.name())
        .expect("probe runs")
    };
    assert_eq!(probe(8080), Outcome::Reached, "ingress rule tcp 8080");
    assert_eq!(probe(8081), Outcome::TimedOut, "no rule for tcp 8081");

    let reports = guest.reports_until("done", Duration::from_secs(60));
    let has = |line: &str| reports.iter().any(|r| r == line);
    let missing: Vec<String> = [
        format!("slaac {GUEST_SLAAC}"),
        "tcp 7001 reached".to_string(),
        "tcp 7002 timeout".to_string(),
        "udp own sent".to_string(),
        "udp spoofed sent".to_string(),
        "ping6 link-local ok".to_string(),
        "ping6 slaac ok".to_string(),
        "ra sent".to_string(),
    ]
    .into_iter()
    .filter(|line| !has(line))
    .collect();
    assert!(
        missing.is_empty(),
        "missing reports {missing:?}; the guest reported {reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.starts_with("dhcpv6 advertise from [fe80::")),
        "I6: DHCPv6 from the link-local address and dnsmasq's reply pass: {reports:?}"
    );

    // I1: the datagram from the guest's own address arrives, the spoofed one never does.
    let own = udp.receive(b"own", Duration::from_secs(2));
    assert_eq!(
        own.map(|from| from.ip()),
        Some(GUEST_V4.parse::<IpAddr>().expect("v4"))
    );
    let spoofed: Option<SocketAddr> = udp.receive(b"spoofed", Duration::from_secs(1));
    assert_eq!(spoofed, None, "I1: a spoofed source never arrives");

    // I7: the guest's router advertisement never reached the host.
    let routes = host(&["ip", "-6", "route", "show", "default"]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).trim().is_empty(),
        "the guest's RA made it a router: {}",
        String::from_utf8_lossy(&routes.stdout)
    );

    let status = status_json(pins.path());
    for (direction, reason) in [
        ("egress", "dhcp_client"),
        ("ingress", "dhcp_server_reply"),
        ("egress", "spoofed_source"),
        ("egress", "router_advertisement_guard"),
    ] {
        assert!(
            counted(&status, &tap, direction, reason) > 0,
            "{direction} {reason} counted: {}",
            status["counters"]
        );
    }
    // Every frame from the guest carries its MAC, and the host's own multicast looped back to
    // the tap's TC ingress (dnsmasq's RAs) is not counted as the guest's.
    for reason in ["mac_spoof", "non_ip"] {
        assert_eq!(
            counted(&status, &tap, "egress", reason),
            0,
            "egress {reason}: {}",
            status["counters"]
        );
    }
    eprintln!(
        "guest test: {:.1}s; counters {}",
        started.elapsed().as_secs_f64(),
        status["counters"]
    );
}
