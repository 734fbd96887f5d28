//! Streaming: any chunking of an input gives the findings of the whole input, values straddling
//! chunk boundaries are found, and the carry stays bounded.
#![allow(clippy::unwrap_used)] // test helpers

use std::sync::Arc;

use portcullis_scan::{Ruleset, Scanner};
use proptest::prelude::*;

/// Findings as comparable text (every field, including offsets, samples and HMACs).
fn whole(rules: &Arc<Ruleset>, input: &[u8]) -> String {
    let mut s = Scanner::new(Arc::clone(rules)).with_hmac_key([1; 32]);
    s.feed(input);
    format!("{:?}", s.finish())
}

fn chunked(rules: &Arc<Ruleset>, input: &[u8], cuts: &[usize]) -> String {
    let mut s = Scanner::new(Arc::clone(rules)).with_hmac_key([1; 32]);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut at = 0;
    for c in cuts {
        s.feed(&input[at..c]);
        at = c;
    }
    s.feed(&input[at..]);
    format!("{:?}", s.finish())
}

/// Rules with every kind of trigger: the built-ins plus a keyword dictionary with overlapping
/// keywords, a case-insensitive dictionary, an extracted-prefix regex and a full-scan regex.
fn all_rules() -> Arc<Ruleset> {
    let mut sources: Vec<(String, String)> = Ruleset::builtin_sources().iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    sources.push((
        "custom.toml".into(),
        r#"
[[detector]]
id = "codes"
description = "d"
severity = "low"
keywords = ["ALPHA", "ALPHA BETA", "BETA", "GAMMA"]
[detector.context]
keywords = ["project"]
within = 16

[[detector]]
id = "ticket"
description = "d"
severity = "low"
regex = '''PROJ-\d{2,6}'''

[[detector]]
id = "pairs"
description = "d"
severity = "low"
regex = '''[xyz]{2}-[0-9]{1,3}'''
min_count = 2
"#
        .into(),
    ));
    Arc::new(Ruleset::from_sources(&sources).unwrap())
}

const FRAGMENTS: &[&str] = &[
    "4111 1111 1111 1111",
    "4111111111111111",
    "5555-5555-5555-4444",
    "378282246310005",
    "A123456(3)",
    "AB987654(3)",
    "11010519491231002X",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "536-22-8726",
    "AKIA2OGYBAH6RN5WHQX4",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n",
    "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",
    "TOP SECRET",
    "CONFIDENTIAL",
    "ALPHA BETA",
    "GAMMA",
    "project",
    "PROJ-1234",
    "xy-12",
    "card",
    "HKID",
    " ",
    " ",
    "\n",
    "-",
    "1",
    "2024",
    "the quick brown fox ",
    "Secretary",
    "é中文",
];

fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn any_chunking_gives_the_whole_input_findings(
        input in input_strategy(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let rules = all_rules();
        prop_assert_eq!(chunked(&rules, &input, &cuts), whole(&rules, &input));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn byte_at_a_time_equals_whole(input in input_strategy()) {
        let rules = all_rules();
        let cuts: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(chunked(&rules, &input, &cuts), whole(&rules, &input));
    }
}

#[test]
fn every_split_point_of_a_dense_sample() {
    let rules = all_rules();
    let input = FRAGMENTS.join(" ").into_bytes();
    let expect = whole(&rules, &input);
    assert!(
        expect.contains("payment-card") && expect.contains("private-key") && expect.contains("github-token") && expect.contains("codes")
    );
    for cut in 0..=input.len() {
        assert_eq!(chunked(&rules, &input, &[cut]), expect, "split at {cut}");
    }
    for cut in 0..input.len().saturating_sub(7) {
        assert_eq!(chunked(&rules, &input, &[cut, cut + 3, cut + 7]), expect, "split at {cut}+3+7");
    }
}

#[test]
fn token_prefixes_are_found_at_every_alignment_in_sparse_text() {
    // Prose leaves few candidate blocks, so the automaton searches spans around them. `ghp_` is
    // found by its `p_`, two bytes in: a token starting in the last bytes of a 64-byte block has
    // its pair in the next block, whose span must reach back to it. Also split inside the prefix.
    let rules = Ruleset::builtin();
    let token = b"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";
    let prose = b"the minutes of the meeting are attached for review ".repeat(80);
    for at in 1000..1200 {
        let mut text = prose.clone();
        text[at - 1] = b' ';
        text[at..at + token.len()].copy_from_slice(token);
        text[at + token.len()] = b' ';
        let expect = whole(&rules, &text);
        assert!(expect.contains("github-token") && expect.contains(&format!("offsets: [{at}]")), "token at {at}: {expect}");
        for cut in [at, at + 1, at + 2, at + 3, at + 4] {
            assert_eq!(chunked(&rules, &text, &[cut]), expect, "token at {at}, split at {cut}");
        }
    }
}

#[test]
fn value_straddling_a_piece_boundary_is_found_once() {
    // Place a card across the internal 256 KiB piece boundary and across a feed boundary.
    let rules = Ruleset::builtin();
    let mut input = vec![b'a'; portcullis_scan::engine::PIECE - 8];
    input.extend_from_slice(b" 4111 1111 1111 1111 ");
    input.extend(std::iter::repeat_n(b'b', 1000));
    let mut s = Scanner::new(Arc::clone(&rules));
    s.feed(&input);
    let f = s.finish();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].count, f[0].offsets.as_slice()), (1, &[(portcullis_scan::engine::PIECE - 7) as u64][..]));
}

