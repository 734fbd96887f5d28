//! Quick throughput check of the scanner alone (no criterion, builds only this crate), for
//! profiling with `perf record`: `cargo run --release -p portcullis-scan --example scan_profile
//! [prose|csv|binary] [rounds]`. The reported figures come from `benches/scan_throughput.rs`.
use std::sync::Arc;
use std::time::Instant;

use portcullis_scan::{Ruleset, Scanner};

#[path = "../../../benches/support/scan_data.rs"]
mod scan_data;

/// CPU time of this thread (Linux: /proc/thread-self/schedstat), so a busy shared machine does
/// not distort the figures; wall time where unavailable.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 / 1e9)
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "prose".into());
    let rounds: usize = std::env::args().nth(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let data = match which.as_str() {
        "csv" => scan_data::dense_csv(16 * scan_data::MIB),
        "binary" => scan_data::random_binary(16 * scan_data::MIB),
        _ => scan_data::prose(64 * scan_data::MIB),
    };
    let rules = Ruleset::builtin();
    let needle = memchr::memmem::Finder::new(b"-----BEGIN OPENSSH PRIVATE KEY-----");
    // The bench's floor: a naive set of the same patterns (what `regex::bytes::RegexSet` runs:
    // the meta engine, byte-oriented, `set.matches(data)` over the whole input).
    let patterns: Vec<String> = rules
        .detectors()
        .iter()
        .map(|d| match &d.pattern {
            Some(p) => format!("(?-u){p}"),
            None => d.keywords.iter().map(|k| regex_syntax::escape(k)).collect::<Vec<_>>().join("|"),
        })
        .collect();
    let set = regex_automata::meta::Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().utf8(false))
        .configure(regex_automata::meta::Config::new().utf8_empty(false).match_kind(regex_automata::MatchKind::All))
        .build_many(&patterns)
        .expect("built-in patterns compile");
    // /proc/thread-self/schedstat advances in scheduler ticks: each figure repeats its pass
    // until at least 0.3 s of CPU time has gone by and reports the time per pass.
    let per_pass = |f: &mut dyn FnMut() -> u64| -> (f64, u64) {
        let wall = Instant::now();
        let t = cpu_seconds(wall);
        let (mut passes, mut out) = (0u32, 0);
        while passes == 0 || cpu_seconds(wall) - t < 0.3 {
            out = f();
            passes += 1;
        }
        ((cpu_seconds(wall) - t) / f64::from(passes), out)
    };
    for _ in 0..rounds {
        let (scan, n) = per_pass(&mut || {
            let mut s = Scanner::new(Arc::clone(&rules));
            for c in data.chunks(64 * 1024) {
                s.feed(c);
            }
            s.finish().iter().map(|f| f.count).sum()
        });
        let (mm, m) = per_pass(&mut || needle.find_iter(&data).count() as u64);
        let (floor, matched) = per_pass(&mut || {
            let mut pats = regex_automata::PatternSet::new(set.pattern_len());
            set.which_overlapping_matches(&regex_automata::Input::new(&data), &mut pats);
            pats.len() as u64
        });
        let gb = data.len() as f64 / 1e9;
        // The shared literal prefilter alone (the built-ins' keywords, leftmost-longest).
        // SCAN_PROFILE_LITERALS=a,b,c replaces the built-ins' literals (to see what they cost).
        let custom = std::env::var("SCAN_PROFILE_LITERALS").ok();
        let lits: Vec<&str> = match &custom {
            Some(c) => c.split(',').collect(),
            None => rules.detectors().iter().flat_map(|d| d.keywords.iter().map(String::as_str)).collect(),
        };
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&lits)
            .expect("literals compile");
        let (ac_s, hits) = per_pass(&mut || ac.find_iter(&data).count() as u64);
        println!(
            "{which} (CPU time): scan {:.3} GB/s ({n} values), memmem {:.2} GB/s ({m}) = {:.2}x scan, regexset floor {:.3} GB/s ({} patterns) = {:.2}x scan, literal prefilter alone {:.2} GB/s ({hits} hits)",
            gb / scan,
            gb / mm,
            scan / mm,
            gb / floor,
            matched,
            floor / scan,
            gb / ac_s
        );
    }
}
