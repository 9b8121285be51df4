//! Diagnostics with file, line and column, and the collector that every stage of loading writes
//! into so that all problems are reported at once.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use super::messages::{ValidationError, ValidationWarning};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a config file. `line` and `column` are 1-based and point at the
/// offending key or value; `field` is its TOML path with indices
/// (`security_group[1].ingress[0].ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    pub kind: ProblemKind,
}

/// What kind of problem a diagnostic reports, for callers that answer in another vocabulary:
/// the EC2 API turns a quota into `RulesPerSecurityGroupLimitExceeded`, and so on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// Anything else: the value is invalid.
    #[default]
    Invalid,
    /// R7: rules per group, direction and family.
    RulesPerGroupQuota,
    /// R7: groups per interface.
    GroupsPerInterfaceQuota,
    /// R7: groups x rules per interface.
    RulesPerInterfaceQuota,
    DuplicateRule,
    DuplicateGroupName,
    /// R9.
    DuplicateId,
    /// G5, or an attached group that does not exist.
    UnknownGroup,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity,
            self.field,
            self.message
        )
    }
}

/// Where something is in the file: its TOML path and its byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub field: String,
    pub span: Range<usize>,
}

impl Location {
    pub fn new(field: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            field: field.into(),
            span,
        }
    }

    /// The location of `key` inside the table at `self`, at `span`.
    pub fn child(&self, key: &str, span: Range<usize>) -> Self {
        let field = if self.field.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.field)
        };
        Self { field, span }
    }

    /// The location of element `index` of the array at `self`, at `span`.
    pub fn element(&self, index: usize, span: Range<usize>) -> Self {
        Self {
            field: format!("{}[{index}]", self.field),
            span,
        }
    }
}

/// Byte offsets of line starts, to turn spans into 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self { starts }
    }

    /// Columns count characters, not bytes, so that they match what an editor shows.
    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = text
            .get(line_start..offset)
            .map_or(offset - line_start, |prefix| prefix.chars().count());
        (line.max(1), column + 1)
    }
}

/// Collects every error and warning of one load.
pub(crate) struct Diagnostics<'a> {
    file: &'a Path,
    text: &'a str,
    lines: LineIndex,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            lines: LineIndex::new(text),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn error(&mut self, at: &Location, error: ValidationError) {
        let mut diagnostic = self.diagnostic(Severity::Error, at, error.to_string());
        diagnostic.kind = error.kind();
        self.errors.push(diagnostic);
    }

    pub fn warning(&mut self, at: &Location, warning: ValidationWarning) {
        let diagnostic = self.diagnostic(Severity::Warning, at, warning.to_string());
        self.warnings.push(diagnostic);
    }

    /// Reports a TOML syntax error at the parser's position.
    pub fn syntax_error(&mut self, offset: usize, message: &str) {
        let at = Location::new("syntax", offset..offset);
        self.error(
            &at,
            ValidationError::Syntax {
                message: message.to_string(),
            },
        );
    }

    /// What `check` built, or `None` when it reported any error: an item with a problem is
    /// left out of the result.
    pub fn unless_errors<T>(&mut self, check: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let errors_before = self.errors.len();
        let checked = check(self);
        if self.errors.len() > errors_before {
            return None;
        }
        checked
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// How messages name another place in the file: its path and line.
    pub fn describe(&self, at: &Location) -> String {
        let (line, _) = self.lines.position(self.text, at.span.start);
        format!("{} (line {line})", at.field)
    }

    /// Both lists in file order, so output reads top to bottom like the file.
    pub fn into_sorted(mut self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let by_position = |d: &Diagnostic| (d.line, d.column);
        self.errors.sort_by_key(by_position);
        self.warnings.sort_by_key(by_position);
        (self.errors, self.warnings)
    }

    fn diagnostic(&self, severity: Severity, at: &Location, message: String) -> Diagnostic {
        let (line, column) = self.lines.position(self.text, at.span.start);
        Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            field: at.field.clone(),
            message,
            kind: ProblemKind::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n\nlast";
        let lines = LineIndex::new(text);
        assert_eq!(lines.position(text, 0), (1, 1));
        assert_eq!(lines.position(text, 4), (1, 5));
        assert_eq!(lines.position(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(lines.position(text, 12), (2, 6));
        assert_eq!(lines.position(text, 16), (3, 1));
        assert_eq!(lines.position(text, 17), (4, 1));
        assert_eq!(lines.position(text, 1000), (4, 5));
    }

    #[test]
    fn display_has_the_documented_format() {
        let diagnostic = Diagnostic {
            severity: Severity::Warning,
            file: PathBuf::from("x.toml"),
            line: 3,
            column: 7,
            field: "security_group[0].ingress[1].ports".into(),
            message: "ports are ignored for protocol all".into(),
            kind: ProblemKind::Invalid,
        };
        assert_eq!(
            diagnostic.to_string(),
            "x.toml:3:7: warning: security_group[0].ingress[1].ports: ports are ignored for protocol all"
        );
    }
}
