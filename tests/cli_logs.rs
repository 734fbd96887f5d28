//! `portcullis logs` against a real audit database filled through the audit crate.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::{Command, Output};

use portcullis_audit::{Action, AuditStore, DetectorHit, Event, FileRecord, SqliteStore};
use time::OffsetDateTime;

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).env_remove("PORTCULLIS_AUDIT_DB").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn event(action: Action, user: &str, app: Option<&str>, category: Option<&str>, host: &str, detectors: &[(&str, u64)]) -> Event {
    let mut e = Event::new(action, host).with_url(&format!("https://{host}/upload?session=s3cr3t&x=1"));
    e.user = Some(user.into());
    e.client = Some("10.1.2.3:50123".into());
    e.method = Some("POST".into());
    e.app = app.map(Into::into);
    e.category = category.map(Into::into);
    e.activity = Some("upload".into());
    e.rule = Some("block-personal-webmail".into());
    e.bytes = 2048;
    e.detectors = detectors
        .iter()
        .map(|(d, n)| DetectorHit {
            detector: (*d).into(),
            count: *n,
            evidence: vec!["4111********1111".into()],
            value_hmacs: vec!["9f".repeat(32)],
        })
        .collect();
    e
}

/// Fills a database; returns the events in insertion order.
fn fill(path: &Path) -> Vec<Event> {
    let mut store = SqliteStore::open(path).unwrap();
    let mut events = vec![
        event(Action::Block, "alice", Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 2)]),
        event(Action::Block, "bob", Some("google-drive"), Some("cloud-storage"), "drive.google.com", &[("hkid", 1)]),
        event(Action::Log, "alice", Some("dropbox"), Some("cloud-storage"), "www.dropbox.com", &[]),
        event(Action::Bypass, "carol", None, None, "bank.example", &[]),
        event(Action::Block, "bob", Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 1), ("us-ssn", 3)]),
        event(Action::Allow, "dave", Some("wechat"), Some("instant-messaging"), "web.wechat.com", &[]),
    ];
    events[0].time = OffsetDateTime::now_utc() - time::Duration::days(3);
    events[0].files.push(FileRecord { name: Some("cards.xlsx".into()), field: None, sha256: "ab".repeat(32), size: 9000, partial: false });
    events[3].reason = Some("bypass list: banking".into());
    events[5].simulated = true;
    events[5].would = Some(Action::Block);
    events[5].exception = Some("EX-2026-07".into());
    events[5].approver = Some("Head of Finance".into());
    store.append(&events).unwrap();
    events
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn query_json_filters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ev = fill(&db);
    let db = db.to_str().unwrap();

    let out = portcullis(&["logs", "query", "--db", db, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = json_lines(&stdout(&out));
    assert_eq!(all.len(), 6);
    assert_eq!(all[0]["id"], ev[5].id, "newest first");
    // Every field of the record is there.
    for k in [
        "id", "time", "user", "client", "method", "host", "url", "app", "category", "activity", "action", "rule", "exception", "approver",
        "simulated", "detectors", "files", "bytes", "reason",
    ] {
        assert!(all[0].get(k).is_some(), "missing {k}");
    }
    assert_eq!(all[5]["url"], "https://mail.google.com/upload?session=REDACTED&x=REDACTED");

    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["logs", "query", "--db", db, "--format", "json"];
        full.extend_from_slice(args);
        let out = portcullis(&full);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        json_lines(&stdout(&out)).iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
    };
    let want = |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| ev[i].id.clone()).collect() };
    assert_eq!(ids(&["--action", "block"]), want(&[4, 1, 0]));
    assert_eq!(ids(&["--action", "simulate"]), want(&[5]));
    assert_eq!(ids(&["--user", "alice"]), want(&[2, 0]));
    assert_eq!(ids(&["--app", "gmail"]), want(&[4, 0]));
    assert_eq!(ids(&["--category", "cloud-storage"]), want(&[2, 1]));
    assert_eq!(ids(&["--detector", "payment-card"]), want(&[4, 0]));
    assert_eq!(ids(&["--host", "google.com"]), want(&[4, 1, 0]));
    assert_eq!(ids(&["--since", "1d"]), want(&[5, 4, 3, 2, 1]));
    assert_eq!(ids(&["--until", "2d"]), want(&[0]));
    assert_eq!(ids(&["--action", "block", "--limit", "2"]), want(&[4, 1]));
    assert_eq!(ids(&["--action", "block", "--user", "bob", "--detector", "us-ssn"]), want(&[4]));
    let hmac = "9f".repeat(32);
    assert_eq!(ids(&["--value-hmac", &hmac]), want(&[4, 1, 0]));
    assert_eq!(ids(&["--value-hmac", &"00".repeat(32)]), Vec::<String>::new());
}

