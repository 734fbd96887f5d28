//! HTML/XML bodies as text: a streaming tag stripper with entity decoding. Inline tags
//! (`<b>`, `<span>`, ...) join their text so `41<b>11</b> 1111 ...` still reads as one number;
//! other tags end a line. Quoted attribute values are scanned too (a hidden form field carries
//! data). Comments, doctypes and processing instructions are skipped; CDATA is text.
//! Hand-written (≈150 lines) because HTML parsers (html5ever, scraper) build a DOM of the whole
//! document, and here chunks stream through with constant memory; text extraction needs no
//! tree.

use crate::engine::{Ctx, Node, Res};
use crate::text::TextOut;

const INLINE: &[&[u8]] = &[
    b"a", b"abbr", b"b", b"bdi", b"bdo", b"cite", b"code", b"data", b"dfn", b"em", b"font", b"i", b"kbd", b"mark", b"q", b"s", b"samp",
    b"small", b"span", b"strong", b"sub", b"sup", b"time", b"u", b"var", b"wbr", b"ins", b"del",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Text,
    Lt,
    Name,
    InTag(Option<u8>),
    /// `<!` or `<?` seen: collecting up to 8 bytes to tell comment / CDATA / other.
    Bang,
    Comment(u8),
    CData(u8),
    Skip,
    /// Inside `<!DOCTYPE`: `subset` inside `[...]`, `m` bytes of `<!ENTITY` matched so far.
    Doctype {
        subset: bool,
        m: u8,
    },
    Entity,
}

pub(crate) struct Markup {
    out: TextOut,
    st: St,
    name: Vec<u8>,
    bang: Vec<u8>,
    ent: Vec<u8>,
    buf: Vec<u8>,
    /// An internal DTD subset declared entities (reported once, at the end).
    cx_note_entities: bool,
}

pub(crate) fn looks_like_markup(h: &[u8]) -> bool {
    let t = h.trim_ascii_start();
    t.len() >= 2 && t[0] == b'<' && (t[1].is_ascii_alphabetic() || b"!?/".contains(&t[1]))
}

fn entity(name: &[u8]) -> Option<char> {
    if let Some(num) = name.strip_prefix(b"#") {
        let s = std::str::from_utf8(num).ok()?;
        let v = match s.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => s.parse().ok()?,
        };
        return char::from_u32(v);
    }
    Some(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => ' ',
        b"ndash" => '–',
        b"mdash" => '—',
        b"copy" => '©',
        _ => return None,
    })
}

impl Markup {
    pub fn new(cx: &mut Ctx, depth: u32) -> Markup {
        Markup {
            out: TextOut::new(cx, depth, true),
            st: St::Text,
            name: Vec::new(),
            bang: Vec::new(),
            ent: Vec::new(),
            buf: Vec::new(),
            cx_note_entities: false,
        }
    }

    fn boundary(&mut self, cx: &mut Ctx) -> Res {
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        self.out.boundary(cx)
    }

    fn tag_done(&mut self, cx: &mut Ctx) -> Res {
        let n = self.name.strip_prefix(b"/").unwrap_or(&self.name).to_ascii_lowercase();
        self.name.clear();
        self.st = St::Text;
        if !INLINE.contains(&n.as_slice()) {
            self.boundary(cx)?;
        }
        Ok(())
    }

