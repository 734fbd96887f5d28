//! Text out of document XML parts (OOXML, OpenDocument), streaming with quick-xml.
//!
//! Word splits text into runs whenever formatting changes, so `A123456(3)` can be stored as
//! `<w:t>A12</w:t></w:r><w:r><w:t>3456</w:t>...`. Text of a paragraph is therefore concatenated
//! and a line break is emitted only at paragraph/cell/string-item ends. In OOXML mode only text
//! inside text elements (`w:t`, `a:t`, shared-string `t`, cell values `v`, tracked deletions
//! `w:delText`) counts, so the indentation between tags never splits a value.
//!
//! Entity expansion: quick-xml does not expand DTD entities. A part that *declares* entities
//! (the billion-laughs shape; Office never writes a DTD) is reported unscannable instead of being
//! read with its references silently dropped. Each event is capped at [`MAX_EVENT`] bytes so one
//! giant tag or text node cannot grow the parser buffer without bound.

use std::cell::Cell;
use std::io::{BufReader, Read};

use quick_xml::events::Event;

use crate::engine::{Ctx, Res};
use crate::text::TextOut;

/// Largest single XML event (tag or text node) we accept.
pub(crate) const MAX_EVENT: u64 = 8 << 20;
const FLUSH: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Office Open XML: text only inside text elements.
    Ooxml,
    /// OpenDocument and other XML: all character data.
    Generic,
}

/// Counts bytes read (for the decoded-bytes budget) and refuses oversized events.
pub(crate) struct Counted<'c, R> {
    pub inner: R,
    pub total: &'c Cell<u64>,
    pub since_event: &'c Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_event.get() > MAX_EVENT {
            return Err(std::io::Error::other("XML event larger than 8 MiB"));
        }
        let n = self.inner.read(buf)?;
        self.total.set(self.total.get() + n as u64);
        self.since_event.set(self.since_event.get() + n as u64);
        Ok(n)
    }
}

fn is_text_el(local: &[u8], mode: Mode) -> bool {
    match mode {
        Mode::Ooxml => matches!(local, b"t" | b"v" | b"delText"),
        Mode::Generic => true,
    }
}

fn is_block_end(local: &[u8], mode: Mode) -> bool {
    match mode {
        Mode::Ooxml => matches!(local, b"p" | b"si" | b"c" | b"row" | b"tr" | b"is" | b"comment" | b"txBody"),
        Mode::Generic => !matches!(local, b"span" | b"a" | b"s" | b"tab" | b"soft-page-break" | b"bookmark" | b"ruby"),
    }
}

struct Emit<'o> {
    out: &'o mut TextOut,
    buf: Vec<u8>,
}

impl Emit<'_> {
    fn push(&mut self, cx: &mut Ctx, b: &[u8]) -> Res {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= FLUSH {
            self.flush(cx)?;
        }
        Ok(())
    }
    fn flush(&mut self, cx: &mut Ctx) -> Res {
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
    fn boundary(&mut self, cx: &mut Ctx) -> Res {
        self.flush(cx)?;
        self.out.boundary(cx)
    }
}

/// Extract the text of one XML part into `out`. `what` names the part in reasons.
pub(crate) fn extract<R: Read>(cx: &mut Ctx, input: R, mode: Mode, out: &mut TextOut, what: &str) -> Res {
    let total = Cell::new(0u64);
    let since = Cell::new(0u64);
    let counted = Counted { inner: input, total: &total, since_event: &since };
    let mut rd = quick_xml::Reader::from_reader(BufReader::with_capacity(32 * 1024, counted));
    {
        let c = rd.config_mut();
        c.check_end_names = false;
        c.allow_unmatched_ends = true;
        c.trim_text_start = false;
        c.trim_text_end = false;
    }
    let mut em = Emit { out, buf: Vec::new() };
    let mut buf = Vec::new();
    let mut in_text = 0u32;
    let mut charged = 0u64;
    let r = loop {
        buf.clear();
        let ev = rd.read_event_into(&mut buf);
        since.set(0);
        let now = total.get();
        if now > charged {
            let delta = usize::try_from(now - charged).unwrap_or(usize::MAX);
            charged = now;
            if let Err(h) = cx.charge_decoded(delta) {
                break Err(h);
            }
        }
        let step: Res = match ev {
            Ok(Event::Start(e)) => {
                let name = e.local_name();
                if is_text_el(name.as_ref(), mode) {
                    in_text += 1;
                }
                Ok(())
            }
            Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"tab" | b"s" => em.push(cx, b" "),
                b"br" | b"cr" | b"line-break" => em.boundary(cx),
                _ => Ok(()),
            },
            Ok(Event::End(e)) => {
                let name = e.local_name();
                let name = name.as_ref();
                if is_text_el(name, mode) {
                    in_text = in_text.saturating_sub(1);
                }
                if is_block_end(name, mode) { em.boundary(cx) } else { Ok(()) }
            }
            Ok(Event::Text(t)) if in_text > 0 => em.push(cx, &t),
            Ok(Event::CData(t)) if in_text > 0 => em.push(cx, &t),
            Ok(Event::GeneralRef(r)) if in_text > 0 => {
                let name: &[u8] = &r;
                let ch = match name {
                    b"amp" => Some('&'),
                    b"lt" => Some('<'),
                    b"gt" => Some('>'),
                    b"quot" => Some('"'),
                    b"apos" => Some('\''),
                    _ => r.resolve_char_ref().ok().flatten(),
                };
                match ch {
                    Some(c) => em.push(cx, c.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => Ok(()),
                }
            }
            Ok(Event::DocType(d)) => {
                if memchr::memmem::find(&d, b"<!ENTITY").is_some() {
                    cx.soft_unscannable(format!("{what}: XML declares DTD entities (entity-expansion bomb shape; not expanded)"));
                    break em.flush(cx);
                }
                Ok(())
            }
            Ok(Event::Eof) => break em.flush(cx),
            Ok(_) => Ok(()),
            Err(e) => {
                cx.soft_unscannable(format!("{what}: malformed XML: {e}"));
                break em.flush(cx);
            }
        };
        if let Err(h) = step {
            break Err(h);
        }
    };
    r?;
    // Parts are separate texts.
    em.boundary(cx)
}
