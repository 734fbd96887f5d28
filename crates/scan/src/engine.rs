//! The streaming [`Scanner`].
//!
//! # Model
//! For each detector the result is defined as if its regex ran over the *whole* input with
//! leftmost-first, non-overlapping iteration (keyword-only detectors: the longest keyword at the
//! leftmost position, then onwards from its end). The scanner reproduces exactly that on a stream:
//!
//! * Bytes arrive in pieces of at most [`PIECE`] bytes, appended to a buffer that starts with a
//!   small *carry* of earlier bytes.
//! * Triggers are found in the buffer: Aho-Corasick hits of detectors' literals, maximal digit
//!   runs for literal-free detectors. Each trigger gives a window (`max_len` either side) in which
//!   the detector's regex runs; windows of one detector are merged, so a match is found once.
//!   A digit-run window also stops where bytes the regex cannot consume begin (a card number's
//!   window ends at the comma after it), so in dense data (CSV rows of values) each value gets
//!   its own short window instead of windows merging into the whole buffer.
//! * A match starting at `s` is *decided* only once `s + max_len + 1 + context` bytes are in the
//!   buffer (its *horizon*): then every byte the regex, the look-around and the context window
//!   could depend on is present, so the decision equals the whole-input one. Matches beyond the
//!   horizon wait for the next piece.
//! * Per detector, `next_from` records where its next match may start (after its last decided
//!   match, or at its horizon). The carry keeps the bytes from the smallest `next_from` minus
//!   the left margin (look-behind + context): at most `max_len + 2 * (1 + context)` bytes,
//!   whatever the input size. Matches are never double-counted because every detector's search
//!   restarts at its own `next_from`.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use hmac::{Hmac, Mac};
use regex_automata::Input;
use sha2::Sha256;

use crate::rules::{Detector, Ruleset, Trigger};
use crate::sweep::{SweepOut, for_each_literal_start};
use crate::{Confidence, Finding, mask};

/// Largest piece of input processed per round (keeps the working set cache-sized).
pub const PIECE: usize = 256 * 1024;
/// Upper bound of the bytes of a large chunk copied behind the carry to scan across the
/// boundary. The ruleset's own figure ([`Ruleset`]'s `stitch`) is twice its largest possible
/// carry (longest match + context + look-behind), so the next round's start always lies inside
/// the chunk and the rest of the chunk is scanned in place.
pub const STITCH: usize = 16 * 1024;
/// Most masked samples per finding.
pub const MAX_SAMPLES: usize = 5;
/// Most offsets / value HMACs per finding.
pub const MAX_OFFSETS: usize = 32;
/// Samples and HMACs are collected from a detector's first this-many values (so dense input does
/// not pay for masking and hashing every repeated value).
const DISTINCT_WINDOW: u64 = 1024;
/// Bytes searched for context keywords at once (see `Scanner::context_near`).
const CONTEXT_SPAN: usize = 4096;

/// Context keyword hits of one region of the current round's buffer.
#[derive(Clone, Debug, Default)]
struct ContextCache {
    /// `round_base` of the round the hits belong to.
    round: u64,
    lo: usize,
    hi: usize,
    hits: Vec<(usize, usize)>,
}

#[derive(Clone, Debug, Default)]
struct DetState {
    count: u64,
    confidence: Option<Confidence>,
    samples: Vec<String>,
    offsets: Vec<u64>,
    hmacs: Vec<String>,
}

