//! The shared prefilter sweep: one pass over each buffer, 64 bytes at a time, that finds
//!
//! * maximal runs of ASCII digits (the trigger of detectors without a literal: cards, ID
//!   numbers), and
//! * the blocks where a detector literal may start, from the classes of every literal's first
//!   two bytes (for the built-ins: a byte in `A-u` followed by one in `B-_`, roughly a letter
//!   followed by an uppercase letter or `_`, which ordinary prose almost never has), and, for
//!   the keywords of whole-word keyword detectors (dictionaries of code names, whose lowercase
//!   pairs prose is full of), from the first bytes of each word in the text: a word can only be
//!   reported where a word starts.
//!
//! Why by hand: the literal automaton (Aho-Corasick with its SIMD Teddy prefilter) and a search
//! for the ten digits each read the whole buffer, and the digit search paid a call per digit
//! run (prose has one every ~200 bytes); together they cost a third more than this sweep plus
//! the automaton over the few candidate blocks (prose, one core: 282 → 205 ms per 640 MiB). No crate
//! searches for a byte class and a byte-pair class at once. This sweep reads each byte once,
//! as [`Block64`] class masks (SSE2 compares and movemasks on x86-64, plain loops elsewhere;
//! with AVX2 where the CPU has it, in [`avx2`], the crate's only `unsafe`, which says why); the
//! digit runs of blocks whose numbers no digit detector can use are dropped at the mask level
//! ([`DigitGate`]); the automaton then runs only over candidate blocks,
//! or over the whole buffer when they are not rare (dense or binary data) or when the literals'
//! first bytes are too common for the filter to say anything (lowercase literals that are not
//! whole-word keywords). With 2,000 lowercase code names next to the built-ins, 64 MiB of prose:
//! 0.44 GiB/s with the automaton over everything, 1.21 GiB/s with word starts (criterion).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::blockmask::{Block64, prefetch};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// How far ahead of the block being classified the sweep asks for cache lines. Each block costs
/// enough instructions that the CPU's out-of-order window covers only a few blocks ahead, so a
/// buffer that is not in cache was swept at a third of the in-cache speed (prose, 64 MiB: 2.6
/// vs 6.1 GB/s); with the lines requested 4 KiB ahead, 4.1 GB/s (1 and 2 KiB: 2.6, 3.7; 8 and
/// 16 KiB: 3.8, 3.3).
const PREFETCH_AHEAD: usize = 4096;

/// A superset of a set of bytes: one range `lo..=hi`.
///
/// One range rather than a set keeps the test cheap (two vector instructions); the cover is
/// loose (`A-Z` plus `_` becomes `A-_`) but what matters is that it stays clear of lowercase
/// letters and spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ByteClass {
    lo: u8,
    hi: u8,
}

impl ByteClass {
    /// The smallest range holding every byte of `bytes`; `None` for no bytes or all 256
    /// (nothing to filter).
    fn cover(bytes: impl IntoIterator<Item = u8>) -> Option<ByteClass> {
        let (lo, hi) = bytes.into_iter().fold((u8::MAX, 0u8), |(lo, hi), b| (lo.min(b), hi.max(b)));
        if lo > hi || (lo, hi) == (0, u8::MAX) {
            return None;
        }
        Some(ByteClass { lo, hi })
    }

    #[inline(always)]
    fn has(&self, b: u8) -> bool {
        (self.lo..=self.hi).contains(&b)
    }

    /// Holds a lowercase letter or a space: text is full of them.
    fn common_in_text(&self) -> bool {
        (b'a'..=b'z').chain([b' ']).any(|b| self.has(b))
    }
}

/// Where literals may start: byte `i` in the first class and byte `i + 1` in the second, for a
/// literal starting at most `back` bytes before `i`.
///
/// Each literal is represented by one pair of adjacent bytes: its first pair that ordinary text
/// is not full of (not two lowercase letters or spaces), else its first. `ghp_` goes by `p_`:
/// its first pairs (`gh`, `hp`) are everywhere in English, while the literal itself is rare
/// in text and in source code alike, so the automaton, searching the whole literal, reports
/// little; a literal of just `p_` would be reported at every `temp_` of snake_case code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LiteralStarts {
    first: ByteClass,
    second: ByteClass,
    back: usize,
}

/// The offset of the byte pair that represents `lit` (see [`LiteralStarts`]; `lit.len() >= 2`).
fn pair_offset(lit: &[u8]) -> usize {
    let common = |b: u8| b.is_ascii_lowercase() || b == b' ';
    lit.windows(2).position(|p| !(common(p[0]) && common(p[1]))).unwrap_or(0)
}

/// Shortest word literal looked up by its first bytes; shorter ones go by byte-pair classes.
const MIN_WORD_KEY: usize = 4;

/// Where dictionary words may start: at a word start (an ASCII word byte, `[A-Za-z0-9_]`, after
/// a non-word byte or at the buffer's start) whose first `len` bytes, ASCII-lowercased when the
/// automaton ignores case, begin some word literal. Keyword-only whole-word detectors are only
/// reported at word starts (the engine's `is_whole_word`), so their literals need no other
/// positions; a dictionary of lowercase code names, which byte-pair classes cannot filter (prose
/// is made of lowercase pairs), filters this way.
///
/// Prose has a word start every ~6 bytes, so the test is a one-word key (8 bytes loaded at
/// once, masked, lowercased in a register), then a bit of a Bloom-style table that stays in
/// cache (about one key in 64 passes by chance), and only then the exact set.
#[derive(Clone, Debug)]
struct WordKeys {
    mask: u64,
    fold: bool,
    shift: u32,
    bits: Vec<u64>,
    keys: HashSet<u64, BuildHasherDefault<KeyHasher>>,
}

