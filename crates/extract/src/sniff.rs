//! Type detection and dispatch: one [`FileNode`] per file-like object (the transfer, a decoded
//! body, a multipart part, an archive member, a base64 blob).
//!
//! The type comes from magic bytes and structure, not from names or the declared Content-Type:
//! a `.txt` that is a zip is opened as a zip. Declarations are used only where the bytes carry
//! no signature: `Content-Encoding: br` / raw deflate (no magic), a multipart boundary, a
//! declared charset, form encoding. Everything written to a node is hashed (SHA-256) for the
//! report's file list, by the context, which outlives the node: an inspection stopped at a
//! finding still reports the part of each file it saw.

use crate::compress::{Brotli, Deflate, Gzip, Zstd, inflates};
use crate::engine::{Ctx, Node, Res};
use crate::text::{TextNode, Transcode};

/// Bytes looked at before deciding a type.
pub(crate) const SNIFF_LEN: usize = 1024;

/// How a file node came to be; decides whether it is listed in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The transfer, a part, an archive member, a decompressed body: always listed.
    Normal,
    /// A base64 run in text: listed only if it decoded to a recognisable format.
    Base64,
    /// The same file after charset conversion: never listed again.
    Transcoded,
}

/// Drops everything (content that was already reported unscannable).
pub(crate) struct Discard;

impl Node for Discard {
    fn write(&mut self, _cx: &mut Ctx, _data: &[u8]) -> Res {
        Ok(())
    }
    fn finish(self: Box<Self>, _cx: &mut Ctx) -> Res {
        Ok(())
    }
}

pub(crate) struct FileNode {
    name: Option<String>,
    /// The form field a multipart part was sent in.
    field: Option<String>,
    content_type: Option<String>,
    /// Declared content codings still to undo, in the order they were applied.
    encodings: Vec<String>,
    depth: u32,
    origin: Origin,
    idx: Option<usize>,
    opened: bool,
    head: Vec<u8>,
    inner: Option<Box<dyn Node>>,
    kind: &'static str,
    /// A declared content coding (`Content-Encoding: gzip`) was undone on this body: it is the
    /// transfer's wire form, and the decoded child is the file.
    transport_coding: bool,
}

impl FileNode {
    pub fn new(name: Option<String>, content_type: Option<String>, depth: u32, origin: Origin) -> FileNode {
        FileNode {
            name,
            field: None,
            content_type,
            encodings: Vec::new(),
            depth,
            origin,
            idx: None,
            opened: false,
            head: Vec::new(),
            inner: None,
            kind: "empty",
            transport_coding: false,
        }
    }

