//! The shared prefilter sweep: one pass over each buffer, 64 bytes at a time, that finds
//!
//! * maximal runs of ASCII digits (the trigger of detectors without a literal: cards, ID
//!   numbers), and
//! * the blocks where a detector literal may start, from the classes of every literal's first
//!   two bytes (for the built-ins: a byte in `A-u` followed by one in `B-_`, roughly a letter
//!   followed by an uppercase letter or `_`, which ordinary prose almost never has).
//!
//! Why by hand: the literal automaton (Aho-Corasick with its SIMD Teddy prefilter) and a search
//! for the ten digits each read the whole buffer, and the digit search paid a call per digit
//! run (prose has one every ~200 bytes); together they cost a third more than this sweep plus
//! the automaton over the few candidate blocks (prose, one core: 282 → 205 ms per 640 MiB). No crate
//! searches for a byte class and a byte-pair class at once. This sweep reads each byte once,
//! as [`Block64`] class masks (SSE2 compares and movemasks on x86-64, plain loops elsewhere;
//! no `unsafe`); the automaton then runs only over candidate blocks,
//! or over the whole buffer when they are not rare (dense or binary data) or when the literals'
//! first bytes are too common for the filter to say anything (case-insensitive dictionaries).

use crate::blockmask::{Block64, prefetch};

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

/// Where literals may start: byte `i` in the first class and byte `i + 1` in the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LiteralStarts {
    first: ByteClass,
    second: ByteClass,
}

