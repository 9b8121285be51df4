//! Fuzzing of the inputs people hand sgwall (issue 17): the config file and the AWS CLI JSON
//! it imports. Inputs are valid files with random bytes changed, inserted or cut (bolero), so
//! most of them get past the first parser and reach validation and conversion. Whatever the
//! input, loading never panics, and a refusal names the file it refuses.
//!
//! Under `cargo test` bolero runs a bounded number of random inputs; `cargo bolero test` runs
//! the same targets under libFuzzer for as long as wanted.

use std::path::Path;

use crate::{config, import::aws};

const EVERY_FEATURE: &str = include_str!("../../tests/fixtures/every-feature.toml");
const WEB_APP_DB: &str = include_str!("eval/web-app-db.toml");
const AWS_GROUPS: &str = include_str!("../tests/fixtures/aws/security-groups.json");
const AWS_INTERFACES: &str = include_str!("../tests/fixtures/aws/network-interfaces.json");

/// `base` with each (position, byte, how) edit applied: 0 replaces, 1 inserts, 2 cuts.
fn edited(base: &str, edits: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    for &(position, byte, how) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = usize::from(position) % bytes.len();
        match how % 3 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

#[test]
fn fuzz_config_loading_never_panics_and_names_the_file() {
    bolero::check!()
        .with_type::<(bool, Vec<(u16, u8, u8)>)>()
        .for_each(|(which, edits)| {
            let base = if *which { EVERY_FEATURE } else { WEB_APP_DB };
            let bytes = edited(base, edits);
            let Ok(text) = std::str::from_utf8(&bytes) else {
                return;
            };
            if let Err(error) = config::load_str(text, Path::new("fuzzed.toml")) {
                assert!(
                    error.to_string().contains("fuzzed.toml"),
                    "an error that names no file: {error}"
                );
            }
        });
}

#[test]
fn fuzz_aws_import_never_panics_and_never_returns_an_invalid_config() {
    bolero::check!()
        .with_type::<(bool, Vec<(u16, u8, u8)>)>()
        .for_each(|(interfaces_too, edits)| {
            let groups = edited(AWS_GROUPS, edits);
            let Ok(groups) = std::str::from_utf8(&groups) else {
                return;
            };
            let interfaces = interfaces_too.then_some(AWS_INTERFACES);
            // `import_json` loads what it wrote before returning it: Ok means it validated.
            if let Ok(imported) = aws::import_json(groups, interfaces, &[]) {
                assert!(
                    config::load_str(&imported.toml, Path::new("<import>")).is_ok(),
                    "an import that does not load:\n{}",
                    imported.toml
                );
            }
        });
}