    /// `Content-Encoding` header value, e.g. `gzip` or `gzip, br`.
    pub fn with_encodings(mut self, header: Option<&str>) -> FileNode {
        if let Some(h) = header {
            self.encodings = h.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty() && s != "identity").collect();
        }
        self
    }

    /// The form field this multipart part was sent in.
    pub fn with_field(mut self, field: Option<String>) -> FileNode {
        self.field = field;
        self
    }

    pub fn set_no_encoding(&mut self) {
        self.encodings.clear();
    }

    fn open(&mut self, cx: &mut Ctx) {
        if !self.opened {
            self.opened = true;
            if self.origin != Origin::Transcoded {
                self.idx = cx.new_file(self.name.clone(), self.field.clone());
            }
        }
    }

    /// Once the type is known, files not worth listing are dropped (and no longer hashed):
    /// a base64 blob that decoded to plain text or unknown bytes (any long word looks like
    /// base64); a multipart envelope, which is transport framing (its boundary is random per
    /// request) whose parts are the files; and a body in a declared content coding
    /// (`Content-Encoding: gzip`), whose compressed bytes depend on the sender's compressor and
    /// level, so their hash identifies nothing: the decoded body is the file. A `.gz` uploaded
    /// as such (gzip found by its magic, no header) is a file and stays listed with its content.
    ///
    /// The envelope was hashed as well as each part, so a browser upload cost two SHA-256
    /// passes over every byte; hashing is a third of the proxy's CPU on uploads.
    fn typed(&mut self, cx: &mut Ctx) {
        let not_a_file = self.kind == "multipart"
            || self.transport_coding
            || (self.origin == Origin::Base64 && matches!(self.kind, "text" | "binary" | "empty"));
        if not_a_file {
            cx.drop_file(self.idx.take());
        } else if let Some(f) = cx.file_mut(self.idx)
            && f.kind.is_empty()
        {
            f.kind = self.kind.to_string();
        }
    }

    /// A child of this file (decoded content, archive member). `None` past `max_depth`.
    fn child(&self, cx: &mut Ctx, name: Option<String>, ct: Option<String>) -> Option<FileNode> {
        match cx.child_depth(self.depth) {
            Some(d) => Some(FileNode::new(name, ct, d, Origin::Normal)),
            None => {
                cx.soft_unscannable(format!(
                    "nested deeper than max_depth ({}){}",
                    cx.limits.max_depth,
                    self.name.as_deref().map(|n| format!(" in {n}")).unwrap_or_default()
                ));
                None
            }
        }
    }

    fn boxed_or_discard(n: Option<FileNode>) -> Box<dyn Node> {
        match n {
            Some(n) => Box::new(n),
            None => Box::new(Discard),
        }
    }

    /// Decide what this file is from its first bytes and build the decoder for it.
    fn dispatch(&mut self, cx: &mut Ctx) -> Box<dyn Node> {
        let head_owned = self.head.clone();
        let head = head_owned.as_slice();
        // 1. Declared content codings (outermost applied last). Trust them only where the bytes
        //    agree or where the format has no magic.
        if let Some(enc) = self.encodings.pop() {
            let rest = std::mem::take(&mut self.encodings);
            let mk_child = |this: &Self, cx: &mut Ctx| {
                this.child(cx, this.name.clone(), this.content_type.clone()).map(|mut c| {
                    c.encodings = rest.clone();
                    c
                })
            };
            let node: Option<(&'static str, Box<dyn Node>)> = match enc.as_str() {
                "gzip" | "x-gzip" if head.starts_with(&[0x1f, 0x8b]) => {
                    Some(("gzip", Box::new(Gzip::new(Self::boxed_or_discard(mk_child(self, cx))))))
                }
                "deflate" => {
                    let zlib = is_zlib(head);
                    Some(("deflate", Box::new(Deflate::new(zlib, Self::boxed_or_discard(mk_child(self, cx))))))
                }
                "br" => Some(("brotli", Box::new(Brotli::new(Self::boxed_or_discard(mk_child(self, cx)))))),
                "zstd" if head.starts_with(&ZSTD_MAGIC) => Some(("zstd", Box::new(Zstd::new(Self::boxed_or_discard(mk_child(self, cx)))))),
                _ => None,
            };
            if let Some((kind, node)) = node {
                self.kind = kind;
                self.transport_coding = true;
                return node;
            }
            // Declared coding does not match the bytes (or is unknown): sniff what is there.
            self.encodings = rest;
            return self.dispatch(cx);
        }

        // 2. Magic numbers.
        let strip = |n: &Option<String>, exts: &[(&str, &str)]| {
            n.as_ref().map(|n| {
                let lower = n.to_ascii_lowercase();
                for (e, r) in exts {
                    if lower.ends_with(e) {
                        return format!("{}{}", &n[..n.len() - e.len()], r);
                    }
                }
                n.clone()
            })
        };
        if head.starts_with(&[0x1f, 0x8b]) && inflates(head, false) {
            self.kind = "gzip";
            let name = strip(&self.name, &[(".tgz", ".tar"), (".gz", "")]);
            return Box::new(Gzip::new(Self::boxed_or_discard(self.child(cx, name, None))));
        }
        if head.starts_with(&ZSTD_MAGIC) {
            self.kind = "zstd";
            let name = strip(&self.name, &[(".zst", "")]);
            return Box::new(Zstd::new(Self::boxed_or_discard(self.child(cx, name, None))));
        }
        if head.len() >= 2 && head[0] == 0x78 && matches!(head[1], 0x9c | 0xda) && is_zlib(head) && inflates(head, true) {
            self.kind = "zlib";
            return Box::new(Deflate::new(true, Self::boxed_or_discard(self.child(cx, None, None))));
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            self.kind = "zip";
            return Box::new(crate::zipx::ZipNode::new(self.depth, self.idx, self.name.clone()));
        }
        if head.trim_ascii_start().starts_with(b"%PDF-") {
            self.kind = "pdf";
            return Box::new(crate::pdf::PdfNode::new(self.depth));
        }
        if head.starts_with(b"{\\rtf") {
            self.kind = "rtf";
            return Box::new(crate::rtf::RtfNode::new(cx, self.depth));
        }
        if crate::tar::looks_like_tar(head) {
            self.kind = "tar";
            return Box::new(crate::tar::TarNode::new(self.depth));
        }

        // 3. Charset: BOM, declared charset, or UTF-16 structure.
        if self.origin != Origin::Transcoded {
            let enc = bom_encoding(head).or_else(|| declared_charset(self.content_type.as_deref())).or_else(|| utf16_by_structure(head));
            if let Some(enc) = enc
                && enc != encoding_rs::UTF_8
            {
                self.kind = if enc == encoding_rs::UTF_16LE {
                    "text/utf-16le"
                } else if enc == encoding_rs::UTF_16BE {
                    "text/utf-16be"
                } else {
                    "text/legacy-charset"
                };
                let child = FileNode::new(self.name.clone(), self.content_type.clone(), self.depth, Origin::Transcoded);
                return Box::new(Transcode::new(enc, Box::new(child)));
            }
        }

        // 4. Text structures.
        let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        let ct = self.content_type.as_deref().map(str::to_ascii_lowercase).unwrap_or_default();
        let boundary = if ct.starts_with("multipart/") { multipart_boundary(self.content_type.as_deref()) } else { None };
        if let Some(b) = boundary.or_else(|| crate::multipart::sniff_boundary(body)) {
            self.kind = "multipart";
            return Box::new(crate::multipart::Multipart::new(b, self.depth));
        }
        let first = body.iter().copied().find(|c| !c.is_ascii_whitespace());
        if matches!(first, Some(b'{') | Some(b'[')) {
            self.kind = "json";
            return Box::new(crate::json::JsonNode::new(cx, self.depth));
        }
        if first == Some(b'<') && crate::html::looks_like_markup(body) {
            self.kind =
                if ct.contains("html") || contains_ci(body, b"<html") || contains_ci(body, b"<!doctype html") { "html" } else { "xml" };
            return Box::new(crate::html::Markup::new(cx, self.depth));
        }
        if ct.starts_with("application/x-www-form-urlencoded") || crate::form::looks_like_form(body) {
            self.kind = "form";
            return Box::new(crate::form::FormNode::new(cx, self.depth));
        }
        if head.is_empty() {
            self.kind = "empty";
            return Box::new(Discard);
        }
        if looks_textual(head) {
            self.kind = "text";
            Box::new(TextNode::new(cx, self.depth, true))
        } else {
            self.kind = "binary";
            Box::new(TextNode::new(cx, self.depth, false))
        }
    }
}

