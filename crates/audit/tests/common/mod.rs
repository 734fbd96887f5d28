//! Shared helpers for the audit integration tests.
#![allow(dead_code)]

use portcullis_audit::{Action, DetectorHit, Event, FileRecord};

/// An event with the fields the filters look at.
pub fn ev(action: Action, user: &str, app: Option<&str>, category: Option<&str>, host: &str, detectors: &[(&str, u64)]) -> Event {
    let mut e = Event::new(action, host).with_url(&format!("https://{host}/upload?token=secret"));
    e.user = Some(user.to_owned());
    e.client = Some("127.0.0.1:40000".to_owned());
    e.method = Some("POST".to_owned());
    e.app = app.map(str::to_owned);
    e.category = category.map(str::to_owned);
    e.activity = Some("upload".to_owned());
    e.rule = Some("test-rule".to_owned());
    e.bytes = 1234;
    e.detectors = detectors
        .iter()
        .map(|(d, n)| DetectorHit {
            detector: (*d).to_owned(),
            count: *n,
            evidence: vec!["4111********1111".to_owned()],
            value_hmacs: vec!["ab".repeat(32)],
        })
        .collect();
    if !detectors.is_empty() {
        e.files.push(FileRecord { name: Some("report.xlsx".into()), field: None, sha256: "cd".repeat(32), size: 1234, partial: false });
    }
    e
}
