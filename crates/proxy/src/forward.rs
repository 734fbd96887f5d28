//! One request, from head to response: the proxy's request path.
//!
//! The layers, in order, each testable on its own:
//!
//! 1. **Entry** (`plain` for the listener, `intercepted` inside a TLS tunnel): CONNECT goes to
//!    `connect`; an intercepted request gets its absolute URI rebuilt from the CONNECT target
//!    (the `Host` header is not trusted to pick the destination), and one that names another
//!    host than the tunnel's is answered 421.
//! 2. **Authenticate** (plain requests only; tunnelled requests inherit the CONNECT identity).
//! 3. **Decide** ([`Gate::on_request`](crate::Gate::on_request)): block now, or forward with an
//!    optional body inspector and extra headers.
//! 4. **Rewrite** ([`strip_hop_by_hop`]): hop-by-hop headers and `Expect` go (the proxy itself
//!    answers `100-continue` by reading the body), the version becomes the upstream's business.
//! 5. **Send** through the pooled upstream client with the body wrapped in
//!    [`InspectedBody`]; a block from the inspector wins the race
//!    against the upstream response.
//! 6. **Rescue** (`upstream_failure`): typed errors become pages — client body broken → 400,
//!    SSRF → 403, bad certificate → 502 naming the reason, timeout → 504.
//! 7. **Record** (`block_response`): a block is recorded durably, then the page is sent.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::hooks::{Action, Auth, Blocked, Identity, RequestDecision, RequestHead, Stage, TransferRecord};
use crate::inspect::{InspectError, InspectedBody};
use crate::pages::{Page, render, wants_json};
use crate::upstream::{UpstreamBody, UpstreamError};
use crate::{BoxError, ConnCtx, ProxyBody};

/// The CONNECT target an intercepted connection belongs to.
#[derive(Clone, Debug)]
pub(crate) struct Tunnel {
    pub host: String,
    pub port: u16,
    pub identity: Identity,
}

/// Requests arriving on the proxy listener: CONNECT or absolute-form.
/// 400 for a request whose head had both Content-Length and Transfer-Encoding (see `framing`).
fn smuggling_refused(req: &Request<Incoming>, client: std::net::SocketAddr) -> Response<ProxyBody> {
    tracing::warn!(client = %client, uri = %req.uri(), "refused: both Content-Length and Transfer-Encoding (request smuggling)");
    let page = Page::error(
        StatusCode::BAD_REQUEST,
        "Bad request",
        "The request had both Content-Length and Transfer-Encoding headers; it was refused and not forwarded.",
        None,
    );
    let mut r = render(&page, wants_json(req.headers()));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(crate) async fn plain(ctx: ConnCtx, req: Request<Incoming>, conflicting_framing: bool) -> Result<Response<ProxyBody>, Infallible> {
    if conflicting_framing {
        return Ok(smuggling_refused(&req, ctx.client));
    }
    if req.method() == Method::CONNECT {
        return Ok(crate::connect::handle(ctx, req).await);
    }
    let json = wants_json(req.headers());
    let scheme_ok = matches!(req.uri().scheme_str(), Some("http") | Some("https"));
    if !scheme_ok || req.uri().authority().is_none() {
        return Ok(render(
            &Page::error(
                StatusCode::BAD_REQUEST,
                "Not a proxy request",
                "This is the Portcullis forward proxy. Configure it as your HTTP/HTTPS proxy; it does not serve pages itself.",
                None,
            ),
            json,
        ));
    }
    let identity = match authenticate(&ctx, req.headers(), json) {
        Ok(i) => i,
        Err(resp) => return Ok(*resp),
    };
    Ok(forward(ctx, identity, req, false).await)
}

/// Requests inside an intercepted TLS tunnel (HTTP/1.1 or HTTP/2, origin-form or absolute).
pub(crate) async fn intercepted(
    ctx: ConnCtx,
    tunnel: Arc<Tunnel>,
    mut req: Request<Incoming>,
    conflicting_framing: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    if conflicting_framing {
        return Ok(smuggling_refused(&req, ctx.client));
    }
    if let Some(named) = misdirected(&req, &tunnel) {
        tracing::warn!(client = %ctx.client, tunnel = %tunnel.host, named = %named, "refused: request names another host than its tunnel (421)");
        let reason = format!(
            "This encrypted connection was opened for {}; the request names {named}. Your browser opens a new connection for that site on its own; if it does not, reload the page.",
            tunnel.host
        );
        let page = Page::error(StatusCode::MISDIRECTED_REQUEST, "Misdirected request", &reason, None);
        return Ok(render(&page, wants_json(req.headers())));
    }
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = if tunnel.host.contains(':') { format!("[{}]", tunnel.host) } else { tunnel.host.clone() };
    let authority = if tunnel.port == 443 { host } else { format!("{host}:{}", tunnel.port) };
    match Uri::builder().scheme("https").authority(authority).path_and_query(pq).build() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => {
            let json = wants_json(req.headers());
            let detail = e.to_string();
            let page = Page::error(StatusCode::BAD_REQUEST, "Bad request", "The request target is not valid.", Some(&detail));
            return Ok(render(&page, json));
        }
    }
    // The destination is the CONNECT target; a different Host header must not steer it.
    req.headers_mut().remove(header::HOST);
    Ok(forward(ctx, tunnel.identity.clone(), req, true).await)
}

