//! The seam between the proxy and everything that decides or remembers.
//!
//! The proxy knows how to move bytes safely; it knows nothing about users, apps, policy or the
//! audit log. At each point where a decision is needed it asks a [`Gate`], and whenever something
//! worth keeping happens (a block, a bypass, an opaque tunnel) it hands a [`TransferRecord`] to a
//! [`Recorder`]. Both traits are small and every method but one has a default, so a test can
//! implement only what it exercises and the binary can swap a DLP-only gate for a policy-driven
//! one without touching the request path.
//!
//! Order of the phases for one flow (pingora-style, see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! accept ─ authenticate ─┬─ CONNECT ─ on_connect ─┬─ Intercept ─ (TLS) ─ on_request ─ inspector ─ record
//!                        │                        ├─ Tunnel{reason} ─ record(bypass)
//!                        │                        ├─ Block(page) ─ record ─ 403
//!                        │                        └─ (non-TLS bytes) ─ on_opaque ─ Tunnel | Block
//!                        └─ absolute-form ─ on_request ─ inspector ─ record
//! ```
//!
//! The block page is sent only after [`Recorder::record`] has resolved: a client never sees an
//! incident id that the log could lose.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

/// Who is behind a connection, as established by [`Gate::authenticate`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// User name; `None` for anonymous (no authentication configured).
    pub user: Option<String>,
    /// Groups the user belongs to (policy matches on them).
    pub groups: Vec<String>,
}

/// Outcome of [`Gate::authenticate`].
#[derive(Debug)]
pub enum Auth {
    /// Proceed as this identity.
    Allow(Identity),
    /// Ask for credentials: the proxy answers `407` with `Proxy-Authenticate: Basic realm=..`.
    Challenge { realm: String },
    /// Refuse outright (e.g. wrong password too many times): the proxy answers this page.
    Deny(Blocked),
}

/// What the gate decided for a CONNECT.
#[derive(Debug)]
pub enum ConnectDecision {
    /// Terminate TLS with a minted leaf and inspect the requests inside.
    Intercept,
    /// Tunnel bytes blind (bypass list: banking, health, pinned apps). Logged with the reason.
    Tunnel { reason: String },
    /// Refuse the CONNECT with a 403 page (e.g. an app that cannot be inspected).
    Block(Blocked),
}

/// What the gate decided for non-TLS bytes inside a CONNECT tunnel.
#[derive(Debug)]
pub enum OpaqueDecision {
    /// Let the bytes through blind (recorded as an opaque tunnel).
    Tunnel { reason: String },
    /// Close the tunnel (recorded as a block).
    Block(Blocked),
}

/// The head of a request as the gate sees it (an intercepted request has its absolute URI rebuilt
/// from the CONNECT target, so `uri` is always absolute).
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub client: SocketAddr,
    pub identity: &'a Identity,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// Host of the destination (lower case, no brackets for IPv6).
    pub host: &'a str,
    pub port: u16,
    /// Whether the request travelled inside an intercepted TLS tunnel.
    pub intercepted: bool,
}

/// What the gate decided for a request.
pub enum RequestDecision {
    /// Forward upstream. If `inspector` is set, the request body streams through it and the end of
    /// the body is held back until it gives its verdict.
    Forward {
        inspector: Option<Box<dyn BodyInspector>>,
        /// Headers added to the upstream request (e.g. tenant-restriction headers).
        add_headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Refuse with a block page; nothing is sent upstream.
    Block(Blocked),
}

impl RequestDecision {
    /// Forward untouched, no inspection.
    pub fn forward() -> Self {
        RequestDecision::Forward { inspector: None, add_headers: Vec::new() }
    }
}

impl std::fmt::Debug for RequestDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestDecision::Forward { inspector, add_headers } => {
                f.debug_struct("Forward").field("inspector", &inspector.is_some()).field("add_headers", add_headers).finish()
            }
            RequestDecision::Block(b) => f.debug_tuple("Block").field(b).finish(),
        }
    }
}

/// Result of feeding one chunk to a [`BodyInspector`].
#[derive(Debug)]
pub enum ChunkVerdict {
    /// Keep streaming.
    Continue,
    /// Stop now: the upstream request is aborted before its body completes.
    Block(Blocked),
}

/// Final verdict of a [`BodyInspector`] once the whole body has been seen.
#[derive(Debug)]
pub enum FinalVerdict {
    /// Release the held-back end of the body.
    Allow,
    /// Abort the upstream request; the held-back end is never sent.
    Block(Blocked),
}

/// Inspects one request body as it streams (sans-IO; one per transfer). The proxy forwards every
/// chunk upstream as soon as the *next* one has been inspected, so memory per transfer is one
/// frame, whatever the body size.
pub trait BodyInspector: Send {
    /// Called for every body chunk, in order.
    fn chunk(&mut self, bytes: &[u8]) -> ChunkVerdict;
    /// Called once at the end of the body, before the last chunk is released.
    fn finish(self: Box<Self>) -> FinalVerdict;
    /// Bytes the inspector holds to parse later (a buffered document). From
    /// [`HEAVY_BUFFERED`](crate::inspect::HEAVY_BUFFERED) on, the next call may run for seconds,
    /// so the proxy makes it where blocking the thread does not stall other connections.
    fn buffered_bytes(&self) -> usize {
        0
    }
}

