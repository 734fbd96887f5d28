//! The SQLite store and the writer against real database files.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::ev;
use portcullis_audit::{Action, AuditStore, AuditWriter, Event, Filter, Retention, SqliteOptions, SqliteStore, Synchronous, WriterConfig};
use portcullis_telemetry::Metrics;
use time::OffsetDateTime;

fn fixture(store: &mut SqliteStore) -> Vec<Event> {
    let events = vec![
        ev(Action::Block, "alice", Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 2)]),
        ev(Action::Block, "bob", Some("google-drive"), Some("cloud-storage"), "drive.google.com", &[("hkid", 1), ("payment-card", 1)]),
        ev(Action::Log, "alice", Some("dropbox"), Some("cloud-storage"), "www.dropbox.com", &[]),
        ev(Action::Bypass, "carol", None, None, "bank.example", &[]),
        ev(Action::Block, "carol", Some("whatsapp"), Some("instant-messaging"), "web.whatsapp.com", &[]),
        ev(Action::Allow, "bob", Some("gmail"), Some("webmail"), "MAIL.GOOGLE.COM.", &[]),
    ];
    let mut events = events;
    events[5].simulated = true;
    events[5].would = Some(Action::Block);
    store.append(&events).unwrap();
    events
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn filters_select_the_right_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    let all = fixture(&mut store);
    let q = |f: Filter| store.query(&f).unwrap();
    let by = |idx: &[usize]| -> Vec<&str> { idx.iter().rev().map(|&i| all[i].id.as_str()).collect() };

    assert_eq!(ids(&q(Filter::default())), by(&[0, 1, 2, 3, 4, 5]), "newest first");
    assert_eq!(ids(&q(Filter { action: Some(Action::Block), ..Filter::default() })), by(&[0, 1, 4]));
    let mut sim = Filter::default();
    sim.set_action("simulate").unwrap();
    assert_eq!(ids(&q(sim)), by(&[5]));
    assert_eq!(ids(&q(Filter { user: Some("alice".into()), ..Filter::default() })), by(&[0, 2]));
    assert_eq!(ids(&q(Filter { app: Some("gmail".into()), ..Filter::default() })), by(&[0, 5]));
    assert_eq!(ids(&q(Filter { category: Some("cloud-storage".into()), ..Filter::default() })), by(&[1, 2]));
    assert_eq!(ids(&q(Filter { detector: Some("payment-card".into()), ..Filter::default() })), by(&[0, 1]));
    assert_eq!(ids(&q(Filter { detector: Some("hkid".into()), ..Filter::default() })), by(&[1]));
    // Host: case-insensitive, trailing dot ignored, subdomains included, lookalikes not.
    assert_eq!(ids(&q(Filter { host: Some("mail.google.com".into()), ..Filter::default() })), by(&[0, 5]));
    assert_eq!(ids(&q(Filter { host: Some("google.com".into()), ..Filter::default() })), by(&[0, 1, 5]));
    assert_eq!(ids(&q(Filter { host: Some("oogle.com".into()), ..Filter::default() })), Vec::<&str>::new());
    assert_eq!(ids(&q(Filter { host: Some("_oogle.com".into()), ..Filter::default() })), Vec::<&str>::new());
    // Combined.
    let f = Filter { action: Some(Action::Block), user: Some("bob".into()), detector: Some("payment-card".into()), ..Filter::default() };
    assert_eq!(ids(&q(f)), by(&[1]));
    // get
    assert_eq!(store.get(&all[3].id).unwrap().unwrap(), all[3]);
    assert!(store.get("PC-00000000000000000000").unwrap().is_none());
    // URL stored redacted.
    assert_eq!(all[0].url.as_deref(), Some("https://mail.google.com/upload?token=REDACTED"));
}

