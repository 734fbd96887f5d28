//! Portcullis' intercepting forward proxy.
//!
//! What it does: accept explicit-proxy clients (absolute-form HTTP/1.1 and CONNECT), terminate TLS
//! with a leaf minted by [`portcullis_ca`], speak HTTP/1.1 or HTTP/2 on each side as each side
//! negotiates, verify every upstream certificate, stream upload bodies through an inspector while
//! forwarding them, and refuse what the [`Gate`] refuses — recording it through the [`Recorder`]
//! before the block page goes out.
//!
//! What it does not do: decide. Users, apps, policy and the audit log live behind the two traits in
//! [`hooks`]; the binary plugs in its own. Upstream certificate verification cannot be turned off.
//!
//! Layers (each its own module, testable alone):
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | validated settings and safe limits |
//! | `server` (this file) | listener, client allow-list, connection cap, idle timeout |
//! | `connect` | CONNECT: decide, peek ClientHello, intercept / tunnel / opaque |
//! | [`framing`] | request-smuggling guard: CL+TE heads found in the raw HTTP/1.1 stream → 400 |
//! | [`forward`] | one request: gate, rewrite, send, rescue, record |
//! | [`inspect`] | request body through the inspector, tail held back until the verdict |
//! | [`upstream`] | verified TLS, pooling, resumption, typed errors |
//! | [`addr`] | DNS overrides and the SSRF guard |
//! | [`pages`] | block and error pages, HTML or JSON |
//! | [`io`] | replay of peeked bytes, idle-timeout activity clock |
//!
//! Limits (all in [`Limits`], safe defaults): request head size (`max_buf_size` / HTTP/2 header
//! list), head read time (hyper's `header_read_timeout`: slowloris), idle time (no byte either way,
//! tunnels included), connection count (a semaphore permit held by every task of a client, so
//! tunnels count), HTTP/2 concurrent streams and rapid-reset counters (hyper/h2's
//! `max_pending_accept_reset_streams`, `max_local_error_reset_streams`).
#![forbid(unsafe_code)]

pub mod addr;
pub mod config;
mod connect;
pub mod forward;
pub mod framing;
pub mod hooks;
pub mod inspect;
pub mod io;
pub mod pages;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_ca::LeafCache;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::{ConfigError, Limits, ProxyConfig, ResolveOverride};
pub use hooks::{
    Action, Auth, Blocked, BodyInspector, ChunkVerdict, ConnectDecision, Evidence, FileRecord, FinalVerdict, Gate, Identity, LogRecorder,
    OpaqueDecision, RecordFuture, Recorder, RequestDecision, RequestHead, Stage, TransferRecord,
};

/// Boxed error used in bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of every response the proxy sends to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("upstream TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

pub(crate) struct Shared {
    pub cfg: ProxyConfig,
    pub gate: Arc<dyn Gate>,
    pub recorder: Arc<dyn Recorder>,
    pub upstream: upstream::Upstream,
    pub leaves: Arc<LeafCache>,
    conns: Arc<Semaphore>,
}

/// Per-client-connection context.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub client: SocketAddr,
    pub activity: io::Activity,
    /// Which upstream HTTP/2 lane this connection's requests use ([`upstream::Upstream::for_request`]).
    pub lane: usize,
    /// Held by every task serving this client (tunnels included): counts toward max_connections.
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// A bound, not yet running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl Proxy {
    /// Validate the config and bind the listener.
    pub async fn bind(
        cfg: ProxyConfig,
        leaves: Arc<LeafCache>,
        gate: Arc<dyn Gate>,
        recorder: Arc<dyn Recorder>,
    ) -> Result<Proxy, ProxyError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen).await.map_err(|source| ProxyError::Bind { addr: cfg.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: cfg.listen, source })?;
        let upstream = upstream::Upstream::new(&cfg)?;
        let conns = Arc::new(Semaphore::new(cfg.limits.max_connections));
        Ok(Proxy { shared: Arc::new(Shared { cfg, gate, recorder, upstream, leaves, conns }), listener, addr })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The leaf cache (for stats).
    pub fn leaves(&self) -> Arc<LeafCache> {
        self.shared.leaves.clone()
    }

    /// Accept connections until `shutdown` resolves. Connections already accepted run to their end.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut lane = 0usize;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                a = self.listener.accept() => a,
            };
            let (tcp, client) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !self.shared.cfg.client_allowed(client.ip()) {
                tracing::warn!(client = %client, "refused: client address not in allow_clients");
                continue;
            }
            let Ok(permit) = self.shared.conns.clone().try_acquire_owned() else {
                tracing::warn!(client = %client, "refused: max_connections reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            lane = lane.wrapping_add(1);
            let ctx = ConnCtx { shared: self.shared.clone(), client, activity: io::Activity::new(), lane, _permit: Arc::new(permit) };
            tokio::spawn(serve_client(ctx, tcp));
        }
    }
}

/// One client connection on the listener: HTTP/1.1 with upgrades (CONNECT).
async fn serve_client(ctx: ConnCtx, tcp: tokio::net::TcpStream) {
    let limits = ctx.shared.cfg.limits.clone();
    let conflicts = framing::Conflicts::default();
    let tracker = framing::Tracker::new(limits.max_header_bytes.max(8192), conflicts.clone());
    let io = TokioIo::new(framing::Watched::new(io::Tracked::new(tcp, ctx.activity.clone()), tracker));
    let svc_ctx = ctx.clone();
    let index = std::sync::atomic::AtomicU64::new(0);
    let svc = service_fn(move |req| {
        let i = index.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        forward::plain(svc_ctx.clone(), req, conflicts.contains(i))
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(limits.max_header_bytes.max(8192));
    let conn = b.serve_connection(io, svc).with_upgrades();
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(client = %ctx.client, "client connection: {e}") },
        _ = ctx.activity.idle(limits.idle_timeout) => tracing::debug!(client = %ctx.client, "idle timeout"),
    }
}
