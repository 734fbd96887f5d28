//! The proxy's mechanics, in-process, with real curl and a real TLS origin on loopback.
//!
//! The gate here is testkit's `MarkerGate` (a streaming marker search): these tests are about
//! what the proxy does with a gate's decisions — hold back, abort, record, page — not about DLP
//! rules (the binary's tests in `tests/proxy_*.rs` run the real detectors).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_proxy::{Action, ProxyConfig, Stage};
use portcullis_testkit::{
    CertKind, MarkerGate, MemRecorder, Origin, RunningProxy, TestCa, client_tls, connect_via, curl, curl_via, read_head, sha256_hex,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Env {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    origin: Origin,
    proxy: RunningProxy,
    rec: Arc<MemRecorder>,
}

async fn env_with(kind: CertKind, trust_origin_ca: bool, gate: MarkerGate, tweak: impl FnOnce(&mut ProxyConfig)) -> Env {
    env_alpn(kind, trust_origin_ca, gate, tweak, &[b"h2", b"http/1.1"]).await
}

async fn env_alpn(kind: CertKind, trust_origin_ca: bool, gate: MarkerGate, tweak: impl FnOnce(&mut ProxyConfig), alpn: &[&[u8]]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let origin = Origin::tls_alpn(&ca, kind, alpn).await;
    let mut cfg = ProxyConfig::default();
    cfg.resolve.push(format!("origin.test:{}:127.0.0.1", origin.port()).parse().unwrap());
    cfg.resolve.push(format!("127.0.0.1:{}:127.0.0.1", origin.port()).parse().unwrap());
    if trust_origin_ca {
        cfg.upstream_roots.push(ca.cert_der.clone());
    }
    tweak(&mut cfg);
    let rec = Arc::new(MemRecorder::default());
    let proxy = RunningProxy::start(cfg, Arc::new(gate), rec.clone()).await;
    let path = dir.path().to_path_buf();
    ca.write_pem(&path);
    Env { dir: path, _dir: dir, origin, proxy, rec }
}

async fn env() -> Env {
    env_with(CertKind::Good, true, MarkerGate { marker: b"MARKER-SECRET".to_vec(), ..Default::default() }, |_| {}).await
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("https://origin.test:{}{path}", self.origin.port())
    }

    /// curl through the proxy; returns (status, body).
    async fn curl(&self, args: &[&str]) -> (u16, String) {
        curl_via(&self.proxy.proxy_url(), &self.proxy.ca_pem, args).await
    }

    fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        format!("@{}", p.display())
    }
}