/// The authority a tunnelled request names (HTTP/2 `:authority`, an absolute-form URI, or the
/// `Host` header) when it is not the tunnel's CONNECT target. Such a request is answered 421
/// (RFC 9110 §15.5.20) rather than rewritten: its certificate, policy decision and audit record
/// all belong to the CONNECT host, and sending it there anyway would deliver a request the
/// client meant for another site (or, behind a shared CDN, let a "fronted" Host pick the site).
fn misdirected(req: &Request<Incoming>, tunnel: &Tunnel) -> Option<String> {
    let named = match req.uri().authority() {
        Some(a) => a.clone(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.parse::<http::uri::Authority>().ok()?,
    };
    let host = named.host().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    // A name without a port is taken as the tunnel's (sloppy clients omit a non-default port;
    // the destination is the tunnel's either way).
    let port = named.port_u16().unwrap_or(tunnel.port);
    let same = host.eq_ignore_ascii_case(tunnel.host.trim_end_matches('.')) && port == tunnel.port;
    (!same).then(|| named.to_string())
}

/// Run the gate's authentication on a proxy request; `Err` is the 407/403 response.
pub(crate) fn authenticate(ctx: &ConnCtx, headers: &HeaderMap, json: bool) -> Result<Identity, Box<Response<ProxyBody>>> {
    match ctx.shared.gate.authenticate(ctx.client, headers.get(header::PROXY_AUTHORIZATION)) {
        Auth::Allow(i) => Ok(i),
        Auth::Challenge { realm } => {
            let mut r = render(
                &Page::error(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "Proxy authentication required",
                    "Sign in to the Portcullis gateway to continue.",
                    None,
                ),
                json,
            );
            let v = format!("Basic realm=\"{}\"", realm.replace('"', ""));
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
            }
            Err(Box::new(r))
        }
        Auth::Deny(b) => {
            let page = Page::error(StatusCode::FORBIDDEN, "Access denied", &b.reason, None);
            Err(Box::new(render(&page, json)))
        }
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), plus the ones
/// named in `Connection`. For an upgrade, `Connection: upgrade` and `Upgrade` are kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(&name);
    }
    for name in [header::PROXY_AUTHORIZATION, header::PROXY_AUTHENTICATE, header::TE, header::TRAILER, header::TRANSFER_ENCODING] {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Result of sending upstream.
enum Sent {
    Response(Response<Incoming>),
    Blocked(Blocked, Option<Incoming>),
    Failed(hyper_util::client::legacy::Error),
}

pub(crate) async fn forward(ctx: ConnCtx, identity: Identity, mut req: Request<Incoming>, intercepted: bool) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let shared = ctx.shared.clone();
    let Some(host) = req.uri().host().map(crate::addr::normalise) else {
        return render(&Page::error(StatusCode::BAD_REQUEST, "Bad request", "The request has no host.", None), json);
    };
    let tls = req.uri().scheme_str() == Some("https");
    let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let url = req.uri().to_string();
    let method = req.method().clone();

    let decision = shared.gate.on_request(&RequestHead {
        client: ctx.client,
        identity: &identity,
        method: &method,
        uri: req.uri(),
        headers: req.headers(),
        host: &host,
        port,
        intercepted,
    });
    let (inspector, add_headers) = match decision {
        RequestDecision::Block(b) => {
            let meta = Meta { ctx: &ctx, identity: &identity, method: &method, host: &host, port, url: &url };
            return block_response(&meta, Stage::Request, b, 0, json).await;
        }
        RequestDecision::Forward { inspector, add_headers } => (inspector, add_headers),
    };

    let upgrade = is_upgrade(&req);
    // An HTTP/1.x request goes upstream as HTTP/1.1 too (see `Upstream::for_request`).
    let client_h1 = matches!(req.version(), Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // The proxy answers `Expect: 100-continue` itself (hyper sends 100 when the body is first read).
    parts.headers.remove(header::EXPECT);
    for (k, v) in add_headers {
        parts.headers.insert(k, v);
    }
    parts.version = Version::HTTP_11;

    let bytes_up = Arc::new(AtomicU64::new(0));
    let (body, mut block_rx): (UpstreamBody, _) = match inspector {
        Some(inspector) => {
            let (tx, rx) = oneshot::channel();
            let b = InspectedBody::new(body, inspector, tx, bytes_up.clone());
            (b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(), Some(rx))
        }
        None => (body.map_err(|e| -> BoxError { Box::new(InspectError::Client(Box::new(e))) }).boxed_unsync(), None),
    };
    let upstream_req = Request::from_parts(parts, body);
    let client = shared.upstream.for_request(upgrade || client_h1, ctx.lane);
    let fut = client.request(upstream_req);

    // Set once the block channel has completed (a oneshot must not be polled after that).
    let mut rx_done = false;
    let sent = match block_rx.as_mut() {
        None => match fut.await {
            Ok(r) => Sent::Response(r),
            Err(e) => Sent::Failed(e),
        },
        Some(rx) => {
            tokio::pin!(fut);
            tokio::select! {
                biased;
                r = &mut *rx => {
                    rx_done = true;
                    match r {
                        Ok((b, rest)) => Sent::Blocked(b, rest),
                        // The body ended without a block: just wait for the response.
                        Err(_) => match fut.await {
                            Ok(r) => Sent::Response(r),
                            Err(e) => Sent::Failed(e),
                        },
                    }
                }
                r = &mut fut => match r {
                    Ok(r) => Sent::Response(r),
                    // The body's block is sent before its error surfaces here.
                    Err(e) => {
                        rx_done = true;
                        match rx.try_recv() {
                            Ok((b, rest)) => Sent::Blocked(b, rest),
                            Err(_) => Sent::Failed(e),
                        }
                    }
                },
            }
        }
    };

    let meta = Meta { ctx: &ctx, identity: &identity, method: &method, host: &host, port, url: &url };
    match sent {
        Sent::Blocked(b, rest) => {
            let resp = block_response(&meta, Stage::Body, b, bytes_up.load(Ordering::Relaxed), json).await;
            if let Some(rest) = rest {
                tokio::spawn(drain(rest));
            }
            resp
        }
        Sent::Failed(e) => upstream_failure(&e, &host, json),
        Sent::Response(mut resp) => {
            if let Some(rx) = block_rx.filter(|_| !rx_done) {
                // The origin answered before the body ended (e.g. an early error): inspection and
                // the abort still apply; a late block is recorded when it happens.
                let rec = RecordCtx::new(&meta);
                let bytes = bytes_up.clone();
                tokio::spawn(async move {
                    if let Ok((b, _)) = rx.await {
                        rec.record(Stage::Body, Action::Block, b, bytes.load(Ordering::Relaxed)).await;
                    }
                });
            }
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client_upgrade) = client_upgrade {
                    let upstream_upgrade = hyper::upgrade::on(&mut resp);
                    tokio::spawn(async move {
                        match tokio::try_join!(client_upgrade, upstream_upgrade) {
                            Ok((c, u)) => {
                                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                            }
                            Err(e) => tracing::debug!("upgrade failed: {e}"),
                        }
                    });
                }
            } else {
                strip_hop_by_hop(resp.headers_mut(), false);
            }
            // HTTP/3 would take the browser out of reach of inspection: stay on TCP.
            resp.headers_mut().remove(HeaderName::from_static("alt-svc"));
            resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync())
        }
    }
}

