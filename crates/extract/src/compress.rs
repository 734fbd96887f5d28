//! Streaming decompression: gzip (multi-member), zlib, raw deflate, brotli, zstd.
//!
//! Each decoder uses the library's low-level streaming API with a fixed 64 KiB output buffer, so
//! one input byte can never produce more than one buffer of output before the budget
//! ([`Ctx::charge_decoded`]) is consulted: a bomb is stopped within one buffer of the limit.
//! Decoder state is bounded by the format's window: 32 KiB for deflate, at most 16 MiB for brotli
//! (large-window brotli is refused), at most 8 MiB for zstd (`WindowLogMax(23)`, RFC 8878's
//! recommendation for HTTP).
//!
//! gzip's header and trailer are parsed here (a dozen lines) because flate2's streaming
//! `Decompress` only speaks zlib and raw deflate with the default pure-Rust backend, and its
//! `GzDecoder` is pull/`Write`-shaped with an unbounded intermediate output.

use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, HeapAlloc, HuffmanCode};
use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::engine::{Ctx, Node, Res};

const OUT_BUF: usize = 64 * 1024;
const MAX_GZIP_HEADER: usize = 64 * 1024;

/// Shared error path: a corrupt stream is noted and the rest of it ignored.
fn corrupt(cx: &mut Ctx, what: &str, detail: impl std::fmt::Display) {
    cx.soft_unscannable(format!("corrupt {what} stream: {detail}"));
}

/// Raw deflate / zlib inflater writing into a child node.
struct Inflater {
    d: Decompress,
    buf: Vec<u8>,
    crc: Crc,
}

enum InflateEnd {
    /// All input consumed, stream continues.
    NeedInput,
    /// The deflate stream ended after consuming this many bytes of the input.
    StreamEnd(usize),
}

impl Inflater {
    fn new(zlib: bool) -> Inflater {
        Inflater { d: Decompress::new(zlib), buf: vec![0; OUT_BUF], crc: Crc::new() }
    }

    fn run(
        &mut self,
        cx: &mut Ctx,
        child: &mut dyn Node,
        input: &[u8],
        last: bool,
    ) -> Result<Result<InflateEnd, String>, crate::engine::Halt> {
        let mut pos = 0;
        loop {
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let flush = if last { FlushDecompress::Finish } else { FlushDecompress::None };
            let status = match self.d.decompress(&input[pos..], &mut self.buf, flush) {
                Ok(s) => s,
                Err(e) => return Ok(Err(e.to_string())),
            };
            let used = (self.d.total_in() - in0) as usize;
            let produced = (self.d.total_out() - out0) as usize;
            pos += used;
            if produced > 0 {
                self.crc.update(&self.buf[..produced]);
                cx.charge_decoded(produced)?;
                child.write(cx, &self.buf[..produced])?;
            }
            match status {
                Status::StreamEnd => return Ok(Ok(InflateEnd::StreamEnd(pos))),
                Status::Ok | Status::BufError => {
                    if used == 0 && produced == 0 {
                        if last {
                            return Ok(Err("truncated".into()));
                        }
                        return Ok(Ok(InflateEnd::NeedInput));
                    }
                    if pos == input.len() && produced < self.buf.len() && !last {
                        return Ok(Ok(InflateEnd::NeedInput));
                    }
                }
            }
        }
    }
}

enum GzState {
    Header(Vec<u8>),
    Body,
    Trailer(Vec<u8>),
    /// Between members: a new member must start with the magic, anything else is ignored.
    Between,
    Failed,
}

/// gzip, possibly multi-member (`cat a.gz b.gz`), CRC-checked.
pub(crate) struct Gzip {
    state: GzState,
    inf: Inflater,
    child: Box<dyn Node>,
    size: u32,
}

impl Gzip {
    pub fn new(child: Box<dyn Node>) -> Gzip {
        Gzip { state: GzState::Header(Vec::new()), inf: Inflater::new(false), child, size: 0 }
    }
}

/// Whether `head`, the first bytes of a file whose magic says zlib (`zlib`) or gzip, also
/// decodes as the start of one. Two or three magic bytes are a weak signal: one random blob in
/// ~30,000 starts like zlib, and base64 runs in text decode to many random blobs (a form field of
/// base64 text is cut at every `+`). Taken for a compressed stream that then fails, such a blob
/// made the whole transfer unscannable; if its first bytes do not inflate it is not one, and it
/// is scanned as the binary it is. A real stream that breaks later is still reported corrupt.
pub(crate) fn inflates(head: &[u8], zlib: bool) -> bool {
    let body = if zlib {
        head
    } else {
        match gzip_header_len(head) {
            Ok(Some(n)) => &head[n..],
            Ok(None) => return true,
            Err(_) => return false,
        }
    };
    let mut d = Decompress::new(zlib);
    let mut out = vec![0u8; 16 * 1024];
    let mut input = body;
    // Bounded: a 1 KiB head of a bomb may expand to ~1 MiB; stop well before.
    while !input.is_empty() && d.total_out() < 256 * 1024 {
        let (in0, out0) = (d.total_in(), d.total_out());
        match d.decompress(input, &mut out, FlushDecompress::None) {
            Err(_) => return false,
            Ok(Status::StreamEnd) => return true,
            Ok(_) => {}
        }
        if d.total_in() == in0 && d.total_out() == out0 {
            break;
        }
        let used = usize::try_from(d.total_in() - in0).unwrap_or(input.len()).min(input.len());
        input = &input[used..];
    }
    true
}

