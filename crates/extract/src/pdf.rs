//! PDF text via `pdf-extract` (on `lopdf`).
//!
//! PDF needs random access (xref table at the end), so the file is buffered under `max_buffer`.
//! Two guards go around the library, which decompresses streams into memory without limits and
//! panics on some malformed input:
//! 1. a pre-pass inflates every Flate stream into a counting sink, charging the output to the
//!    decoded-bytes budget, so a PDF carrying a deflate bomb is stopped before lopdf sees it;
//! 2. parsing and text extraction run under `catch_unwind`, a panic becoming "unscannable".
//!
//! Encrypted PDFs are unscannable (policy decides), even when the user password is empty.

use std::panic::{AssertUnwindSafe, catch_unwind};

use flate2::{Decompress, FlushDecompress, Status};

use crate::engine::{Ctx, Halt, Node, Res};
use crate::text::TextOut;

pub(crate) struct PdfNode {
    depth: u32,
    buf: Vec<u8>,
}

impl PdfNode {
    pub fn new(depth: u32) -> PdfNode {
        PdfNode { depth, buf: Vec::new() }
    }
}

impl Node for PdfNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        cx.reserve_buffer(data.len(), "PDF")?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        let buf = std::mem::take(&mut self.buf);
        let r = process(cx, &buf, self.depth);
        cx.release_buffer(buf.len());
        r
    }
}

/// Inflate every `stream ... endstream` that is zlib data, charging its size to the budget.
fn prepass(cx: &mut Ctx, pdf: &[u8]) -> Res {
    let mut out = vec![0u8; 64 * 1024];
    let finder = memchr::memmem::Finder::new(b"stream");
    let end_finder = memchr::memmem::Finder::new(b"endstream");
    let mut pos = 0;
    while let Some(i) = finder.find(&pdf[pos..]) {
        let at = pos + i;
        pos = at + 6;
        if at >= 3 && &pdf[at - 3..at] == b"end" {
            continue;
        }
        let start = match &pdf[pos..] {
            [b'\r', b'\n', ..] => pos + 2,
            [b'\n', ..] | [b'\r', ..] => pos + 1,
            _ => continue,
        };
        let end = end_finder.find(&pdf[start..]).map_or(pdf.len(), |e| start + e);
        let data = &pdf[start..end];
        pos = end;
        if data.len() < 2 || data[0] & 0x0f != 8 {
            continue;
        }
        let mut d = Decompress::new(true);
        let mut input = data;
        loop {
            let (i0, o0) = (d.total_in(), d.total_out());
            let st = d.decompress(input, &mut out, FlushDecompress::None);
            let used = (d.total_in() - i0) as usize;
            let produced = (d.total_out() - o0) as usize;
            input = &input[used..];
            if produced > 0 {
                cx.charge_decoded(produced)?;
            }
            match st {
                Ok(Status::StreamEnd) | Err(_) => break,
                Ok(_) if used == 0 && produced == 0 => break,
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

fn process(cx: &mut Ctx, pdf: &[u8], depth: u32) -> Res {
    prepass(cx, pdf)?;
    let loaded = catch_unwind(AssertUnwindSafe(|| pdf_extract::Document::load_mem(pdf)));
    let doc = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => {
            cx.soft_unscannable(format!("PDF cannot be parsed: {e}"));
            return Ok(());
        }
        Err(_) => {
            cx.soft_unscannable("PDF cannot be parsed (parser panicked)".into());
            return Ok(());
        }
    };
    if doc.is_encrypted() {
        cx.soft_unscannable("encrypted PDF".into());
        return Ok(());
    }
    cx.check_time()?;
    let mut text = String::new();
    let extracted = catch_unwind(AssertUnwindSafe(|| {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc(&doc, &mut output)
    }));
    match extracted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => cx.soft_unscannable(format!("PDF text extraction failed: {e}")),
        Err(_) => cx.soft_unscannable("PDF text extraction failed (extractor panicked)".into()),
    }
    if text.len() > usize::try_from(cx.decoded_headroom()).unwrap_or(usize::MAX) {
        return Err(Halt::Unscannable("PDF text exceeds the decoded-bytes budget".into()));
    }
    cx.charge_decoded(text.len())?;
    let mut out = TextOut::new(cx, depth, true);
    for piece in text.as_bytes().chunks(64 * 1024) {
        out.write(cx, piece)?;
    }
    out.finish(cx)
}
