//! Test helpers that talk to real things on loopback.
//!
//! - [`TestCa`]: a throwaway CA (not the proxy's) that signs origin certificates — good, expired,
//!   or for the wrong name — so tests can prove the proxy verifies upstreams.
//! - [`Origin`]: a real TLS (or plain) HTTP/1.1 + HTTP/2 server on `127.0.0.1:0` that records
//!   every request it received, including whether its body arrived *complete*. Tests await
//!   [`Origin::next_request`] instead of sleeping.
//! - [`RunningProxy`]: the proxy crate started in-process on `127.0.0.1:0` with a caller's gate.
//! - [`curl`]: run the real curl binary.
//!
//! Nothing here binds a fixed port or sleeps to synchronise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

/// A throwaway certificate authority for test origins.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
}

/// Which certificate an origin presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// Valid for `origin.test`, `localhost`, `127.0.0.1`.
    Good,
    /// Same names, but expired last year.
    Expired,
    /// Valid, but only for `someone-else.test`.
    WrongName,
    /// Valid for exactly these DNS names: a real app's host (`mail.google.com`) reached through
    /// the proxy's `--resolve`, for policy tests.
    Names(&'static [&'static str]),
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "Portcullis Test Origin CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign");
        TestCa { cert_der: cert.der().clone(), cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf (chain, key) for the given kind.
    pub fn leaf(&self, kind: CertKind) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
        let names: Vec<SanType> = match kind {
            CertKind::WrongName => vec![SanType::DnsName("someone-else.test".try_into().expect("name"))],
            CertKind::Names(names) => names.iter().map(|n| SanType::DnsName((*n).try_into().expect("name"))).collect(),
            _ => vec![
                SanType::DnsName("origin.test".try_into().expect("name")),
                SanType::DnsName("localhost".try_into().expect("name")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        params.distinguished_name.push(DnType::CommonName, "origin");
        let now = time::OffsetDateTime::now_utc();
        if kind == CertKind::Expired {
            params.not_before = now - time::Duration::days(400);
            params.not_after = now - time::Duration::days(35);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (vec![cert.der().clone(), self.cert_der.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }

    /// Write the CA PEM into `dir` and return its path (for `--upstream-ca` / curl `--cacert`).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let p = dir.join("origin-ca.pem");
        std::fs::write(&p, &self.cert_pem).expect("write pem");
        p
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// What the origin received for one request.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    /// Body bytes that arrived.
    pub body_len: u64,
    /// Whether the body ended cleanly (false: connection closed / stream reset mid-body).
    pub complete: bool,
    /// SHA-256 (hex) of the bytes that arrived.
    pub sha256: String,
    /// For TLS origins: whether the connection's handshake resumed an earlier session.
    pub tls_resumed: Option<bool>,
    /// Which origin connection (numbered from 0 in accept order) carried the request.
    pub conn: u64,
}

/// A loopback HTTP origin (TLS or plain) that records requests.
pub struct Origin {
    pub addr: SocketAddr,
    rx: Mutex<mpsc::UnboundedReceiver<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Start a TLS origin presenting a certificate of `kind` signed by `ca` (ALPN h2, http/1.1).
    pub async fn tls(ca: &TestCa, kind: CertKind) -> Origin {
        Self::tls_alpn(ca, kind, &[b"h2", b"http/1.1"]).await
    }

    /// Like [`Origin::tls`], offering only the given ALPN protocols (e.g. `http/1.1` only).
    pub async fn tls_alpn(ca: &TestCa, kind: CertKind, alpn: &[&[u8]]) -> Origin {
        let (chain, key) = ca.leaf(kind);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    /// Start a plain-HTTP origin.
    pub async fn plain() -> Origin {
        Self::start(None).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            for conn in 0u64.. {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                // Like real servers: no Nagle stalls (e.g. session tickets then the response).
                let _ = tcp.set_nodelay(true);
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acc) => {
                            if let Ok(s) = acc.accept(tcp).await {
                                let resumed = Some(s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
                                let svc = service_fn(move |req| handle(req, tx.clone(), resumed, conn));
                                let _ = builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let svc = service_fn(move |req| handle(req, tx.clone(), None, conn));
                            let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Origin { addr, rx: Mutex::new(rx), task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next request the origin finished receiving (body complete or broken). Panics after 30 s.
    pub async fn next_request(&self) -> Received {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("origin: no request within 30 s").expect("origin stopped")
    }

    /// A request if one is already recorded.
    pub async fn try_next_request(&self) -> Option<Received> {
        self.rx.lock().await.try_recv().ok()
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> OriginBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn handle(
    mut req: Request<Incoming>,
    tx: mpsc::UnboundedSender<Received>,
    tls_resumed: Option<bool>,
    conn: u64,
) -> Result<Response<OriginBody>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let version = req.version();
    let headers = req.headers().clone();

    // /ws: accept an upgrade and echo raw bytes back.
    if path == "/ws" && headers.contains_key(http::header::UPGRADE) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let _ = tx.send(Received { method, path, version, headers, body_len: 0, complete: true, sha256: String::new(), tls_resumed, conn });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
        r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
        return Ok(r);
    }

    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    hasher.update(d);
                    len += d.len() as u64;
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    let _ = tx.send(Received {
        method,
        path: path.clone(),
        version,
        headers,
        body_len: len,
        complete,
        sha256: sha256.clone(),
        tls_resumed,
        conn,
    });
    if !complete {
        return Ok(Response::new(full("incomplete")));
    }
    let resp_body = if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()) {
        Bytes::from(vec![b'x'; n])
    } else if len > 0 {
        Bytes::from(format!("{{\"len\":{len},\"sha256\":\"{sha256}\"}}\n"))
    } else {
        Bytes::from_static(b"hello from origin\n")
    };
    let mut r = Response::new(full(resp_body));
    r.headers_mut().insert("alt-svc", http::HeaderValue::from_static("h3=\":443\""));
    Ok(r)
}

/// SHA-256 hex of bytes (to compare with [`Received::sha256`]).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The proxy crate started in-process on `127.0.0.1:0`.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub leaves: Arc<portcullis_ca::LeafCache>,
    /// The interception CA's PEM file (for curl `--cacert`).
    pub ca_pem: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl RunningProxy {
    /// Start with `cfg` (its `listen` is replaced by `127.0.0.1:0`), a fresh CA, and the gate.
    pub async fn start(
        mut cfg: portcullis_proxy::ProxyConfig,
        gate: Arc<dyn portcullis_proxy::Gate>,
        recorder: Arc<dyn portcullis_proxy::Recorder>,
    ) -> RunningProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Arc::new(portcullis_ca::CertificateAuthority::load_or_create(dir.path()).expect("ca"));
        let leaves = Arc::new(portcullis_ca::LeafCache::new(ca, cfg.limits.leaf_cache_capacity).expect("cache"));
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        let proxy = portcullis_proxy::Proxy::bind(cfg, leaves.clone(), gate, recorder).await.expect("bind proxy");
        let addr = proxy.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(proxy.serve(async move {
            let _ = stopped.await;
        }));
        RunningProxy { addr, leaves, ca_pem: dir.path().join("ca.pem"), _dir: dir, stop: Some(stop) }
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Run curl with `args` (blocking in a worker thread); returns its output.
pub async fn curl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl").args(&args).output().expect("run curl (is it installed? see .ci/install-deps)")
    })
    .await
    .expect("curl thread")
}

/// A recorder that keeps every record in memory (for assertions).
#[derive(Default)]
pub struct MemRecorder {
    pub records: std::sync::Mutex<Vec<portcullis_proxy::TransferRecord>>,
}

impl MemRecorder {
    pub fn snapshot(&self) -> Vec<portcullis_proxy::TransferRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl portcullis_proxy::Recorder for MemRecorder {
    fn record(&self, record: portcullis_proxy::TransferRecord) -> portcullis_proxy::RecordFuture<'_> {
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
        Box::pin(std::future::ready(()))
    }
}

/// A gate for exercising the proxy's mechanics: uploads (POST/PUT/PATCH) are inspected for a
/// marker byte string (found across chunk boundaries, verdict at the end of the body); CONNECTs
/// to hosts in `bypass` are tunnelled; `block_connect` hosts are refused at CONNECT.
#[derive(Default)]
pub struct MarkerGate {
    pub marker: Vec<u8>,
    pub bypass: Vec<String>,
    pub block_connect: Vec<String>,
    pub opaque_tunnel: bool,
}

struct MarkerInspector {
    marker: Vec<u8>,
    tail: Vec<u8>,
    found: bool,
}

impl portcullis_proxy::BodyInspector for MarkerInspector {
    fn chunk(&mut self, bytes: &[u8]) -> portcullis_proxy::ChunkVerdict {
        if !self.found && !self.marker.is_empty() {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(bytes);
            self.found = window.windows(self.marker.len()).any(|w| w == self.marker.as_slice());
            let keep = self.marker.len().saturating_sub(1).min(window.len());
            self.tail = window[window.len() - keep..].to_vec();
        }
        portcullis_proxy::ChunkVerdict::Continue
    }
    fn finish(self: Box<Self>) -> portcullis_proxy::FinalVerdict {
        if self.found {
            portcullis_proxy::FinalVerdict::Block(portcullis_proxy::Blocked {
                rule: "test-marker".into(),
                reason: "The upload contains the test marker.".into(),
                evidence: vec![portcullis_proxy::Evidence {
                    detector: "marker".into(),
                    count: 1,
                    samples: vec!["MA****ER".into()],
                    value_hmacs: vec![],
                }],
                ..Default::default()
            })
        } else {
            portcullis_proxy::FinalVerdict::Allow
        }
    }
}

impl portcullis_proxy::Gate for MarkerGate {
    fn on_connect(&self, host: &str, _port: u16, _c: SocketAddr, _i: &portcullis_proxy::Identity) -> portcullis_proxy::ConnectDecision {
        if self.block_connect.iter().any(|h| h == host) {
            return portcullis_proxy::ConnectDecision::Block(portcullis_proxy::Blocked {
                rule: "test-connect-block".into(),
                reason: "This app cannot be inspected.".into(),
                ..Default::default()
            });
        }
        if self.bypass.iter().any(|h| h == host) {
            return portcullis_proxy::ConnectDecision::Tunnel { reason: format!("{host} is on the test bypass list") };
        }
        portcullis_proxy::ConnectDecision::Intercept
    }

    fn on_opaque(
        &self,
        _h: &str,
        _p: u16,
        _c: SocketAddr,
        _i: &portcullis_proxy::Identity,
        _prefix: &[u8],
    ) -> portcullis_proxy::OpaqueDecision {
        if self.opaque_tunnel {
            portcullis_proxy::OpaqueDecision::Tunnel { reason: "test: opaque allowed".into() }
        } else {
            portcullis_proxy::OpaqueDecision::Block(portcullis_proxy::Blocked { rule: "test-opaque".into(), ..Default::default() })
        }
    }

    fn on_request(&self, head: &portcullis_proxy::RequestHead<'_>) -> portcullis_proxy::RequestDecision {
        let upload = matches!(head.method.as_str(), "POST" | "PUT" | "PATCH");
        if !upload {
            return portcullis_proxy::RequestDecision::forward();
        }
        portcullis_proxy::RequestDecision::Forward {
            inspector: Some(Box::new(MarkerInspector { marker: self.marker.clone(), tail: Vec::new(), found: false })),
            add_headers: vec![(http::HeaderName::from_static("x-portcullis-inspected"), http::HeaderValue::from_static("1"))],
        }
    }
}

/// Send `CONNECT host:port` on a fresh connection to `proxy` and return the stream once the
/// proxy answered 200 (panics on any other answer, with the answer).
pub async fn connect_via(proxy: SocketAddr, host: &str, port: u16) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.expect("connect to proxy");
    let _ = tcp.set_nodelay(true);
    tcp.write_all(format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes()).await.expect("write CONNECT");
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT answered: {head}");
    tcp
}

/// Read an HTTP/1.1 response head (up to and including the empty line), byte by byte so nothing
/// after it is consumed.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("read response head");
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A rustls client config trusting the certificates in `pem`, offering `alpn`.
pub fn client_tls(pem: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pem).expect("read CA pem") {
        roots.add(c.expect("pem cert")).expect("add root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// `portcullis run` as a child process on `127.0.0.1:0`, its CA in `dir/certs`. Killed on drop.
pub struct ProxyProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Everything the proxy printed to stderr so far.
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    /// Start `bin run --config dir/portcullis.toml --listen 127.0.0.1:0 extra...`; the config
    /// holds `ca_dir = dir/certs` plus `config_extra`. Returns once the proxy printed its address.
    pub fn start(bin: &Path, dir: &Path, config_extra: &str, extra: &[String], envs: &[(&str, &str)]) -> ProxyProcess {
        use std::io::BufRead;
        let cfg = dir.join("portcullis.toml");
        std::fs::write(&cfg, format!("ca_dir = {:?}\n{config_extra}", dir.join("certs").display().to_string())).expect("write config");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["run", "--config"]).arg(&cfg).args(["--listen", "127.0.0.1:0"]).args(extra);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn portcullis run");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("the proxy printed `listening on ADDR`");
        ProxyProcess { child, addr: addr.parse().expect("proxy address"), stderr: log }
    }

    /// (utime + stime) of the process in seconds, from /proc (Linux).
    pub fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields after ')' start at field 3 (state): utime is field 14, stime field 15.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// A `/proc/PID/status` value in KiB (e.g. `VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// curl through `proxy` (an `http://` proxy URL) trusting `ca_pem`, plus `args`; returns the
/// status code (0 when curl got no HTTP answer, e.g. a refused CONNECT) and the body.
pub async fn curl_via(proxy: &str, ca_pem: &Path, args: &[&str]) -> (u16, String) {
    let mut a: Vec<String> = vec![
        "-sS".into(),
        "--proxy".into(),
        proxy.to_string(),
        "--cacert".into(),
        ca_pem.display().to_string(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    a.extend(args.iter().map(|s| s.to_string()));
    let out = curl(a).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| panic!("curl output {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr)));
    (code, body.to_string())
}
