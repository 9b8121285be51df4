//! Text output of the lab: the reachability matrix, readable at a glance. Styles are ANSI
//! sequences; `anstream` drops them when stdout is no terminal (or NO_COLOR is set).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::matrix::{Cell, Matrix};
use crate::probe::Service;

pub const PASS: &str = "✓";
pub const BLOCK: &str = "✗";
const AGREE: &str = "=";
const DISAGREE: &str = "!";

pub fn green() -> Style {
    AnsiColor::Green.on_default()
}

pub fn dim() -> Style {
    Style::new().dimmed()
}

pub fn bold() -> Style {
    Style::new().bold()
}

pub fn alarm() -> Style {
    AnsiColor::BrightWhite.on(AnsiColor::Red).bold()
}

pub fn red() -> Style {
    AnsiColor::Red.on_default().bold()
}

/// `text` in `style`.
pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

pub fn mark(passes: bool) -> &'static str {
    if passes { PASS } else { BLOCK }
}

/// The three marks of a cell, styled: expected, observed, agreement.
fn cell_marks(cell: Option<&Cell>) -> (String, usize) {
    let Some(cell) = cell else {
        return (paint(dim(), " · "), 3);
    };
    let Some(observed) = cell.got_through() else {
        return (format!("{}? ", mark(cell.expected.passes)), 3);
    };
    let text = format!(
        "{}{}{}",
        mark(cell.expected.passes),
        mark(observed),
        if cell.agrees() { AGREE } else { DISAGREE }
    );
    let style = match (cell.agrees(), observed) {
        (false, _) => alarm(),
        (true, true) => green(),
        (true, false) => dim(),
    };
    (paint(style, &text), 3)
}

fn protocol_of(service: Service) -> &'static str {
    match service {
        Service::Tcp(_) => "tcp",
        Service::Udp(_) => "udp",
        Service::IcmpEcho => "icmp",
    }
}

fn port_of(service: Service) -> String {
    match service {
        Service::Tcp(port) | Service::Udp(port) => port.to_string(),
        Service::IcmpEcho => "echo".to_string(),
    }
}

fn column_width(service: Service) -> usize {
    port_of(service).len().max(3) + 1
}

