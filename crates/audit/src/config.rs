//! Configuration sections for `portcullis.toml`: `[audit]` ([`AuditSettings`]) and `[admin]`
//! ([`AdminSettings`]), with serde defaults so a missing key keeps the shipped value, plus the
//! admin token file helper.
//!
//! ```toml
//! [audit]
//! db = "data/audit.db"          # same default as `portcullis logs --db`
//! max_age = "180d"              # delete older events; "" = keep forever
//! max_size = "1GiB"             # keep the database under this; "" = no limit
//! retention_interval = "10m"    # retention also runs at start-up
//! queue_capacity = 8192         # events waiting for the writer; beyond that non-block events are dropped (counted)
//! max_batch = 1024              # events per transaction
//! synchronous = "full"          # "full": commits survive power loss; "normal": survive process crashes only
//! record_allowed = false        # also record plain allowed flows (blocks, log, simulate, bypass, exceptions always are)
//!
//! [admin]
//! listen = "127.0.0.1:9090"     # loopback only unless you know why
//! token_file = "data/admin.token"  # created (random, mode 0600) on first run; or set PORTCULLIS_ADMIN_TOKEN
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_telemetry::Metrics;
use serde::{Deserialize, Serialize};

use crate::store::{Retention, parse_duration};
use crate::{AuditError, AuditWriter, DEFAULT_DB_PATH, SqliteOptions, SqliteStore, Synchronous, WriterConfig};

/// The `[audit]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    pub db: PathBuf,
    pub max_age: String,
    pub max_size: String,
    pub retention_interval: String,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub synchronous: SyncSetting,
    pub record_allowed: bool,
}

/// `synchronous` in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    #[default]
    Full,
    Normal,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            db: PathBuf::from(DEFAULT_DB_PATH),
            max_age: "180d".into(),
            max_size: "1GiB".into(),
            retention_interval: "10m".into(),
            queue_capacity: 8192,
            max_batch: 1024,
            synchronous: SyncSetting::Full,
            record_allowed: false,
        }
    }
}

/// Parses `1048576`, `500MB`, `512MiB`, `1GiB`, `2GB`, `64KiB` (KB/MB/GB are powers of 1000).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{value:?}: expected a size like 512MiB or 1GB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" | "t" => 1 << 40,
        other => return Err(format!("{value:?}: unknown size unit {other:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{value:?}: too large"))
}

impl AuditSettings {
    /// The retention policy these settings describe.
    pub fn retention(&self) -> Result<Retention, AuditError> {
        let bad = |k: &str, e: String| AuditError::Config(format!("[audit] {k}: {e}"));
        let max_age = match self.max_age.trim() {
            "" => None,
            s => Some(parse_duration(s).map_err(|e| bad("max_age", e))?),
        };
        let max_bytes = match self.max_size.trim() {
            "" => None,
            s => Some(parse_size(s).map_err(|e| bad("max_size", e))?),
        };
        if max_bytes.is_some_and(|b| b < 1 << 20) {
            return Err(bad("max_size", "must be at least 1MiB".into()));
        }
        Ok(Retention { max_age, max_bytes })
    }

    /// Checks every value (for `portcullis run` start-up and config checks).
    pub fn validate(&self) -> Result<(), AuditError> {
        self.writer_config(None).map(|_| ())
    }

    /// The writer configuration these settings describe.
    pub fn writer_config(&self, metrics: Option<Arc<Metrics>>) -> Result<WriterConfig, AuditError> {
        let interval =
            parse_duration(&self.retention_interval).map_err(|e| AuditError::Config(format!("[audit] retention_interval: {e}")))?;
        if self.queue_capacity == 0 || self.max_batch == 0 {
            return Err(AuditError::Config("[audit] queue_capacity and max_batch must be at least 1".into()));
        }
        Ok(WriterConfig {
            queue_capacity: self.queue_capacity,
            max_batch: self.max_batch,
            retention: self.retention()?,
            retention_interval: interval.max(Duration::from_secs(1)),
            metrics,
        })
    }