const KEY_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

impl WordKeys {
    fn new(words: &[&[u8]], fold: bool) -> Option<WordKeys> {
        let len = words.iter().map(|w| w.len()).min()?.min(8);
        let mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        let keys: HashSet<u64, BuildHasherDefault<KeyHasher>> = words.iter().map(|w| word_key(load8(w), mask, fold)).collect();
        // ~64 table bits per key, 4 KiB to 512 KiB.
        let log2 = (keys.len() * 64).next_power_of_two().trailing_zeros().clamp(15, 22);
        let mut bits = vec![0u64; 1 << (log2 - 6)];
        let shift = 64 - log2;
        for &k in &keys {
            let h = (k.wrapping_mul(KEY_MUL) >> shift) as usize;
            bits[h / 64] |= 1 << (h % 64);
        }
        Some(WordKeys { mask, fold, shift, bits, keys })
    }

    /// A word starting at `hay[i]` may be a word literal (fewer than 8 bytes left: zero-padded,
    /// and no literal holds a zero byte).
    #[inline]
    fn may_start(&self, hay: &[u8], i: usize) -> bool {
        // Eight bytes at once where there are eight (one load), else the zero-padded rest.
        let Some(rest) = hay.get(i..) else { return false };
        let x = match rest.first_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => load8(rest),
        };
        let k = word_key(x, self.mask, self.fold);
        let h = (k.wrapping_mul(KEY_MUL) >> self.shift) as usize;
        self.bits.get(h / 64).is_some_and(|b| b >> (h % 64) & 1 != 0) && self.keys.contains(&k)
    }
}

/// Up to 8 bytes of `w`, little-endian, zero-padded.
#[inline(always)]
fn load8(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = w.len().min(8);
    b[..n].copy_from_slice(&w[..n]);
    u64::from_le_bytes(b)
}

/// The bytes of `x` under `mask`, with `A-Z` lowercased when `fold` (all eight bytes at once:
/// a byte is a capital iff adding 0x3f to its low 7 bits carries into bit 7 and adding 0x25
/// does not, and its own bit 7 is clear).
#[inline(always)]
fn word_key(x: u64, mask: u64, fold: bool) -> u64 {
    let x = x & mask;
    if !fold {
        return x;
    }
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = x & LOW7;
    let at_least_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let above_z = low + 0x2525_2525_2525_2525;
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
}

/// Multiply-shift hashing for the word keys (SipHash would cost more than the rest of the
/// lookup; the keys are not chosen by an attacker who could profit from collisions: a collision
/// only makes a block a candidate).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(KEY_MUL);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(KEY_MUL);
    }
}

/// How literal starts are found without running the automaton over everything.
#[derive(Clone, Debug)]
struct Filter {
    /// Byte-pair classes of the literals that are not word literals (`None`: there are none).
    pairs: Option<LiteralStarts>,
    /// First bytes of the word literals (`None`: there are none).
    words: Option<WordKeys>,
}

/// The sweep's configuration, derived from a ruleset's literals and digit detectors.
#[derive(Clone, Debug)]
pub(crate) struct Sweep {
    /// `None`: the automaton searches whole buffers.
    filter: Option<Filter>,
    /// The digit detectors' gate (`None`: there are no digit detectors, no runs to find).
    digits: Option<DigitGate>,
    /// Where the CPU has AVX2, blocks are classified with it.
    #[cfg(target_arch = "x86_64")]
    avx2: Option<avx2::Avx2>,
}

/// Which blocks' digit runs the digit detectors can use, from their shapes: a run only matters
/// inside a group (runs separated by single bytes) that holds as many digits as some shape
/// needs, or right after an uppercase letter for shapes that need one (`GB82…`, `A123456(3)`).
/// Prose is full of numbers that are neither (years, amounts, page numbers); the blocks whose
/// groups all lie inside them are skipped at the mask level, without taking their runs one by
/// one (prose, one core, in cache: the grouping of those runs cost as much as the sweep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DigitGate {
    /// Fewest bytes a group spans for a shape without an uppercase prefix (it holds at least
    /// that many digits); `usize::MAX`: every shape needs an uppercase prefix.
    span: usize,
    /// Some shape needs an uppercase letter right before a run.
    upper: bool,
}

impl DigitGate {
    /// Keeps every run (for the tests of run finding itself).
    #[cfg(test)]
    pub(crate) const ALL: DigitGate = DigitGate { span: 0, upper: false };

    /// The gate for shapes `(total digits, uppercase letters before a run)`.
    pub(crate) fn for_shapes(shapes: impl IntoIterator<Item = (usize, usize)>) -> DigitGate {
        let mut gate = DigitGate { span: usize::MAX, upper: false };
        for (total, upper_before) in shapes {
            if upper_before > 0 {
                gate.upper = true;
            } else {
                gate.span = gate.span.min(total);
            }
        }
        gate
    }

