//! Sensitive-data detection for Portcullis: detectors loaded from TOML compile into one
//! [`Ruleset`]; a [`Scanner`] consumes a stream of chunks and reports masked [`Finding`]s.
//!
//! # Design: prefilter → confirm → validate → context
//!
//! Almost every byte that passes through a DLP gateway is innocent, so the engine is built to
//! reject innocent bytes as cheaply as possible and spend effort only near candidates:
//!
//! 1. **Prefilter.** One pass over each buffer (the *sweep*, `sweep.rs`), 64 bytes at a time
//!    as SSE2 byte-class masks (`blockmask.rs`), finds two things. Detectors that have no
//!    literal (card numbers, ID numbers) declare a *digit shape*: a run of at least
//!    `min_digit_run` digits, optionally `min_digits` digits in a group of runs joined by single
//!    separators and `uppercase_before_digits` capitals right before the run; the sweep lists
//!    the digit runs, and a group that fits no shape (a year, a page number) opens no window.
//!    All literals of all detectors (keywords, markers like `PRIVATE KEY`, prefixes like `AKIA`,
//!    whole keyword dictionaries, and literal prefixes extracted from officers' own regexes)
//!    compile into **one** Aho-Corasick automaton (leftmost-longest, so its SIMD "Teddy"
//!    prefilter applies; literals that are prefixes of the reported one are credited too); the
//!    sweep marks the blocks where a literal may start (from the byte classes of the literals'
//!    first two bytes, and for whole-word keywords from the first bytes of each word in the
//!    text) and the automaton searches only those, or the whole buffer when candidates are not
//!    rare or the classes are too common in text (lowercase literals that are not whole-word
//!    keywords). A regex with neither literal nor shape falls back to running over everything
//!    (correct, slower; `rules check` warns).
//! 2. **Confirm.** Each trigger opens a window of the detector's maximum match length on either
//!    side; windows of one detector are merged and its regex (regex-automata's meta engine,
//!    byte-oriented, ASCII classes, so it stays on its DFAs) runs only inside them. Look-around
//!    (`\b`) sees the real bytes outside the window.
//! 3. **Validate.** Checksums and structure (Luhn + issuer ranges, HKID and PRC ID check
//!    characters, IBAN mod 97, SSN area rules, GitHub's CRC32...) run only on confirmed
//!    candidates; see [`validate`]. Then allow-listed values and patterns are excluded.
//! 4. **Context.** Optional supporting keywords within N bytes raise the confidence one level
//!    (or, when `required`, are a condition of reporting).
//!
//! # Streaming
//! The scanner is sans-IO and designed for request bodies that arrive in chunks: feeding any
//! split of an input gives exactly the findings of the whole input (see [`engine`] for the
//! argument), including values that straddle chunk boundaries. Large chunks are scanned in
//! place (only a small stitch region is copied behind the carry); the scanner itself holds a
//! carry of at most a few KiB (the longest possible match plus context) and per-round scratch
//! proportional to the candidates in one 256 KiB piece.
//!
//! # Performance (see `benches/scan_throughput.rs`)
//! On prose the cost is the sweep (one read of the data; digit runs in digit-rich text are its
//! dearest part); confirmation, validation and context run only near candidates. On match-dense
//! data the cost is per value (regex confirm, checksum, context), so throughput falls with value
//! density; samples and HMACs are only computed for a detector's first 1024 values, and context
//! is no longer searched once a finding is at high confidence.
//!
//! # What is never kept
//! Matched values exist only transiently in the scan buffer. Findings hold masked samples
//! ([`mask`]), offsets, counts and, when the caller supplies a key, HMAC-SHA256 digests of the
//! values so incidents can be correlated without storing them.

pub mod blockmask;
pub mod engine;
pub mod rules;
mod sweep;
pub mod validate;

use serde::Serialize;

pub use engine::Scanner;
pub use rules::{Context, Detector, ExampleFailure, Examples, RuleError, Ruleset};
pub use validate::Validator;

/// How bad a finding is (set per detector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lowercase name, as in rule files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// How sure the engine is that a match is real: a detector's base confidence, raised one level by
/// supporting context. A finding carries the highest confidence among its matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    /// One level up (High stays High).
    pub fn raised(self) -> Confidence {
        match self {
            Confidence::Low => Confidence::Medium,
            Confidence::Medium | Confidence::High => Confidence::High,
        }
    }

    /// Lowercase name, as in rule files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// What one detector found in one input. Never contains a full matched value.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Detector id.
    pub detector: String,
    /// The detector's severity.
    pub severity: Severity,
    /// Validated, non-excluded matches.
    pub count: u64,
    /// Highest confidence among the matches.
    pub confidence: Confidence,
    /// Up to 5 distinct masked samples.
    pub samples: Vec<String>,
    /// Byte offsets of the first matches (up to 32), from the start of the stream.
    pub offsets: Vec<u64>,
    /// Hex HMAC-SHA256 of distinct matched values (canonical form), up to 32; only with a key.
    pub value_hmacs: Vec<String>,
}

/// Masks a value for display: keeps about a quarter of the characters at each end (at most 4)
/// and replaces the rest with `*`: `4111111111111111` → `4111********1111`,
/// `A123456(3)` → `A12****(3)`. Values of 4 characters or fewer are fully masked. Control
/// characters (line breaks in key blocks) become `*` too; at most 24 `*` are written.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    if n <= 4 {
        return "*".repeat(n);
    }
    let keep = n.div_ceil(4).min(4);
    let shown = |c: &char| if c.is_control() { '*' } else { *c };
    let mut out: String = chars[..keep].iter().map(shown).collect();
    out.extend(std::iter::repeat_n('*', (n - 2 * keep).min(MAX_MASK_STARS)));
    out.extend(chars[n - keep..].iter().map(shown));
    out
}

/// Long values (key blocks) are shown with at most this many `*`.
const MAX_MASK_STARS: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_matches_the_documented_forms() {
        assert_eq!(mask("4111111111111111"), "4111********1111");
        assert_eq!(mask("A123456(3)"), "A12****(3)");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA************MPLE");
        assert_eq!(mask("-----BEGIN\nPRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ff").chars().count(), 32);
        assert_eq!(mask("ab\u{e9}cd\u{e9}"), "ab**d\u{e9}");
    }
}
