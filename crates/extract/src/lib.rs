//! Content extraction for DLP: see through compression, forms, JSON, base64, archives and
//! documents before scanning, within a budget.
//!
//! An [`Inspection`] is one transfer (a request body or a file), sans-IO: feed it chunks with
//! [`Inspection::chunk`], end it with [`Inspection::finish`]. Inside, a push pipeline of
//! decoders (one per nesting level) turns the bytes into text streams, each scanned by its own
//! [`portcullis_scan::Scanner`]; findings of all streams are merged into one [`Report`].
//!
//! Types are detected from magic bytes and structure (see `sniff`), never from names alone:
//! gzip, zstd, zlib, brotli/deflate (declared encodings only: no magic), zip, docx/xlsx/pptx,
//! OpenDocument, PDF, RTF, tar, multipart, JSON, HTML/XML, urlencoded forms, UTF-16 and declared
//! charsets, text (with embedded base64 blobs decoded and scanned too) and raw binary.
//!
//! # Never silently clean
//! Anything that could not be inspected makes the verdict [`Verdict::Unscannable`] with a reason
//! (unless a match was found, which wins): a limit that trips (stops everything at once), an
//! encrypted zip member or PDF, a corrupt stream, a DTD entity declaration in XML (the
//! billion-laughs shape — entities are never expanded), content nested deeper than `max_depth`.
//!
//! # Limits and the memory bound per transfer
//! [`Limits`] bounds total decoded bytes, the expansion ratio (decoded / received, judged once
//! more than 1 MiB was decoded), nesting depth, archive entries/parts, random-access buffering
//! and processing time (time spent inside `chunk`/`finish`, so a slow uploader is not a bomb).
//!
//! Memory held by one inspection is bounded by:
//! * `max_buffer` (64 MiB) for **all** random-access buffers together (zip, OOXML, ODF, PDF;
//!   nested zips share it), plus the zip central directory (≤ `max_entries` records) and, for a
//!   PDF, lopdf's object graph (proportional to the buffered PDF and its decoded streams, both
//!   already budgeted);
//! * per nesting level (at most `max_depth + 1` = 5 levels): one decoder with a 64 KiB output
//!   buffer and its window (deflate 32 KiB, zstd ≤ 8 MiB, brotli ≤ 16 MiB — brotli only as the
//!   outer Content-Encoding), a 1 KiB sniff buffer, parser state (multipart ≤ 80 KiB, tar
//!   ≤ 64 KiB, one XML event ≤ 8 MiB) and up to two scanners (a few KiB each).
//!
//! So the worst case is about `max_buffer + 16 MiB + max_depth × 17 MiB` ≈ 150 MiB with the
//! defaults, and well under 1 MiB for streaming formats (gzip, JSON, multipart, tar). Bytes
//! handed to `chunk` in one call are processed in 64 KiB slices, so a large call does not
//! multiply this.
#![forbid(unsafe_code)]

mod compress;
mod engine;
mod form;
#[doc(hidden)]
pub mod fuzzing;
mod html;
mod json;
mod multipart;
mod pdf;
mod rtf;
mod sniff;
mod tar;
mod text;
mod xml;
mod zipx;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_scan::{Finding, Ruleset, Scanner};
use serde::Serialize;

use engine::{Ctx, Halt, Node, SinkFactory, TextSink};
use sniff::{FileNode, Origin};

/// Budget for one transfer. All limits are per transfer (a request body or a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes produced by decoders (decompression, base64, archive members, PDF streams).
    pub max_decoded_bytes: u64,
    /// Decoded bytes may not exceed this multiple of the bytes received (after 1 MiB of slack).
    pub max_ratio: u64,
    /// Nesting levels below the transfer itself (gzip → tar → zip member → ... ).
    pub max_depth: u32,
    /// Archive members and multipart parts, all levels together.
    pub max_entries: u32,
    /// Bytes held at once for formats that need random access (zip, OOXML, ODF, PDF).
    pub max_buffer: usize,
    /// Processing time (inside `chunk`/`finish` calls).
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_decoded_bytes: 256 << 20,
            max_ratio: 100,
            max_depth: 4,
            max_entries: 10_000,
            max_buffer: 64 << 20,
            max_time: Duration::from_secs(30),
        }
    }
}

/// What the transport says about the content. Used only where the bytes carry no signature.
#[derive(Debug, Default, Clone)]
pub struct BodyHints {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub file_name: Option<String>,
}

/// Outcome of an inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything was inspected; nothing found.
    Clean,
    /// A detector fired.
    Match,
    /// Some content could not be inspected (see [`Report::reason`]); nothing was found in the rest.
    Unscannable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Match => "match",
            Verdict::Unscannable => "unscannable",
        }
    }
}