    /// Whether the runs of the block at `at` with digit mask `d` (non-zero) may matter. `false`
    /// only when no digit is within two bytes of the block's edges (so no group reaches past
    /// them, and no run is open into or out of the block), no group inside spans `span` bytes,
    /// and no run starts right after an uppercase letter.
    #[inline]
    fn may_use(&self, d: u64, hay: &[u8], at: usize) -> bool {
        const EDGES: u64 = 0b11 | 0b11 << 62;
        if d & EDGES != 0 || self.span < 3 {
            return true;
        }
        // A group inside the block lies within bytes 2..62 (60 bytes); a longer span never fits.
        if self.span <= 60 {
            // Bit p of `r`: bytes p..p + span are all digits or single-byte gaps between them.
            let g = d | ((d << 1) & (d >> 1));
            let (mut r, mut len) = (g, 1);
            while len * 2 <= self.span {
                r &= r >> len;
                len *= 2;
            }
            if r & (r >> (self.span - len)) != 0 {
                return true;
            }
        }
        if self.upper {
            let mut starts = d & !(d << 1);
            while starts != 0 {
                let s = at + starts.trailing_zeros() as usize;
                starts &= starts - 1;
                if hay.get(s.wrapping_sub(1)).is_some_and(u8::is_ascii_uppercase) {
                    return true;
                }
            }
        }
        false
    }
}

/// Candidate blocks are used only while at most one block in this many is a candidate;
/// beyond that the automaton's own SIMD search over the whole buffer is cheaper than many
/// short searches.
const DENSE_CANDIDATES: usize = 8;

/// What a sweep found in one buffer.
#[derive(Debug, Default)]
pub(crate) struct SweepOut {
    /// Maximal digit runs `(start, end)`, in order (empty unless digit detectors exist).
    pub runs: Vec<(usize, usize)>,
    /// Ranges of the buffer where a literal may start (every literal starting in one lies
    /// entirely before `end + longest literal - 1`), in order; the whole buffer when the
    /// filter does not apply.
    pub literal_spans: Vec<(usize, usize)>,
    candidate_blocks: Vec<u64>,
}

impl Sweep {
    /// `literals`: the automaton's patterns; `fold[i]`: literal `i` is matched ignoring ASCII
    /// case (a case-sensitive literal in a case-insensitive automaton is confirmed by exact
    /// bytes later, so only its own case needs finding); `word[i]`: literal `i` is only ever
    /// reported at a word start (it begins with a word byte and every detector using it is a
    /// keyword-only, whole-word one).
    /// `digits`: the gate for the digit detectors' runs (`None`: there are none).
    pub(crate) fn new(literals: &[Vec<u8>], fold: &[bool], word: &[bool], digits: Option<DigitGate>) -> Sweep {
        let folds = |i: usize| fold.get(i).copied().unwrap_or(false);
        let with_cases = |i: usize, b: u8| -> Vec<u8> {
            if folds(i) && b.is_ascii_alphabetic() { vec![b.to_ascii_lowercase(), b.to_ascii_uppercase()] } else { vec![b] }
        };
        let is_word = |i: usize| word.get(i).copied().unwrap_or(false) && literals[i].len() >= MIN_WORD_KEY;
        let words: Vec<&[u8]> = (0..literals.len()).filter(|&i| is_word(i)).map(|i| literals[i].as_slice()).collect();
        let others: Vec<usize> = (0..literals.len()).filter(|&i| !is_word(i)).collect();
        let pairs = if others.iter().any(|&i| literals[i].len() < 2) {
            Err(())
        } else if others.is_empty() {
            Ok(None)
        } else {
            let offset = |i: usize| pair_offset(&literals[i]);
            let first = ByteClass::cover(others.iter().flat_map(|&i| with_cases(i, literals[i][offset(i)])));
            let second = ByteClass::cover(others.iter().flat_map(|&i| with_cases(i, literals[i][offset(i) + 1])));
            let back = others.iter().map(|&i| offset(i)).max().unwrap_or(0);
            match (first, second) {
                (Some(first), Some(second)) if !(first.common_in_text() && second.common_in_text()) => {
                    Ok(Some(LiteralStarts { first, second, back }))
                }
                _ => Err(()),
            }
        };
        let filter = match pairs {
            Ok(pairs) if !literals.is_empty() => {
                // One key form for all word literals: folded if any of them folds (a superset
                // for those that do not).
                let fold_words = (0..literals.len()).any(|i| is_word(i) && folds(i));
                Some(Filter { pairs, words: WordKeys::new(&words, fold_words) })
            }
            _ => None,
        };
        Sweep {
            filter,
            digits,
            #[cfg(target_arch = "x86_64")]
            avx2: avx2::Avx2::detect(),
        }
    }

