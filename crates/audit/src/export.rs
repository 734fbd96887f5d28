//! Output formats for `portcullis logs`: JSON lines (the [`Event`] serde form), Elastic Common
//! Schema JSON for SIEM import, CSV, and the human-readable table and detail views.
//!
//! ECS mapping (fields that ECS defines; the rest live under `portcullis.*`):
//!
//! | Event | ECS |
//! |---|---|
//! | time | `@timestamp` |
//! | id | `event.id` |
//! | action | `event.action` (+ `event.type`: `denied` for block, `allowed` otherwise) |
//! | reason | `event.reason` |
//! | user | `user.name` |
//! | client | `source.ip`, `source.port`, `source.address` |
//! | host | `destination.domain`, `url.domain` |
//! | url | `url.full` |
//! | method | `http.request.method` |
//! | bytes | `http.request.body.bytes` |
//! | rule | `rule.name` |
//! | app, category, activity, exception, approver, simulated, would, detectors, files | `portcullis.*` |
//!
//! CSV cells that start with `=`, `+`, `-`, `@`, tab or CR get a leading `'` so spreadsheet tools
//! do not evaluate them as formulas (hosts and URLs are attacker-influenced).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use crate::{Action, Event, Stats};

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(key.to_owned(), v);
    }
}

fn obj(pairs: Vec<(&str, Option<Value>)>) -> Option<Value> {
    let mut m = Map::new();
    for (k, v) in pairs {
        put(&mut m, k, v);
    }
    if m.is_empty() { None } else { Some(Value::Object(m)) }
}

fn s(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| Value::String(x.clone()))
}

/// The event as an ECS document (nested objects, absent fields omitted).
pub fn to_ecs(e: &Event) -> Value {
    let (ip, port) = match e.client.as_deref() {
        Some(c) => match c.parse::<SocketAddr>() {
            Ok(sa) => (Some(sa.ip()), Some(sa.port())),
            Err(_) => (c.parse::<IpAddr>().ok(), None),
        },
        None => (None, None),
    };
    let mut root = Map::new();
    root.insert("@timestamp".into(), Value::String(rfc3339(e.time)));
    put(
        &mut root,
        "event",
        obj(vec![
            ("id", Some(json!(e.id))),
            ("kind", Some(json!("event"))),
            ("category", Some(json!(["network"]))),
            ("type", Some(json!([if e.action == Action::Block { "denied" } else { "allowed" }]))),
            ("action", Some(json!(e.action.as_str()))),
            ("reason", s(&e.reason)),
            ("dataset", Some(json!("portcullis.audit"))),
            ("module", Some(json!("portcullis"))),
        ]),
    );
    put(&mut root, "user", obj(vec![("name", s(&e.user))]));
    put(
        &mut root,
        "source",
        obj(vec![("ip", ip.map(|i| json!(i.to_string()))), ("port", port.map(|p| json!(p))), ("address", s(&e.client))]),
    );
    put(&mut root, "destination", obj(vec![("domain", Some(json!(e.host)))]));
    put(&mut root, "url", obj(vec![("full", s(&e.url)), ("domain", Some(json!(e.host)))]));
    put(
        &mut root,
        "http",
        obj(vec![("request", obj(vec![("method", s(&e.method)), ("body", obj(vec![("bytes", Some(json!(e.bytes)))]))]))]),
    );
    put(&mut root, "rule", obj(vec![("name", s(&e.rule))]));
    put(&mut root, "observer", obj(vec![("vendor", Some(json!("Portcullis"))), ("type", Some(json!("proxy")))]));
    put(
        &mut root,
        "portcullis",
        obj(vec![
            ("app", s(&e.app)),
            ("category", s(&e.category)),
            ("activity", s(&e.activity)),
            ("exception", s(&e.exception)),
            ("approver", s(&e.approver)),
            ("simulated", Some(json!(e.simulated))),
            ("would", e.would.map(|a| json!(a.as_str()))),
            ("detectors", Some(json!(e.detectors))),
            ("files", Some(json!(e.files))),
        ]),
    );
    Value::Object(root)
}

/// One ECS JSON line.
pub fn write_ecs_line(w: &mut dyn Write, e: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &to_ecs(e))?;
    w.write_all(b"\n")
}

/// One event JSON line (the public record format).
pub fn write_json_line(w: &mut dyn Write, e: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *w, e)?;
    w.write_all(b"\n")
}

