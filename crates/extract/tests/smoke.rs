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

fn report_of(hints: BodyHints, data: &[u8]) -> portcullis_extract::Report {
    let mut i = Inspection::new(Ruleset::builtin(), hints, Limits::default());
    for c in data.chunks(16 * 1024) {
        i.chunk(c);
    }
    i.finish()
}

fn sha(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

/// Deterministic bytes that look random (xorshift).
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn base64_of_random_bytes_in_a_form_is_clean_not_corrupt_zlib() {
    // What `curl --data-binary @file` sends for a base64 file: a form whose `+` become spaces, so
    // the base64 finder sees ~100k short runs of random bytes; a few dozen start with zlib's or
    // gzip's two magic bytes. They are not compressed streams and the upload is not unscannable.
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(noise(6 << 20, 0x9e37_79b9_7f4a_7c15));
    let hints = BodyHints { content_type: Some("application/x-www-form-urlencoded".into()), ..Default::default() };
    let r = report_of(hints, text.as_bytes());
    assert_eq!(r.verdict, Verdict::Clean, "{:?}", r.reason);
}

#[test]
fn magic_bytes_that_do_not_inflate_are_scanned_as_binary() {
    use base64::Engine as _;
    // zlib's header (0x78 0x9c passes its check) and gzip's, then a reserved deflate block type.
    let mut zlib_like = vec![0x78, 0x9c];
    zlib_like.extend_from_slice(&[0xff; 40]);
    let mut gzip_like = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3];
    gzip_like.extend_from_slice(&[0xff; 40]);
    for blob in [zlib_like, gzip_like, vec![0x1f, 0x8b, 0x07, 0x41, 0x42, 0x43]] {
        let r = report_of(BodyHints::default(), &blob);
        assert_eq!(r.verdict, Verdict::Clean, "raw {blob:02x?}: {:?} {:?}", r.reason, r.files);
        assert!(matches!(r.files[0].kind.as_str(), "binary" | "text"), "{}", r.files[0].kind);
        let json = format!(r#"{{"attachment":"{}"}}"#, base64::engine::general_purpose::STANDARD.encode(&blob));
        let r = report_of(BodyHints::default(), json.as_bytes());
        assert_eq!(r.verdict, Verdict::Clean, "base64 {blob:02x?}: {:?}", r.reason);
    }
    // A card number after such a header is found in the raw bytes.
    let mut with_card = vec![0x78, 0x9c, 0xff, 0xff];
    with_card.extend_from_slice(b" card 4111 1111 1111 1111 ");
    assert_eq!(report_of(BodyHints::default(), &with_card).verdict, Verdict::Match);
}

#[test]
fn a_real_zlib_stream_that_breaks_later_is_still_unscannable() {
    let words: Vec<u8> = noise(300_000, 7).iter().map(|b| b"abcdefghij klmnop\n"[usize::from(*b) % 18]).collect();
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&words).unwrap();
    let mut z = e.finish().unwrap();
    assert!(z.len() > 8 * 1024);
    for b in &mut z[4096..4160] {
        *b = !*b;
    }
    let r = report_of(BodyHints::default(), &z);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(r.reason.as_deref().unwrap_or("").contains("corrupt zlib stream"), "{:?}", r.reason);
}

/// What a responder gets for an upload stopped at a finding: every file seen, and for the ones
/// cut short their first bytes' hash and size, marked partial (not an empty hash and size 0).
#[test]
fn a_stopped_upload_reports_the_part_of_each_file_it_saw() {
    let notes: Vec<u8> = b"meeting notes, nothing sensitive\n".repeat(300);
    let mut cards = b"name,card\nalice,4111 1111 1111 1111\n".to_vec();
    for i in 0..40_000 {
        cards.extend_from_slice(format!("order {i},{} items\n", i % 7).as_bytes());
    }
    let boundary = "XyZ";
    let mut body = Vec::new();
    for (name, content) in [("notes.txt", &notes), ("cards.csv", &cards)] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let hints = BodyHints { content_type: Some(format!("multipart/form-data; boundary={boundary}")), ..Default::default() };
    let mut i = Inspection::new(Ruleset::builtin(), hints, Limits::default());
    let mut fed = 0;
    for c in body.chunks(16 * 1024) {
        fed += c.len();
        if let portcullis_extract::Step::Done(v) = i.chunk(c) {
            assert_eq!(v, Verdict::Match);
            break;
        }
    }
    assert!(fed < body.len() / 2, "stopped early: {fed} of {}", body.len());
    let r = i.finish();
    assert_eq!(r.verdict, Verdict::Match);
    let file = |n: &str| r.files.iter().find(|f| f.name.as_deref() == Some(n)).unwrap_or_else(|| panic!("{n}: {:?}", r.files));
    // Seen whole: its own hash, not partial.
    let whole = file("notes.txt");
    assert_eq!((whole.sha256.as_str(), whole.size, whole.partial), (sha(&notes).as_str(), notes.len() as u64, false));
    // Cut short: the hash of exactly the bytes counted, from the start.
    let cut = file("cards.csv");
    assert!(cut.partial, "{cut:?}");
    assert!(cut.size > 0 && cut.size < cards.len() as u64, "{cut:?}");
    assert_eq!(cut.sha256, sha(&cards[..cut.size as usize]));
    // The multipart envelope is framing, not a file: only the two parts are listed.
    assert_eq!(r.files.len(), 2, "{:?}", r.files);
    // JSON carries `partial` only where it is true.
    let json = serde_json::to_value(&r.files).unwrap();
    assert_eq!(json.as_array().unwrap().iter().filter(|f| f.get("partial").is_some()).count(), 1, "{json}");
}