    /// [`classify_segment`], with AVX2 where the CPU has it.
    #[inline(always)]
    fn classify(&self, hay: &[u8], first: usize, count: usize, look: Looking<'_>, m: &mut Masks) {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = self.avx2 {
            return avx2.classify_segment(hay, first, count, look, m);
        }
        classify_segment(hay, first, count, look, m)
    }

    /// Sweeps `hay`; `has_literals` says whether there is an automaton to feed.
    pub(crate) fn run(&self, hay: &[u8], has_literals: bool, out: &mut SweepOut) {
        out.runs.clear();
        out.literal_spans.clear();
        out.candidate_blocks.clear();
        let filter = self.filter.as_ref().filter(|_| has_literals);
        if has_literals && filter.is_none() {
            out.literal_spans.push((0, hay.len()));
        }
        if self.digits.is_none() && filter.is_none() {
            return;
        }
        let n = hay.len();
        let blocks = n.div_ceil(64);
        out.candidate_blocks.resize(blocks.div_ceil(64), 0);
        let mut candidates = 0;
        // `open`: start of a digit run still going at the end of block `next_block - 1`;
        // `next_block`: the block after the last one that held digits.
        let mut open: Option<usize> = None;
        let mut next_block = 0;
        // Whether the byte before the block is a word byte (the buffer's start counts as none).
        let mut word_before = false;
        let look =
            Looking { pairs: filter.and_then(|f| f.pairs), words: filter.and_then(|f| f.words.as_ref()), digits: self.digits.is_some() };
        let mut masks = Masks::default();
        for (seg, word) in out.candidate_blocks.iter_mut().enumerate() {
            let first = seg * 64;
            let count = (blocks - first).min(64);
            self.classify(hay, first, count, look, &mut masks);
            // Literal candidates: the pair test's blocks, then word starts in the others.
            let mut cand = masks.pairs;
            if let Some(wk) = look.words {
                for k in 0..count {
                    let w = masks.words[k];
                    let mut starts = w & !((w << 1) | u64::from(word_before));
                    word_before = w >> 63 != 0;
                    if cand >> k & 1 != 0 {
                        continue;
                    }
                    let at = (first + k) * 64;
                    while starts != 0 {
                        if wk.may_start(hay.get(at..).unwrap_or_default(), starts.trailing_zeros() as usize) {
                            cand |= 1 << k;
                            break;
                        }
                        starts &= starts - 1;
                    }
                }
            }
            *word = cand;
            candidates += cand.count_ones() as usize;
            // Digit runs: only blocks with digits are visited; a run still open when a block
            // without digits follows ended at that block's start.
            let mut with_digits = masks.has_digits;
            while with_digits != 0 {
                let k = with_digits.trailing_zeros() as usize;
                with_digits &= with_digits - 1;
                let bi = first + k;
                if self.digits.is_some_and(|gate| !gate.may_use(masks.digits[k], hay, bi * 64)) {
                    // Its runs end before the block's end and no run is open into it (see
                    // `may_use`), so skipping it leaves the runs around it as they were.
                    continue;
                }
                if bi != next_block
                    && let Some(s) = open.take()
                {
                    out.runs.push((s, next_block * 64));
                }
                runs_in_block(masks.digits[k], bi * 64, &mut open, &mut out.runs);
                next_block = bi + 1;
            }
        }
        if let Some(s) = open {
            out.runs.push((s, (next_block * 64).min(n)));
        }
        if filter.is_none() {
            return;
        }
        if candidates * DENSE_CANDIDATES > blocks {
            out.literal_spans.push((0, n));
            return;
        }
        // A candidate block's span starts `back` bytes early (a literal starts up to that far
        // before its pair); consecutive or overlapping spans form one.
        let back = filter.and_then(|f| f.pairs).map_or(0, |p| p.back);
        let mut span: Option<(usize, usize)> = None;
        for (wi, &word) in out.candidate_blocks.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = (wi * 64 + bits.trailing_zeros() as usize) * 64;
                bits &= bits - 1;
                let (s, e) = (b.saturating_sub(back), (b + 64).min(n));
                match &mut span {
                    Some(sp) if sp.1 >= s => sp.1 = e,
                    _ => {
                        if let Some(sp) = span.replace((s, e)) {
                            out.literal_spans.push(sp);
                        }
                    }
                }
            }
        }
        out.literal_spans.extend(span);
    }
}

/// Calls `f` with the automaton's leftmost-longest match at every position of `spans` where some
/// literal starts (restarting one byte after each match's start). A literal starting in a span
/// ends at most `longest - 1` bytes after it, so each search stops there: the matches are exactly
/// those a search over the whole buffer reports with starts inside the spans.
pub(crate) fn for_each_literal_start(
    ac: &aho_corasick::AhoCorasick,
    hay: &[u8],
    spans: &[(usize, usize)],
    longest: usize,
    mut f: impl FnMut(aho_corasick::Match),
) {
    for &(s, e) in spans {
        let hi = e.saturating_add(longest.saturating_sub(1)).min(hay.len());
        let mut at = s;
        while at < e {
            let Some(m) = ac.find(aho_corasick::Input::new(hay).span(at..hi)) else { break };
            if m.start() >= e {
                break;
            }
            f(m);
            at = m.start() + 1;
        }
    }
}

/// Bytes of `hay` a block's classification looks at: the block and the byte after it (the
/// second byte of a pair starting at the block's last byte).
const WINDOW: usize = 65;

/// What [`classify_segment`] looks for, copied out of the [`Sweep`] before the loop, so that
/// the loop reads plain values rather than going through the `Sweep` for each block.
#[derive(Clone, Copy)]
struct Looking<'a> {
    pairs: Option<LiteralStarts>,
    words: Option<&'a WordKeys>,
    digits: bool,
}

/// Class masks of up to 64 consecutive blocks (one segment, 4 KiB).
struct Masks {
    /// Per block, bit `i`: byte `i` is an ASCII digit.
    digits: [u64; 64],
    /// Bit `k`: block `k` holds a digit.
    has_digits: u64,
    /// Bit `k`: a non-word literal may start in block `k` (its byte-pair classes).
    pairs: u64,
    /// Per block, bit `i`: byte `i` is a word byte (only with word literals).
    words: [u64; 64],
}

