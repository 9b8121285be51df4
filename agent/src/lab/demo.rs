//! `sgwall lab demo`: the three-tier example in a lab, its full reachability matrix, then a
//! live membership change (G3): a second app server joins `app-sg` and reaches the database
//! with no edit to the database's group.

use std::{
    io::Write,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{
    Lab, LabError, LabSettings, UpOptions,
    matrix::{Cell, Family, Matrix, ProbeOptions},
    render::{self, bold, dim, green, paint, red},
    topology::{self, Host, HostKind},
};
use crate::probe::Service;

/// The demo's config, written into the lab's state directory under this name.
pub const CONFIG_FILE: &str = "three-tier.toml";
pub const THREE_TIER: &str = include_str!("../../../examples/three-tier.toml");

/// The instance that joins in the live change.
const NEW_NAME: &str = "app-2";
const NEW_INTERFACE: &str = "sgw-app2";
const NEW_ADDRESSES: [&str; 2] = ["10.0.2.20", "fd00:2::20"];
const NEW_GROUP: &str = "app-sg";

const DIAGRAM: &str = concat!(
    "    internet ──80/443──▶ web-1 ──8080──▶ app-1 ──3306──▶ db-1\n",
    "    admin    ──22──────▶ web-1",
);

#[derive(Clone, Copy, Debug)]
pub struct DemoOptions {
    /// Leave the lab up at the end.
    pub keep: bool,
    pub probe: ProbeOptions,
}

/// How the demo went.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    pub cells: usize,
    pub disagreements: usize,
    pub elapsed: Duration,
}

/// The `[[instance]]` block the live change appends.
pub fn new_instance_toml() -> String {
    format!(
        "\n# Added by the demo's live change: a second app server (G3).\n\
         [[instance]]\n\
         name = \"{NEW_NAME}\"\n\
         interface = \"{NEW_INTERFACE}\"\n\
         attach = \"port\"\n\
         addresses = [\"{}\", \"{}\"]\n\
         security_groups = [\"{NEW_GROUP}\"]\n",
        NEW_ADDRESSES[0], NEW_ADDRESSES[1]
    )
}

fn step(out: &mut dyn Write, number: u32, text: &str) -> Result<(), LabError> {
    writeln!(
        out,
        "\n{} {}",
        paint(bold(), &format!("[{number}/4]")),
        paint(bold(), text)
    )
    .map_err(output_error)
}

fn output_error(source: std::io::Error) -> LabError {
    LabError::Io {
        what: "writing to",
        path: "stdout".into(),
        source,
    }
}

/// Runs the demo, writing to `out`. The lab is taken down at the end unless `keep`, and on
/// any error.
pub fn run(
    settings: &LabSettings,
    options: DemoOptions,
    out: &mut dyn Write,
) -> Result<DemoOutcome, LabError> {
    let started = Instant::now();
    let w = |e| output_error(e);
    writeln!(
        out,
        "{}\n\n{DIAGRAM}\n\n{}",
        paint(
            bold(),
            "sgwall lab demo: EC2 security groups on a three-tier network, with real traffic"
        ),
        paint(
            dim(),
            "Each tier admits only the tier in front of it, by security group reference. \
             Namespaces stand in for instances and clients, behind one router where sgwall \
             enforces each instance's port."
        )
    )
    .map_err(w)?;

    // A stale lab first, then the config the agent will watch.
    let replaced = Lab::down(settings);
    if replaced.removed_anything() {
        writeln!(
            out,
            "{}",
            paint(
                dim(),
                "(a lab that was up under the same names was removed first)"
            )
        )
        .map_err(w)?;
    }
    std::fs::create_dir_all(&settings.state_dir).map_err(|source| LabError::Io {
        what: "creating",
        path: settings.state_dir.clone(),
        source,
    })?;
    let config_path = settings.state_dir.join(CONFIG_FILE);
    std::fs::write(&config_path, THREE_TIER).map_err(|source| LabError::Io {
        what: "writing",
        path: config_path.clone(),
        source,
    })?;

    step(out, 1, "lab up: namespaces, veths, a router, and the agent")?;
    let (mut lab, report) = Lab::up(settings, &config_path, UpOptions::default())?;
    let result = run_with_lab(&mut lab, &report, options, out);
    if options.keep && result.is_ok() {
        step(out, 4, "lab kept")?;
        writeln!(
            out,
            "  The lab stays up: `ip netns list`, `sgwall lab probe`, the agent log in {}; \
             `sgwall lab down` removes it.",
            settings.state_dir.display()
        )
        .map_err(w)?;
    } else {
        let down_started = Instant::now();
        let down = lab.take_down();
        if result.is_ok() {
            step(out, 4, "lab down")?;
            writeln!(
                out,
                "  agent stopped, pins and {} namespaces removed in {:.1} s",
                down.namespaces.len(),
                down_started.elapsed().as_secs_f64()
            )
            .map_err(w)?;
        }
        for problem in &down.problems {
            writeln!(out, "cleanup: {problem}").map_err(w)?;
        }
    }
    let mut outcome = result?;
    outcome.elapsed = started.elapsed();
    let verdict = if outcome.disagreements == 0 {
        paint(
            green(),
            &format!(
                "all {} probes agree with the reference evaluator",
                outcome.cells
            ),
        )
    } else {
        paint(
            red(),
            &format!(
                "{} of {} probes disagree with the reference evaluator",
                outcome.disagreements, outcome.cells
            ),
        )
    };
    writeln!(
        out,
        "\nDemo finished in {:.1} s: {verdict}.",
        outcome.elapsed.as_secs_f64()
    )
    .map_err(w)?;
    Ok(outcome)
}

