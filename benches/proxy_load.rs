//! Proxy load bench: `portcullis run` (release, as its own process) versus going direct, in the
//! same run, against the same loopback TLS origin (testkit). Run with `benches/proxy_bench.sh`
//! (or `cargo bench --bench proxy_load`).
//!
//! Phases (each measured direct and through the proxy for `PHASE_SECS` each, in `ROUNDS`
//! alternating rounds):
//! 1. 1 MiB uploads (POST) on keep-alive HTTPS connections — through the proxy they are
//!    intercepted and inspected by the real DLP gate (built-in detectors); as a plain body, and
//!    as a browser sends a file (multipart/form-data); and the plain body over HTTP/2, as a
//!    browser sends it (the client offers only h2; the proxy negotiates each side on its own, and
//!    the origin offers h2 too).
//! 2. Small GETs on keep-alive HTTPS connections (intercepted) and plain HTTP (absolute-form).
//! 3. New connection per request: TCP + (CONNECT) + TLS handshake + one GET.
//! 4. Idle connections: RSS growth of the proxy per idle intercepted connection.
//!
//! Proxy CPU per request comes from /proc/PID/stat (utime+stime), peak RSS from VmHWM.
//! The load generator and the origin share this process; on a 2-core machine all three compete
//! for the CPU, so ratios (same run, same load generator) matter more than absolute figures.
//! The machine's speed drifts (other guests on the host); alternating direct and proxied in
//! rounds (default 3) spreads the drift over both sides instead of letting it fall on one, and
//! the per-round ratios printed next to the total show how much it moved.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use portcullis_testkit::{CertKind, Origin, ProxyProcess, TestCa, client_tls, connect_via};
use tokio::net::TcpStream;

