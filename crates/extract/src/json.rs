//! Streaming JSON tokenizer: every string (keys too) is unescaped — `\uXXXX` including surrogate
//! pairs — and emitted as its own line; numbers and literals are emitted as bare tokens (a card
//! number can be a JSON number), running up to the next structural character. Only strings vs. the rest are tokenized, with no nesting stack,
//! so memory is constant and malformed JSON degrades to "scan the tokens we see" instead of
//! failing. Hand-written because serde_json and friends need the whole document (or a `Read`)
//! and fail on the first syntax error; here input arrives as arbitrary chunks.

use crate::engine::{Ctx, Node, Res};
use crate::text::TextOut;

const FLUSH: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Outside,
    Bare,
    Str,
    Esc,
    /// `\u` with `n` hex digits read into `acc`; `hi` is a pending high surrogate.
    Uni {
        acc: u32,
        n: u8,
        hi: Option<u16>,
    },
    /// A high surrogate was read; a `\` must follow for a pair.
    Hi(u16),
    /// A high surrogate and a `\` were read; `u` must follow.
    HiEsc(u16),
}

pub(crate) struct JsonNode {
    out: TextOut,
    st: St,
    buf: Vec<u8>,
}

impl JsonNode {
    pub fn new(cx: &mut Ctx, depth: u32) -> JsonNode {
        JsonNode { out: TextOut::new(cx, depth, true), st: St::Outside, buf: Vec::with_capacity(FLUSH) }
    }

    fn push_char(&mut self, c: char) {
        let mut b = [0u8; 4];
        self.buf.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }

    fn end_token(&mut self, cx: &mut Ctx) -> Res {
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        self.out.boundary(cx)
    }

    /// Handle one byte while in string context (used again after a broken surrogate pair).
    fn in_string(&mut self, cx: &mut Ctx, c: u8) -> Res {
        match c {
            b'"' => {
                self.st = St::Outside;
                self.end_token(cx)?;
            }
            b'\\' => self.st = St::Esc,
            _ => self.buf.push(c),
        }
        Ok(())
    }

    fn escape(&mut self, c: u8, hi: Option<u16>) {
        let ch = match c {
            b'n' => '\n',
            b't' => '\t',
            b'r' => '\r',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'u' => {
                self.st = St::Uni { acc: 0, n: 0, hi };
                return;
            }
            other => char::from(other),
        };
        if hi.is_some() {
            self.push_char(char::REPLACEMENT_CHARACTER);
        }
        if c.is_ascii() {
            self.push_char(ch);
        } else {
            self.buf.push(c);
        }
        self.st = St::Str;
    }

    fn byte(&mut self, cx: &mut Ctx, c: u8) -> Res {
        match self.st {
            St::Outside => match c {
                b'"' => self.st = St::Str,
                b'{' | b'}' | b'[' | b']' | b':' | b',' => {}
                c if c.is_ascii_whitespace() => {}
                c => {
                    self.st = St::Bare;
                    self.buf.push(c);
                }
            },
            St::Bare => match c {
                b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"' => {
                    self.end_token(cx)?;
                    self.st = St::Outside;
                    if c == b'"' {
                        self.st = St::Str;
                    }
                }
                // Whitespace does not end a bare token: valid JSON never puts two bare tokens
                // side by side, and text that merely starts with `[` or `{` (a log line, an INI
                // section) keeps `4111 1111 1111 1111` in one piece.
                c => self.buf.push(c),
            },
            St::Str => self.in_string(cx, c)?,
            St::Esc => self.escape(c, None),
            St::Uni { acc, n, hi } => {
                let Some(d) = (c as char).to_digit(16) else {
                    // Broken escape: keep what we saw, go on as string.
                    self.push_char(char::REPLACEMENT_CHARACTER);
                    self.st = St::Str;
                    return self.in_string(cx, c);
                };
                let acc = acc << 4 | d;
                if n < 3 {
                    self.st = St::Uni { acc, n: n + 1, hi };
                    return Ok(());
                }
                let unit = acc as u16;
                self.st = St::Str;
                match (hi, unit) {
                    (Some(h), 0xDC00..=0xDFFF) => {
                        let cp = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                        self.push_char(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    (hi, 0xD800..=0xDBFF) => {
                        if hi.is_some() {
                            self.push_char(char::REPLACEMENT_CHARACTER);
                        }
                        self.st = St::Hi(unit);
                    }
                    (hi, _) => {
                        if hi.is_some() {
                            self.push_char(char::REPLACEMENT_CHARACTER);
                        }
                        self.push_char(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
            }
            St::Hi(h) => {
                if c == b'\\' {
                    self.st = St::HiEsc(h);
                } else {
                    self.push_char(char::REPLACEMENT_CHARACTER);
                    self.st = St::Str;
                    self.in_string(cx, c)?;
                }
            }
            St::HiEsc(h) => self.escape(c, Some(h)),
        }
        Ok(())
    }
}

impl Node for JsonNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        let mut rest = data;
        while !rest.is_empty() {
            // Fast path inside strings: copy up to the next quote or backslash in one go.
            if self.st == St::Str {
                let n = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                self.buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if rest.is_empty() {
                    break;
                }
            }
            self.byte(cx, rest[0])?;
            rest = &rest[1..];
            if self.buf.len() >= FLUSH {
                self.out.write(cx, &self.buf)?;
                self.buf.clear();
            }
        }
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        if matches!(self.st, St::Hi(_) | St::HiEsc(_) | St::Uni { .. }) {
            self.push_char(char::REPLACEMENT_CHARACTER);
        }
        if !self.buf.is_empty() {
            self.out.write(cx, &self.buf)?;
        }
        self.out.finish(cx)
    }
}