/// Result of [`Inspection::chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep feeding.
    Continue,
    /// Decided early (a match, or a limit tripped); further chunks are ignored.
    Done(Verdict),
}

/// One file-like object seen in the transfer (the transfer itself, a decoded body, a multipart
/// part, an archive member, a base64 blob that decoded to a known format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// File name from the part header, archive entry or hint.
    pub name: Option<String>,
    /// The form field a multipart part was sent in (the `name` of its Content-Disposition).
    /// A text field (a webmail message body, a chat message) has a field and no file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// SHA-256 (hex) of the object's bytes as they appear at its level.
    pub sha256: String,
    pub size: u64,
    /// Detected type: `gzip`, `zip`, `docx`, `xlsx`, `pptx`, `odt`, `pdf`, `json`, `text`, ...
    pub kind: String,
    /// The object's end was never reached: inspection stopped first (a match, a limit) or the
    /// transfer ended early. `sha256` and `size` then cover the bytes that arrived, from the
    /// start (the SHA-256 of the object's first `size` bytes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Everything an inspection found out.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// Findings of all text streams, merged per detector, sorted by detector id. Each text
    /// stream (a file's text, a decoded blob) has its own scanner, so a detector's `min_count`
    /// is met within one stream, and `offsets` are offsets in that stream's extracted text.
    pub findings: Vec<Finding>,
    /// Why the content is (partly) unscannable; set whenever something was not inspected, even
    /// if the verdict is `match`.
    pub reason: Option<String>,
    /// Files seen, outermost first (at most 1024 listed). Transport forms are not files: a
    /// multipart envelope (its parts are listed) and a body in a declared `Content-Encoding`
    /// (the decoded body is listed).
    pub files: Vec<FileInfo>,
    /// Bytes produced by decoders (what `max_decoded_bytes` limits).
    pub decoded_bytes: u64,
    /// Bytes received.
    pub input_bytes: u64,
    /// Bytes handed to scanners.
    pub scanned_bytes: u64,
    /// Largest amount held in random-access buffers at once (bounded by `max_buffer`).
    pub peak_buffered: u64,
}

/// Hands each text stream to its own scanner and collects findings when the stream closes.
struct ScanSink {
    scanner: Scanner,
    results: Arc<Mutex<Vec<Finding>>>,
}

impl TextSink for ScanSink {
    fn feed(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
    }
    fn has_findings(&self) -> bool {
        self.scanner.has_findings()
    }
    fn close(self: Box<Self>) -> bool {
        let found = self.scanner.finish();
        let any = !found.is_empty();
        if any && let Ok(mut r) = self.results.lock() {
            r.extend(found);
        }
        any
    }
}

fn scan_factory(rules: Arc<Ruleset>, key: Option<[u8; 32]>, results: Arc<Mutex<Vec<Finding>>>) -> SinkFactory {
    Box::new(move || {
        let mut scanner = Scanner::new(rules.clone());
        if let Some(k) = key {
            scanner = scanner.with_hmac_key(k);
        }
        Box::new(ScanSink { scanner, results: results.clone() }) as Box<dyn TextSink>
    })
}

/// Findings of several streams → one finding per detector.
fn merge(mut all: Vec<Finding>) -> Vec<Finding> {
    all.sort_by(|a, b| a.detector.cmp(&b.detector));
    let mut out: Vec<Finding> = Vec::new();
    for f in all {
        match out.last_mut() {
            Some(m) if m.detector == f.detector => {
                m.count += f.count;
                m.confidence = m.confidence.max(f.confidence);
                m.severity = m.severity.max(f.severity);
                for s in f.samples {
                    if m.samples.len() < 5 && !m.samples.contains(&s) {
                        m.samples.push(s);
                    }
                }
                for o in f.offsets {
                    if m.offsets.len() < 32 {
                        m.offsets.push(o);
                    }
                }
                for h in f.value_hmacs {
                    if m.value_hmacs.len() < 32 && !m.value_hmacs.contains(&h) {
                        m.value_hmacs.push(h);
                    }
                }
            }
            _ => out.push(f),
        }
    }
    out
}

/// Slice size for bytes handed to the pipeline.
const SLICE: usize = 64 * 1024;

/// Extraction + scanning of one transfer. Sans-IO; `Send`.
pub struct Inspection {
    cx: Ctx,
    root: Option<Box<dyn Node>>,
    halted: Option<Halt>,
    rules: Arc<Ruleset>,
    results: Arc<Mutex<Vec<Finding>>>,
}

impl Inspection {
    pub fn new(rules: Arc<Ruleset>, hints: BodyHints, limits: Limits) -> Inspection {
        let results = Arc::new(Mutex::new(Vec::new()));
        let cx = Ctx::new(limits, scan_factory(rules.clone(), None, results.clone()));
        Inspection { cx, root: Some(root_node(hints)), halted: None, rules, results }
    }

