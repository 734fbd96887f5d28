//! Embedded SQLite store (rusqlite, bundled SQLite, WAL).
//!
//! Listing order is chronological: `(time_ms, seq)` where `seq` is the insertion order, so ties
//! within a millisecond keep commit order and any id format works (cursor = the last id seen).
//!
//! Layout: `events` keeps one narrow row per event with the filterable fields as indexed columns
//! (so stats and filters scan little data); `event_bodies` the whole event as JSON (so new event
//! fields need no migration), fetched by rowid only for the events returned; `event_detectors` holds
//! one row per (event, detector) for the `--detector` filter and the per-detector stats;
//! `event_values` one row per (event, value HMAC) so a responder can find every event that carried
//! the same leaked value (`--value-hmac`).
//!
//! Durability: the database runs in WAL mode. With `synchronous=FULL` (the default here) every
//! committed transaction is fsynced to the WAL before `append` returns, so it survives process
//! kill *and* power loss / OS crash. With `synchronous=NORMAL` a commit is written to the WAL file
//! (the OS page cache) but fsynced only at checkpoints: it still survives `kill -9` of the process
//! (the kernel owns the written pages), but not a power cut. The writer batches many events per
//! transaction, so the fsync cost of FULL is paid once per batch.
//!
//! Size retention measures used pages (`page_count - freelist_count`); freed pages are returned to
//! the file system with `auto_vacuum=INCREMENTAL` and the WAL is truncated after a retention run.
//! Between runs the WAL can add up to about 4 MiB (SQLite's 1000-page autocheckpoint).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter, types::Value};
use time::OffsetDateTime;

use crate::store::{AuditStore, Count, Filter, Retention, RetentionReport, Stats};
use crate::{AuditError, Event};

/// How hard SQLite syncs on commit (see the module docs for what each survives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit: survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: survives process crashes (`kill -9`), not power loss.
    Normal,
}

/// Options for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// How long to wait for another connection's lock before failing.
    pub busy_timeout: Duration,
    /// Create the database (and its parent directory) when missing.
    pub create: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { synchronous: Synchronous::Full, busy_timeout: Duration::from_secs(10), create: true }
    }
}

