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
//!
//! Inspection is synchronous and runs where the body is polled: on a runtime worker. That is
//! right for streaming formats (work per chunk is bounded and small), but a buffered document
//! (zip, office file, PDF) is parsed in one call when it ends, which takes seconds for a large
//! PDF, and meanwhile every other connection queued on that worker would wait. So once the
//! inspector holds [`HEAVY_BUFFERED`] bytes, its calls go through `block_in_place`: the worker
//! hands its other tasks to another thread for the duration.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::BoxError;
use crate::hooks::{Blocked, BodyInspector, ChunkVerdict, FinalVerdict};

/// Buffered bytes from which an inspector call may be long ([`BodyInspector::buffered_bytes`]).
pub const HEAVY_BUFFERED: usize = 256 * 1024;

/// Runs an inspector call; if `heavy`, on a multi-thread runtime, through `block_in_place` so
/// the worker's other tasks move to another thread instead of waiting for it. (A current-thread
/// runtime has no other thread to move them to.)
/// The runtime is looked up only for heavy calls: this runs for every chunk of every upload.
fn run_inspector<T>(heavy: bool, call: impl FnOnce() -> T) -> T {
    let multi_thread =
        || tokio::runtime::Handle::try_current().is_ok_and(|h| matches!(h.runtime_flavor(), tokio::runtime::RuntimeFlavor::MultiThread));
    if heavy && multi_thread() { tokio::task::block_in_place(call) } else { call() }
}

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
                        let heavy = inspector.buffered_bytes() >= HEAVY_BUFFERED;
                        if let ChunkVerdict::Block(b) = run_inspector(heavy, || inspector.chunk(data)) {
                            return Poll::Ready(Some(Err(this.block(b))));
                        }
                    }
                    if let Some(prev) = this.held.replace(frame) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(None) => {
                    let Some(inspector) = this.inspector.take() else { continue };
                    let heavy = inspector.buffered_bytes() >= HEAVY_BUFFERED;
                    match run_inspector(heavy, || inspector.finish()) {
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

    /// An inspector parsing a large buffered document: its `finish` blocks its thread until
    /// `go` arrives (or 20 s pass), after telling `started`.
    struct SlowParse {
        started: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    }
    impl BodyInspector for SlowParse {
        fn chunk(&mut self, _: &[u8]) -> ChunkVerdict {
            ChunkVerdict::Continue
        }
        fn finish(self: Box<Self>) -> FinalVerdict {
            let _ = self.started.send(());
            match self.go.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(()) => FinalVerdict::Allow,
                Err(_) => FinalVerdict::Block(Blocked { rule: "other tasks never ran".into(), ..Default::default() }),
            }
        }
        fn buffered_bytes(&self) -> usize {
            HEAVY_BUFFERED
        }
    }

    /// While a heavy inspector call blocks the only worker thread, the runtime's other tasks
    /// still run: here the task that lets the call finish is spawned only once it has started,
    /// so without `block_in_place` it could never run (and the call gives up after 20 s).
    #[test]
    fn a_heavy_inspector_call_does_not_stall_the_worker_s_other_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let (tx, _rx) = oneshot::channel();
        let b = InspectedBody::new(
            body(&["ab", "cd"]),
            Box::new(SlowParse { started: started_tx, go: go_rx }),
            tx,
            Arc::new(AtomicU64::new(0)),
        );
        let collected = rt.spawn(async move { b.collect().await.map(|c| c.to_bytes()) });
        started.recv().unwrap();
        rt.spawn(async move { go.send(()).unwrap() });
        let out = rt.block_on(collected).unwrap();
        assert_eq!(&out.expect("allowed: the releasing task ran during the call")[..], b"abcd");
    }

    /// On a current-thread runtime there is no other thread: heavy calls run in place (no panic).
    #[tokio::test]
    async fn a_heavy_inspector_call_on_a_current_thread_runtime_runs_in_place() {
        let (started_tx, _started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        go.send(()).unwrap();
        let (tx, _rx) = oneshot::channel();
        let b = InspectedBody::new(body(&["ab"]), Box::new(SlowParse { started: started_tx, go: go_rx }), tx, Arc::new(AtomicU64::new(0)));
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"ab");
    }
}