    /// Opens the database (creating it and its directory) and starts the writer.
    pub fn open_writer(&self, metrics: Option<Arc<Metrics>>) -> Result<AuditWriter, AuditError> {
        let config = self.writer_config(metrics)?;
        let synchronous = match self.synchronous {
            SyncSetting::Full => Synchronous::Full,
            SyncSetting::Normal => Synchronous::Normal,
        };
        let store = SqliteStore::open_with(&self.db, &SqliteOptions { synchronous, ..SqliteOptions::default() })?;
        AuditWriter::spawn(Box::new(store), config)
    }

    /// A second connection for readers (the admin API). Call after [`Self::open_writer`].
    pub fn open_reader(&self) -> Result<SqliteStore, AuditError> {
        SqliteStore::open_existing(&self.db)
    }
}

/// The `[admin]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Admin API listen address; empty = no admin API.
    pub listen: String,
    /// Bearer token file (created with a random token, mode 0600, when missing).
    pub token_file: PathBuf,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings { listen: "127.0.0.1:9090".into(), token_file: PathBuf::from("data/admin.token") }
    }
}

/// Environment variable that, when set, provides the admin token instead of the token file.
pub const ADMIN_TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

impl AdminSettings {
    /// The admin token: `$PORTCULLIS_ADMIN_TOKEN`, else the token file's first line, else a new
    /// random token written to the token file (mode 0600).
    pub fn token(&self) -> Result<String, AuditError> {
        if let Ok(t) = std::env::var(ADMIN_TOKEN_ENV)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
        load_or_create_token(&self.token_file)
    }
}

/// Reads the token in `path`, or creates the file with a fresh random token (64 hex characters,
/// mode 0600 on Unix). Never logs the token.
pub fn load_or_create_token(path: &Path) -> Result<String, AuditError> {
    let io = |source| AuditError::Io { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.len() < crate::api::MIN_TOKEN_LEN {
                return Err(AuditError::Config(format!(
                    "{}: admin token must be at least {} characters",
                    path.display(),
                    crate::api::MIN_TOKEN_LEN
                )));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| AuditError::Io { path: parent.to_path_buf(), source })?;
            }
            let token = hex::encode(rand::random::<[u8; 32]>());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(io)?;
            writeln!(file, "{token}").map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(token)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size(" 64 KiB "), Ok(64 << 10));
        for bad in ["", "MiB", "12XB", "-1", "99999999999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_partial_toml() {
        let s: AuditSettings = toml_from("max_age = \"30d\"\nsynchronous = \"normal\"");
        assert_eq!(s.db, PathBuf::from(DEFAULT_DB_PATH));
        assert_eq!(s.synchronous, SyncSetting::Normal);
        let r = s.retention().unwrap();
        assert_eq!(r.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(r.max_bytes, Some(1 << 30));
        let none: AuditSettings = toml_from("max_age = \"\"\nmax_size = \"\"");
        assert!(!none.retention().unwrap().is_enabled());
        let bad: AuditSettings = toml_from("max_size = \"10KiB\"");
        assert!(bad.validate().is_err());
        let bad: AuditSettings = toml_from("retention_interval = \"soon\"");
        assert!(bad.validate().is_err());
    }

    fn toml_from(text: &str) -> AuditSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<AuditSettings>("max_ag = \"1d\"").is_err());
    }

    #[test]
    fn writer_from_settings_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = AuditSettings { db: dir.path().join("x/audit.db"), ..AuditSettings::default() };
        let w = s.open_writer(None).unwrap();
        assert!(w.try_record(crate::Event::new(crate::Action::Log, "h")));
        w.flush_blocking().unwrap();
        assert_eq!(s.open_reader().unwrap().count().unwrap(), 1);
    }

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/admin.token");
        let t1 = load_or_create_token(&path).unwrap();
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(load_or_create_token(&path).unwrap(), t1);
        std::fs::write(&path, "short\n").unwrap();
        assert!(load_or_create_token(&path).is_err());
    }
}
