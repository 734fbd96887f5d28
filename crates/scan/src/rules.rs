//! Rule files: TOML → validated [`Detector`]s → one compiled [`Ruleset`].
//!
//! Loading is all-or-nothing: every file is parsed and every detector compiled before a
//! `Ruleset` exists, so a broken file never leaves half a rule set running. Errors carry the file
//! name and the 1-based line of the offending value (from the `toml` crate's spans).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use serde::Deserialize;
use toml::Spanned;

use crate::validate::Validator;
use crate::{Confidence, Severity};

/// Longest match a detector's regex may have. Streaming keeps (roughly) this many bytes between
/// chunks, so it bounds the scanner's memory.
pub const MAX_MATCH_LEN: usize = 4096;
/// Largest `context.within` distance.
pub const MAX_CONTEXT_WITHIN: usize = 1024;
/// Most literals one regex may contribute to the prefilter from its own prefixes.
const MAX_EXTRACTED_LITERALS: usize = 64;

/// Why a rule set could not be loaded. Every variant names the file; most name the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The file is not valid TOML or does not have the rule shape.
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    /// A detector is well-formed TOML but semantically wrong (bad regex, unknown validator...).
    #[error("{file}:{line}: detector `{detector}`: {message}")]
    Invalid { file: String, line: usize, detector: String, message: String },
    /// The directory or a file in it could not be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A directory held no rule files.
    #[error("{path}: no *.toml rule files")]
    Empty { path: PathBuf },
}

/// A rule's own test cases.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    /// Texts in which the detector must find at least one value.
    pub matches: Vec<String>,
    /// Texts in which the detector must find nothing.
    pub no_matches: Vec<String>,
}

/// Optional supporting context: keywords near a value.
#[derive(Clone, Debug)]
pub struct Context {
    /// Keywords, matched case-insensitively.
    pub keywords: Vec<String>,
    /// Maximum distance in bytes between a keyword and the value (either side).
    pub within: usize,
    /// When true a value without a nearby keyword is not reported at all; otherwise a nearby
    /// keyword raises the confidence by one level.
    pub required: bool,
}

/// How a detector's candidates are found before its regex confirms them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Every match contains one of the detector's literals (AC prefilter).
    Literals,
    /// Every match has this digit shape (digit-run prefilter).
    Digits(DigitShape),
    /// No cheap prefilter: the regex runs over all input.
    Full,
}

/// What every match of a digit-triggered detector contains: a run of at least `run`
/// consecutive ASCII digits, immediately preceded by at least `upper_before` ASCII uppercase
/// letters, inside a group of digit runs separated by single bytes (`4111 1111`, `536-22-8726`)
/// that holds at least `total` digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DigitShape {
    pub run: usize,
    pub upper_before: usize,
    pub total: usize,
}

/// A digit-triggered detector as the digit-group trigger sees it (one compact entry per
/// detector: the trigger runs for every digit group of the input).
#[derive(Clone, Debug)]
pub(crate) struct DigitTrigger {
    /// Detector index.
    pub det: usize,
    pub shape: DigitShape,
    pub max_len: usize,
    pub match_bytes: Option<ByteSet>,
}

/// One detector literal found at an AC hit position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LiteralOwner {
    /// Detector index.
    pub det: usize,
    /// Literal length.
    pub len: usize,
    /// The exact bytes, when the automaton ignores case but this detector does not.
    pub exact: Option<Box<[u8]>>,
}

