//! Extraction + scan throughput (portcullis-extract), with same-run baselines.
//!
//! * `gzip_body`: a 50 MiB JSON request body (records of prose, a rare card number), sent with
//!   `Content-Encoding: gzip`, through `Inspection` in 64 KiB chunks. Baselines on the same
//!   uncompressed bytes: `raw_scan` (Scanner alone, no decoding) and `inflate_only` (flate2
//!   decoding alone, no scanning).
//! * `docx`: a 20 MiB docx (48 MiB of document.xml with formatting runs + 15 MiB incompressible
//!   media), through `Inspection`. Baseline: `raw_scan` of the same uncompressed parts.
//!
//! Throughput is reported in bytes of *uncompressed content* per second for every row of a
//! group, so rows compare directly. Run: `cargo bench --bench extract_throughput`.
#![allow(clippy::unwrap_used)] // building the bench's inputs: a panic is the failure report

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_extract::{BodyHints, Inspection, Limits, Verdict};
use portcullis_scan::{Ruleset, Scanner};

const CHUNK: usize = 64 * 1024;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[(self.next() % words.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the", "quarterly", "report", "customer", "account", "meeting", "project", "delivery", "schedule", "review", "budget", "approved",
    "pending", "office", "team", "please", "update", "invoice", "contract", "supplier", "Hong", "Kong", "London", "order", "shipment",
    "number", "reference", "total", "amount", "notes", "and", "of", "to", "in", "for", "with", "on", "by", "risk", "audit", "policy",
    "draft", "final", "version", "2024", "Q3",
];

fn sentence(rng: &mut Rng, words: usize) -> String {
    (0..words).map(|_| rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

/// ~`size` bytes of JSON records; one in ~20k records carries a card number.
fn json_body(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(size + 1024);
    out.extend_from_slice(b"[");
    let mut i = 0u64;
    while out.len() < size {
        let note = if i % 20_000 == 7 { "card 4111 1111 1111 1111".to_string() } else { sentence(&mut rng, 12) };
        write!(
            out,
            r#"{{"id":{i},"name":"{} {}","city":"{}","note":"{}","amount":{}.{:02}}},"#,
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            note,
            rng.next() % 100_000,
            rng.next() % 100
        )
        .unwrap();
        i += 1;
    }
    out.extend_from_slice(b"{}]");
    out
}

/// A docx: document.xml of `xml_size` (paragraphs of 3 formatted runs) + `media` random bytes.
fn docx(xml_size: usize, media: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut xml = String::with_capacity(xml_size + 4096);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#);
    let mut p = 0u64;
    while xml.len() < xml_size {
        if p % 50_000 == 11 {
            // An ID split across three formatting runs.
            xml.push_str(r#"<w:p><w:r><w:t>HKID A12</w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>3456</w:t></w:r><w:r><w:t>(3) on file</w:t></w:r></w:p>"#);
        } else {
            let (a, b, c) = (sentence(&mut rng, 6), sentence(&mut rng, 4), sentence(&mut rng, 8));
            write_fmt(
                &mut xml,
                format_args!(
                    r#"<w:p><w:r><w:t xml:space="preserve">{a} </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>{b}</w:t></w:r><w:r><w:t xml:space="preserve"> {c}</w:t></w:r></w:p>"#
                ),
            );
        }
        p += 1;
    }
    xml.push_str("</w:body></w:document>");
    let media: Vec<u8> = (0..media / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
    let ct = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("[Content_Types].xml", deflated).unwrap();
    z.write_all(ct).unwrap();
    z.start_file("word/document.xml", deflated).unwrap();
    z.write_all(xml.as_bytes()).unwrap();
    z.start_file("word/media/image1.png", stored).unwrap();
    z.write_all(&media).unwrap();
    let file = z.finish().unwrap().into_inner();
    (file, vec![ct.to_vec(), xml.into_bytes(), media])
}

fn write_fmt(s: &mut String, args: std::fmt::Arguments<'_>) {
    std::fmt::Write::write_fmt(s, args).unwrap();
}

fn inspect(rules: &Arc<Ruleset>, hints: &BodyHints, data: &[u8]) -> Verdict {
    let mut i = Inspection::new(rules.clone(), hints.clone(), Limits::default()).exhaustive(true);
    for c in data.chunks(CHUNK) {
        i.chunk(c);
    }
    let r = i.finish();
    assert!(r.reason.is_none(), "{:?}", r.reason);
    r.verdict
}

fn raw_scan(rules: &Arc<Ruleset>, parts: &[&[u8]]) -> usize {
    let mut n = 0;
    for part in parts {
        let mut s = Scanner::new(rules.clone());
        for c in part.chunks(CHUNK) {
            s.feed(c);
        }
        n += s.finish().len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let rules = Ruleset::builtin();

    let body = json_body(50 << 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    let hints = BodyHints { content_encoding: Some("gzip".into()), content_type: Some("application/json".into()), ..Default::default() };
    assert_eq!(inspect(&rules, &hints, &gz), Verdict::Match);
    eprintln!("gzip body: {} MiB JSON, {} MiB gzip", body.len() >> 20, gz.len() >> 20);
    let mut g = c.benchmark_group("gzip_body_50MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("inspection(gunzip+json+scan)", |b| b.iter(|| black_box(inspect(&rules, &hints, &gz))));
    g.bench_function("baseline_raw_scan", |b| b.iter(|| black_box(raw_scan(&rules, &[&body]))));
    g.bench_function("baseline_inflate_only", |b| {
        b.iter(|| {
            let mut d = flate2::read::GzDecoder::new(&gz[..]);
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            while let Ok(k) = d.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            black_box(n)
        })
    });
    g.finish();
    drop(body);

    let (file, parts) = docx(48 << 20, 15 << 20);
    let uncompressed: usize = parts.iter().map(Vec::len).sum();
    let no_hints = BodyHints::default();
    assert_eq!(inspect(&rules, &no_hints, &file), Verdict::Match);
    eprintln!("docx: {} MiB file, {} MiB uncompressed parts", file.len() >> 20, uncompressed >> 20);
    let mut g = c.benchmark_group("docx_20MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Bytes(uncompressed as u64));
    g.bench_function("inspection(unzip+xml+scan)", |b| b.iter(|| black_box(inspect(&rules, &no_hints, &file))));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    g.bench_function("baseline_raw_scan", |b| b.iter(|| black_box(raw_scan(&rules, &refs))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
