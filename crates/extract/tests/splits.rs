//! Every streaming decoder, fed its input split at every possible point (and byte by byte),
//! produces exactly the text streams it produces for the whole input. The decoded text is also
//! checked for what the decoder must produce (unescaping, percent-decoding, joins).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use portcullis_extract::testing::extract_text;
use portcullis_extract::{BodyHints, Limits};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn hints(ct: Option<&str>, ce: Option<&str>) -> BodyHints {
    BodyHints { content_type: ct.map(Into::into), content_encoding: ce.map(Into::into), file_name: None }
}

/// Splits at every point and byte by byte; returns all text, joined, for content checks.
fn every_split(label: &str, h: BodyHints, input: &[u8]) -> String {
    let (whole, rw) = extract_text(h.clone(), Limits::default(), &[input]);
    for i in 0..=input.len() {
        let (t, r) = extract_text(h.clone(), Limits::default(), &[&input[..i], &input[i..]]);
        assert_eq!(t, whole, "{label}: split at {i}");
        assert_eq!((r.files, r.reason), (rw.files.clone(), rw.reason.clone()), "{label}: split at {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let (t, _) = extract_text(h, Limits::default(), &bytes);
    assert_eq!(t, whole, "{label}: byte by byte");
    assert!(rw.reason.is_none(), "{label}: {:?}", rw.reason);
    whole.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join("\n---\n")
}

#[test]
fn json_strings_unescaped_numbers_kept_base64_decoded() {
    let blob = b64(b"HKID A123456(3) inside a blob");
    let input = format!(
        r#"{{"a":"caf\u00e9 \ud83d\ude00 tab\tq\"x\\y","card":4111111111111111,"b64":"{blob}","arr":[true,null,-1.5e3],"bad":"\ud800x","esc\/":"\u0041"}}"#
    );
    let text = every_split("json", hints(None, None), input.as_bytes());
    for want in ["café 😀 tab\tq\"x\\y", "\n4111111111111111\n", "HKID A123456(3) inside a blob", "\u{FFFD}x", "esc/\nA"] {
        assert!(text.contains(want), "missing {want:?} in {text:?}");
    }
}

#[test]
fn form_percent_decoding_and_plus() {
    let blob = b64(b"card 4111 1111 1111 1111 in base64");
    let enc: String = blob.bytes().map(|c| if c.is_ascii_alphanumeric() { (c as char).to_string() } else { format!("%{c:02X}") }).collect();
    let input = format!("name=Chan+Tai+Man&card=4111%201111%201111%201111&pct=100%25&bad=%zz%4&b64={enc}");
    let text = every_split("form", hints(Some("application/x-www-form-urlencoded"), None), input.as_bytes());
    for want in ["name=Chan Tai Man\n", "card=4111 1111 1111 1111\n", "pct=100%\n", "bad=%zz%4", "card 4111 1111 1111 1111 in base64"] {
        assert!(text.contains(want), "missing {want:?} in {text:?}");
    }
}

fn multipart_body(boundary: &str) -> Vec<u8> {
    let mut b = Vec::new();
    write!(b, "preamble ignored\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nHKID A123456(3)\r\n").unwrap();
    write!(b, "--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"r.txt\"\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n").unwrap();
    let enc = b64(b"card 4111 1111 1111 1111 with --boundary-lookalike\r\n--not-it");
    for line in enc.as_bytes().chunks(20) {
        b.extend_from_slice(line);
        b.extend_from_slice(b"\r\n");
    }
    write!(b, "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--{boundary}--\r\nepilogue").unwrap();
    b
}

#[test]
fn multipart_with_declared_boundary() {
    let body = multipart_body("XyZ123");
    let text = every_split("multipart", hints(Some("multipart/form-data; boundary=XyZ123"), None), &body);
    assert!(text.contains("HKID A123456(3)"), "{text:?}");
    assert!(text.contains("card 4111 1111 1111 1111 with --boundary-lookalike\r\n--not-it"), "{text:?}");
    assert!(!text.contains("preamble") && !text.contains("epilogue"), "{text:?}");
}

#[test]
fn multipart_with_sniffed_boundary() {
    let body = multipart_body("----WebKitFormBoundaryabc");
    let body = &body[b"preamble ignored\r\n".len()..];
    let (_, r) = extract_text(hints(None, None), Limits::default(), &[body]);
    // Parsed as multipart: the part's file is listed (the envelope itself is not a file).
    assert_eq!(r.files.iter().filter_map(|f| f.name.as_deref()).collect::<Vec<_>>(), ["r.txt"]);
    assert!(r.files.iter().all(|f| f.kind != "multipart"), "{:?}", r.files);
    let text = every_split("multipart-sniffed", hints(None, None), body);
    assert!(text.contains("HKID A123456(3)"));
}

/// Large parts, as browsers send files, with text that almost matches the delimiter at every
/// offset: each part arrives whole and in order (hash and size) whatever the chunk sizes, so a
/// delimiter split across chunks is never missed nor mistaken for body.
#[test]
fn multipart_large_parts_at_any_chunk_size() {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (k, size) in [(0u8, 40_000usize), (1, 3), (2, 9_000)] {
        let mut p = Vec::new();
        while p.len() < size {
            // A lookalike of the delimiter, cut one byte shorter each time, then filler.
            let cut = p.len() % (boundary.len() + 4);
            p.extend_from_slice(&format!("\r\n--{boundary}").as_bytes()[..cut]);
            p.extend_from_slice(format!(" part {k} line {} ", p.len()).as_bytes());
        }
        p.truncate(size);
        parts.push(p);
    }
    let mut body = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"f{k}\"; filename=\"p{k}.txt\"\r\n\r\n").unwrap();
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let h = hints(Some(&format!("multipart/form-data; boundary={boundary}")), None);
    let (_, whole) = extract_text(h.clone(), Limits::default(), &[&body]);
    let want: Vec<(String, u64)> = parts.iter().map(|p| (sha(p), p.len() as u64)).collect();
    let got: Vec<(String, u64)> = whole.files.iter().map(|f| (f.sha256.clone(), f.size)).collect();
    assert_eq!(got, want);
    for size in (1..=90).chain([127, 1000, 4096, 16_384, 16_385, 65_536]) {
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        let (_, r) = extract_text(h.clone(), Limits::default(), &chunks);
        assert_eq!((&r.files, &r.reason), (&whole.files, &whole.reason), "chunks of {size}");
    }
}

fn sha(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

const PLAIN: &[u8] = b"{\"note\": \"card 4111 1111 1111 1111\", \"id\": \"A123456(3)\"}\n";

#[test]
fn content_encodings_gzip_deflate_br_zstd() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(PLAIN).unwrap();
    let gz = gz.finish().unwrap();
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zl.write_all(PLAIN).unwrap();
    let zl = zl.finish().unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(PLAIN).unwrap();
    let raw = raw.finish().unwrap();
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
        w.write_all(PLAIN).unwrap();
    }
    let zst = zstd::encode_all(PLAIN, 3).unwrap();
    // Two members, as `cat a.gz b.gz` makes.
    let two = [gz.clone(), gz.clone()].concat();
    let br_of_gzip = {
        let mut out = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        w.write_all(&gz).unwrap();
        drop(w);
        out
    };
    for (label, ce, body) in [
        ("gzip", "gzip", &gz),
        ("gzip x2 members", "gzip", &two),
        ("zlib", "deflate", &zl),
        ("raw deflate", "deflate", &raw),
        ("brotli", "br", &br),
        ("zstd", "zstd", &zst),
        ("gzip then br", "gzip, br", &br_of_gzip),
    ] {
        let text = every_split(label, hints(None, Some(ce)), body);
        assert!(text.contains("card 4111 1111 1111 1111\nid\nA123456(3)"), "{label}: {text:?}");
    }
}

