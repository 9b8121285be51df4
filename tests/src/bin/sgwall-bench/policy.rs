//! Benchmark policies, described once and rendered as an sgwall config, an nftables ruleset and
//! an iptables + ipset script, so that the end-to-end peers enforce the same policy.
//!
//! Only ingress rules are generated: every group keeps the AWS default egress (everything out,
//! tracked), which the peers express as an accepting output path.

use std::{fmt::Write as _, net::Ipv4Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An IPv4 network: address and prefix length.
    Cidr(Ipv4Addr, u8),
    Group(String),
    /// A managed prefix list of [`Policy::prefix_lists`] (P1).
    PrefixList(String),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub proto: Proto,
    pub ports: (u16, u16),
    pub peer: Peer,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub ingress: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub address: Ipv4Addr,
    pub groups: Vec<String>,
    /// `xdp` or `tc`.
    pub ingress_hook: &'static str,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub address: Ipv4Addr,
    pub groups: Vec<String>,
}

/// A managed prefix list (P1): its max entries are its entries' count.
#[derive(Clone, Debug)]
pub struct PrefixList {
    pub name: String,
    pub entries: Vec<(Ipv4Addr, u8)>,
}

/// A network ACL entry (N2) of [`NetworkAcl`]; `proto` `None` is every protocol.
#[derive(Clone, Debug)]
pub struct AclEntry {
    pub number: u16,
    pub allow: bool,
    pub proto: Option<Proto>,
    pub ports: (u16, u16),
    pub cidr: (Ipv4Addr, u8),
}

/// One subnet and its network ACL (N1): the same entries both ways.
#[derive(Clone, Debug)]
pub struct NetworkAcl {
    pub subnet: (Ipv4Addr, u8),
    pub entries: Vec<AclEntry>,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub groups: Vec<Group>,
    pub instances: Vec<Instance>,
    pub members: Vec<Member>,
    pub groups_per_interface: usize,
    pub rules_per_group: usize,
    pub prefix_lists: Vec<PrefixList>,
    pub acl: Option<NetworkAcl>,
}

impl Policy {
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Effective ingress rules of an instance, in rule-id order.
    pub fn rules_of(&self, instance: &Instance) -> Vec<Rule> {
        instance
            .groups
            .iter()
            .filter_map(|name| self.group(name))
            .flat_map(|group| group.ingress.iter().cloned())
            .collect()
    }

    /// Addresses of every interface with `group` attached (members and instances).
    pub fn members_of(&self, group: &str) -> Vec<Ipv4Addr> {
        let instances = self
            .instances
            .iter()
            .filter(|i| i.groups.iter().any(|g| g == group))
            .map(|i| i.address);
        let members = self
            .members
            .iter()
            .filter(|m| m.groups.iter().any(|g| g == group))
            .map(|m| m.address);
        instances.chain(members).collect()
    }

