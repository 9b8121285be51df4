//! Tier 4: the `sgwall` binary as a user runs it.

use std::process::Command;

use sgwall_tests::{privileged, sgwall_bin};

#[test]
fn binary_carries_the_ebpf_object() {
    if !privileged() {
        return;
    }
    let output = Command::new(sgwall_bin()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("eBPF object: "), "{stdout}");
}
