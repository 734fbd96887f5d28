//! Real files made by real tools (see fixtures/make_fixtures.py): each format's sensitive twin
//! is found, its clean twin is clean, and what cannot be inspected says so.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use portcullis_extract::{BodyHints, Inspection, Limits, Report, Step, Verdict};
use portcullis_scan::Ruleset;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn inspect_with(name: &str, hints: BodyHints, limits: Limits, chunk: usize) -> Report {
    let data = fixture(name);
    let mut i = Inspection::new(Ruleset::builtin(), hints, limits).exhaustive(true);
    for c in data.chunks(chunk) {
        if let Step::Done(_) = i.chunk(c) {
            break;
        }
    }
    i.finish()
}

fn inspect(name: &str) -> Report {
    // The name is a hint only; types come from the bytes.
    let hints = BodyHints { file_name: Some(name.to_string()), ..Default::default() };
    inspect_with(name, hints, Limits::default(), 4096)
}

fn detectors(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.detector.as_str()).collect()
}

/// (hit fixture, clean fixture, detector that must fire on the hit, expected outer kind)
const PAIRS: &[(&str, &str, &str, &str)] = &[
    ("text_hit.txt.gz", "text_clean.txt.gz", "payment-card", "gzip"),
    ("text_hit.zip", "text_clean.zip", "hkid", "zip"),
    ("zipped_twice_hit.zip", "zipped_twice_clean.zip", "classification-marking", "zip"),
    ("archive_hit.tar", "archive_clean.tar", "payment-card", "tar"),
    ("archive_hit.tar.gz", "archive_clean.tar.gz", "hkid", "gzip"),
    ("doc_hit.pdf", "doc_clean.pdf", "payment-card", "pdf"),
    ("doc_hit.rtf", "doc_clean.rtf", "payment-card", "rtf"),
    ("page_hit.html", "page_clean.html", "payment-card", "html"),
    ("text_hit.utf16.txt", "text_clean.utf16.txt", "hkid", "text/utf-16le"),
    ("form_hit.urlencoded", "form_clean.urlencoded", "payment-card", "form"),
    ("doc_hit.docx", "doc_clean.docx", "hkid", "docx"),
    ("sheet_hit.xlsx", "sheet_clean.xlsx", "payment-card", "xlsx"),
    ("slides_hit.pptx", "slides_clean.pptx", "classification-marking", "pptx"),
    ("doc_hit.odt", "doc_clean.odt", "payment-card", "odt"),
    ("upload_hit.multipart", "upload_clean.multipart", "hkid", "multipart"),
    ("api_hit.json", "api_clean.json", "payment-card", "json"),
];

#[test]
fn every_format_finds_its_value_and_its_clean_twin_is_clean() {
    for &(hit, clean, detector, kind) in PAIRS {
        let r = inspect(hit);
        assert_eq!(r.verdict, Verdict::Match, "{hit}: {r:#?}");
        assert!(detectors(&r).contains(&detector), "{hit}: wanted {detector}, got {:?}", detectors(&r));
        if kind == "multipart" {
            // An envelope is framing, not a file: its parts are what is listed.
            assert!(r.files.iter().all(|f| f.kind != "multipart"), "{hit}: {:?}", r.files);
            assert!(r.files.iter().any(|f| f.name.as_deref() == Some("review.docx") && f.kind == "docx"), "{hit}: {:?}", r.files);
        } else {
            assert_eq!(r.files[0].kind, kind, "{hit}: {:?}", r.files);
            assert_eq!(r.files[0].size, fixture(hit).len() as u64);
        }
        let c = inspect(clean);
        assert_eq!(c.verdict, Verdict::Clean, "{clean}: {c:#?}");
        assert!(c.reason.is_none(), "{clean}: {:?}", c.reason);
    }
}

