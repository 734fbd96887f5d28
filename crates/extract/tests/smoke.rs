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

fn verdict_of(data: &[u8]) -> Verdict {
    let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), Limits::default());
    i.chunk(data);
    i.finish().verdict
}

#[test]
fn text_that_only_looks_like_json_or_pdf_is_still_scanned() {
    // Starts with `[`: sniffed as JSON, but the spaced card survives the lenient tokenizer.
    assert_eq!(verdict_of(b"[2024-01-01 10:00] payment card 4111 1111 1111 1111 accepted\n"), Verdict::Match);
    // Mentions %PDF- but is not a PDF.
    assert_eq!(verdict_of(b"About the %PDF-1.7 header: card 4111 1111 1111 1111\n"), Verdict::Match);
    assert_eq!(verdict_of(b"plain words, nothing to see\n"), Verdict::Clean);
}