fn run_with_lab(
    lab: &mut Lab,
    report: &super::UpReport,
    options: DemoOptions,
    out: &mut dyn Write,
) -> Result<DemoOutcome, LabError> {
    let w = |e| output_error(e);
    writeln!(
        out,
        "  {} namespaces in {:.1} s; agent pid {} (log: {})",
        report.namespaces,
        report.topology_time.as_secs_f64(),
        report.agent_pid.map_or("?".to_string(), |p| p.to_string()),
        lab.settings().state_dir.join(super::AGENT_LOG).display(),
    )
    .map_err(w)?;
    for event in &report.enforcing {
        writeln!(out, "  {}", paint(green(), &event.to_string())).map_err(w)?;
    }
    writeln!(
        out,
        "  every interface enforcing {:.1} s after the agent started",
        report.agent_time.as_secs_f64()
    )
    .map_err(w)?;

    step(
        out,
        2,
        "lab probe: every source → every instance, on every port the rules name",
    )?;
    writeln!(
        out,
        "  {}",
        paint(
            dim(),
            &format!(
                "TCP connects, UDP echoes and pings, {} at a time; a blocked probe waits {} ms",
                options.probe.parallelism,
                options.probe.timeout.as_millis()
            )
        )
    )
    .map_err(w)?;
    out.flush().map_err(w)?;
    let matrix = lab.probe(options.probe)?;
    print_matrix(out, &matrix)?;
    let mut cells = matrix.cells.len();
    let mut disagreements = matrix.disagreements().len();

    step(
        out,
        3,
        &format!("live change: a second app server, {NEW_NAME}, joins {NEW_GROUP}"),
    )?;
    let (change_cells, change_disagreements) = live_change(lab, options, out)?;
    cells += change_cells;
    disagreements += change_disagreements;

    Ok(DemoOutcome {
        cells,
        disagreements,
        elapsed: Duration::ZERO,
    })
}

/// Prints the matrix, its legend, and a summary (with the disagreements, if any).
pub fn print_matrix(out: &mut dyn Write, matrix: &Matrix) -> Result<(), LabError> {
    let w = |e| output_error(e);
    writeln!(out, "{}", render::legend()).map_err(w)?;
    writeln!(out).map_err(w)?;
    write!(
        out,
        "{}",
        render::matrix_text(matrix, render::terminal_width())
    )
    .map_err(w)?;
    let acl_lines = render::acl_lines(matrix);
    if !acl_lines.is_empty() {
        writeln!(
            out,
            "\n{}",
            paint(
                bold(),
                "network ACLs at work (refused before or after the groups):"
            )
        )
        .map_err(w)?;
        for line in acl_lines {
            writeln!(out, "  {line}").map_err(w)?;
        }
    }
    let disagreements = render::disagreement_lines(matrix);
    let passing = matrix.cells.iter().filter(|c| c.expected.passes).count();
    writeln!(
        out,
        "\n{} probes in {:.2} s ({} expected to get through, {} blocked; timeout {} ms)",
        matrix.cells.len(),
        matrix.elapsed_ms as f64 / 1000.0,
        passing,
        matrix.cells.len() - passing,
        matrix.timeout_ms
    )
    .map_err(w)?;
    if disagreements.is_empty() {
        writeln!(
            out,
            "{}",
            paint(green(), "every cell agrees with the reference evaluator")
        )
        .map_err(w)?;
    } else {
        writeln!(
            out,
            "{}",
            paint(red(), &format!("{} cells disagree:", disagreements.len()))
        )
        .map_err(w)?;
        for line in disagreements {
            writeln!(out, "  {line}").map_err(w)?;
        }
    }
    Ok(())
}