#[test]
fn tar_members_stream() {
    let text = every_split("tar", hints(None, None), &fixture("archive_hit.tar"));
    assert!(text.contains("HKID: A123456(3)"), "{text:?}");
    let (_, r) = extract_text(hints(None, None), Limits::default(), &[&fixture("archive_hit.tar")]);
    let long = format!("a/{}record.txt", "deep/".repeat(30));
    assert!(r.files.iter().any(|f| f.name.as_deref() == Some(long.as_str())), "pax long name: {:?}", r.files);
}

#[test]
fn html_tags_stripped_entities_decoded() {
    let input = b"<!DOCTYPE html><html><body><p>4111 <b>1111</b>&nbsp;1111 &#49;111</p><!-- 5500 0000 --><input type=hidden value=\"A123456(3)\"><![CDATA[x<y]]>&amp;&unknown;</body></html>";
    let text = every_split("html", hints(None, None), input);
    for want in ["4111 1111 1111 1111", "A123456(3)", "x<y", "&&unknown;"] {
        assert!(text.contains(want), "missing {want:?} in {text:?}");
    }
    assert!(!text.contains("5500"), "comments are not text: {text:?}");
}

#[test]
fn rtf_control_words_stripped() {
    let input = b"{\\rtf1\\ansi\\uc1 caf\\'e9 \\u8364? {\\*\\ignored secret}{\\fonttbl{\\f0 Arial;}}card {\\b 4111 1111} 1111 1111\\par\\bin3 {}x end}";
    let text = every_split("rtf", hints(None, None), input);
    assert!(text.contains("café € card 4111 1111 1111 1111\n"), "{text:?}");
    assert!(!text.contains("secret") && !text.contains("Arial"), "{text:?}");
    assert!(text.ends_with("1111\n end"), "\\bin3 skips `{{}}x`: {text:?}");
    every_split("rtf fixture", hints(None, None), &fixture("doc_hit.rtf"));
}

