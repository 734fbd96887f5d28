//! Text outputs: the scanner-facing end of every decoder, plus the base64 tap and charset
//! transcoding.
//!
//! Base64 blobs hide data inside text, JSON and form fields. Rather than guessing which field holds
//! one, [`TextOut`] watches every text stream for runs of base64 alphabet (standard or URL-safe)
//! and streams each long enough run through a decoder into a nested [`FileNode`], so a base64 docx
//! is extracted like any other docx. The original text is scanned as well. Runs shorter than
//! [`MIN_RUN`] are ignored unless `=`-padded (a padded 8+ char run is deliberate base64). Because
//! every long token looks like base64, decoding beyond `max_depth` is skipped rather than
//! reported unscannable: the text itself was still scanned.

use portcullis_scan::blockmask::Block64;

use crate::engine::{Ctx, Node, Res, SinkId};
use crate::sniff::{FileNode, Origin};

/// Unpadded base64 runs shorter than this are not decoded.
pub(crate) const MIN_RUN: usize = 16;
/// A line break continues a base64 run (MIME-style wrapped blobs) once the run is this long.
const WRAP_MIN: usize = 40;
const OUT_FLUSH: usize = 16 * 1024;

/// Base64 alphabet (standard and URL-safe) → 6-bit value; 0xFF for other bytes.
static B64: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => 0xFF,
        };
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn b64_value(c: u8) -> Option<u8> {
    let v = B64[usize::from(c)];
    (v != 0xFF).then_some(v)
}

/// Incremental base64 quad decoder (alphabet values in, bytes out).
#[derive(Default)]
pub(crate) struct Quad {
    acc: u32,
    n: u8,
}

impl Quad {
    #[inline]
    pub fn push(&mut self, v: u8, out: &mut Vec<u8>) {
        self.acc = (self.acc << 6) | u32::from(v);
        self.n += 1;
        if self.n == 4 {
            let a = self.acc;
            out.extend_from_slice(&[(a >> 16) as u8, (a >> 8) as u8, a as u8]);
            self.acc = 0;
            self.n = 0;
        }
    }

    /// Emit the bytes of a trailing partial quad (2 chars → 1 byte, 3 chars → 2 bytes).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        match self.n {
            2 => out.push((self.acc >> 4) as u8),
            3 => out.extend_from_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            _ => {}
        }
        self.acc = 0;
        self.n = 0;
    }
}

/// Watches a text stream for base64 runs and decodes them into nested files.
struct B64Tap {
    child_depth: u32,
    pending: Vec<u8>,
    child: Option<Box<dyn Node>>,
    quad: Quad,
    run_len: usize,
    wrapped: bool,
    out: Vec<u8>,
}

impl B64Tap {
    fn new(child_depth: u32) -> B64Tap {
        B64Tap {
            child_depth,
            pending: Vec::with_capacity(MIN_RUN),
            child: None,
            quad: Quad::default(),
            run_len: 0,
            wrapped: false,
            out: Vec::new(),
        }
    }

    fn commit(&mut self) {
        let mut child = FileNode::new(None, None, self.child_depth, Origin::Base64);
        child.set_no_encoding();
        self.child = Some(Box::new(child));
        let pending = std::mem::take(&mut self.pending);
        for &c in &pending {
            if let Some(v) = b64_value(c) {
                self.quad.push(v, &mut self.out);
            }
        }
        self.pending = pending;
        self.pending.clear();
    }

    fn flush_out(&mut self, cx: &mut Ctx) -> Res {
        if self.out.is_empty() {
            return Ok(());
        }
        cx.charge_decoded(self.out.len())?;
        if let Some(child) = self.child.as_mut() {
            child.write(cx, &self.out)?;
        }
        self.out.clear();
        Ok(())
    }

    fn end_run(&mut self, cx: &mut Ctx) -> Res {
        if self.child.is_some() {
            self.quad.flush(&mut self.out);
            self.flush_out(cx)?;
            if let Some(child) = self.child.take() {
                child.finish(cx)?;
            }
        }
        self.pending.clear();
        self.quad = Quad::default();
        self.run_len = 0;
        self.wrapped = false;
        Ok(())
    }