#[test]
fn query_table_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ev = fill(&db);
    let out = portcullis(&["logs", "query", "--db", db.to_str().unwrap(), "--action", "block"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("DETECTORS"), "{text}");
    assert!(lines[1].contains(&ev[4].id) && lines[1].contains("bob") && lines[1].contains("payment-card×1"), "{text}");
    // Columns line up: the ID column starts at the same offset on every line.
    let col = lines[1].find("PC-").unwrap();
    assert!(lines.iter().skip(1).all(|l| l.find("PC-") == Some(col)), "{text}");
}

#[test]
fn show_prints_one_incident_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ev = fill(&db);
    let db = db.to_str().unwrap();
    let out = portcullis(&["logs", "show", "--db", db, &ev[0].id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    for needle in [
        &ev[0].id[..],
        "alice",
        "block-personal-webmail",
        "payment-card ×2",
        "4111********1111",
        "cards.xlsx",
        &"ab".repeat(32),
        "10.1.2.3:50123",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("s3cr3t"));
    let out = portcullis(&["logs", "show", "--db", db, "--format", "json", &ev[5].id]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["approver"], "Head of Finance");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["would"], "block");

    let out = portcullis(&["logs", "show", "--db", db, "PC-00000000000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    let out = portcullis(&["logs", "show", "--db", db, "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    let out = portcullis(&["logs", "show", "--db", db, "../etc/passwd"]);
    assert_eq!(out.status.code(), Some(2));
    // Ids typed in lower case are found.
    let out = portcullis(&["logs", "show", "--db", db, &ev[1].id.to_lowercase()]);
    assert!(out.status.success());
}

#[test]
fn export_ecs_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ev = fill(&db);
    let db = db.to_str().unwrap();
    let out = portcullis(&["logs", "export", "--db", db, "--format", "ecs-json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = json_lines(&stdout(&out));
    assert_eq!(docs.len(), 6);
    let first = &docs[0];
    assert_eq!(first["event"]["id"], ev[0].id, "oldest first");
    assert_eq!(first["event"]["action"], "block");
    assert_eq!(first["user"]["name"], "alice");
    assert_eq!(first["source"]["ip"], "10.1.2.3");
    assert_eq!(first["destination"]["domain"], "mail.google.com");
    assert_eq!(first["url"]["full"], "https://mail.google.com/upload?session=REDACTED&x=REDACTED");
    assert_eq!(first["rule"]["name"], "block-personal-webmail");
    assert_eq!(first["http"]["request"]["method"], "POST");
    assert!(first["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(docs[5]["portcullis"]["approver"], "Head of Finance");

    let out_file = dir.path().join("export.csv");
    let out = portcullis(&["logs", "export", "--db", db, "--format", "csv", "--action", "block", "-o", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(&out_file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("id,time,action,"));
    assert!(lines[3].contains("payment-card:1;us-ssn:3"), "{csv}");
}

#[test]
fn stats_by_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    fill(&db);
    let db = db.to_str().unwrap();
    let out = portcullis(&["logs", "stats", "--db", db, "--format", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["blocks"], 3);
    assert_eq!(v["blocks_by_detector"][0], serde_json::json!({"key": "payment-card", "count": 2}));
    assert_eq!(v["blocks_by_user"][0], serde_json::json!({"key": "bob", "count": 2}));
    assert_eq!(v["blocks_by_category"][0], serde_json::json!({"key": "webmail", "count": 2}));
    let out = portcullis(&["logs", "stats", "--db", db, "--since", "1d"]);
    let text = stdout(&out);
    assert!(text.contains("blocks:    2"), "{text}");
    assert!(text.contains("blocks by app:"), "{text}");
}

#[test]
fn errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let out = portcullis(&["logs", "query", "--db", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit log"));
    assert!(!missing.exists(), "a reader must not create the database");
    let db = dir.path().join("audit.db");
    fill(&db);
    let out = portcullis(&["logs", "query", "--db", db.to_str().unwrap(), "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    let out = portcullis(&["logs", "query", "--db", db.to_str().unwrap(), "--action", "explode"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&db).unwrap();
    let events: Vec<Event> = (0..3000).map(|_| event(Action::Block, "u", None, None, "h.example", &[("hkid", 1)])).collect();
    store.append(&events).unwrap();
    // Far more output than a pipe buffer holds: the reader hangs up after one line (like `| head -1`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["logs", "query", "--db", db.to_str().unwrap(), "--format", "json", "--limit", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with('{'));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
}
