//! Decompression bombs and friends: each is stopped by the limit meant for it, the verdict is
//! `unscannable` with a reason naming the limit, and the report shows the work done stayed
//! within one buffer of the limit (memory is bounded because nothing grows past that).
//! Peak process memory is checked separately in `bomb_memory.rs`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use portcullis_extract::{BodyHints, Inspection, Limits, Report, Step, Verdict};
use portcullis_scan::Ruleset;

/// Output buffer of the decoders and read size of archive members: the most a decoder can
/// produce past a limit before it is checked.
const ONE_BUFFER: u64 = 64 * 1024;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn run(data: &[u8], limits: Limits) -> Report {
    let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), limits).exhaustive(true);
    for c in data.chunks(16 * 1024) {
        if let Step::Done(_) = i.chunk(c) {
            break;
        }
    }
    i.finish()
}

fn no_ratio() -> Limits {
    Limits { max_ratio: u64::MAX / 4, ..Limits::default() }
}

fn reason(r: &Report) -> &str {
    r.reason.as_deref().unwrap_or("")
}

#[test]
fn gzip_bomb_trips_the_ratio_limit_within_one_buffer() {
    let data = fixture("bomb.gz.gz"); // 1.8 KB → 1 GiB
    let r = run(&data, Limits::default());
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("expansion ratio"), "{}", reason(&r));
    let allowed = 100 * data.len() as u64 + (1 << 20);
    assert!(r.decoded_bytes <= allowed + 2 * ONE_BUFFER, "decoded {} > {allowed}", r.decoded_bytes);
    assert!(r.findings.is_empty());
}

#[test]
fn gzip_bomb_trips_the_decoded_bytes_limit_when_ratio_is_off() {
    let data = fixture("bomb.gz.gz");
    let limits = Limits { max_decoded_bytes: 8 << 20, ..no_ratio() };
    let r = run(&data, limits);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("max_decoded_bytes"), "{}", reason(&r));
    assert!(r.decoded_bytes <= (8 << 20) + ONE_BUFFER, "{}", r.decoded_bytes);
}

#[test]
fn nested_zip_bomb_is_stopped_quickly_with_small_buffers() {
    let data = fixture("bomb_nested.zip"); // 23 KB → 16^4 × 16 MiB = 1 TiB
    let r = run(&data, Limits::default());
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("expansion ratio"), "{}", reason(&r));
    assert!(r.decoded_bytes <= 100 * data.len() as u64 + (1 << 20) + ONE_BUFFER);
    // Random-access buffering: the outer zip plus one nested zip per level, never the payload.
    assert!(r.peak_buffered < 1 << 20, "peak buffered {}", r.peak_buffered);
}

#[test]
fn nested_zip_bomb_trips_the_depth_limit() {
    let data = fixture("bomb_nested.zip");
    let limits = Limits { max_depth: 1, ..no_ratio() };
    let r = run(&data, limits);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("max_depth (1)"), "{}", reason(&r));
    // The zeros live at depth 4: nothing of the terabyte was inflated, only level-1 zips.
    assert!(r.decoded_bytes < 16 << 20, "{}", r.decoded_bytes);
}

#[test]
fn nested_zip_bomb_trips_the_entries_limit() {
    let data = fixture("bomb_nested.zip");
    let limits = Limits { max_entries: 20, ..no_ratio() };
    let r = run(&data, limits);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("max_entries (20)"), "{}", reason(&r));
}

#[test]
fn zip_larger_than_the_buffer_limit_is_refused() {
    let data = fixture("bomb_nested.zip");
    let limits = Limits { max_buffer: 16 * 1024, ..Limits::default() };
    let r = run(&data, limits);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("max_buffer"), "{}", reason(&r));
    assert!(r.peak_buffered <= 16 * 1024);
}

#[test]
fn billion_laughs_inside_docx_and_zip_is_unscannable_not_expanded() {
    for name in ["billion_laughs.docx", "billion_laughs.zip"] {
        let r = run(&fixture(name), Limits::default());
        assert_eq!(r.verdict, Verdict::Unscannable, "{name}");
        assert!(reason(&r).contains("DTD entities"), "{name}: {}", reason(&r));
        // 10^9 "lol"s would be 3 GB; nothing near that was produced.
        assert!(r.decoded_bytes < 1 << 20, "{name}: {}", r.decoded_bytes);
    }
}

#[test]
fn time_limit_trips() {
    let limits = Limits { max_time: Duration::ZERO, ..no_ratio() };
    let r = run(&fixture("bomb.gz.gz"), limits);
    assert_eq!(r.verdict, Verdict::Unscannable);
    assert!(reason(&r).contains("processing time"), "{}", reason(&r));
}

#[test]
fn a_limit_stops_feeding_early() {
    let data = fixture("bomb.gz.gz");
    let mut i = Inspection::new(Ruleset::builtin(), BodyHints::default(), Limits::default());
    assert_eq!(i.chunk(&data), Step::Done(Verdict::Unscannable));
    assert_eq!(i.chunk(b"more"), Step::Done(Verdict::Unscannable));
}

#[test]
fn a_match_found_before_a_limit_still_wins() {
    // Card number first, then a bomb in the same tar.gz body.
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("card.txt", b"card 4111 1111 1111 1111\n");
    add("zeros.bin", &vec![0u8; 4 << 20]);
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let body = gz.finish().unwrap();
    let r = run(&body, Limits::default());
    assert_eq!(r.verdict, Verdict::Match, "{r:?}");
    assert!(reason(&r).contains("expansion ratio"), "{}", reason(&r));
}
