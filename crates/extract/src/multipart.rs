//! Streaming `multipart/form-data` (and any `multipart/*`): each part becomes a nested file with
//! its file name and declared type; its bytes are streamed to it while the delimiter is searched
//! (only `delimiter length - 1` bytes are held back). The boundary comes from the Content-Type,
//! or is sniffed from the first line when a raw multipart body is scanned as a file.
//! `Content-Transfer-Encoding: base64` parts are decoded. Preamble and epilogue are ignored
//! (servers ignore them too). Hand-written: the multipart crates (multer, mime-multipart) are
//! async/`Stream`-shaped and own their I/O; this one is sans-IO like the rest of the pipeline.

use memchr::memmem::Finder;

use crate::engine::{Ctx, Node, Res};
use crate::sniff::{Discard, FileNode, Origin, param};
use crate::text::Base64Body;

const MAX_HEADERS: usize = 16 * 1024;
const SLICE: usize = 64 * 1024;

enum Phase {
    Preamble,
    AfterDelim,
    Headers,
    Body(Box<dyn Node>),
    Epilogue,
}

pub(crate) struct Multipart {
    delim: Vec<u8>,
    finder: Finder<'static>,
    pending: Vec<u8>,
    phase: Phase,
    depth: u32,
}

/// `--boundary\r\n` followed by part headers at the start of a body.
pub(crate) fn sniff_boundary(h: &[u8]) -> Option<Vec<u8>> {
    let rest = h.strip_prefix(b"--")?;
    let eol = memchr::memchr(b'\n', rest)?;
    let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
    let ok = !line.is_empty() && line.len() <= 200 && line.iter().all(|&c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c));
    let after = rest[eol + 1..].to_ascii_lowercase();
    let headers = memchr::memmem::find(&after, b"content-disposition:").is_some() || after.starts_with(b"content-type:");
    (ok && headers).then(|| line.to_vec())
}

impl Multipart {
    pub fn new(boundary: Vec<u8>, depth: u32) -> Multipart {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(&boundary);
        let finder = Finder::new(&delim).into_owned();
        // The first delimiter may open the body without a preceding CRLF.
        Multipart { delim, finder, pending: b"\r\n".to_vec(), phase: Phase::Preamble, depth }
    }

    fn start_part(&mut self, cx: &mut Ctx, headers: &[u8]) -> Res {
        cx.count_entry()?;
        let text = String::from_utf8_lossy(headers);
        let (mut filename, mut field, mut ctype, mut b64) = (None, None, None, false);
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                field = param(v, "name");
                // The RFC 5987 form (`filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`) carries the real
                // name; a plain `filename` next to it is the sender's ASCII fallback (RFC 6266).
                filename = param(v, "filename*").map(|f| ext_value(&f)).or_else(|| param(v, "filename"));
            } else if k.eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("content-transfer-encoding") {
                b64 = v.trim().eq_ignore_ascii_case("base64");
            }
        }
        let child: Box<dyn Node> = match cx.child_depth(self.depth) {
            Some(d) => {
                let f = Box::new(FileNode::new(filename, ctype, d, Origin::Normal).with_field(field));
                if b64 { Box::new(Base64Body::new(f)) } else { f }
            }
            None => {
                cx.soft_unscannable(format!("multipart part nested deeper than max_depth ({})", cx.limits.max_depth));
                Box::new(Discard)
            }
        };
        self.phase = Phase::Body(child);
        Ok(())
    }

    fn process(&mut self, cx: &mut Ctx) -> Res {
        let dl = self.delim.len();
        loop {
            match &mut self.phase {
                Phase::Preamble => match self.finder.find(&self.pending) {
                    Some(i) => {
                        self.pending.drain(..i + dl);
                        self.phase = Phase::AfterDelim;
                    }
                    None => {
                        let keep = self.pending.len().min(dl - 1);
                        self.pending.drain(..self.pending.len() - keep);
                        return Ok(());
                    }
                },
                Phase::AfterDelim => {
                    if self.pending.len() < 2 {
                        return Ok(());
                    }
                    if self.pending.starts_with(b"--") {
                        self.phase = Phase::Epilogue;
                        continue;
                    }
                    match memchr::memchr(b'\n', &self.pending) {
                        Some(i) => {
                            self.pending.drain(..=i);
                            self.phase = Phase::Headers;
                        }
                        None if self.pending.len() > 1024 => {
                            cx.soft_unscannable("malformed multipart delimiter line".into());
                            self.phase = Phase::Epilogue;
                        }
                        None => return Ok(()),
                    }
                }
                Phase::Headers => {
                    let end = if self.pending.starts_with(b"\r\n") {
                        Some((0, 2))
                    } else if self.pending.starts_with(b"\n") {
                        Some((0, 1))
                    } else {
                        memchr::memmem::find(&self.pending, b"\r\n\r\n")
                            .map(|i| (i, 4))
                            .or_else(|| memchr::memmem::find(&self.pending, b"\n\n").map(|i| (i, 2)))
                    };
                    match end {
                        Some((i, n)) => {
                            let headers: Vec<u8> = self.pending.drain(..i + n).take(i).collect();
                            self.start_part(cx, &headers)?;
                        }
                        None if self.pending.len() > MAX_HEADERS => {
                            cx.soft_unscannable("multipart part headers longer than 16 KiB".into());
                            self.phase = Phase::Epilogue;
                        }
                        None => return Ok(()),
                    }
                }
                Phase::Body(child) => match self.finder.find(&self.pending) {
                    Some(i) => {
                        child.write(cx, &self.pending[..i])?;
                        let Phase::Body(child) = std::mem::replace(&mut self.phase, Phase::AfterDelim) else {
                            return Ok(());
                        };
                        child.finish(cx)?;
                        self.pending.drain(..i + dl);
                    }
                    None => {
                        let emit = self.pending.len().saturating_sub(dl - 1);
                        child.write(cx, &self.pending[..emit])?;
                        self.pending.drain(..emit);
                        return Ok(());
                    }
                },
                Phase::Epilogue => {
                    self.pending.clear();
                    return Ok(());
                }
            }
        }
    }
}

/// An RFC 5987 extended value, `charset'language'percent-encoded`, decoded in its charset
/// (UTF-8 when the label is unknown); anything else as it is.
fn ext_value(v: &str) -> String {
    let mut it = v.splitn(3, '\'');
    let (Some(charset), Some(_language), Some(value)) = (it.next(), it.next(), it.next()) else { return v.to_string() };
    let encoding = encoding_rs::Encoding::for_label(charset.trim().as_bytes()).unwrap_or(encoding_rs::UTF_8);
    let bytes: std::borrow::Cow<'_, [u8]> = percent_encoding::percent_decode_str(value).into();
    encoding.decode_without_bom_handling(&bytes).0.into_owned()
}

impl Node for Multipart {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res {
        for piece in data.chunks(SLICE) {
            self.pending.extend_from_slice(piece);
            self.process(cx)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, cx: &mut Ctx) -> Res {
        match std::mem::replace(&mut self.phase, Phase::Epilogue) {
            Phase::Body(mut child) => {
                // No closing delimiter (truncated body): what arrived is still scanned.
                child.write(cx, &self.pending)?;
                child.finish(cx)?;
                cx.soft_unscannable("multipart body ends without its closing delimiter".into());
            }
            Phase::Preamble => cx.soft_unscannable("multipart body without any part".into()),
            _ => {}
        }
        Ok(())
    }
}
