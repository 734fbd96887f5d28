//! Crash durability: every event acknowledged by `record_durable` is in the database after the
//! writing process is killed with SIGKILL mid-stream.
//!
//! The child is this same test binary, re-executed to run the ignored `crash_child` helper: it
//! writes block events from several tasks (plus fire-and-forget noise) and prints `ACK <id>` after
//! each acknowledgement. The parent kills it after enough acks, reopens the database and checks
//! every acked id. Run for both durability settings: with `synchronous=NORMAL` a committed WAL
//! transaction is in the kernel's page cache, which survives the death of the process.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::ev;
use portcullis_audit::{Action, AuditStore, AuditWriter, SqliteOptions, SqliteStore, Synchronous, WriterConfig};

const CHILD_DB: &str = "PORTCULLIS_CRASH_CHILD_DB";
const CHILD_SYNC: &str = "PORTCULLIS_CRASH_CHILD_SYNC";

/// Not a test: the child process body (runs only when re-executed by `acked_events_survive_sigkill`).
#[test]
#[ignore = "helper process for acked_events_survive_sigkill_*"]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else { return };
    let sync = match std::env::var(CHILD_SYNC).as_deref() {
        Ok("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let store = SqliteStore::open_with(&db, &SqliteOptions { synchronous: sync, ..SqliteOptions::default() }).unwrap();
    let writer = AuditWriter::spawn(Box::new(store), WriterConfig { max_batch: 32, ..WriterConfig::default() }).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let e =
                        ev(Action::Block, &format!("user{t}"), Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 1)]);
                    let id = w.record_durable(e).await.unwrap();
                    println!("ACK {id}");
                    if i % 3 == 0 {
                        w.try_record(ev(Action::Log, "noise", None, None, "x.example", &[]));
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn crash_run(sync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &db)
        .env(CHILD_SYNC, sync)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_owned());
            if acked.len() == 400 {
                // Child::kill sends SIGKILL on Unix: no destructors, no flush, no checkpoint.
                child.kill().unwrap();
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(acked.len(), 400, "child ended early: {status:?}");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "child was not killed by SIGKILL: {status:?}");
    }
    let store = SqliteStore::open_existing(&db).unwrap();
    for id in &acked {
        let e = store.get(id).unwrap();
        assert!(e.is_some(), "acknowledged event {id} lost after SIGKILL ({sync})");
    }
    // The database is consistent (recovered from the WAL) and can be written again.
    let mut store = store;
    store.append(&[ev(Action::Block, "after", None, None, "h", &[])]).unwrap();
}

#[test]
fn acked_events_survive_sigkill_synchronous_full() {
    crash_run("full");
}

#[test]
fn acked_events_survive_sigkill_synchronous_normal() {
    crash_run("normal");
}
