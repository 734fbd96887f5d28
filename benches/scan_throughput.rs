//! DLP scan throughput with all built-in detectors, against two same-run baselines:
//!
//! * ceiling: `memchr::memmem` searching the same data for one rare needle (a single SIMD
//!   substring search: nothing that inspects every byte can be much faster);
//! * floor: a naive `regex::bytes::RegexSet` of the same detectors' patterns (no prefilter
//!   design, no validation).
//!
//! Data sets: (a) 64 MiB of English-like prose with rare sensitive values, (b) match-dense CSV
//! (every row holds a card, an SSN, an IBAN, an HKID), (c) random binary; then (a) again with a
//! compliance officer's keyword dictionary (2,000 project code names) added to the built-ins.
//! The scanner is fed 64 KiB chunks, as the proxy feeds request-body frames.
//!
//! Run: `cargo bench --bench scan_throughput` (set `SCAN_BENCH_QUICK=1` for fewer samples).
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_scan::{Ruleset, Scanner};

#[path = "support/scan_data.rs"]
mod scan_data;
use scan_data::{MIB, code_names, dense_csv, prose, random_binary};

fn scan(rules: &Arc<Ruleset>, data: &[u8]) -> usize {
    let mut s = Scanner::new(Arc::clone(rules));
    for chunk in data.chunks(64 * 1024) {
        s.feed(chunk);
    }
    s.finish().iter().map(|f| f.count as usize).sum()
}

/// The same detectors as one naive RegexSet (keywords become escaped alternations).
fn naive_set(rules: &Ruleset) -> regex::bytes::RegexSet {
    let patterns: Vec<String> = rules
        .detectors()
        .iter()
        .map(|d| match &d.pattern {
            Some(p) => format!("(?-u){p}"),
            None => d.keywords.iter().map(|k| regex::escape(k)).collect::<Vec<_>>().join("|"),
        })
        .collect();
    regex::bytes::RegexSet::new(patterns).expect("built-in patterns compile")
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("SCAN_BENCH_QUICK").is_some();
    let rules = Ruleset::builtin();
    let set = naive_set(&rules);
    let needle = memchr::memmem::Finder::new(b"-----BEGIN OPENSSH PRIVATE KEY-----");
    let sets =
        [("prose-64MiB", prose(64 * MIB)), ("dense-csv-16MiB", dense_csv(16 * MIB)), ("random-binary-16MiB", random_binary(16 * MIB))];
    let dictionary = {
        let names: Vec<String> = code_names(2000).iter().map(|n| format!("\"{n}\"")).collect();
        let toml = format!(
            "[[detector]]\nid = \"project-codenames\"\ndescription = \"code names\"\nseverity = \"high\"\n\
             keywords = [{}]\ncase_insensitive = true\n",
            names.join(", ")
        );
        let mut sources: Vec<(String, String)> = Ruleset::builtin_sources().iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        sources.push(("codenames.toml".into(), toml));
        Arc::new(Ruleset::from_sources(&sources).expect("dictionary rules compile"))
    };
    for (name, data) in &sets {
        bench_set(c, name, data, &rules, &set, &needle, quick);
    }
    let dict_set = naive_set(&dictionary);
    bench_set(c, "prose-64MiB+2000-keywords", &sets[0].1, &dictionary, &dict_set, &needle, quick);
}

fn bench_set(
    c: &mut Criterion,
    name: &str,
    data: &[u8],
    rules: &Arc<Ruleset>,
    set: &regex::bytes::RegexSet,
    needle: &memchr::memmem::Finder<'_>,
    quick: bool,
) {
    let found = scan(rules, data);
    eprintln!("{name}: {found} validated values found by portcullis");
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(if quick { 3 } else { 10 }));
    g.bench_function("portcullis", |b| b.iter(|| scan(rules, black_box(data))));
    g.bench_function("memmem-ceiling", |b| b.iter(|| needle.find_iter(black_box(data)).count()));
    g.bench_function("regexset-floor", |b| b.iter(|| set.matches(black_box(data)).iter().count()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