/// A declared `Content-Encoding` is the transfer's wire form, not a file: the decoded body is
/// listed (its hash is what a responder can match against the file on disk), the compressed
/// bytes are not. A `.gz` sent as itself (no header, found by its magic) is a file of its own and
/// is listed along with its content.
#[test]
fn a_content_coding_is_not_listed_but_a_gz_file_is() {
    let text = b"Quarterly figures, nothing sensitive in here.\n".repeat(2000);
    let gz = gzip(&text);
    let r = report_of(BodyHints { content_encoding: Some("gzip".into()), ..Default::default() }, &gz);
    assert_eq!(r.verdict, Verdict::Clean, "{r:?}");
    assert_eq!(r.files.len(), 1, "{:?}", r.files);
    assert_eq!((r.files[0].sha256.as_str(), r.files[0].size, r.files[0].kind.as_str()), (sha(&text).as_str(), text.len() as u64, "text"));

    // Two codings (`gzip, br`: gzip applied first): both are undone, neither is listed.
    let mut br = Vec::new();
    brotli::BrotliCompress(&mut gz.as_slice(), &mut br, &Default::default()).unwrap();
    let r = report_of(BodyHints { content_encoding: Some("gzip, br".into()), ..Default::default() }, &br);
    assert_eq!(
        r.files.iter().map(|f| (f.sha256.as_str(), f.kind.as_str())).collect::<Vec<_>>(),
        [(sha(&text).as_str(), "text")],
        "{:?}",
        r.files
    );

    let r = report_of(BodyHints { file_name: Some("figures.txt.gz".into()), ..Default::default() }, &gz);
    let listed: Vec<_> = r.files.iter().map(|f| (f.name.as_deref(), f.kind.as_str(), f.sha256.as_str())).collect();
    assert_eq!(listed, [(Some("figures.txt.gz"), "gzip", sha(&gz).as_str()), (Some("figures.txt"), "text", sha(&text).as_str())]);
}

/// Each part of a form upload is listed with the form field it was sent in, so a text field (a
/// webmail message body) is recognisable though it has no file name.
#[test]
fn form_parts_are_listed_with_their_field() {
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nHello, the minutes are attached.\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"minutes.txt\"\r\nContent-Type: text/plain\r\n\r\nNothing sensitive.\r\n\
--XyZ\r\nContent-Disposition: form-data; foo; name=\"cc\"\r\n\r\nbob@example.org\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"resume.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt\r\n\r\nCV\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"old\"; filename*=iso-8859-1'fr'r%E9sum%E9-latin.txt\r\n\r\nold CV\r\n--XyZ--\r\n";
    let r = report_of(BodyHints { content_type: Some("multipart/form-data; boundary=XyZ".into()), ..Default::default() }, body);
    assert_eq!(r.verdict, Verdict::Clean, "{r:?}");
    let listed: Vec<_> = r.files.iter().map(|f| (f.name.as_deref(), f.field.as_deref(), f.sha256.as_str())).collect();
    assert_eq!(
        listed,
        [
            (None, Some("body"), sha(b"Hello, the minutes are attached.").as_str()),
            (Some("minutes.txt"), Some("attachment"), sha(b"Nothing sensitive.").as_str()),
            (None, Some("cc"), sha(b"bob@example.org").as_str()),
            // The UTF-8 name wins over its ASCII fallback.
            (Some("résumé.txt"), Some("cv"), sha(b"CV").as_str()),
            // Decoded in the charset it names.
            (Some("résumé-latin.txt"), Some("old"), sha(b"old CV").as_str()),
        ]
    );
    let json = serde_json::to_value(&r.files).unwrap();
    assert_eq!(json[0]["field"], "body");
}
