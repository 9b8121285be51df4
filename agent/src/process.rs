//! Other processes, as `/proc` shows them.

/// Whether `pid` runs: it has a `/proc` entry and is neither a zombie (`Z`, exited but not
/// reaped) nor dead (`X`, being torn down).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => state_is_alive(&stat),
        Err(_) => false,
    }
}

/// Reads the state field of a `/proc/PID/stat` line. It follows the command name, which is in
/// parentheses and may itself hold spaces and parentheses: the last `)` ends it.
fn state_is_alive(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_dead_processes_are_not_alive() {
        assert!(state_is_alive("42 (sgwall) S 1 42 42 0"));
        assert!(state_is_alive("42 (a (b) c) R 1"));
        assert!(!state_is_alive("42 (sgwall) Z 1 42"));
        assert!(!state_is_alive("42 (sgwall) X 1 42"));
        assert!(!state_is_alive("garbage"));
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