impl Default for Masks {
    fn default() -> Masks {
        Masks { digits: [0; 64], has_digits: 0, pairs: 0, words: [0; 64] }
    }
}

/// Fills `m` for blocks `first..first + count` of `hay` (`count <= 64`).
///
/// Why a separate pass per segment: this part is only vector compares and stores, with no
/// branch that depends on the data, so the CPU runs far ahead through the loads; the branches
/// on what was found (digit runs, word keys) come after, per segment, on masks already in
/// registers and cache. Interleaved, every mispredicted "does this block hold a digit" threw
/// away the loads in flight behind it, and a buffer not in cache was swept at about half the
/// in-cache speed.
#[inline(always)]
fn classify_segment(hay: &[u8], first: usize, count: usize, look: Looking<'_>, m: &mut Masks) {
    m.has_digits = 0;
    m.pairs = 0;
    let mut rest = [0u8; WINDOW];
    for k in 0..count {
        let at = (first + k) * 64;
        if let Some(ahead) = hay.get(at + PREFETCH_AHEAD) {
            prefetch(ahead);
        }
        let window = block_window(hay, at, &mut rest);
        let (Some(block), Some(next)) = (window.first_chunk::<64>(), window.get(1..).and_then(|w| w.first_chunk::<64>())) else {
            continue;
        };
        let block = Block64::load(block);
        if look.digits {
            let d = block.in_range(b'0', b'9').bits();
            m.digits[k] = d;
            m.has_digits |= u64::from(d != 0) << k;
        }
        if let Some(st) = look.pairs {
            // Byte i in the first class and byte i + 1 (lane i of the window shifted by one)
            // in the second.
            let hit = (block.in_range(st.first.lo, st.first.hi) & Block64::load(next).in_range(st.second.lo, st.second.hi)).any();
            m.pairs |= u64::from(hit) << k;
        }
        if look.words.is_some() {
            m.words[k] = (block.or_each(0x20).in_range(b'a', b'z') | block.in_range(b'0', b'9') | block.eq(b'_')).bits();
        }
    }
}

/// The block of `hay` at `at` and the byte after it (the pair test's second byte); near the
/// end, copied into `rest` zero-padded: zeros are no digits, no word bytes, and a literal
/// starting there must end inside `hay`, so the bytes it is matched against are all real.
#[inline(always)]
fn block_window<'a>(hay: &'a [u8], at: usize, rest: &'a mut [u8; WINDOW]) -> &'a [u8; WINDOW] {
    match hay.get(at..at + WINDOW).and_then(|w| <&[u8; WINDOW]>::try_from(w).ok()) {
        Some(window) => window,
        None => {
            let tail = hay.get(at..).unwrap_or_default();
            rest.fill(0);
            rest[..tail.len()].copy_from_slice(tail);
            rest
        }
    }
}

