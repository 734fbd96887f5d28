//! DLP scan throughput with all built-in detectors, against two same-run baselines:
//!
//! * ceiling: `memchr::memmem` searching the same data for one rare needle (a single SIMD
//!   substring search: nothing that inspects every byte can be much faster);
//! * floor: a naive `regex::bytes::RegexSet` of the same detectors' patterns (no prefilter
//!   design, no validation).
//!
//! Data sets: (a) 64 MiB of English-like prose with rare sensitive values, (b) match-dense CSV
//! (every row holds a card, an SSN, an IBAN, an HKID), (c) random binary.
//! The scanner is fed 64 KiB chunks, as the proxy feeds request-body frames.
//!
//! Run: `cargo bench --bench scan_throughput` (set `SCAN_BENCH_QUICK=1` for fewer samples).
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_scan::{Ruleset, Scanner};

const MIB: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had",
    "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
    "more", "when", "will", "would", "who", "so", "no", "department", "policy", "quarterly", "report",
    "meeting", "budget", "secretary", "confidential", "restricted", "access", "customer", "account",
    "approval", "committee", "project", "deadline", "contract", "invoice", "schedule", "security",
    "government", "review", "information", "Minister", "Council", "Asia", "Hong", "Kong", "summary",
    "figures", "growth", "github", "keys", "private", "office", "staff", "identity", "card", "bank",
];

/// English-like prose: words, punctuation, paragraphs, some numbers (years, amounts, pages),
/// and a sensitive value about once per MiB.
fn prose(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rare = ["4111 1111 1111 1111", "A123456(3)", "TOP SECRET", "536-22-8726", "GB82 WEST 1234 5698 7654 32"];
    let mut out = Vec::with_capacity(len + 256);
    let mut sentence = 0;
    while out.len() < len {
        let w = WORDS[rng.below(WORDS.len())];
        if sentence == 0 {
            let mut cap = w.as_bytes().to_vec();
            cap[0] = cap[0].to_ascii_uppercase();
            out.extend_from_slice(&cap);
        } else {
            out.extend_from_slice(w.as_bytes());
        }
        sentence += 1;
        match rng.below(200) {
            0..=2 => out.extend_from_slice(format!(" {}", 1990 + rng.below(40)).as_bytes()),
            3 => out.extend_from_slice(format!(" ${}.{:02}", rng.below(100_000), rng.below(100)).as_bytes()),
            4 => out.extend_from_slice(format!(" (page {})", rng.below(300)).as_bytes()),
            _ => {}
        }
        if rng.below(MIB / 8) == 0 {
            out.extend_from_slice(b" ");
            out.extend_from_slice(rare[rng.below(rare.len())].as_bytes());
        }
        if sentence > 8 && rng.below(8) == 0 {
            out.extend_from_slice(if rng.below(6) == 0 { b".\n\n" } else { b". " });
            sentence = 0;
        } else {
            out.push(if rng.below(15) == 0 { b',' } else { b' ' });
            if out.last() == Some(&b',') {
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// CSV where every row holds several sensitive values.
fn dense_csv(len: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    let cards = ["4111 1111 1111 1111", "5555555555554444", "378282246310005", "4012-8888-8888-1881", "4111111111111112"];
    let ids = ["A123456(3)", "G123456(A)", "AB987654(3)", "A123456(4)"];
    let ibans = ["GB82WEST12345698765432", "DE89370400440532013000", "NL91ABNA0417164300"];
    let mut out = b"id,name,card,ssn,hkid,iban,amount\n".to_vec();
    let mut i = 0u64;
    while out.len() < len {
        i += 1;
        let row = format!(
            "{i},Customer {i},{},{:03}-{:02}-{:04},{},{},{}.{:02}\n",
            cards[rng.below(cards.len())],
            1 + rng.below(660),
            1 + rng.below(98),
            1 + rng.below(9998),
            ids[rng.below(ids.len())],
            ibans[rng.below(ibans.len())],
            rng.below(10_000),
            rng.below(100)
        );
        out.extend_from_slice(row.as_bytes());
    }
    out.truncate(len);
    out
}

fn random_binary(len: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

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
    let sets = [
        ("prose-64MiB", prose(64 * MIB)),
        ("dense-csv-16MiB", dense_csv(16 * MIB)),
        ("random-binary-16MiB", random_binary(16 * MIB)),
    ];
    for (name, data) in &sets {
        let found = scan(&rules, data);
        eprintln!("{name}: {found} validated values found by portcullis");
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(if quick { 3 } else { 10 }));
        g.bench_function("portcullis", |b| b.iter(|| scan(&rules, black_box(data))));
        g.bench_function("memmem-ceiling", |b| b.iter(|| needle.find_iter(black_box(data)).count()));
        g.bench_function("regexset-floor", |b| b.iter(|| set.matches(black_box(data)).iter().count()));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
