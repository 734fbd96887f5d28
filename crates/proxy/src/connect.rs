//! CONNECT: decide, then intercept, tunnel blind, or refuse.
//!
//! The gate decides *before* the `200` so that a refused app gets a 403 to its CONNECT (issue 6),
//! and an IP-literal destination that the SSRF guard forbids never gets a tunnel. After the `200`:
//!
//! - **Intercept**: read (not consume) the first bytes until the ClientHello parses
//!   ([`portcullis_ca::peek_client_hello`]). Mint/reuse a leaf for the SNI (or the CONNECT host when
//!   there is none; IP literal → IP SAN), accept TLS with the peeked bytes replayed, and serve
//!   HTTP/1.1 or HTTP/2 (whatever the client negotiated in ALPN) into [`crate::forward`]. If the
//!   SNI names a different host than the CONNECT, the leaf is still minted for the CONNECT host:
//!   the client's own verification then fails, closed, instead of us vouching for a name whose
//!   upstream we never checked.
//! - **Non-TLS bytes**: [`Gate::on_opaque`](crate::Gate::on_opaque) decides tunnel or block.
//! - **Tunnel** (bypass list): the upstream TCP connection is opened first (so failures get a 502
//!   page, not a dead tunnel), the bypass is recorded with its reason, bytes are copied blind.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::forward::{Meta, RecordCtx, Tunnel, authenticate, block_response, upstream_error_page};
use crate::framing::{Conflicts, Tracker, Watched};
use crate::hooks::{Action, Blocked, ConnectDecision, OpaqueDecision, Stage};
use crate::io::Prefixed;
use crate::pages::{Page, render, wants_json};
use crate::upstream::UpstreamError;
use crate::{ConnCtx, ProxyBody};

/// ALPN the client side offers: HTTP/2 first, like real servers.
const CLIENT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// Longest ClientHello we wait for before calling the stream not-TLS.
const MAX_HELLO: usize = 64 * 1024;

pub(crate) async fn handle(ctx: ConnCtx, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let Some(auth) = req.uri().authority().cloned() else {
        let page = Page::error(StatusCode::BAD_REQUEST, "Bad request", "CONNECT needs a host:port target.", None);
        return render(&page, json);
    };
    let host = crate::addr::normalise(auth.host());
    let Some(port) = auth.port_u16() else {
        let page = Page::error(StatusCode::BAD_REQUEST, "Bad request", "CONNECT needs a host:port target.", None);
        return render(&page, json);
    };
    let identity = match authenticate(&ctx, req.headers(), json) {
        Ok(i) => i,
        Err(resp) => return *resp,
    };
    let shared = ctx.shared.clone();
    if let Err(e) = shared.upstream.resolver.precheck(&host, port) {
        return upstream_error_page(&UpstreamError::Resolve(e), json);
    }
    let url = format!("{host}:{port}");
    let method = req.method().clone();
    let meta = Meta { ctx: &ctx, identity: &identity, method: &method, host: &host, port, url: &url };
    let on_upgrade = hyper::upgrade::on(&mut req);
    match shared.gate.on_connect(&host, port, ctx.client, &identity) {
        ConnectDecision::Block(b) => block_response(&meta, Stage::Connect, b, 0, json).await,
        ConnectDecision::Tunnel { reason } => {
            let upstream = match shared.upstream.connector.tcp(&host, port).await {
                Ok(s) => s,
                Err(e) => return upstream_error_page(&e, json),
            };
            let detail = Blocked { rule: "bypass".into(), reason, ..Blocked::default() };
            RecordCtx::new(&meta).record(Stage::Connect, Action::Bypass, detail, 0).await;
            let activity = ctx.activity.clone();
            let idle = shared.cfg.limits.idle_timeout;
            tokio::spawn(async move {
                let Ok(client) = on_upgrade.await else { return };
                tokio::select! {
                    _ = splice(TokioIo::new(client), Bytes::new(), upstream) => {}
                    _ = activity.idle(idle) => {}
                }
            });
            ok_200()
        }
        ConnectDecision::Intercept => {
            let tunnel = Arc::new(Tunnel { host, port, identity });
            tokio::spawn(intercept(ctx, tunnel, on_upgrade));
            ok_200()
        }
    }
}

fn ok_200() -> Response<ProxyBody> {
    Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync())
}

