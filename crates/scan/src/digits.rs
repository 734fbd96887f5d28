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

/// Nonzero iff some byte of `w` is an ASCII digit. XOR with `0x30` maps exactly the digits to
/// `0x00..=0x09`; "has a byte less than 10" is the classic exact zero-borrow test.
#[inline(always)]
fn has_digit(w: u64) -> u64 {
    let x = w ^ (ONES * 0x30);
    x.wrapping_sub(ONES * 10) & !x & HIGHS
}

#[inline(always)]
fn block_has_digit(b: &[u8]) -> bool {
    (has_digit(word(&b[0..])) | has_digit(word(&b[8..])) | has_digit(word(&b[16..])) | has_digit(word(&b[24..])))
        != 0
}

/// Calls `f(start, end)` for every maximal run of ASCII digits of length `>= min`, in order.
pub(crate) fn for_each_run(hay: &[u8], min: usize, mut f: impl FnMut(usize, usize)) {
    let n = hay.len();
    let mut i = 0;
    while i < n {
        while i + 32 <= n && !block_has_digit(&hay[i..i + 32]) {
            i += 32;
        }
        let lim = (i + 32).min(n);
        match hay[i..lim].iter().position(u8::is_ascii_digit) {
            None => i = lim,
            Some(p) => {
                let s = i + p;
                let mut e = s + 1;
                while e < n && hay[e].is_ascii_digit() {
                    e += 1;
                }
                if e - s >= min {
                    f(s, e);
                }
                i = e;
            }
        }
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
}