#[test]
fn results_do_not_depend_on_chunk_size() {
    for &(hit, _, _, _) in PAIRS {
        let whole = inspect_with(hit, BodyHints::default(), Limits::default(), usize::MAX);
        let bytes = inspect_with(hit, BodyHints::default(), Limits::default(), 7);
        assert_eq!(whole.verdict, bytes.verdict, "{hit}");
        assert_eq!(detectors(&whole), detectors(&bytes), "{hit}");
        let counts = |r: &Report| r.findings.iter().map(|f| f.count).collect::<Vec<_>>();
        assert_eq!(counts(&whole), counts(&bytes), "{hit}");
        assert_eq!(whole.files, bytes.files, "{hit}");
    }
}

#[test]
fn docx_runs_split_by_formatting_are_joined() {
    let r = inspect("doc_hit.docx");
    let hkid = r.findings.iter().find(|f| f.detector == "hkid").expect("hkid");
    assert_eq!(hkid.samples, vec!["A12****(3)".to_string()]);
}

#[test]
fn multipart_part_names_and_types_are_reported() {
    let ct = String::from_utf8(fixture("upload_content_type.txt")).unwrap();
    let hints = BodyHints { content_type: Some(ct.trim().to_string()), ..Default::default() };
    let r = inspect_with("upload_hit.multipart", hints, Limits::default(), 1000);
    assert_eq!(r.verdict, Verdict::Match);
    let names: Vec<_> = r.files.iter().map(|f| (f.name.clone(), f.kind.clone())).collect();
    assert!(names.contains(&(Some("review.docx".into()), "docx".into())), "{names:?}");
    assert!(names.contains(&(None, "text".into())), "{names:?}");
}

#[test]
fn base64_blob_inside_json_is_decoded_and_listed() {
    let r = inspect("api_hit.json");
    let kinds: Vec<_> = r.files.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["json", "gzip", "text"], "{:?}", r.files);
}

#[test]
fn zip_nested_twice_lists_every_level() {
    let r = inspect("zipped_twice_hit.zip");
    let names: Vec<_> = r.files.iter().map(|f| f.name.as_deref().unwrap_or("")).collect();
    assert_eq!(names, ["zipped_twice_hit.zip", "outer/inner.zip", "inner.zip", "memo.txt"]);
    let marking = r.findings.iter().find(|f| f.detector == "classification-marking").unwrap();
    assert_eq!(marking.count, 1);
}

#[test]
fn a_match_stops_the_transfer_early_unless_exhaustive() {
    let data = fixture("archive_hit.tar");
    let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), Limits::default());
    let mut done = None;
    for c in data.chunks(512) {
        if let Step::Done(v) = i.chunk(c) {
            done = Some(v);
            break;
        }
    }
    assert_eq!(done, Some(Verdict::Match));
    let r = i.finish();
    assert_eq!(r.verdict, Verdict::Match);
    assert!(r.input_bytes < data.len() as u64, "stopped before the end: {} of {}", r.input_bytes, data.len());
}

#[test]
fn encrypted_zip_and_pdf_are_unscannable_with_a_reason() {
    let r = inspect("encrypted.zip");
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(r.reason.as_deref().unwrap_or("").contains("encrypted zip entry secret.txt"), "{:?}", r.reason);
    let r = inspect("encrypted.pdf");
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(r.reason.as_deref().unwrap_or("").contains("encrypted PDF"), "{:?}", r.reason);
}

#[test]
fn hmac_key_reaches_findings() {
    let data = fixture("doc_hit.docx");
    let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), Limits::default()).with_hmac_key([7; 32]);
    i.chunk(&data);
    let r = i.finish();
    let hkid = r.findings.iter().find(|f| f.detector == "hkid").unwrap();
    assert_eq!(hkid.value_hmacs.len(), 1);
    assert_eq!(hkid.value_hmacs[0].len(), 64);
}

#[test]
fn names_do_not_decide_the_type() {
    // A docx called .txt is still a docx; a gzip with no name is still gzip.
    let hints = BodyHints { file_name: Some("harmless.txt".into()), content_type: Some("text/plain".into()), ..Default::default() };
    let r = inspect_with("doc_hit.docx", hints, Limits::default(), 4096);
    assert_eq!(r.files[0].kind, "docx");
    assert_eq!(r.verdict, Verdict::Match);
}
