//! The admin API served on a real loopback socket, driven by a real HTTP client (hyper).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::ev;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use portcullis_audit::api::{AdminConfig, ReloadFn, admin_router};
use portcullis_audit::{Action, AuditWriter, Event, SqliteStore, WriterConfig};
use portcullis_telemetry::{CertCacheCounts, Metrics};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Server {
    addr: SocketAddr,
    events: Vec<Event>,
    writer: AuditWriter,
    reloads: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn start(reload_ok: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let metrics = Arc::new(Metrics::new());
    metrics.set_cert_cache_source(|| CertCacheCounts { hits: 41, misses: 2 });
    let writer = AuditWriter::open(&path, WriterConfig { metrics: Some(metrics.clone()), ..WriterConfig::default() }).unwrap();
    let mut events = Vec::new();
    for i in 0..25 {
        let e = if i % 5 == 0 {
            ev(Action::Log, "bob", Some("dropbox"), Some("cloud-storage"), "www.dropbox.com", &[])
        } else {
            ev(Action::Block, &format!("user{}", i % 3), Some("gmail"), Some("webmail"), "mail.google.com", &[("payment-card", 1)])
        };
        writer.record_durable(e.clone()).await.unwrap();
        events.push(e);
    }
    metrics.inc_request();
    metrics.add_bytes_inspected(4096);
    metrics.observe_scan_latency(std::time::Duration::from_micros(350));
    let reloads = Arc::new(AtomicUsize::new(0));
    let counter = reloads.clone();
    let reload: ReloadFn = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        if reload_ok { Ok("policy reloaded: 12 rules".to_owned()) } else { Err("rules/policy.toml:3: unknown app \"gmial\"".to_owned()) }
    });
    let router = admin_router(
        AdminConfig::new(TOKEN, SqliteStore::open_existing(&path).unwrap(), metrics).with_writer(writer.clone()).with_reload(reload),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server { addr, events, writer, reloads, _dir: dir }
}

async fn call(addr: SocketAddr, method: Method, path: &str, auth: Option<&str>) -> (StatusCode, hyper::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn every_protected_route_needs_the_token() {
    let s = start(true).await;
    for (method, path) in [
        (Method::GET, "/api/events"),
        (Method::GET, "/api/events/PC-00000000000000000000"),
        (Method::GET, "/api/stats"),
        (Method::GET, "/metrics"),
        (Method::POST, "/api/reload"),
    ] {
        for auth in
            [None, Some("Bearer wrong-token-0123456789abcdef".to_owned()), Some(format!("Basic {TOKEN}")), Some(format!("Bearer {TOKEN}x"))]
        {
            let (status, headers, body) = call(s.addr, method.clone(), path, auth.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}: {body}");
            assert!(headers.get("www-authenticate").is_some());
        }
    }
    assert_eq!(s.reloads.load(Ordering::SeqCst), 0, "reload ran without a token");
    // healthz is open.
    let (status, _, body) = call(s.addr, Method::GET, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
}

#[tokio::test]
async fn events_filters_pagination_and_one_event() {
    let s = start(true).await;
    let auth = bearer();
    let (status, _, body) = call(s.addr, Method::GET, "/api/events?action=block&user=user1&limit=3", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let page: Vec<Event> = serde_json::from_value(v["events"].clone()).unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|e| e.action == Action::Block && e.user.as_deref() == Some("user1")));
    // Walk all pages of the filtered listing.
    let expected: Vec<String> =
        s.events.iter().rev().filter(|e| e.action == Action::Block && e.user.as_deref() == Some("user1")).map(|e| e.id.clone()).collect();
    let mut seen: Vec<String> = page.iter().map(|e| e.id.clone()).collect();
    let mut cursor = v["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, _, body) = call(s.addr, Method::GET, &format!("/api/events?action=block&user=user1&limit=3&cursor={c}"), Some(&auth)).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let page: Vec<Event> = serde_json::from_value(v["events"].clone()).unwrap();
        seen.extend(page.into_iter().map(|e| e.id));
        cursor = v["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, expected);

    let (_, _, body) = call(s.addr, Method::GET, "/api/events?category=cloud-storage&since=1h", Some(&auth)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 5);
    assert!(v["next_cursor"].is_null());

    let (status, _, body) = call(s.addr, Method::GET, "/api/events?since=yesterdayish", Some(&auth)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = call(s.addr, Method::GET, "/api/events?action=explode", Some(&auth)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let id = &s.events[7].id;
    let (status, _, body) = call(s.addr, Method::GET, &format!("/api/events/{id}"), Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Event>(&body).unwrap(), s.events[7]);
    let (status, _, _) = call(s.addr, Method::GET, "/api/events/PC-00000000000000000000", Some(&auth)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(s.addr, Method::GET, "/api/events/not.an.id", Some(&auth)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_include_writer_counters() {
    let s = start(true).await;
    let (status, _, body) = call(s.addr, Method::GET, "/api/stats?since=24h", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 25);
    assert_eq!(v["blocks"], 20);
    assert_eq!(v["blocks_by_detector"][0]["key"], "payment-card");
    assert_eq!(v["blocks_by_detector"][0]["count"], 20);
    assert_eq!(v["writer"]["written"], 25);
    assert_eq!(v["writer"]["dropped"], 0);
    assert_eq!(s.writer.written(), 25);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let s = start(true).await;
    let (status, headers, body) = call(s.addr, Method::GET, "/metrics", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{body}"));
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(value("portcullis_requests_total", &[]), 1.0);
    assert_eq!(value("portcullis_blocks_total", &[("category", "webmail"), ("app", "gmail")]), 20.0);
    assert_eq!(value("portcullis_block_detections_total", &[("detector", "payment-card")]), 20.0);
    assert_eq!(value("portcullis_bytes_inspected_total", &[]), 4096.0);
    assert_eq!(value("portcullis_cert_cache_hits_total", &[]), 41.0);
    assert_eq!(value("portcullis_cert_cache_misses_total", &[]), 2.0);
    assert_eq!(value("portcullis_audit_dropped_events_total", &[]), 0.0);
    assert_eq!(value("portcullis_audit_events_total", &[]), 25.0);
    let hist = scrape.samples.iter().find(|s| s.metric == "portcullis_scan_latency_seconds").expect("histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let le_1ms = buckets.iter().find(|b| (b.less_than - 0.0016).abs() < 1e-9).expect("bucket 0.0016");
            assert_eq!(le_1ms.count, 1.0);
        }
        other => panic!("scan latency is not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn reload_calls_the_callback() {
    let s = start(true).await;
    let (status, _, body) = call(s.addr, Method::POST, "/api/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["message"], "policy reloaded: 12 rules");
    assert_eq!(s.reloads.load(Ordering::SeqCst), 1);
    let (status, _, _) = call(s.addr, Method::GET, "/api/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let bad = start(false).await;
    let (status, _, body) = call(bad.addr, Method::POST, "/api/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("gmial"));
}

#[test]
fn short_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
    assert!(admin_router(AdminConfig::new("short", store, Arc::new(Metrics::new()))).is_err());
}
