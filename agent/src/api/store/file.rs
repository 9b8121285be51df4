//! The file store: the TOML config that `sgwall run` follows (it reloads on every save).
//!
//! A write takes an exclusive `flock` on a lock file beside the config (so two `sgwall api`
//! processes, or an API and a script that takes the same lock, never interleave), reads the
//! file, decides, applies each change to the text with `toml_edit` and validates the result
//! exactly as `sgwall check` does, and only then writes a temporary file in the same
//! directory, fsyncs it, renames it over the config and fsyncs the directory. A reader (the
//! agent, a person, `sgwall check`) sees the old file or the new one, never a part; a write
//! that fails validation leaves the file as it was, byte for byte.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::fcntl::{Flock, FlockArg};
use toml_edit::DocumentMut;

use super::{Change, PolicyStore, document, rejection, unreadable};
use crate::{
    api::error::ApiError,
    config::{self, ConfigError},
    model::Config,
};

pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    /// Serialises this process's writers before they queue on the file lock.
    writers: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl FileStore {
    /// A store over the config at `path`, which must be valid now (the agent would refuse
    /// it too).
    pub fn open(path: &Path) -> Result<Self, FileStoreError> {
        let path = std::path::absolute(path).map_err(|source| FileStoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        config::load(&path)?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            lock_path: path.with_file_name(format!(".{name}.lock")),
            path,
            writers: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, path: &Path) -> impl Fn(std::io::Error) -> ApiError {
        let path = path.display().to_string();
        move |error| ApiError::unavailable(format!("{path}: {error}"))
    }

    fn read_text(&self) -> Result<String, ApiError> {
        fs::read_to_string(&self.path).map_err(self.io_error(&self.path))
    }

    fn load(&self, text: &str) -> Result<Config, ApiError> {
        config::load_str(text, &self.path)
            .map(|loaded| loaded.config)
            .map_err(|error| unreadable(&self.path.display().to_string(), error))
    }

    fn lock(&self) -> Result<Flock<File>, ApiError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(self.io_error(&self.lock_path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            ApiError::unavailable(format!("locking {}: {errno}", self.lock_path.display()))
        })
    }

    /// Write, fsync, rename, fsync the directory.
    fn replace(&self, text: &str) -> Result<(), ApiError> {
        let directory = self.path.parent().unwrap_or(Path::new("/"));
        let name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
        let io = self.io_error(&temporary);
        let permissions = fs::metadata(&self.path).map(|m| m.permissions().mode());
        let result = (|| {
            let mut file = File::create(&temporary)?;
            if let Ok(mode) = permissions {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            File::open(directory)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result.map_err(io)
    }
}

impl PolicyStore for FileStore {
    fn read(&self) -> Result<Config, ApiError> {
        self.load(&self.read_text()?)
    }

    fn transact(
        &self,
        decide: &mut dyn FnMut(&Config) -> Result<Vec<Change>, ApiError>,
    ) -> Result<(), ApiError> {
        let _writers = self
            .writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _lock = self.lock()?;
        let text = self.read_text()?;
        let mut config = self.load(&text)?;
        let changes = decide(&config)?;
        if changes.is_empty() {
            return Ok(());
        }
        let mut doc: DocumentMut = text
            .parse()
            .map_err(|error| unreadable(&self.path.display().to_string(), error))?;
        for change in &changes {
            document::apply(&mut doc, &config, change)
                .map_err(|error| ApiError::invalid_parameter(error.to_string()))?;
            config = config::load_str(&doc.to_string(), &self.path)
                .map_err(rejection)?
                .config;
        }
        self.replace(&doc.to_string())
    }

    fn describe(&self) -> String {
        format!("the config file {}", self.path.display())
    }
}
