//! The admin HTTP API (axum), served by `portcullis run` on its own loopback listener.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /healthz` | none | `ok` |
//! | `GET /api/events?action=&user=&app=&category=&detector=&value_hmac=&host=&since=&until=&limit=&cursor=` | bearer | `{"events": [Event...], "next_cursor": "PC-..." \| null}` newest first; `limit` default 100, max 1000; pass `next_cursor` back as `cursor` for the next page |
//! | `GET /api/events/{id}` | bearer | the event, or 404 |
//! | `GET /api/stats?since=&until=&...` | bearer | [`Stats`](crate::Stats) plus `"writer": {"written", "dropped", "queued"}` |
//! | `GET /metrics` | bearer | Prometheus/OpenMetrics text of the shared [`Metrics`] |
//! | `POST /api/reload` | bearer | calls the reload callback: 200 `{"ok": true, "message"}` or 422 `{"ok": false, "error"}` |
//!
//! Auth is `Authorization: Bearer <token>`, compared in constant time (both sides are hashed with
//! SHA-256 first, so neither content nor length leaks through timing). Errors are JSON
//! `{"error": "..."}`. The API never binds a socket itself: the caller decides the (loopback) address.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_telemetry::{METRICS_CONTENT_TYPE, Metrics};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::store::{AuditStore, Filter, parse_time_bound};
use crate::{AuditError, AuditWriter, is_valid_id};

/// The reload callback: `Ok(message)` when the new rules/apps/policy are live, `Err(reason)` when
/// they were rejected (the old set keeps running).
pub type ReloadFn = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Default and maximum page sizes of `GET /api/events`.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// Everything the admin API needs. Build with [`AdminConfig::new`].
pub struct AdminConfig {
    token: String,
    store: Box<dyn AuditStore>,
    metrics: Arc<Metrics>,
    writer: Option<AuditWriter>,
    reload: Option<ReloadFn>,
}

impl AdminConfig {
    /// `token`: the bearer token (at least 16 characters). `store`: a store handle for reads (open
    /// a separate one from the writer's, e.g. `SqliteStore::open(path)`). `metrics`: the registry
    /// the proxy updates.
    pub fn new(token: impl Into<String>, store: impl AuditStore + 'static, metrics: Arc<Metrics>) -> AdminConfig {
        AdminConfig { token: token.into(), store: Box::new(store), metrics, writer: None, reload: None }
    }

    /// Reports the writer's counters in `/api/stats`.
    pub fn with_writer(mut self, writer: AuditWriter) -> AdminConfig {
        self.writer = Some(writer);
        self
    }

    /// Enables `POST /api/reload`.
    pub fn with_reload(mut self, reload: ReloadFn) -> AdminConfig {
        self.reload = Some(reload);
        self
    }
}

struct AppState {
    token_hash: [u8; 32],
    store: Mutex<Box<dyn AuditStore>>,
    metrics: Arc<Metrics>,
    writer: Option<AuditWriter>,
    reload: Option<ReloadFn>,
}

/// Minimum bearer token length accepted by [`admin_router`].
pub const MIN_TOKEN_LEN: usize = 16;

/// Builds the admin router. Fails if the token is shorter than [`MIN_TOKEN_LEN`].
pub fn admin_router(config: AdminConfig) -> Result<Router, AuditError> {
    if config.token.trim().len() < MIN_TOKEN_LEN {
        return Err(AuditError::Config(format!("admin API token must be at least {MIN_TOKEN_LEN} characters")));
    }
    let state = Arc::new(AppState {
        token_hash: Sha256::digest(config.token.trim().as_bytes()).into(),
        store: Mutex::new(config.store),
        metrics: config.metrics,
        writer: config.writer,
        reload: config.reload,
    });
    let protected = Router::new()
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(get_event))
        .route("/api/stats", get(stats))
        .route("/api/reload", post(reload))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_token));
    Ok(Router::new().route("/healthz", get(|| async { "ok\n" })).merge(protected).with_state(state))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<Arc<AppState>>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let ok = presented.is_some_and(|t| constant_time_eq(&Sha256::digest(t.as_bytes()).into(), &state.token_hash));
    if !ok {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis-admin\""));
        return r;
    }
    next.run(request).await
}