#[test]
fn time_range_and_ordering() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for days in [10i64, 5, 1, 0] {
        let mut e = ev(Action::Block, "u", None, None, "h.example", &[]);
        e.time = now - time::Duration::days(days);
        events.push(e);
    }
    store.append(&events).unwrap();
    let got = store.query(&Filter { since: Some(now - time::Duration::days(6)), ..Filter::default() }).unwrap();
    assert_eq!(ids(&got), vec![&events[3].id[..], &events[2].id, &events[1].id]);
    let got = store
        .query(&Filter {
            since: Some(now - time::Duration::days(6)),
            until: Some(now - time::Duration::hours(12)),
            ascending: true,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(ids(&got), vec![&events[1].id[..], &events[2].id]);
}

#[test]
fn pagination_by_cursor_visits_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    let events: Vec<Event> = (0..257).map(|i| ev(Action::Block, &format!("u{}", i % 7), None, None, "h.example", &[])).collect();
    store.append(&events).unwrap();
    for ascending in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.query(&Filter { limit: Some(50), cursor: cursor.clone(), ascending, ..Filter::default() }).unwrap();
            assert!(page.len() <= 50);
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|e| e.id.clone());
            seen.extend(page.into_iter().map(|e| e.id));
        }
        let mut expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        if !ascending {
            expected.reverse();
        }
        assert_eq!(seen, expected);
    }
    // Pagination composes with a filter.
    let page = store.query(&Filter { user: Some("u3".into()), limit: Some(5), ..Filter::default() }).unwrap();
    assert_eq!(page.len(), 5);
    let next = store.query(&Filter { user: Some("u3".into()), cursor: Some(page[4].id.clone()), ..Filter::default() }).unwrap();
    assert_eq!(page.len() + next.len(), events.iter().filter(|e| e.user.as_deref() == Some("u3")).count());
    assert!(next.iter().all(|e| e.id < page[4].id));
}

#[test]
fn same_leaked_value_is_correlated_by_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    let shared = "5e".repeat(32);
    let mut a = ev(Action::Block, "alice", Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 1)]);
    a.detectors[0].value_hmacs = vec!["01".repeat(32), shared.clone()];
    let mut b = ev(Action::Log, "bob", Some("dropbox"), Some("cloud-storage"), "www.dropbox.com", &[("payment-card", 1)]);
    b.detectors[0].value_hmacs = vec![shared.to_uppercase()];
    let c = ev(Action::Block, "carol", None, None, "h.example", &[("hkid", 1)]);
    store.append(&[a.clone(), b.clone(), c]).unwrap();
    let hits = store.query(&Filter { value_hmac: Some(shared.clone()), ..Filter::default() }).unwrap();
    assert_eq!(ids(&hits), vec![&b.id[..], &a.id]);
    let hits = store.query(&Filter { value_hmac: Some("01".repeat(32)), ..Filter::default() }).unwrap();
    assert_eq!(ids(&hits), vec![&a.id[..]]);
    // Retention removes the value rows with their events.
    store
        .apply_retention(
            &Retention { max_age: Some(Duration::from_secs(1)), max_bytes: None },
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        )
        .unwrap();
    assert!(store.query(&Filter { value_hmac: Some(shared), ..Filter::default() }).unwrap().is_empty());
}

#[test]
fn pre_release_layouts_are_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 2;").unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("pre-release"), "{err}");
    rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
    assert!(matches!(SqliteStore::open(&path), Err(portcullis_audit::AuditError::SchemaTooNew { .. })));
}

#[test]
fn foreign_ids_list_in_time_order() {
    // Another recorder's ids (e.g. random hex) carry no order: listing and cursors follow time.
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    let base = OffsetDateTime::now_utc();
    let events: Vec<Event> = ["f0", "0a", "c3", "11", "9b", "77"]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let mut e = ev(Action::Block, "u", None, None, "h.example", &[]);
            e.id = format!("{hex}{}", "5".repeat(14));
            e.time = base + time::Duration::seconds(i as i64);
            e
        })
        .collect();
    store.append(&events).unwrap();
    let first = store.query(&Filter { limit: Some(4), ascending: true, ..Filter::default() }).unwrap();
    let rest = store.query(&Filter { cursor: Some(first[3].id.clone()), ascending: true, ..Filter::default() }).unwrap();
    let got: Vec<&str> = first.iter().chain(rest.iter()).map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids(&events));
    assert_eq!(store.get(&events[2].id).unwrap().unwrap(), events[2]);
}