/// A compiled detector. Public fields describe it; the compiled parts are private.
#[derive(Debug)]
pub struct Detector {
    /// Stable id (public interface: policies and scripts name it).
    pub id: String,
    /// What it finds, for people.
    pub description: String,
    /// How bad a finding is.
    pub severity: Severity,
    /// Confidence of a validated match without supporting context.
    pub confidence: Confidence,
    /// Matches needed before the detector reports a finding.
    pub min_count: u64,
    /// The rule's own examples.
    pub examples: Examples,
    /// Supporting context, if any.
    pub context: Option<Context>,
    /// The validator, if any.
    pub validator: Option<Validator>,
    /// Keywords as written in the rule file.
    pub keywords: Vec<String>,
    /// The regex as written in the rule file.
    pub pattern: Option<String>,
    /// File the detector came from.
    pub file: String,
    /// Line of its `[[detector]]` table.
    pub line: usize,
    pub(crate) regex: Option<Regex>,
    pub(crate) trigger: Trigger,
    pub(crate) case_sensitive: bool,
    pub(crate) whole_word: bool,
    /// Upper bound of a match's length in bytes.
    pub(crate) max_len: usize,
    /// Every byte a match of the regex can consume (None: any byte, or no regex). A match lies
    /// inside a run of these bytes, which bounds the windows digit-run triggers give the regex.
    pub(crate) match_bytes: Option<ByteSet>,
    pub(crate) exclude_values: Vec<Vec<u8>>,
    pub(crate) exclude_patterns: Vec<Regex>,
    pub(crate) context_ac: Option<AhoCorasick>,
}

impl Detector {
    /// How candidates are found: `"literals"` (shared Aho-Corasick prefilter), `"digit-run"`
    /// (shared digit-run prefilter) or `"full-scan"` (the regex runs over all input: slow).
    pub fn prefilter(&self) -> &'static str {
        match self.trigger {
            Trigger::Literals => "literals",
            Trigger::Digits(_) => "digit-run",
            Trigger::Full => "full-scan",
        }
    }

    /// Context distance (0 without context).
    pub(crate) fn context_within(&self) -> usize {
        self.context.as_ref().map_or(0, |c| c.within)
    }
}

/// All detectors compiled together: one Aho-Corasick automaton over every literal of every
/// detector, plus per-detector regexes for confirmation.
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) detectors: Vec<Detector>,
    /// Prefilter over all literals (None when no detector has one).
    pub(crate) ac: Option<AhoCorasick>,
    /// AC pattern id → the detectors' literals that start where that pattern is reported: the
    /// pattern itself and every literal that is a prefix of it (leftmost-longest reports only the
    /// longest literal at a position).
    pub(crate) hit_owners: Vec<Vec<LiteralOwner>>,
    /// Number of distinct literals.
    pub(crate) literal_total: usize,
    /// The digit-triggered detectors, with what the trigger needs of each.
    pub(crate) digit_detectors: Vec<DigitTrigger>,
    /// The smallest `total` and `run` of their shapes (a digit group below either triggers none).
    pub(crate) digit_min_total: usize,
    pub(crate) digit_min_run: usize,
    /// The one pass over each buffer that finds digit runs and where literals may start.
    pub(crate) sweep: crate::sweep::Sweep,
    /// Length of the longest literal.
    pub(crate) longest_literal: usize,
    /// Bytes kept before the oldest undecided position (look-behind + context).
    pub(crate) left_margin: usize,
    /// Bytes of a large chunk scanned together with the carry (see `engine::STITCH`).
    pub(crate) stitch: usize,
}

// ---------------------------------------------------------------------------------------------
// Raw TOML shape

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    detector: Vec<Spanned<RawDetector>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetector {
    id: Spanned<String>,
    description: String,
    severity: Spanned<String>,
    #[serde(default)]
    confidence: Option<Spanned<String>>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    case_insensitive: bool,
    #[serde(default)]
    whole_word: Option<bool>,
    #[serde(default)]
    validator: Option<Spanned<String>>,
    #[serde(default)]
    min_digit_run: Option<Spanned<i64>>,
    #[serde(default)]
    min_digits: Option<Spanned<i64>>,
    #[serde(default)]
    uppercase_before_digits: Option<Spanned<i64>>,
    #[serde(default)]
    min_count: Option<Spanned<i64>>,
    #[serde(default)]
    context: Option<Spanned<RawContext>>,
    #[serde(default)]
    exclude: Option<RawExclude>,
    #[serde(default)]
    examples: Option<RawExamples>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    keywords: Vec<String>,
    #[serde(default = "default_within")]
    within: i64,
    #[serde(default)]
    required: bool,
}

