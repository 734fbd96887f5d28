//! The policy and the audit log through the running gateway: `portcullis run` as a process,
//! real curl with proxy authentication, real app hosts (reached through `--resolve` to a
//! loopback TLS origin), the shipped app catalog and policy, and the SQLite log read back with
//! `portcullis logs`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_testkit::{CertKind, Origin, ProxyProcess, TestCa, curl, sha256_hex};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// Users from the shipped example users file (passwords documented there).
const CHAN: &str = "chan.taiman:example-only-change-me";
const WONG: &str = "wong.siuming:example-only-change-me-too";
const HOSTS: &[&str] = &["mail.google.com", "drive.google.com", "origin.test", "web.whatsapp.com"];

struct Gateway {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    origin: Origin,
    proxy: ProxyProcess,
}

/// The shipped policy, with the example exception's expiry moved a year ahead so the test
/// does not depend on today's date, plus a trial (simulate) rule for the finance group.
fn policy_file(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/policy.toml")).unwrap();
    let next_year = time::OffsetDateTime::now_utc().year() + 1;
    let mut text = String::new();
    for line in shipped.lines() {
        if line.starts_with("expires = ") {
            text.push_str(&format!("expires = {next_year}-06-30\n"));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let trial = "[[rule]]\nid = \"trial-block-finance-uploads\"\ndescription = \"Trial: would finance uploads be blocked?\"\n\
                 groups = [\"finance\"]\nactivities = [\"upload\", \"send\"]\naction = \"block\"\nsimulate = true\n\n";
    let at = text.find("[[rule]]").unwrap();
    text.insert_str(at, trial);
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p
}

async fn gateway() -> Gateway {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new();
    let origin = Origin::tls(&ca, CertKind::Names(HOSTS)).await;
    let pem = ca.write_pem(&dir);
    let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/users.example.toml");
    let policy = policy_file(&dir);
    let mut args = vec!["--upstream-ca".into(), pem.display().to_string()];
    for h in HOSTS {
        args.push("--resolve".into());
        args.push(format!("{h}:{}:127.0.0.1", origin.port()));
    }
    // The admin API on an ephemeral port (tests run in parallel); the audit log beside the config.
    let extra = format!(
        "users_file = {:?}\npolicy_file = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        users.display().to_string(),
        policy.display().to_string()
    );
    let proxy = ProxyProcess::start(Path::new(BIN), &dir, &extra, &args, &[]);
    Gateway { _tmp: tmp, dir, origin, proxy }
}

struct Reply {
    code: u16,
    connect_code: u16,
    body: String,
}

impl Gateway {
    async fn curl(&self, user: Option<&str>, args: &[&str]) -> Reply {
        let mut a: Vec<String> = vec![
            "-sS".into(),
            "--proxy".into(),
            format!("http://{}", self.proxy.addr),
            "--cacert".into(),
            self.dir.join("certs/ca.pem").display().to_string(),
            "-w".into(),
            "\n%{http_code} %{http_connect}".into(),
        ];
        if let Some(u) = user {
            a.push("--proxy-user".into());
            a.push(u.into());
        }
        a.extend(args.iter().map(|s| s.to_string()));
        let out = curl(a).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, codes) = text.rsplit_once('\n').unwrap_or(("", &text));
        let mut it = codes.split_whitespace().map(|c| c.parse::<u16>().unwrap_or(0));
        Reply { code: it.next().unwrap_or(0), connect_code: it.next().unwrap_or(0), body: body.to_string() }
    }

    /// `https://HOST:ORIGIN_PORT/path` (the origin listens on an ephemeral port).
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.origin.port())
    }

    fn file(&self, name: &str, data: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        format!("file=@{}", p.display())
    }

    /// `portcullis logs query --format json` on this gateway's audit log.
    fn events(&self, filters: &[&str]) -> Vec<serde_json::Value> {
        let db = self.dir.join("data/audit.db");
        let out = Command::new(BIN)
            .args(["logs", "query", "--db", db.to_str().unwrap(), "--format", "json", "--limit", "1000"])
            .args(filters)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits until the queued (non-blocking) audit events matching `filters` are committed.
    async fn wait_events(&self, filters: &[&str], at_least: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let e = self.events(filters);
            if e.len() >= at_least {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("fewer than {at_least} events for {filters:?}: {:?}\n{}", self.events(&[]), self.proxy.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_that_cannot_be_inspected_is_refused_at_connect() {
    let g = gateway().await;
    let r = g.curl(Some(WONG), &[&g.url("web.whatsapp.com", "/")]).await;
    assert_eq!(r.connect_code, 403, "the CONNECT itself is refused: {}", r.body);
    let events = g.wait_events(&["--action", "block", "--app", "whatsapp"], 1).await;
    assert_eq!(events[0]["category"], "instant-messaging");
    assert_eq!(events[0]["rule"], "block-instant-messaging");
    assert_eq!(events[0]["user"], "wong.siuming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_proxy_asks_for_them() {
    let g = gateway().await;
    let r = g.curl(None, &[&g.url("origin.test", "/")]).await;
    assert_eq!(r.connect_code, 407);
    let r = g.curl(Some("wong.siuming:wrong-password"), &[&g.url("origin.test", "/")]).await;
    assert_eq!(r.connect_code, 407, "a wrong password is refused, never downgraded to anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_upload_is_blocked_by_rule_and_allowed_through_the_approved_exception() {
    let g = gateway().await;
    let f = g.file("minutes.txt", "Minutes of the budget meeting, nothing sensitive.");
    let url = &g.url("mail.google.com", "/mail/u/0/?ui=2&ik=1234&act=sm");

    // Not excepted: blocked with the webmail rule, over intercepted TLS so the page is readable.
    let r = g.curl(Some(WONG), &["-H", "Accept: application/json", "-F", &f, url]).await;
    assert_eq!(r.code, 403, "{}", r.body);
    let page: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(page["rule"], "block-webmail", "{}", r.body);
    let incident = page["incident"].as_str().unwrap().to_string();
    let logged = g.events(&["--user", "wong.siuming", "--app", "gmail"]);
    let event = logged.iter().find(|e| e["id"] == incident.as_str()).expect("the block page's incident is in the log");
    assert_eq!(event["action"], "block");
    assert_eq!(event["category"], "webmail");
    assert!(!event["url"].as_str().unwrap().contains("1234"), "query values are redacted: {event}");

    // Excepted (approved by a department head): the same upload reaches the origin.
    let r = g.curl(Some(CHAN), &["-H", "Accept: application/json", "-F", &f, url]).await;
    assert_eq!(r.code, 200, "{}\n{}", r.body, g.proxy.log());
    let got = g.origin.next_request().await;
    assert!(got.complete && got.path.starts_with("/mail/u/0/"));
    let used = g.wait_events(&["--user", "chan.taiman", "--app", "gmail"], 1).await;
    assert!(
        used.iter().any(|e| e["exception"] == "EX-2026-0147" && e["approver"].as_str().unwrap_or("").contains("Head of Finance")),
        "the exception and its approver are recorded: {used:?}"
    );

    // Even with the exception, a card number in the upload is still stopped by DLP.
    let content = format!("please charge 4111 1111 1111 1111 thanks\n{}", "the rest of the letter\n".repeat(100_000));
    let leak = g.file("card.txt", &content);
    let message = "Please find the letter attached.";
    let r = g.curl(Some(CHAN), &["-H", "Accept: application/json", "-F", &format!("body={message}"), "-F", &leak, url]).await;
    assert_eq!(r.code, 403, "{}", r.body);
    let page: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(page["evidence"][0]["detector"], "payment-card");
    assert!(!r.body.contains("4111 1111 1111 1111"));

    // Its record (durable before the page was sent) names the file it stopped, with the
    // SHA-256 and size of the part that arrived, marked partial.
    let incident = page["incident"].as_str().unwrap();
    let event = g.events(&["--user", "chan.taiman"]).into_iter().find(|e| e["id"] == incident).expect("the block is logged");
    let file = event["files"].as_array().unwrap().iter().find(|f| f["name"] == "card.txt").cloned().expect("card.txt is listed");
    assert_eq!(file["partial"], true, "{file}");
    let size = file["size"].as_u64().unwrap() as usize;
    assert!(size > 0 && size < content.len(), "{file}");
    assert_eq!(file["sha256"], sha256_hex(&content.as_bytes()[..size]), "{file}");
    assert_eq!(file["field"], "file", "{file}");
    // The message typed into the form is listed by its form field, whole.
    let files = event["files"].as_array().unwrap();
    let body = files.iter().find(|f| f["field"] == "body").expect("the message field is listed");
    assert!(body.get("name").is_none_or(|n| n.is_null()) && body.get("partial").is_none(), "{body}");
    assert_eq!(body["sha256"], sha256_hex(message.as_bytes()), "{body}");
    // Only the two parts: the multipart envelope is not a file.
    assert_eq!(files.len(), 2, "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_rule_allows_and_records_what_it_would_have_done() {
    let g = gateway().await;
    let f = g.file("report.txt", "Quarterly figures attached.");
    let r = g.curl(Some(WONG), &["-F", &f, &g.url("origin.test", "/upload")]).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(g.origin.next_request().await.complete);
    let events = g.wait_events(&["--user", "wong.siuming", "--host", "origin.test"], 1).await;
    assert!(events.iter().any(|e| e["simulated"] == true && e["would"] == "block"), "the trial rule's verdict is recorded: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_a_client_saw_survives_kill_9() {
    let mut g = gateway().await;
    let leak = g.file("ids.csv", "name,id\nChan,A123456(3)\n");
    let mut incidents = Vec::new();
    for _ in 0..5 {
        let r = g.curl(Some(WONG), &["-H", "Accept: application/json", "-F", &leak, &g.url("origin.test", "/upload")]).await;
        assert_eq!(r.code, 403, "{}", r.body);
        let page: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        incidents.push(page["incident"].as_str().unwrap().to_string());
    }
    g.proxy.child.kill().unwrap(); // SIGKILL: no shutdown path, no final flush
    g.proxy.child.wait().unwrap();
    let db = g.dir.join("data/audit.db");
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["data/audit.db", "data/admin.token", "data/value-hmac.key"] {
            let mode = std::fs::metadata(g.dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f} is private");
        }
    }
    for id in &incidents {
        let out = Command::new(BIN).args(["logs", "show", id, "--db", db.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "incident {id} lost: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("hkid"), "{text}");
        assert!(!text.contains("A123456(3)"), "only masked evidence is stored: {text}");
    }
}

impl Gateway {
    /// The admin API address the gateway printed, and its bearer token.
    fn admin(&self) -> (String, String) {
        let log = self.proxy.log();
        let addr = log
            .split("admin API on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no admin API line: {log}"))
            .to_string();
        let token = std::fs::read_to_string(self.dir.join("data/admin.token")).unwrap().trim().to_string();
        (addr, token)
    }

    async fn admin_call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let (addr, _) = self.admin();
        let mut a: Vec<String> = vec!["-sS".into(), "-X".into(), method.into(), "-w".into(), "\n%{http_code}".into()];
        if let Some(t) = token {
            a.push("-H".into());
            a.push(format!("Authorization: Bearer {t}"));
        }
        a.push(format!("http://{addr}{path}"));
        let out = curl(a).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_on_reload_keeps_the_old_one_and_a_good_one_takes_effect() {
    let g = gateway().await;
    let (_, token) = g.admin();
    let drive = g.url("drive.google.com", "/");
    assert_eq!(g.curl(Some(WONG), &["-H", "Accept: application/json", &drive]).await.code, 403);

    // Break the policy file: the reload is refused with file and line, the old policy stays.
    let policy = g.dir.join("policy.toml");
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{good}\n[[rule]]\nid = \"oops\"\naction = \"explode\"\n")).unwrap();
    let (code, body) = g.admin_call("POST", "/api/reload", Some(&token)).await;
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("policy.toml"), "the error names the file: {body}");
    assert_eq!(g.curl(Some(WONG), &["-H", "Accept: application/json", &drive]).await.code, 403, "old policy still enforced");

    // A good change (cloud storage no longer blocked) takes effect on reload.
    std::fs::write(
        &policy,
        good.replace("categories = [\"cloud-storage\"]\naction = \"block\"", "categories = [\"cloud-storage\"]\naction = \"log\""),
    )
    .unwrap();
    let (code, body) = g.admin_call("POST", "/api/reload", Some(&token)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(g.curl(Some(WONG), &[&drive]).await.code, 200, "{}", g.proxy.log());
    let _ = g.origin.next_request().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token_and_metrics_count_blocks() {
    let g = gateway().await;
    let card = g.file("card.txt", "card 4111 1111 1111 1111");
    let r = g.curl(Some(WONG), &["-F", &card, &g.url("origin.test", "/upload")]).await;
    assert_eq!(r.code, 403);
    let (code, _) = g.admin_call("GET", "/api/events", None).await;
    assert_eq!(code, 401, "no token, no events");
    let (code, _) = g.admin_call("GET", "/healthz", None).await;
    assert_eq!(code, 200);
    let (code, body) = g.admin_call("GET", "/api/events?action=block", Some(&token_of(&g))).await;
    assert_eq!(code, 200);
    assert!(body.contains("payment-card") && !body.contains("4111 1111 1111 1111"), "{body}");
    let (code, metrics) = g.admin_call("GET", "/metrics", Some(&token_of(&g))).await;
    assert_eq!(code, 200);
    let blocks: f64 = metrics
        .lines()
        .filter(|l| l.contains("block_detections") && l.contains("payment-card") && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(blocks >= 1.0, "{metrics}");
    assert!(metrics.contains("cert_cache_misses"), "{metrics}");
}

fn token_of(g: &Gateway) -> String {
    g.admin().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_tls_protocol_inside_a_tunnel_is_classified_opaque_blocked_and_logged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let g = gateway().await;
    let mut tcp = tokio::net::TcpStream::connect(g.proxy.addr).await.unwrap();
    let auth = "d29uZy5zaXVtaW5nOmV4YW1wbGUtb25seS1jaGFuZ2UtbWUtdG9v"; // base64 of WONG
    let target = format!("origin.test:{}", g.origin.port());
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = portcullis_testkit::read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A messaging client's own framing, not TLS.
    tcp.write_all(b"\x00\x00\x00\x2aMTProto-like frame with a document inside").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut rest)).await.expect("tunnel closed");
    assert!(!String::from_utf8_lossy(&rest).contains("MTProto"), "nothing was relayed back");
    let events = g.wait_events(&["--action", "block", "--host", "origin.test"], 1).await;
    assert!(events.iter().any(|e| e["rule"] == "block-opaque-tunnels" && e["activity"] == "opaque"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_restriction_headers_are_added_on_the_way_out() {
    let g = gateway().await;
    let (_, token) = g.admin();
    let policy = g.dir.join("policy.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("\n[tenant-restrictions.google]\nX-GoogApps-Allowed-Domains = \"example.gov.hk\"\n");
    std::fs::write(&policy, text).unwrap();
    let (code, body) = g.admin_call("POST", "/api/reload", Some(&token)).await;
    assert_eq!(code, 200, "{body}");
    // The excepted user reaches Gmail; Google itself then refuses accounts outside the domain.
    let r = g.curl(Some(CHAN), &[&g.url("mail.google.com", "/mail/u/0/")]).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let got = g.origin.next_request().await;
    assert_eq!(got.headers.get("x-googapps-allowed-domains").map(|v| v.to_str().unwrap()), Some("example.gov.hk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    let g = gateway().await;
    let drive = g.url("drive.google.com", "/");
    assert_eq!(g.curl(Some(WONG), &[&drive]).await.code, 403);
    let policy = g.dir.join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("categories = [\"cloud-storage\"]\naction = \"block\"", "categories = [\"cloud-storage\"]\naction = \"log\""),
    )
    .unwrap();
    let status = Command::new("kill").args(["-HUP", &g.proxy.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The signal is handled asynchronously: poll (bounded) until the new policy answers.
    for _ in 0..100 {
        if g.curl(Some(WONG), &[&drive]).await.code == 200 {
            let _ = g.origin.next_request().await;
            assert!(g.proxy.log().contains("reloaded"), "{}", g.proxy.log());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("policy not reloaded on SIGHUP: {}", g.proxy.log());
}
