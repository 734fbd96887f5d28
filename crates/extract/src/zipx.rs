//! zip archives, and the documents that are zips: OOXML (docx/xlsx/pptx) and OpenDocument.
//!
//! zip needs random access (the central directory is at the end), so the archive is buffered —
//! charged to the per-transfer `max_buffer` budget that all buffering nodes share — and opened
//! with the `zip` crate at `finish`. Members are then streamed out 64 KiB at a time: a nested
//! zip is buffered again under the same budget, anything else flows through the streaming
//! decoders. The entry count is checked against `max_entries` before any member is read;
//! encrypted members and unsupported compression methods are reported unscannable by name.
//!
//! The kind (docx, xlsx, pptx, odt...) comes from the members present, not the file name.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::engine::{Ctx, Node, Res};
use crate::sniff::{Discard, FileNode, Origin};
use crate::text::TextOut;
use crate::xml::{self, Mode};

const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct ZipNode {
    depth: u32,
    file_idx: Option<usize>,
    name: Option<String>,
    buf: Vec<u8>,
}

impl ZipNode {
    pub fn new(depth: u32, file_idx: Option<usize>, name: Option<String>) -> ZipNode {
        ZipNode { depth, file_idx, name, buf: Vec::new() }
    }
}

impl Node for ZipNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        cx.reserve_buffer(data.len(), "zip archive")?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        let buf = std::mem::take(&mut self.buf);
        let r = process(cx, &buf, self.depth, self.file_idx, self.name.as_deref());
        cx.release_buffer(buf.len());
        r
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DocKind {
    Zip,
    Docx,
    Xlsx,
    Pptx,
    Ooxml,
    Odf(&'static str),
}

impl DocKind {
    fn name(self) -> &'static str {
        match self {
            DocKind::Zip => "zip",
            DocKind::Docx => "docx",
            DocKind::Xlsx => "xlsx",
            DocKind::Pptx => "pptx",
            DocKind::Ooxml => "ooxml",
            DocKind::Odf(k) => k,
        }
    }
}

/// What to do with one member.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Xml(Mode),
    Nested,
    Skip,
}

fn detect<R: Read + std::io::Seek>(ar: &mut ZipArchive<R>) -> DocKind {
    let has = |n: &str| ar.index_for_name(n).is_some();
    if has("[Content_Types].xml") {
        if has("word/document.xml") {
            return DocKind::Docx;
        }
        if has("xl/workbook.xml") {
            return DocKind::Xlsx;
        }
        if has("ppt/presentation.xml") {
            return DocKind::Pptx;
        }
        return DocKind::Ooxml;
    }
    let (content, manifest) = (has("content.xml"), has("META-INF/manifest.xml"));
    if content || has("mimetype") {
        let mut mt = Vec::new();
        if let Ok(f) = ar.by_name("mimetype") {
            let _ = f.take(128).read_to_end(&mut mt);
        }
        let kind = match mt.strip_prefix(b"application/vnd.oasis.opendocument.") {
            Some(b"text") => "odt",
            Some(b"spreadsheet") => "ods",
            Some(b"presentation") => "odp",
            Some(_) => "opendocument",
            None if content && manifest => "opendocument",
            None => return DocKind::Zip,
        };
        return DocKind::Odf(kind);
    }
    DocKind::Zip
}

fn action(kind: DocKind, name: &str) -> Action {
    let lower = name.to_ascii_lowercase();
    match kind {
        DocKind::Zip => Action::Nested,
        DocKind::Docx | DocKind::Xlsx | DocKind::Pptx | DocKind::Ooxml => {
            if lower.ends_with(".rels") || lower == "[content_types].xml" {
                Action::Skip
            } else if lower.ends_with(".xml") {
                let main = ["word/", "xl/", "ppt/"].iter().any(|p| lower.starts_with(p));
                Action::Xml(if main { Mode::Ooxml } else { Mode::Generic })
            } else {
                Action::Nested
            }
        }
        DocKind::Odf(_) => {
            if lower == "mimetype" || lower == "meta-inf/manifest.xml" || lower == "settings.xml" {
                Action::Skip
            } else if lower.ends_with(".xml") {
                Action::Xml(Mode::Generic)
            } else {
                Action::Nested
            }
        }
    }
}

fn process(cx: &mut Ctx, buf: &[u8], depth: u32, file_idx: Option<usize>, zip_name: Option<&str>) -> Res {
    let label = zip_name.unwrap_or("zip");
    let mut ar = match ZipArchive::new(Cursor::new(buf)) {
        Ok(a) => a,
        Err(e) => {
            cx.soft_unscannable(format!("{label}: corrupt zip archive: {e}"));
            // Still look at the raw bytes: stored members are readable as they are.
            let mut raw = TextOut::new(cx, depth, false);
            for piece in buf.chunks(READ_CHUNK) {
                raw.write(cx, piece)?;
            }
            return raw.finish(cx);
        }
    };
    let n = ar.len();
    // Counted before any member is read: a fan-out bomb stops at its first directory.
    cx.count_entries(n as u64)?;
    let kind = detect(&mut ar);
    if let Some(f) = cx.file_mut(file_idx) {
        f.kind = kind.name().to_string();
    }
    let mut doc_text = match kind {
        DocKind::Zip => None,
        _ => Some(TextOut::new(cx, depth, true)),
    };
    for i in 0..n {
        cx.check_time()?;
        let (name, is_dir, encrypted) = match ar.by_index_raw(i) {
            Ok(f) => (f.name().to_string(), f.is_dir(), f.encrypted()),
            Err(e) => {
                cx.soft_unscannable(format!("{label}: unreadable zip entry #{i}: {e}"));
                continue;
            }
        };
        if is_dir {
            continue;
        }
        if encrypted {
            cx.soft_unscannable(format!("{label}: encrypted zip entry {name}"));
            continue;
        }
        let act = action(kind, &name);
        if act == Action::Skip {
            continue;
        }
        let child_depth = cx.child_depth(depth);
        if act == Action::Nested && child_depth.is_none() {
            cx.soft_unscannable(format!("{label}: {name} nested deeper than max_depth ({})", cx.limits.max_depth));
            continue;
        }
        let entry = match ar.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                cx.soft_unscannable(format!("{label}: cannot read zip entry {name}: {e}"));
                continue;
            }
        };
        match (act, doc_text.as_mut()) {
            (Action::Xml(mode), Some(out)) => {
                xml::extract(cx, entry, mode, out, &format!("{label}: {name}"))?;
            }
            _ => {
                let child: Box<dyn Node> = match child_depth {
                    Some(d) => Box::new(FileNode::new(Some(name.clone()), None, d, Origin::Normal)),
                    None => Box::new(Discard),
                };
                stream_entry(cx, entry, child, &format!("{label}: {name}"))?;
            }
        }
    }
    if let Some(out) = doc_text {
        out.finish(cx)?;
    }
    Ok(())
}

fn stream_entry(cx: &mut Ctx, mut entry: impl Read, mut child: Box<dyn Node>, what: &str) -> Res {
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match entry.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                cx.charge_decoded(n)?;
                child.write(cx, &chunk[..n])?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                cx.soft_unscannable(format!("{what}: corrupt zip entry: {e}"));
                break;
            }
        }
    }
    child.finish(cx)
}