    pub fn prefix_list(&self, name: &str) -> Option<&PrefixList> {
        self.prefix_lists.iter().find(|l| l.name == name)
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::with_capacity(128 + self.members.len() * 96);
        let _ = writeln!(
            out,
            "[quotas]\ngroups_per_interface = {}\nrules_per_group = {}\nnetwork_acl_rules = 40\n",
            self.groups_per_interface, self.rules_per_group
        );
        for list in &self.prefix_lists {
            let entries: Vec<String> = list
                .entries
                .iter()
                .map(|(addr, len)| format!("{{ cidr = \"{addr}/{len}\" }}"))
                .collect();
            let _ = writeln!(
                out,
                "[[prefix_list]]\nname = \"{}\"\nfamily = \"IPv4\"\nmax_entries = {}\n\
                 entries = [{}]\n",
                list.name,
                list.entries.len().max(1),
                entries.join(", ")
            );
        }
        if let Some(acl) = &self.acl {
            out.push_str("[[network_acl]]\nname = \"bench-acl\"\n");
            for direction in ["ingress", "egress"] {
                for entry in &acl.entries {
                    let (proto, ports) = match entry.proto {
                        None => ("all", String::new()),
                        Some(proto) => (
                            proto.name(),
                            format!("\n  ports = \"{}\"", port_expr(entry.ports)),
                        ),
                    };
                    let _ = writeln!(
                        out,
                        "  [[network_acl.{direction}]]\n  number = {}\n  action = \"{}\"\n  \
                         protocol = \"{proto}\"{ports}\n  cidr = \"{}/{}\"",
                        entry.number,
                        if entry.allow { "allow" } else { "deny" },
                        entry.cidr.0,
                        entry.cidr.1
                    );
                }
            }
            let _ = writeln!(
                out,
                "\n[[subnet]]\nname = \"bench-subnet\"\ncidr = [\"{}/{}\"]\n\
                 network_acl = \"bench-acl\"\n",
                acl.subnet.0, acl.subnet.1
            );
        }
        for group in &self.groups {
            let _ = writeln!(out, "[[security_group]]\nname = \"{}\"", group.name);
            for rule in &group.ingress {
                let ports = if rule.ports.0 == rule.ports.1 {
                    format!("{}", rule.ports.0)
                } else {
                    format!("\"{}-{}\"", rule.ports.0, rule.ports.1)
                };
                let peer = match &rule.peer {
                    Peer::Cidr(addr, len) => format!("cidr = [\"{addr}/{len}\"]"),
                    Peer::Group(name) => format!("groups = [\"{name}\"]"),
                    Peer::PrefixList(name) => format!("prefix_lists = [\"{name}\"]"),
                };
                let _ = writeln!(
                    out,
                    "  [[security_group.ingress]]\n  protocol = \"{}\"\n  ports = {ports}\n  {peer}",
                    rule.proto.name()
                );
            }
            out.push('\n');
        }
        for instance in &self.instances {
            let groups: Vec<String> = instance.groups.iter().map(|g| format!("\"{g}\"")).collect();
            let _ = writeln!(
                out,
                "[[instance]]\nname = \"{}\"\ninterface = \"{}\"\nattach = \"host\"\n\
                 host_ingress_hook = \"{}\"\naddresses = [\"{}\"]\nsecurity_groups = [{}]\n\
                 conntrack = {{ max_flows = 4194304 }}\n",
                instance.name,
                instance.interface,
                instance.ingress_hook,
                instance.address,
                groups.join(", ")
            );
        }
        for (index, member) in self.members.iter().enumerate() {
            let groups: Vec<String> = member.groups.iter().map(|g| format!("\"{g}\"")).collect();
            let _ = writeln!(
                out,
                "[[member]]\nname = \"m{index}\"\naddresses = [\"{}\"]\nsecurity_groups = [{}]",
                member.address,
                groups.join(", ")
            );
        }
        out
    }

