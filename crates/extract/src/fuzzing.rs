//! Entry points for the fuzz targets under `fuzz/fuzz_targets/extract_*.rs` (one per decoder).
//! Not a public API.
//!
//! Each run uses small limits (1 MiB decoded/buffered, 64 entries) so that any allocation the
//! fuzzer sees beyond a few MiB is a bug, and splits the input into chunks whose size comes
//! from the first byte, so chunk boundaries are fuzzed too.

use std::sync::Once;
use std::time::Duration;

use crate::engine::{Ctx, Node, SinkFactory, TextSink};
use crate::sniff::{FileNode, Origin};
use crate::{BodyHints, Inspection, Limits};

/// The decoders a fuzz target can drive directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Json,
    Form,
    Multipart,
    Gzip,
    Zlib,
    RawDeflate,
    Brotli,
    Zstd,
    Tar,
    Zip,
    Pdf,
    Rtf,
    Html,
    /// Plain text with the base64 tap.
    Text,
    /// UTF-16LE transcoding into a sniffing child.
    Utf16,
    /// Type detection (FileNode) on raw bytes.
    Sniff,
}

pub fn limits() -> Limits {
    Limits {
        max_decoded_bytes: 1 << 20,
        max_ratio: 100,
        max_depth: 4,
        max_entries: 64,
        max_buffer: 1 << 20,
        max_time: Duration::from_secs(2),
    }
}

/// pdf-extract and lopdf panic on some malformed PDFs; the PDF node catches that with
/// `catch_unwind`. libFuzzer's hook would abort first, so let panics from those two crates
/// unwind and abort on every other panic (ours).
pub fn install_panic_filter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let third_party = info
                .location()
                .map(|l| l.file())
                .is_some_and(|f| f.contains("/pdf-extract-") || f.contains("/lopdf-") || f.contains("/euclid-"));
            if !third_party {
                prev(info);
                std::process::abort();
            }
        }));
    });
}

struct Null {
    n: u64,
}

impl TextSink for Null {
    fn feed(&mut self, chunk: &[u8]) {
        self.n += chunk.len() as u64;
    }
    fn has_findings(&self) -> bool {
        false
    }
    fn close(self: Box<Self>) -> bool {
        self.n == u64::MAX
    }
}

fn chunk_size(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (usize::from(b % 64) + 1, rest),
        None => (1, data),
    }
}

/// Drive one decoder over `data` (first byte: chunk size).
pub fn run(decoder: Decoder, data: &[u8]) {
    install_panic_filter();
    let factory: SinkFactory = Box::new(|| Box::new(Null { n: 0 }) as Box<dyn TextSink>);
    let mut cx = Ctx::new(limits(), factory);
    cx.exhaustive = true;
    let child = || -> Box<dyn Node> { Box::new(FileNode::new(None, None, 1, Origin::Normal)) };
    let mut node: Box<dyn Node> = match decoder {
        Decoder::Json => Box::new(crate::json::JsonNode::new(&mut cx, 0)),
        Decoder::Form => Box::new(crate::form::FormNode::new(&mut cx, 0)),
        Decoder::Multipart => Box::new(crate::multipart::Multipart::new(b"b".to_vec(), 0)),
        Decoder::Gzip => Box::new(crate::compress::Gzip::new(child())),
        Decoder::Zlib => Box::new(crate::compress::Deflate::new(true, child())),
        Decoder::RawDeflate => Box::new(crate::compress::Deflate::new(false, child())),
        Decoder::Brotli => Box::new(crate::compress::Brotli::new(child())),
        Decoder::Zstd => Box::new(crate::compress::Zstd::new(child())),
        Decoder::Tar => Box::new(crate::tar::TarNode::new(0)),
        Decoder::Zip => Box::new(crate::zipx::ZipNode::new(0, None, None)),
        Decoder::Pdf => Box::new(crate::pdf::PdfNode::new(0)),
        Decoder::Rtf => Box::new(crate::rtf::RtfNode::new(&mut cx, 0)),
        Decoder::Html => Box::new(crate::html::Markup::new(&mut cx, 0)),
        Decoder::Text => Box::new(crate::text::TextNode::new(&mut cx, 0, true)),
        Decoder::Utf16 => {
            Box::new(crate::text::Transcode::new(encoding_rs::UTF_16LE, Box::new(FileNode::new(None, None, 0, Origin::Transcoded))))
        }
        Decoder::Sniff => Box::new(FileNode::new(None, None, 0, Origin::Normal)),
    };
    let (size, rest) = chunk_size(data);
    cx.add_raw(rest.len());
    for c in rest.chunks(size) {
        if node.write(&mut cx, c).is_err() {
            cx.close_all();
            return;
        }
    }
    let _ = node.finish(&mut cx);
    cx.close_all();
}

/// The whole pipeline with the built-in rules; the first byte also picks declared hints.
pub fn inspection(data: &[u8]) {
    install_panic_filter();
    let (size, rest) = chunk_size(data);
    let sel = data.first().copied().unwrap_or(0) >> 6;
    let hints = match sel {
        0 => BodyHints::default(),
        1 => BodyHints { content_encoding: Some("br".into()), ..Default::default() },
        2 => BodyHints { content_type: Some("multipart/form-data; boundary=b".into()), ..Default::default() },
        _ => BodyHints { content_type: Some("text/plain; charset=utf-16".into()), ..Default::default() },
    };
    let mut i = Inspection::new(portcullis_scan::Ruleset::builtin(), hints, limits()).exhaustive(true);
    for c in rest.chunks(size) {
        if let crate::Step::Done(_) = i.chunk(c) {
            break;
        }
    }
    let r = i.finish();
    assert!(r.decoded_bytes <= (1 << 20) + 128 * 1024, "decoded {} past the limit", r.decoded_bytes);
    assert!(r.peak_buffered <= 1 << 20);
}
