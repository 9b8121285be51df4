//! `flows.log`: flow records in the AWS VPC Flow Logs version 2 field order, one per line,
//! appended by the agent at the end of each capture window (`runtime::events` aggregates them)
//! and read by `sgwall flows`.
//!
//! `version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start
//! end action log-status reject-reason`
//!
//! `reject-reason` is AWS's custom-format field of that name (`-` where there is none); sgwall
//! fills it for every REJECT with what refused the flow: the network ACL entry
//! (`acl:NAME#NUMBER`, `acl:NAME#*` for the final entry, N2) or the datapath reason (`no_rule`
//! when no security group rule admits it, R1).

use std::{
    fs::File,
    io::{BufRead as _, Seek as _, Write as _},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// The record's fields, in the order of a line.
pub const FIELDS: [&str; 15] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "reject-reason",
];

/// `reject-reason` of an ACCEPT.
pub const NO_REJECT_REASON: &str = "-";

/// How often a followed log is read again.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub interface: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub accept: bool,
    /// What refused a REJECT ([`NO_REJECT_REASON`] for an ACCEPT): see the module's comment.
    pub reject_reason: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub bytes: u64,
}

/// One flow log record (one line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: RecordKey,
    pub tally: Tally,
    pub start: u64,
    pub end: u64,
    pub skipped_data: bool,
}

impl std::fmt::Display for FlowRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "2 - {} {} {} {} {} {} {} {} {} {} {} {} {}",
            self.key.interface,
            self.key.src,
            self.key.dst,
            self.key.src_port,
            self.key.dst_port,
            self.key.protocol,
            self.tally.packets,
            self.tally.bytes,
            self.start,
            self.end,
            if self.key.accept { "ACCEPT" } else { "REJECT" },
            if self.skipped_data { "SKIPDATA" } else { "OK" },
            self.key.reject_reason
        )
    }
}

/// The header line of a table of records: the field names.
pub fn header() -> String {
    FIELDS.join(" ")
}

/// A record line as a JSON object of its fields, by name, values as written.
pub fn line_as_json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    FIELDS
        .iter()
        .zip(line.split(' '))
        .map(|(field, value)| {
            (
                field.to_string(),
                serde_json::Value::String(value.to_string()),
            )
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FlowLogError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FlowLogError + '_ {
    move |source| FlowLogError {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends `records` to the log at `path` in one write, creating it if needed.
pub fn append(path: &Path, records: &[FlowRecord]) -> Result<(), FlowLogError> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(io_error(path))
}

/// A reader of the log that remembers how far it read.
pub struct FlowLogReader {
    path: PathBuf,
    file: File,
    position: u64,
}

impl FlowLogReader {
    /// Opens the log at `path`. A log that does not exist yet is `None`, or, with `create`
    /// (to follow it from its first record), created empty.
    pub fn open(path: &Path, create: bool) -> Result<Option<Self>, FlowLogError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !create => {
                return Ok(None);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(directory) = path.parent() {
                    std::fs::create_dir_all(directory).map_err(io_error(directory))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io_error(path))?;
                File::open(path).map_err(io_error(path))?
            }
            Err(error) => return Err(io_error(path)(error)),
        };
        Ok(Some(Self {
            path: path.to_path_buf(),
            file,
            position: 0,
        }))
    }

    /// Hands each complete line written since the last call to `on_line`, without its
    /// newline. A line the agent is still writing waits for the next call.
    pub fn read_new(
        &mut self,
        on_line: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> Result<(), FlowLogError> {
        let path = self.path.clone();
        self.file
            .seek(std::io::SeekFrom::Start(self.position))
            .map_err(io_error(&path))?;
        let mut reader = std::io::BufReader::new(&self.file);
        let mut line = String::new();
        while reader.read_line(&mut line).map_err(io_error(&path))? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            self.position += line.len() as u64;
            on_line(line.trim_end()).map_err(io_error(&path))?;
            line.clear();
        }
        Ok(())
    }

    /// Reads what is there, then with `follow` keeps reading what the agent appends (until
    /// the process is interrupted).
    pub fn tail(
        &mut self,
        follow: bool,
        on_line: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> Result<(), FlowLogError> {
        loop {
            self.read_new(on_line)?;
            if !follow {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        FlowRecord {
            key: RecordKey {
                interface: "sgw-web1".into(),
                src: "10.6.0.10".parse().unwrap(),
                dst: "10.7.0.10".parse().unwrap(),
                src_port: 40000,
                dst_port: 8080,
                protocol: 6,
                accept: false,
                reject_reason: "acl:private-acl#90".into(),
            },
            tally: Tally {
                packets: 3,
                bytes: 180,
            },
            start: 100,
            end: 160,
            skipped_data: true,
        }
    }

    #[test]
    fn a_record_line_has_every_field_in_order() {
        let line = record().to_string();
        assert_eq!(
            line,
            "2 - sgw-web1 10.6.0.10 10.7.0.10 40000 8080 6 3 180 100 160 REJECT SKIPDATA \
             acl:private-acl#90"
        );
        let json = line_as_json(&line);
        assert_eq!(json.len(), FIELDS.len());
        assert_eq!(json["srcport"], "40000");
        assert_eq!(json["action"], "REJECT");
        assert_eq!(json["log-status"], "SKIPDATA");
        assert_eq!(json["reject-reason"], "acl:private-acl#90");
        assert!(header().starts_with("version account-id interface-id srcaddr"));
    }

    #[test]
    fn the_reader_hands_over_complete_lines_once() {
        let directory = std::env::temp_dir().join(format!("sgwall-flowlog-{}", std::process::id()));
        let path = directory.join("flows.log");
        let _ = std::fs::remove_dir_all(&directory);
        assert!(FlowLogReader::open(&path, false).unwrap().is_none());
        let mut reader = FlowLogReader::open(&path, true).unwrap().unwrap();
        append(&path, &[record(), record()]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"2 - partial"))
            .unwrap();
        let mut lines = Vec::new();
        let mut collect = |line: &str| {
            lines.push(line.to_string());
            Ok(())
        };
        reader.read_new(&mut collect).unwrap();
        reader.read_new(&mut collect).unwrap();
        let _ = std::fs::remove_dir_all(&directory);
        assert_eq!(lines, [record().to_string(), record().to_string()]);
    }
}