fn default_within() -> i64 {
    64
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExclude {
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExamples {
    #[serde(default, rename = "match")]
    matches: Vec<String>,
    #[serde(default)]
    no_match: Vec<String>,
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Up to this many prefilter literals the shared automaton is a full DFA (see `Ruleset::assemble`).
const DFA_MAX_PATTERNS: usize = 50_000;

/// Regex syntax used by every rule: byte-oriented, ASCII `\b`/`\w`/`\d` (fast DFA route; the
/// prefilter and the DFA never fall back to slower engines on non-ASCII text). Non-ASCII
/// literal text in a pattern still matches its UTF-8 bytes.
fn syntax_config(case_insensitive: bool) -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false).case_insensitive(case_insensitive)
}

fn compile_regex(pattern: &str, case_insensitive: bool, prefilter: bool) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax_config(case_insensitive))
        .configure(Regex::config().utf8_empty(false).auto_prefilter(prefilter))
        .build(pattern)
        .map_err(|e| format!("bad regex: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses the pattern for analysis: maximum length, literal prefixes.
fn analyse(pattern: &str, case_insensitive: bool) -> Result<regex_syntax::hir::Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(case_insensitive)
        .build()
        .parse(pattern)
        .map_err(|e| format!("bad regex: {}", one_line(&e.to_string())))
}

/// A set of byte values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }

    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn is_full(&self) -> bool {
        self.0 == [u64::MAX; 4]
    }

    /// The bytes a match of `hir` can consume (look-around consumes none). Unicode classes
    /// (not produced with Unicode mode off, handled anyway) count as every non-ASCII byte.
    fn consumed_by(hir: &regex_syntax::hir::Hir) -> ByteSet {
        use regex_syntax::hir::{Class, HirKind};
        let mut set = ByteSet::default();
        let mut stack = vec![hir];
        while let Some(h) = stack.pop() {
            match h.kind() {
                HirKind::Empty | HirKind::Look(_) => {}
                HirKind::Literal(l) => l.0.iter().for_each(|&b| set.insert_range(b, b)),
                HirKind::Class(Class::Bytes(c)) => c.ranges().iter().for_each(|r| set.insert_range(r.start(), r.end())),
                HirKind::Class(Class::Unicode(c)) => {
                    for r in c.ranges() {
                        let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                        if lo < 0x80 {
                            set.insert_range(lo as u8, hi.min(0x7f) as u8);
                        }
                        if hi >= 0x80 {
                            set.insert_range(0x80, 0xff);
                        }
                    }
                }
                HirKind::Repetition(r) => stack.push(&r.sub),
                HirKind::Capture(c) => stack.push(&c.sub),
                HirKind::Concat(v) | HirKind::Alternation(v) => stack.extend(v.iter()),
            }
        }
        set
    }
}

/// Literal prefixes every match starts with, if they are few and long enough to prefilter on.
fn extract_prefixes(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_class(4).limit_total(MAX_EXTRACTED_LITERALS * 4);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_EXTRACTED_LITERALS || lits.iter().any(|l| l.len() < 3) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

struct Compiling<'a> {
    file: &'a str,
    src: &'a str,
}