const SCHEMA_VERSION: i64 = 3;
/// Versions 1 and 2 were development layouts that never shipped.
const FIRST_SUPPORTED: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    time_ms   INTEGER NOT NULL,
    action    TEXT NOT NULL,
    simulated INTEGER NOT NULL,
    user      TEXT,
    host      TEXT NOT NULL,
    app       TEXT,
    category  TEXT,
    bytes     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS event_bodies (
    seq  INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_detectors (
    event_seq INTEGER NOT NULL,
    detector  TEXT NOT NULL,
    count     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);
CREATE INDEX IF NOT EXISTS events_action ON events(action, time_ms);
CREATE INDEX IF NOT EXISTS events_user ON events(user, time_ms);
CREATE INDEX IF NOT EXISTS events_app ON events(app, time_ms);
CREATE INDEX IF NOT EXISTS events_category ON events(category, time_ms);
CREATE INDEX IF NOT EXISTS events_host ON events(host, time_ms);
CREATE INDEX IF NOT EXISTS event_detectors_detector ON event_detectors(detector, event_seq);
CREATE INDEX IF NOT EXISTS event_detectors_event ON event_detectors(event_seq);
CREATE TABLE IF NOT EXISTS event_values (
    event_seq INTEGER NOT NULL,
    hmac      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_values_hmac ON event_values(hmac);
CREATE INDEX IF NOT EXISTS event_values_event ON event_values(event_seq);
";

/// Counters that outlive the process (`dropped`). Idempotent, so it also runs on existing files.
const META: &str = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

/// The SQLite audit store. One connection; open one per thread (the writer owns one, readers such
/// as the CLI and the admin API open their own — WAL lets them read while the writer commits).
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Sqlite { path: path.to_path_buf(), source }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, AuditError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// Opens an existing database (for readers: a missing file is an error, not a new empty log).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStore, AuditError> {
        Self::open_with(path, &SqliteOptions { create: false, ..SqliteOptions::default() })
    }

    /// Opens the database at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<SqliteStore, AuditError> {
        let path = path.as_ref().to_path_buf();
        if !options.create && !path.exists() {
            return Err(AuditError::NotFound(path));
        }
        if options.create
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| AuditError::Io { path: parent.to_path_buf(), source })?;
        }
        if options.create && !path.exists() {
            // The log names users and carries masked evidence and value HMACs: owner-only from
            // the first byte. SQLite gives the -wal and -shm files the database file's mode.
            create_private(&path).map_err(|source| AuditError::Io { path: path.clone(), source })?;
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if options.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags).map_err(db_err(&path))?;
        conn.busy_timeout(options.busy_timeout).map_err(db_err(&path))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err(&path))?;
        if version > SCHEMA_VERSION {
            return Err(AuditError::SchemaTooNew { path, found: version, supported: SCHEMA_VERSION });
        }
        if version != 0 && version < FIRST_SUPPORTED {
            return Err(AuditError::Config(format!(
                "{}: pre-release audit database layout (version {version}); move the file away to start a new log",
                path.display()
            )));
        }
        let sync = match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        if version == 0 {
            // auto_vacuum must be chosen before the first table exists.
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(db_err(&path))?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(db_err(&path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AuditError::Config(format!("{}: journal_mode is {mode}, WAL required", path.display())));
        }
        conn.execute_batch(&format!("PRAGMA synchronous = {sync};")).map_err(db_err(&path))?;
        if version == 0 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .map_err(db_err(&path))?;
        }
        // Only when missing: a reader without write permission must still be able to open the log.
        let has_meta: bool = conn
            .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |r| r.get(0))
            .map_err(db_err(&path))?;
        if !has_meta {
            conn.execute_batch(META).map_err(db_err(&path))?;
        }
        Ok(SqliteStore { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes used by live pages (what size retention bounds).
    pub fn used_bytes(&self) -> Result<u64, AuditError> {
        let e = db_err(&self.path);
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(&e)?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(&e)?;
        let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).map_err(&e)?;
        Ok(u64::try_from((pages - free).max(0) * page_size).unwrap_or(0))
    }

    /// The journal mode in force (`wal`).
    pub fn journal_mode(&self) -> Result<String, AuditError> {
        self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(db_err(&self.path))
    }

    /// Number of stored events.
    pub fn count(&self) -> Result<u64, AuditError> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).map_err(db_err(&self.path))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn delete_where(&self, condition: &str, args: &[Value]) -> Result<u64, AuditError> {
        let e = db_err(&self.path);
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        for (table, column) in [("event_detectors", "event_seq"), ("event_values", "event_seq"), ("event_bodies", "seq")] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE {column} IN (SELECT seq FROM events WHERE {condition})"),
                params_from_iter(args.iter()),
            )
            .map_err(&e)?;
        }
        let n = tx.execute(&format!("DELETE FROM events WHERE {condition}"), params_from_iter(args.iter())).map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Builds the WHERE clause (on alias `e`) for `filter`, without cursor/limit.
fn where_clause(filter: &Filter, skip_action: bool) -> (String, Vec<Value>) {
    let mut sql = String::from("1=1");
    let mut args: Vec<Value> = Vec::new();
    if !skip_action {
        if let Some(a) = filter.action {
            sql.push_str(" AND e.action = ?");
            args.push(Value::Text(a.as_str().to_owned()));
        }
        if let Some(s) = filter.simulated {
            sql.push_str(" AND e.simulated = ?");
            args.push(Value::Integer(i64::from(s)));
        }
    }
    for (col, v) in [("user", &filter.user), ("app", &filter.app), ("category", &filter.category)] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND e.{col} = ?"));
            args.push(Value::Text(v.clone()));
        }
    }
    if let Some(h) = &filter.host {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let escaped = h.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push_str(" AND (e.host = ? OR e.host LIKE ? ESCAPE '\\')");
        args.push(Value::Text(h));
        args.push(Value::Text(format!("%.{escaped}")));
    }
    if let Some(t) = filter.since {
        sql.push_str(" AND e.time_ms >= ?");
        args.push(Value::Integer(to_ms(t)));
    }
    if let Some(t) = filter.until {
        sql.push_str(" AND e.time_ms <= ?");
        args.push(Value::Integer(to_ms(t)));
    }
    if let Some(d) = &filter.detector {
        sql.push_str(" AND EXISTS (SELECT 1 FROM event_detectors d WHERE d.event_seq = e.seq AND d.detector = ?)");
        args.push(Value::Text(d.clone()));
    }
    if let Some(h) = &filter.value_hmac {
        sql.push_str(" AND EXISTS (SELECT 1 FROM event_values v WHERE v.event_seq = e.seq AND v.hmac = ?)");
        args.push(Value::Text(h.trim().to_ascii_lowercase()));
    }
    (sql, args)
}

