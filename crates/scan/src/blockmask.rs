//! Byte-class bit masks of 64-byte blocks: bit `i` of a mask says whether byte `i` of the block
//! is in a class (a range, one byte, a union of those). The prefilter sweep (digit runs, literal
//! starts) and extraction's base64 finder walk their input 64 bytes at a time with these.
//!
//! Why by hand, and why `safe_arch`: the work per block is a few byte compares and one
//! "movemask" (the top bit of each byte lane gathered into an integer) per 16 bytes. Plain
//! loops over arrays vectorise the compares, but the compiler cannot see that packing 0/1 flags
//! into bits is a movemask and spends more on the packing than on the compares (digit mask of
//! prose: 8 GB/s as loops, 21 GB/s with movemask). `std::arch` intrinsics need `unsafe` to call
//! from code not itself compiled for SSE2, and these crates avoid `unsafe` (the sweep's AVX2 path
//! is the one exception, kept to its own module);
//! `safe_arch` (the safe intrinsics under the `wide` crate) offers the same SSE2 instructions as
//! safe functions, compiled in when the target has SSE2, which every x86-64 target has. On
//! other targets the same masks come from the plain loops.

/// The lanes of a block that are in some class: per byte, all ones (in) or zero (out).
/// Combine with `|` and `&`, then take [`Lanes::bits`].
#[derive(Clone, Copy)]
pub struct Lanes(imp::Lanes);

/// A 64-byte block, loaded for class tests.
#[derive(Clone, Copy)]
pub struct Block64(imp::Block);

impl Block64 {
    #[inline(always)]
    pub fn load(bytes: &[u8; 64]) -> Block64 {
        Block64(imp::load(bytes))
    }

    /// Lanes whose byte is in `lo..=hi` (empty when `lo > hi`).
    #[inline(always)]
    pub fn in_range(&self, lo: u8, hi: u8) -> Lanes {
        Lanes(imp::in_range(&self.0, lo, hi))
    }

    /// Lanes whose byte is `b`.
    #[inline(always)]
    pub fn eq(&self, b: u8) -> Lanes {
        Lanes(imp::eq(&self.0, b))
    }

    /// Lanes whose byte, read as `i8`, is below `x`: for `x` in `1..=0x7f`, the bytes below `x`
    /// and every non-ASCII byte (`0x80..`), in one compare.
    #[inline(always)]
    pub fn signed_lt(&self, x: i8) -> Lanes {
        Lanes(imp::signed_lt(&self.0, x))
    }

    /// The block with `bits` or-ed into every byte (`0x20` folds ASCII letters to lowercase).
    #[inline(always)]
    pub fn or_each(&self, bits: u8) -> Block64 {
        Block64(imp::or_each(&self.0, bits))
    }
}

/// Asks for the cache line holding `byte` to be brought in (a hint; no effect on results).
#[inline(always)]
pub fn prefetch(byte: &u8) {
    imp::prefetch(byte)
}

impl Lanes {
    /// Bit `i` set iff lane `i` is in.
    #[inline(always)]
    pub fn bits(self) -> u64 {
        imp::bits(&self.0)
    }

    /// Whether any lane is in (cheaper than `bits() != 0`).
    #[inline(always)]
    pub fn any(self) -> bool {
        imp::any(&self.0)
    }
}

impl std::ops::BitOr for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn bitor(self, o: Lanes) -> Lanes {
        Lanes(imp::or(&self.0, &o.0))
    }
}