/// Appends the digit runs that end in this block (at `at`) and updates the open run.
#[inline(always)]
fn runs_in_block(m: u64, at: usize, open: &mut Option<usize>, runs: &mut Vec<(usize, usize)>) {
    // Run starts: digits whose left neighbour is not a digit; ends: non-digits whose left
    // neighbour is a digit (bit 0's neighbour is the previous block's last byte).
    let prev = (m << 1) | u64::from(open.is_some());
    let mut starts = m & !prev;
    let mut ends = !m & prev;
    loop {
        // Runs alternate: an open run ends before the next one starts.
        if let Some(s) = *open {
            if ends == 0 {
                break;
            }
            runs.push((s, at + ends.trailing_zeros() as usize));
            ends &= ends - 1;
            *open = None;
        } else {
            if starts == 0 {
                break;
            }
            *open = Some(at + starts.trailing_zeros() as usize);
            starts &= starts - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::is_word_byte;

    fn runs(h: &[u8]) -> Vec<(usize, usize)> {
        let mut out = SweepOut::default();
        Sweep::new(&[], &[], &[], Some(DigitGate::ALL)).run(h, false, &mut out);
        out.runs
    }

    fn naive(h: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = 0;
        while i < h.len() {
            if h[i].is_ascii_digit() {
                let s = i;
                while i < h.len() && h[i].is_ascii_digit() {
                    i += 1;
                }
                v.push((s, i));
            } else {
                i += 1;
            }
        }
        v
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn digit_runs_match_naive_on_every_byte_value_and_position() {
        let mut h = vec![b'x'; 200];
        for b in 0..=255u8 {
            for pos in [0, 7, 8, 31, 32, 33, 63, 64, 65, 127, 128, 199] {
                h.fill(b'x');
                h[pos] = b;
                assert_eq!(runs(&h), naive(&h), "byte {b} at {pos}");
            }
        }
        let text = b"abc 2024 and 4111 1111 1111 1111, id 123456789012345678 end9".repeat(5);
        assert_eq!(runs(&text), naive(&text));
        // A run across several blocks, and one ending exactly at a block edge.
        let mut long = vec![b'7'; 300];
        long[128] = b' ';
        assert_eq!(runs(&long), naive(&long));
        assert_eq!(runs(b"12"), [(0, 2)]);
    }

    #[test]
    fn digit_runs_match_naive_on_pseudo_random_digit_mixes() {
        let mut x = XorShift(0x1234_5678_9abc_def0);
        // Densities per 1024 bytes, from blocks mostly without digits (which the sweep skips)
        // to runs in every block; lengths around the 64-byte blocks and the 4 KiB segments.
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 100, 1000, 4095, 4096, 4097, 5000, 8200, 20000] {
            for density in [1u64, 16, 64, 192, 480, 960] {
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = x.next();
                        if r % 1024 < density { b'0' + (r % 10) as u8 } else { (r >> 16) as u8 & 0x7f }
                    })
                    .collect();
                assert_eq!(runs(&h), naive(&h), "len {len} density {density}");
            }
        }
    }

    /// Runs of the digit detectors' shapes: the built-ins' (card, SSN, PRC ID, HKID, IBAN).
    fn gated_runs(h: &[u8]) -> Vec<(usize, usize)> {
        let gate = DigitGate::for_shapes([(13, 0), (9, 0), (17, 0), (6, 1), (2, 2)]);
        assert_eq!(gate, DigitGate { span: 9, upper: true });
        let mut out = SweepOut::default();
        Sweep::new(&[], &[], &[], Some(gate)).run(h, false, &mut out);
        out.runs
    }

    #[test]
    fn the_digit_gate_keeps_every_run_a_shape_can_use() {
        let mut x = XorShift(7);
        for len in [0usize, 5, 63, 64, 65, 200, 1000, 5000] {
            for _ in 0..200 {
                // Sparse digits among letters, separators and capitals.
                let h: Vec<u8> = (0..len).map(|_| b"0123456789 -.abcdefghijklmnopqrstuvwxyzQZ"[(x.next() % 40) as usize]).collect();
                let all = naive(&h);
                let kept = gated_runs(&h);
                assert!(kept.iter().all(|r| all.contains(r)), "only real runs");
                // Groups: runs separated by single bytes. One that spans 9 bytes (a shape
                // without a prefix needs 9 digits) or has a run right after a capital must be
                // kept whole.
                let mut i = 0;
                while i < all.len() {
                    let mut j = i + 1;
                    while j < all.len() && all[j].0 == all[j - 1].1 + 1 {
                        j += 1;
                    }
                    let group = &all[i..j];
                    let long = group[group.len() - 1].1 - group[0].0 >= 9;
                    let capital = group.iter().any(|&(s, _)| s > 0 && h[s - 1].is_ascii_uppercase());
                    if long || capital {
                        assert!(group.iter().all(|r| kept.contains(r)), "{group:?} of {:?}", String::from_utf8_lossy(&h));
                    }
                    i = j;
                }
            }
        }
        // In prose, years, amounts and page numbers are not taken one by one; values are.
        let pad = "x".repeat(100);
        let text = format!("{pad}in 2024 we paid 1,250.00 (p. 12){pad}SSN 536-22-8726{pad}IBAN GB82WEST1234{pad}id A123456(3){pad}");
        let found: Vec<(usize, &str)> = gated_runs(text.as_bytes()).iter().map(|&(s, e)| (s, &text[s..e])).collect();
        let values: Vec<&str> = found.iter().filter(|(s, _)| *s >= 200).map(|r| r.1).collect();
        assert_eq!(values, ["536", "22", "8726", "82", "1234", "123456", "3"]);
        // "12" ends two bytes after a block's start (it may belong to a group from the block
        // before, so it is kept); the others lie inside the block.
        assert_eq!(found.iter().filter(|(s, _)| *s < 200).map(|r| r.1).collect::<Vec<_>>(), ["12"]);
    }

    #[test]
    fn digit_runs_across_block_and_segment_edges() {
        // Runs ending at a block's or a segment's end, then blocks without digits; runs
        // crossing those edges; runs reaching the buffer's end.
        for len in [64, 128, 4096, 4160, 8192, 8200] {
            for &(s, e) in &[(60, 64), (63, 65), (4000, 4096), (4090, 4100), (4095, 4097), (0, 64), (64, 128), (8100, 8200), (100, 8200)] {
                let mut h = vec![b'x'; len];
                for b in h.iter_mut().take(e.min(len)).skip(s.min(len)) {
                    *b = b'7';
                }
                h.extend_from_slice(b"  1");
                assert_eq!(runs(&h), naive(&h), "len {len}, run {s}..{e}");
            }
        }
    }

    #[test]
    fn byte_class_covers_its_bytes() {
        let c = ByteClass::cover(*b"KSBCEOFR_").unwrap_or_else(|| panic!("a cover"));
        for b in *b"BCDEFGHIJKLMNOPQRSTUVWXYZ_" {
            assert!(c.has(b), "{}", b as char);
        }
        assert!(!c.has(b'a') && !c.has(b' ') && !c.has(b'0'));
        let c = ByteClass::cover(*b"ASCROPposur").unwrap_or_else(|| panic!("a cover"));
        for b in (b'A'..=b'Z').chain(b'a'..=b'u') {
            assert!(c.has(b), "{}", b as char);
        }
        assert!(!c.has(b' ') && !c.has(b'0') && !c.has(b'z'));
        assert!(ByteClass::cover(0..=255).is_none());
        let c = ByteClass::cover(*b"a.z").unwrap_or_else(|| panic!("a cover"));
        assert!(c.has(b'.') && c.has(b'q'));
        assert!(ByteClass::cover([]).is_none());
        // Bytes at both ends: the range is everything, which filters nothing.
        assert!(ByteClass::cover([0xff, 0x00, b'~']).is_none());
        let c = ByteClass::cover([0xfe, 0x80]).unwrap_or_else(|| panic!("a cover"));
        assert!(c.has(0xfe) && c.has(0x80) && c.has(0xc0) && !c.has(0xff) && !c.has(0x7f));
    }

    fn hits_whole(ac: &aho_corasick::AhoCorasick, h: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for_each_literal_start(ac, h, &[(0, h.len())], usize::MAX, |m| v.push((m.start(), m.end())));
        v
    }

    fn hits_swept(sweep: &Sweep, ac: &aho_corasick::AhoCorasick, longest: usize, h: &[u8]) -> Vec<(usize, usize)> {
        let mut out = SweepOut::default();
        sweep.run(h, true, &mut out);
        let mut v = Vec::new();
        for_each_literal_start(ac, h, &out.literal_spans, longest, |m| v.push((m.start(), m.end())));
        v
    }

    /// The shared automaton over `lits` (as the ruleset builds it), the patterns and the longest.
    fn automaton(lits: &[&str], ci: bool) -> (aho_corasick::AhoCorasick, Vec<Vec<u8>>, usize) {
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .ascii_case_insensitive(ci)
            .build(lits)
            .unwrap_or_else(|e| panic!("{e}"));
        let pats: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
        let longest = pats.iter().map(Vec::len).max().unwrap_or(0);
        (ac, pats, longest)
    }

    /// Literals in random text, at every alignment: the swept search finds exactly what a
    /// search of the whole buffer finds, for case-sensitive and case-insensitive literal sets.
    #[test]
    fn literal_spans_lose_no_match() {
        let sets: [(&[&str], bool); 4] = [
            (&["AKIA", "ASIA", "SECRET", "TOP SECRET", "p_", "s_", "PRIVATE KEY"], false),
            (&["AKIA", "ghp_", "gho_", "github_pat_", "-----BEGIN"], false),
            (&["Xq", "-----BEGIN", "zz"], false),
            (&["falcon", "Bluebird"], true),
        ];
        let mut x = XorShift(42);
        for (lits, ci) in sets {
            let (ac, pats, longest) = automaton(lits, ci);
            let sweep = Sweep::new(&pats, &vec![ci; pats.len()], &[], Some(DigitGate::ALL));
            for len in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 700, 4096] {
                for _ in 0..20 {
                    let mut h: Vec<u8> = (0..len).map(|_| b"the quick brown fox 12 Asia, _ghp"[(x.next() % 33) as usize]).collect();
                    for _ in 0..(x.next() % 4) {
                        let lit = lits[(x.next() % lits.len() as u64) as usize].as_bytes();
                        if lit.len() <= len {
                            let at = (x.next() % (len - lit.len() + 1) as u64) as usize;
                            h[at..at + lit.len()].copy_from_slice(lit);
                        }
                    }
                    assert_eq!(hits_swept(&sweep, &ac, longest, &h), hits_whole(&ac, &h), "{lits:?} {}", String::from_utf8_lossy(&h));
                }
            }
            // Every alignment relative to the 64-byte blocks, at the buffer's start, in its middle
            // and at its end. 2 KiB of spaces: a buffer with one or two candidate blocks is
            // searched by spans (a short one, or one full of pair-class bytes, whole, as dense).
            for lit in lits {
                let len = 2048;
                for at in (0..200).chain(900..1100).chain(len - 200..len - lit.len()) {
                    let mut h = vec![b' '; len];
                    h[at..at + lit.len()].copy_from_slice(lit.as_bytes());
                    assert_eq!(hits_swept(&sweep, &ac, longest, &h), hits_whole(&ac, &h), "{lit} at {at}");
                }
            }
        }
    }

    #[test]
    fn the_filter_applies_to_the_builtins_and_not_to_lowercase_dictionaries() {
        let builtin: Vec<Vec<u8>> =
            ["AKIA", "SECRET", "ghp_", "github_pat_", "PRIVATE KEY"].iter().map(|l| l.as_bytes().to_vec()).collect();
        // Token prefixes go by their first pair that is not lowercase text: `p_`, `b_`.
        assert_eq!(builtin.iter().map(|l| pair_offset(l)).collect::<Vec<_>>(), [0, 0, 2, 5, 0]);
        assert!(Sweep::new(&builtin, &[], &[], Some(DigitGate::ALL)).filter.is_some());
        let dictionary: Vec<Vec<u8>> = ["falcon", "osprey"].iter().map(|l| l.as_bytes().to_vec()).collect();
        let no = [false, false];
        assert!(Sweep::new(&dictionary, &no, &no, Some(DigitGate::ALL)).filter.is_none());
        assert!(Sweep::new(&[b"X".to_vec()], &no, &no, Some(DigitGate::ALL)).filter.is_none());
        // ...unless the dictionary is of whole words: then they are looked up at word starts,
        // next to the case-sensitive built-ins.
        let both: Vec<Vec<u8>> = builtin.iter().chain(&dictionary).cloned().collect();
        let fold: Vec<bool> = (0..both.len()).map(|i| i >= builtin.len()).collect();
        assert!(Sweep::new(&both, &fold, &fold, Some(DigitGate::ALL)).filter.is_some());
        // Prose gives almost no candidate blocks: the automaton searches a small part of it.
        let prose = b"The committee met on Monday and reviewed the quarterly budget of 2024. ".repeat(100);
        let mut out = SweepOut::default();
        Sweep::new(&builtin, &[], &[], Some(DigitGate::ALL)).run(&prose, true, &mut out);
        let searched: usize = out.literal_spans.iter().map(|(s, e)| e - s).sum();
        assert!(searched * 20 < prose.len(), "searched {searched} of {}", prose.len());
        Sweep::new(&both, &fold, &fold, Some(DigitGate::ALL)).run(&prose, true, &mut out);
        let searched: usize = out.literal_spans.iter().map(|(s, e)| e - s).sum();
        assert!(searched * 20 < prose.len(), "searched {searched} of {}", prose.len());
    }

    #[test]
    fn word_keys_lowercase_exactly_the_capitals() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'Q', 0x80 | b, b'z', b'@', b'[', b, 0xc1]);
            let want = u64::from_le_bytes([b.to_ascii_lowercase(), b'q', 0x80 | b, b'z', b'@', b'[', b.to_ascii_lowercase(), 0xc1]);
            assert_eq!(word_key(x, u64::MAX, true), want, "{b:#x}");
            assert_eq!(word_key(x, u64::MAX, false), x);
            assert_eq!(word_key(x, 0xffff, true), want & 0xffff);
        }
    }

    /// Word literals (keyword-only whole-word detectors) next to byte-pair literals, in random
    /// text at every alignment: every hit that the engine could report — one of a byte-pair
    /// literal anywhere, one at a word start (a word byte after a non-word byte or at the
    /// buffer's start) — is found by the swept search, and the swept search finds nothing the
    /// whole-buffer search does not.
    #[test]
    fn word_literals_are_found_at_every_word_start() {
        // (literals, word literal?, folds case?); the automaton ignores case if any literal does.
        let sets: [(&[&str], &[bool], &[bool]); 3] = [
            (
                &["falcon", "osprey", "kalomi", "kalo", "AKIA", "p_", "SECRET"],
                &[true, true, true, true, false, false, false],
                &[true, true, true, true, false, false, false],
            ),
            (&["Bluebird", "nightjar", "night", "9lives", "_under"], &[true, true, true, true, true], &[false; 5]),
            (&["falconer", "falcon", "SECRET", "Osprey"], &[true, false, false, true], &[true, false, false, false]),
        ];
        let mut x = XorShift(7);
        let found = std::cell::Cell::new(0usize);
        for (lits, word, fold_of) in sets {
            let ci = fold_of.iter().any(|&f| f);
            let (ac, pats, longest) = automaton(lits, ci);
            let sweep = Sweep::new(&pats, fold_of, word, Some(DigitGate::ALL));
            // The third set has a lowercase, case-folded literal that is not a word literal:
            // no filter applies, and the swept search is the whole search.
            assert_eq!(sweep.filter.is_some(), lits.len() != 4, "{lits:?}");
            // Does literal `i` occur at `h[s..]` as its detectors would accept it?
            let occurs = |h: &[u8], s: usize, i: usize| {
                let l = lits[i].as_bytes();
                h.len() >= s + l.len() && if fold_of[i] { h[s..s + l.len()].eq_ignore_ascii_case(l) } else { &h[s..s + l.len()] == l }
            };
            let check = |h: &[u8]| {
                let swept = hits_swept(&sweep, &ac, longest, h);
                let whole = hits_whole(&ac, h);
                for hit in &swept {
                    assert!(whole.contains(hit), "{hit:?} not in the whole search: {}", String::from_utf8_lossy(h));
                }
                for &(s, e) in &whole {
                    let word_start = s == 0 || !is_word_byte(h[s - 1]);
                    let any_here = (0..lits.len()).any(|i| occurs(h, s, i));
                    let other_here = (0..lits.len()).any(|i| !(word[i] && lits[i].len() >= MIN_WORD_KEY) && occurs(h, s, i));
                    if (word_start && any_here) || other_here {
                        assert!(swept.contains(&(s, e)), "({s}, {e}) missed: {}", String::from_utf8_lossy(h));
                        found.set(found.get() + 1);
                    }
                }
            };
            for len in [0usize, 1, 5, 63, 64, 65, 70, 71, 72, 127, 128, 129, 700, 4096, 4100, 8200] {
                for _ in 0..30 {
                    let mut h: Vec<u8> = (0..len).map(|_| b"the quick brown fox, 12 _ falcons Asia.\n"[(x.next() % 40) as usize]).collect();
                    for _ in 0..(x.next() % 6) {
                        let lit = lits[(x.next() % lits.len() as u64) as usize].as_bytes();
                        if lit.len() <= len {
                            let at = (x.next() % (len - lit.len() + 1) as u64) as usize;
                            h[at..at + lit.len()].copy_from_slice(lit);
                            if x.next().is_multiple_of(2) {
                                h[at..at + lit.len()].make_ascii_uppercase();
                            }
                        }
                    }
                    check(&h);
                }
            }
            // Every alignment relative to the 64-byte blocks, after a word byte or not.
            for lit in lits {
                for before in [b'.', b'x'] {
                    for at in 1..200 - lit.len() {
                        let mut h = vec![before; 200];
                        h[at..at + lit.len()].copy_from_slice(lit.as_bytes());
                        check(&h);
                    }
                }
            }
        }
        assert!(found.get() > 5000, "only {} hits checked", found.get());
    }
}
