//! `portcullis run` as a real process, real curl through it, real TLS origin, real DLP rules.
//!
//! The proxy is started with `--listen 127.0.0.1:0`; its bound address is read from the
//! `listening on` line it prints to stderr (no fixed ports, no sleeps).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_testkit::{CertKind, Origin, ProxyProcess, TestCa, curl_via, sha256_hex};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    origin: Origin,
    proxy: ProxyProcess,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new();
    let origin = Origin::tls(&ca, CertKind::Good).await;
    let pem = ca.write_pem(&dir);
    let args = ["--resolve".into(), format!("origin.test:{}:127.0.0.1", origin.port()), "--upstream-ca".into(), pem.display().to_string()];
    // No admin API (tests run in parallel; the shipped default is a fixed loopback port).
    let proxy = ProxyProcess::start(Path::new(bin()), &dir, "[admin]\nlisten = \"\"\n", &args, &[]);
    Setup { _tmp: tmp, dir, origin, proxy }
}

impl Setup {
    async fn curl(&self, args: &[&str]) -> (u16, String) {
        curl_via(&format!("http://{}", self.proxy.addr), &self.dir.join("certs/ca.pem"), args).await
    }

    fn url(&self) -> String {
        format!("https://origin.test:{}/upload", self.origin.port())
    }

    fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        format!("@{}", p.display())
    }
}

fn prose(len: usize) -> Vec<u8> {
    let words = b"the quarterly report is attached please review before friday ";
    (0..len).map(|i| words[i % words.len()]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_start_creates_the_ca_and_clean_uploads_pass_byte_identical() {
    let s = setup().await;
    let key = s.dir.join("certs/ca.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let data = prose(10 * 1024 * 1024);
    let f = s.file("clean.txt", &data);
    for v in ["--http1.1", "--http2"] {
        let (code, body) = s.curl(&[v, "-H", "Content-Type: text/plain", "--data-binary", &f, &s.url()]).await;
        assert_eq!(code, 200, "{v}: {body}");
        let got = s.origin.next_request().await;
        assert!(got.complete, "{v}");
        assert_eq!(got.sha256, sha256_hex(&data), "{v}: byte-identical");
    }
    let log = s.proxy.log();
    assert!(!log.contains("BEGIN") && !log.contains("PRIVATE KEY"), "the CA key is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_number_upload_is_blocked_before_the_origin_has_it() {
    let s = setup().await;
    let mut data = prose(10 * 1024 * 1024);
    let at = 9 * 1024 * 1024;
    data[at..at + 30].copy_from_slice(b" card 4111 1111 1111 1111 ok  ");
    let f = s.file("leak.txt", &data);
    for v in ["--http1.1", "--http2"] {
        let (code, body) =
            s.curl(&[v, "-H", "Accept: application/json", "-H", "Content-Type: text/plain", "--data-binary", &f, &s.url()]).await;
        assert_eq!(code, 403, "{v}: {body}");
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(j["evidence"][0]["detector"], "payment-card", "{body}");
        // The audit log's own id kind (`PC-` + 20 Crockford base32), as `logs` shows it.
        let incident = j["incident"].as_str().unwrap();
        assert!(incident.starts_with("PC-") && incident.len() == 23, "{incident}");
        assert!(j["reason"].as_str().unwrap().contains("payment card"));
        assert!(!body.contains("4111 1111 1111 1111"), "evidence is masked: {body}");
        let got = s.origin.next_request().await;
        assert!(!got.complete, "{v}: the origin's handler saw an incomplete body");
        assert!(got.body_len < data.len() as u64);
    }
    // The browser form of the page.
    let (code, body) = s.curl(&["--http1.1", "-H", "Accept: text/html", "--data-binary", &f, &s.url()]).await;
    assert_eq!(code, 403);
    assert!(body.contains("payment card") && body.contains("Incident id"));
    let _ = s.origin.next_request().await;

    let log = s.proxy.log();
    assert!(log.contains("blocked") && log.contains("payment-card"), "{log}");
    assert!(!log.contains("4111 1111 1111 1111"), "the log holds masked evidence only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_init_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = Command::new(bin()).args(["ca", "init", "--dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(bin()).args(["ca", "export", "--dir", dir.to_str().unwrap()]).output().unwrap();
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!pem.contains("PRIVATE"));
    assert_eq!(pem, std::fs::read_to_string(dir.join("ca.pem")).unwrap());
}

#[test]
fn refuses_to_be_an_open_proxy() {
    let out = Command::new(bin()).args(["run", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("open proxy"));
}

/// A 745-byte PDF whose form XObject invokes itself (crates/extract/tests/fixtures/make_fixtures.py):
/// before the structure guard, parsing it overflowed a worker's stack and aborted the gateway for
/// everyone. Now the upload gets a decision with the reason logged, and the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pdf_upload_does_not_take_the_proxy_down() {
    let mut s = setup().await;
    let pdf =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/extract/tests/fixtures/hostile_self_invoking_form.pdf")).unwrap();
    let f = s.file("report.pdf", &pdf);
    let form = format!("file={f};type=application/pdf");
    let (code, body) = s.curl(&["--http1.1", "-F", &form, &s.url()]).await;
    assert!(code == 200 || code == 403, "a policy decision, not a dead proxy: {code} {body}");
    assert!(s.proxy.child.try_wait().unwrap().is_none(), "the proxy process is still running");
    let (code, _) = s.curl(&["--http2", &format!("https://origin.test:{}/", s.origin.port())]).await;
    assert_eq!(code, 200, "and still serving");
    assert!(s.proxy.log().contains("form XObject /X0 invokes itself"), "the reason is logged: {}", s.proxy.log());
}