    /// Report an HMAC-SHA256 of each matched value (see [`Scanner::with_hmac_key`]).
    pub fn with_hmac_key(mut self, key: [u8; 32]) -> Inspection {
        self.cx.set_factory(scan_factory(self.rules.clone(), Some(key), self.results.clone()));
        self
    }

    /// Keep going after the first match (complete counts for `portcullis scan`); only limits
    /// stop early. The default stops at the first match, which is what a gateway wants.
    pub fn exhaustive(mut self, yes: bool) -> Inspection {
        self.cx.exhaustive = yes;
        self
    }

    /// Bytes held in random-access buffers (a zip, an office document, a PDF being received):
    /// they are parsed when their document ends, in a later [`chunk`](Self::chunk) (a multipart
    /// part) or in [`finish`](Self::finish), and that call can take a long time (seconds for a
    /// large PDF). A caller on an async runtime uses this to move such calls off its workers.
    pub fn buffered_bytes(&self) -> usize {
        self.cx.buffered()
    }

    /// Feed the next chunk of the transfer.
    pub fn chunk(&mut self, bytes: &[u8]) -> Step {
        if let Some(h) = &self.halted {
            return Step::Done(halt_verdict(h));
        }
        let Some(root) = self.root.as_mut() else { return Step::Continue };
        self.cx.begin_call();
        self.cx.add_raw(bytes.len());
        let r = engine::write_sliced(root.as_mut(), &mut self.cx, bytes, SLICE);
        self.cx.end_call();
        match r {
            Ok(()) => Step::Continue,
            Err(h) => {
                let v = halt_verdict(&h);
                self.halted = Some(h);
                self.root = None;
                Step::Done(v)
            }
        }
    }

    /// End of the transfer: decide and report.
    pub fn finish(mut self) -> Report {
        if let Some(root) = self.root.take() {
            self.cx.begin_call();
            if let Err(h) = root.finish(&mut self.cx) {
                self.halted = Some(h);
            }
            self.cx.end_call();
        }
        self.cx.close_all();
        let found = self.results.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        let findings = merge(found);
        let mut reasons: Vec<String> = Vec::new();
        if let Some(Halt::Unscannable(r)) = &self.halted {
            reasons.push(r.clone());
        }
        reasons.extend(self.cx.soft_reasons().iter().cloned());
        let verdict = if !findings.is_empty() {
            Verdict::Match
        } else if !reasons.is_empty() {
            Verdict::Unscannable
        } else {
            Verdict::Clean
        };
        let mut files = self.cx.take_files();
        if self.cx.files_dropped() > 0 {
            files.truncate(files.len());
        }
        Report {
            verdict,
            findings,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
            files,
            decoded_bytes: self.cx.decoded(),
            input_bytes: self.cx.raw_in(),
            scanned_bytes: self.cx.scanned(),
            peak_buffered: self.cx.peak_buffered() as u64,
        }
    }
}

fn halt_verdict(h: &Halt) -> Verdict {
    match h {
        Halt::Match => Verdict::Match,
        Halt::Unscannable(_) => Verdict::Unscannable,
    }
}

fn root_node(hints: BodyHints) -> Box<dyn Node> {
    let node = FileNode::new(hints.file_name, hints.content_type, 0, Origin::Normal).with_encodings(hints.content_encoding.as_deref());
    Box::new(node)
}

#[doc(hidden)]
pub mod testing {
    //! Test seam: run the extraction pipeline with a sink that records the text streams
    //! instead of scanning them, to test decoders by their output.
    use super::*;

    /// Text streams produced for `input` (fed in `chunks`), plus the report without findings.
    pub fn extract_text(hints: BodyHints, limits: Limits, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Report) {
        struct Collect {
            buf: Vec<u8>,
            all: Arc<Mutex<Vec<Vec<u8>>>>,
        }
        impl TextSink for Collect {
            fn feed(&mut self, chunk: &[u8]) {
                self.buf.extend_from_slice(chunk);
            }
            fn has_findings(&self) -> bool {
                false
            }
            fn close(self: Box<Self>) -> bool {
                if let Ok(mut a) = self.all.lock() {
                    a.push(self.buf);
                }
                false
            }
        }
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        let factory: SinkFactory = Box::new(move || Box::new(Collect { buf: Vec::new(), all: all2.clone() }) as Box<dyn TextSink>);
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut insp =
            Inspection { cx: Ctx::new(limits, factory), root: Some(root_node(hints)), halted: None, rules: Ruleset::builtin(), results };
        insp.cx.exhaustive = true;
        for c in chunks {
            if let Step::Done(_) = insp.chunk(c) {
                break;
            }
        }
        let report = insp.finish();
        let texts = all.lock().map(|a| a.clone()).unwrap_or_default();
        (texts, report)
    }
}
