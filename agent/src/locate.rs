//! Finding the interfaces of instances that do not name them: libvirt names a VM's tap
//! `vnetN` afresh at every start, so an instance may give the guest's `mac` (libvirt gives the
//! tap the same MAC with the first octet 0xfe), a `host_mac`, or a pattern such as
//! `tap101i*`. [`resolve`] is pure: it takes the interfaces present and gives the config
//! with each found interface named, which every later stage (compile, apply, attach) then
//! treats as if the config had named it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Config, InterfaceMatch, MacAddr};

/// An interface present on the host (in the agent's network namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLink {
    pub name: String,
    pub mac: Option<MacAddr>,
}

/// Why an instance has no interface yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotFound {
    /// Nothing present matches: the VM is not running (yet).
    Absent(String),
    /// More than one interface matches: which one is the instance's is not for the agent to
    /// guess, so none is enforced until the config or the host says which.
    Ambiguous(String),
}

impl NotFound {
    pub fn detail(&self) -> &str {
        match self {
            NotFound::Absent(detail) | NotFound::Ambiguous(detail) => detail,
        }
    }
}

/// The config with found interfaces named, and what was not found, by instance name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub config: Config,
    pub not_found: BTreeMap<String, NotFound>,
}

/// The interfaces `config` found by pattern or MAC, by instance name: what [`resolve`] keeps.
pub fn found(config: &Config) -> BTreeMap<String, String> {
    config
        .instances
        .iter()
        .filter(|i| i.is_located())
        .map(|i| (i.name.clone(), i.interface.clone()))
        .collect()
}

/// Whether any instance of `config` needs [`resolve`].
pub fn needs_links(config: &Config) -> bool {
    config.instances.iter().any(|i| i.is_located())
}

