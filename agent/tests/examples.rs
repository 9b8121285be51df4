//! Every example config under `examples/` loads as its comments say (tier 1, no root).

use std::path::{Path, PathBuf};

use sgwall::{
    config::{self, ConfigError},
    model::{Direction, Peer, PortRange, Protocol, effective_rules},
};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every valid example loads with no warning: none of them exists to show one.
#[test]
fn every_valid_example_loads_without_warnings() {
    let mut checked = 0;
    let entries = std::fs::read_dir(examples_dir()).expect("examples/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|ext| ext != "toml") || path.ends_with("invalid.toml") {
            continue;
        }
        match config::load(&path) {
            Ok(loaded) => assert!(
                loaded.warnings.is_empty(),
                "{}: unexpected warnings:\n{}",
                path.display(),
                loaded
                    .warnings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Err(error) => panic!("{}:\n{error}", path.display()),
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected at least three valid examples, found {checked}"
    );
}

#[test]
fn invalid_example_reports_many_errors_at_once() {
    match config::load(&examples_dir().join("invalid.toml")) {
        Err(ConfigError::Invalid { errors, .. }) => assert!(errors.len() >= 10, "{errors:#?}"),
        other => panic!("invalid.toml must not load: {other:?}"),
    }
}

/// The demo topology (`sgwall lab`): the tiers admit only the tier in front of them.
#[test]
fn three_tier_is_the_demo_topology() {
    let config = config::load(&examples_dir().join("three-tier.toml"))
        .expect("three-tier.toml is valid")
        .config;
    let names: Vec<&str> = config
        .security_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["web-sg", "app-sg", "db-sg"]);
    let interfaces: Vec<&str> = config
        .instances
        .iter()
        .map(|i| i.interface.as_str())
        .collect();
    assert_eq!(interfaces, ["sgw-web1", "sgw-app1", "sgw-db1"]);
    assert!(
        config.security_groups.iter().all(|g| g.egress_is_default),
        "R2"
    );

    let db = config.instance("db-1").expect("db-1");
    let rules = effective_rules(&config, db, Direction::Ingress);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].protocol, Protocol::Tcp);
    assert_eq!(
        rules[0].ports,
        PortRange::Ports {
            from: 3306,
            to: 3306
        }
    );
    assert_eq!(rules[0].peer, Peer::Group("app-sg".into()));

    // G1, G2: app-1 here and app-9 elsewhere, all their addresses.
    let app_members: Vec<String> = config
        .group_members("app-sg")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        app_members,
        ["10.0.2.10", "fd00:2::10", "10.0.2.99", "fd00:2::99"]
    );

    let clients: Vec<&str> = config.lab.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clients, ["internet", "admin"]);

    // The one-pass counts agree with resolving each group on its own.
    let counts = config.group_member_counts();
    for group in &config.security_groups {
        assert_eq!(
            counts.get(group.name.as_str()).copied().unwrap_or(0),
            config.group_members(&group.name).len(),
            "{}",
            group.name
        );
    }
    assert_eq!(counts.get("app-sg"), Some(&4));
}

/// G4: the default group admits all protocols from itself.
#[test]
fn default_group_references_itself() {
    let config = config::load(&examples_dir().join("default-group.toml"))
        .expect("default-group.toml is valid")
        .config;
    let group = config.group("default").expect("the default group");
    assert_eq!(group.ingress.len(), 1);
    assert_eq!(group.ingress[0].protocol, Protocol::All);
    assert_eq!(group.ingress[0].peers, [Peer::Group("default".into())]);
    assert_eq!(config.group_members("default").len(), 6);
}

#[test]
fn dual_stack_has_icmp_types_ranges_and_protocol_numbers() {
    let config = config::load(&examples_dir().join("dual-stack.toml"))
        .expect("dual-stack.toml is valid")
        .config;
    let group = config.group("edge-sg").expect("edge-sg");
    let selectors: Vec<(Protocol, PortRange)> = group
        .ingress
        .iter()
        .map(|r| (r.protocol, r.ports))
        .collect();
    assert!(selectors.contains(&(
        Protocol::Udp,
        PortRange::Ports {
            from: 60000,
            to: 61000
        }
    )));
    assert!(selectors.contains(&(
        Protocol::Icmp,
        PortRange::Icmp {
            icmp_type: Some(3),
            code: Some(4)
        }
    )));
    assert!(selectors.contains(&(
        Protocol::Icmpv6,
        PortRange::Icmp {
            icmp_type: Some(128),
            code: None
        }
    )));
    assert!(selectors.contains(&(Protocol::Number(47), PortRange::Any)));
    assert!(!group.egress_is_default);
    assert_eq!(group.egress.len(), 4);
}