    /// `ends`: sorted positions of `\n` bytes in `data` that are field boundaries (they end
    /// a run even where a line break would continue a wrapped one).
    fn write(&mut self, cx: &mut Ctx, data: &[u8], ends: &[usize]) -> Res {
        let mut i = 0;
        while i < data.len() {
            // No run in progress: skip text that holds no run that could commit.
            if self.child.is_none() && self.pending.is_empty() {
                i = next_candidate(data, i);
                if i == data.len() {
                    break;
                }
            }
            // Fast path outside a committed run: take a whole alphabet run as a slice; most
            // runs are words shorter than MIN_RUN and are dropped at the next separator.
            if self.child.is_none() {
                let start = i;
                while i < data.len() && B64[usize::from(data[i])] != 0xFF {
                    i += 1;
                }
                if i > start {
                    self.wrapped = false;
                    self.run_len += i - start;
                    let room = MIN_RUN.saturating_sub(self.pending.len());
                    if i - start < room {
                        self.pending.extend_from_slice(&data[start..i]);
                    } else {
                        self.pending.extend_from_slice(&data[start..start + room]);
                        self.commit();
                        for &c in &data[start + room..i] {
                            self.quad.push(B64[usize::from(c)], &mut self.out);
                        }
                        if self.out.len() >= OUT_FLUSH {
                            self.flush_out(cx)?;
                        }
                    }
                    continue;
                }
            }
            let c = data[i];
            i += 1;
            if let Some(v) = b64_value(c) {
                self.wrapped = false;
                self.run_len += 1;
                if self.child.is_some() {
                    self.quad.push(v, &mut self.out);
                    if self.out.len() >= OUT_FLUSH {
                        self.flush_out(cx)?;
                    }
                } else {
                    self.pending.push(c);
                    if self.pending.len() >= MIN_RUN {
                        self.commit();
                    }
                }
            } else if c == b'=' {
                if self.child.is_none() && self.pending.len() >= 8 && self.pending.len() % 4 >= 2 {
                    self.commit();
                }
                self.end_run(cx)?;
            } else if c == b'\n' && self.run_len > 0 && ends.binary_search(&(i - 1)).is_ok() {
                self.end_run(cx)?;
            } else if (c == b'\n' || c == b'\r') && self.run_len >= WRAP_MIN {
                self.wrapped = true;
            } else if self.run_len > 0 {
                self.end_run(cx)?;
            }
        }
        self.flush_out(cx)
    }
}

/// Shortest run that can commit: a `=`-padded run of at least this length.
const PAD_MIN: usize = 8;

#[inline]
fn is_b64(c: u8) -> bool {
    let l = c | 0x20;
    l.wrapping_sub(b'a') < 26 || c.wrapping_sub(b'0') < 10 || c == b'+' || c == b'-' || c == b'/' || c == b'_'
}

/// Bit k of the first mask set iff `block[k]` is base64 alphabet; of the second, iff it is `=`.
#[inline(always)]
fn block_masks(block: &[u8; 64]) -> (u64, u64) {
    let b = Block64::load(block);
    let alphabet = b.or_each(0x20).in_range(b'a', b'z') | b.in_range(b'0', b'9') | b.eq(b'+') | b.eq(b'-') | b.eq(b'/') | b.eq(b'_');
    (alphabet.bits(), b.eq(b'=').bits())
}

