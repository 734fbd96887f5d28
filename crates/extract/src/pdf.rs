//! PDF text via `pdf-extract` (on `lopdf`).
//!
//! PDF needs random access (xref table at the end), so the file is buffered under `max_buffer`.
//! Two guards go around the library, which decompresses streams into memory without limits and
//! panics on some malformed input:
//! 1. a pre-pass inflates every Flate stream into a counting sink, charging the output to the
//!    decoded-bytes budget, so a PDF carrying a deflate bomb is stopped before lopdf sees it;
//! 2. parsing and text extraction run under `catch_unwind`, a panic becoming "unscannable";
//! 3. before extraction, [`check_structure`] walks what pdf-extract follows without bounds (a
//!    page's `/Parent` chain, form XObjects invoked by `Do`) and refuses documents on which it
//!    would never return: a loop spins a worker thread forever, and a form that invokes itself
//!    overflows the stack, which aborts the whole process (there is no unwinding to catch).
//!
//! Encrypted PDFs are unscannable (policy decides), even when the user password is empty.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use flate2::{Decompress, FlushDecompress, Status};
use pdf_extract::content::Content;
use pdf_extract::{Dictionary, Document, Object, ObjectId, Stream};

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
    if let Err(why) = check_structure(&doc) {
        cx.soft_unscannable(format!("PDF not extracted: {why}"));
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

/// Longest `/Parent` chain from a page to the root of the page tree.
const MAX_PARENT_CHAIN: usize = 64;
/// Deepest nesting of form XObjects (a form invoking a form invoking ...).
const MAX_FORM_DEPTH: usize = 32;
/// Form invocations (`Do`) over the whole document, counting each time a form is reached again
/// through another path: the work pdf-extract would do.
const MAX_FORM_CALLS: usize = 10_000;

/// Walks, by the same lookups as pdf-extract, the structure it follows without bounds, and says
/// why the document must not be handed to it:
/// - inherited page attributes (`/Resources`, `/MediaBox`) are looked up the `/Parent` chain with
///   no cycle check: a loop there is an endless loop;
/// - `Do` runs a form XObject's content recursively, with the form's `/Resources` or else the
///   caller's, and no cycle check: a form that reaches itself overflows the stack (an abort, not
///   a panic); forms that each invoke the next twice, thirty deep, are a billion invocations.
///
/// Each stream's content is decoded once; the walk itself is bounded by the limits above.
fn check_structure(doc: &Document) -> Result<(), String> {
    let mut walk = FormWalk { doc, names: HashMap::new(), stack: Vec::new(), calls: 0 };
    for (num, page_id) in doc.get_pages() {
        let Ok(page) = doc.get_dictionary(page_id) else { continue };
        let chain = parent_chain(doc, page_id, page).map_err(|e| format!("page {num}: {e}"))?;
        let Ok(content) = doc.get_page_content(page_id) else { continue };
        let Some(resources) = chain.iter().find_map(|d| dict_of(doc, d.get(b"Resources").ok())) else { continue };
        walk.run(resources, &do_names(&content)).map_err(|e| format!("page {num}: {e}"))?;
    }
    Ok(())
}

/// The page and its ancestors, nearest first; an error if the chain loops or is too long.
fn parent_chain<'a>(doc: &'a Document, page_id: ObjectId, page: &'a Dictionary) -> Result<Vec<&'a Dictionary>, String> {
    let (mut ids, mut chain) = (vec![page_id], vec![page]);
    let mut node = page;
    while let Ok(parent) = node.get(b"Parent").and_then(Object::as_reference) {
        if ids.contains(&parent) {
            return Err("its /Parent chain loops".into());
        }
        if ids.len() > MAX_PARENT_CHAIN {
            return Err(format!("its /Parent chain is longer than {MAX_PARENT_CHAIN}"));
        }
        let Ok(dict) = doc.get_dictionary(parent) else { break };
        ids.push(parent);
        chain.push(dict);
        node = dict;
    }
    Ok(chain)
}

/// `obj` (one reference followed, as pdf-extract does) if it is a dictionary.
fn dict_of<'a>(doc: &'a Document, obj: Option<&'a Object>) -> Option<&'a Dictionary> {
    match obj? {
        Object::Reference(id) => doc.get_object(*id).ok()?.as_dict().ok(),
        o => o.as_dict().ok(),
    }
}

/// The names invoked with `Do` in a content stream.
fn do_names(content: &[u8]) -> Rc<[Vec<u8>]> {
    let Ok(content) = Content::decode(content) else { return Rc::from(Vec::new()) };
    content
        .operations
        .iter()
        .filter(|op| op.operator == "Do")
        .filter_map(|op| op.operands.first().and_then(|o| o.as_name().ok()).map(<[u8]>::to_vec))
        .collect()
}

/// Content of a stream as pdf-extract reads it: decompressed if that works, raw otherwise.
fn stream_content(stream: &Stream) -> Vec<u8> {
    stream.decompressed_content().unwrap_or_else(|_| stream.content.clone())
}

struct FormWalk<'a> {
    doc: &'a Document,
    /// `Do` names of each form stream, decoded once.
    names: HashMap<ObjectId, Rc<[Vec<u8>]>>,
    /// Forms being run, outermost first.
    stack: Vec<ObjectId>,
    calls: usize,
}

impl<'a> FormWalk<'a> {
    /// Runs the `Do`s of a content stream whose resources are `resources`.
    fn run(&mut self, resources: &'a Dictionary, names: &[Vec<u8>]) -> Result<(), String> {
        let Some(xobjects) = dict_of(self.doc, resources.get(b"XObject").ok()) else { return Ok(()) };
        for name in names {
            self.calls += 1;
            if self.calls > MAX_FORM_CALLS {
                return Err(format!("form XObjects are invoked more than {MAX_FORM_CALLS} times"));
            }
            let (id, obj) = match xobjects.get(name) {
                Ok(Object::Reference(id)) => match self.doc.get_object(*id) {
                    Ok(o) => (Some(*id), o),
                    Err(_) => continue,
                },
                Ok(o) => (None, o),
                Err(_) => continue,
            };
            let Ok(form) = obj.as_stream() else { continue };
            if id.is_some_and(|id| self.stack.contains(&id)) {
                return Err(format!("form XObject /{} invokes itself", String::from_utf8_lossy(name)));
            }
            if self.stack.len() >= MAX_FORM_DEPTH {
                return Err(format!("form XObjects nest deeper than {MAX_FORM_DEPTH}"));
            }
            let inner = match id {
                Some(id) => Rc::clone(self.names.entry(id).or_insert_with(|| do_names(&stream_content(form)))),
                None => do_names(&stream_content(form)),
            };
            let own = dict_of(self.doc, form.dict.get(b"Resources").ok()).unwrap_or(resources);
            // An inline form (no id) cannot be reached again, but still counts towards the depth.
            self.stack.push(id.unwrap_or((0, 0)));
            let r = self.run(own, &inner);
            self.stack.pop();
            r?;
        }
        Ok(())
    }
}