/// Query parameters shared by `/api/events` and `/api/stats`.
#[derive(Debug, Default, Deserialize)]
struct FilterParams {
    action: Option<String>,
    user: Option<String>,
    app: Option<String>,
    category: Option<String>,
    detector: Option<String>,
    value_hmac: Option<String>,
    host: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl FilterParams {
    fn into_filter(self, default_limit: usize, max_limit: usize) -> Result<Filter, String> {
        let now = OffsetDateTime::now_utc();
        let mut f = Filter {
            user: self.user,
            app: self.app,
            category: self.category,
            detector: self.detector,
            value_hmac: self.value_hmac,
            host: self.host,
            limit: Some(self.limit.unwrap_or(default_limit).clamp(1, max_limit)),
            ..Filter::default()
        };
        if let Some(a) = self.action {
            f.set_action(&a)?;
        }
        if let Some(s) = self.since {
            f.since = Some(parse_time_bound(&s, now)?);
        }
        if let Some(u) = self.until {
            f.until = Some(parse_time_bound(&u, now)?);
        }
        if let Some(c) = self.cursor {
            if !is_valid_id(&c) {
                return Err(format!("invalid cursor {c:?}"));
            }
            f.cursor = Some(c);
        }
        Ok(f)
    }
}

/// Runs a blocking store call off the async workers.
async fn with_store<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&dyn AuditStore) -> Result<T, AuditError> + Send + 'static,
) -> Result<T, Response> {
    let state = Arc::clone(state);
    let joined = tokio::task::spawn_blocking(move || {
        let guard = state.store.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.as_ref())
    })
    .await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "admin API store error");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("store task failed: {e}"))),
    }
}

async fn list_events(State(state): State<Arc<AppState>>, Query(params): Query<FilterParams>) -> Response {
    let filter = match params.into_filter(DEFAULT_PAGE, MAX_PAGE) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
    match with_store(&state, move |s| s.query(&filter)).await {
        Ok(events) => {
            let next = if events.len() == limit { events.last().map(|e| e.id.clone()) } else { None };
            Json(json!({ "events": events, "next_cursor": next })).into_response()
        }
        Err(r) => r,
    }
}

async fn get_event(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if !is_valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, format!("invalid event id {id:?}"));
    }
    let wanted = id.clone();
    match with_store(&state, move |s| s.get(&wanted)).await {
        Ok(Some(e)) => Json(e).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id}")),
        Err(r) => r,
    }
}

async fn stats(State(state): State<Arc<AppState>>, Query(params): Query<FilterParams>) -> Response {
    let filter = match params.into_filter(20, 1000) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match with_store(&state, move |s| s.stats(&filter)).await {
        Ok(st) => {
            let mut v = serde_json::to_value(&st).unwrap_or_else(|_| json!({}));
            let writer = match &state.writer {
                Some(w) => json!({ "written": w.written(), "dropped": w.dropped(), "queued": w.queued() }),
                None => json!({ "dropped": state.metrics.audit_dropped() }),
            };
            if let Some(obj) = v.as_object_mut() {
                obj.insert("writer".into(), writer);
            }
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn reload(State(state): State<Arc<AppState>>) -> Response {
    let Some(cb) = state.reload.clone() else {
        return error(StatusCode::NOT_IMPLEMENTED, "reload is not configured");
    };
    match tokio::task::spawn_blocking(move || cb()).await {
        Ok(Ok(message)) => {
            tracing::info!(%message, "reload via admin API");
            Json(json!({ "ok": true, "message": message })).into_response()
        }
        Ok(Err(reason)) => {
            tracing::warn!(%reason, "reload via admin API rejected");
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "ok": false, "error": reason }))).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reload task failed: {e}")),
    }
}