/// Copy bytes both ways; `prefix` (already read from the client) goes upstream first.
async fn splice(mut client: TokioIo<Upgraded>, prefix: Bytes, mut upstream: TcpStream) {
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// After the 200: peek, then TLS + HTTP, or the opaque path.
async fn intercept(ctx: ConnCtx, tunnel: Arc<Tunnel>, on_upgrade: OnUpgrade) {
    let Ok(upgraded) = on_upgrade.await else { return };
    let mut io = TokioIo::new(upgraded);
    let limits = ctx.shared.cfg.limits.clone();
    let mut buf = BytesMut::with_capacity(2048);
    let peeked = tokio::time::timeout(limits.tls_handshake_timeout, async {
        loop {
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match portcullis_ca::peek_client_hello(&buf) {
                Ok(Some(hello)) => return Some(Ok(hello)),
                Ok(None) if buf.len() < MAX_HELLO => continue,
                Ok(None) => return Some(Err(())),
                Err(_) => return Some(Err(())),
            }
        }
    })
    .await;
    let hello = match peeked {
        Err(_) | Ok(None) => return,
        Ok(Some(Err(()))) => return opaque(ctx, tunnel, io, buf.freeze()).await,
        Ok(Some(Ok(hello))) => hello,
    };

    let name = match hello.sni.as_deref().map(crate::addr::normalise) {
        Some(sni) if sni == tunnel.host => sni,
        Some(sni) => {
            tracing::warn!(client = %ctx.client, connect = %tunnel.host, sni = %sni,
                "SNI differs from the CONNECT host; presenting a certificate for the CONNECT host");
            tunnel.host.clone()
        }
        None => tunnel.host.clone(),
    };
    let config = match ctx.shared.leaves.server_config(&name, CLIENT_ALPN).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(client = %ctx.client, host = %name, "cannot mint a certificate: {e}");
            return;
        }
    };
    let accept = TlsAcceptor::from(config).accept(Prefixed::new(buf.freeze(), io));
    let tls = match tokio::time::timeout(limits.tls_handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(client = %ctx.client, host = %name, "client TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .adaptive_window(true);
    let activity = ctx.activity.clone();
    let svc_ctx = ctx.clone();
    let conflicts = Conflicts::default();
    let tracker = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Tracker::disabled()
    } else {
        Tracker::new(limits.max_header_bytes.max(8192), conflicts.clone())
    };
    let index = std::sync::atomic::AtomicU64::new(0);
    let svc = service_fn(move |req| {
        let i = index.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::forward::intercepted(svc_ctx.clone(), tunnel.clone(), req, conflicts.contains(i))
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(Watched::new(tls, tracker)), svc);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(client = %ctx.client, "intercepted connection: {e}") },
        _ = activity.idle(limits.idle_timeout) => {}
    }
}

/// Non-TLS bytes in a CONNECT tunnel: the gate decides.
async fn opaque(ctx: ConnCtx, tunnel: Arc<Tunnel>, io: TokioIo<Upgraded>, prefix: Bytes) {
    let shared = ctx.shared.clone();
    let decision = shared.gate.on_opaque(&tunnel.host, tunnel.port, ctx.client, &tunnel.identity, &prefix);
    let method = http::Method::CONNECT;
    let url = format!("{}:{}", tunnel.host, tunnel.port);
    let meta = Meta { ctx: &ctx, identity: &tunnel.identity, method: &method, host: &tunnel.host, port: tunnel.port, url: &url };
    match decision {
        OpaqueDecision::Block(b) => {
            RecordCtx::new(&meta).record(Stage::Opaque, Action::Block, b, prefix.len() as u64).await;
            let mut io = io;
            let _ = io.shutdown().await;
        }
        OpaqueDecision::Tunnel { reason } => {
            let upstream = match shared.upstream.connector.tcp(&tunnel.host, tunnel.port).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(client = %ctx.client, "opaque tunnel upstream: {e}");
                    return;
                }
            };
            let detail = Blocked { rule: "opaque".into(), reason, ..Blocked::default() };
            RecordCtx::new(&meta).record(Stage::Opaque, Action::Bypass, detail, 0).await;
            let idle = shared.cfg.limits.idle_timeout;
            tokio::select! {
                _ = splice(io, prefix, upstream) => {}
                _ = ctx.activity.idle(idle) => {}
            }
        }
    }
}