#[test]
fn carry_stays_bounded_on_long_inputs() {
    let rules = all_rules();
    let mut s = Scanner::new(Arc::clone(&rules));
    let block: Vec<u8> = FRAGMENTS.join(" ").into_bytes();
    let mut max = 0;
    for _ in 0..20_000 {
        s.feed(&block);
        max = max.max(s.buffered_bytes());
    }
    // Longest built-in match (private key block, a few hundred bytes) plus context margins.
    assert!(max < 4096, "carry grew to {max} bytes");
    assert!(s.bytes_scanned() > 5_000_000);
    let f = s.finish();
    let cards = f.iter().find(|f| f.detector == "payment-card").unwrap();
    assert_eq!(cards.count, 4 * 20_000);
    assert!(cards.offsets.len() == 32 && cards.samples.len() <= 5);
}

#[test]
fn reset_boundary_separates_segments() {
    let rules = Ruleset::builtin();
    let mut s = Scanner::new(Arc::clone(&rules));
    s.feed(b"4111 1111");
    s.reset_boundary();
    s.feed(b" 1111 1111");
    assert!(s.finish().is_empty());
    let mut s = Scanner::new(rules);
    s.feed(b"A123456(3)");
    assert!(!s.has_findings() || s.bytes_scanned() == 10);
    s.reset_boundary();
    assert!(s.has_findings());
}

#[test]
fn large_chunks_scanned_in_place_equal_small_chunks() {
    // ~1.2 MiB with values around the stitch (16 KiB) and piece (256 KiB) boundaries of chunks.
    let rules = all_rules();
    let mut input = Vec::new();
    let mut i = 0usize;
    while input.len() < 1_200_000 {
        let filler = 16_384 - 20 + (i * 7919) % 40;
        input.extend(std::iter::repeat_n(b'.', filler));
        input.extend_from_slice(FRAGMENTS[i % 21].as_bytes());
        i += 1;
    }
    let expect = whole(&rules, &input);
    assert!(expect.contains("payment-card"));
    let lens = [input.len() / 3, 100, 270_000, 16_383, 16_385, 1, 300_000];
    let mut cuts = Vec::new();
    let mut at = 0;
    for l in lens.iter().cycle() {
        at += l;
        if at >= input.len() {
            break;
        }
        cuts.push(at);
    }
    assert_eq!(chunked(&rules, &input, &cuts), expect);
    let small: Vec<usize> = (0..input.len()).step_by(4093).collect();
    assert_eq!(chunked(&rules, &input, &small), expect);
}

/// The built-ins with a case-insensitive dictionary of lowercase names (looked up only at word
/// starts by the prefilter sweep).
fn dictionary_rules() -> Arc<Ruleset> {
    let mut sources: Vec<(String, String)> = Ruleset::builtin_sources().iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    let toml = "[[detector]]\nid = \"birds\"\ndescription = \"d\"\nseverity = \"low\"\ncase_insensitive = true\n\
                keywords = [\"falcon\", \"falconer\", \"osprey\", \"kite runner\", \"harrier\", \"merlin9\"]\n";
    sources.push(("birds.toml".into(), toml.into()));
    Arc::new(Ruleset::from_sources(&sources).unwrap())
}

const BIRD_WORDS: &[&str] = &[
    "falcon", "FALCONER", "Osprey", "ospreys", "kite runner", "kite", "Kite Runner", "harrier_", "xharrier", "harrier", "Merlin9", "merlin",
];
const FILLER: &[&str] = &["9", "the", "a", "12", "-", " ", " ", " ", "\n", ".", "é", " Report", "fal", "spr"];

/// Whole-word, case-insensitive, leftmost, longest-first, non-overlapping occurrences.
fn naive_bird_count(text: &[u8]) -> u64 {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut kws: Vec<&[u8]> = ["falcon", "falconer", "osprey", "kite runner", "harrier", "merlin9"].iter().map(|k| k.as_bytes()).collect();
    kws.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let lower = text.to_ascii_lowercase();
    let (mut i, mut n) = (0, 0);
    'at: while i < lower.len() {
        if i == 0 || !word(lower[i - 1]) {
            for k in &kws {
                let end = i + k.len();
                if lower[i..].starts_with(k) && (end == lower.len() || !word(lower[end])) {
                    n += 1;
                    i = end;
                    continue 'at;
                }
            }
        }
        i += 1;
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn dictionary_words_are_counted_at_word_starts_only(
        // Sparse birds in long filler, so the sweep's filter is on (few candidate blocks), and
        // dense ones in short text.
        parts in prop_oneof![
            prop::collection::vec(prop_oneof![150 => prop::sample::select(FILLER), 1 => prop::sample::select(BIRD_WORDS)], 3000..6000),
            prop::collection::vec(prop_oneof![3 => prop::sample::select(FILLER), 1 => prop::sample::select(BIRD_WORDS)], 0..200),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let input = parts.concat().into_bytes();
        let rules = dictionary_rules();
        let expect = whole(&rules, &input);
        prop_assert_eq!(chunked(&rules, &input, &cuts), expect.clone());
        let mut s = Scanner::new(Arc::clone(&rules));
        s.feed(&input);
        let birds = s.finish().iter().find(|f| f.detector == "birds").map_or(0, |f| f.count);
        prop_assert_eq!(birds, naive_bird_count(&input), "{}", String::from_utf8_lossy(&input));
    }
}
