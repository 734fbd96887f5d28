//! The engine against a plain reference: for detectors without validator, context or
//! exclusions, the values found must be exactly those of one leftmost-first regex iteration over
//! the whole input (the engine's model, see `engine.rs`), whatever the prefilters skip and
//! however the input is chunked. Digit-run triggers are the subject here: their windows are cut
//! to the bytes a regex can consume, and matches may hold only part of a longer digit run.
#![allow(clippy::unwrap_used)] // test helpers

use std::sync::Arc;

use portcullis_scan::engine::MAX_OFFSETS;
use portcullis_scan::{Ruleset, Scanner};
use proptest::prelude::*;
use regex_automata::meta::Regex;
use regex_automata::util::syntax;

/// (id, regex, trigger settings).
const DETECTORS: &[(&str, &str, &str)] = &[
    // No word boundaries: a match can take the tail of a longer digit run.
    ("tail", r"\d{3}-\d{2}", "min_digit_run = 3\nmin_digits = 5"),
    ("code", r"\b[A-Z]{2}\d{2}[A-Z0-9 ]{4,12}\b", "min_digit_run = 2\nuppercase_before_digits = 2"),
    ("grouped", r"\b\d{4}(?:[ -]?\d{4}){2,3}\b", "min_digit_run = 4\nmin_digits = 12"),
    ("hk", r"\b[A-Z]{1,2}\d{6} ?(?:\([0-9A]\)|[0-9A]\b)", "min_digit_run = 6\nuppercase_before_digits = 1"),
    // Any byte but a newline: windows keep their max_len bounds only.
    ("dotted", r"\d{4}.{0,6}\d{4}", "min_digit_run = 4"),
];

fn rules() -> Arc<Ruleset> {
    let toml: String = DETECTORS
        .iter()
        .map(|(id, re, trigger)| {
            format!("[[detector]]\nid = \"{id}\"\ndescription = \"d\"\nseverity = \"low\"\nregex = '''{re}'''\n{trigger}\n\n")
        })
        .collect();
    Arc::new(Ruleset::from_sources(&[("reference.toml".to_string(), toml)]).unwrap())
}

/// Per detector: the number of matches of a leftmost-first iteration over the whole input, and
/// the start offsets of the first `MAX_OFFSETS` (what a finding reports).
type Found = Vec<(String, u64, Vec<u64>)>;

fn reference(input: &[u8]) -> Found {
    DETECTORS
        .iter()
        .map(|(id, re, _)| {
            let re = Regex::builder().syntax(syntax::Config::new().unicode(false).utf8(false)).build(re).unwrap();
            let starts: Vec<u64> = re.find_iter(input).map(|m| m.start() as u64).collect();
            (id.to_string(), starts.len() as u64, starts.into_iter().take(MAX_OFFSETS).collect())
        })
        .filter(|(_, count, _)| *count > 0)
        .collect()
}

fn engine(rules: &Arc<Ruleset>, input: &[u8], chunk: usize) -> Found {
    let mut s = Scanner::new(Arc::clone(rules));
    for c in input.chunks(chunk.max(1)) {
        s.feed(c);
    }
    let mut found: Found = s.finish().into_iter().map(|f| (f.detector, f.count, f.offsets)).collect();
    let order: Vec<&str> = DETECTORS.iter().map(|d| d.0).collect();
    found.sort_by_key(|(id, _, _)| order.iter().position(|o| o == id));
    found
}

fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => "[0-9]{1,9}",
        2 => "[A-Z]{1,3}",
        3 => prop::sample::select(vec![" ", "-", "(", ")", ",", "\n", "x", "ab", "(3)", " A"]).prop_map(str::to_string),
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn digit_detectors_find_what_a_whole_input_regex_finds(input in input_strategy(), chunk in 1usize..40) {
        let rules = rules();
        let want = reference(&input);
        prop_assert_eq!(&engine(&rules, &input, input.len()), &want, "{}", String::from_utf8_lossy(&input));
        prop_assert_eq!(&engine(&rules, &input, chunk), &want, "{}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn dense_rows_find_every_value() {
    // A CSV of values: windows per value, not one window over everything.
    let mut csv = String::new();
    for i in 0..2000 {
        csv.push_str(&format!("{i},AB12 CDEF {i:04},1234 5678 9012,{:03}-{:02},X123456(7),z\n", i % 1000, i % 100));
    }
    let want = reference(csv.as_bytes());
    assert_eq!(want.len(), DETECTORS.len(), "every detector has values in the rows");
    assert_eq!(engine(&rules(), csv.as_bytes(), 4096), want);
}