/// The new host, the focused probes before and after it joins, and the config edit between.
fn live_change(
    lab: &mut Lab,
    options: DemoOptions,
    out: &mut dyn Write,
) -> Result<(usize, usize), LabError> {
    let w = |e| output_error(e);
    let addresses: Vec<IpAddr> = NEW_ADDRESSES
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let host = Host {
        name: NEW_NAME.to_string(),
        kind: HostKind::Instance,
        namespace: topology::namespace_name(&lab.state().prefix, NEW_NAME),
        router_interface: NEW_INTERFACE.to_string(),
        addresses,
        dhcp: false,
    };
    lab.add_hosts(vec![host])?;
    let mut config = lab.config()?;
    let database_group = config.group("db-sg").cloned();
    writeln!(
        out,
        "  {NEW_NAME} ({}) is up on {NEW_INTERFACE}, not yet in any group. db-sg admits \
         `tcp 3306 from sg:{NEW_GROUP}` and is never edited.",
        NEW_ADDRESSES.join(", ")
    )
    .map_err(w)?;

    let database = [(NEW_NAME, "db-1", Service::Tcp(3306))];
    let before = focused(lab, &config, &database, options)?;
    print_focused(out, "before", &before)?;

    let text = std::fs::read_to_string(lab.config_path()).map_err(|source| LabError::Io {
        what: "reading",
        path: lab.config_path().to_path_buf(),
        source,
    })?;
    let since = lab.log_position();
    let edited = Instant::now();
    lab.write_config(&(text + &new_instance_toml()))?;
    writeln!(
        out,
        "  {}   + [[instance]] {NEW_NAME}: interface {NEW_INTERFACE}, security_groups = [\"{NEW_GROUP}\"]",
        paint(bold(), "edit  "),
    )
    .map_err(w)?;
    let events = lab.wait_enforcing(&[NEW_INTERFACE.to_string()], since)?;
    for event in events {
        writeln!(
            out,
            "  {}   {} ({:.1} s after the edit)",
            paint(bold(), "agent "),
            paint(green(), &event.to_string()),
            edited.elapsed().as_secs_f64()
        )
        .map_err(w)?;
    }
    config = lab.config()?;
    let database_group_untouched = config.group("db-sg").cloned() == database_group;

    let after_probes = [
        (NEW_NAME, "db-1", Service::Tcp(3306)),
        ("web-1", NEW_NAME, Service::Tcp(8080)),
        ("internet", NEW_NAME, Service::Tcp(8080)),
        (NEW_NAME, "web-1", Service::Tcp(80)),
    ];
    let after = focused(lab, &config, &after_probes, options)?;
    print_focused(out, "after", &after)?;

    let cells = before.len() + after.len();
    let disagreements = before.iter().chain(&after).filter(|c| !c.agrees()).count();
    // Before, app-2 must be kept out of the database; after, let in: the demo's point.
    let story_holds = database_group_untouched
        && before.iter().all(|c| c.got_through() == Some(false))
        && after
            .iter()
            .filter(|c| c.source == NEW_NAME && c.destination == "db-1")
            .all(|c| c.got_through() == Some(true));
    let summary = if story_holds {
        paint(
            green(),
            &format!(
                "{NEW_NAME} reaches db-1:3306 because it is a member of {NEW_GROUP} (G3); \
                 db-sg was not touched."
            ),
        )
    } else {
        paint(red(), "the membership change did not behave as EC2 would")
    };
    writeln!(out, "  {summary}").map_err(w)?;
    Ok((cells, disagreements + usize::from(!story_holds)))
}

/// Probes `(source, destination, service)` in both families.
fn focused(
    lab: &Lab,
    config: &crate::model::Config,
    probes: &[(&str, &str, Service)],
    options: DemoOptions,
) -> Result<Vec<Cell>, LabError> {
    let mut cells = Vec::new();
    for (source, destination, service) in probes {
        let matrix = lab.probe_services(
            config,
            &[*service],
            Some((&[*source], &[*destination])),
            options.probe,
        )?;
        cells.extend(matrix.cells);
    }
    Ok(cells)
}

fn print_focused(out: &mut dyn Write, label: &str, cells: &[Cell]) -> Result<(), LabError> {
    let w = |e| output_error(e);
    let mut keys: Vec<(&str, &str, Service)> = Vec::new();
    for cell in cells {
        let key = (
            cell.source.as_str(),
            cell.destination.as_str(),
            cell.service,
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (index, (source, destination, service)) in keys.into_iter().enumerate() {
        // The label once, at the first line of its block.
        let shown = if index == 0 { label } else { "" };
        let mut line = format!(
            "  {}   {:<26}",
            paint(bold(), &format!("{shown:<6}")),
            format!("{source} → {destination} {service}")
        );
        let mut why = String::new();
        for family in Family::BOTH {
            let Some(cell) = cells.iter().find(|c| {
                c.source == source
                    && c.destination == destination
                    && c.service == service
                    && c.family == family
            }) else {
                continue;
            };
            let observed = cell.observed.map_or("?".to_string(), |o| o.to_string());
            let marks = format!(
                "{}{}{}",
                render::mark(cell.expected.passes),
                render::mark(cell.got_through() == Some(true)),
                if cell.agrees() { "=" } else { "!" }
            );
            let style = match (cell.agrees(), cell.got_through() == Some(true)) {
                (false, _) => render::alarm(),
                (true, true) => green(),
                (true, false) => dim(),
            };
            line.push_str(&format!(
                "  {} {}",
                family.label(),
                paint(style, &format!("{marks} {observed:<9}"))
            ));
            if why.is_empty() {
                why = cell.expected.why.clone();
            }
        }
        writeln!(out, "{line}  {}", paint(dim(), &why)).map_err(w)?;
    }
    Ok(())
}