/// Streaming scanner for one transfer (or one file). Feed chunks of any size; the findings equal
/// those for the whole input fed at once. Memory: the carry (a few KiB) plus one piece.
pub struct Scanner {
    rules: Arc<Ruleset>,
    /// Bytes kept from earlier input (small), plus small chunks appended to it.
    carry: Vec<u8>,
    /// Absolute offset of `carry[0]`.
    base: u64,
    /// Absolute offset of the buffer of the round in progress.
    round_base: u64,
    next_from: Vec<u64>,
    states: Vec<DetState>,
    hmac_key: Option<[u8; 32]>,
    scanned: u64,
    /// Scratch: per detector, trigger windows (regex detectors) or keyword hits (keyword-only).
    scratch: Vec<Vec<(usize, usize)>>,
    merged: Vec<(usize, usize)>,
    /// Scratch: digit runs and literal spans of the current buffer.
    swept: SweepOut,
    context_cache: Vec<ContextCache>,
    /// Scratch: a lowercased region searched for context keywords.
    context_lower: Vec<u8>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("bytes_scanned", &self.scanned).field("buffered", &self.carry.len()).finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner over `rules`.
    pub fn new(rules: Arc<Ruleset>) -> Scanner {
        let n = rules.detectors.len();
        Scanner {
            rules,
            carry: Vec::new(),
            base: 0,
            round_base: 0,
            next_from: vec![0; n],
            states: vec![DetState::default(); n],
            hmac_key: None,
            scanned: 0,
            scratch: vec![Vec::new(); n],
            merged: Vec::new(),
            swept: SweepOut::default(),
            context_cache: vec![ContextCache::default(); n],
            context_lower: Vec::new(),
        }
    }

    /// Also report an HMAC-SHA256 (hex) of each matched value's canonical form under `key`, so
    /// the same value can be correlated across transfers without being stored.
    pub fn with_hmac_key(mut self, key: [u8; 32]) -> Scanner {
        self.hmac_key = Some(key);
        self
    }