fn ten_mib(marker_at: Option<usize>) -> Vec<u8> {
    let mut v: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| b"abcdefghijklmnopqrstuvwxyz \n"[(i % 28) as usize]).collect();
    if let Some(at) = marker_at {
        v[at..at + 13].copy_from_slice(b"MARKER-SECRET");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_10mib_upload_arrives_identical_h1_and_h2() {
    let e = env().await;
    let data = ten_mib(None);
    let f = e.file("clean.bin", &data);
    for version in ["--http1.1", "--http2"] {
        let (code, body) = e.curl(&[version, "--data-binary", &f, &e.url("/upload")]).await;
        assert_eq!(code, 200, "{version}: {body}");
        let got = e.origin.next_request().await;
        assert!(got.complete, "{version}");
        assert_eq!(got.body_len, data.len() as u64, "{version}");
        assert_eq!(got.sha256, sha256_hex(&data), "{version}");
        assert_eq!(got.headers.get("x-portcullis-inspected").unwrap(), "1", "gate's add_headers reach upstream");
        assert!(body.contains(&sha256_hex(&data)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_upload_gets_403_and_origin_never_has_the_whole_body() {
    // Upstream HTTP/2 (abort = RST_STREAM) and upstream HTTP/1.1 (abort = connection closed).
    for upstream_alpn in [&[b"h2".as_slice(), b"http/1.1"][..], &[b"http/1.1".as_slice()][..]] {
        let gate = MarkerGate { marker: b"MARKER-SECRET".to_vec(), ..Default::default() };
        let e = env_alpn(CertKind::Good, true, gate, |_| {}, upstream_alpn).await;
        blocked_upload_case(&e).await;
    }
}

async fn blocked_upload_case(e: &Env) {
    let data = ten_mib(Some(1000));
    let f = e.file("secret.bin", &data);
    for version in ["--http1.1", "--http2"] {
        let (code, body) = e.curl(&[version, "-H", "Accept: application/json", "--data-binary", &f, &e.url("/upload")]).await;
        assert_eq!(code, 403, "{version}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["rule"], "test-marker");
        assert_eq!(v["evidence"][0]["samples"][0], "MA****ER");
        let incident = v["incident"].as_str().unwrap().to_string();
        let got = e.origin.next_request().await;
        assert!(!got.complete, "{version}: origin must not receive the complete body");
        assert!(got.body_len < data.len() as u64);
        // Recorded before the page was sent.
        let recs = e.rec.snapshot();
        let r = recs.iter().find(|r| r.id == incident).expect("record with the page's incident id");
        assert_eq!((r.action, r.stage), (Action::Block, Stage::Body));
        assert_eq!(r.detail.rule, "test-marker");
    }
    // HTML for browsers.
    let (code, body) = e.curl(&["--http1.1", "-H", "Accept: text/html", "--data-binary", &f, &e.url("/upload")]).await;
    assert_eq!(code, 403);
    assert!(body.contains("<html") && body.contains("Incident id"), "{body}");
    let _ = e.origin.next_request().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_and_small_get() {
    let e = env().await;
    let f = e.file("small.txt", b"hello world");
    let (code, _) = e.curl(&["--http1.1", "-H", "Expect: 100-continue", "--data-binary", &f, &e.url("/up")]).await;
    assert_eq!(code, 200);
    let got = e.origin.next_request().await;
    assert!(got.complete && got.body_len == 11);
    assert!(got.headers.get("expect").is_none(), "the proxy answers Expect itself");
    let (code, body) = e.curl(&["-i", &e.url("/")]).await;
    assert_eq!(code, 200);
    assert!(body.contains("hello from origin"));
    assert!(!body.to_ascii_lowercase().contains("alt-svc"), "Alt-Svc (HTTP/3) is stripped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_another_host_than_its_tunnel_gets_421() {
    let e = env().await;
    for proto in ["--http1.1", "--http2"] {
        let (code, body) = e.curl(&[proto, "-H", "Host: other.test", &e.url("/")]).await;
        assert_eq!(code, 421, "{proto}: {body}");
        assert!(body.contains("other.test") && body.contains("origin.test"), "{body}");
        // Same host, another port: also another site.
        let (code, _) = e.curl(&[proto, "-H", "Host: origin.test:1", &e.url("/")]).await;
        assert_eq!(code, 421, "{proto}");
    }
    // The tunnel's own host (any case, trailing dot, no port) is served.
    for host in ["ORIGIN.test", "origin.test.", "origin.test"] {
        let (code, body) = e.curl(&["--http1.1", "-H", &format!("Host: {host}"), &e.url("/")]).await;
        assert_eq!(code, 200, "{host}: {body}");
    }
    let (code, _) = e.curl(&["--http2", &e.url("/")]).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_certificates_give_502_naming_the_reason() {
    for (kind, trust, needle) in
        [(CertKind::Expired, true, "expired"), (CertKind::WrongName, true, "wrong host name"), (CertKind::Good, false, "unknown issuer")]
    {
        let e = env_with(kind, trust, MarkerGate::default(), |_| {}).await;
        let (code, body) = e.curl(&["-H", "Accept: application/json", &e.url("/")]).await;
        assert_eq!(code, 502, "{kind:?}: {body}");
        assert!(body.contains(needle), "{kind:?}: {body}");
        let (code, body) = e.curl(&["--http1.1", &e.url("/")]).await;
        assert_eq!(code, 502);
        assert!(body.contains(needle) && body.contains("<html"), "{kind:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literal_connect_gets_an_ip_san() {
    let e = env().await;
    // curl verifies the minted leaf against 127.0.0.1 (it needs an iPAddress SAN to succeed).
    let (code, body) = e.curl(&[&format!("https://127.0.0.1:{}/", e.origin.port())]).await;
    assert_eq!(code, 200, "{body}");
    assert!(e.proxy.leaves.stats().mints >= 1);
}

/// CONNECT + TLS handshake through the proxy with rustls, trusting the proxy's CA.
async fn connect_tls(
    proxy: std::net::SocketAddr,
    host: &str,
    port: u16,
    ca_pem: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = connect_via(proxy, host, port).await;
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(client_tls(ca_pem, &[b"http/1.1"])).connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_first_connections_mint_once() {
    let e = env().await;
    let before = e.proxy.leaves.stats();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (addr, port, ca) = (e.proxy.addr, e.origin.port(), e.proxy.ca_pem.clone());
        tasks.push(tokio::spawn(async move { connect_tls(addr, "burst.origin.test", port, &ca).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = e.proxy.leaves.stats();
    assert_eq!(s.mints - before.mints, 1, "{s:?}");
    assert_eq!(s.hits - before.hits, 99, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_through_interception() {
    let e = env().await;
    let mut tls = connect_tls(e.proxy.addr, "origin.test", e.origin.port(), &e.proxy.ca_pem).await;
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping through the proxy").await.unwrap();
    let mut echo = [0u8; 22];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_tunnels_blind_and_is_recorded_with_its_reason() {
    let e = env_with(CertKind::Good, true, MarkerGate { bypass: vec!["origin.test".into()], ..Default::default() }, |_| {}).await;
    // Not intercepted: the client sees the origin's own certificate (test CA), not a minted one.
    let origin_ca = e.dir.join("origin-ca.pem").display().to_string();
    let mut a =
        vec!["-sS".to_string(), "--proxy".into(), e.proxy.proxy_url(), "--cacert".into(), origin_ca, "-w".into(), "\n%{http_code}".into()];
    a.push(e.url("/"));
    let out = curl(a).await;
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("200"), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = e.rec.snapshot();
    assert!(recs.iter().any(|r| r.action == Action::Bypass && r.detail.reason.contains("bypass list")), "{recs:?}");
    assert_eq!(e.proxy.leaves.stats().mints, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_block_and_ssrf_refusals() {
    let e = env_with(CertKind::Good, true, MarkerGate { block_connect: vec!["blocked.test".into()], ..Default::default() }, |_| {}).await;
    let (code, body) = e.curl(&["-H", "Accept: application/json", "https://blocked.test/"]).await;
    assert_eq!(code, 0, "curl reports CONNECT failures as 000: {body}");
    // Plain HTTP shows the proxy's own answers directly.
    let (code, body) = e.curl(&["-H", "Accept: application/json", "http://169.254.169.254/latest/meta-data/"]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("metadata"), "{body}");
    let (code, body) = e.curl(&["http://localhost:9/"]).await;
    assert_eq!(code, 403, "{body}");
    let (code, _) = e.curl(&["http://[::1]:9/"]).await;
    assert_eq!(code, 403);
    let recs = e.rec.snapshot();
    assert!(recs.iter().any(|r| r.stage == Stage::Connect && r.action == Action::Block && r.host == "blocked.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_forwarding() {
    let origin = Origin::plain().await;
    let mut cfg = ProxyConfig::default();
    cfg.resolve.push(format!("plain.test:{}:127.0.0.1", origin.port()).parse().unwrap());
    let proxy = RunningProxy::start(
        cfg,
        Arc::new(MarkerGate { marker: b"MARKER-SECRET".to_vec(), ..Default::default() }),
        Arc::new(MemRecorder::default()),
    )
    .await;
    let url = format!("http://plain.test:{}/", origin.port());
    let out = curl(vec!["-sS".into(), "--proxy".into(), proxy.proxy_url(), url.clone()]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from origin\n");
    let got = origin.next_request().await;
    assert!(got.headers.get("proxy-connection").is_none());
    let out = curl(vec![
        "-sS".into(),
        "--proxy".into(),
        proxy.proxy_url(),
        "-w".into(),
        "%{http_code}".into(),
        "-o".into(),
        "/dev/null".into(),
        "--data-binary".into(),
        "xx MARKER-SECRET yy".into(),
        url,
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
}

/// Raw HTTP/1.1 to the proxy: returns what it answered (until close).
async fn raw(proxy: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_not_forwarded() {
    let origin = Origin::plain().await;
    let mut cfg = ProxyConfig::default();
    cfg.resolve.push(format!("plain.test:{}:127.0.0.1", origin.port()).parse().unwrap());
    let proxy = RunningProxy::start(cfg, Arc::new(MarkerGate::default()), Arc::new(MemRecorder::default())).await;
    let p = origin.port();
    // Bad chunk size.
    let resp = raw(
        proxy.addr,
        format!("POST http://plain.test:{p}/ HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nxx\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400") || resp.is_empty(), "{resp}");
    if let Some(got) = origin.try_next_request().await {
        assert!(!got.complete, "a badly chunked body is never forwarded complete");
    }
    // Conflicting Content-Length and Transfer-Encoding.
    let resp = raw(
        proxy.addr,
        format!(
            "POST http://plain.test:{p}/ HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // Not a proxy request.
    let resp = raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let mut cfg = ProxyConfig::default();
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(cfg, Arc::new(MarkerGate::default()), Arc::new(MemRecorder::default())).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET http://x.test/ HTTP/1.1\r\nHost: x").await.unwrap();
    let mut out = Vec::new();
    // The proxy closes the connection (with or without a 408); the guard is only a test timeout.
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await.expect("slowloris connection closed").ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_bytes_in_a_tunnel_go_to_the_gate() {
    let e = env().await;
    let mut tcp = connect_via(e.proxy.addr, "origin.test", e.origin.port()).await;
    tcp.write_all(b"SSH-2.0-OpenSSH_9.0\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut rest)).await.unwrap().ok();
    let recs = e.rec.snapshot();
    assert!(recs.iter().any(|r| r.stage == Stage::Opaque && r.action == Action::Block), "{recs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_extra_clients() {
    let mut cfg = ProxyConfig::default();
    cfg.limits.max_connections = 2;
    let proxy = RunningProxy::start(cfg, Arc::new(MarkerGate::default()), Arc::new(MemRecorder::default())).await;
    // Two clients, each proven accepted by an answer on a kept-alive connection.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut b = [0u8; 12];
        tcp.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"HTTP/1.1 400");
        held.push(tcp);
    }
    let mut third = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), third.read_to_end(&mut out)).await.expect("third connection closed");
    assert!(out.is_empty(), "the third client gets no answer: {}", String::from_utf8_lossy(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_intercepted_connections_are_closed() {
    let gate = MarkerGate::default();
    let e = env_with(CertKind::Good, true, gate, |c| {
        c.limits.idle_timeout = Duration::from_millis(300);
        c.limits.header_read_timeout = Duration::from_secs(600);
    })
    .await;
    let mut tls = connect_tls(e.proxy.addr, "origin.test", e.origin.port(), &e.proxy.ca_pem).await;
    let mut out = Vec::new();
    // Nothing is sent: the idle timeout (not the header timeout) closes the tunnel.
    let r = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "idle connection closed by the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_keepalive_reuse_and_tls_resumption() {
    // With pooling: the second request rides the first connection (one upstream handshake).
    let e = env().await;
    for _ in 0..2 {
        let (code, _) = e.curl(&["--http1.1", &e.url("/")]).await;
        assert_eq!(code, 200);
    }
    let (a, b) = (e.origin.next_request().await, e.origin.next_request().await);
    assert_eq!(a.conn, b.conn, "keep-alive: the second request reused the upstream connection");
    assert_eq!(a.tls_resumed, Some(false));

    // Without pooling every request is a new upstream connection, which resumes the TLS session.
    let e = env_with(CertKind::Good, true, MarkerGate::default(), |c| c.limits.upstream_pool_max_idle_per_host = 0).await;
    for _ in 0..2 {
        let (code, _) = e.curl(&["--http1.1", &e.url("/")]).await;
        assert_eq!(code, 200);
    }
    let (a, b) = (e.origin.next_request().await, e.origin.next_request().await);
    assert_ne!(a.conn, b.conn);
    assert_eq!(a.tls_resumed, Some(false));
    assert_eq!(b.tls_resumed, Some(true), "second upstream connection resumed the session");
}

/// HTTP/2 to one origin: each client connection keeps one upstream connection for its requests,
/// and different client connections are spread over `upstream_h2_connections_per_host` of them,
/// instead of every user's transfers sharing one TCP flow and one origin stream limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_connections_spread_over_upstream_lanes() {
    async fn seen(e: &Env, n: usize) -> Vec<u64> {
        let mut v = Vec::new();
        for _ in 0..n {
            let r = e.origin.next_request().await;
            assert_eq!(r.version, http::Version::HTTP_2, "upstream negotiated h2");
            v.push(r.conn);
        }
        v
    }
    let e = env_with(CertKind::Good, true, MarkerGate::default(), |c| c.limits.upstream_h2_connections_per_host = 2).await;
    // One curl, two requests on one client connection: one upstream connection.
    let (code, _) = e.curl(&["--http2", &e.url("/a"), &e.url("/b")]).await;
    assert_eq!(code, 200);
    let one = seen(&e, 2).await;
    assert_eq!(one[0], one[1], "a client connection's requests share its lane's upstream connection");
    // Two more client connections: lanes alternate, so they use two different upstream connections.
    for _ in 0..2 {
        assert_eq!(e.curl(&["--http2", &e.url("/")]).await.0, 200);
    }
    let two = seen(&e, 2).await;
    assert_ne!(two[0], two[1], "consecutive client connections are on different lanes");
    assert!(two.contains(&one[0]), "the lanes' connections are pooled and reused");

    // One lane: every client connection shares the single upstream HTTP/2 connection.
    let e = env_with(CertKind::Good, true, MarkerGate::default(), |c| c.limits.upstream_h2_connections_per_host = 1).await;
    for _ in 0..3 {
        assert_eq!(e.curl(&["--http2", &e.url("/")]).await.0, 200);
    }
    let v = seen(&e, 3).await;
    assert!(v.iter().all(|c| *c == v[0]), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_closes_the_connection() {
    let e = env().await;
    let tcp = connect_via(e.proxy.addr, "origin.test", e.origin.port()).await;
    let name = rustls_pki_types::ServerName::try_from("origin.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_tls(&e.proxy.ca_pem, &[b"h2"])).connect(name, tcp).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let uri = e.url("/");
    // HEADERS immediately followed by RST_STREAM, many times (CVE-2023-44487).
    for _ in 0..2000 {
        client = match client.ready().await {
            Ok(c) => c,
            Err(_) => break,
        };
        let req = http::Request::get(uri.as_str()).body(()).unwrap();
        let Ok((resp, mut stream)) = client.send_request(req, false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        drop(resp);
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), conn).await.expect("the proxy closed the connection");
    let err = ended.unwrap().expect_err("closed by the proxy, not by us");
    // GOAWAY(ENHANCE_YOUR_CALM) — or, if our writes raced the close, the broken pipe after it.
    assert!(err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(), "{err}");
}
