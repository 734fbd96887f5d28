//! The blocked-transfer log: who tried to send what, where, when, under which rule.
//!
//! * [`Event`] — one record per decision worth keeping (blocks, `log`/simulate decisions, bypasses,
//!   exceptions used, optionally allowed flows). Its JSON form is the public record format.
//! * [`AuditStore`] — the storage seam; [`SqliteStore`] is the embedded default (WAL).
//! * [`AuditWriter`] — the batching writer thread with a bounded queue; the proxy's only entry.
//! * [`Filter`], [`Stats`], [`export`] — queries for `portcullis logs` and SIEM export.
//! * [`api::admin_router`] — the admin HTTP API (axum): events, stats, `/metrics`, `/healthz`, reload.
//!
//! # Wiring (for `portcullis run` and the proxy's `Recorder`)
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use portcullis_audit::{api, Action, AdminSettings, AuditSettings, DetectorHit, Event};
//! use portcullis_telemetry::{CertCacheCounts, LogFormat, Metrics};
//!
//! portcullis_telemetry::init_tracing(LogFormat::Json, "info")?;     // --log-format json|text
//! let metrics = Arc::new(Metrics::new());
//! let audit = AuditSettings::default();                              // or the [audit] section of portcullis.toml
//! let writer = audit.open_writer(Some(metrics.clone()))?;           // creates data/audit.db, runs retention
//!
//! // Recorder::record(TransferRecord) maps the record to an Event (keep the proxy's id and time:
//! // the block page shows that id) and then:
//! let mut event = Event::new(Action::Block, "mail.google.com").with_url("https://mail.google.com/upload?id=1");
//! event.user = Some("alice".into());
//! event.detectors.push(DetectorHit { detector: "payment-card".into(), count: 1,
//!     evidence: vec!["4111********1111".into()], value_hmacs: vec![] });
//! let incident_id = writer.record_durable(event).await?;   // blocks: resolves after the commit
//! writer.try_record(Event::new(Action::Bypass, "bank.example")); // everything else: never waits
//!
//! // Admin API on its own loopback listener.
//! let admin = AdminSettings::default();
//! let reload: api::ReloadFn = Arc::new(|| Ok("reloaded".to_string()));
//! let router = api::admin_router(
//!     api::AdminConfig::new(admin.token()?, audit.open_reader()?, metrics.clone())
//!         .with_writer(writer.clone())
//!         .with_reload(reload),
//! )?;
//! let listener = tokio::net::TcpListener::bind(&admin.listen).await?;
//! tokio::spawn(async move { axum::serve(listener, router).await });
//!
//! // Metrics the proxy side feeds: metrics.inc_request(), add_bytes_inspected(n),
//! // observe_scan_latency(d), and metrics.set_cert_cache_source(move || { let s = cache.stats();
//! // CertCacheCounts { hits: s.hits, misses: s.misses } }). Blocks and dropped events are
//! // counted by the writer itself.
//! # let _ = CertCacheCounts::default();
//!
//! // On shutdown: commit what is queued.
//! writer.close().await?;
//! # let _ = incident_id; Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod api;
mod config;
mod event;
pub mod export;
mod sqlite;
mod store;
mod writer;

pub use config::{ADMIN_TOKEN_ENV, AdminSettings, AuditSettings, SyncSetting, load_or_create_token, parse_size};
pub use event::{Action, DetectorHit, Event, FileRecord, is_valid_id, new_id, redact_url};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use store::{AuditStore, Count, Filter, Retention, RetentionReport, Stats, parse_duration, parse_time_bound};
pub use writer::{AuditWriter, WriterConfig};

/// Default audit database, relative to the working directory (the proxy and `portcullis logs`
/// both use it unless given `--db`).
pub const DEFAULT_DB_PATH: &str = "data/audit.db";

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// SQLite failed on the database at `path`.
    #[error("audit database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// File-system error (creating the database directory).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A reader asked for a database that does not exist.
    #[error("no audit log at {} (the proxy creates it when it records its first event)", .0.display())]
    NotFound(PathBuf),
    /// The database was written by a newer Portcullis.
    #[error("audit database {}: schema version {found} is newer than supported ({supported})", path.display())]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    /// A stored event could not be decoded.
    #[error("corrupt audit event: {0}")]
    Corrupt(String),
    /// The batch holding the event failed to commit.
    #[error("audit write failed: {0}")]
    Write(String),
    /// The writer thread has stopped.
    #[error("audit writer is closed")]
    Closed,
    /// Invalid configuration or argument.
    #[error("{0}")]
    Config(String),
}
