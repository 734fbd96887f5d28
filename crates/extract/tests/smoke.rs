#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
use std::io::Write;

use portcullis_extract::{BodyHints, Inspection, Limits, Verdict};
use portcullis_scan::Ruleset;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_json_card_is_found() {
    let body = gzip(br#"{"name":"x","card":"4111 1111 1111 1111"}"#);
    let hints = BodyHints { content_encoding: Some("gzip".into()), ..Default::default() };
    let mut i = Inspection::new(Ruleset::builtin(), hints, Limits::default());
    i.chunk(&body);
    let r = i.finish();
    assert_eq!(r.verdict, Verdict::Match, "{r:?}");
    assert_eq!(r.findings[0].detector, "payment-card");
}

#[test]
fn inspection_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Inspection>();
}
