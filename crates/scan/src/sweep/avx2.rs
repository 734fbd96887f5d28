//! The sweep's per-block classification with AVX2 (32-byte vectors, three-operand encodings),
//! used where the CPU has it, detected at run time.
//!
//! Why this module holds the crate's only `unsafe`: the portable path ([`super::classify_segment`]
//! on [`crate::blockmask`]) can only use what every x86-64 CPU has, SSE2, because a binary that
//! operators deploy cannot assume more. With SSE2 a 64-byte block costs about 100 instructions
//! (four 16-byte vectors, and two-operand encodings that copy a register before most compares);
//! here about half as many. Choosing AVX2 at run time needs a call into a `#[target_feature]`
//! function, which Rust only allows in `unsafe`, and a vector load from a slice is an `unsafe`
//! intrinsic. Both are wrapped here: [`Avx2`] can only be made where the CPU has AVX2, and loads
//! take references to exactly 32 bytes. Prose, 64 MiB, one core, criterion: 4.8 → 7.8–8.4 GiB/s
//! for the whole scanner, together with [`super::DigitGate`].
//!
//! The masks are the same as the portable path's, bit for bit (tested below on random text).
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256i, _MM_HINT_T0, _mm_prefetch, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
    _mm256_or_si256, _mm256_set1_epi8, _mm256_sub_epi8, _mm256_testz_si256,
};

use super::{Looking, Masks, PREFETCH_AHEAD, WINDOW, block_window};

/// Proof that the CPU has AVX2: made only by [`Avx2::detect`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` where the CPU has AVX2.
    pub(super) fn detect() -> Option<Avx2> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// [`super::classify_segment`], same arguments, same masks.
    #[inline(always)]
    pub(super) fn classify_segment(self, hay: &[u8], first: usize, count: usize, look: Looking<'_>, m: &mut Masks) {
        // SAFETY: `self` exists, so the CPU has AVX2 (see `detect`).
        unsafe { classify_segment(hay, first, count, look, m) }
    }
}

#[inline(always)]
fn load(b: &[u8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; the load has no alignment requirement. Only called from
    // functions compiled with AVX2 (it is inlined into them).
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Lanes of `v` in `lo..=hi`: `v - lo <= hi - lo`, unsigned (AVX2 has no unsigned byte compare,
/// but has unsigned min).
#[inline]
#[target_feature(enable = "avx2")]
fn in_range(v: __m256i, lo: u8, hi: u8) -> __m256i {
    let d = _mm256_sub_epi8(v, _mm256_set1_epi8(lo as i8));
    _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(hi.wrapping_sub(lo) as i8)), d)
}

/// Bit `i` set iff byte lane `i` of `lo` (or lane `i - 32` of `hi`) is all ones.
#[inline]
#[target_feature(enable = "avx2")]
fn bits(lo: __m256i, hi: __m256i) -> u64 {
    u64::from(_mm256_movemask_epi8(lo) as u32) | (u64::from(_mm256_movemask_epi8(hi) as u32) << 32)
}

/// Word bytes (`[A-Za-z0-9_]`).
#[inline]
#[target_feature(enable = "avx2")]
fn word_bytes(v: __m256i) -> __m256i {
    let lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
    _mm256_or_si256(
        _mm256_or_si256(in_range(lower, b'a', b'z'), in_range(v, b'0', b'9')),
        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'_' as i8)),
    )
}

/// See [`super::classify_segment`]: the same loop, each 64-byte block as two 32-byte vectors.
#[target_feature(enable = "avx2")]
fn classify_segment(hay: &[u8], first: usize, count: usize, look: Looking<'_>, m: &mut Masks) {
    let (mut has_digits, mut pairs) = (0u64, 0u64);
    let mut rest = [0u8; WINDOW];
    for k in 0..count {
        let at = (first + k) * 64;
        if let Some(ahead) = hay.get(at + PREFETCH_AHEAD) {
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(ahead).cast());
        }
        let window = block_window(hay, at, &mut rest);
        let (Some(lo), Some(hi), Some(next_lo), Some(next_hi)) = (
            window.first_chunk::<32>(),
            window.get(32..).and_then(<[u8]>::first_chunk::<32>),
            window.get(1..).and_then(<[u8]>::first_chunk::<32>),
            window.get(33..).and_then(<[u8]>::first_chunk::<32>),
        ) else {
            continue;
        };
        let (lo, hi) = (load(lo), load(hi));
        if look.digits {
            let d = bits(in_range(lo, b'0', b'9'), in_range(hi, b'0', b'9'));
            m.digits[k] = d;
            has_digits |= u64::from(d != 0) << k;
        }
        if let Some(st) = look.pairs {
            // Byte i in the first class and byte i + 1 in the second.
            let (next_lo, next_hi) = (load(next_lo), load(next_hi));
            let (f, s) = (st.first, st.second);
            let hit = _mm256_or_si256(
                _mm256_and_si256(in_range(lo, f.lo, f.hi), in_range(next_lo, s.lo, s.hi)),
                _mm256_and_si256(in_range(hi, f.lo, f.hi), in_range(next_hi, s.lo, s.hi)),
            );
            pairs |= u64::from(_mm256_testz_si256(hit, hit) == 0) << k;
        }
        if look.words.is_some() {
            m.words[k] = bits(word_bytes(lo), word_bytes(hi));
        }
    }
    m.has_digits = has_digits;
    m.pairs = pairs;
}

#[cfg(test)]
mod tests {
    use super::super::{ByteClass, LiteralStarts, WordKeys};
    use super::*;

    #[test]
    fn the_masks_are_those_of_the_portable_path() {
        let Some(avx2) = Avx2::detect() else {
            eprintln!("no AVX2 on this CPU: only the portable path runs here");
            return;
        };
        let keys = WordKeys::new(&[b"falcon".as_slice(), b"osprey"], true);
        let pairs = Some(LiteralStarts { first: ByteClass { lo: b'A', hi: b'u' }, second: ByteClass { lo: b'B', hi: b'_' }, back: 0 });
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = b"the Quick 0123456789 AKIA_ x-Y\n\xff\x00zZ";
        for len in [0usize, 1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 9000] {
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let blocks = len.div_ceil(64);
            for look in [
                Looking { pairs, words: keys.as_ref(), digits: true },
                Looking { pairs: None, words: None, digits: true },
                Looking { pairs, words: None, digits: false },
            ] {
                for first in (0..blocks).step_by(64) {
                    let count = (blocks - first).min(64);
                    let (mut a, mut b) = (Masks::default(), Masks::default());
                    super::super::classify_segment(&hay, first, count, look, &mut a);
                    avx2.classify_segment(&hay, first, count, look, &mut b);
                    assert_eq!((a.has_digits, a.pairs), (b.has_digits, b.pairs), "len {len}, segment {first}");
                    assert_eq!(a.digits[..count], b.digits[..count], "len {len}, segment {first}");
                    if look.words.is_some() {
                        assert_eq!(a.words[..count], b.words[..count], "len {len}, segment {first}");
                    }
                }
            }
        }
    }
}