#[test]
fn stats_count_blocks_by_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
    fixture(&mut store);
    let st = store.stats(&Filter::default()).unwrap();
    assert_eq!(st.total, 6);
    assert_eq!(st.blocks, 3);
    assert_eq!(st.simulated, 1);
    assert_eq!(st.by_action.get("block"), Some(&3));
    assert_eq!(st.by_action.get("allow"), Some(&1));
    let pairs = |v: &[portcullis_audit::Count]| v.iter().map(|c| (c.key.clone(), c.count)).collect::<Vec<_>>();
    assert_eq!(pairs(&st.blocks_by_category), vec![("cloud-storage".into(), 1), ("instant-messaging".into(), 1), ("webmail".into(), 1)]);
    assert_eq!(pairs(&st.blocks_by_detector), vec![("payment-card".into(), 2), ("hkid".into(), 1)]);
    assert_eq!(pairs(&st.blocks_by_user), vec![("alice".into(), 1), ("bob".into(), 1), ("carol".into(), 1)]);
    let st = store.stats(&Filter { user: Some("bob".into()), ..Filter::default() }).unwrap();
    assert_eq!((st.total, st.blocks), (2, 1));
    assert_eq!(pairs(&st.blocks_by_app), vec![("google-drive".into(), 1)]);
}

#[test]
fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut old = ev(Action::Block, "u", None, None, "old.example", &[("hkid", 1)]);
    old.time = now - time::Duration::days(40);
    let fresh = ev(Action::Block, "u", None, None, "new.example", &[("hkid", 1)]);
    store.append(&[old.clone(), fresh.clone()]).unwrap();
    let r = store.apply_retention(&Retention { max_age: Some(Duration::from_secs(30 * 86_400)), max_bytes: None }, now).unwrap();
    assert_eq!(r.deleted_by_age, 1);
    assert!(store.get(&old.id).unwrap().is_none());
    assert!(store.get(&fresh.id).unwrap().is_some());
    // The detector rows went with the event.
    assert_eq!(store.stats(&Filter::default()).unwrap().blocks_by_detector[0].count, 1);

    // Size: fill to well over 1 MiB, then trim to 512 KiB; the newest events survive.
    let batch: Vec<Event> =
        (0..6000).map(|_| ev(Action::Block, "u", Some("gmail"), Some("webmail"), "m.example", &[("payment-card", 1)])).collect();
    store.append(&batch).unwrap();
    assert!(store.used_bytes().unwrap() > 2 << 20);
    let limit = 512 * 1024;
    let r = store.apply_retention(&Retention { max_age: None, max_bytes: Some(limit) }, now).unwrap();
    assert!(r.deleted_by_size > 0);
    assert!(store.used_bytes().unwrap() <= limit, "{}", store.used_bytes().unwrap());
    let newest = batch.last().unwrap();
    assert!(store.get(&newest.id).unwrap().is_some());
    assert!(store.get(&fresh.id).unwrap().is_none(), "oldest go first");
    // The file itself shrank (incremental vacuum + WAL truncate).
    let file = std::fs::metadata(&path).unwrap().len();
    let wal = std::fs::metadata(dir.path().join("audit.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(file + wal <= limit + 64 * 1024, "file {file} wal {wal}");
    // A second run under the limit deletes nothing.
    let r = store.apply_retention(&Retention { max_age: None, max_bytes: Some(limit) }, now).unwrap();
    assert_eq!(r.deleted_by_size, 0);
}

#[test]
fn readers_see_committed_events_and_missing_db_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/audit.db");
    assert!(matches!(SqliteStore::open_existing(&path), Err(portcullis_audit::AuditError::NotFound(_))));
    let mut w = SqliteStore::open(&path).unwrap();
    let r = SqliteStore::open_existing(&path).unwrap();
    let e = ev(Action::Block, "u", None, None, "h.example", &[]);
    w.append(std::slice::from_ref(&e)).unwrap();
    assert_eq!(r.get(&e.id).unwrap().unwrap(), e);
    assert_eq!(r.journal_mode().unwrap(), "wal");
    let normal = SqliteStore::open_with(&path, &SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() }).unwrap();
    assert_eq!(normal.get(&e.id).unwrap().unwrap(), e);
}