/// Length of a complete gzip header at the start of `b`, `Ok(None)` if more bytes are needed.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, String> {
    if b.iter().zip([0x1f, 0x8b, 8]).any(|(&x, m)| x != m) {
        return Err("bad gzip magic or method".into());
    }
    if b.get(3).is_some_and(|f| f & 0xe0 != 0) {
        return Err("reserved gzip header flags set".into());
    }
    if b.len() < 10 {
        return Ok(None);
    }
    let flags = b[3];
    let mut p = 10;
    if flags & 0x04 != 0 {
        if b.len() < p + 2 {
            return Ok(None);
        }
        p += 2 + usize::from(u16::from_le_bytes([b[p], b[p + 1]]));
        if b.len() < p {
            return Ok(None);
        }
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            match memchr::memchr(0, &b[p.min(b.len())..]) {
                Some(i) => p += i + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        p += 2;
    }
    Ok((b.len() >= p).then_some(p))
}

impl Node for Gzip {
    fn write(&mut self, cx: &mut Ctx, mut data: &[u8]) -> Res {
        while !data.is_empty() {
            match &mut self.state {
                GzState::Failed => return Ok(()),
                GzState::Header(h) => {
                    let take = data.len().min(MAX_GZIP_HEADER + 1 - h.len().min(MAX_GZIP_HEADER));
                    let old = h.len();
                    h.extend_from_slice(&data[..take]);
                    match gzip_header_len(h) {
                        Ok(Some(n)) => {
                            let consumed = n - old;
                            data = &data[consumed..];
                            self.state = GzState::Body;
                            self.inf = Inflater::new(false);
                            self.size = 0;
                        }
                        Ok(None) if h.len() <= MAX_GZIP_HEADER => data = &data[take..],
                        Ok(None) => {
                            corrupt(cx, "gzip", "header too long");
                            self.state = GzState::Failed;
                        }
                        Err(e) => {
                            corrupt(cx, "gzip", e);
                            self.state = GzState::Failed;
                        }
                    }
                }
                GzState::Body => match self.inf.run(cx, self.child.as_mut(), data, false)? {
                    Ok(InflateEnd::NeedInput) => data = &[],
                    Ok(InflateEnd::StreamEnd(n)) => {
                        data = &data[n..];
                        self.state = GzState::Trailer(Vec::with_capacity(8));
                    }
                    Err(e) => {
                        corrupt(cx, "gzip", e);
                        self.state = GzState::Failed;
                    }
                },
                GzState::Trailer(t) => {
                    let take = (8 - t.len()).min(data.len());
                    t.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if t.len() == 8 {
                        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                        if crc != self.inf.crc.sum() {
                            corrupt(cx, "gzip", "CRC mismatch");
                        }
                        self.inf.crc = Crc::new();
                        self.state = GzState::Between;
                    }
                }
                GzState::Between => {
                    if data[0] == 0x1f {
                        self.state = GzState::Header(Vec::new());
                    } else {
                        // Trailing garbage/zero padding after the last member: gzip ignores it.
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, cx: &mut Ctx) -> Res {
        let _ = self.size;
        match &self.state {
            GzState::Header(h) if !h.is_empty() => corrupt(cx, "gzip", "truncated header"),
            GzState::Body | GzState::Trailer(_) => corrupt(cx, "gzip", "truncated"),
            _ => {}
        }
        self.child.finish(cx)
    }
}

/// zlib (`Content-Encoding: deflate` as the RFC means it) or raw deflate (what some servers send).
pub(crate) struct Deflate {
    inf: Inflater,
    child: Box<dyn Node>,
    ended: bool,
    failed: bool,
    what: &'static str,
}

impl Deflate {
    pub fn new(zlib: bool, child: Box<dyn Node>) -> Deflate {
        let what = if zlib { "zlib" } else { "deflate" };
        Deflate { inf: Inflater::new(zlib), child, ended: false, failed: false, what }
    }
}

impl Node for Deflate {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        if self.ended || self.failed {
            return Ok(());
        }
        match self.inf.run(cx, self.child.as_mut(), data, false)? {
            Ok(InflateEnd::NeedInput) => {}
            Ok(InflateEnd::StreamEnd(_)) => self.ended = true,
            Err(e) => {
                corrupt(cx, self.what, e);
                self.failed = true;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        if !self.ended && !self.failed {
            match self.inf.run(cx, self.child.as_mut(), &[], true)? {
                Ok(InflateEnd::StreamEnd(_)) => {}
                Ok(InflateEnd::NeedInput) | Err(_) => corrupt(cx, self.what, "truncated"),
            }
        }
        self.child.finish(cx)
    }
}

type BrState = BrotliState<HeapAlloc<u8>, HeapAlloc<u32>, HeapAlloc<HuffmanCode>>;

/// Brotli (`Content-Encoding: br`). Strict state: no large-window streams.
pub(crate) struct Brotli {
    state: Box<BrState>,
    buf: Vec<u8>,
    child: Box<dyn Node>,
    done: bool,
    failed: bool,
}

impl Brotli {
    pub fn new(child: Box<dyn Node>) -> Brotli {
        let state = BrotliState::new_strict(
            HeapAlloc::<u8>::new(0),
            HeapAlloc::<u32>::new(0),
            HeapAlloc::<HuffmanCode>::new(HuffmanCode::default()),
        );
        Brotli { state: Box::new(state), buf: vec![0; OUT_BUF], child, done: false, failed: false }
    }
}

impl Node for Brotli {
    fn write(&mut self, cx: &mut Ctx, mut data: &[u8]) -> Res {
        while !self.done && !self.failed {
            let mut avail_in = data.len();
            let mut in_off = 0;
            let mut avail_out = self.buf.len();
            let mut out_off = 0;
            let mut total = 0;
            let r = BrotliDecompressStream(
                &mut avail_in, &mut in_off, data, &mut avail_out, &mut out_off, &mut self.buf, &mut total, &mut self.state,
            );
            data = &data[in_off..];
            if out_off > 0 {
                cx.charge_decoded(out_off)?;
                self.child.write(cx, &self.buf[..out_off])?;
            }
            match r {
                BrotliResult::ResultSuccess => self.done = true,
                BrotliResult::NeedsMoreInput => return Ok(()),
                BrotliResult::NeedsMoreOutput => {}
                BrotliResult::ResultFailure => {
                    corrupt(cx, "brotli", "invalid data");
                    self.failed = true;
                }
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, cx: &mut Ctx) -> Res {
        if !self.done && !self.failed {
            corrupt(cx, "brotli", "truncated");
        }
        self.child.finish(cx)
    }
}

/// zstd, window limited to 8 MiB.
pub(crate) struct Zstd {
    dec: Option<zstd::stream::raw::Decoder<'static>>,
    buf: Vec<u8>,
    child: Box<dyn Node>,
    /// The decoder's hint: 0 when the last frame is complete.
    remaining: usize,
    failed: bool,
}

impl Zstd {
    pub fn new(child: Box<dyn Node>) -> Zstd {
        use zstd::stream::raw::DParameter;
        let dec = zstd::stream::raw::Decoder::new().and_then(|mut d| d.set_parameter(DParameter::WindowLogMax(23)).map(|()| d)).ok();
        Zstd { failed: dec.is_none(), dec, buf: vec![0; OUT_BUF], child, remaining: 0 }
    }

    fn run(&mut self, cx: &mut Ctx, mut data: &[u8]) -> Res {
        use zstd::stream::raw::Operation;
        let Some(dec) = self.dec.as_mut() else { return Ok(()) };
        loop {
            if self.failed {
                return Ok(());
            }
            let st = match dec.run_on_buffers(data, &mut self.buf) {
                Ok(st) => st,
                Err(e) => {
                    corrupt(cx, "zstd", e);
                    self.failed = true;
                    return Ok(());
                }
            };
            data = &data[st.bytes_read..];
            if st.bytes_read > 0 || st.bytes_written > 0 {
                // A call without progress after a frame ends reports the next frame's header
                // size; only calls that did something tell whether a frame is open.
                self.remaining = st.remaining;
            }
            if st.bytes_written > 0 {
                cx.charge_decoded(st.bytes_written)?;
                self.child.write(cx, &self.buf[..st.bytes_written])?;
            }
            let out_full = st.bytes_written == self.buf.len();
            if data.is_empty() && !out_full {
                return Ok(());
            }
            if st.bytes_read == 0 && st.bytes_written == 0 {
                return Ok(());
            }
        }
    }
}

impl Node for Zstd {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        self.run(cx, data)
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        self.run(cx, &[])?;
        if !self.failed && self.remaining != 0 {
            corrupt(cx, "zstd", "truncated");
        }
        self.child.finish(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::gzip_header_len;

    #[test]
    fn gzip_header_with_name_needs_all_bytes() {
        let mut h = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
        assert_eq!(gzip_header_len(&h), Ok(None));
        h.extend_from_slice(b"a.txt\0");
        assert_eq!(gzip_header_len(&h), Ok(Some(16)));
        assert!(gzip_header_len(b"not gzip at all").is_err());
    }
}
