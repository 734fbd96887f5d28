//! `application/x-www-form-urlencoded`: streaming percent-decoding, `+` as space, one line per
//! `key=value` pair (the key stays next to its value, so context keywords like `card_number`
//! still count). A `%` split across chunks is carried over. Hand-written: `form_urlencoded`
//! parses a complete `&[u8]`, not a stream.

use crate::engine::{Ctx, Node, Res};
use crate::text::TextOut;

pub(crate) struct FormNode {
    out: TextOut,
    /// Bytes of a `%XX` escape seen so far (0, 1 or 2 after the `%`).
    pct: Option<(u8, u8)>,
    buf: Vec<u8>,
}

/// Structure check for bodies without a declared type: `k=v&k2=v2`, no spaces or controls.
pub(crate) fn looks_like_form(h: &[u8]) -> bool {
    let Some(eq) = memchr::memchr(b'=', h) else { return false };
    let key_ok =
        eq > 0 && h[..eq].iter().all(|&c| c.is_ascii_alphanumeric() || b"_-.[]%*".contains(&c)) && memchr::memchr(b'&', &h[..eq]).is_none();
    key_ok && h.iter().all(|&c| c.is_ascii_graphic()) && (memchr::memchr(b'&', h).is_some() || h.len() < 1024)
}

impl FormNode {
    pub fn new(cx: &mut Ctx, depth: u32) -> FormNode {
        FormNode { out: TextOut::new(cx, depth, true), pct: None, buf: Vec::new() }
    }

    fn flush(&mut self, cx: &mut Ctx) -> Res {
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl Node for FormNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        let mut rest = data;
        while !rest.is_empty() {
            // Fast path: copy up to the next `%`, `&` or `;` in one go, `+` becoming a space.
            if self.pct.is_none() {
                let n = memchr::memchr3(b'%', b'&', b';', rest).unwrap_or(rest.len());
                let from = self.buf.len();
                self.buf.extend_from_slice(&rest[..n]);
                for b in &mut self.buf[from..] {
                    if *b == b'+' {
                        *b = b' ';
                    }
                }
                rest = &rest[n..];
                let Some((&c, tail)) = rest.split_first() else { break };
                rest = tail;
                match c {
                    b'%' => self.pct = Some((0, 0)),
                    _ => {
                        self.flush(cx)?;
                        self.out.boundary(cx)?;
                    }
                }
                continue;
            }
            let c = rest[0];
            rest = &rest[1..];
            if let Some((n, acc)) = self.pct {
                match hex(c) {
                    Some(d) if n == 0 => {
                        self.pct = Some((1, d));
                        continue;
                    }
                    Some(d) => {
                        self.buf.push(acc << 4 | d);
                        self.pct = None;
                        continue;
                    }
                    None => {
                        // Not an escape after all: keep it literally.
                        self.buf.push(b'%');
                        if n == 1 {
                            self.buf.extend_from_slice(format!("{acc:X}").as_bytes());
                        }
                        self.pct = None;
                    }
                }
            }
            match c {
                b'%' => self.pct = Some((0, 0)),
                b'+' => self.buf.push(b' '),
                b'&' | b';' => {
                    self.flush(cx)?;
                    self.out.boundary(cx)?;
                }
                _ => self.buf.push(c),
            }
        }
        self.flush(cx)
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        if let Some((n, acc)) = self.pct {
            self.buf.push(b'%');
            if n == 1 {
                self.buf.extend_from_slice(format!("{acc:X}").as_bytes());
            }
        }
        self.flush(cx)?;
        self.out.finish(cx)
    }
}