/// With no run pending at `i` (`data[i - 1]`, if any, is not base64 alphabet): the start of the
/// first alphabet run at or after `i` that [`B64Tap`] must see — one of at least [`MIN_RUN`]
/// chars, one of at least [`PAD_MIN`] chars ended by a `=` that commits it, or one touching the
/// end of `data` (it may continue in the next chunk) — or `data.len()`. Every run skipped would
/// have been collected and dropped without effect.
///
/// Prose goes by in whole 64-byte blocks, one separator mask and one `=` test each (three
/// compares per 16 bytes; the exact alphabet mask takes seven), the length of the run that
/// crosses into the next block carried over. The first block where something could commit (or
/// the last, short one) is handed to [`next_candidate_windowed`], starting at the run that
/// reaches into it.
fn next_candidate(data: &[u8], i: usize) -> usize {
    const W: usize = 64;
    let mut b = i;
    // Alphabet bytes right before `b`: the run that reaches into block `b` (shorter than W).
    let mut carry = 0usize;
    while b + W < data.len() {
        let Some(block) = data.get(b..).and_then(<[u8]>::first_chunk::<W>) else { break };
        // First a cheaper test with a coarser class: every byte that is not a separator (below
        // `+` or non-ASCII, or a comma) might be alphabet. Prose and JSON have a separator at
        // least every 16 bytes and no `=`; such a block holds nothing that could commit, and
        // its trailing non-separators bound the alphabet run carried into the next block.
        let loaded = Block64::load(block);
        if !loaded.eq(b'=').any() {
            let n = !(loaded.signed_lt(b'+' as i8) | loaded.eq(b',')).bits();
            let mut r = n & (n >> 1);
            r &= r >> 2;
            r &= r >> 4;
            r &= r >> 8;
            if r == 0 && carry + (n.trailing_ones() as usize) < MIN_RUN && n != !0 {
                carry = n.leading_ones() as usize;
                b += W;
                continue;
            }
        }
        let (m, eq) = block_masks(block);
        let mut r = m & (m >> 1);
        r &= r >> 2;
        r &= r >> 4;
        // Inside the block: a run of MIN_RUN, or of PAD_MIN followed by `=`.
        let long = r & (r >> (MIN_RUN - PAD_MIN));
        let padded = (r << (PAD_MIN - 1)) & (eq >> 1) != 0;
        // The run through the block's start, carried over from the block before.
        let t = m.trailing_ones() as usize;
        let first = carry + t;
        let first_commits = carry > 0 && (first >= MIN_RUN || (first >= PAD_MIN && t < W && block[t] == b'='));
        if long != 0 || padded || first_commits || m == !0 {
            return next_candidate_windowed(data, b - carry);
        }
        carry = m.leading_ones() as usize;
        b += W;
    }
    next_candidate_windowed(data, b - carry)
}

/// [`next_candidate`], by windows that overlap by PAD_MIN - 1 bytes (same contract).
fn next_candidate_windowed(data: &[u8], mut i: usize) -> usize {
    const W: usize = 64;
    let len = data.len();
    // Runs that can matter are at least PAD_MIN long. Windows of W bytes overlapping by
    // PAD_MIN - 1 contain every such run's first PAD_MIN bytes, so a window without PAD_MIN
    // alphabet bytes in a row is skipped whole. The last window is padded with non-alphabet.
    while i < len {
        let mut block = [0u8; W];
        let last = i + W >= len;
        if last {
            block[..len - i].copy_from_slice(&data[i..]);
        } else {
            block.copy_from_slice(&data[i..i + W]);
        }
        let (m, eq) = block_masks(&block);
        // Bit p: window bytes p..p + PAD_MIN are all alphabet.
        let mut r = m & (m >> 1);
        r &= r >> 2;
        r &= r >> 4;
        // Most windows of prose hold nothing that could commit: no run of MIN_RUN, no run of
        // PAD_MIN followed by `=`, no run of PAD_MIN reaching the window's end (it may go on).
        // Runs starting in the last PAD_MIN - 1 bytes are whole in the next window. Skip those
        // windows without looking at their runs one by one.
        if !last {
            let long = r & (r >> (MIN_RUN - PAD_MIN));
            let padded = (r << (PAD_MIN - 1)) & (eq >> 1);
            let at_end = r >> (W - PAD_MIN);
            if long | padded | at_end == 0 {
                i += W - (PAD_MIN - 1);
                continue;
            }
        }
        let mut seen = i;
        while r != 0 {
            let p = i + r.trailing_zeros() as usize;
            let mut s = p;
            while s > seen && is_b64(data[s - 1]) {
                s -= 1;
            }
            let mut e = p + PAD_MIN;
            while e < len && is_b64(data[e]) {
                e += 1;
            }
            if e == len || e - s >= MIN_RUN || (data[e] == b'=' && (e - s) % 4 >= 2) {
                return s;
            }
            // This run is dropped; look for the next one in the same window.
            seen = e + 1;
            let off = seen - i;
            r = if off < W { r & (!0u64 << off) } else { 0 };
        }
        if i + W >= len {
            break;
        }
        i = seen.max(i + W - (PAD_MIN - 1));
    }
    // A run shorter than PAD_MIN may still reach the end of the data (and continue in the next
    // chunk): it starts where the last non-alphabet byte is. Callers start after a non-alphabet
    // byte (or at 0), so this never goes back past their start.
    let mut s = len;
    while s > 0 && is_b64(data[s - 1]) {
        s -= 1;
    }
    s
}

/// Text is handed to the scanner in pieces of at least this size (decoders emit many tiny
/// pieces — a JSON token, a line break — and each scanner call has a fixed cost).
const SCAN_BATCH: usize = 32 * 1024;

