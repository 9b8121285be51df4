use std::path::Path;

use super::*;
use crate::{
    api::store::{Change, NewRule},
    config,
    model::{Direction, Peer, PortRange, Protocol},
};

fn load(text: &str) -> Config {
    config::load_str(text, Path::new("t.toml"))
        .expect("valid")
        .config
}

fn edit(text: &str, change: &Change) -> String {
    let config = load(text);
    let mut doc: DocumentMut = text.parse().expect("toml");
    apply(&mut doc, &config, change).expect("applies");
    let out = doc.to_string();
    load(&out);
    out
}

const MULTI: &str = r#"[[security_group]]
name = "web"
# two peers in one rule
ingress = [
  { protocol = "tcp", ports = 443, cidr = ["10.0.0.0/8", "192.168.0.0/16"] },
]
"#;

#[test]
fn r9_revoking_one_peer_of_a_shared_rule_keeps_the_others_id_and_the_files_style() {
    let config = load(MULTI);
    let group = &config.security_groups[0];
    let (gone, kept) = (
        group.ingress[0].ids[0].clone(),
        group.ingress[0].ids[1].clone(),
    );
    let out = edit(
        MULTI,
        &Change::RemoveRules {
            group_id: group.id.clone(),
            direction: Direction::Ingress,
            rule_ids: vec![gone.clone()],
        },
    );
    assert!(out.contains("# two peers in one rule"), "{out}");
    assert!(out.contains("ingress = ["), "inline style kept: {out}");
    let after = load(&out);
    assert_eq!(after.security_groups[0].ingress[0].ids, vec![kept]);
}

#[test]
fn r2_editing_a_default_egress_writes_it_out_first() {
    let config = load(MULTI);
    let group = &config.security_groups[0];
    let v4 = group.egress[0].ids[0].clone();
    let out = edit(
        MULTI,
        &Change::RemoveRules {
            group_id: group.id.clone(),
            direction: Direction::Egress,
            rule_ids: vec![v4],
        },
    );
    let after = load(&out);
    let egress = &after.security_groups[0];
    assert!(!egress.egress_is_default, "{out}");
    assert_eq!(egress.egress.len(), 1);
    assert_eq!(egress.egress[0].ids, vec![group.egress[0].ids[1].clone()]);
    // Adding a rule to a group of inline rules stays inline.
    let out = edit(
        &out,
        &Change::AddRules {
            group_id: group.id.clone(),
            direction: Direction::Ingress,
            rules: vec![NewRule {
                id: "sgr-0123456789abcdef0".into(),
                protocol: Protocol::Udp,
                ports: PortRange::Ports { from: 53, to: 53 },
                peer: Peer::Cidr("10.0.0.0/8".parse().expect("cidr")),
                description: String::new(),
                tags: Tags::new(),
            }],
        },
    );
    assert!(!out.contains("[[security_group.ingress]]"), "{out}");
    assert!(out.contains("sgr-0123456789abcdef0"), "{out}");
}