    fn byte(&mut self, cx: &mut Ctx, c: u8) -> Res {
        match self.st {
            St::Text => match c {
                b'<' => self.st = St::Lt,
                b'&' => {
                    self.ent.clear();
                    self.st = St::Entity;
                }
                _ => self.buf.push(c),
            },
            St::Entity => {
                if c == b';' {
                    match entity(&self.ent) {
                        Some(ch) => self.buf.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
                        None => {
                            self.buf.push(b'&');
                            self.buf.extend_from_slice(&self.ent);
                            self.buf.push(b';');
                        }
                    }
                    self.st = St::Text;
                } else if c.is_ascii_alphanumeric() || c == b'#' && self.ent.is_empty() {
                    if self.ent.len() < 12 {
                        self.ent.push(c);
                    } else {
                        self.buf.push(b'&');
                        self.buf.extend_from_slice(&self.ent);
                        self.buf.push(c);
                        self.st = St::Text;
                    }
                } else {
                    self.buf.push(b'&');
                    self.buf.extend_from_slice(&self.ent);
                    self.st = St::Text;
                    return self.byte(cx, c);
                }
            }
            St::Lt => match c {
                b'!' | b'?' => {
                    self.bang.clear();
                    self.bang.push(c);
                    self.st = St::Bang;
                }
                c if c.is_ascii_alphabetic() || c == b'/' => {
                    self.name.clear();
                    self.name.push(c);
                    self.st = St::Name;
                }
                _ => {
                    self.buf.push(b'<');
                    self.st = St::Text;
                    return self.byte(cx, c);
                }
            },
            St::Name => match c {
                b'>' => self.tag_done(cx)?,
                c if c.is_ascii_whitespace() || c == b'/' => self.st = St::InTag(None),
                c => {
                    if self.name.len() < 16 {
                        self.name.push(c);
                    }
                }
            },
            St::InTag(None) => match c {
                b'>' => self.tag_done(cx)?,
                b'"' | b'\'' => self.st = St::InTag(Some(c)),
                _ => {}
            },
            St::InTag(Some(q)) => {
                if c == q {
                    self.boundary(cx)?;
                    self.st = St::InTag(None);
                } else {
                    self.buf.push(c);
                }
            }
            St::Bang => {
                self.bang.push(c);
                if self.bang == b"!--" {
                    self.st = St::Comment(0);
                } else if self.bang == b"![CDATA[" {
                    self.st = St::CData(0);
                } else if self.bang.eq_ignore_ascii_case(b"!DOCTYPE") {
                    self.st = St::Doctype { subset: false, m: 0 };
                } else if c == b'>' {
                    self.st = St::Text;
                } else if !(b"!--".starts_with(&self.bang)
                    || b"![CDATA[".starts_with(&self.bang)
                    || b"!DOCTYPE".get(..self.bang.len()).is_some_and(|p| p.eq_ignore_ascii_case(&self.bang)))
                {
                    self.st = St::Skip;
                }
            }
            St::Comment(dashes) => {
                self.st = match c {
                    b'-' => St::Comment(dashes.saturating_add(1)),
                    b'>' if dashes >= 2 => St::Text,
                    _ => St::Comment(0),
                }
            }
            St::CData(br) => match c {
                b']' => self.st = St::CData(br.saturating_add(1)),
                b'>' if br >= 2 => self.st = St::Text,
                _ => {
                    self.buf.extend(std::iter::repeat_n(b']', usize::from(br)));
                    self.buf.push(c);
                    self.st = St::CData(0);
                }
            },
            St::Skip => {
                if c == b'>' {
                    self.st = St::Text;
                }
            }
            St::Doctype { subset, m } => {
                const ENTITY: &[u8] = b"<!ENTITY";
                self.st = match c {
                    b'>' if !subset => St::Text,
                    b'[' if !subset => St::Doctype { subset: true, m: 0 },
                    b']' if subset => St::Doctype { subset: false, m: 0 },
                    c if subset && c == ENTITY[usize::from(m)] => {
                        if usize::from(m) + 1 == ENTITY.len() {
                            self.cx_note_entities = true;
                            St::Doctype { subset, m: 0 }
                        } else {
                            St::Doctype { subset, m: m + 1 }
                        }
                    }
                    c if subset && c == b'<' => St::Doctype { subset, m: 1 },
                    _ => St::Doctype { subset, m: 0 },
                };
            }
        }
        Ok(())
    }
}

impl Node for Markup {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        let mut rest = data;
        while !rest.is_empty() {
            if self.st == St::Text {
                let n = memchr::memchr2(b'<', b'&', rest).unwrap_or(rest.len());
                self.buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if rest.is_empty() {
                    break;
                }
            }
            self.byte(cx, rest[0])?;
            rest = &rest[1..];
        }
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        if self.st == St::Entity {
            self.buf.push(b'&');
            let ent = std::mem::take(&mut self.ent);
            self.buf.extend_from_slice(&ent);
        }
        self.out.write(cx, &self.buf)?;
        if self.cx_note_entities {
            // Entities are never expanded; text built from them was not inspected.
            cx.soft_unscannable("XML/HTML declares DTD entities (entity-expansion bomb shape; not expanded)".into());
        }
        self.out.finish(cx)
    }
}
