//! Request-smuggling guard for HTTP/1.1 client connections.
//!
//! hyper resolves a request carrying both `Content-Length` and `Transfer-Encoding` the way RFC 9112
//! §6.3 allows (chunked wins, `Content-Length` dropped, connection closed afterwards) and does not
//! tell the service. Issue 5 wants such requests refused with 400 and never forwarded, because
//! another hop might frame them differently. So this module watches the raw bytes hyper reads,
//! follows HTTP/1.1 message framing exactly as hyper does (heads; bodies by `Content-Length` or
//! chunked), and notes the index of every request head that carries both headers. The request
//! handler checks its own index before doing anything.
//!
//! [`Tracker`] is sans-IO (tested on every split of its input); [`Watched`] is the read-side
//! adapter. The tracker gives up (and stops costing anything) on input hyper itself will reject,
//! on CONNECT (a tunnel follows) and on oversized heads.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Request indexes (0-based, per connection) whose heads had conflicting framing headers.
#[derive(Clone, Debug, Default)]
pub struct Conflicts(Arc<Mutex<Vec<u64>>>);

impl Conflicts {
    /// Whether request number `index` on this connection must be refused.
    pub fn contains(&self, index: u64) -> bool {
        self.0.lock().map(|v| v.contains(&index)).unwrap_or(true)
    }

    fn add(&self, index: u64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(index);
        }
    }
}

#[derive(Debug, PartialEq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkCrlf(u8),
    Trailers,
    Off,
}

/// Follows HTTP/1.1 request framing over a byte stream.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    line: Vec<u8>,
    index: u64,
    max_head: usize,
    conflicts: Conflicts,
}

impl Tracker {
    pub fn new(max_head: usize, conflicts: Conflicts) -> Self {
        Tracker { state: State::Head, line: Vec::new(), index: 0, max_head, conflicts }
    }

    /// A tracker that watches nothing (HTTP/2 connections: no such framing ambiguity there).
    pub fn disabled() -> Self {
        Tracker { state: State::Off, line: Vec::new(), index: 0, max_head: 0, conflicts: Conflicts::default() }
    }

    /// Request heads seen so far.
    pub fn requests_seen(&self) -> u64 {
        self.index
    }

    /// Feed the next bytes read from the client.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Fixed(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if n == take as u64 { State::Head } else { State::Fixed(n - take as u64) };
                }
                State::ChunkData(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if n == take as u64 { State::ChunkCrlf(2) } else { State::ChunkData(n - take as u64) };
                }
                State::ChunkCrlf(k) => {
                    // hyper requires exactly CRLF after chunk data.
                    let expect = if k == 2 { b'\r' } else { b'\n' };
                    if data[0] != expect {
                        self.state = State::Off;
                        return;
                    }
                    data = &data[1..];
                    self.state = if k == 2 { State::ChunkCrlf(1) } else { State::ChunkSize };
                }
                State::Head => {
                    if self.line.is_empty() {
                        // Leading empty lines before a request are ignored (hyper does too).
                        let skip = data.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let before = self.line.len();
                    self.line.extend_from_slice(data);
                    let start = before.saturating_sub(3);
                    match memchr_crlfcrlf(&self.line[start..]) {
                        Some(pos) => {
                            let end = start + pos + 4;
                            let consumed = end - before;
                            data = &data[consumed..];
                            let head = std::mem::take(&mut self.line);
                            self.on_head(&head[..end]);
                        }
                        None => {
                            if self.line.len() > self.max_head {
                                self.state = State::Off;
                            }
                            return;
                        }
                    }
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > 4096 {
                            self.state = State::Off;
                        }
                        return;
                    };
                    self.line.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line);
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match self.state {
            State::Trailers if text.is_empty() => self.state = State::Head,
            State::ChunkSize => {
                let size = text.split(|b| *b == b';').next().unwrap_or(b"");
                let size = std::str::from_utf8(size).ok().map(str::trim).and_then(|s| u64::from_str_radix(s, 16).ok());
                self.state = match size {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off,
                };
            }
            _ => {}
        }
    }

    fn on_head(&mut self, head: &[u8]) {
        let index = self.index;
        self.index += 1;
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
            self.state = State::Off;
            return;
        };
        if req.method == Some("CONNECT") {
            self.state = State::Off;
            return;
        }
        let mut te: Option<&[u8]> = None;
        let mut cl: Option<&[u8]> = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl = Some(h.value);
            }
        }
        if te.is_some() && cl.is_some() {
            self.conflicts.add(index);
        }
        self.state = match (te, cl) {
            (Some(v), _) => {
                let last = v.rsplit(|b| *b == b',').next().unwrap_or(b"");
                if std::str::from_utf8(last).map(|s| s.trim().eq_ignore_ascii_case("chunked")).unwrap_or(false) {
                    State::ChunkSize
                } else {
                    State::Off
                }
            }
            (None, Some(v)) => match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(0) => State::Head,
                Some(n) => State::Fixed(n),
                None => State::Off,
            },
            (None, None) => State::Head,
        };
    }
}

fn memchr_crlfcrlf(h: &[u8]) -> Option<usize> {
    h.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Feeds every byte read through a [`Tracker`].
pub struct Watched<I> {
    inner: I,
    tracker: Tracker,
}

impl<I> Watched<I> {
    pub fn new(inner: I, tracker: Tracker) -> Self {
        Watched { inner, tracker }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.tracker.feed(&buf.filled()[before..]);
        }
        r
    }
}

crate::io::delegate_async_write!(Watched);

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nPOST \r\n0\r\nX-T: 1\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /e HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n";

    fn run(chunks: &[&[u8]]) -> (Conflicts, u64) {
        let c = Conflicts::default();
        let mut t = Tracker::new(65536, c.clone());
        for ch in chunks {
            t.feed(ch);
        }
        (c, t.index)
    }

    #[test]
    fn finds_the_conflicting_request_on_every_split() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let (c, n) = run(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(n, 5, "split {i},{j}");
                assert!(c.contains(3) && !c.contains(0) && !c.contains(1) && !c.contains(2) && !c.contains(4), "split {i},{j}");
            }
        }
    }

    #[test]
    fn body_text_that_looks_like_headers_is_not_a_head() {
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut s = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        s.extend_from_slice(body);
        let (c, n) = run(&[&s]);
        assert_eq!(n, 1);
        assert!(!c.contains(0) && !c.contains(1));
    }

    #[test]
    fn gives_up_on_connect_and_garbage() {
        let (_, n) = run(&[b"CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01GET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(n, 1);
        let (_, n) = run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(n, 1);
    }
}