fn pad(text: &str, visible: usize, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

/// The matrix as text, in blocks of destinations that fit in `width` columns.
pub fn matrix_text(matrix: &Matrix, width: usize) -> String {
    let label_width = matrix
        .rows
        .iter()
        .map(|r| r.source.chars().count())
        .max()
        .unwrap_or(0)
        + " v4 ".len();
    let group_width: usize = matrix
        .services
        .iter()
        .map(|s| column_width(*s))
        .sum::<usize>()
        + 2;
    let per_block = ((width.saturating_sub(label_width + 1)) / group_width.max(1)).max(1);
    let mut out = String::new();
    for (block_index, block) in matrix.destinations.chunks(per_block).enumerate() {
        if block_index > 0 {
            out.push('\n');
        }
        render_block(&mut out, matrix, block, label_width);
    }
    out
}

fn render_block(out: &mut String, matrix: &Matrix, destinations: &[String], label_width: usize) {
    let group_width: usize = matrix.services.iter().map(|s| column_width(*s)).sum();
    // Line 1: destination names over their columns.
    let mut line = " ".repeat(label_width);
    for destination in destinations {
        let name: String = destination.chars().take(group_width).collect();
        let visible = name.chars().count();
        line.push_str("│ ");
        line.push_str(&pad(&paint(bold(), &name), visible, group_width));
    }
    let _ = writeln!(out, "{}", line.trim_end());
    // Line 2: protocol at the first column of each protocol; line 3: ports.
    let mut protocols = " ".repeat(label_width);
    let mut ports = " ".repeat(label_width);
    for _ in destinations {
        protocols.push_str("│ ");
        ports.push_str("│ ");
        let mut previous = "";
        for service in &matrix.services {
            let w = column_width(*service);
            let protocol = protocol_of(*service);
            let shown = if protocol == previous { "" } else { protocol };
            previous = protocol;
            protocols.push_str(&pad(&paint(dim(), shown), shown.len(), w));
            let port = port_of(*service);
            ports.push_str(&pad(&port, port.len(), w));
        }
    }
    let _ = writeln!(out, "{}", protocols.trim_end());
    let _ = writeln!(out, "{}", ports.trim_end());
    // One line per source and family.
    let mut previous_source = "";
    for row in &matrix.rows {
        let name = if row.source == previous_source {
            String::new()
        } else {
            row.source.clone()
        };
        previous_source = &row.source;
        let label = format!(
            "{name:<width$} {}",
            row.family.label(),
            width = label_width - 4
        );
        let mut line = pad(&label, label.chars().count(), label_width);
        for destination in destinations {
            line.push_str("│ ");
            for service in &matrix.services {
                let cell = matrix.cell(&row.source, row.family, destination, *service);
                let (text, visible) = cell_marks(cell);
                line.push_str(&pad(&text, visible, column_width(*service)));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

pub fn legend() -> String {
    format!(
        "each cell: expected, observed, agreement   {} gets through  {} blocked   {} agrees  {} disagrees   {} not probed (same host or no such address family)",
        paint(green(), PASS),
        paint(dim(), BLOCK),
        AGREE,
        paint(alarm(), DISAGREE),
        paint(dim(), "·"),
    )
}

/// One line per disagreeing cell, with what was expected and why.
pub fn disagreement_lines(matrix: &Matrix) -> Vec<String> {
    matrix
        .disagreements()
        .into_iter()
        .map(|cell| {
            format!(
                "{} {} → {} {}: expected {} ({}), observed {}",
                cell.source,
                cell.family.label(),
                cell.destination,
                cell.service,
                if cell.expected.passes {
                    "to get through"
                } else {
                    "blocked"
                },
                cell.expected.why,
                cell.observed
                    .map_or("nothing".to_string(), |o| o.to_string()),
            )
        })
        .collect()
}

/// Examples shown per ACL refusal under "network ACLs at work".
const ACL_EXAMPLES: usize = 3;

/// The cells a network ACL refused rather than the groups (N2-N4), grouped by the entry that
/// refused them (the evaluator's `why`): one line each, with a count and a few examples.
pub fn acl_lines(matrix: &Matrix) -> Vec<String> {
    let mut by_why: Vec<(&str, Vec<String>)> = Vec::new();
    for cell in matrix.cells.iter().filter(|c| c.expected.refused_by_acl) {
        let example = format!(
            "{} → {} {} {}",
            cell.source,
            cell.destination,
            cell.service,
            cell.family.label()
        );
        match by_why.iter_mut().find(|(why, _)| *why == cell.expected.why) {
            Some((_, examples)) => examples.push(example),
            None => by_why.push((&cell.expected.why, vec![example])),
        }
    }
    by_why
        .into_iter()
        .map(|(why, examples)| {
            let more = examples.len().saturating_sub(ACL_EXAMPLES);
            let shown = examples[..examples.len().min(ACL_EXAMPLES)].join(", ");
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{why}\n      {} probes: {shown}{more}", examples.len())
        })
        .collect()
}

/// The terminal's width when stdout is one, else a width for logs.
pub fn terminal_width() -> usize {
    use std::io::IsTerminal as _;
    const FOR_LOGS: usize = 160;
    if !std::io::stdout().is_terminal() {
        return FOR_LOGS;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct it is given.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        lab::matrix::{Expectation, Family, Row},
        probe::Outcome,
    };

    fn cell(
        source: &str,
        destination: &str,
        service: Service,
        expected: bool,
        observed: Outcome,
    ) -> Cell {
        Cell {
            source: source.into(),
            destination: destination.into(),
            family: Family::Ipv4,
            service,
            source_address: "10.0.0.1".parse().unwrap(),
            destination_address: "10.0.0.2".parse().unwrap(),
            expected: Expectation {
                passes: expected,
                why: "because".into(),
                refused_by_acl: false,
            },
            observed: Some(observed),
            attempts: 1,
        }
    }

    fn matrix() -> Matrix {
        Matrix {
            rows: vec![
                Row {
                    source: "internet".into(),
                    family: Family::Ipv4,
                    filtered: false,
                },
                Row {
                    source: "web-1".into(),
                    family: Family::Ipv4,
                    filtered: true,
                },
            ],
            destinations: vec!["web-1".into(), "db-1".into()],
            services: vec![Service::Tcp(80), Service::Tcp(3306), Service::IcmpEcho],
            cells: vec![
                cell(
                    "internet",
                    "web-1",
                    Service::Tcp(80),
                    true,
                    Outcome::Reached,
                ),
                cell(
                    "internet",
                    "db-1",
                    Service::Tcp(3306),
                    false,
                    Outcome::TimedOut,
                ),
                cell(
                    "internet",
                    "db-1",
                    Service::IcmpEcho,
                    false,
                    Outcome::Reached,
                ),
            ],
            timeout_ms: 1000,
            elapsed_ms: 10,
        }
    }

    #[test]
    fn matrix_text_has_a_row_per_source_and_three_marks_per_cell() {
        let text = anstream::adapter::strip_str(&matrix_text(&matrix(), 200)).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains("│ web-1") && lines[0].contains("│ db-1"),
            "{text}"
        );
        assert!(lines[2].contains("80  3306 echo"), "{text}");
        assert_eq!(
            lines[3], "internet v4 │ ✓✓=  ·    ·   │  ·  ✗✗=  ✗✓!",
            "{text}"
        );
        assert!(lines[4].starts_with("web-1"), "{text}");
    }

    #[test]
    fn narrow_terminals_get_one_block_per_destination() {
        let text = anstream::adapter::strip_str(&matrix_text(&matrix(), 40)).to_string();
        assert_eq!(text.lines().filter(|l| l.contains("│ web-1")).count(), 1);
        assert_eq!(text.lines().filter(|l| l.contains("│ db-1")).count(), 1);
        assert_eq!(text.lines().count(), 11, "{text}");
    }

    #[test]
    fn acl_refusals_are_grouped_by_the_entry_that_refused_them() {
        let mut matrix = matrix();
        let refused = |service| {
            let mut cell = cell("internet", "db-1", service, false, Outcome::TimedOut);
            cell.expected.why = "dropped on db-1 ingress: network ACL private entry *".into();
            cell.expected.refused_by_acl = true;
            cell
        };
        matrix.cells = (1..=5).map(|port| refused(Service::Tcp(port))).collect();
        matrix.cells.push(cell(
            "internet",
            "web-1",
            Service::Tcp(80),
            true,
            Outcome::Reached,
        ));
        assert_eq!(
            acl_lines(&matrix),
            [
                "dropped on db-1 ingress: network ACL private entry *\n      5 probes: \
              internet → db-1 tcp/1 v4, internet → db-1 tcp/2 v4, internet → db-1 tcp/3 v4 \
              and 2 more"
            ]
        );
    }

    #[test]
    fn disagreements_say_what_was_expected_and_why() {
        assert_eq!(
            disagreement_lines(&matrix()),
            ["internet v4 → db-1 icmp: expected blocked (because), observed reached"]
        );
    }
}