/// Where decoded text goes: one scanner stream, plus the base64 tap when enabled.
///
/// Decoders emit many tiny pieces (a JSON token, a form field); they are collected in `pending`
/// with each boundary written as a `\n` and its position kept in `ends`, and the scanner and the
/// tap then each take the batch in one call. The tap ends a run at every position in `ends`,
/// exactly as if [`TextOut::boundary`] had been called there.
pub(crate) struct TextOut {
    sink: SinkId,
    pending: Vec<u8>,
    ends: Vec<usize>,
    tap: Option<B64Tap>,
}

impl TextOut {
    /// `tap`: look for base64 runs (for text; not for raw binary).
    pub fn new(cx: &mut Ctx, depth: u32, tap: bool) -> TextOut {
        let sink = cx.open_sink();
        let tap = if tap { cx.child_depth(depth).map(B64Tap::new) } else { None };
        TextOut { sink, pending: Vec::new(), ends: Vec::new(), tap }
    }

    /// Hand the batch to the tap, then the scanner.
    fn flush(&mut self, cx: &mut Ctx) -> Res {
        if self.pending.is_empty() {
            return Ok(());
        }
        let tapped = match self.tap.as_mut() {
            Some(tap) => tap.write(cx, &self.pending, &self.ends),
            None => Ok(()),
        };
        self.ends.clear();
        let fed = cx.feed(self.sink, &self.pending);
        self.pending.clear();
        tapped.and(fed)
    }

    pub fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        if self.pending.is_empty() && data.len() >= SCAN_BATCH {
            let tapped = match self.tap.as_mut() {
                Some(tap) => tap.write(cx, data, &[]),
                None => Ok(()),
            };
            return tapped.and(cx.feed(self.sink, data));
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= SCAN_BATCH {
            self.flush(cx)?;
        }
        Ok(())
    }

    /// End of a field/value/paragraph: a line break for the scanner, end of any base64 run.
    pub fn boundary(&mut self, cx: &mut Ctx) -> Res {
        if self.tap.is_some() {
            self.ends.push(self.pending.len());
        }
        self.pending.push(b'\n');
        if self.pending.len() >= SCAN_BATCH {
            self.flush(cx)?;
        }
        Ok(())
    }

    pub fn finish(mut self, cx: &mut Ctx) -> Res {
        let fed = self.flush(cx);
        let r = match self.tap.as_mut() {
            Some(tap) => tap.end_run(cx),
            None => Ok(()),
        };
        let closed = cx.close_sink(self.sink);
        fed.and(r).and(closed)
    }
}

/// Plain text (with base64 tap) or raw binary (without): scanned as is.
pub(crate) struct TextNode {
    out: TextOut,
}

impl TextNode {
    pub fn new(cx: &mut Ctx, depth: u32, tap: bool) -> TextNode {
        TextNode { out: TextOut::new(cx, depth, tap) }
    }
}

impl Node for TextNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        self.out.write(cx, data)
    }
    fn finish(self: Box<Self>, cx: &mut Ctx) -> Res {
        self.out.finish(cx)
    }
}

/// Converts a declared or BOM-detected charset to UTF-8 (encoding_rs, streaming) and passes the
/// result to a child that sniffs the text type (JSON, HTML, ...).
pub(crate) struct Transcode {
    decoder: encoding_rs::Decoder,
    child: Box<dyn Node>,
    buf: Vec<u8>,
}

impl Transcode {
    pub fn new(encoding: &'static encoding_rs::Encoding, child: Box<dyn Node>) -> Transcode {
        Transcode { decoder: encoding.new_decoder_with_bom_removal(), child, buf: vec![0; 16 * 1024] }
    }

    fn run(&mut self, cx: &mut Ctx, mut data: &[u8], last: bool) -> Res {
        loop {
            let (result, read, written, _) = self.decoder.decode_to_utf8(data, &mut self.buf, last);
            if written > 0 {
                self.child.write(cx, &self.buf[..written])?;
            }
            data = &data[read..];
            if matches!(result, encoding_rs::CoderResult::InputEmpty) {
                return Ok(());
            }
        }
    }
}

impl Node for Transcode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        self.run(cx, data, false)
    }
    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        self.run(cx, &[], true)?;
        self.child.finish(cx)
    }
}

/// Strict streaming base64 body decoder (multipart `Content-Transfer-Encoding: base64`):
/// whitespace is skipped, `=` ends the data.
pub(crate) struct Base64Body {
    quad: Quad,
    out: Vec<u8>,
    ended: bool,
    child: Box<dyn Node>,
}

