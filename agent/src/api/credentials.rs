//! Who may call the API: an AWS shared-credentials file (`~/.aws/credentials` format), one
//! profile per caller. Besides the standard `aws_access_key_id`, `aws_secret_access_key` and
//! `aws_session_token`, a profile may set `aws_account_id` (the account its resources are
//! owned by, as AWS SDKs read it) and `sgwall_access = read-only` (describe actions only).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// The account of a profile that sets none.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub profile: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub account: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_access_key: HashMap<String, Principal>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: ini::Error },
    #[error("{}: profile [{profile}]: {problem}", path.display())]
    Profile {
        path: PathBuf,
        profile: String,
        problem: String,
    },
    #[error("{}: no profile has aws_access_key_id and aws_secret_access_key", path.display())]
    Empty { path: PathBuf },
}

const KNOWN_KEYS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_account_id",
    "sgwall_access",
    "region",
    "output",
];

impl Credentials {
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let file = ini::Ini::load_from_file(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_ini(&file, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, CredentialsError> {
        let file = ini::Ini::load_from_str(text).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source: ini::Error::Parse(source),
        })?;
        Self::from_ini(&file, path)
    }

    fn from_ini(file: &ini::Ini, path: &Path) -> Result<Self, CredentialsError> {
        let mut by_access_key = HashMap::new();
        for (section, properties) in file.iter() {
            let Some(section) = section else { continue };
            let profile = section
                .strip_prefix("profile ")
                .unwrap_or(section)
                .to_string();
            let problem = |problem: String| CredentialsError::Profile {
                path: path.to_path_buf(),
                profile: profile.clone(),
                problem,
            };
            if let Some((key, _)) = properties.iter().find(|(key, _)| !KNOWN_KEYS.contains(key)) {
                return Err(problem(format!(
                    "unknown key {key} (known: {})",
                    KNOWN_KEYS.join(", ")
                )));
            }
            let (Some(id), Some(secret)) = (
                properties.get("aws_access_key_id"),
                properties.get("aws_secret_access_key"),
            ) else {
                continue;
            };
            let read_only = match properties.get("sgwall_access") {
                None | Some("read-write") => false,
                Some("read-only") => true,
                Some(other) => {
                    return Err(problem(format!(
                        "sgwall_access is {other:?}; it is read-only or read-write"
                    )));
                }
            };
            let account = properties.get("aws_account_id").unwrap_or(DEFAULT_ACCOUNT);
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(problem(format!(
                    "aws_account_id {account:?} is not 12 digits"
                )));
            }
            let principal = Principal {
                profile: profile.clone(),
                access_key_id: id.to_string(),
                secret_access_key: secret.to_string(),
                session_token: properties.get("aws_session_token").map(str::to_string),
                account: account.to_string(),
                read_only,
            };
            if by_access_key.insert(id.to_string(), principal).is_some() {
                return Err(problem(format!(
                    "access key {id} is also in another profile"
                )));
            }
        }
        if by_access_key.is_empty() {
            return Err(CredentialsError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { by_access_key })
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Principal> {
        self.by_access_key.get(access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_by_access_key_with_their_account_and_access() {
        let credentials = Credentials::parse(
            "[default]\naws_access_key_id = AKID1\naws_secret_access_key = s1\n\
             [profile audit]\naws_access_key_id=AKID2\naws_secret_access_key=s2\n\
             aws_account_id = 123456789012\nsgwall_access = read-only\n\
             [empty]\nregion = us-east-1\n",
            Path::new("credentials"),
        )
        .expect("parses");
        let default = credentials.get("AKID1").expect("default");
        assert_eq!(
            (
                default.profile.as_str(),
                default.account.as_str(),
                default.read_only
            ),
            ("default", DEFAULT_ACCOUNT, false)
        );
        let audit = credentials.get("AKID2").expect("audit");
        assert_eq!(
            (
                audit.profile.as_str(),
                audit.account.as_str(),
                audit.read_only
            ),
            ("audit", "123456789012", true)
        );
        assert!(credentials.get("AKID3").is_none());
    }

    #[test]
    fn bad_files_are_refused_naming_the_profile() {
        let error = |text: &str| {
            Credentials::parse(text, Path::new("c"))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            error("[a]\naws_access_key_id=K\naws_secret_access_key=S\nsgwall_access=all\n"),
            "c: profile [a]: sgwall_access is \"all\"; it is read-only or read-write"
        );
        assert_eq!(
            error("[a]\naws_acces_key_id=K\n"),
            "c: profile [a]: unknown key aws_acces_key_id (known: aws_access_key_id, aws_secret_access_key, aws_session_token, aws_account_id, sgwall_access, region, output)"
        );
        assert_eq!(
            error("[a]\nregion=x\n"),
            "c: no profile has aws_access_key_id and aws_secret_access_key"
        );
    }
}
