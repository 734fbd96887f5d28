//! Sustained events/s through the audit writer, against same-run baselines.
//!
//! * `writer/durable_64_producers/{full,normal}` — 64 concurrent tasks each awaiting
//!   `record_durable` (what blocked uploads do), so group commit can batch.
//! * `writer/try_record_then_flush/full` — fire-and-forget events, then one flush.
//! * `baseline/one_txn_per_event/{full,normal}` — the naive way: `append(&[event])` per event, one
//!   transaction (and with FULL one fsync) each.
//! * `baseline/one_txn_per_1000/full` — a single 1000-event transaction straight on the store: the
//!   ceiling without queueing.
//!
//! * `query_200k/*` — responder queries (newest page, filtered pages, a value HMAC, stats) on a
//!   200,000-event log.
//!
//! Databases live under the target dir (a real disk; /tmp could be tmpfs, where fsync is free).
//! Run: `cargo bench -p portcullis-audit --bench writer`.
#![allow(clippy::unwrap_used)] // bench setup may unwrap

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_audit::{
    Action, AuditStore, AuditWriter, DetectorHit, Event, FileRecord, SqliteOptions, SqliteStore, Synchronous, WriterConfig,
};

fn event(i: u64) -> Event {
    let mut e = Event::new(Action::Block, "mail.google.com").with_url("https://mail.google.com/upload?upload_id=abc&x=1");
    e.user = Some(format!("user{}", i % 50));
    e.client = Some("10.0.0.7:51234".into());
    e.method = Some("POST".into());
    e.app = Some("gmail".into());
    e.category = Some("webmail".into());
    e.activity = Some("upload".into());
    e.rule = Some("inspect-uploads".into());
    e.bytes = 1 << 20;
    e.detectors.push(DetectorHit {
        detector: "payment-card".into(),
        count: 3,
        evidence: vec!["4111********1111".into(), "5500********0004".into()],
        value_hmacs: vec!["3f".repeat(32), "a1".repeat(32)],
    });
    e.files.push(FileRecord {
        name: Some("q3-customers.xlsx".into()),
        field: None,
        sha256: "9c".repeat(32),
        size: 1 << 20,
        partial: false,
    });
    e
}

fn store(dir: &tempfile::TempDir, name: &str, sync: Synchronous) -> SqliteStore {
    SqliteStore::open_with(dir.path().join(name), &SqliteOptions { synchronous: sync, ..SqliteOptions::default() }).unwrap()
}

fn sync_name(s: Synchronous) -> &'static str {
    match s {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let mut g = c.benchmark_group("writer");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    const N: u64 = 2000;
    g.throughput(Throughput::Elements(N));
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let writer =
            AuditWriter::spawn(Box::new(store(&dir, &format!("durable-{}.db", sync_name(sync)), sync)), WriterConfig::default()).unwrap();
        g.bench_function(format!("durable_64_producers/{}", sync_name(sync)), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..64u64)
                        .map(|t| {
                            let w = writer.clone();
                            tokio::spawn(async move {
                                for i in 0..N / 64 {
                                    w.record_durable(event(t * 1000 + i)).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    let writer = AuditWriter::spawn(Box::new(store(&dir, "try.db", Synchronous::Full)), WriterConfig::default()).unwrap();
    g.bench_function("try_record_then_flush/full", |b| {
        b.iter(|| {
            for i in 0..N {
                assert!(writer.try_record(event(i)));
            }
            writer.flush_blocking().unwrap();
        })
    });
    assert_eq!(writer.dropped(), 0);
    g.finish();

    let mut g = c.benchmark_group("baseline");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    const M: u64 = 200;
    g.throughput(Throughput::Elements(M));
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let mut s = store(&dir, &format!("single-{}.db", sync_name(sync)), sync);
        g.bench_function(format!("one_txn_per_event/{}", sync_name(sync)), |b| {
            b.iter(|| {
                for i in 0..M {
                    s.append(&[event(i)]).unwrap();
                }
            })
        });
    }
    g.throughput(Throughput::Elements(1000));
    let mut s = store(&dir, "batch.db", Synchronous::Full);
    g.bench_function("one_txn_per_1000/full", |b| {
        b.iter(|| {
            let batch: Vec<Event> = (0..1000).map(event).collect();
            s.append(&batch).unwrap();
        })
    });
    g.finish();
}

/// Responder queries on a 200k-event log (what `logs query` / the API run).
fn queries(c: &mut Criterion) {
    use portcullis_audit::Filter;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut s = store(&dir, "query.db", Synchronous::Normal);
    let detectors = ["payment-card", "hkid", "iban", "us-ssn", "private-key"];
    let hosts = ["mail.google.com", "drive.google.com", "www.dropbox.com", "web.whatsapp.com", "files.example"];
    for chunk in 0..200u64 {
        let batch: Vec<Event> = (0..1000u64)
            .map(|i| {
                let n = chunk * 1000 + i;
                let mut e = event(n);
                e.host = hosts[(n % 5) as usize].into();
                e.action = if n % 4 == 0 { Action::Log } else { Action::Block };
                e.detectors[0].detector = detectors[(n % 5) as usize].into();
                e.user = Some(format!("user{}", n % 500));
                e
            })
            .collect();
        s.append(&batch).unwrap();
    }
    let mut g = c.benchmark_group("query_200k");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let cases: Vec<(&str, Filter)> = vec![
        ("newest_100", Filter { limit: Some(100), ..Filter::default() }),
        ("action_user_100", Filter { action: Some(Action::Block), user: Some("user7".into()), limit: Some(100), ..Filter::default() }),
        ("detector_100", Filter { detector: Some("iban".into()), limit: Some(100), ..Filter::default() }),
        ("host_suffix_100", Filter { host: Some("dropbox.com".into()), limit: Some(100), ..Filter::default() }),
        ("value_hmac_all", Filter { value_hmac: Some("3f".repeat(32)), limit: Some(100), ..Filter::default() }),
    ];
    for (name, f) in cases {
        assert!(!s.query(&f).unwrap().is_empty(), "{name} finds nothing");
        g.bench_function(name, |b| b.iter(|| s.query(&f).unwrap()));
    }
    g.bench_function("stats_all", |b| b.iter(|| s.stats(&Filter::default()).unwrap()));
    g.finish();
}

criterion_group!(audit_writer, benches, queries);
criterion_main!(audit_writer);
