//! What each `sgwall lab` command prints. `main.rs` parses arguments and calls these.

use std::{io::Write, path::Path, time::Duration};

use super::{
    Lab, LabError, LabSettings, UpOptions,
    demo::{self, DemoOptions},
    matrix::ProbeOptions,
    render::{bold, dim, green, paint, red},
};

fn w(source: std::io::Error) -> LabError {
    LabError::Io {
        what: "writing to",
        path: "stdout".into(),
        source,
    }
}

/// `sgwall lab up`. Returns whether everything came up.
pub fn up(
    settings: &LabSettings,
    config: &Path,
    options: UpOptions,
    out: &mut dyn Write,
) -> Result<bool, LabError> {
    let (lab, report) = Lab::up(settings, config, options)?;
    let topology = lab.topology();
    writeln!(
        out,
        "{} {} namespaces in {:.1} s (router {}), state in {}",
        paint(bold(), "lab up:"),
        report.namespaces,
        report.topology_time.as_secs_f64(),
        topology.router,
        settings.state_dir.display()
    )
    .map_err(w)?;
    let config = lab.config()?;
    for host in &topology.hosts {
        let addresses: Vec<String> = host.addresses.iter().map(ToString::to_string).collect();
        // N1: where an instance's traffic meets a network ACL.
        let subnet = config
            .instance(&host.name)
            .and_then(|instance| config.acl_of(instance))
            .map_or(String::new(), |(subnet, acl)| {
                format!("  subnet {} (network ACL {})", subnet.name, acl.name)
            });
        writeln!(
            out,
            "  {:<10} {:<8} namespace {:<18} router side {:<10} {}{subnet}",
            host.name,
            match host.kind {
                super::topology::HostKind::Instance => "instance",
                super::topology::HostKind::Client => "client",
            },
            host.namespace,
            host.router_interface,
            addresses.join(", ")
        )
        .map_err(w)?;
    }
    writeln!(
        out,
        "agent pid {} (sgwall run --netns {} --pin-dir {}), log {}",
        report.agent_pid.map_or("?".to_string(), |p| p.to_string()),
        topology.router,
        settings.pin_dir.display(),
        lab.state()
            .agent
            .as_ref()
            .map_or("?".to_string(), |a| a.log.display().to_string())
    )
    .map_err(w)?;
    for event in &report.enforcing {
        writeln!(out, "  {}", paint(green(), &event.to_string())).map_err(w)?;
    }
    for problem in &report.problems {
        writeln!(out, "{} {problem}", paint(red(), "problem:")).map_err(w)?;
    }
    if report.problems.is_empty() {
        writeln!(
            out,
            "every interface enforcing after {:.1} s. Next: `sgwall lab probe`; `sgwall lab down` removes the lab.",
            report.agent_time.as_secs_f64()
        )
        .map_err(w)?;
    } else {
        writeln!(
            out,
            "the lab stays up for inspection (--keep-going); `sgwall lab down` removes it."
        )
        .map_err(w)?;
    }
    Ok(report.problems.is_empty())
}

/// `sgwall lab probe`. Returns whether every cell agrees.
pub fn probe(
    settings: &LabSettings,
    json: bool,
    options: ProbeOptions,
    out: &mut dyn Write,
) -> Result<bool, LabError> {
    let mut lab = Lab::open(settings)?;
    let running = lab.agent_running();
    let matrix = lab.probe(options)?;
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "config": lab.config_path(),
            "agent_running": running,
            "disagreements": matrix.disagreements().len(),
            "matrix": matrix,
        }))
        .map_err(|source| LabError::State {
            path: "stdout".into(),
            source,
        })?;
        writeln!(out, "{text}").map_err(w)?;
    } else {
        if !running {
            writeln!(
                out,
                "{} the lab's agent is not running: what is enforced is what it left pinned.",
                paint(red(), "warning:")
            )
            .map_err(w)?;
        }
        writeln!(
            out,
            "{} {}",
            paint(bold(), "lab probe:"),
            paint(dim(), &lab.config_path().display().to_string())
        )
        .map_err(w)?;
        demo::print_matrix(out, &matrix)?;
        // Instances added to the config after `lab up` have no namespace to probe.
        let config = lab.config()?;
        let missing: Vec<&str> = config
            .instances
            .iter()
            .filter(|i| lab.topology().host(&i.name).is_none())
            .map(|i| i.name.as_str())
            .collect();
        if !missing.is_empty() {
            writeln!(
                out,
                "{} not in the lab (added to the config after `lab up`): {}; run `sgwall lab up` again to include them",
                paint(dim(), "not probed:"),
                missing.join(", ")
            )
            .map_err(w)?;
        }
    }
    Ok(matrix.disagreements().is_empty())
}

/// `sgwall lab down`. Returns whether cleanup had no problem.
pub fn down(settings: &LabSettings, out: &mut dyn Write) -> Result<bool, LabError> {
    let report = Lab::down(settings);
    if report.removed_anything() {
        writeln!(
            out,
            "{} {}{} namespaces removed{}",
            paint(bold(), "lab down:"),
            report
                .agent_stopped
                .map_or(String::new(), |pid| format!("agent {pid} stopped, ")),
            report.namespaces.len(),
            if report.pins_removed {
                ", pins removed"
            } else {
                ""
            }
        )
        .map_err(w)?;
    } else {
        writeln!(out, "{} nothing to remove", paint(bold(), "lab down:")).map_err(w)?;
    }
    for problem in &report.problems {
        writeln!(out, "{} {problem}", paint(red(), "problem:")).map_err(w)?;
    }
    Ok(report.problems.is_empty())
}

/// `sgwall lab demo`. Returns whether every probe agreed.
pub fn demo(
    settings: &LabSettings,
    keep: bool,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<bool, LabError> {
    let outcome = demo::run(
        settings,
        DemoOptions {
            keep,
            probe: ProbeOptions {
                timeout,
                ..ProbeOptions::default()
            },
        },
        out,
    )?;
    Ok(outcome.disagreements == 0)
}