    /// Scans the next chunk of the stream.
    ///
    /// Small chunks are appended to the carry and scanned there. A large chunk is scanned in
    /// place, in pieces of at most [`PIECE`] bytes: only its first [`STITCH`] bytes are copied
    /// behind the carry (so values straddling the boundary are seen whole), and only the new
    /// carry is copied out at the end.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        self.scanned += chunk.len() as u64;
        let chunk_base = self.base + self.carry.len() as u64;
        let mut done = 0;
        let stitch = self.rules.stitch;
        if !self.carry.is_empty() || chunk.len() < stitch {
            let take = chunk.len().min(stitch);
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(&chunk[..take]);
            let keep = self.round(&carry, self.base, false);
            done = take;
            if done == chunk.len() || keep < chunk_base {
                // Everything fits in the carry (or, defensively, the kept bytes start before
                // this chunk): continue there.
                carry.drain(..(keep - self.base) as usize);
                self.base = keep;
                self.carry = carry;
                if done < chunk.len() {
                    let rest = &chunk[done..];
                    self.scanned -= rest.len() as u64;
                    for piece in rest.chunks(PIECE) {
                        self.scanned += piece.len() as u64;
                        self.carry.extend_from_slice(piece);
                        let carry = std::mem::take(&mut self.carry);
                        let keep = self.round(&carry, self.base, false);
                        let mut carry = carry;
                        carry.drain(..(keep - self.base) as usize);
                        self.base = keep;
                        self.carry = carry;
                    }
                }
                return;
            }
            carry.clear();
            self.carry = carry;
            self.base = keep;
        }
        // In place: the working buffer is chunk[start..end].
        let mut start = (self.base - chunk_base) as usize;
        while done < chunk.len() {
            let end = (done + PIECE).min(chunk.len());
            let keep = self.round(&chunk[start..end], chunk_base + start as u64, false);
            start = (keep - chunk_base) as usize;
            done = end;
        }
        self.base = chunk_base + start as u64;
        self.carry.extend_from_slice(&chunk[start..]);
    }

    /// True once some detector has reached its minimum count. Values within the last few hundred
    /// bytes fed may still be undecided until more input or [`Scanner::finish`].
    pub fn has_findings(&self) -> bool {
        self.states.iter().zip(&self.rules.detectors).any(|(s, d)| s.count >= d.min_count)
    }

    /// Bytes fed so far.
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    /// Bytes currently held between calls (the carry): bounded by the longest match plus
    /// context, whatever the input size.
    pub fn buffered_bytes(&self) -> usize {
        self.carry.len()
    }

    /// Marks the start of an unrelated text segment (next file in an archive): everything so far
    /// is decided, and no match or context spans the boundary. Offsets keep counting.
    pub fn reset_boundary(&mut self) {
        self.flush();
    }

    /// Decides everything fed so far; the carry becomes empty.
    fn flush(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        self.base = self.round(&carry, self.base, true);
        let mut carry = carry;
        carry.clear();
        self.carry = carry;
    }

    /// Decides the rest of the stream and returns the findings of detectors that reached their
    /// minimum count, sorted by detector id.
    pub fn finish(mut self) -> Vec<Finding> {
        self.flush();
        let mut out: Vec<Finding> = self
            .states
            .into_iter()
            .zip(self.rules.detectors.iter())
            .filter(|(s, d)| s.count > 0 && s.count >= d.min_count)
            .map(|(s, d)| Finding {
                detector: d.id.clone(),
                severity: d.severity,
                count: s.count,
                confidence: s.confidence.unwrap_or(d.confidence),
                samples: s.samples,
                offsets: s.offsets,
                value_hmacs: s.hmacs,
            })
            .collect();
        out.sort_by(|a, b| a.detector.cmp(&b.detector));
        out
    }

    /// Validated values per detector (ignoring min_count), after deciding the rest.
    pub(crate) fn finish_counts(mut self) -> Vec<u64> {
        self.flush();
        self.states.iter().map(|s| s.count).collect()
    }

    /// Decides every match that `buf` (absolute offset `base`) determines; returns the absolute
    /// offset from which bytes must be kept for the next round (the end of `buf` when `last`).
    fn round(&mut self, buf: &[u8], base: u64, last: bool) -> u64 {
        let rules = Arc::clone(&self.rules);
        let end = buf.len();
        self.round_base = base;
        for c in &mut self.context_cache {
            c.hi = 0;
            c.lo = usize::MAX;
        }
        for s in &mut self.scratch {
            s.clear();
        }
        self.collect_triggers(&rules, buf);
        for (di, d) in rules.detectors.iter().enumerate() {
            let from = (self.next_from[di].saturating_sub(base) as usize).min(end);
            let horizon = if last { usize::MAX } else { end.saturating_sub(d.max_len + 1 + d.context_within()) };
            let pos =
                if d.regex.is_some() { self.run_regex(di, d, buf, from, horizon) } else { self.run_keywords(di, d, buf, from, horizon) };
            let next = if last { end } else { pos.max(horizon).min(end) };
            self.next_from[di] = base + next as u64;
        }
        let end_abs = base + end as u64;
        if last {
            return end_abs;
        }
        let keep = self.next_from.iter().min().copied().unwrap_or(end_abs);
        keep.saturating_sub(rules.left_margin as u64).clamp(base, end_abs)
    }

    /// Fills `scratch` with windows / keyword hits from the shared prefilters.
    fn collect_triggers(&mut self, rules: &Ruleset, buf: &[u8]) {
        let end = buf.len();
        rules.sweep.run(buf, rules.ac.is_some(), &mut self.swept);
        if let Some(ac) = &rules.ac {
            // Leftmost-longest (so the automaton's SIMD prefilter applies), restarting one byte
            // after each hit's start: every position where some literal starts is reported, with
            // all literals starting there via `hit_owners`.
            let Scanner { swept, scratch, .. } = self;
            for_each_literal_start(ac, buf, &swept.literal_spans, rules.longest_literal, |m| {
                let s = m.start();
                for o in &rules.hit_owners[m.pattern().as_usize()] {
                    let e = s + o.len;
                    if o.exact.as_deref().is_some_and(|x| buf[s..e] != *x) {
                        continue;
                    }
                    let d = &rules.detectors[o.det];
                    let w = if d.regex.is_none() { (s, e) } else { (e.saturating_sub(d.max_len), (s + d.max_len).min(end)) };
                    scratch[o.det].push(w);
                }
            });
        }
        if !rules.digit_detectors.is_empty() {
            let Scanner { swept, scratch, .. } = self;
            let runs = &swept.runs;
            // Group runs separated by single bytes; test each detector's shape per group, the
            // cheap conditions first (most groups in text are a year or a page number).
            let mut i = 0;
            while i < runs.len() {
                let mut j = i + 1;
                let mut total = runs[i].1 - runs[i].0;
                let mut longest = total;
                while j < runs.len() && runs[j].0 <= runs[j - 1].1 + 1 {
                    let len = runs[j].1 - runs[j].0;
                    total += len;
                    longest = longest.max(len);
                    j += 1;
                }
                let group = &runs[i..j];
                i = j;
                if total < rules.digit_min_total || longest < rules.digit_min_run {
                    continue;
                }
                for t in &rules.digit_detectors {
                    let shape = t.shape;
                    if total < shape.total || longest < shape.run {
                        continue;
                    }
                    let qualifies = |&(s, e): &(usize, usize)| e - s >= shape.run && uppercase_before(buf, s, shape.upper_before);
                    // Every match holds `shape.run` digits of one of the group's qualifying
                    // runs and is at most `max_len` long; it also lies inside a stretch of bytes
                    // the regex can consume (digits among them). Dense data (a CSV row of
                    // values) so gets one short window per value instead of windows that merge
                    // into the whole buffer. Both bounds grow from run to run, so the first
                    // qualifying run gives the window's start and the last one its end.
                    let mut qualifying = group.iter().filter(|r| qualifies(r));
                    let Some(&(s, first_end)) = qualifying.next() else { continue };
                    let e = qualifying.next_back().map_or(first_end, |r| r.1);
                    let mut lo = (s + shape.run).saturating_sub(t.max_len).min(s);
                    let mut hi = (e + t.max_len).saturating_sub(shape.run).min(end).max(e);
                    if let Some(bytes) = &t.match_bytes {
                        lo = s - buf[lo..s].iter().rev().take_while(|&&b| bytes.contains(b)).count();
                        hi = e + buf[e..hi].iter().take_while(|&&b| bytes.contains(b)).count();
                    }
                    scratch[t.det].push((lo, hi));
                }
            }
        }
        for (di, d) in rules.detectors.iter().enumerate() {
            if d.trigger == Trigger::Full {
                self.scratch[di].push((0, end));
            }
        }
    }

    /// Leftmost-first regex iteration from `from`, restricted to the trigger windows. Returns the
    /// position after the last decided match (or `from`).
    fn run_regex(&mut self, di: usize, d: &Detector, buf: &[u8], from: usize, horizon: usize) -> usize {
        let Some(re) = &d.regex else { return from };
        let mut windows = std::mem::take(&mut self.scratch[di]);
        windows.sort_unstable();
        self.merged.clear();
        for (s, e) in windows.drain(..) {
            match self.merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => self.merged.push((s, e)),
            }
        }
        self.scratch[di] = windows;
        let merged = std::mem::take(&mut self.merged);
        let mut pos = from;
        'windows: for &(ws, we) in &merged {
            if ws >= horizon {
                break;
            }
            let mut at = ws.max(pos);
            while at < we {
                let Some(m) = re.search(&Input::new(buf).span(at..we)) else { break };
                if m.start() >= horizon {
                    break 'windows;
                }
                self.accept(di, d, buf, m.start(), m.end());
                pos = m.end().max(m.start() + 1);
                at = pos;
            }
        }
        self.merged = merged;
        pos
    }

    /// Keyword-only detectors: longest keyword at the leftmost position, non-overlapping.
    fn run_keywords(&mut self, di: usize, d: &Detector, buf: &[u8], from: usize, horizon: usize) -> usize {
        let mut hits = std::mem::take(&mut self.scratch[di]);
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut pos = from;
        for &(s, e) in &hits {
            if s < pos {
                continue;
            }
            if s >= horizon {
                break;
            }
            if d.whole_word && !is_whole_word(buf, s, e) {
                continue;
            }
            self.accept(di, d, buf, s, e);
            pos = e;
        }
        self.scratch[di] = hits;
        pos
    }

    /// Validator → exclusions → context → record.
    fn accept(&mut self, di: usize, d: &Detector, buf: &[u8], s: usize, e: usize) {
        let mut e = e;
        if let Some(v) = d.validator {
            match v.check(&buf[s..e]) {
                Some(len) => e = s + len,
                None => return,
            }
        }
        let value = &buf[s..e];
        // Exclusions, context and recording do not change the detector's state before the
        // record itself, so what the record will want is known now: the canonical form is
        // built (allocated) only when exclusions, a sample or an HMAC need it.
        let st = &self.states[di];
        let want_hmac = st.count < DISTINCT_WINDOW && st.hmacs.len() < MAX_OFFSETS;
        let want_sample = st.count < DISTINCT_WINDOW && st.samples.len() < MAX_SAMPLES;
        let need_canonical =
            !d.exclude_values.is_empty() || !d.exclude_patterns.is_empty() || want_sample || (want_hmac && self.hmac_key.is_some());
        let canonical = if need_canonical { d.validator.map_or_else(|| value.to_vec(), |v| v.canonical(value)) } else { Vec::new() };
        if d.exclude_values.iter().any(|x| x.as_slice() == value || *x == canonical)
            || d.exclude_patterns.iter().any(|p| p.is_match(value) || p.is_match(&canonical))
        {
            return;
        }
        let mut confidence = d.confidence;
        // Context decides reporting (required) or raises confidence; once the finding is already
        // at High confidence, raising changes nothing and the search is skipped.
        if let (Some(ctx), Some(ac)) = (&d.context, &d.context_ac)
            && (ctx.required || self.states[di].confidence != Some(Confidence::High))
        {
            let near = self.context_near(di, ac, buf, s, e, ctx.within);
            if ctx.required && !near {
                return;
            }
            if near {
                confidence = confidence.raised();
            }
        }
        let hmac = self.hmac_key.as_ref().filter(|_| want_hmac).and_then(|key| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
            mac.update(&canonical);
            Some(hex::encode(mac.finalize().into_bytes()))
        });
        let st = &mut self.states[di];
        st.count += 1;
        st.confidence = Some(st.confidence.map_or(confidence, |c| c.max(confidence)));
        if st.offsets.len() < MAX_OFFSETS {
            st.offsets.push(self.round_base + s as u64);
        }
        if want_sample {
            let sample = match d.validator {
                Some(v) => v.sample(value, &canonical),
                None => mask(&String::from_utf8_lossy(value)),
            };
            if !st.samples.contains(&sample) {
                st.samples.push(sample);
            }
        }
        if let Some(h) = hmac
            && !st.hmacs.contains(&h)
        {
            st.hmacs.push(h);
        }
    }

    /// A context keyword lies entirely within `within` bytes before `s` or after `e`.
    /// Keyword hits are found once per region of [`CONTEXT_SPAN`] bytes and reused by the
    /// following values of the same detector (dense data has many values per region).
    fn context_near(&mut self, di: usize, ac: &AhoCorasick, buf: &[u8], s: usize, e: usize, within: usize) -> bool {
        let (ws, we) = (s.saturating_sub(within), (e + within).min(buf.len()));
        let cache = &mut self.context_cache[di];
        if cache.round != self.round_base || ws < cache.lo || we > cache.hi {
            let hi = (ws + CONTEXT_SPAN).max(we).min(buf.len());
            cache.hits.clear();
            // Keywords match regardless of ASCII case: the region is lowercased (same offsets),
            // then every position where a keyword starts is found with the shortest keyword
            // there; if any keyword at a position fits in a window, the shortest does.
            let lower = &mut self.context_lower;
            lower.clear();
            lower.extend(buf[ws..hi].iter().map(u8::to_ascii_lowercase));
            let mut at = 0;
            while let Some(m) = ac.find(aho_corasick::Input::new(&lower[..]).span(at..lower.len())) {
                cache.hits.push((ws + m.start(), ws + m.end()));
                at = m.start() + 1;
            }
            (cache.round, cache.lo, cache.hi) = (self.round_base, ws, hi);
        }
        cache.hits.iter().any(|&(hs, he)| (hs >= ws && he <= s) || (hs >= e && he <= we))
    }
}

/// At least `n` ASCII uppercase letters end right before `s`.
fn uppercase_before(buf: &[u8], s: usize, n: usize) -> bool {
    n == 0 || (s >= n && buf[s - n..s].iter().all(u8::is_ascii_uppercase))
}

/// An ASCII word byte (`\w`: letters, digits, `_`), the unit of whole-word matching.
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The hit is not part of a longer word. Only ASCII word characters count: a keyword edge that
/// is not a word character (punctuation, CJK text, which has no spaces) needs no boundary.
fn is_whole_word(buf: &[u8], s: usize, e: usize) -> bool {
    let first_is_word = buf.get(s).copied().is_some_and(is_word_byte);
    let last_is_word = e > s && buf.get(e - 1).copied().is_some_and(is_word_byte);
    let before_ok = !first_is_word || s == 0 || !is_word_byte(buf[s - 1]);
    let after_ok = !last_is_word || e >= buf.len() || !is_word_byte(buf[e]);
    before_ok && after_ok
}
