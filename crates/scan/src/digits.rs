//! The prefilter for detectors without a literal (card numbers, ID numbers): maximal runs of
//! ASCII digits. Text is mostly digit-free, so the loop tests 32 bytes at a time with SWAR
//! arithmetic on four `u64` words (no `unsafe`, no SIMD intrinsics) and only looks at single
//! bytes inside a block that holds a digit.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The high bit of each byte of the result is set iff that byte of `w` is an ASCII digit.
/// XOR with `0x30` maps exactly the digits to `0x00..=0x09`; setting each byte's high bit
/// before subtracting 10 keeps borrows inside their byte, so the mask is exact per byte.
#[inline(always)]
fn digit_bits(w: u64) -> u64 {
    let x = w ^ (ONES * 0x30);
    let t = (x | HIGHS).wrapping_sub(ONES * 10);
    !t & !x & HIGHS
}

/// Finds digit runs: with a SIMD Teddy searcher over the ten digits where the CPU has one
/// (prose: digits are rare, so the search runs at vector speed), else the SWAR loop.
#[derive(Clone, Debug)]
pub(crate) struct DigitFinder {
    teddy: Option<aho_corasick::packed::Searcher>,
}

impl DigitFinder {
    pub(crate) fn new() -> DigitFinder {
        let digits: Vec<[u8; 1]> = (b'0'..=b'9').map(|d| [d]).collect();
        let teddy = aho_corasick::packed::Searcher::new(digits.iter());
        DigitFinder { teddy: teddy.filter(|t| t.minimum_len() <= 64) }
    }

    /// Calls `f(start, end)` for every maximal run of ASCII digits, in order.
    pub(crate) fn for_each_run(&self, hay: &[u8], mut f: impl FnMut(usize, usize)) {
        let Some(teddy) = &self.teddy else {
            return for_each_run(hay, 1, f);
        };
        let n = hay.len();
        let mut i = 0;
        // Where digits are dense (tables, binary) a search call per run costs more than the
        // SWAR loop: after 8 runs in a row closer than 64 bytes, finish with SWAR. `i` is never
        // inside a run, so the two report exactly the same runs.
        let mut dense = 0;
        while i < n {
            if dense >= 8 {
                return for_each_run(&hay[i..], 1, |s, e| f(i + s, i + e));
            }
            let Some(m) = teddy.find_in(hay, aho_corasick::Span::from(i..n)) else { break };
            let s = m.start();
            dense = if s - i < 64 { dense + 1 } else { 0 };
            let mut e = s + 1;
            while e < n && hay[e].is_ascii_digit() {
                e += 1;
            }
            f(s, e);
            i = e;
        }
    }
}

/// Calls `f(start, end)` for every maximal run of ASCII digits of length `>= min`, in order.
pub(crate) fn for_each_run(hay: &[u8], min: usize, mut f: impl FnMut(usize, usize)) {
    let n = hay.len();
    let mut emit = |s: usize, e: usize| {
        if e - s >= min {
            f(s, e);
        }
    };
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i + 8 <= n {
        // Fast skip of digit-free text, 32 bytes at a time.
        if open.is_none() {
            while i + 32 <= n
                && (digit_bits(word(&hay[i..]))
                    | digit_bits(word(&hay[i + 8..]))
                    | digit_bits(word(&hay[i + 16..]))
                    | digit_bits(word(&hay[i + 24..])))
                    == 0
            {
                i += 32;
            }
            if i + 8 > n {
                break;
            }
        }
        let m = digit_bits(word(&hay[i..]));
        let mut k = 0u32; // first byte of this word not yet classified
        loop {
            let from = HIGHS << (8 * k);
            match open {
                Some(s) => {
                    let non_digit = !m & from;
                    if non_digit == 0 {
                        break;
                    }
                    let p = non_digit.trailing_zeros() / 8;
                    emit(s, i + p as usize);
                    open = None;
                    k = p;
                }
                None => {
                    let digit = m & from;
                    if digit == 0 {
                        break;
                    }
                    let p = digit.trailing_zeros() / 8;
                    open = Some(i + p as usize);
                    k = p;
                }
            }
            if k >= 8 {
                break;
            }
        }
        i += 8;
    }
    for (j, b) in hay.iter().enumerate().skip(i) {
        match (b.is_ascii_digit(), open) {
            (true, None) => open = Some(j),
            (false, Some(s)) => {
                emit(s, j);
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        emit(s, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(h: &[u8], min: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for_each_run(h, min, |s, e| v.push((s, e)));
        v
    }

    fn naive(h: &[u8], min: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = 0;
        while i < h.len() {
            if h[i].is_ascii_digit() {
                let s = i;
                while i < h.len() && h[i].is_ascii_digit() {
                    i += 1;
                }
                if i - s >= min {
                    v.push((s, i));
                }
            } else {
                i += 1;
            }
        }
        v
    }

    #[test]
    fn matches_naive_on_every_byte_value_and_position() {
        let mut h = vec![b'x'; 100];
        for b in 0..=255u8 {
            for pos in [0, 7, 8, 31, 32, 33, 63, 64, 99] {
                h.fill(b'x');
                h[pos] = b;
                assert_eq!(runs(&h, 1), naive(&h, 1), "byte {b} at {pos}");
            }
        }
        let text = b"abc 2024 and 4111 1111 1111 1111, id 123456789012345678 end9";
        for min in 1..6 {
            assert_eq!(runs(text, min), naive(text, min));
        }
    }

    #[test]
    fn simd_finder_matches_naive() {
        let finder = DigitFinder::new();
        let text = b"abc 2024 and 4111 1111 1111 1111, id 123456789012345678 end9".repeat(5);
        let mut v = Vec::new();
        finder.for_each_run(&text, |s, e| v.push((s, e)));
        assert_eq!(v, naive(&text, 1));
        let mut v = Vec::new();
        finder.for_each_run(b"12", |s, e| v.push((s, e)));
        assert_eq!(v, [(0, 2)]);
        // Dense digits switch to the SWAR loop part-way.
        let dense: Vec<u8> = (0..2000u32).map(|i| if i % 7 < 3 { b'0' + (i % 10) as u8 } else { b'x' }).collect();
        let mut v = Vec::new();
        finder.for_each_run(&dense, |s, e| v.push((s, e)));
        assert_eq!(v, naive(&dense, 1));
    }

    #[test]
    fn matches_naive_on_pseudo_random_digit_mixes() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 100, 1000] {
            for density in [1u64, 3, 8, 15] {
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x % 16 < density { b'0' + (x % 10) as u8 } else { (x >> 8) as u8 & 0x7f }
                    })
                    .collect();
                for min in [1, 2, 4] {
                    assert_eq!(runs(&h, min), naive(&h, min), "len {len} density {density}");
                }
            }
        }
    }
}
