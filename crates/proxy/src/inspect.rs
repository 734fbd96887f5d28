//! [`InspectedBody`]: a request body that streams through a [`BodyInspector`] on its way upstream.
//!
//! Every frame is shown to the inspector, then forwarded as soon as the *next* frame has arrived
//! and been inspected, so exactly one frame (the tail) is held back at any time: memory per
//! transfer is one frame, whatever the upload size. When the client's body ends, the inspector's
//! final verdict releases the tail (allow) or turns it into an error (block). An error from a
//! request body makes hyper abort the upstream request — the HTTP/1.1 connection is closed before
//! the body is complete, an HTTP/2 stream is reset — so the origin never has the whole body.
//!
//! The block itself travels to the request handler through a oneshot channel; the handler records
//! it (durably) and only then answers the client with the block page.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::BoxError;
use crate::hooks::{Blocked, BodyInspector, ChunkVerdict, FinalVerdict};

/// Why an inspected body stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The inspector blocked the transfer; the handler has the details.
    #[error("upload blocked by inspection")]
    Blocked,
    /// The client's body broke (bad chunking, reset, truncated).
    #[error("client request body: {0}")]
    Client(#[source] BoxError),
}

/// Wraps a body: feeds the inspector, holds back the last frame until the verdict.
pub struct InspectedBody<B> {
    inner: Option<B>,
    inspector: Option<Box<dyn BodyInspector>>,
    held: Option<Frame<Bytes>>,
    finished: bool,
    blocked: Option<oneshot::Sender<(Blocked, Option<B>)>>,
    bytes: Arc<AtomicU64>,
}

impl<B> InspectedBody<B> {
    /// `blocked` receives the block details and the unread rest of the body (so the handler can
    /// drain it) if the inspector blocks; it is dropped otherwise. `bytes` counts body bytes seen.
    pub fn new(inner: B, inspector: Box<dyn BodyInspector>, blocked: oneshot::Sender<(Blocked, Option<B>)>, bytes: Arc<AtomicU64>) -> Self {
        InspectedBody { inner: Some(inner), inspector: Some(inspector), held: None, finished: false, blocked: Some(blocked), bytes }
    }

    fn block(&mut self, b: Blocked) -> InspectError {
        self.inspector = None;
        self.held = None;
        self.finished = true;
        let rest = self.inner.take();
        if let Some(tx) = self.blocked.take() {
            let _ = tx.send((b, rest));
        }
        InspectError::Blocked
    }
}

impl<B> Body for InspectedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = InspectError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, InspectError>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(this.held.take().map(Ok));
            }
            let (Some(inspector), Some(inner)) = (this.inspector.as_mut(), this.inner.as_mut()) else {
                // Already blocked and reported; stay errored.
                return Poll::Ready(Some(Err(InspectError::Blocked)));
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.inspector = None;
                    this.held = None;
                    return Poll::Ready(Some(Err(InspectError::Client(e.into()))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        if data.is_empty() {
                            continue;
                        }
                        this.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let ChunkVerdict::Block(b) = inspector.chunk(data) {
                            return Poll::Ready(Some(Err(this.block(b))));
                        }
                    }
                    if let Some(prev) = this.held.replace(frame) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(None) => {
                    let Some(inspector) = this.inspector.take() else { continue };
                    match inspector.finish() {
                        FinalVerdict::Allow => {
                            this.finished = true;
                            this.blocked = None;
                        }
                        FinalVerdict::Block(b) => return Poll::Ready(Some(Err(this.block(b)))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.held.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The same bytes go through; only their timing changes.
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    struct FindWord {
        word: &'static [u8],
        seen: Vec<u8>,
    }
    impl BodyInspector for FindWord {
        fn chunk(&mut self, bytes: &[u8]) -> ChunkVerdict {
            self.seen.extend_from_slice(bytes);
            ChunkVerdict::Continue
        }
        fn finish(self: Box<Self>) -> FinalVerdict {
            if self.seen.windows(self.word.len()).any(|w| w == self.word) {
                FinalVerdict::Block(Blocked { rule: "word".into(), ..Default::default() })
            } else {
                FinalVerdict::Allow
            }
        }
    }

    type TestBody = StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>>;

    fn body(chunks: &[&'static str]) -> TestBody {
        let v: Vec<_> = chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))).collect();
        StreamBody::new(futures_util::stream::iter(v))
    }

    #[tokio::test]
    async fn clean_body_passes_whole() {
        let (tx, rx) = oneshot::channel();
        let n = Arc::new(AtomicU64::new(0));
        let b = InspectedBody::new(body(&["ab", "cd", "ef"]), Box::new(FindWord { word: b"zz", seen: vec![] }), tx, n.clone());
        let out = b.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"abcdef");
        assert_eq!(n.load(Ordering::Relaxed), 6);
        assert!(rx.await.is_err(), "no block sent");
    }

    #[tokio::test]
    async fn blocked_body_never_releases_its_tail() {
        let (tx, rx) = oneshot::channel();
        let mut b = InspectedBody::new(
            body(&["ab", "SECRET", "ef"]),
            Box::new(FindWord { word: b"SECRET", seen: vec![] }),
            tx,
            Arc::new(AtomicU64::new(0)),
        );
        let mut got = Vec::new();
        let mut errored = false;
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) => got.extend_from_slice(f.data_ref().unwrap()),
                Err(InspectError::Blocked) => {
                    errored = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(errored);
        assert_eq!(got, b"abSECRET", "only frames before the tail went out");
        assert_eq!(rx.await.unwrap().0.rule, "word");
    }

    #[tokio::test]
    async fn early_block_stops_immediately() {
        struct Early;
        impl BodyInspector for Early {
            fn chunk(&mut self, _: &[u8]) -> ChunkVerdict {
                ChunkVerdict::Block(Blocked::default())
            }
            fn finish(self: Box<Self>) -> FinalVerdict {
                FinalVerdict::Allow
            }
        }
        let (tx, rx) = oneshot::channel();
        let mut b = InspectedBody::new(body(&["ab", "cd"]), Box::new(Early), tx, Arc::new(AtomicU64::new(0)));
        assert!(matches!(b.frame().await, Some(Err(InspectError::Blocked))));
        assert!(rx.await.is_ok());
    }
}