impl std::ops::BitAnd for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn bitand(self, o: Lanes) -> Lanes {
        Lanes(imp::and(&self.0, &o.0))
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i, sub_i8_m128i,
    };

    pub type Block = [m128i; 4];

    #[inline(always)]
    pub fn prefetch(byte: &u8) {
        safe_arch::prefetch_t0(byte)
    }
    pub type Lanes = [m128i; 4];

    #[inline(always)]
    fn map(a: &[m128i; 4], f: impl Fn(m128i) -> m128i) -> [m128i; 4] {
        [f(a[0]), f(a[1]), f(a[2]), f(a[3])]
    }

    #[inline(always)]
    fn zip(a: &[m128i; 4], b: &[m128i; 4], f: impl Fn(m128i, m128i) -> m128i) -> [m128i; 4] {
        [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])]
    }

    #[inline(always)]
    pub fn load(bytes: &[u8; 64]) -> Block {
        let mut out = [m128i::default(); 4];
        for (o, c) in out.iter_mut().zip(bytes.as_chunks::<16>().0) {
            *o = load_unaligned_m128i(c);
        }
        out
    }

    #[inline(always)]
    pub fn in_range(b: &Block, lo: u8, hi: u8) -> Lanes {
        if lo > hi {
            return [m128i::default(); 4];
        }
        // Unsigned `b - lo <= hi - lo`: SSE2 has no unsigned byte compare, but min has.
        let (lo, width) = (set_splat_i8_m128i(lo as i8), set_splat_i8_m128i((hi - lo) as i8));
        map(b, |v| {
            let d = sub_i8_m128i(v, lo);
            cmp_eq_mask_i8_m128i(min_u8_m128i(d, width), d)
        })
    }

    #[inline(always)]
    pub fn eq(b: &Block, x: u8) -> Lanes {
        let x = set_splat_i8_m128i(x as i8);
        map(b, |v| cmp_eq_mask_i8_m128i(v, x))
    }

    #[inline(always)]
    pub fn signed_lt(b: &Block, x: i8) -> Lanes {
        let x = set_splat_i8_m128i(x);
        map(b, |v| cmp_lt_mask_i8_m128i(v, x))
    }

    #[inline(always)]
    pub fn or_each(b: &Block, bits: u8) -> Block {
        let bits = set_splat_i8_m128i(bits as i8);
        map(b, |v| bitor_m128i(v, bits))
    }

    #[inline(always)]
    pub fn or(a: &Lanes, b: &Lanes) -> Lanes {
        zip(a, b, bitor_m128i)
    }

    #[inline(always)]
    pub fn and(a: &Lanes, b: &Lanes) -> Lanes {
        zip(a, b, bitand_m128i)
    }

    #[inline(always)]
    pub fn any(l: &Lanes) -> bool {
        move_mask_i8_m128i(bitor_m128i(bitor_m128i(l[0], l[1]), bitor_m128i(l[2], l[3]))) != 0
    }

    #[inline(always)]
    pub fn bits(l: &Lanes) -> u64 {
        l.iter().enumerate().fold(0, |m, (k, &v)| m | (u64::from(move_mask_i8_m128i(v) as u16) << (16 * k)))
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod imp {
    pub type Block = [u8; 64];

    #[inline(always)]
    pub fn prefetch(_byte: &u8) {}
    /// 0 or 1 per lane.
    pub type Lanes = [u8; 64];

    #[inline(always)]
    fn map(b: &[u8; 64], f: impl Fn(u8) -> u8) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (o, &x) in out.iter_mut().zip(b) {
            *o = f(x);
        }
        out
    }

    #[inline(always)]
    pub fn load(bytes: &[u8; 64]) -> Block {
        *bytes
    }

    #[inline(always)]
    pub fn in_range(b: &Block, lo: u8, hi: u8) -> Lanes {
        map(b, |x| u8::from(lo <= x && x <= hi))
    }

    #[inline(always)]
    pub fn eq(b: &Block, v: u8) -> Lanes {
        map(b, |x| u8::from(x == v))
    }

    #[inline(always)]
    pub fn signed_lt(b: &Block, x: i8) -> Lanes {
        map(b, |v| u8::from((v as i8) < x))
    }

    #[inline(always)]
    pub fn or_each(b: &Block, bits: u8) -> Block {
        map(b, |x| x | bits)
    }

    #[inline(always)]
    pub fn or(a: &Lanes, b: &Lanes) -> Lanes {
        let mut out = *a;
        for (o, &x) in out.iter_mut().zip(b) {
            *o |= x;
        }
        out
    }

    #[inline(always)]
    pub fn and(a: &Lanes, b: &Lanes) -> Lanes {
        let mut out = *a;
        for (o, &x) in out.iter_mut().zip(b) {
            *o &= x;
        }
        out
    }

    #[inline(always)]
    pub fn any(l: &Lanes) -> bool {
        l.iter().fold(0, |a, &b| a | b) != 0
    }

    /// Each 8-byte word holds 0 or 1 per byte (byte j at bit 8j); three shift-ors gather byte
    /// j's bit into bit j of the low byte.
    #[inline(always)]
    pub fn bits(l: &Lanes) -> u64 {
        l.chunks_exact(8).enumerate().fold(0, |m, (k, w)| {
            let w = w.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b));
            let x = w | (w >> 7);
            let x = x | (x >> 14);
            let x = x | (x >> 28);
            m | ((x & 0xff) << (8 * k))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(block: &[u8; 64], f: impl Fn(u8) -> bool) -> u64 {
        block.iter().enumerate().fold(0, |m, (i, &b)| m | (u64::from(f(b)) << i))
    }

    #[test]
    fn masks_match_naive_for_every_byte_value_at_every_position() {
        for pos in 0..64 {
            for v in 0..=255u8 {
                let mut block = [b'.'; 64];
                block[pos] = v;
                block[(pos + 17) % 64] = v.wrapping_add(1);
                let b = Block64::load(&block);
                for (lo, hi) in [(b'0', b'9'), (0, 255), (0, 0), (255, 255), (b'A', b'u'), (200, 20), (0x80, 0xff)] {
                    assert_eq!(b.in_range(lo, hi).bits(), naive(&block, |x| lo <= x && x <= hi), "{lo}..={hi}, {v} at {pos}");
                }
                assert_eq!(b.eq(v).bits(), naive(&block, |x| x == v));
                for x in [1i8, 0x2b, 0x7f, 0, -128, -1] {
                    assert_eq!(b.signed_lt(x).bits(), naive(&block, |y| (y as i8) < x), "signed_lt {x}, {v} at {pos}");
                }
                let letters = b.or_each(0x20).in_range(b'a', b'z');
                assert_eq!(letters.bits(), naive(&block, |x| x.is_ascii_alphabetic()));
                assert!(b.eq(v).any());
                assert_eq!(b.in_range(b'0', b'9').any(), block.iter().any(u8::is_ascii_digit));
                let either = b.in_range(b'0', b'9') | b.eq(b'.');
                assert_eq!(either.bits(), naive(&block, |x| x.is_ascii_digit() || x == b'.'));
                let both = b.in_range(b'0', b'9') & b.in_range(b'5', 255);
                assert_eq!(both.bits(), naive(&block, |x| (b'5'..=b'9').contains(&x)));
            }
        }
    }
}
