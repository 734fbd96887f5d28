//! RTF as text: a streaming stripper. Control words are dropped (paragraph/line/row/cell marks
//! become line breaks or spaces), `\'hh` is decoded as Windows-1252, `\uN` as Unicode (with its
//! `\ucN` fallback characters skipped), `\binN` data and ignorable/known non-text destinations
//! (`{\*\...}`, font/colour/style tables, pictures, objects) are skipped. Hand-written (≈150
//! lines): the RTF crates on crates.io (rtf-parser) are young, build a token vector of the whole
//! document, and are not streaming; text extraction needs only a group-depth counter.

use crate::engine::{Ctx, Node, Res};
use crate::text::TextOut;

const SKIP_DESTS: &[&[u8]] = &[
    b"fonttbl", b"colortbl", b"stylesheet", b"info", b"pict", b"object", b"themedata", b"datastore", b"latentstyles", b"listtable",
    b"listoverridetable", b"rsidtbl", b"xmlnstbl", b"generator", b"filetbl", b"revtbl", b"colorschememapping", b"fontemb", b"mmathPr",
    b"wgrffmtfilter", b"pgdsctbl",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Text,
    Slash,
    Word,
    Param,
    Hex(u8, u8),
    Bin(u64),
}

pub(crate) struct RtfNode {
    out: TextOut,
    st: St,
    depth: u32,
    skip_at: Option<u32>,
    word: Vec<u8>,
    param: Vec<u8>,
    uc: u32,
    pending_skip: u32,
    buf: Vec<u8>,
}

impl RtfNode {
    pub fn new(cx: &mut Ctx, depth: u32) -> RtfNode {
        RtfNode {
            out: TextOut::new(cx, depth, true),
            st: St::Text,
            depth: 0,
            skip_at: None,
            word: Vec::new(),
            param: Vec::new(),
            uc: 1,
            pending_skip: 0,
            buf: Vec::new(),
        }
    }

    fn skipping(&self) -> bool {
        self.skip_at.is_some()
    }

    fn emit_char(&mut self, c: char) {
        if self.pending_skip > 0 {
            self.pending_skip -= 1;
            return;
        }
        if !self.skipping() {
            self.buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }

    fn emit_ansi(&mut self, b: u8) {
        let c = if b.is_ascii() {
            char::from(b)
        } else {
            encoding_rs::WINDOWS_1252.decode_without_bom_handling(&[b]).0.chars().next().unwrap_or('\u{fffd}')
        };
        self.emit_char(c);
    }

    fn control_word(&mut self) {
        let param: Option<i64> = std::str::from_utf8(&self.param).ok().and_then(|s| s.parse().ok());
        let w = std::mem::take(&mut self.word);
        self.param.clear();
        if SKIP_DESTS.contains(&w.as_slice()) {
            if self.skip_at.is_none() {
                self.skip_at = Some(self.depth);
            }
            return;
        }
        match w.as_slice() {
            b"par" | b"line" | b"sect" | b"page" | b"row" if !self.skipping() => self.buf.push(b'\n'),
            b"tab" | b"cell" if !self.skipping() => self.buf.push(b' '),
            b"u" => {
                if let Some(n) = param {
                    let v = if n < 0 { n + 65536 } else { n };
                    let ch = u32::try_from(v).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
                    let saved = self.pending_skip;
                    self.pending_skip = 0;
                    self.emit_char(ch);
                    self.pending_skip = saved.max(self.uc);
                }
            }
            b"uc" => self.uc = param.and_then(|p| u32::try_from(p).ok()).unwrap_or(1).min(16),
            b"bin" => {
                if let Some(n) = param.and_then(|p| u64::try_from(p).ok())
                    && n > 0
                {
                    self.st = St::Bin(n);
                }
            }
            b"emdash" => self.emit_char('—'),
            b"endash" => self.emit_char('–'),
            b"bullet" => self.emit_char('•'),
            b"lquote" | b"rquote" => self.emit_char('\''),
            b"ldblquote" | b"rdblquote" => self.emit_char('"'),
            _ => {}
        }
    }

    fn byte(&mut self, c: u8) {
        match self.st {
            St::Bin(n) => self.st = if n > 1 { St::Bin(n - 1) } else { St::Text },
            St::Text => match c {
                b'{' => self.depth = self.depth.saturating_add(1),
                b'}' => {
                    if self.skip_at == Some(self.depth) {
                        self.skip_at = None;
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                b'\\' => self.st = St::Slash,
                b'\r' | b'\n' => {}
                c => self.emit_ansi(c),
            },
            St::Slash => {
                self.st = St::Text;
                match c {
                    c if c.is_ascii_alphabetic() => {
                        self.word.clear();
                        self.word.push(c);
                        self.st = St::Word;
                    }
                    b'\'' => self.st = St::Hex(0, 0),
                    b'*' if self.skip_at.is_none() => self.skip_at = Some(self.depth),
                    b'~' => self.emit_char(' '),
                    b'\r' | b'\n' => self.emit_char('\n'),
                    b'{' | b'}' | b'\\' => self.emit_char(char::from(c)),
                    _ => {}
                }
            }
            St::Word => {
                if c.is_ascii_alphabetic() {
                    if self.word.len() < 32 {
                        self.word.push(c);
                    }
                } else if c.is_ascii_digit() || c == b'-' {
                    self.param.clear();
                    self.param.push(c);
                    self.st = St::Param;
                } else {
                    self.st = St::Text;
                    self.control_word();
                    if c != b' ' {
                        self.byte(c);
                    }
                }
            }
            St::Param => {
                if c.is_ascii_digit() {
                    if self.param.len() < 11 {
                        self.param.push(c);
                    }
                } else {
                    self.st = St::Text;
                    self.control_word();
                    if c != b' ' {
                        self.byte(c);
                    }
                }
            }
            St::Hex(n, acc) => match (c as char).to_digit(16) {
                Some(d) if n == 0 => self.st = St::Hex(1, d as u8),
                Some(d) => {
                    self.st = St::Text;
                    self.emit_ansi(acc << 4 | d as u8);
                }
                None => {
                    self.st = St::Text;
                    self.byte(c);
                }
            },
        }
    }
}

impl Node for RtfNode {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        for &c in data {
            self.byte(c);
        }
        self.out.write(cx, &self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        if matches!(self.st, St::Word | St::Param) {
            self.control_word();
        }
        self.out.write(cx, &self.buf)?;
        self.out.finish(cx)
    }
}