#[test]
fn utf16_and_declared_charsets_become_utf8() {
    let text = every_split("utf16 bom", hints(None, None), &fixture("text_hit.utf16.txt"));
    assert!(text.contains("HKID: A123456(3)"), "{text:?}");
    let le: Vec<u8> = "HKID A123456(3) no BOM here".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let text = every_split("utf16 no bom", hints(None, None), &le);
    assert!(text.contains("HKID A123456(3)"), "{text:?}");
    let latin1 = b"r\xe9sum\xe9 card 4111 1111 1111 1111";
    let text = every_split("latin1", hints(Some("text/plain; charset=iso-8859-1"), None), latin1);
    assert!(text.contains("résumé card"), "{text:?}");
}

#[test]
fn wrapped_base64_in_text_is_decoded() {
    let secret = "Employee HKID A123456(3), card 4111 1111 1111 1111. ".repeat(3);
    let enc = b64(secret.as_bytes());
    let mut input = b"Attachment follows:\n".to_vec();
    for line in enc.as_bytes().chunks(76) {
        input.extend_from_slice(line);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"-- end\n");
    let text = every_split("mime base64", hints(None, None), &input);
    assert!(text.contains(&secret), "{text:?}");
}

#[test]
fn adjacent_base64_json_strings_decode_separately() {
    // Long unpadded blobs in consecutive fields (and a `\n`-wrapped one): each field boundary
    // ends a run, a line break inside a string continues one.
    let unpadded = |s: String| s[..s.len() / 3 * 3].to_string();
    // x's encoding is left unpadded and is not a whole number of quads: joined to the next
    // run, everything after it would decode misaligned.
    let x = format!("{}!", unpadded("first blob: card 4111 1111 1111 1111 x".repeat(2)));
    let y = unpadded("second blob, HKID A123456(3) on file yy".repeat(2));
    let z = unpadded("third blob, wrapped in the string zzzzz".repeat(3));
    let (ex, ey, ez) = (b64(x.as_bytes()).trim_end_matches('=').to_string(), b64(y.as_bytes()), b64(z.as_bytes()));
    assert_eq!(ex.len() % 4, 2);
    let ez = format!("{}\\n{}", &ez[..64], &ez[64..]);
    let input = format!(r#"{{"{ex}":"{ey}","z":"{ez}"}}"#);
    let text = every_split("adjacent blobs", hints(Some("application/json"), None), input.as_bytes());
    for want in [&x, &y, &z] {
        assert!(text.contains(want.as_str()), "{want:?} in {text:?}");
    }
}