/// Read and discard what is left of a blocked request body, so an HTTP/1.1 client that is still
/// uploading reads the 403 instead of a connection reset. Bounded in time and bytes.
async fn drain(mut body: Incoming) {
    let limit: u64 = 1 << 30;
    let mut seen = 0u64;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(Ok(f)) = body.frame().await {
            if let Some(d) = f.data_ref() {
                seen += d.len() as u64;
                if seen > limit {
                    break;
                }
            }
        }
    })
    .await;
}

/// Map an upstream failure to its page.
pub(crate) fn upstream_failure(e: &hyper_util::client::legacy::Error, host: &str, json: bool) -> Response<ProxyBody> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(InspectError::Client(inner)) = err.downcast_ref::<InspectError>() {
            let detail = inner.to_string();
            return render(
                &Page::error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "The request body was malformed or cut short; it was not forwarded.",
                    Some(&detail),
                ),
                json,
            );
        }
        cur = err.source();
    }
    match UpstreamError::find(e) {
        Some(u) => upstream_error_page(u, json),
        None => {
            let detail = format!("{host}: {}", error_chain(e));
            tracing::info!("upstream failure: {detail}");
            render(
                &Page::error(StatusCode::BAD_GATEWAY, "Bad gateway", "The destination server did not answer properly.", Some(&detail)),
                json,
            )
        }
    }
}