/// Names the interface of every instance found by pattern or MAC. Interfaces that instances
/// name outright are never taken by a pattern or a MAC, and an interface goes to one instance
/// at most (the first in the file that finds it alone). `found_before` gives, by instance name,
/// the interface each is enforced on now: an instance keeps it while it still matches, even
/// when a second one appears that matches too, so a new interface never takes enforcement
/// away from one already enforced (H4).
pub fn resolve(
    config: &Config,
    links: &[HostLink],
    found_before: &BTreeMap<String, String>,
) -> Resolved {
    let mut taken: BTreeSet<&str> = config
        .instances
        .iter()
        .filter(|i| !i.is_located())
        .map(|i| i.interface.as_str())
        .collect();
    let mut resolved = config.clone();
    let mut not_found = BTreeMap::new();
    for instance in resolved.instances.iter_mut() {
        let matches = |link: &HostLink| match &instance.interface_match {
            InterfaceMatch::Name => false,
            InterfaceMatch::Glob(pattern) => {
                glob::Pattern::new(pattern).is_ok_and(|p| p.matches(&link.name))
            }
            InterfaceMatch::HostMac(mac) => link.mac == Some(*mac),
        };
        let wanted = instance.interface_match.describe(&instance.interface);
        let candidates: Vec<&HostLink> = links
            .iter()
            .filter(|link| !taken.contains(link.name.as_str()) && matches(link))
            .collect();
        let kept = found_before
            .get(&instance.name)
            .and_then(|before| candidates.iter().find(|link| link.name == *before));
        match candidates.as_slice() {
            _ if !instance.is_located() => {}
            _ if let Some(kept) = kept => {
                taken.insert(kept.name.as_str());
                instance.interface = kept.name.clone();
            }
            [] => {
                let detail = match &instance.interface_match {
                    InterfaceMatch::HostMac(mac) => format!("no interface has MAC {mac}"),
                    _ => format!("no interface matches {wanted}"),
                };
                not_found.insert(instance.name.clone(), NotFound::Absent(detail));
            }
            [found] => {
                taken.insert(found.name.as_str());
                instance.interface = found.name.clone();
            }
            several => {
                let names: Vec<&str> = several.iter().map(|l| l.name.as_str()).collect();
                let detail = format!(
                    "{} interfaces match {wanted} ({}); it must find one",
                    names.len(),
                    names.join(", ")
                );
                not_found.insert(instance.name.clone(), NotFound::Ambiguous(detail));
            }
        }
    }
    Resolved {
        config: resolved,
        not_found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMS: &str = r#"
[[security_group]]
name = "vm"

[[instance]]
name = "libvirt"
mac = "52:54:00:12:34:56"
addresses = ["10.0.0.1"]
security_groups = ["vm"]

[[instance]]
name = "proxmox"
interface = "tap101i*"
addresses = ["10.0.0.2"]
security_groups = ["vm"]

[[instance]]
name = "named"
interface = "tap101i9"
addresses = ["10.0.0.3"]
security_groups = ["vm"]
"#;

    fn link(name: &str, mac: &str) -> HostLink {
        HostLink {
            name: name.to_string(),
            mac: Some(mac.parse().expect("mac")),
        }
    }

    fn interfaces(resolved: &Resolved) -> Vec<&str> {
        resolved
            .config
            .instances
            .iter()
            .map(|i| i.interface.as_str())
            .collect()
    }

    fn config() -> Config {
        crate::config::load_str(VMS, std::path::Path::new("vms.toml"))
            .expect("valid")
            .config
    }

    #[test]
    fn finds_a_libvirt_tap_by_the_guests_mac_and_a_proxmox_tap_by_pattern() {
        let links = [
            link("eth0", "52:54:00:12:34:56"),
            link("vnet7", "fe:54:00:12:34:56"),
            link("tap101i0", "aa:00:00:00:00:01"),
            link("tap101i9", "aa:00:00:00:00:09"),
        ];
        let resolved = resolve(&config(), &links, &BTreeMap::new());
        assert_eq!(interfaces(&resolved), ["vnet7", "tap101i0", "tap101i9"]);
        assert!(resolved.not_found.is_empty());
    }

    #[test]
    fn waits_for_what_is_absent_and_refuses_to_guess_between_several() {
        let links = [
            link("tap101i0", "aa:00:00:00:00:01"),
            link("tap101i1", "aa:00:00:00:00:02"),
        ];
        let resolved = resolve(&config(), &links, &BTreeMap::new());
        assert_eq!(
            interfaces(&resolved),
            ["mac fe:54:00:12:34:56", "tap101i*", "tap101i9"]
        );
        assert_eq!(
            resolved.not_found["libvirt"],
            NotFound::Absent("no interface has MAC fe:54:00:12:34:56".to_string())
        );
        assert_eq!(
            resolved.not_found["proxmox"],
            NotFound::Ambiguous(
                "2 interfaces match tap101i* (tap101i0, tap101i1); it must find one".to_string()
            )
        );
        // The named instance is not looked for: absent, it waits as it always did.
        assert!(!resolved.not_found.contains_key("named"));
    }

    #[test]
    fn an_enforced_interface_stays_found_when_a_second_one_matches_h4() {
        let one = [link("tap101i0", "aa:00:00:00:00:01")];
        let first = resolve(&config(), &one, &BTreeMap::new());
        assert_eq!(first.config.instances[1].interface, "tap101i0");
        let two = [
            link("tap101i0", "aa:00:00:00:00:01"),
            link("tap101i1", "aa:00:00:00:00:02"),
        ];
        let again = resolve(&config(), &two, &found(&first.config));
        assert_eq!(again.config.instances[1].interface, "tap101i0");
        assert!(!again.not_found.contains_key("proxmox"));
        // Once it is gone, the one left is found; two new ones are still not guessed between.
        let moved = resolve(&config(), &two[1..], &found(&again.config));
        assert_eq!(moved.config.instances[1].interface, "tap101i1");
        let fresh = resolve(&config(), &two, &BTreeMap::new());
        assert!(matches!(
            fresh.not_found.get("proxmox"),
            Some(NotFound::Ambiguous(_))
        ));
    }

    #[test]
    fn nothing_to_look_for_without_patterns_or_macs() {
        let named = crate::config::load_str(
            &VMS.replace("mac = \"52:54:00:12:34:56\"", "interface = \"vnet0\"")
                .replace("tap101i*", "tap101i0"),
            std::path::Path::new("vms.toml"),
        )
        .expect("valid")
        .config;
        assert!(!needs_links(&named));
        assert!(needs_links(&config()));
    }
}
