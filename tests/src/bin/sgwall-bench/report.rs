//! BENCHMARKS.md: one fragment per section, each with the command that reproduces it, and a
//! targets table across sections. Fragments and target rows are kept in the output directory,
//! so re-running one section (`--only`) refreshes it and keeps the others.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{
    control::ControlResult,
    e2e::{E2eResult, Metric, Peer4},
    memory,
    micro::{Case, SetResult},
    stats::Summary,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    pub memory_gib: f64,
    pub load_average: String,
    pub commit: String,
    pub date: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: command_output("uname", &["-r"]),
        cpu,
        memory_gib: memory_kib / (1024.0 * 1024.0),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}

pub fn provenance(machine: &Machine, command: &str) -> String {
    format!(
        "Reproduce: `{command}`. Measured {} at commit {} on {} cores ({}), kernel {}, {:.0} GiB; \
         load average at start {}.\n\n",
        machine.date,
        machine.commit,
        machine.nproc,
        machine.cpu,
        machine.kernel,
        machine.memory_gib,
        machine.load_average
    )
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}

/// Micro tables: one row per case, one column per size, ns per packet.
pub fn micro_fragment(set: &SetResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Per-packet cost by {} (ns per packet, XDP ingress)\n",
        set.title
    );
    out.push_str(header);
    let _ = writeln!(
        out,
        "{} rounds; each round runs every candidate and case once, in shuffled order, as a \
         pass of {} packets drawn from a pool of {} distinct frames per case. Cell: median over \
         rounds of the pass median (min–max over rounds). Baseline `sgw_bench_pass` on the same \
         frames: **{} ns**.\n",
        set.rounds,
        set.packets_per_pass,
        set.pool,
        set.baseline.median_ns.show(0)
    );
    let sizes: Vec<String> = set
        .candidates
        .iter()
        .map(|c| format!("{} {}", human(c.size), set.dimension))
        .collect();
    let first = set.candidates.first();
    let last = set.candidates.last();
    let ratio_header = match (first, last) {
        (Some(a), Some(b)) => format!("ratio {}/{}", human(b.size), human(a.size)),
        _ => "ratio".into(),
    };
    let _ = writeln!(out, "| case | {} | {ratio_header} |", sizes.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(sizes.len()));
    let mut ratios = Vec::new();
    for case in Case::ALL {
        let cells: Vec<String> = set
            .candidates
            .iter()
            .map(|c| {
                c.cases
                    .get(&case)
                    .map_or("n/a".into(), |r| r.median_ns.show(0))
            })
            .collect();
        let ratio = match (first, last) {
            (Some(a), Some(b)) => match (a.cases.get(&case), b.cases.get(&case)) {
                (Some(x), Some(y)) => Some(y.median_ns.ratio_to(&x.median_ns)),
                _ => None,
            },
            _ => None,
        };
        let shown = ratio.as_ref().map_or("n/a".into(), |r| r.show(2));
        if let Some(r) = ratio {
            ratios.push((case, r));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {shown} |",
            case.label(),
            cells.join(" | ")
        );
    }
    let memory: Vec<String> = set
        .candidates
        .iter()
        .map(|c| memory::mib(memory::total(&c.memory)))
        .collect();
    let _ = writeln!(out, "| map memory (memlock) | {} | |", memory.join(" | "));
    let entries: Vec<String> = set
        .candidates
        .iter()
        .map(|c| format!("{} / {}", c.cidr_entries, c.port_entries))
        .collect();
    let _ = writeln!(
        out,
        "| policy entries: CIDR prefixes / port prefixes | {} | |",
        entries.join(" | ")
    );
    let setup: Vec<String> = set
        .candidates
        .iter()
        .map(|c| format!("{:.1} s", c.setup_seconds))
        .collect();
    let _ = writeln!(
        out,
        "| setup (parse, compile, load, apply, fill conntrack) | {} | |\n",
        setup.join(" | ")
    );
    let fixed = match set.dimension {
        "prefix list entries" => {
            "One rule (TCP 3100) names the list, all one interface may hold at 1000 entries \
             (R7); no members; 10k tracked flows."
        }
        "ACL entries" => {
            "0 ACL entries: the instance is in no subnet. With 40, every entry but the last \
             (allow all) denies traffic the benchmark never sends, so each packet's match is \
             the last entry. 100 rules, 1k members and 10k tracked flows."
        }
        _ => "Sizes not varied here stay at 100 rules, 1k members and 10k tracked flows.",
    };
    let _ = writeln!(
        out,
        "{fixed} Ratios are taken round by round (both passes of a ratio ran in the same \
         round), then summarised.\n"
    );
    let limit = match set.dimension {
        "rules" => Some(1.2),
        "members" => Some(1.15),
        "ACL entries" | "prefix list entries" => Some(1.1),
        _ => None,
    };
    let targets = match (limit, first, last) {
        (Some(limit), Some(a), Some(b)) => ratios
            .iter()
            .map(|(case, r)| TargetRow {
                target: format!(
                    "{}: cost at {} {} ≤ {limit}× cost at {}",
                    case.label(),
                    human(b.size),
                    set.dimension,
                    human(a.size)
                ),
                measured: format!("{}×", r.show(2)),
                met: Some(r.median <= limit),
            })
            .collect(),
        _ => Vec::new(),
    };
    (out, targets)
}

