//! Prometheus metrics over HTTP (`sgwall run --metrics-addr`), rendered from the pinned maps at
//! scrape time. A deliberately small HTTP/1.1 responder: one endpoint, bounded request size and
//! time, loopback by default.

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::Pinned;
use crate::pins::Paths;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("serving metrics on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

const REQUEST_LIMIT: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `address` and serves `/metrics` in the background for as long as the runtime lives.
pub async fn serve(address: SocketAddr, paths: Paths) -> Result<(), MetricsError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })?;
    tracing::info!("serving Prometheus metrics on http://{address}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let paths = paths.clone();
            tokio::spawn(async move {
                let mut request = Vec::with_capacity(1024);
                let mut buffer = [0u8; 1024];
                let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    while !request.windows(4).any(|w| w == b"\r\n\r\n")
                        && request.len() < REQUEST_LIMIT
                    {
                        let n = stream.read(&mut buffer).await?;
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buffer[..n]);
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
                if !matches!(read, Ok(Ok(()))) {
                    return;
                }
                let first_line = String::from_utf8_lossy(&request);
                let response = if first_line.starts_with("GET /metrics ") {
                    match render(paths) {
                        Ok(body) => http(200, "text/plain; version=0.0.4", &body),
                        Err(error) => http(500, "text/plain", &format!("{error}\n")),
                    }
                } else {
                    http(404, "text/plain", "only /metrics is served\n")
                };
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}

fn http(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text.
pub fn render(paths: Paths) -> Result<String, super::InspectError> {
    let pinned = Pinned::open(paths)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sgwall_packets_total Packets judged, by interface, direction, verdict and reason."
    );
    let _ = writeln!(out, "# TYPE sgwall_packets_total counter");
    let counters = pinned.counters()?;
    for row in &counters {
        let _ = writeln!(
            out,
            "sgwall_packets_total{{interface=\"{}\",direction=\"{}\",verdict=\"{}\",reason=\"{}\"}} {}",
            label(&row.interface),
            row.direction,
            row.verdict,
            row.reason,
            row.packets
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_bytes_total Bytes judged, by interface, direction, verdict and reason."
    );
    let _ = writeln!(out, "# TYPE sgwall_bytes_total counter");
    for row in &counters {
        let _ = writeln!(
            out,
            "sgwall_bytes_total{{interface=\"{}\",direction=\"{}\",verdict=\"{}\",reason=\"{}\"}} {}",
            label(&row.interface),
            row.direction,
            row.verdict,
            row.reason,
            row.bytes
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_drops_total Dropped packets by reason (all interfaces)."
    );
    let _ = writeln!(out, "# TYPE sgwall_drops_total counter");
    let mut drops = std::collections::BTreeMap::<&str, u64>::new();
    for row in counters.iter().filter(|r| r.verdict == "drop") {
        *drops.entry(row.reason.as_str()).or_default() += row.packets;
    }
    for (reason, packets) in &drops {
        let _ = writeln!(out, "sgwall_drops_total{{reason=\"{reason}\"}} {packets}");
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_conntrack_allowance_exceeded_total New flows dropped because the tracking table or the interface's allowance was full (C6)."
    );
    let _ = writeln!(
        out,
        "# TYPE sgwall_conntrack_allowance_exceeded_total counter"
    );
    for interface in &pinned.state.interfaces {
        let exceeded: u64 = counters
            .iter()
            .filter(|r| {
                r.interface == interface.interface && r.reason == "conntrack_allowance_exceeded"
            })
            .map(|r| r.packets)
            .sum();
        let _ = writeln!(
            out,
            "sgwall_conntrack_allowance_exceeded_total{{interface=\"{}\"}} {exceeded}",
            label(&interface.interface)
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_rule_hits_total New flows admitted by each rule."
    );
    let _ = writeln!(out, "# TYPE sgwall_rule_hits_total counter");
    let (acl_entries, rules): (Vec<_>, Vec<_>) = pinned
        .rule_hits()?
        .into_iter()
        .partition(|hits| hits.rule.acl_action.is_some());
    for rule in rules {
        let r = &rule.rule;
        let _ = writeln!(
            out,
            "sgwall_rule_hits_total{{interface=\"{}\",direction=\"{}\",group=\"{}\",rule=\"{}\",protocol=\"{}\",ports=\"{}\",peer=\"{}\"}} {}",
            label(&r.interface),
            r.direction,
            label(&r.group),
            r.rule_index,
            label(&r.protocol),
            label(&r.ports),
            label(&r.peer),
            rule.hits
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_acl_entry_hits_total Packets each network ACL entry matched (N2), \
         whether it allowed or denied them."
    );
    let _ = writeln!(out, "# TYPE sgwall_acl_entry_hits_total counter");
    for entry in acl_entries {
        let r = &entry.rule;
        let _ = writeln!(
            out,
            "sgwall_acl_entry_hits_total{{interface=\"{}\",direction=\"{}\",acl=\"{}\",entry=\"{}\",action=\"{}\"}} {}",
            label(&r.interface),
            r.direction,
            label(r.group.strip_prefix("acl:").unwrap_or(&r.group)),
            r.rule_index,
            r.acl_action
                .map(|action| action.to_string())
                .unwrap_or_default(),
            entry.hits
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_map_entries Entries in each datapath map."
    );
    let _ = writeln!(out, "# TYPE sgwall_map_entries gauge");
    let _ = writeln!(
        out,
        "# HELP sgwall_map_capacity Capacity (max_entries) of each datapath map."
    );
    let _ = writeln!(out, "# TYPE sgwall_map_capacity gauge");
    for map in pinned.fill()? {
        let _ = writeln!(
            out,
            "sgwall_map_entries{{map=\"{}\"}} {}",
            map.map, map.entries
        );
        let _ = writeln!(
            out,
            "sgwall_map_capacity{{map=\"{}\"}} {}",
            map.map, map.capacity
        );
    }
    let _ = writeln!(
        out,
        "# HELP sgwall_conntrack_established Established flows per interface (its C6 allowance counts these)."
    );
    let _ = writeln!(out, "# TYPE sgwall_conntrack_established gauge");
    for allowance in pinned.allowances()? {
        let _ = writeln!(
            out,
            "sgwall_conntrack_established{{interface=\"{}\"}} {}",
            label(&allowance.interface),
            allowance.established
        );
    }
    let _ = writeln!(out, "# HELP sgwall_reloads_total Config reloads by result.");
    let _ = writeln!(out, "# TYPE sgwall_reloads_total counter");
    let _ = writeln!(
        out,
        "sgwall_reloads_total{{result=\"applied\"}} {}",
        pinned.state.reloads.applied
    );
    let _ = writeln!(
        out,
        "sgwall_reloads_total{{result=\"rejected\"}} {}",
        pinned.state.reloads.rejected
    );
    let _ = writeln!(
        out,
        "# HELP sgwall_policy_generation The policy generation in force."
    );
    let _ = writeln!(out, "# TYPE sgwall_policy_generation gauge");
    let _ = writeln!(out, "sgwall_policy_generation {}", pinned.generation()?);
    Ok(out)
}
