//! Hostile PDF structure: what pdf-extract would follow forever. A `/Parent` loop made it spin
//! (found by the `extract_pdf` fuzz target), a form XObject that invokes itself overflowed the
//! stack and aborted the process, and forms invoking the next one twice, thirty deep, were a
//! billion invocations. Each is now refused as unscannable with the reason, while forms nested
//! the ordinary way are still extracted.
//!
//! The PDFs are written here byte by byte (objects, a correct xref table, trailer): they are
//! crafted on purpose, as an attacker would.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::mpsc;
use std::time::Duration;

use portcullis_extract::{BodyHints, Inspection, Limits, Report, Step, Verdict};
use portcullis_scan::Ruleset;

/// A PDF with these objects (numbered from 1; object 1 is the catalog).
fn pdf(objects: &[String]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes());
    out
}

fn stream(dict: &str, content: &str) -> String {
    format!("<< {dict} /Length {} >>\nstream\n{content}\nendstream", content.len())
}

fn form(resources: &str, content: &str) -> String {
    stream(&format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] {resources}"), content)
}

const CATALOG: &str = "<< /Type /Catalog /Pages 2 0 R >>";
const PAGES: &str = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>";
const FONT: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

/// Object 3: the page, its content in object 4, the font in object 5, `xobjects` its /XObject.
fn page(xobjects: &str, content: &str) -> Vec<String> {
    vec![
        CATALOG.into(),
        PAGES.into(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << {xobjects} >> >> >>"
        ),
        stream("", content),
        FONT.into(),
    ]
}

/// Inspects `data` on another thread; a regression hangs or aborts instead of returning, so
/// the wait is bounded (generously: the point is termination, not speed).
fn inspect(data: Vec<u8>) -> Report {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), Limits::default());
        if let Step::Continue = i.chunk(&data) {}
        let _ = tx.send(i.finish());
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("inspection returned")
}

fn refused(objects: &[String], why: &str) {
    let r = inspect(pdf(objects));
    assert_eq!(r.verdict, Verdict::Unscannable, "{r:?}");
    let reason = r.reason.as_deref().unwrap_or("");
    assert!(reason.contains("PDF not extracted") && reason.contains(why), "{reason}");
}

#[test]
fn a_page_whose_parent_is_itself_is_refused() {
    let objects = vec![
        CATALOG.into(),
        PAGES.into(),
        "<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".into(),
        stream("", "BT 72 700 Td (hello) Tj ET"),
    ];
    refused(&objects, "/Parent chain loops");
}

#[test]
fn a_form_that_invokes_itself_is_refused() {
    // The form has no /Resources, so it runs with the page's, where /X0 is itself.
    let mut objects = page("/X0 6 0 R", "BT /F1 12 Tf 72 700 Td (hello) Tj ET /X0 Do");
    objects.push(form("", "/X0 Do"));
    refused(&objects, "invokes itself");
}

#[test]
fn two_forms_invoking_each_other_are_refused() {
    let mut objects = page("/A 6 0 R", "/A Do");
    objects.push(form("/Resources << /XObject << /B 7 0 R >> >>", "/B Do"));
    objects.push(form("/Resources << /XObject << /A 6 0 R >> >>", "/A Do"));
    refused(&objects, "invokes itself");
}

#[test]
fn forms_that_fan_out_are_refused() {
    // Each form invokes the next twice: 2^29 invocations of the last one.
    let mut objects = page("/X 6 0 R", "/X Do");
    for i in 0..30 {
        objects.push(if i < 29 {
            form(&format!("/Resources << /XObject << /X {} 0 R >> >>", 7 + i), "/X Do /X Do")
        } else {
            form("/Resources << /Font << /F1 5 0 R >> >>", "BT /F1 1 Tf (a) Tj ET")
        });
    }
    refused(&objects, "invoked more than 10000 times");
}

#[test]
fn forms_nested_too_deep_are_refused() {
    let mut objects = page("/X 6 0 R", "/X Do");
    for i in 0..40 {
        objects.push(form(&format!("/Resources << /XObject << /X {} 0 R >> >>", 7 + i), "/X Do"));
    }
    objects.push(form("", ""));
    refused(&objects, "nest deeper than 32");
}

#[test]
fn forms_nested_the_ordinary_way_are_still_extracted() {
    // Page -> X1 (twice) -> X2, whose text holds a card number.
    let mut objects = page("/X1 6 0 R", "/X1 Do /X1 Do");
    objects.push(form("/Resources << /Font << /F1 5 0 R >> /XObject << /X2 7 0 R >> >>", "/X2 Do"));
    objects.push(form("/Resources << /Font << /F1 5 0 R >> >>", "BT /F1 12 Tf 72 700 Td (card 4111 1111 1111 1111) Tj ET"));
    let r = inspect(pdf(&objects));
    assert_eq!(r.verdict, Verdict::Match, "{r:?}");
    assert!(r.findings.iter().any(|f| f.detector == "payment-card"), "{r:?}");
}