/// Why something was refused: what the block page and the log say.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Blocked {
    /// The rule that decided (policy rule name or detector-driven default rule).
    pub rule: String,
    /// Plain-words reason shown to the user ("The upload contains a payment card number.").
    pub reason: String,
    /// Masked evidence (never the full value).
    pub evidence: Vec<Evidence>,
    /// Files seen in the transfer (name, sha256, size).
    pub files: Vec<FileRecord>,
    /// Free-form labels the gate wants recorded: app, category, activity, exception, approver...
    pub labels: BTreeMap<String, String>,
}

/// One detector's masked evidence.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evidence {
    pub detector: String,
    pub count: u64,
    /// Masked samples such as `4111********1111`.
    pub samples: Vec<String>,
    /// HMAC-SHA256 (hex) of each matched value under the local secret, when configured.
    pub value_hmacs: Vec<String>,
}

/// A file seen in a transfer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileRecord {
    pub name: Option<String>,
    /// The form field a multipart part was sent in (a text field has no file name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub sha256: String,
    pub size: u64,
    /// Inspection stopped before the file ended: `sha256` and `size` cover its first bytes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// At which point of a flow a record was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Before any request: authentication.
    Auth,
    /// At CONNECT.
    Connect,
    /// Non-TLS bytes inside a tunnel.
    Opaque,
    /// On a request head.
    Request,
    /// On a request body (inspection).
    Body,
}

/// What happened to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    /// Tunnelled without decryption (bypass list or opaque allowed).
    Bypass,
    Allow,
}

/// One record handed to the [`Recorder`].
#[derive(Clone, Debug, Serialize)]
pub struct TransferRecord {
    /// Incident id shown on the block page (random, 16 hex chars).
    pub id: String,
    /// RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub time: time::OffsetDateTime,
    pub client: SocketAddr,
    pub identity: Identity,
    pub stage: Stage,
    pub action: Action,
    /// `CONNECT` for tunnel-level records.
    pub method: String,
    pub host: String,
    pub port: u16,
    /// Full URL as requested (the audit layer redacts query values before storing).
    pub url: String,
    /// Block details, or for a bypass the rule/reason only.
    pub detail: Blocked,
    /// Request body bytes seen by the proxy (for body-stage records).
    pub bytes_up: u64,
}

/// The boxed future returned by [`Recorder::record`].
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Remembers what the proxy did. `record` resolves when the record is durable: the proxy awaits it
/// before sending a block page.
pub trait Recorder: Send + Sync + 'static {
    /// Store a record; resolve once it is durable (or definitively failed — failures are the
    /// recorder's to count and report, the proxy still blocks).
    fn record(&self, record: TransferRecord) -> RecordFuture<'_>;

    /// A new incident id, shown on the block page and stored with the record. Recorders with
    /// their own id scheme (the audit log's sortable `PC-…` ids) override this so pages, logs
    /// and queries all use one kind of id.
    fn incident_id(&self) -> String {
        crate::forward::incident_id()
    }
}

/// A recorder that writes each record to the tracing log (stderr) and nothing else. Until the audit
/// log lands this is the binary's recorder; a tracing line is "durable" once written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRecorder;

impl Recorder for LogRecorder {
    fn record(&self, r: TransferRecord) -> RecordFuture<'_> {
        let evidence: Vec<String> =
            r.detail.evidence.iter().map(|e| format!("{}x{} [{}]", e.detector, e.count, e.samples.join(", "))).collect();
        match r.action {
            Action::Block => tracing::warn!(
                incident = %r.id, client = %r.client, user = r.identity.user.as_deref().unwrap_or("-"),
                stage = ?r.stage, method = %r.method, url = %r.url, rule = %r.detail.rule,
                evidence = %evidence.join("; "), bytes_up = r.bytes_up,
                "blocked: {}", r.detail.reason
            ),
            Action::Bypass => tracing::info!(
                incident = %r.id, client = %r.client, host = %r.host, port = r.port, stage = ?r.stage,
                rule = %r.detail.rule, "tunnelled without inspection: {}", r.detail.reason
            ),
            Action::Allow => tracing::info!(
                incident = %r.id, client = %r.client, method = %r.method, url = %r.url, "allowed"
            ),
        }
        Box::pin(std::future::ready(()))
    }
}

/// Decides what happens to each flow. Only [`Gate::on_request`] is required; the defaults
/// authenticate everyone anonymously, intercept every CONNECT and refuse non-TLS tunnels.
pub trait Gate: Send + Sync + 'static {
    /// Authenticate a client from its address and `Proxy-Authorization` header (if any). Called
    /// once per proxy request (each CONNECT, each absolute-form request).
    fn authenticate(&self, client: SocketAddr, proxy_authorization: Option<&HeaderValue>) -> Auth {
        let _ = (client, proxy_authorization);
        Auth::Allow(Identity::default())
    }

    /// Decide a CONNECT before anything is read from the tunnel. `host` is lower case, without
    /// brackets for IPv6.
    fn on_connect(&self, host: &str, port: u16, client: SocketAddr, identity: &Identity) -> ConnectDecision {
        let _ = (host, port, client, identity);
        ConnectDecision::Intercept
    }

    /// The first bytes of an intercepted tunnel are not TLS. `prefix` holds what was read so far.
    fn on_opaque(&self, host: &str, port: u16, client: SocketAddr, identity: &Identity, prefix: &[u8]) -> OpaqueDecision {
        let _ = (host, port, client, identity, prefix);
        OpaqueDecision::Block(Blocked {
            rule: "opaque-tunnel".into(),
            reason: "The connection carried a protocol other than TLS through an HTTPS tunnel; it cannot be inspected.".into(),
            ..Blocked::default()
        })
    }

    /// Decide a request from its head.
    fn on_request(&self, head: &RequestHead<'_>) -> RequestDecision;
}