impl Node for FileNode {
    fn write(&mut self, cx: &mut Ctx, mut data: &[u8]) -> Res {
        if data.is_empty() {
            return Ok(());
        }
        self.open(cx);
        cx.file_bytes(self.idx, data);
        if self.inner.is_none() {
            let take = (SNIFF_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < SNIFF_LEN {
                return Ok(());
            }
            let mut inner = self.dispatch(cx);
            self.typed(cx);
            let head = std::mem::take(&mut self.head);
            let r = inner.write(cx, &head);
            self.inner = Some(inner);
            r?;
        }
        match self.inner.as_mut() {
            Some(inner) if !data.is_empty() => inner.write(cx, data),
            _ => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        self.open(cx);
        let inner = match self.inner.take() {
            Some(i) => i,
            None => {
                let mut inner = self.dispatch(cx);
                let head = std::mem::take(&mut self.head);
                inner.write(cx, &head)?;
                inner
            }
        };
        self.typed(cx);
        let r = inner.finish(cx);
        cx.file_done(self.idx);
        r
    }
}

pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn is_zlib(h: &[u8]) -> bool {
    h.len() >= 2 && h[0] & 0x0f == 8 && h[0] >> 4 <= 7 && (u16::from(h[0]) << 8 | u16::from(h[1])) % 31 == 0
}

fn bom_encoding(h: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    encoding_rs::Encoding::for_bom(h).map(|(e, _)| e)
}

/// `charset=` parameter of a Content-Type.
fn declared_charset(ct: Option<&str>) -> Option<&'static encoding_rs::Encoding> {
    let v = param(ct?, "charset")?;
    encoding_rs::Encoding::for_label(v.as_bytes())
}

/// `boundary=` parameter of a multipart Content-Type.
pub(crate) fn multipart_boundary(ct: Option<&str>) -> Option<Vec<u8>> {
    let b = param(ct?, "boundary")?;
    (!b.is_empty() && b.len() <= 200).then(|| b.into_bytes())
}

/// A header parameter (`name=value` or `name="value"`), case-insensitive name.
///
/// A quoted value runs to the next `"`, so a `;` or `=` inside it belongs to the value
/// (`filename="q3; final.xlsx"`). Backslashes are kept as they are: browsers do not escape
/// inside form-data names (they percent-encode `"`, CR and LF instead, per the HTML standard),
/// and older ones sent Windows paths.
pub(crate) fn param(header: &str, name: &str) -> Option<String> {
    // Skip the value before the first parameter (`form-data`, `multipart/form-data`).
    let mut rest = header.split_once(';')?.1;
    loop {
        let (key, after) = match rest.find(['=', ';']) {
            Some(i) if rest.as_bytes()[i] == b'=' => (&rest[..i], &rest[i + 1..]),
            // A bare token (`form-data; foo; name=x`): no value.
            Some(i) => {
                rest = &rest[i + 1..];
                continue;
            }
            None => return None,
        };
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let close = quoted.find('"').unwrap_or(quoted.len());
                let tail = quoted.get(close + 1..).unwrap_or("");
                (&quoted[..close], tail.split_once(';').map(|(_, n)| n))
            }
            None => match after.split_once(';') {
                Some((v, n)) => (v.trim_end(), Some(n)),
                None => (after.trim_end(), None),
            },
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.to_string());
        }
        rest = next?;
    }
}