impl Compiling<'_> {
    fn err(&self, span: std::ops::Range<usize>, detector: &str, message: impl Into<String>) -> RuleError {
        RuleError::Invalid {
            file: self.file.to_string(),
            line: line_of(self.src, span.start),
            detector: detector.to_string(),
            message: message.into(),
        }
    }

    fn detector(&self, raw: Spanned<RawDetector>) -> Result<(Detector, Vec<Vec<u8>>), RuleError> {
        let table_line = line_of(self.src, raw.span().start);
        let table_span = raw.span();
        let raw = raw.into_inner();
        let id = raw.id.get_ref().clone();
        let id_span = raw.id.span();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(self.err(id_span, &id, "id must be lowercase letters, digits, '-' or '_'"));
        }
        let severity = match raw.severity.get_ref().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(self.err(raw.severity.span(), &id, format!("unknown severity `{other}` (low, medium, high, critical)")));
            }
        };
        let confidence = match &raw.confidence {
            None => Confidence::Medium,
            Some(c) => match c.get_ref().as_str() {
                "low" => Confidence::Low,
                "medium" => Confidence::Medium,
                "high" => Confidence::High,
                other => {
                    return Err(self.err(c.span(), &id, format!("unknown confidence `{other}` (low, medium, high)")));
                }
            },
        };
        let validator = match &raw.validator {
            None => None,
            Some(v) => Some(Validator::from_name(v.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = Validator::ALL.iter().map(|(n, _)| *n).collect();
                self.err(v.span(), &id, format!("unknown validator `{}` (one of: {})", v.get_ref(), names.join(", ")))
            })?),
        };
        let min_count = match &raw.min_count {
            None => 1,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref() as u64,
            Some(n) => return Err(self.err(n.span(), &id, "min_count must be at least 1")),
        };
        if raw.keywords.iter().any(String::is_empty) {
            return Err(self.err(table_span.clone(), &id, "keywords must not be empty strings"));
        }
        if raw.keywords.is_empty() && raw.regex.is_none() {
            return Err(self.err(table_span, &id, "a detector needs `keywords`, `regex` or both"));
        }

        let mut literals: Vec<Vec<u8>> = raw.keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        let mut regex = None;
        let mut max_len = literals.iter().map(Vec::len).max().unwrap_or(0);
        let mut trigger = if literals.is_empty() { Trigger::Full } else { Trigger::Literals };
        let mut match_bytes = None;
        if let Some(pattern) = &raw.regex {
            let span = pattern.span();
            let hir = analyse(pattern.get_ref(), raw.case_insensitive).map_err(|m| self.err(span.clone(), &id, m))?;
            match_bytes = Some(ByteSet::consumed_by(&hir)).filter(|b| !b.is_full());
            let props = hir.properties();
            if props.minimum_len() == Some(0) {
                return Err(self.err(span, &id, "regex can match empty text"));
            }
            max_len = match props.maximum_len() {
                Some(n) if n <= MAX_MATCH_LEN => n,
                _ => {
                    return Err(self.err(
                        span,
                        &id,
                        format!(
                            "regex match length must be bounded (at most {MAX_MATCH_LEN} bytes): \
                             use {{m,n}} instead of + or *"
                        ),
                    ));
                }
            };
            // A digit-shape detector's regex only runs in windows around digit groups, where
            // a prefilter (a search for a digit, say) fires every few bytes and only adds
            // restarts; its DFA is faster alone.
            let prefilter = raw.min_digit_run.is_none();
            regex = Some(compile_regex(pattern.get_ref(), raw.case_insensitive, prefilter).map_err(|m| self.err(span.clone(), &id, m))?);
            if literals.is_empty()
                && let Some(prefixes) = extract_prefixes(&hir)
            {
                literals = prefixes;
                trigger = Trigger::Literals;
            }
        }
        if let Some(n) = &raw.min_digit_run {
            if !(1..=64).contains(n.get_ref()) {
                return Err(self.err(n.span(), &id, "min_digit_run must be between 1 and 64"));
            }
            if !raw.keywords.is_empty() || regex.is_none() {
                return Err(self.err(n.span(), &id, "min_digit_run applies to a regex-only detector (no keywords)"));
            }
            let run = *n.get_ref() as usize;
            let total = match &raw.min_digits {
                None => run,
                Some(t) if (run as i64..=256).contains(t.get_ref()) => *t.get_ref() as usize,
                Some(t) => {
                    return Err(self.err(t.span(), &id, "min_digits must be between min_digit_run and 256"));
                }
            };
            let upper_before = match &raw.uppercase_before_digits {
                None => 0,
                Some(u) if (0..=4).contains(u.get_ref()) => *u.get_ref() as usize,
                Some(u) => return Err(self.err(u.span(), &id, "uppercase_before_digits must be between 0 and 4")),
            };
            trigger = Trigger::Digits(DigitShape { run, upper_before, total });
            literals.clear();
        } else if let Some(x) = raw.min_digits.as_ref().or(raw.uppercase_before_digits.as_ref()) {
            return Err(self.err(x.span(), &id, "min_digits and uppercase_before_digits need min_digit_run"));
        }

        let context = match raw.context {
            None => None,
            Some(c) => {
                let span = c.span();
                let c = c.into_inner();
                if c.keywords.is_empty() || c.keywords.iter().any(String::is_empty) {
                    return Err(self.err(span, &id, "context.keywords must be non-empty strings"));
                }
                if !(1..=MAX_CONTEXT_WITHIN as i64).contains(&c.within) {
                    return Err(self.err(span, &id, format!("context.within must be between 1 and {MAX_CONTEXT_WITHIN}")));
                }
                Some(Context { keywords: c.keywords, within: c.within as usize, required: c.required })
            }
        };
        let context_ac = match &context {
            None => None,
            Some(c) => Some(
                // Matched against ASCII-lowercased text (see `Scanner::context_near`), shortest
                // keyword first and leftmost-first: at each position where keywords start the
                // search reports the one that ends first. Case-sensitive, so the automaton's
                // SIMD prefilter applies (it does not with ASCII case folding).
                AhoCorasickBuilder::new()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(context_patterns(&c.keywords))
                    .map_err(|e| self.err(0..0, &id, format!("context keywords: {e}")))?,
            ),
        };

        let exclude = raw.exclude.unwrap_or_default();
        let mut exclude_patterns = Vec::new();
        for p in &exclude.patterns {
            let anchored = format!("^(?:{})$", p.get_ref());
            exclude_patterns.push(compile_regex(&anchored, false, true).map_err(|m| self.err(p.span(), &id, format!("exclude: {m}")))?);
        }
        let examples = raw.examples.unwrap_or_default();
        let detector = Detector {
            id,
            description: raw.description,
            severity,
            confidence,
            min_count,
            examples: Examples { matches: examples.matches, no_matches: examples.no_match },
            context,
            validator,
            keywords: raw.keywords,
            pattern: raw.regex.map(Spanned::into_inner),
            file: self.file.to_string(),
            line: table_line,
            whole_word: raw.whole_word.unwrap_or(regex.is_none()),
            regex,
            trigger,
            case_sensitive: !raw.case_insensitive,
            max_len,
            match_bytes,
            exclude_values: exclude.values.into_iter().map(String::into_bytes).collect(),
            exclude_patterns,
            context_ac,
        };
        Ok((detector, literals))
    }
}