impl Base64Body {
    pub fn new(child: Box<dyn Node>) -> Base64Body {
        Base64Body { quad: Quad::default(), out: Vec::new(), ended: false, child }
    }
}

impl Node for Base64Body {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        for &c in data {
            if self.ended {
                break;
            }
            if let Some(v) = b64_value(c) {
                self.quad.push(v, &mut self.out);
            } else if c == b'=' {
                self.ended = true;
            }
        }
        if !self.out.is_empty() {
            cx.charge_decoded(self.out.len())?;
            self.child.write(cx, &self.out)?;
            self.out.clear();
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        self.quad.flush(&mut self.out);
        if !self.out.is_empty() {
            cx.charge_decoded(self.out.len())?;
            self.child.write(cx, &self.out)?;
        }
        self.child.finish(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run by run, no windows: what `next_candidate` must return.
    fn reference(data: &[u8], i: usize) -> usize {
        let mut s = i;
        for (k, &c) in data.iter().enumerate().skip(i) {
            if B64[usize::from(c)] != 0xFF {
                continue;
            }
            let n = k - s;
            if n >= MIN_RUN || (c == b'=' && n >= PAD_MIN && n % 4 >= 2) {
                return s;
            }
            s = k + 1;
        }
        s.min(data.len())
    }

    #[test]
    fn block_masks_classify_every_byte() {
        for c in 0..=255u8 {
            for pos in [0usize, 7, 15, 16, 31, 40, 63] {
                let mut block = [b' '; 64];
                block[pos] = c;
                let (m, eq) = block_masks(&block);
                assert_eq!(m, u64::from(is_b64(c)) << pos, "{c} at {pos}");
                assert_eq!(eq, u64::from(c == b'=') << pos, "{c} at {pos}");
            }
        }
        let block: [u8; 64] = std::array::from_fn(|k| if k % 3 == 0 { b'=' } else { b'Q' });
        let (m, eq) = block_masks(&block);
        assert_eq!(eq, (0..64).filter(|k| k % 3 == 0).fold(0u64, |a, k| a | 1 << k));
        assert_eq!(m, !eq);
    }

    #[test]
    fn candidate_skip_matches_run_by_run() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for c in 0..=255u8 {
            assert_eq!(is_b64(c), B64[usize::from(c)] != 0xFF, "{c}");
        }
        let alpha = b"AbZz09+/-_";
        let other = b" \n=.,\"\r\x00\xff";
        for _ in 0..20_000 {
            let len = (rnd() % 400) as usize;
            // Probability of an alphabet byte varies per input: sparse to dense runs.
            let dense = rnd() % 100;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rnd();
                    if r % 100 < dense { alpha[(r >> 8) as usize % alpha.len()] } else { other[(r >> 8) as usize % other.len()] }
                })
                .collect();
            let starts = std::iter::once(0).chain((1..=len).filter(|&k| B64[usize::from(data[k - 1])] == 0xFF));
            for i in starts {
                let want = reference(&data, i);
                assert_eq!(next_candidate(&data, i), want, "{:?} from {i}", String::from_utf8_lossy(&data));
                assert_eq!(next_candidate_windowed(&data, i), want, "windowed: {:?} from {i}", String::from_utf8_lossy(&data));
            }
        }
        // Prose: words of 1..=20 alphabet chars, so most windows are skipped whole and the rare
        // long or `=`-ended word lands anywhere relative to the windows.
        for _ in 0..1_000 {
            let len = (rnd() % 1000) as usize;
            let mut data = Vec::with_capacity(len + 24);
            while data.len() < len {
                let r = rnd();
                let word = if r % 40 == 0 { 1 + (r >> 8) as usize % 20 } else { 1 + (r >> 8) as usize % 12 };
                data.extend((0..word).map(|k| alpha[(r >> (16 + k % 40)) as usize % alpha.len()]));
                data.push(if (r >> 60) == 0 { b'=' } else { b' ' });
            }
            data.truncate(len);
            let starts = std::iter::once(0).chain((1..=len).filter(|&k| B64[usize::from(data[k - 1])] == 0xFF));
            for i in starts {
                let want = reference(&data, i);
                assert_eq!(next_candidate(&data, i), want, "{:?} from {i}", String::from_utf8_lossy(&data));
                assert_eq!(next_candidate_windowed(&data, i), want, "windowed: {:?} from {i}", String::from_utf8_lossy(&data));
            }
        }
    }
}