/// CSV columns, in order.
pub const CSV_COLUMNS: [&str; 22] = [
    "id", "time", "action", "simulated", "would", "user", "client", "method", "host", "url", "app", "category", "activity", "rule",
    "exception", "approver", "detectors", "evidence", "value_hmacs", "files", "bytes", "reason",
];

fn csv_cell(out: &mut String, value: &str) {
    let guarded = matches!(value.chars().next(), Some('=' | '+' | '-' | '@' | '\t' | '\r'));
    let needs_quotes = guarded || value.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The CSV header line.
pub fn write_csv_header(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{}", CSV_COLUMNS.join(","))
}

/// One CSV row (RFC 4180 quoting). Lists are `;`-separated: detectors as `id:count`, files as
/// `name:sha256:size`, with `:partial` after a file the transfer was stopped in.
pub fn write_csv_row(w: &mut dyn Write, e: &Event) -> io::Result<()> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let detectors: Vec<String> = e.detectors.iter().map(|d| format!("{}:{}", d.detector, d.count)).collect();
    let evidence: Vec<String> = e.detectors.iter().flat_map(|d| d.evidence.iter().cloned()).collect();
    let hmacs: Vec<String> = e.detectors.iter().flat_map(|d| d.value_hmacs.iter().cloned()).collect();
    let files: Vec<String> = e
        .files
        .iter()
        .map(|f| {
            let partial = if f.partial { ":partial" } else { "" };
            format!("{}:{}:{}{partial}", f.name.as_deref().unwrap_or(""), f.sha256, f.size)
        })
        .collect();
    let cells = [
        e.id.clone(),
        rfc3339(e.time),
        e.action.as_str().to_owned(),
        e.simulated.to_string(),
        e.would.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        opt(&e.user),
        opt(&e.client),
        opt(&e.method),
        e.host.clone(),
        opt(&e.url),
        opt(&e.app),
        opt(&e.category),
        opt(&e.activity),
        opt(&e.rule),
        opt(&e.exception),
        opt(&e.approver),
        detectors.join(";"),
        evidence.join(";"),
        hmacs.join(";"),
        files.join(";"),
        e.bytes.to_string(),
        opt(&e.reason),
    ];
    let mut line = String::with_capacity(256);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_cell(&mut line, c);
    }
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// `s` safe to print on a responder's terminal. File names (archive members, form parts), URLs
/// and reasons quoting them come from the uploader: a name holding ESC sequences could rewrite
/// the screen, one holding a newline could fake a line of the record, and bidirectional overrides
/// make `cv\u{202e}fdp.exe` display as `cvexe.pdf`. Those characters are shown escaped
/// (`\u{1b}`); everything else, including non-Latin names, as it is.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().map(|c| if hidden(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect())
}