fn syntax_error(file: &str, src: &str, e: &toml::de::Error) -> RuleError {
    RuleError::Syntax { file: file.to_string(), line: e.span().map_or(1, |s| line_of(src, s.start)), message: one_line(e.message()) }
}

impl Ruleset {
    /// The shipped detectors (`rules/detectors/*.toml`, embedded at build time), compiled once.
    pub fn builtin() -> Arc<Ruleset> {
        static BUILTIN: OnceLock<Arc<Ruleset>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let sources: Vec<(String, String)> = BUILTIN_SOURCES.iter().map(|(n, s)| ((*n).to_string(), (*s).to_string())).collect();
                // The embedded files are compiled and example-tested by this crate's tests; a
                // failure here is a build defect, not a runtime condition.
                #[allow(clippy::expect_used)]
                Arc::new(Ruleset::from_sources(&sources).expect("built-in rules compile"))
            })
            .clone()
    }

    /// The embedded rule files as (file name, TOML text).
    pub fn builtin_sources() -> &'static [(&'static str, &'static str)] {
        BUILTIN_SOURCES
    }

    /// Loads every `*.toml` file of `dir` (sorted by name). All or nothing.
    pub fn load_dir(dir: &Path) -> Result<Ruleset, RuleError> {
        let io = |source| RuleError::Io { path: dir.to_path_buf(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(RuleError::Empty { path: dir.to_path_buf() });
        }
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|source| RuleError::Io { path: p.clone(), source })?;
            sources.push((p.display().to_string(), text));
        }
        Ruleset::from_sources(&sources)
    }

    /// Compiles rule files given as (file name, TOML text). All or nothing.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Ruleset, RuleError> {
        let mut detectors = Vec::new();
        let mut literal_sets = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (file, src) in sources {
            let raw: RawFile = toml::from_str(src).map_err(|e| syntax_error(file, src, &e))?;
            let c = Compiling { file, src };
            for d in raw.detector {
                let (det, lits) = c.detector(d)?;
                if let Some((f, l)) = seen.get(&det.id) {
                    return Err(RuleError::Invalid {
                        file: file.clone(),
                        line: det.line,
                        detector: det.id.clone(),
                        message: format!("duplicate id (first defined at {f}:{l})"),
                    });
                }
                seen.insert(det.id.clone(), (file.clone(), det.line));
                detectors.push(det);
                literal_sets.push(lits);
            }
        }
        Self::assemble(detectors, literal_sets)
    }

    fn assemble(detectors: Vec<Detector>, literal_sets: Vec<Vec<Vec<u8>>>) -> Result<Ruleset, RuleError> {
        let ci = detectors.iter().zip(&literal_sets).any(|(d, l)| !d.case_sensitive && !l.is_empty());
        let key = |lit: &[u8]| if ci { lit.to_ascii_lowercase() } else { lit.to_vec() };
        // Distinct literals (by automaton key), each with the detectors that use it.
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<(usize, Vec<u8>)>> = Vec::new();
        for (di, lits) in literal_sets.into_iter().enumerate() {
            for lit in lits {
                let pid = *index.entry(key(&lit)).or_insert_with(|| {
                    patterns.push(lit.clone());
                    owners.push(Vec::new());
                    patterns.len() - 1
                });
                if !owners[pid].iter().any(|(d, l)| *d == di && *l == lit) {
                    owners[pid].push((di, lit));
                }
            }
        }
        // For each pattern: its own owners and those of every literal that is a prefix of it.
        let mut hit_owners: Vec<Vec<LiteralOwner>> = vec![Vec::new(); patterns.len()];
        for (pid, pat) in patterns.iter().enumerate() {
            for l in 1..=pat.len() {
                let Some(&q) = index.get(&key(&pat[..l])) else { continue };
                for (di, lit) in &owners[q] {
                    let exact = (ci && detectors[*di].case_sensitive).then(|| lit.clone().into_boxed_slice());
                    let o = LiteralOwner { det: *di, len: l, exact };
                    if !hit_owners[pid].contains(&o) {
                        hit_owners[pid].push(o);
                    }
                }
            }
        }
        let ac = if patterns.is_empty() {
            None
        } else {
            // A full DFA, not the contiguous NFA the crate picks past 100 patterns: when the
            // sweep's filter is off (lowercase literals that are not whole-word keywords) the
            // automaton reads every byte, and the DFA reads prose 3-4x faster (64 MiB, 2,000
            // names: 0.41 -> 0.12 s over the built-ins alone; 20,000 names: 0.52 -> 0.20 s) for
            // ~1.5 KiB of memory per name, once per ruleset. Past DFA_MAX_PATTERNS, or if the DFA
            // cannot be built, the crate chooses.
            let build = |kind| {
                AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostLongest).ascii_case_insensitive(ci).kind(kind).build(&patterns)
            };
            let dfa = (patterns.len() <= DFA_MAX_PATTERNS).then(|| build(Some(aho_corasick::AhoCorasickKind::DFA)));
            Some(match dfa {
                Some(Ok(ac)) => ac,
                _ => build(None).map_err(|e| RuleError::Invalid {
                    file: "(all rules)".into(),
                    line: 0,
                    detector: "(prefilter)".into(),
                    message: e.to_string(),
                })?,
            })
        };
        let digit_detectors: Vec<DigitTrigger> = detectors
            .iter()
            .enumerate()
            .filter_map(|(det, d)| match d.trigger {
                Trigger::Digits(shape) => Some(DigitTrigger {
                    det,
                    shape,
                    max_len: d.max_len,
                    // Only useful when digits are among the bytes (else the shape is wrong).
                    match_bytes: d.match_bytes.filter(|b| (b'0'..=b'9').all(|x| b.contains(x))),
                }),
                _ => None,
            })
            .collect();
        let shapes: Vec<DigitShape> =
            detectors.iter().filter_map(|d| if let Trigger::Digits(s) = d.trigger { Some(s) } else { None }).collect();
        // Literals only reported at word starts: they begin with a word byte and every detector
        // using them is a keyword-only, whole-word one (the engine checks the boundary).
        let word: Vec<bool> = patterns
            .iter()
            .zip(&owners)
            .map(|(p, os)| {
                p.first().copied().is_some_and(crate::engine::is_word_byte)
                    && os.iter().all(|(di, _)| detectors[*di].regex.is_none() && detectors[*di].whole_word)
            })
            .collect();
        let fold: Vec<bool> = owners.iter().map(|os| ci && os.iter().any(|(di, _)| !detectors[*di].case_sensitive)).collect();
        let sweep = crate::sweep::Sweep::new(
            &patterns,
            &fold,
            &word,
            (!shapes.is_empty()).then(|| crate::sweep::DigitGate::for_shapes(shapes.iter().map(|s| (s.total, s.upper_before)))),
        );
        let digit_min_total = shapes.iter().map(|s| s.total).min().unwrap_or(0);
        let digit_min_run = shapes.iter().map(|s| s.run).min().unwrap_or(0);
        let longest_literal = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let left_margin = 1 + detectors.iter().map(Detector::context_within).max().unwrap_or(0);
        let carry_bound = detectors.iter().map(|d| d.max_len + 1 + d.context_within()).max().unwrap_or(0) + left_margin;
        let stitch = (2 * carry_bound).clamp(256, crate::engine::STITCH);
        Ok(Ruleset {
            detectors,
            ac,
            hit_owners,
            literal_total: patterns.len(),
            digit_detectors,
            digit_min_total,
            digit_min_run,
            sweep,
            longest_literal,
            left_margin,
            stitch,
        })
    }

    /// The compiled detectors, in load order.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// Looks a detector up by id.
    pub fn detector(&self, id: &str) -> Option<&Detector> {
        self.detectors.iter().find(|d| d.id == id)
    }

    /// Number of literals in the shared prefilter automaton.
    pub fn literal_count(&self) -> usize {
        self.literal_total
    }

    /// Runs every detector's `examples`: each `match` text must yield at least one validated
    /// value for that detector (min_count is not applied), each `no_match` text none.
    pub fn test_examples(self: &Arc<Self>) -> Vec<ExampleFailure> {
        let mut failures = Vec::new();
        for (di, d) in self.detectors.iter().enumerate() {
            let cases = d.examples.matches.iter().map(|t| (t, true)).chain(d.examples.no_matches.iter().map(|t| (t, false)));
            for (text, should) in cases {
                let mut scanner = crate::Scanner::new(self.clone());
                scanner.feed(text.as_bytes());
                let found = scanner.finish_counts()[di];
                if (found > 0) != should {
                    failures.push(ExampleFailure {
                        detector: d.id.clone(),
                        file: d.file.clone(),
                        line: d.line,
                        example: crate::mask(text),
                        expected_match: should,
                        found,
                    });
                }
            }
        }
        failures
    }
}