#[test]
fn concurrent_writers_through_one_writer_and_two_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let metrics = Arc::new(Metrics::new());
    let writer =
        AuditWriter::open(&path, WriterConfig { metrics: Some(metrics.clone()), max_batch: 64, ..WriterConfig::default() }).unwrap();
    // A second, independent connection appending at the same time (another process would do the same).
    let other_path = path.clone();
    let other = std::thread::spawn(move || {
        let mut s = SqliteStore::open(&other_path).unwrap();
        let mut ids = Vec::new();
        for _ in 0..50 {
            let batch: Vec<Event> = (0..4).map(|_| ev(Action::Log, "other", None, None, "o.example", &[])).collect();
            s.append(&batch).unwrap();
            ids.extend(batch.into_iter().map(|e| e.id));
        }
        ids
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let durable_ids: Vec<String> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    let e =
                        ev(Action::Block, &format!("user{t}"), Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 1)]);
                    let id = e.id.clone();
                    assert_eq!(w.record_durable(e).await.unwrap(), id);
                    ids.push(id);
                    if i % 5 == 0 {
                        w.try_record(ev(Action::Log, "bg", None, None, "x.example", &[]));
                    }
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        writer.flush().await.unwrap();
        all
    });
    let other_ids = other.join().unwrap();
    let reader = SqliteStore::open_existing(&path).unwrap();
    let stored: HashSet<String> = reader.query(&Filter::default()).unwrap().into_iter().map(|e| e.id).collect();
    for id in durable_ids.iter().chain(other_ids.iter()) {
        assert!(stored.contains(id), "{id} missing");
    }
    assert_eq!(writer.dropped(), 0);
    assert_eq!(stored.len() as u64, 800 + 200 + 160);
    assert_eq!(writer.written(), 960);
    let text = metrics.encode().unwrap();
    assert!(text.contains("portcullis_blocks_total{category=\"webmail\",app=\"gmail\"} 800"), "{text}");
    assert!(text.contains("portcullis_audit_events_total 960"), "{text}");
}