fn clip(s: &str, max: usize) -> String {
    let s = printable(s);
    if s.chars().count() <= max {
        s.into_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A readable table of events (one line each; long cells clipped).
pub fn table(events: &[Event]) -> String {
    let headers = ["TIME", "ID", "ACTION", "USER", "APP", "CATEGORY", "HOST", "RULE", "DETECTORS"];
    let rows: Vec<[String; 9]> = events
        .iter()
        .map(|e| {
            let action = if e.simulated {
                format!("{}(sim:{})", e.action, e.would.map_or("?", |a| a.as_str()))
            } else {
                e.action.as_str().to_owned()
            };
            let dets: Vec<String> = e.detectors.iter().map(|d| format!("{}×{}", d.detector, d.count)).collect();
            let time = e.time.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"));
            [
                time.unwrap_or_default(),
                e.id.clone(),
                action,
                clip(e.user.as_deref().unwrap_or("-"), 20),
                clip(e.app.as_deref().unwrap_or("-"), 16),
                clip(e.category.as_deref().unwrap_or("-"), 18),
                clip(&e.host, 32),
                clip(e.rule.as_deref().unwrap_or("-"), 24),
                if dets.is_empty() { "-".to_owned() } else { dets.join(",") },
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// One incident in full, as `field: value` lines for a responder.
pub fn detail(e: &Event) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: &str| {
        out.push_str(&format!("{k:<11}{}\n", printable(v)));
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    field("id:", &e.id);
    field("time:", &rfc3339(e.time));
    let action = match (e.simulated, e.would) {
        (true, Some(w)) => format!("{} (simulated; would {w})", e.action),
        (true, None) => format!("{} (simulated)", e.action),
        _ => e.action.as_str().to_owned(),
    };
    field("action:", &action);
    field("rule:", &dash(&e.rule));
    field(
        "exception:",
        &match (&e.exception, &e.approver) {
            (Some(x), Some(a)) => format!("{x} (approved by {a})"),
            (Some(x), None) => x.clone(),
            _ => "-".into(),
        },
    );
    field("user:", &dash(&e.user));
    field("client:", &dash(&e.client));
    field("method:", &dash(&e.method));
    field("host:", &e.host);
    field("url:", &dash(&e.url));
    field("app:", &dash(&e.app));
    field("category:", &dash(&e.category));
    field("activity:", &dash(&e.activity));
    field("bytes:", &e.bytes.to_string());
    field("reason:", &dash(&e.reason));
    if e.detectors.is_empty() {
        field("detectors:", "-");
    } else {
        // Inspection stops at the first finding that decides: the counts then cover the content
        // up to that point, which a partial file shows.
        let stopped = e.files.iter().any(|f| f.partial);
        field("detectors:", if stopped { "(counted up to the point the transfer was stopped)" } else { "" });
        for d in &e.detectors {
            out.push_str(&format!("  {} ×{}\n", printable(&d.detector), d.count));
            for ev in &d.evidence {
                out.push_str(&format!("    evidence: {}\n", printable(ev)));
            }
            for h in &d.value_hmacs {
                out.push_str(&format!("    hmac:     {h}\n"));
            }
        }
    }
    if e.files.is_empty() {
        out.push_str("files:     -\n");
    } else {
        out.push_str("files:\n");
        for f in &e.files {
            let what = match (&f.name, &f.field) {
                (Some(name), _) => printable(name).into_owned(),
                (None, Some(field)) => format!("(form field \"{}\")", printable(field)),
                (None, None) => "(unnamed)".to_string(),
            };
            out.push_str(&format!("  {what}  sha256={}  {} bytes", f.sha256, f.size));
            out.push_str(if f.partial {
                " (partial: the first bytes only; the transfer was stopped before the file ended)\n"
            } else {
                "\n"
            });
        }
    }
    out
}

/// Stats as readable text.
pub fn stats_text(st: &Stats) -> String {
    let mut out = String::new();
    let period = match (st.since, st.until) {
        (Some(a), Some(b)) => format!("{} .. {}", rfc3339(a), rfc3339(b)),
        (Some(a), None) => format!("since {}", rfc3339(a)),
        (None, Some(b)) => format!("until {}", rfc3339(b)),
        (None, None) => "all time".into(),
    };
    out.push_str(&format!("period:    {period}\nevents:    {}\n", st.total));
    let actions: Vec<String> = st.by_action.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&format!("by action: {}\n", if actions.is_empty() { "-".into() } else { actions.join(" ") }));
    out.push_str(&format!("simulated: {}\nblocks:    {}\n", st.simulated, st.blocks));
    if st.dropped > 0 {
        out.push_str(&format!("dropped:   {} (all time: events the gateway could not record; this log is incomplete)\n", st.dropped));
    }
    for (title, rows) in [
        ("blocks by category", &st.blocks_by_category),
        ("blocks by app", &st.blocks_by_app),
        ("blocks by detector", &st.blocks_by_detector),
        ("blocks by user", &st.blocks_by_user),
    ] {
        out.push_str(&format!("\n{title}:\n"));
        if rows.is_empty() {
            out.push_str("  -\n");
        }
        for c in rows {
            out.push_str(&format!("  {:>8}  {}\n", c.count, printable(&c.key)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DetectorHit, FileRecord};

    fn sample() -> Event {
        let mut e = Event::new(Action::Block, "mail.example").with_url("https://mail.example/up?x=1");
        e.user = Some("alice".into());
        e.client = Some("10.0.0.5:51234".into());
        e.method = Some("POST".into());
        e.rule = Some("=cmd|' /C calc'!A0".into());
        e.detectors.push(DetectorHit {
            detector: "payment-card".into(),
            count: 2,
            evidence: vec!["4111********1111".into()],
            value_hmacs: vec!["aa".into()],
        });
        e.files.push(FileRecord { name: Some("a, b.txt".into()), field: None, sha256: "00".repeat(32), size: 10, partial: false });
        e
    }

    #[test]
    fn ecs_has_standard_fields() {
        let v = to_ecs(&sample());
        assert_eq!(v["event"]["action"], "block");
        assert_eq!(v["user"]["name"], "alice");
        assert_eq!(v["source"]["ip"], "10.0.0.5");
        assert_eq!(v["source"]["port"], 51234);
        assert_eq!(v["url"]["full"], "https://mail.example/up?x=REDACTED");
        assert_eq!(v["destination"]["domain"], "mail.example");
        assert_eq!(v["http"]["request"]["method"], "POST");
        assert_eq!(v["portcullis"]["detectors"][0]["detector"], "payment-card");
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("user").is_some());
    }

    #[test]
    fn csv_quotes_and_guards_formulas() {
        let mut buf = Vec::new();
        write_csv_header(&mut buf).unwrap();
        write_csv_row(&mut buf, &sample()).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"'=cmd|' /C calc'!A0\""), "{}", lines[1]);
        assert!(lines[1].contains("\"a, b.txt:"), "{}", lines[1]);
        assert!(lines[1].contains("payment-card:2"));
    }

    #[test]
    fn table_and_detail_are_readable() {
        let e = sample();
        let t = table(std::slice::from_ref(&e));
        assert!(t.starts_with("TIME"));
        assert!(t.contains(&e.id));
        assert!(t.contains("payment-card×2"));
        let d = detail(&e);
        assert!(d.contains("evidence: 4111********1111"));
        assert!(d.contains("a, b.txt"));
        assert!(!d.contains("partial") && !d.contains("stopped"), "{d}");
    }

    #[test]
    fn a_file_the_transfer_was_stopped_in_is_shown_as_partial() {
        let mut e = sample();
        e.files.push(FileRecord { name: Some("cards.csv".into()), field: None, sha256: "11".repeat(32), size: 65536, partial: true });
        let d = detail(&e);
        assert!(d.contains("(counted up to the point the transfer was stopped)"), "{d}");
        let line = d.lines().find(|l| l.contains("cards.csv")).unwrap();
        assert!(line.contains("65536 bytes (partial: the first bytes only"), "{line}");
        let mut buf = Vec::new();
        write_csv_row(&mut buf, &e).unwrap();
        assert!(String::from_utf8(buf).unwrap().contains(&format!("cards.csv:{}:65536:partial", "11".repeat(32))));
        assert_eq!(to_ecs(&e)["portcullis"]["files"][1]["partial"], true);
    }

    #[test]
    fn names_from_uploads_cannot_rewrite_the_terminal_or_fake_lines() {
        let mut e = sample();
        e.files.push(FileRecord {
            name: Some("cv\u{202e}fdp.exe\n  evidence: none\u{1b}[2K".into()),
            field: None,
            sha256: "33".repeat(32),
            size: 1,
            partial: false,
        });
        e.reason = Some("unreadable zip entry \u{1b}]0;pwned\u{7}".into());
        e.host = "évian.example\u{1b}[31m".into();
        let d = detail(&e);
        assert!(!d.chars().any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{202e}'), "{d:?}");
        assert!(d.contains(r"cv\u{202e}fdp.exe\u{a}  evidence: none\u{1b}[2K  sha256="), "{d}");
        assert!(!d.lines().any(|l| l.trim_start().starts_with("evidence: none")), "{d}");
        // Non-Latin text stays readable.
        assert!(d.contains(r"host:      évian.example\u{1b}[31m"), "{d}");
        let t = table(std::slice::from_ref(&e));
        assert!(!t.contains('\u{1b}') && t.contains(r"évian.example\u{1b}[31m"), "{t}");
        assert_eq!(printable("中文 résumé.pdf"), "中文 résumé.pdf");
    }

    #[test]
    fn a_form_text_field_is_shown_by_its_field_name() {
        let mut e = sample();
        e.files.push(FileRecord { name: None, field: Some("body".into()), sha256: "22".repeat(32), size: 812, partial: false });
        let d = detail(&e);
        assert!(d.contains(&format!("  (form field \"body\")  sha256={}  812 bytes", "22".repeat(32))), "{d}");
        assert_eq!(to_ecs(&e)["portcullis"]["files"][1]["field"], "body");
        // Absent, not null, where there is none; older records without it still read.
        assert!(to_ecs(&e)["portcullis"]["files"][0].get("field").is_none());
        let old: FileRecord = serde_json::from_str(r#"{"name":"a.txt","sha256":"00","size":1}"#).unwrap();
        assert_eq!(old.field, None);
    }
}