/// UTF-16 without BOM: ASCII text leaves every other byte zero.
fn utf16_by_structure(h: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    if h.len() < 16 {
        return None;
    }
    let n = h.len() / 2;
    let (mut even0, mut odd0) = (0, 0);
    for pair in h.chunks_exact(2) {
        even0 += usize::from(pair[0] == 0);
        odd0 += usize::from(pair[1] == 0);
    }
    let textual = |bytes: &mut dyn Iterator<Item = u8>| bytes.filter(|&b| b != 0).all(|b| b >= 0x20 || b"\t\r\n".contains(&b));
    if odd0 * 10 >= n * 9 && even0 == 0 && textual(&mut h.iter().step_by(2).copied()) {
        return Some(encoding_rs::UTF_16LE);
    }
    if even0 * 10 >= n * 9 && odd0 == 0 && textual(&mut h.iter().skip(1).step_by(2).copied()) {
        return Some(encoding_rs::UTF_16BE);
    }
    None
}

fn contains_ci(h: &[u8], needle: &[u8]) -> bool {
    h.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Mostly printable (UTF-8 allowed): worth looking for base64 runs in.
fn looks_textual(h: &[u8]) -> bool {
    let bad = h.iter().filter(|&&b| b < 0x20 && !b"\t\r\n\x0c".contains(&b)).count();
    bad * 20 <= h.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_found_case_insensitively() {
        let ct = "multipart/form-data; Boundary=\"abc123\"; charset=utf-8";
        assert_eq!(param(ct, "boundary").as_deref(), Some("abc123"));
        assert_eq!(param(ct, "charset").as_deref(), Some("utf-8"));
        assert_eq!(param(ct, "nothing"), None);
        // Quoted values keep `;`, `=` and backslashes; a bare token is skipped.
        let cd = r#"form-data; foo; name="upload"; filename="q3; final=v2 C:\tmp.xlsx"; x=1"#;
        assert_eq!(param(cd, "filename").as_deref(), Some(r"q3; final=v2 C:\tmp.xlsx"));
        assert_eq!(param(cd, "name").as_deref(), Some("upload"));
        assert_eq!(param(cd, "x").as_deref(), Some("1"));
        // `name` is not found inside `filename`, nor inside a quoted value.
        assert_eq!(param(r#"form-data; filename="a; name=b""#, "name"), None);
        // Unterminated quote: the rest is the value. Empty and odd inputs do not panic.
        assert_eq!(param(r#"form-data; filename="abc"#, "filename").as_deref(), Some("abc"));
        for odd in ["", ";", "a;=", "a; =\"", "a;\"=\";", "a; k = v ; k2=\"\""] {
            let _ = (param(odd, "k"), param(odd, "k2"), param(odd, ""));
        }
        assert_eq!(param("a; k = v ; k2=\"\"", "k").as_deref(), Some("v"));
        assert_eq!(param("a; k = v ; k2=\"\"", "k2").as_deref(), Some(""));
    }

    #[test]
    fn utf16_structure_detected() {
        let le: Vec<u8> = "hello world, plain text".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(utf16_by_structure(&le), Some(encoding_rs::UTF_16LE));
        let be: Vec<u8> = "hello world, plain text".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(utf16_by_structure(&be), Some(encoding_rs::UTF_16BE));
        assert_eq!(utf16_by_structure(b"hello world, plain text"), None);
    }
}