/// The `top` largest counts, ties by key.
fn top_counts(map: BTreeMap<String, u64>, top: usize) -> Vec<Count> {
    let mut v: Vec<Count> = map.into_iter().map(|(key, count)| Count { key, count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(top);
    v
}

impl AuditStore for SqliteStore {
    fn append(&mut self, events: &[Event]) -> Result<(), AuditError> {
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO events (id, time_ms, action, simulated, user, host, app, category, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(&e)?;
            let mut det = tx.prepare_cached("INSERT INTO event_detectors (event_seq, detector, count) VALUES (?1, ?2, ?3)").map_err(&e)?;
            let mut val = tx.prepare_cached("INSERT INTO event_values (event_seq, hmac) VALUES (?1, ?2)").map_err(&e)?;
            let mut bod = tx.prepare_cached("INSERT INTO event_bodies (seq, body) VALUES (?1, ?2)").map_err(&e)?;
            for ev in events {
                let body = serde_json::to_string(ev).map_err(|err| AuditError::Corrupt(err.to_string()))?;
                let host = ev.host.trim_end_matches('.').to_ascii_lowercase();
                ins.execute(params![
                    ev.id,
                    to_ms(ev.time),
                    ev.action.as_str(),
                    ev.simulated,
                    ev.user,
                    host,
                    ev.app,
                    ev.category,
                    i64::try_from(ev.bytes).unwrap_or(i64::MAX),
                ])
                .map_err(&e)?;
                let seq = tx.last_insert_rowid();
                bod.execute(params![seq, body]).map_err(&e)?;
                for d in &ev.detectors {
                    det.execute(params![seq, d.detector, i64::try_from(d.count).unwrap_or(i64::MAX)]).map_err(&e)?;
                    for h in &d.value_hmacs {
                        val.execute(params![seq, h.to_ascii_lowercase()]).map_err(&e)?;
                    }
                }
            }
        }
        tx.commit().map_err(&e)
    }

    fn scan(&self, filter: &Filter, each: &mut dyn FnMut(Event) -> Result<bool, AuditError>) -> Result<(), AuditError> {
        let e = db_err(&self.path);
        let (mut sql, mut args) = where_clause(filter, false);
        if let Some(c) = &filter.cursor {
            // Keyset pagination on (time, insertion order); an unknown cursor yields nothing.
            sql.push_str(if filter.ascending {
                " AND (e.time_ms, e.seq) > (SELECT c.time_ms, c.seq FROM events c WHERE c.id = ?)"
            } else {
                " AND (e.time_ms, e.seq) < (SELECT c.time_ms, c.seq FROM events c WHERE c.id = ?)"
            });
            args.push(Value::Text(c.clone()));
        }
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let mut full = format!(
            "SELECT b.body FROM events e JOIN event_bodies b ON b.seq = e.seq WHERE {sql} ORDER BY e.time_ms {order}, e.seq {order}"
        );
        if let Some(limit) = filter.limit {
            full.push_str(" LIMIT ?");
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        let mut stmt = self.conn.prepare(&full).map_err(&e)?;
        let mut rows = stmt.query(params_from_iter(args.iter())).map_err(&e)?;
        while let Some(row) = rows.next().map_err(&e)? {
            let body: String = row.get(0).map_err(&e)?;
            let event: Event = serde_json::from_str(&body).map_err(|err| AuditError::Corrupt(err.to_string()))?;
            if !each(event)? {
                break;
            }
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Event>, AuditError> {
        let e = db_err(&self.path);
        let body: Option<String> = self
            .conn
            .query_row("SELECT b.body FROM events e JOIN event_bodies b ON b.seq = e.seq WHERE e.id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(&e)?;
        body.map(|b| serde_json::from_str(&b).map_err(|err| AuditError::Corrupt(err.to_string()))).transpose()
    }

    fn stats(&self, filter: &Filter) -> Result<Stats, AuditError> {
        let e = db_err(&self.path);
        let top = i64::try_from(filter.limit.unwrap_or(20)).unwrap_or(i64::MAX);
        let (base, base_args) = where_clause(filter, true);
        let mut stats = Stats { since: filter.since, until: filter.until, ..Stats::default() };

        let mut stmt =
            self.conn.prepare(&format!("SELECT e.action, e.simulated, count(*) FROM events e WHERE {base} GROUP BY 1, 2")).map_err(&e)?;
        let mut rows = stmt.query(params_from_iter(base_args.iter())).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let action: String = r.get(0).map_err(&e)?;
            let simulated: bool = r.get(1).map_err(&e)?;
            let n = u64::try_from(r.get::<_, i64>(2).map_err(&e)?).unwrap_or(0);
            stats.total += n;
            *stats.by_action.entry(action.clone()).or_default() += n;
            if simulated {
                stats.simulated += n;
            } else if action == "block" {
                stats.blocks += n;
            }
        }
        let blocks = format!("{base} AND e.action = 'block' AND e.simulated = 0");
        let top = usize::try_from(top).unwrap_or(usize::MAX);
        // One pass over the blocks for category, app and user; detectors need the join.
        let mut by: [BTreeMap<String, u64>; 3] = Default::default();
        let sql = format!("SELECT e.category, e.app, e.user, count(*) FROM events e WHERE {blocks} GROUP BY 1, 2, 3");
        let mut stmt = self.conn.prepare(&sql).map_err(&e)?;
        let mut rows = stmt.query(params_from_iter(base_args.iter())).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let n = u64::try_from(r.get::<_, i64>(3).map_err(&e)?).unwrap_or(0);
            for (i, map) in by.iter_mut().enumerate() {
                let key: Option<String> = r.get(i).map_err(&e)?;
                *map.entry(key.unwrap_or_else(|| "(none)".into())).or_default() += n;
            }
        }
        let [cat, app, user] = by;
        stats.blocks_by_category = top_counts(cat, top);
        stats.blocks_by_app = top_counts(app, top);
        stats.blocks_by_user = top_counts(user, top);
        let sql =
            format!("SELECT dd.detector, count(*) FROM event_detectors dd JOIN events e ON e.seq = dd.event_seq WHERE {blocks} GROUP BY 1");
        let mut stmt = self.conn.prepare(&sql).map_err(&e)?;
        let mut rows = stmt.query(params_from_iter(base_args.iter())).map_err(&e)?;
        let mut det = BTreeMap::new();
        while let Some(r) = rows.next().map_err(&e)? {
            det.insert(r.get::<_, String>(0).map_err(&e)?, u64::try_from(r.get::<_, i64>(1).map_err(&e)?).unwrap_or(0));
        }
        stats.blocks_by_detector = top_counts(det, top);
        let dropped: Option<i64> =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'dropped'", [], |r| r.get(0)).optional().map_err(&e)?;
        stats.dropped = dropped.and_then(|d| u64::try_from(d).ok()).unwrap_or(0);
        Ok(stats)
    }

    fn record_dropped(&mut self, n: u64) -> Result<(), AuditError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('dropped', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                [i64::try_from(n).unwrap_or(i64::MAX)],
            )
            .map(|_| ())
            .map_err(db_err(&self.path))
    }

    fn apply_retention(&mut self, policy: &Retention, now: OffsetDateTime) -> Result<RetentionReport, AuditError> {
        let mut report = RetentionReport::default();
        if let Some(age) = policy.max_age {
            let cutoff = time::Duration::try_from(age).ok().and_then(|d| now.checked_sub(d));
            if let Some(cutoff) = cutoff {
                report.deleted_by_age = self.delete_where("time_ms < ?", &[Value::Integer(to_ms(cutoff))])?;
            }
        }
        if let Some(max) = policy.max_bytes {
            // Delete the oldest events proportionally to the excess, down to 90% of the limit so a
            // busy gateway does not trim on every run; re-measure since row sizes vary.
            let target = max - max / 10;
            for _ in 0..16 {
                let used = self.used_bytes()?;
                if used <= max && report.deleted_by_size == 0 || used <= target {
                    break;
                }
                let count = self.count()?;
                if count == 0 {
                    break;
                }
                let excess = used.saturating_sub(target) as u128;
                let n = ((u128::from(count) * excess).div_ceil(u128::from(used.max(1)))).clamp(1, u128::from(count));
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                report.deleted_by_size +=
                    self.delete_where("seq IN (SELECT seq FROM events ORDER BY time_ms ASC, seq ASC LIMIT ?)", &[Value::Integer(n)])?;
            }
        }
        if report.deleted_by_age + report.deleted_by_size > 0 {
            let e = db_err(&self.path);
            // Each step of incremental_vacuum frees one page: step until done.
            let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum").map_err(&e)?;
            let mut rows = stmt.query([]).map_err(&e)?;
            while rows.next().map_err(&e)?.is_some() {}
            // Best effort: a reader holding a snapshot can keep the WAL from being truncated.
            let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(report)
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
