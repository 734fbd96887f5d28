//! Streaming tar (ustar, GNU long names, pax `path`): each regular member is streamed into a
//! nested file; nothing but the current 512-byte header is held. The `tar` crate parses each
//! header (sizes in octal or base-256, ustar prefixes); the state machine around it is here
//! because `tar::Archive` pulls from a `Read`, and this pipeline is pushed chunk by chunk.

use crate::engine::{Ctx, Node, Res};
use crate::sniff::{Discard, FileNode, Origin};

const BLOCK: usize = 512;
/// Longest GNU long-name / pax header we keep.
const MAX_META: u64 = 64 * 1024;

/// A ustar magic, or a header whose checksum is right (old v7 archives have no magic).
pub(crate) fn looks_like_tar(h: &[u8]) -> bool {
    if h.len() < BLOCK {
        return false;
    }
    if &h[257..262] == b"ustar" {
        return true;
    }
    header_checksum_ok(&h[..BLOCK]) && h[..100].iter().any(|&c| c != 0)
}

fn header_checksum_ok(b: &[u8]) -> bool {
    let stored = tar::Header::from_byte_slice(b).cksum().ok();
    let sum: u32 = b.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { 32 } else { u32::from(c) }).sum();
    stored == Some(sum)
}

enum St {
    Header,
    /// Streaming a member's data; `pad` bytes of block padding follow.
    Data {
        child: Box<dyn Node>,
        left: u64,
        pad: u64,
    },
    /// Collecting a long name or pax header of `left` bytes.
    Meta {
        pax: bool,
        left: u64,
        pad: u64,
    },
    Skip {
        left: u64,
    },
    End,
}

pub(crate) struct TarNode {
    depth: u32,
    block: Vec<u8>,
    meta: Vec<u8>,
    next_name: Option<String>,
    st: St,
}

impl TarNode {
    pub fn new(depth: u32) -> TarNode {
        TarNode { depth, block: Vec::with_capacity(BLOCK), meta: Vec::new(), next_name: None, st: St::Header }
    }

    fn header(&mut self, cx: &mut Ctx) -> Res {
        let b = std::mem::take(&mut self.block);
        if b.iter().all(|&c| c == 0) {
            self.st = St::End;
            return Ok(());
        }
        if !header_checksum_ok(&b) {
            cx.soft_unscannable("corrupt tar header (checksum)".into());
            self.st = St::End;
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(&b);
        let size = match h.entry_size() {
            Ok(s) => s,
            Err(_) => {
                cx.soft_unscannable("corrupt tar header (size)".into());
                self.st = St::End;
                return Ok(());
            }
        };
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let t = h.entry_type();
        if t.is_gnu_longname() || t == tar::EntryType::XHeader {
            if size > MAX_META {
                cx.soft_unscannable("tar long-name/pax header too large".into());
                self.st = St::Skip { left: size + pad };
            } else {
                self.meta.clear();
                self.st = St::Meta { pax: t == tar::EntryType::XHeader, left: size, pad };
            }
            return Ok(());
        }
        let name = self.next_name.take().unwrap_or_else(|| String::from_utf8_lossy(&h.path_bytes()).into_owned());
        if !(t.is_file() || t.is_contiguous() || t.as_byte() == b'\0') || t.is_dir() {
            self.st = St::Skip { left: size + pad };
            return Ok(());
        }
        cx.count_entry()?;
        let child: Box<dyn Node> = match cx.child_depth(self.depth) {
            Some(d) => Box::new(FileNode::new(Some(name), None, d, Origin::Normal)),
            None => {
                cx.soft_unscannable(format!("tar member nested deeper than max_depth ({})", cx.limits.max_depth));
                Box::new(Discard)
            }
        };
        if size == 0 {
            self.st = St::Header;
            return child.finish(cx);
        }
        self.st = St::Data { child, left: size, pad };
        Ok(())
    }

    fn end_meta(&mut self, pax: bool) {
        let m = std::mem::take(&mut self.meta);
        if !pax {
            let end = memchr::memchr(0, &m).unwrap_or(m.len());
            self.next_name = Some(String::from_utf8_lossy(&m[..end]).into_owned());
            return;
        }
        // pax records: "<len> key=value\n"
        let mut rest = &m[..];
        while let Some(sp) = memchr::memchr(b' ', rest) {
            let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
            if len <= sp || len > rest.len() {
                break;
            }
            let rec = &rest[sp + 1..len];
            let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
            if let Some(v) = rec.strip_prefix(b"path=") {
                self.next_name = Some(String::from_utf8_lossy(v).into_owned());
            }
            rest = &rest[len..];
        }
    }
}

impl Node for TarNode {
    fn write(&mut self, cx: &mut Ctx, mut data: &[u8]) -> Res {
        while !data.is_empty() {
            match &mut self.st {
                St::End => return Ok(()),
                St::Header => {
                    let take = (BLOCK - self.block.len()).min(data.len());
                    self.block.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.block.len() == BLOCK {
                        self.header(cx)?;
                    }
                }
                St::Data { child, left, pad } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    child.write(cx, &data[..n])?;
                    data = &data[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        let pad = *pad;
                        if let St::Data { child, .. } = std::mem::replace(&mut self.st, St::Skip { left: pad }) {
                            child.finish(cx)?;
                        }
                    }
                }
                St::Meta { pax, left, pad } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    self.meta.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        let (pax, pad) = (*pax, *pad);
                        self.end_meta(pax);
                        self.st = St::Skip { left: pad };
                    }
                }
                St::Skip { left } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    data = &data[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.st = St::Header;
                    }
                }
            }
            if let St::Skip { left: 0 } = self.st {
                self.st = St::Header;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, cx: &mut Ctx) -> Res {
        match self.st {
            St::Data { child, .. } => {
                cx.soft_unscannable("tar archive truncated inside a member".into());
                child.finish(cx)
            }
            St::Header if !self.block.is_empty() => {
                cx.soft_unscannable("tar archive truncated inside a header".into());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