/// `BENCH_PHASES=upload,multipart,upload-h2,get,plain,connect,idle` runs only the named phases (default: all), e.g. to
/// profile one of them.
fn wanted(phase: &str) -> bool {
    std::env::var("BENCH_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == phase))
}

/// Keep-alive connections uploading at once in the upload phases (`UPLOAD_CONNS`, default 4).
fn upload_conns() -> usize {
    std::env::var("UPLOAD_CONNS").ok().and_then(|s| s.parse().ok()).filter(|&n| n > 0).unwrap_or(4)
}

fn phase_secs() -> u64 {
    std::env::var("PHASE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

/// Alternating direct/proxied rounds per phase (`ROUNDS`, default 3); each side runs
/// `PHASE_SECS / ROUNDS` per round.
fn rounds() -> u32 {
    std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).filter(|&n| n > 0).unwrap_or(3)
}

fn round_duration() -> Duration {
    Duration::from_secs(phase_secs()) / rounds()
}

fn start_proxy(dir: &Path, origin_port: u16, origin_pem: &Path) -> ProxyProcess {
    let args =
        ["--resolve".into(), format!("origin.test:{origin_port}:127.0.0.1"), "--upstream-ca".into(), origin_pem.display().to_string()];
    ProxyProcess::start(Path::new(env!("CARGO_BIN_EXE_portcullis")), dir, "[admin]\nlisten = \"\"\n", &args, &[("PORTCULLIS_LOG", "warn")])
}

/// How a client reaches the origin.
#[derive(Clone)]
struct Route {
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A client connection: HTTP/1.1, or HTTP/2 when the TLS handshake chose h2.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> hyper::Response<hyper::body::Incoming> {
        match self {
            Sender::H1(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Sender::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        }
    }
}

async fn open(route: &Route) -> Sender {
    let port = route.origin.port();
    let tcp = match (route.proxy, &route.tls) {
        (Some(proxy), Some(_)) => connect_via(proxy, "origin.test", port).await,
        (proxy, _) => TcpStream::connect(proxy.unwrap_or(route.origin)).await.unwrap(),
    };
    tcp.set_nodelay(true).unwrap();
    match &route.tls {
        Some(cfg) => {
            let name = rustls_pki_types::ServerName::try_from("origin.test").unwrap();
            let tls = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await.unwrap();
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let exec = hyper_util::rt::TokioExecutor::new();
                let (s, conn) = hyper::client::conn::http2::handshake(exec, TokioIo::new(tls)).await.unwrap();
                tokio::spawn(conn);
                return Sender::H2(s);
            }
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(s)
        }
        None => {
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(s)
        }
    }
}

/// A request body and its Content-Type.
#[derive(Clone)]
struct Payload {
    body: Bytes,
    content_type: &'static str,
}

impl Payload {
    fn none() -> Payload {
        Payload { body: Bytes::new(), content_type: "text/plain" }
    }
}

async fn request(s: &mut Sender, route: &Route, method: &str, path: &str, payload: Payload) -> usize {
    let port = route.origin.port();
    // Plain HTTP through the proxy uses absolute-form; otherwise origin-form.
    let uri = if route.proxy.is_some() && route.tls.is_none() { format!("http://origin.test:{port}{path}") } else { path.to_string() };
    let mut req = hyper::Request::builder().method(method).header("content-type", payload.content_type);
    req = match s {
        // HTTP/2 carries the authority in the URI (`:authority`), not in a Host header.
        Sender::H2(_) => req.uri(format!("https://origin.test:{port}{path}")),
        Sender::H1(_) => req.uri(uri).header("host", format!("origin.test:{port}")),
    };
    let resp = s.send(req.body(Full::new(payload.body)).unwrap()).await;
    assert!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

/// Run `workers` copies of `work` (each loops until told to stop, counting what it did) for the
/// phase; returns completions per second.
async fn run_for<F, Fut>(workers: usize, work: F) -> f64
where
    F: Fn(Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers).map(|_| tokio::spawn(work(stop.clone(), count.clone()))).collect();
    let start = Instant::now();
    tokio::time::sleep(round_duration()).await;
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / secs
}

/// `conns` keep-alive connections doing `method path` with `payload` for the phase; returns req/s.
async fn keepalive(route: &Route, conns: usize, method: &'static str, path: &'static str, payload: Payload) -> f64 {
    run_for(conns, |stop, count| {
        let (route, body) = (route.clone(), payload.clone());
        async move {
            let mut s = open(&route).await;
            while !stop.load(Ordering::Relaxed) {
                request(&mut s, &route, method, path, body.clone()).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await
}

/// New connection (and TLS handshake) per request; returns connections/s.
async fn new_conns(route: &Route, workers: usize) -> f64 {
    run_for(workers, |stop, count| {
        let route = route.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let mut s = open(&route).await;
                request(&mut s, &route, "GET", "/bytes/64", Payload::none()).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await
}

/// Runs the direct and the proxied measurement in alternating rounds, sampling the proxy's CPU
/// during the proxied ones.
async fn phase<D, P, Fd, Fp>(name: &str, unit: &'static str, proxy: &ProxyProcess, direct: D, proxied: P) -> Row
where
    D: Fn() -> Fd,
    P: Fn() -> Fp,
    Fd: std::future::Future<Output = f64>,
    Fp: std::future::Future<Output = f64>,
{
    // Completions and seconds on each side, CPU seconds of this process on each side, proxy CPU.
    let (mut d_n, mut d_t, mut d_own, mut v_n, mut v_t, mut v_own, mut v_proxy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut ratios = Vec::new();
    for _ in 0..rounds() {
        let (l0, t0) = (own_cpu_secs(), Instant::now());
        let d = direct().await;
        let (dt, own) = (t0.elapsed().as_secs_f64(), own_cpu_secs() - l0);
        (d_n, d_t, d_own) = (d_n + d * dt, d_t + dt, d_own + own);
        let (c0, l0, t0) = (proxy.cpu_secs(), own_cpu_secs(), Instant::now());
        let v = proxied().await;
        let (vt, own, cpu) = (t0.elapsed().as_secs_f64(), own_cpu_secs() - l0, proxy.cpu_secs() - c0);
        (v_n, v_t, v_own, v_proxy) = (v_n + v * vt, v_t + vt, v_own + own, v_proxy + cpu);
        ratios.push(v / d);
    }
    Row {
        name: name.to_string(),
        unit,
        direct: d_n / d_t,
        proxied: v_n / v_t,
        cpu_ms_per_req: v_proxy * 1000.0 / v_n,
        load_direct: d_own * 1000.0 / d_n,
        load_proxied: v_own * 1000.0 / v_n,
        ratios,
    }
}

/// CPU seconds used by this process (the load generator and the origin), from /proc/self/stat.
fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15; fields after ')' start at field 3.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

struct Row {
    name: String,
    unit: &'static str,
    direct: f64,
    proxied: f64,
    cpu_ms_per_req: f64,
    /// CPU of this process (client + origin) per request, going direct and through the proxy.
    load_direct: f64,
    load_proxied: f64,
    /// Proxied / direct of each round.
    ratios: Vec<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; any other args are ignored.
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let origin = Origin::tls(&ca, CertKind::Good).await;
    let plain_origin = Origin::plain().await;
    let origin_pem = ca.write_pem(tmp.path());
    let proxy_dir = tmp.path().join("proxy").tap_mkdir();
    let proxy = start_proxy(&proxy_dir, origin.port(), &origin_pem);
    // Plain requests name origin.test too, so the plain origin gets its own proxy process.
    let proxy_plain = start_proxy(&tmp.path().join("proxy-plain").tap_mkdir(), plain_origin.port(), &origin_pem);
    let (o_addr, p_addr) = (origin.addr, plain_origin.addr);
    // The origins record every request in an unbounded channel; drain it so memory stays flat.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = origin.next_request() => {}
                _ = plain_origin.next_request() => {}
            }
        }
    });

    let origin_tls = client_tls(&tmp.path().join("origin-ca.pem"), &[b"http/1.1"]);
    let proxy_tls = client_tls(&proxy_dir.join("certs/ca.pem"), &[b"http/1.1"]);
    let direct = Route { origin: o_addr, proxy: None, tls: Some(origin_tls) };
    let via = Route { origin: o_addr, proxy: Some(proxy.addr), tls: Some(proxy_tls) };
    // As a browser: HTTP/2 offered alone (the origin offers h2 and http/1.1).
    let direct_h2 = Route { tls: Some(client_tls(&tmp.path().join("origin-ca.pem"), &[b"h2"])), ..direct.clone() };
    let via_h2 = Route { tls: Some(client_tls(&proxy_dir.join("certs/ca.pem"), &[b"h2"])), ..via.clone() };
    let direct_plain = Route { origin: p_addr, proxy: None, tls: None };
    let via_plain = Route { origin: p_addr, proxy: Some(proxy_plain.addr), tls: None };

    // Warm up: mint the leaf, fill pools.
    let _ = keepalive(&via, 2, "GET", "/bytes/64", Payload::none()).await;

    let mib: Bytes = {
        let words = b"the quarterly report is attached please review before friday ";
        (0..1024 * 1024).map(|i| words[i % words.len()]).collect::<Vec<u8>>().into()
    };
    let mut rows = Vec::new();

    // The same MiB as a browser sends a file: one multipart/form-data part.
    let form: Bytes = {
        let mut b = b"--PortcullisBench\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.txt\"\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        b.extend_from_slice(&mib);
        b.extend_from_slice(b"\r\n--PortcullisBench--\r\n");
        b.into()
    };
    let plain = Payload { body: mib.clone(), content_type: "text/plain" };
    let multipart = Payload { body: form, content_type: "multipart/form-data; boundary=PortcullisBench" };
    let up_conns = upload_conns();
    let upload = |r: Route, p: Payload| async move { keepalive(&r, up_conns, "POST", "/upload", p).await };
    let get = |r: Route| async move { keepalive(&r, 32, "GET", "/bytes/64", Payload::none()).await };
    let conn = |r: Route| async move { new_conns(&r, 8).await };
    for (id, what, payload) in [("upload", "1 MiB upload", plain.clone()), ("multipart", "1 MiB multipart upload", multipart)] {
        if wanted(id) {
            let name = format!("{what}, inspected ({up_conns} conns)");
            let (d, v) = (|| upload(direct.clone(), payload.clone()), || upload(via.clone(), payload.clone()));
            rows.push(phase(&name, "MiB/s", &proxy, d, v).await);
        }
    }
    if wanted("upload-h2") {
        let name = format!("1 MiB upload over HTTP/2, inspected ({up_conns} conns)");
        let (d, v) = (|| upload(direct_h2.clone(), plain.clone()), || upload(via_h2.clone(), plain.clone()));
        rows.push(phase(&name, "MiB/s", &proxy, d, v).await);
    }
    if wanted("get") {
        rows.push(
            phase("small GET keep-alive, HTTPS intercepted (32 conns)", "req/s", &proxy, || get(direct.clone()), || get(via.clone())).await,
        );
    }
    if wanted("plain") {
        let (d, v) = (|| get(direct_plain.clone()), || get(via_plain.clone()));
        rows.push(phase("small GET keep-alive, plain HTTP (32 conns)", "req/s", &proxy_plain, d, v).await);
    }
    if wanted("connect") {
        let (d, v) = (|| conn(direct.clone()), || conn(via.clone()));
        rows.push(phase("new CONNECT+TLS+GET per request (8 workers)", "conn/s", &proxy, d, v).await);
    }

    // 4. Idle intercepted connections: RSS per connection.
    let idle_n = if wanted("idle") { std::env::var("IDLE_CONNS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000usize) } else { 0 };
    let rss0 = proxy.status_kib("VmRSS:");
    let mut idle = Vec::with_capacity(idle_n);
    for _ in 0..idle_n {
        let mut s = open(&via).await;
        request(&mut s, &via, "GET", "/bytes/64", Payload::none()).await;
        idle.push(s);
    }
    let rss1 = proxy.status_kib("VmRSS:");
    let per_conn_kib = (rss1.saturating_sub(rss0)) as f64 / idle_n as f64;
    let hwm = proxy.status_kib("VmHWM:");
    drop(idle);

    println!(
        "\nPortcullis proxy bench — loopback, same run, same load generator (PHASE_SECS={} per side, in ROUNDS={} alternating rounds)",
        phase_secs(),
        rounds()
    );
    println!(
        "{:<52} {:>8} {:>12} {:>12} {:>8} {:>14} {:>22}  ratio per round",
        "phase", "unit", "direct", "proxy", "ratio", "proxy CPU/req", "client+origin CPU/req"
    );
    for r in &rows {
        let (d, v) = (r.direct, r.proxied);
        println!(
            "{:<52} {:>8} {:>12.1} {:>12.1} {:>7.0}% {:>11.3} ms {:>7.3} / {:.3} ms  {}",
            r.name,
            r.unit,
            d,
            v,
            100.0 * v / d,
            r.cpu_ms_per_req,
            r.load_direct,
            r.load_proxied,
            r.ratios.iter().map(|x| format!("{:.0}%", 100.0 * x)).collect::<Vec<_>>().join(" ")
        );
    }
    println!("(client+origin CPU/req: this process, going direct / through the proxy; all share 2 cores)");
    if idle_n > 0 {
        println!(
            "idle intercepted connections: {idle_n}, proxy RSS +{} KiB → {per_conn_kib:.1} KiB per idle connection",
            rss1.saturating_sub(rss0)
        );
    }
    println!("proxy peak RSS (VmHWM): {:.1} MiB", hwm as f64 / 1024.0);
    drop(proxy_plain);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