/// One example that did not behave as its rule says.
#[derive(Clone, Debug)]
pub struct ExampleFailure {
    /// Detector id.
    pub detector: String,
    /// Rule file.
    pub file: String,
    /// Line of the detector table.
    pub line: usize,
    /// The example text, masked (examples may hold realistic values).
    pub example: String,
    /// True for a `match` example that found nothing, false for a `no_match` that found something.
    pub expected_match: bool,
    /// Values found.
    pub found: u64,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.expected_match {
            write!(f, "{}:{}: {}: example should match but found nothing: {}", self.file, self.line, self.detector, self.example)
        } else {
            write!(f, "{}:{}: {}: no_match example found {} value(s): {}", self.file, self.line, self.detector, self.found, self.example)
        }
    }
}

macro_rules! builtin_rules {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../rules/detectors/", $name)))),*]
    };
}

static BUILTIN_SOURCES: &[(&str, &str)] = builtin_rules!(
    "payment-card.toml",
    "hkid.toml",
    "cn-resident-id.toml",
    "iban.toml",
    "us-ssn.toml",
    "aws-access-key.toml",
    "private-key.toml",
    "github-token.toml",
    "classification-marking.toml",
);

/// Context keywords ASCII-lowercased, shortest first (stable: equal lengths keep file order).
fn context_patterns(keywords: &[String]) -> Vec<Vec<u8>> {
    let mut k: Vec<Vec<u8>> = keywords.iter().map(|w| w.as_bytes().to_ascii_lowercase()).collect();
    k.sort_by_key(Vec::len);
    k
}