#[test]
fn try_record_drops_and_counts_when_the_queue_is_full() {
    // A store whose append blocks until released lets the test fill the queue deterministically.
    struct Gate {
        inner: SqliteStore,
        release: std::sync::mpsc::Receiver<()>,
    }
    impl AuditStore for Gate {
        fn append(&mut self, events: &[Event]) -> Result<(), portcullis_audit::AuditError> {
            let _ = self.release.recv();
            self.inner.append(events)
        }
        fn scan(
            &self,
            f: &Filter,
            each: &mut dyn FnMut(Event) -> Result<bool, portcullis_audit::AuditError>,
        ) -> Result<(), portcullis_audit::AuditError> {
            self.inner.scan(f, each)
        }
        fn get(&self, id: &str) -> Result<Option<Event>, portcullis_audit::AuditError> {
            self.inner.get(id)
        }
        fn stats(&self, f: &Filter) -> Result<portcullis_audit::Stats, portcullis_audit::AuditError> {
            self.inner.stats(f)
        }
        fn record_dropped(&mut self, n: u64) -> Result<(), portcullis_audit::AuditError> {
            self.inner.record_dropped(n)
        }
        fn apply_retention(
            &mut self,
            r: &Retention,
            now: OffsetDateTime,
        ) -> Result<portcullis_audit::RetentionReport, portcullis_audit::AuditError> {
            self.inner.apply_retention(r, now)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let (release, rx) = std::sync::mpsc::channel();
    let gate = Gate { inner: SqliteStore::open(&path).unwrap(), release: rx };
    let metrics = Arc::new(Metrics::new());
    let writer = AuditWriter::spawn(
        Box::new(gate),
        WriterConfig { queue_capacity: 4, max_batch: 1, metrics: Some(metrics.clone()), ..WriterConfig::default() },
    )
    .unwrap();
    // The first event is taken by the writer (blocked in append); wait until it left the queue.
    assert!(writer.try_record(ev(Action::Log, "u", None, None, "h", &[])));
    while writer.queued() > 0 {
        std::thread::yield_now();
    }
    for _ in 0..4 {
        assert!(writer.try_record(ev(Action::Log, "u", None, None, "h", &[])));
    }
    assert!(!writer.try_record(ev(Action::Log, "u", None, None, "h", &[])));
    assert!(!writer.try_record(ev(Action::Log, "u", None, None, "h", &[])));
    assert_eq!(writer.dropped(), 2);
    assert_eq!(metrics.audit_dropped(), 2);
    for _ in 0..16 {
        let _ = release.send(());
    }
    writer.flush_blocking().unwrap();
    assert_eq!(writer.written(), 5);
    let reader = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 5);
    // The drops are recorded in the database too: offline readers learn the log is incomplete.
    assert_eq!(reader.stats(&Filter::default()).unwrap().dropped, 2);
}

#[test]
fn failed_batch_is_reported_to_durable_callers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::open(&path, WriterConfig::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let e = ev(Action::Block, "u", None, None, "h", &[]);
        let dup = e.clone();
        writer.record_durable(e).await.unwrap();
        // Same id again violates the UNIQUE constraint: the caller must hear about it.
        let err = writer.record_durable(dup).await.unwrap_err();
        assert!(matches!(err, portcullis_audit::AuditError::Write(_)), "{err}");
        assert_eq!(writer.dropped(), 1);
        assert_eq!(writer.failed_batches(), 1);
        // The writer keeps going.
        writer.record_durable(ev(Action::Block, "u", None, None, "h", &[])).await.unwrap();
        let st = SqliteStore::open_existing(&path).unwrap().stats(&Filter::default()).unwrap();
        assert_eq!((st.total, st.dropped), (2, 1));
    });
}

#[test]
fn writer_runs_retention_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let mut old = ev(Action::Block, "u", None, None, "h", &[]);
    old.time = OffsetDateTime::now_utc() - time::Duration::days(100);
    store.append(std::slice::from_ref(&old)).unwrap();
    drop(store);
    let writer = AuditWriter::open(
        &path,
        WriterConfig { retention: Retention { max_age: Some(Duration::from_secs(86_400)), max_bytes: None }, ..WriterConfig::default() },
    )
    .unwrap();
    writer.flush_blocking().unwrap();
    assert!(SqliteStore::open_existing(&path).unwrap().get(&old.id).unwrap().is_none());
}

#[test]
fn writer_runs_retention_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::open(
        &path,
        WriterConfig {
            retention: Retention { max_age: Some(Duration::from_secs(3600)), max_bytes: None },
            retention_interval: Duration::from_secs(1),
            ..WriterConfig::default()
        },
    )
    .unwrap();
    writer.flush_blocking().unwrap();
    // Written after the start-up run, by another connection: only a periodic run can remove it.
    let mut other = SqliteStore::open(&path).unwrap();
    let mut old = ev(Action::Block, "u", None, None, "h", &[]);
    old.time = OffsetDateTime::now_utc() - time::Duration::days(2);
    other.append(std::slice::from_ref(&old)).unwrap();
    // Poll (not a timing assertion: the generous bound only stops a broken build from hanging).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while other.get(&old.id).unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "periodic retention never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(writer);
}
