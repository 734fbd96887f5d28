//! Peak memory while bombs are decoded far past what would fit a naive buffer: the process's
//! high-water mark (VmHWM) may grow by much less than the bytes decoded. One test in this
//! binary, so no other test shares the process's peak.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use portcullis_extract::{BodyHints, Inspection, Limits, Verdict};
use portcullis_scan::Ruleset;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn decoding_32_mib_of_bombs_keeps_peak_memory_small() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let gz = std::fs::read(dir.join("bomb.gz.gz")).unwrap();
    let zip = std::fs::read(dir.join("bomb_nested.zip")).unwrap();
    let rules = Ruleset::builtin();
    let limits = Limits { max_ratio: u64::MAX / 4, max_decoded_bytes: 32 << 20, ..Limits::default() };
    // Warm up allocator and lazy statics with a small run.
    let mut warm = Inspection::new(rules.clone(), BodyHints::default(), Limits::default());
    warm.chunk(&gz);
    let _ = warm.finish();

    let before = vm_hwm_kib();
    for data in [&gz, &zip] {
        let mut i = Inspection::new(rules.clone(), BodyHints::default(), limits.clone()).exhaustive(true);
        i.chunk(data);
        let r = i.finish();
        assert_eq!(r.verdict, Verdict::Unscannable);
        assert!(r.decoded_bytes >= 32 << 20, "decoded {}", r.decoded_bytes);
    }
    let grown_mib = (vm_hwm_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 16, "peak memory grew by {grown_mib} MiB while decoding 2 x 32 MiB");
}