/// The page for a typed upstream error.
pub(crate) fn upstream_error_page(u: &UpstreamError, json: bool) -> Response<ProxyBody> {
    use crate::addr::ResolveError;
    let detail = u.to_string();
    let (status, title, reason) = match u {
        UpstreamError::Resolve(ResolveError::Forbidden { .. } | ResolveError::AllForbidden { .. }) => (
            StatusCode::FORBIDDEN,
            "Destination not allowed",
            "The gateway does not connect to internal, loopback or cloud-metadata addresses.",
        ),
        UpstreamError::Resolve(ResolveError::Dns { .. }) => {
            (StatusCode::BAD_GATEWAY, "Unknown host", "The destination's name could not be resolved.")
        }
        UpstreamError::Certificate { .. } => (
            StatusCode::BAD_GATEWAY,
            "Untrusted destination certificate",
            "The destination server presented a certificate that failed verification, so the gateway did not connect. The reason is below.",
        ),
        UpstreamError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", "The destination server did not answer in time."),
        _ => (StatusCode::BAD_GATEWAY, "Bad gateway", "The gateway could not connect to the destination server."),
    };
    tracing::info!(status = status.as_u16(), "upstream: {detail}");
    render(&Page::error(status, title, reason, Some(&detail)), json)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

/// What a record needs to know about the request.
pub(crate) struct Meta<'a> {
    pub ctx: &'a ConnCtx,
    pub identity: &'a Identity,
    pub method: &'a Method,
    pub host: &'a str,
    pub port: u16,
    pub url: &'a str,
}

/// An owned copy of [`Meta`] for records made later (spawned tasks).
pub(crate) struct RecordCtx {
    ctx: ConnCtx,
    identity: Identity,
    method: String,
    host: String,
    port: u16,
    url: String,
}

impl RecordCtx {
    pub fn new(m: &Meta<'_>) -> Self {
        RecordCtx {
            ctx: m.ctx.clone(),
            identity: m.identity.clone(),
            method: m.method.to_string(),
            host: m.host.to_string(),
            port: m.port,
            url: m.url.to_string(),
        }
    }

    /// Record durably; returns the incident id.
    pub async fn record(self, stage: Stage, action: Action, detail: Blocked, bytes_up: u64) -> String {
        let id = self.ctx.shared.recorder.incident_id();
        let rec = TransferRecord {
            id: id.clone(),
            time: time::OffsetDateTime::now_utc(),
            client: self.ctx.client,
            identity: self.identity,
            stage,
            action,
            method: self.method,
            host: self.host,
            port: self.port,
            url: self.url,
            detail,
            bytes_up,
        };
        self.ctx.shared.recorder.record(rec).await;
        id
    }
}

/// A random incident id: 16 hex characters.
pub fn incident_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Record a block durably, then render its page.
pub(crate) async fn block_response(m: &Meta<'_>, stage: Stage, b: Blocked, bytes_up: u64, json: bool) -> Response<ProxyBody> {
    let id = RecordCtx::new(m).record(stage, Action::Block, b.clone(), bytes_up).await;
    render(&Page::blocked(&id, &b), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_goes() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn incident_ids_are_hex16() {
        let a = incident_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, incident_id());
    }
}