fn human(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn e2e_summary(result: &E2eResult, metric: Metric, peer: Peer4) -> Option<&Summary> {
    result
        .results
        .iter()
        .find(|r| r.metric == metric && r.peer == peer)
        .map(|r| &r.summary)
}

pub fn e2e_fragment(result: &E2eResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::new();
    out.push_str("### End to end through a veth pair\n\n");
    out.push_str(header);
    let _ = writeln!(
        out,
        "{} rounds; in each, every candidate is loaded in turn (order rotated per round) and \
         measured on all four figures; connection state is emptied before every measurement. \
         iperf3 runs {} s, UDP blasts {:.1} s, connection loops {} s with {} client threads. \
         Cell: median (min–max) over rounds. The policy has {} ingress rules.\n",
        result.rounds,
        result.seconds,
        result.blast_seconds,
        result.seconds,
        result.conn_workers,
        result.sgwall_rules
    );
    let peers = Peer4::ALL;
    let labels: Vec<&str> = peers.iter().map(|p| p.label()).collect();
    let _ = writeln!(out, "| figure | {} |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(peers.len()));
    for metric in Metric::ALL {
        let cells: Vec<String> = peers
            .iter()
            .map(|peer| {
                if metric == Metric::DeniedDropRate && *peer == Peer4::NoFilter {
                    return "— (nothing denies)".into();
                }
                e2e_summary(result, metric, *peer).map_or("n/a".into(), |s| {
                    s.show(if metric == Metric::TcpThroughput {
                        2
                    } else {
                        0
                    })
                })
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", metric.label(), cells.join(" | "));
    }
    out.push('\n');

    // sgwall's own cost per program run during the figures, from BPF run-time statistics.
    let _ = writeln!(
        out,
        "sgwall program cost in these runs (kernel BPF run-time statistics, mean ns per run, \
         median over rounds):\n"
    );
    let _ = writeln!(out, "| figure | candidate | program: ns per run |");
    let _ = writeln!(out, "|---|---|---|");
    for metric in Metric::ALL {
        for peer in [Peer4::SgwallXdp, Peer4::SgwallTc] {
            if let Some(r) = result
                .results
                .iter()
                .find(|r| r.metric == metric && r.peer == peer)
            {
                let mut names: Vec<&String> =
                    r.samples.iter().flat_map(|s| s.program_ns.keys()).collect();
                names.sort();
                names.dedup();
                let cells: Vec<String> = names
                    .iter()
                    .map(|name| {
                        let values: Vec<f64> = r
                            .samples
                            .iter()
                            .filter_map(|s| s.program_ns.get(*name).copied())
                            .collect();
                        format!("{name}: {:.0}", Summary::of(&values).median)
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    metric.label(),
                    peer.label(),
                    cells.join(", ")
                );
            }
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Client-side offloads with each candidate loaded (`ethtool -k`):\n"
    );
    for (peer, offloads) in &result.client_offloads {
        let _ = writeln!(out, "- {peer}: {offloads}");
    }
    out.push('\n');

    let mut targets = Vec::new();
    let mut ratio = |metric: Metric, sgwall: Peer4, base: Peer4, limit: f64, what: &str| {
        if let (Some(a), Some(b)) = (
            e2e_summary(result, metric, sgwall),
            e2e_summary(result, metric, base),
        ) {
            let r = a.ratio_to(b);
            targets.push(TargetRow {
                target: format!("{what}, {}: ≥ {limit}× {}", sgwall.label(), base.label()),
                measured: format!("{}×", r.show(2)),
                met: Some(r.median >= limit),
            });
        }
    };
    for sgwall in [Peer4::SgwallXdp, Peer4::SgwallTc] {
        ratio(
            Metric::TcpThroughput,
            sgwall,
            Peer4::NoFilter,
            0.95,
            "established TCP throughput",
        );
        ratio(
            Metric::UdpPps,
            sgwall,
            Peer4::Nftables,
            1.0,
            "established UDP pps",
        );
        ratio(
            Metric::DeniedDropRate,
            sgwall,
            Peer4::Nftables,
            1.0,
            "denied-flood drop rate",
        );
        ratio(
            Metric::NewConnections,
            sgwall,
            Peer4::Nftables,
            1.0,
            "new connections/s",
        );
    }
    (out, targets)
}

pub fn control_fragment(result: &ControlResult, header: &str) -> (String, Vec<TargetRow>) {
    let mut out = String::new();
    out.push_str("### Control plane\n\n");
    out.push_str(header);
    let _ = writeln!(
        out,
        "Policy: {} groups, {} members, {} interfaces ({} bytes of TOML). Each stage timed {} \
         times on a freshly loaded datapath; median (min–max), seconds.\n",
        result.groups, result.members, result.instances, result.toml_bytes, result.repeats
    );
    let _ = writeln!(out, "| stage | seconds |\n|---|---|");
    for (name, s) in [
        (
            "parse + validate (`config::load_str`)",
            &result.parse_validate,
        ),
        ("compile (`compile::compile`)", &result.compile),
        (
            "datapath load (verifier, map creation)",
            &result.datapath_load,
        ),
        (
            "apply: until the generation flip (rules in force)",
            &result.apply_until_flip,
        ),
        ("apply: total (every member written)", &result.apply_total),
        (
            "re-apply the same policy (reload, nothing changed)",
            &result.reapply_unchanged,
        ),
        (
            "**time to enforcement: rules** (parse → flip)",
            &result.to_rules_enforced,
        ),
        (
            "**time to enforcement: all members** (parse → apply done)",
            &result.to_fully_enforced,
        ),
    ] {
        let _ = writeln!(out, "| {name} | {} |", s.show(3));
    }
    let a = &result.add_member;
    let _ = writeln!(
        out,
        "\nAdd one member with the policy above loaded and the probe interface attached (XDP in, \
         TC out), {} additions, one at a time: `maps::apply_membership`, then a real UDP frame \
         from the new member is sent on the client end until the server's socket receives one \
         (median {} frame(s) per addition).\n",
        a.additions, a.probes_median
    );
    let _ = writeln!(out, "| | p50 | p99 | max |\n|---|---|---|---|");
    let _ = writeln!(
        out,
        "| `apply_membership` returns (µs) | {:.0} | {:.0} | {:.0} |",
        a.write_us_p50, a.write_us_p99, a.write_us_max
    );
    let _ = writeln!(
        out,
        "| first packet admitted (µs) | {:.0} | {:.0} | {:.0} |\n",
        a.enforced_us_p50, a.enforced_us_p99, a.enforced_us_max
    );
    let _ = writeln!(
        out,
        "Profile: the in-memory delta alone (`CompiledPolicy::apply_membership` on a copy of the \
         policy, no map write) takes {:.0} µs (median of 50).\n",
        a.delta_compute_us_p50
    );
    let _ = writeln!(
        out,
        "Map memory with this policy loaded (memlock, default capacities):\n"
    );
    let _ = writeln!(out, "| map | max entries | memlock |\n|---|---|---|");
    for map in &result.memory {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            map.name,
            map.max_entries,
            memory::mib(map.memlock_bytes)
        );
    }
    let _ = writeln!(
        out,
        "| **total** | | **{}** |\n",
        memory::mib(memory::total(&result.memory))
    );
    let entries: Vec<String> = result
        .map_entries
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(out, "Entries written: {}.\n", entries.join(", "));
    let f = &result.file_save;
    let _ = writeln!(
        out,
        "Time from config file save to enforcement: `sgwall run` (release build) enforces a \
         policy of {} rules and {} members on the server end of a veth pair and watches its \
         config; the benchmark saves a new version (write, then rename over, as editors do) and \
         sends a UDP frame the new version admits every 0.5 ms until the server's socket gets \
         one. {} saves of each kind; milliseconds, median (min–max). The agent waits 150 ms \
         (`CONFIG_SETTLE` in `agent/src/runtime/mod.rs`) for an editor's burst of writes to end \
         before it reloads.\n",
        f.rules, f.members, f.saves
    );
    let _ = writeln!(
        out,
        "| change saved | ms to the first admitted packet |\n|---|---|"
    );
    let _ = writeln!(
        out,
        "| a rule's port (full recompile, generation flip) | {} |",
        f.rule_change_ms.show(0)
    );
    let _ = writeln!(
        out,
        "| one member added to a referenced group (membership delta) | {} |\n",
        f.member_added_ms.show(0)
    );
    let targets = vec![TargetRow {
        target: "add one member at 100k loaded: p99 to enforcement ≤ 1 ms".into(),
        measured: format!(
            "p50 {:.0} µs, p99 {:.0} µs",
            a.enforced_us_p50, a.enforced_us_p99
        ),
        met: Some(a.enforced_us_p99 <= 1000.0),
    }];
    (out, targets)
}

/// Writes one section's fragment and target rows, then reassembles the whole document from
/// every section present in `dir`.
pub fn write_section(
    dir: &Path,
    section: &str,
    fragment: &str,
    targets: &[TargetRow],
) -> Result<()> {
    std::fs::write(dir.join(format!("{section}.md")), fragment)?;
    std::fs::write(
        dir.join(format!("{section}.targets.json")),
        serde_json::to_string_pretty(targets)?,
    )?;
    Ok(())
}

pub fn assemble(dir: &Path, sections: &[&str], notes: &str, mode: &str, out: &Path) -> Result<()> {
    let mut doc = String::from(
        "# sgwall benchmarks\n\nGenerated by `cargo xtask bench` (do not edit by hand: the \
         analysis at the end comes from `tests/src/bin/sgwall-bench/notes.md`). Raw figures: \
         `target/bench/*.json`. Every figure is a median of repeated runs with its min–max; \
         candidates compared with each other were interleaved in the same run, and ratios are \
         taken run by run.\n\n",
    );
    if mode != "full" {
        let _ = writeln!(
            doc,
            "**This is a `--{mode}` run: fewer rounds and shorter runs than the figures in the \
             repository's BENCHMARKS.md.**\n"
        );
    }
    let mut rows = Vec::new();
    let mut fragments = Vec::new();
    for section in sections {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{section}.targets.json"))) {
            let section_rows: Vec<TargetRow> =
                serde_json::from_str(&text).with_context(|| format!("{section} targets"))?;
            rows.extend(section_rows);
        }
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{section}.md"))) {
            fragments.push(text);
        }
    }
    doc.push_str(
        "## Targets\n\n| target | measured (median, min–max) | verdict |\n|---|---|---|\n",
    );
    for row in &rows {
        let _ = writeln!(
            doc,
            "| {} | {} | {} |",
            row.target,
            row.measured,
            verdict(row.met)
        );
    }
    doc.push_str("\n## Figures\n\n");
    for fragment in fragments {
        doc.push_str(&fragment);
    }
    doc.push_str("## Method and analysis\n\n");
    doc.push_str(notes);
    std::fs::write(out, doc).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