    /// The nftables form: `ct state established,related accept`, then one set-backed rule per
    /// referenced group and service, and every CIDR rule in one interval set keyed by
    /// address, protocol and port: lookups, not a walk over rules.
    pub fn to_nft(&self, instance: &Instance, table: &str) -> String {
        let rules = self.rules_of(instance);
        let mut out = format!("table inet {table} {{\n");
        let mut group_sets: Vec<String> = Vec::new();
        for rule in &rules {
            if let Peer::Group(name) = &rule.peer
                && !group_sets.contains(name)
            {
                group_sets.push(name.clone());
            }
        }
        for (index, name) in group_sets.iter().enumerate() {
            let members: Vec<String> = self
                .members_of(name)
                .iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(out, "  set group{index} {{\n    type ipv4_addr");
            if !members.is_empty() {
                let _ = writeln!(out, "    elements = {{ {} }}", members.join(", "));
            }
            out.push_str("  }\n");
        }
        // A prefix list's entries are CIDR rules of their own here.
        let cidr_elements: Vec<String> = rules
            .iter()
            .flat_map(|rule| {
                self.cidrs_of(&rule.peer)
                    .into_iter()
                    .map(move |c| (rule, c))
            })
            .map(|(rule, (addr, len))| {
                format!(
                    "{addr}/{len} . {} . {}",
                    rule.proto.name(),
                    port_expr(rule.ports)
                )
            })
            .collect();
        out.push_str(
            "  set cidr_rules {\n    type ipv4_addr . inet_proto . inet_service\n    flags interval\n",
        );
        if !cidr_elements.is_empty() {
            let _ = writeln!(out, "    elements = {{ {} }}", cidr_elements.join(", "));
        }
        out.push_str("  }\n");
        out.push_str(
            "  chain input {\n    type filter hook input priority filter; policy drop;\n    \
             ct state established,related accept\n    iif \"lo\" accept\n    \
             icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
             nd-router-advert, mld-listener-query, mld-listener-report, mld2-listener-report } \
             accept\n    ip saddr . meta l4proto . th dport @cidr_rules accept\n",
        );
        for rule in &rules {
            if let Peer::Group(name) = &rule.peer {
                let index = group_sets.iter().position(|g| g == name).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "    ip saddr @group{index} {} dport {} accept",
                    rule.proto.name(),
                    port_expr(rule.ports)
                );
            }
        }
        out.push_str("  }\n}\n");
        out
    }

    /// The iptables + ipset form: an ESTABLISHED,RELATED rule, then one `-m set` rule per
    /// effective SG rule in rule order, each over an ipset of that rule's peers. Returns the
    /// `ipset restore` input and the `iptables-restore` input.
    pub fn to_iptables(&self, instance: &Instance) -> (String, String) {
        let rules = self.rules_of(instance);
        let mut ipset = String::new();
        let mut iptables = String::from(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n",
        );
        for (index, rule) in rules.iter().enumerate() {
            let set = format!("sgb{index}");
            match &rule.peer {
                Peer::Cidr(..) | Peer::PrefixList(_) => {
                    let _ = writeln!(ipset, "create {set} hash:net family inet");
                    for (addr, len) in self.cidrs_of(&rule.peer) {
                        let _ = writeln!(ipset, "add {set} {addr}/{len}");
                    }
                }
                Peer::Group(name) => {
                    let members = self.members_of(name);
                    let size = (members.len() * 2).max(1024);
                    let _ = writeln!(
                        ipset,
                        "create {set} hash:ip family inet hashsize {} maxelem {}",
                        size.next_power_of_two(),
                        size.max(65536)
                    );
                    for member in members {
                        let _ = writeln!(ipset, "add {set} {member}");
                    }
                }
            }
            let ports = if rule.ports.0 == rule.ports.1 {
                format!("{}", rule.ports.0)
            } else {
                format!("{}:{}", rule.ports.0, rule.ports.1)
            };
            let _ = writeln!(
                iptables,
                "-A INPUT -p {} -m {} --dport {ports} -m set --match-set {set} src -j ACCEPT",
                rule.proto.name(),
                rule.proto.name()
            );
        }
        iptables.push_str("COMMIT\n");
        (ipset, iptables)
    }
}

impl Policy {
    /// The CIDRs a CIDR or prefix list peer stands for; none for a group.
    fn cidrs_of(&self, peer: &Peer) -> Vec<(Ipv4Addr, u8)> {
        match peer {
            Peer::Cidr(addr, len) => vec![(*addr, *len)],
            Peer::PrefixList(name) => self
                .prefix_list(name)
                .map(|list| list.entries.clone())
                .unwrap_or_default(),
            Peer::Group(_) => Vec::new(),
        }
    }
}

fn port_expr(ports: (u16, u16)) -> String {
    if ports.0 == ports.1 {
        format!("{}", ports.0)
    } else {
        format!("{}-{}", ports.0, ports.1)
    }
}

/// `n`-th address of 172.16.0.0/12, skipping .0 and .255 so every member looks like a host.
pub fn member_address(n: usize) -> Ipv4Addr {
    let host = n / 254 * 256 + n % 254 + 1;
    let base = u32::from(Ipv4Addr::new(172, 16, 0, 0));
    Ipv4Addr::from(base + host as u32)
}

/// The `index`-th filler CIDR rule: distinct /24s in 10.64.0.0/10, every seventh a /16 in
/// 11.0.0.0/8 and every thirteenth a /32, so the trie holds prefixes of several lengths.
pub fn filler_cidr(index: usize) -> (Ipv4Addr, u8) {
    if index % 13 == 12 {
        let n = index as u32;
        (Ipv4Addr::from(0x0c00_0000 + n * 7 + 1), 32)
    } else if index % 7 == 6 {
        (Ipv4Addr::new(11, (index % 256) as u8, 0, 0), 16)
    } else {
        let n = index as u32;
        (
            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + (n << 8)),
            24,
        )
    }
}

/// The filler rule `index`: a CIDR rule on its own port (a range for every fifth), TCP mostly.
pub fn filler_rule(index: usize) -> Rule {
    let (addr, len) = filler_cidr(index);
    let port = 10_000 + (index as u16) * 20;
    Rule {
        proto: if index % 4 == 3 {
            Proto::Udp
        } else {
            Proto::Tcp
        },
        ports: if index % 5 == 4 {
            (port, port + 9)
        } else {
            (port, port)
        },
        peer: Peer::Cidr(addr, len),
    }
}