/// The sweep's configuration, derived from a ruleset's literals and digit detectors.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sweep {
    starts: Option<LiteralStarts>,
    digits: bool,
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
    /// `literals`: the automaton's patterns (with both cases of letters when it ignores case).
    pub(crate) fn new(literals: &[Vec<u8>], ascii_case_insensitive: bool, digits: bool) -> Sweep {
        let with_cases = |b: u8| -> Vec<u8> {
            if ascii_case_insensitive && b.is_ascii_alphabetic() {
                vec![b.to_ascii_lowercase(), b.to_ascii_uppercase()]
            } else {
                vec![b]
            }
        };
        let starts = if literals.is_empty() || literals.iter().any(|l| l.len() < 2) {
            None
        } else {
            let first = ByteClass::cover(literals.iter().flat_map(|l| with_cases(l[0])));
            let second = ByteClass::cover(literals.iter().flat_map(|l| with_cases(l[1])));
            match (first, second) {
                (Some(first), Some(second)) if !(first.common_in_text() && second.common_in_text()) => {
                    Some(LiteralStarts { first, second })
                }
                _ => None,
            }
        };
        Sweep { starts, digits }
    }

    /// Sweeps `hay`; `has_literals` says whether there is an automaton to feed.
    pub(crate) fn run(&self, hay: &[u8], has_literals: bool, out: &mut SweepOut) {
        out.runs.clear();
        out.literal_spans.clear();
        out.candidate_blocks.clear();
        let starts = self.starts.filter(|_| has_literals);
        if has_literals && starts.is_none() {
            out.literal_spans.push((0, hay.len()));
        }
        if !self.digits && starts.is_none() {
            return;
        }
        let n = hay.len();
        // Blocks whose 65-byte window (the block and the byte after it) lies inside `hay`; the
        // rest (1 to 64 bytes) is one more block, zero-padded: zeros are no digits, and a
        // literal starting in the rest must end inside it, so its bytes are all real.
        let windowed = n.saturating_sub(1) / 64;
        let blocks = n.div_ceil(64);
        out.candidate_blocks.resize(blocks.div_ceil(64), 0);
        let mut candidates = 0;
        // `open`: start of a digit run still going at the end of the previous block.
        let mut open: Option<usize> = None;
        let mut rest = [0u8; 65];
        for bi in 0..blocks {
            let at = bi * 64;
            if let Some(ahead) = hay.get(at + PREFETCH_AHEAD) {
                prefetch(ahead);
            }
            let window = match hay.get(at..at + 65).and_then(|w| <&[u8; 65]>::try_from(w).ok()) {
                Some(window) if bi < windowed => window,
                _ => {
                    rest[..n - at].copy_from_slice(&hay[at..]);
                    &rest
                }
            };
            let (digits, candidate) = classify(window, starts.as_ref(), self.digits);
            if candidate {
                out.candidate_blocks[bi / 64] |= 1 << (bi % 64);
                candidates += 1;
            }
            if digits != 0 || open.is_some() {
                runs_in_block(digits, at, &mut open, &mut out.runs);
            }
        }
        if let Some(s) = open {
            out.runs.push((s, n));
        }
        if starts.is_none() {
            return;
        }
        if candidates * DENSE_CANDIDATES > blocks {
            out.literal_spans.push((0, n));
            return;
        }
        // Consecutive candidate blocks form one span.
        let mut span: Option<(usize, usize)> = None;
        for (wi, &word) in out.candidate_blocks.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let s = (wi * 64 + bits.trailing_zeros() as usize) * 64;
                bits &= bits - 1;
                let e = (s + 64).min(n);
                match &mut span {
                    Some(sp) if sp.1 == s => sp.1 = e,
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

/// Digit mask (bit `i` = byte `i` is an ASCII digit) and whether a literal may start in the
/// block. `window` is the block plus the byte after it (anything when there is none: a literal
/// starting at the last byte would not fit anyway).
#[inline(always)]
fn classify(window: &[u8; 65], starts: Option<&LiteralStarts>, digits: bool) -> (u64, bool) {
    let (Some(block), Some(next)) = (window.first_chunk::<64>(), window.last_chunk::<64>()) else { return (0, false) };
    let block = Block64::load(block);
    // Byte i in the first class and byte i + 1 (lane i of the window shifted by one) in the
    // second.
    let candidate = starts.is_some_and(|st| {
        (block.in_range(st.first.lo, st.first.hi) & Block64::load(next).in_range(st.second.lo, st.second.hi)).any()
    });
    let digits = if digits { block.in_range(b'0', b'9') } else { return (0, candidate) };
    // Most blocks of text hold no digit: one movemask says so, four give the mask.
    (if digits.any() { digits.bits() } else { 0 }, candidate)
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

    fn runs(h: &[u8]) -> Vec<(usize, usize)> {
        let mut out = SweepOut::default();
        Sweep::new(&[], false, true).run(h, false, &mut out);
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
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 100, 1000, 5000] {
            for density in [1u64, 3, 8, 15] {
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = x.next();
                        if r % 16 < density { b'0' + (r % 10) as u8 } else { (r >> 8) as u8 & 0x7f }
                    })
                    .collect();
                assert_eq!(runs(&h), naive(&h), "len {len} density {density}");
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

    /// Literals in random text, at every alignment: the swept search finds exactly what a
    /// search of the whole buffer finds, for case-sensitive and case-insensitive literal sets.
    #[test]
    fn literal_spans_lose_no_match() {
        let sets: [(&[&str], bool); 3] = [
            (&["AKIA", "ASIA", "SECRET", "TOP SECRET", "p_", "s_", "PRIVATE KEY"], false),
            (&["Xq", "-----BEGIN", "zz"], false),
            (&["falcon", "Bluebird"], true),
        ];
        let mut x = XorShift(42);
        for (lits, ci) in sets {
            let ac = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .ascii_case_insensitive(ci)
                .build(lits)
                .unwrap_or_else(|e| panic!("{e}"));
            let pats: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
            let longest = pats.iter().map(Vec::len).max().unwrap_or(0);
            let sweep = Sweep::new(&pats, ci, true);
            for len in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 700, 4096] {
                for _ in 0..20 {
                    let mut h: Vec<u8> = (0..len).map(|_| b"the quick brown fox 12 Asia, "[(x.next() % 29) as usize]).collect();
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
            // Every alignment relative to the 64-byte blocks, including the buffer's last bytes.
            for lit in lits {
                for at in 0..200 - lit.len() {
                    let mut h = vec![b'.'; 200];
                    h[at..at + lit.len()].copy_from_slice(lit.as_bytes());
                    assert_eq!(hits_swept(&sweep, &ac, longest, &h), hits_whole(&ac, &h), "{lit} at {at}");
                }
            }
        }
    }

    #[test]
    fn the_filter_applies_to_the_builtins_and_not_to_lowercase_dictionaries() {
        let builtin: Vec<Vec<u8>> = ["AKIA", "SECRET", "p_", "o_", "PRIVATE KEY"].iter().map(|l| l.as_bytes().to_vec()).collect();
        assert!(Sweep::new(&builtin, false, true).starts.is_some());
        let dictionary: Vec<Vec<u8>> = ["falcon", "osprey"].iter().map(|l| l.as_bytes().to_vec()).collect();
        assert!(Sweep::new(&dictionary, false, true).starts.is_none());
        assert!(Sweep::new(&[b"X".to_vec()], false, true).starts.is_none());
        // Prose gives almost no candidate blocks: the automaton searches a small part of it.
        let prose = b"The committee met on Monday and reviewed the quarterly budget of 2024. ".repeat(100);
        let mut out = SweepOut::default();
        Sweep::new(&builtin, false, true).run(&prose, true, &mut out);
        let searched: usize = out.literal_spans.iter().map(|(s, e)| e - s).sum();
        assert!(searched * 20 < prose.len(), "searched {searched} of {}", prose.len());
    }
}
