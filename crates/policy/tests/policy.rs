//! Policy decisions over the shipped catalog: stages, exceptions (with expiry), simulate,
//! broken files, `check`, identity.
#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_classify::{Activity, Catalog, FlowHead};
use portcullis_policy::{Action, BodyFacts, Engine, Identity, Policy, Stage, Users, hash_password, parse_expiry};

/// 2026-12-03T12:00:00Z
fn today() -> SystemTime {
    at("2026-12-03T12:00:00Z")
}

fn at(rfc3339: &str) -> SystemTime {
    parse_expiry(&toml::Value::String(rfc3339.into())).unwrap().0
}

fn who(user: &str, groups: &[&str]) -> Identity {
    Identity { user: Arc::from(user), groups: groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().into() }
}

struct T {
    engine: Engine,
}

impl T {
    fn builtin() -> T {
        T { engine: Engine::builtin() }
    }

    fn with(policy: &str) -> T {
        T { engine: Engine { catalog: Catalog::builtin(), policy: Arc::new(Policy::parse("p.toml", policy).unwrap()) } }
    }

    fn at_stage(
        &self,
        user: Option<&Identity>,
        method: &str,
        host: &str,
        path: Option<&str>,
        stage: Stage,
        findings: &[&str],
        unscannable: bool,
        now: SystemTime,
    ) -> portcullis_policy::Decision {
        let flow = self.engine.classify(&FlowHead { host, port: Some(443), ip: None, method: Some(method), path });
        let findings: Vec<String> = findings.iter().map(|s| s.to_string()).collect();
        self.engine.decide(user, &flow, stage, BodyFacts { findings: &findings, unscannable }, now)
    }

    fn connect(&self, user: Option<&Identity>, host: &str) -> portcullis_policy::Decision {
        self.at_stage(user, "CONNECT", host, None, Stage::Connect, &[], false, today())
    }

    fn request(&self, user: Option<&Identity>, method: &str, host: &str, path: &str) -> portcullis_policy::Decision {
        self.at_stage(user, method, host, Some(path), Stage::Request, &[], false, today())
    }

    fn body(&self, user: Option<&Identity>, host: &str, path: &str, findings: &[&str], unscannable: bool) -> portcullis_policy::Decision {
        self.at_stage(user, "POST", host, Some(path), Stage::Body, findings, unscannable, today())
    }
}

fn rule(d: &portcullis_policy::Decision) -> Option<&str> {
    d.rule.as_deref()
}

#[test]
fn shipped_policy_checks_clean_against_shipped_catalog() {
    let p = Policy::builtin();
    let problems = p.check(&Catalog::builtin(), None, today());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(p.exceptions().len(), 1);
    assert!(p.exceptions()[0].approver.contains("Head of"));
}

#[test]
fn non_inspectable_messengers_blocked_at_connect() {
    let t = T::builtin();
    let bob = who("bob", &["staff"]);
    for host in ["web.whatsapp.com", "wx.qq.com", "web.telegram.org", "149.154.167.51", "chat.signal.org", "line.me"] {
        let d = t.connect(Some(&bob), host);
        assert_eq!(d.action, Action::Block, "{host}");
        assert_eq!(rule(&d), Some("block-instant-messaging"), "{host}");
        assert_eq!(d.stage, Stage::Connect);
    }
    // Anonymous too.
    assert_eq!(t.connect(None, "web.whatsapp.com").action, Action::Block);
}

#[test]
fn restricted_categories_blocked_for_everyone() {
    let t = T::builtin();
    let bob = who("bob", &["staff"]);
    let d = t.request(Some(&bob), "GET", "mail.google.com", "/mail/u/0/");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-webmail")));
    let d = t.request(Some(&bob), "POST", "www.googleapis.com", "/upload/drive/v3/files?uploadType=multipart");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-cloud-storage")));
    // Inspectable apps are intercepted so the block comes with a block page...
    let d = t.connect(Some(&bob), "www.dropbox.com");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("block-cloud-storage")));
    // ...unless they cannot be inspected: then the CONNECT itself is refused.
    let d = t.connect(Some(&bob), "mega.nz");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-cloud-storage")));
    let d = t.connect(Some(&bob), "mail.proton.me");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-webmail")));
    assert!(d.exception.is_none());
    // Not a restricted app: browsing allowed, uploads inspected.
    let d = t.request(Some(&bob), "GET", "news.qq.com", "/");
    assert_eq!((d.action, rule(&d)), (Action::Allow, None));
    let d = t.connect(Some(&bob), "www.example.com");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("block-opaque-tunnels")), "activity unknown until intercepted");
}

#[test]
fn non_tls_bytes_in_a_tunnel_are_blocked_by_default() {
    let t = T::builtin();
    let bob = who("bob", &["staff"]);
    let flow = t.engine.classify(&FlowHead { host: "www.example.com", port: Some(443), ip: None, method: None, path: None });
    let d = t.engine.decide(Some(&bob), &flow, Stage::Connect, BodyFacts::default(), std::time::SystemTime::now());
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-opaque-tunnels")));
}

#[test]
fn uploads_elsewhere_are_inspected() {
    let t = T::builtin();
    let bob = who("bob", &[]);
    let d = t.request(Some(&bob), "POST", "upload.example.com", "/files");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("inspect-uploads")));
    let d = t.body(Some(&bob), "upload.example.com", "/files", &[], false);
    assert_eq!((d.action, rule(&d)), (Action::Allow, Some("inspect-uploads")));
    let d = t.body(Some(&bob), "upload.example.com", "/files", &["payment-card"], false);
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("inspect-uploads")));
    let d = t.body(Some(&bob), "upload.example.com", "/files", &[], true);
    assert_eq!(d.action, Action::Log, "unscannable elsewhere is allowed but recorded");
    assert!(d.should_record());
}

#[test]
fn exception_waives_access_rule_not_inspection() {
    let t = T::builtin();
    let chan = who("chan.taiman", &["finance"]);
    let d = t.request(Some(&chan), "GET", "mail.google.com", "/mail/u/0/");
    assert_eq!(d.action, Action::Log, "allowed and recorded: {d:?}");
    let ex = d.exception.as_ref().unwrap();
    assert_eq!(&*ex.id, "EX-2026-0147");
    assert!(ex.approver.contains("Head of Finance"));
    assert_eq!(ex.expires, "2027-07-01T00:00:00Z");
    // Connect: the block is waived, the upload rules need the activity: intercept.
    let d = t.connect(Some(&chan), "mail.google.com");
    assert_eq!(d.action, Action::Inspect);
    // The exception covers Gmail only.
    let d = t.request(Some(&chan), "GET", "drive.google.com", "/");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-cloud-storage")));
    // Upload through the exception: scanned; clean passes, a finding blocks, unscannable blocks.
    let d = t.request(Some(&chan), "POST", "mail.google.com", "/mail/u/0/?act=upload");
    assert_eq!(d.action, Action::Inspect);
    let d = t.body(Some(&chan), "mail.google.com", "/mail/u/0/", &[], false);
    assert_eq!(d.action, Action::Log);
    assert_eq!(d.exception.as_ref().map(|e| &*e.id), Some("EX-2026-0147"));
    let d = t.body(Some(&chan), "mail.google.com", "/mail/u/0/", &["hkid"], false);
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("inspect-uploads")));
    assert!(d.exception.is_some(), "the block is recorded with the exception in play");
    let d = t.body(Some(&chan), "mail.google.com", "/mail/u/0/", &[], true);
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-unscannable-to-restricted")));
}

#[test]
fn exception_expires_at_its_expiry() {
    let t = T::builtin();
    let chan = who("chan.taiman", &[]);
    let d = |now| t.at_stage(Some(&chan), "GET", "mail.google.com", Some("/"), Stage::Request, &[], false, now);
    // expires = 2027-06-30: valid through that day (UTC).
    assert_eq!(d(at("2027-06-29T12:00:00Z")).action, Action::Log);
    assert_eq!(d(at("2027-06-30T23:59:59Z")).action, Action::Log);
    let before = d(at("2027-07-01T00:00:00Z") - Duration::from_nanos(1));
    assert_eq!(before.action, Action::Log);
    let after = d(at("2027-07-01T00:00:00Z"));
    assert_eq!((after.action, rule(&after)), (Action::Block, Some("block-webmail")));
    assert!(after.exception.is_none());
    assert_eq!(d(at("2027-07-01T12:00:00Z")).action, Action::Block);

    // An exact instant with an offset.
    let t = T::with(
        r#"
[[rule]]
id = "b"
apps = ["dropbox"]
action = "block"
[[exception]]
id = "E1"
groups = ["legal"]
categories = ["cloud-storage"]
approver = "Head of Legal"
reason = "r"
expires = "2027-01-15T18:00:00+08:00"
"#,
    );
    let legal = who("x", &["legal"]);
    let d = |now| t.at_stage(Some(&legal), "GET", "www.dropbox.com", Some("/"), Stage::Request, &[], false, now);
    assert_eq!(d(at("2027-01-15T09:59:59Z")).action, Action::Log);
    assert_eq!(d(at("2027-01-15T10:00:00Z")).action, Action::Block);
    // Someone else: never.
    let other = who("y", &["sales"]);
    let d = t.at_stage(Some(&other), "GET", "www.dropbox.com", Some("/"), Stage::Request, &[], false, today());
    assert_eq!(d.action, Action::Block);
}

#[test]
fn exception_limited_to_activities() {
    let t = T::with(
        r#"
[[rule]]
id = "block-webmail"
categories = "webmail"
action = "block"
[[exception]]
id = "E-read"
users = "amy"
apps = "outlook"
activities = ["browse", "login"]
approver = "Head of IT"
reason = "Read-only access"
expires = 2030-01-01
"#,
    );
    let amy = who("amy", &[]);
    assert_eq!(t.connect(Some(&amy), "outlook.live.com").action, Action::Inspect, "may apply: intercept and see");
    assert_eq!(t.request(Some(&amy), "GET", "outlook.live.com", "/mail/").action, Action::Log);
    let d = t.request(Some(&amy), "POST", "outlook.live.com", "/owa/service.svc");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("block-webmail")));
    let zed = who("zed", &[]);
    assert_eq!(t.connect(Some(&zed), "outlook.live.com").action, Action::Inspect);
    assert_eq!(t.request(Some(&zed), "GET", "outlook.live.com", "/mail/").action, Action::Block);
}

#[test]
fn first_match_wins_and_matchers() {
    let t = T::with(
        r#"
[defaults]
action = "log"
[[rule]]
id = "it-may-use-slack"
groups = ["it"]
apps = ["slack"]
action = "allow"
[[rule]]
id = "no-im"
categories = ["instant-messaging"]
action = "block"
[[rule]]
id = "cards"
findings = ["payment-card", "iban"]
action = "block"
[[rule]]
id = "any-finding-log"
findings = "*"
action = "log"
[[rule]]
id = "connect-only"
stages = "connect"
apps = "box"
action = "block"
"#,
    );
    let it = who("ian", &["it"]);
    let d = t.request(Some(&it), "POST", "slack.com", "/api/chat.postMessage");
    assert_eq!((d.action, rule(&d)), (Action::Allow, Some("it-may-use-slack")));
    let d = t.request(Some(&who("sam", &["sales"])), "GET", "slack.com", "/");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("no-im")));
    // Findings are unknown before the body: "look further".
    let d = t.request(None, "POST", "example.org", "/");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("cards")));
    let d = t.body(None, "example.org", "/", &["iban"], false);
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("cards")));
    let d = t.body(None, "example.org", "/", &["us-ssn"], false);
    assert_eq!((d.action, rule(&d)), (Action::Log, Some("any-finding-log")));
    let d = t.body(None, "example.org", "/", &[], false);
    assert_eq!((d.action, rule(&d)), (Action::Log, None), "default action");
    // Stage condition: an explicit connect-stage block is delivered at CONNECT.
    let d = t.connect(None, "app.box.com");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("cards")), "an earlier undecided rule comes first");
    let t = T::with("[[rule]]\nid = \"connect-only\"\nstages = \"connect\"\napps = \"box\"\naction = \"block\"\n");
    let d = t.connect(None, "app.box.com");
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("connect-only")));
    let d = t.request(None, "GET", "app.box.com", "/");
    assert_eq!((d.action, rule(&d)), (Action::Allow, None));
}

#[test]
fn simulate_records_without_acting() {
    let t = T::with(
        r#"
[[rule]]
id = "trial-block-box"
apps = ["box"]
action = "block"
simulate = true
[[rule]]
id = "trial-inspect-all"
simulate = true
activities = "upload"
action = "inspect"
[[rule]]
id = "allow-rest"
action = "allow"
"#,
    );
    let d = t.request(None, "GET", "app.box.com", "/folder/0");
    assert_eq!(d.action, Action::Log, "allowed, and recorded because of the simulation");
    assert_eq!(rule(&d), Some("allow-rest"));
    assert!(d.simulated);
    assert_eq!(d.would, Some(Action::Block));
    assert_eq!(d.simulated_rule.as_deref(), Some("trial-block-box"));
    // A simulated inspect rule needs the body to know what it would do.
    let d = t.request(None, "POST", "example.org", "/up");
    assert_eq!((d.action, rule(&d)), (Action::Inspect, Some("trial-inspect-all")));
    let d = t.body(None, "example.org", "/up", &["payment-card"], false);
    assert_eq!((d.action, d.would, rule(&d)), (Action::Log, Some(Action::Block), Some("allow-rest")));
    let d = t.body(None, "example.org", "/up", &[], false);
    assert_eq!((d.action, d.would), (Action::Log, Some(Action::Allow)));
    // Not matching: plain allow, nothing recorded.
    let d = t.request(None, "GET", "example.org", "/");
    assert_eq!((d.action, d.simulated), (Action::Allow, false));
    assert!(!d.should_record());
}

#[test]
fn opaque_tunnel_bytes() {
    let t = T::with(
        r#"
[[rule]]
id = "opaque"
activities = "opaque"
action = "block"
"#,
    );
    let flow = t.engine.classify(&FlowHead { host: "relay.example", method: None, ..Default::default() });
    assert_eq!(flow.activity, Some(Activity::Opaque));
    let d = t.engine.decide(None, &flow, Stage::Connect, BodyFacts::default(), today());
    assert_eq!((d.action, rule(&d)), (Action::Block, Some("opaque")));
}

fn problems(text: &str) -> Vec<(usize, String)> {
    match Policy::parse("bad.toml", text) {
        Ok(_) => vec![],
        Err(e) => e.problems().into_iter().map(|p| (p.line, p.message)).collect(),
    }
}

#[test]
fn broken_files_name_line_and_problem() {
    let p = problems("[[rule]]\nid = \"a\"\naction = \"deny\"\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, 3);
    assert!(p[0].1.contains("unknown action \"deny\""), "{p:?}");

    let p = problems("[[rule]]\nid = \"a\"\nactivities = [\"browse\",\n  \"uplode\"]\naction = \"block\"\n");
    assert_eq!(p[0].0, 4, "{p:?}");
    assert!(p[0].1.contains("uplode"));

    let p = problems("[[rule]]\nid = \"a\"\naction = \"block\"\n\n[[rule]]\nid = \"a\"\naction = \"allow\"\n");
    assert_eq!(p[0].0, 5, "{p:?}");
    assert!(p[0].1.contains("already used at line 1"));

    let p = problems("[[rule]]\nid = \"a\"\naction = \"block\"\ncolour = \"red\"\n");
    assert_eq!(p[0].0, 4, "{p:?}");
    assert!(p[0].1.contains("colour"), "{p:?}");

    let p = problems(
        "[[rule]]\nid = \"a\"\naction = \"block\"\n\n[[exception]]\nid = \"e\"\nusers = [\"x\"]\napps = [\"gmail\"]\napprover = \"h\"\nreason = \"r\"\nexpires = \"next year\"\n",
    );
    assert_eq!(p[0].0, 11, "{p:?}");
    assert!(p[0].1.contains("expires"), "{p:?}");

    let p = problems(
        "[[exception]]\nid = \"e\"\napps = [\"gmail\"]\napprover = \"h\"\nreason = \"r\"\nexpires = 2027-01-01\nrules = [\"nope\"]\n",
    );
    assert!(p.iter().any(|(l, m)| *l == 1 && m.contains("users or groups")), "{p:?}");
    assert!(p.iter().any(|(l, m)| *l == 7 && m.contains("no rule with id \"nope\"")), "{p:?}");

    let p = problems("[[exception]]\nid = \"e\"\nusers = \"x\"\napps = [\"gmail\"]\nreason = \"r\"\nexpires = 2027-01-01\n");
    assert!(p[0].1.contains("approver"), "{p:?}");

    let p = problems("[[rule]\nid = \"a\"\n");
    assert_eq!(p[0].0, 1, "{p:?}");
}

#[test]
fn check_reports_unknown_ids_and_expired_exceptions() {
    let text = r#"
[[rule]]
id = "a"
apps = ["gmail", "hotmail"]
action = "block"

[[rule]]
id = "b"
categories = ["social"]
findings = ["payment-card", "passport"]
action = "block"

[[exception]]
id = "old"
users = ["x"]
apps = ["gmail"]
approver = "Head of HR"
reason = "r"
expires = 2026-01-31

[tenant-restrictions.google]
X-GoogApps-Allowed-Domains = "example.gov.hk"
[tenant-restrictions.yahoo]
X-Foo = "1"
"#;
    let p = Policy::parse("p.toml", text).unwrap();
    let detectors = vec!["payment-card".to_string(), "hkid".to_string()];
    let problems = p.check(&Catalog::builtin(), Some(&detectors), today());
    let lines: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.message.as_str())).collect();
    assert!(lines.iter().any(|(l, m)| *l == 4 && m.contains("unknown app id \"hotmail\"")), "{lines:?}");
    assert!(lines.iter().any(|(l, m)| *l == 9 && m.contains("unknown category \"social\"")), "{lines:?}");
    assert!(lines.iter().any(|(l, m)| *l == 10 && m.contains("unknown detector id \"passport\"")), "{lines:?}");
    assert!(lines.iter().any(|(l, m)| *l == 13 && m.contains("expired") && m.contains("Head of HR")), "{lines:?}");
    assert!(lines.iter().any(|(_, m)| m.contains("unknown vendor \"yahoo\"")), "{lines:?}");
    assert_eq!(problems.len(), 5, "{lines:?}");
    // The day before it expired, the exception was fine.
    let problems = p.check(&Catalog::builtin(), Some(&detectors), at("2026-01-31T23:00:00Z"));
    assert_eq!(problems.len(), 4);
}

#[test]
fn tenant_headers_for_vendor_flows() {
    let t =
        T::with("[tenant-restrictions.microsoft]\nRestrict-Access-To-Tenants = \"example.gov.hk\"\nRestrict-Access-Context = \"abc\"\n");
    let flow =
        t.engine.classify(&FlowHead { host: "login.microsoftonline.com", method: Some("GET"), path: Some("/"), ..Default::default() });
    let h = t.engine.tenant_headers(&flow);
    assert_eq!(h.len(), 2);
    assert!(h.iter().any(|(n, v)| n == "Restrict-Access-To-Tenants" && v == "example.gov.hk"));
    let flow = t.engine.classify(&FlowHead { host: "mail.google.com", method: Some("GET"), path: Some("/"), ..Default::default() });
    assert!(t.engine.tenant_headers(&flow).is_empty(), "google not configured");
}

#[test]
fn users_file_basic_auth_and_addresses() {
    let hash = hash_password("correct horse").unwrap();
    assert!(hash.starts_with("$argon2id$"));
    let text = format!(
        "[[user]]\nname = \"chan.taiman\"\npassword = \"{hash}\"\ngroups = [\"finance\"]\n\n\
         [[address]]\ncidr = \"10.20.0.0/16\"\nuser = \"lobby\"\ngroups = [\"kiosks\"]\n\
         [[address]]\ncidr = \"10.20.5.7\"\nuser = \"chan.taiman\"\n"
    );
    let users = Users::parse("users.toml", &text).unwrap();
    let id = users.verify("chan.taiman", "correct horse").unwrap();
    assert_eq!(&*id.user, "chan.taiman");
    assert_eq!(&id.groups[..], ["finance".to_string()]);
    // Second time from the cache, same answer; a wrong password is still refused after it.
    assert!(users.verify("chan.taiman", "correct horse").is_some());
    assert!(users.verify("chan.taiman", "wrong").is_none());
    assert!(users.verify("nobody", "correct horse").is_none());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode("chan.taiman:correct horse");
    assert_eq!(&*users.basic(&format!("Basic {b64}")).unwrap().user, "chan.taiman");
    let bad = base64::engine::general_purpose::STANDARD.encode("chan.taiman:nope");
    assert_eq!(users.basic(&format!("basic {bad}")), Err(portcullis_policy::AuthError::Rejected));
    assert_eq!(users.basic("Bearer abc"), Err(portcullis_policy::AuthError::Malformed));
    assert_eq!(users.basic("Basic !!!"), Err(portcullis_policy::AuthError::Malformed));
    // Address map: most specific wins; mapped users get their account's groups.
    let a = users.by_address("10.20.5.7".parse().unwrap()).unwrap();
    assert_eq!((&*a.user, &a.groups[..]), ("chan.taiman", &["finance".to_string()][..]));
    let a = users.by_address("::ffff:10.20.9.9".parse().unwrap()).unwrap();
    assert_eq!(&*a.user, "lobby");
    assert!(users.by_address("10.21.0.1".parse().unwrap()).is_none());
    assert_eq!(users.lookup("lobby").map(|i| i.groups.to_vec()), Some(vec!["kiosks".to_string()]));

    let err = Users::parse("u.toml", "[[user]]\nname = \"a\"\npassword = \"plaintext\"\n").unwrap_err();
    assert_eq!(err.problems()[0].line, 3, "{err}");
    let err = Users::parse("u.toml", "[[address]]\ncidr = \"10.0.0.0/33\"\nuser = \"a\"\n").unwrap_err();
    assert_eq!(err.problems()[0].line, 2, "{err}");
}

#[test]
fn expiry_formats() {
    let date: toml::Value = toml::from_str::<toml::Table>("d = 2027-06-30").unwrap()["d"].clone();
    let (t, s) = parse_expiry(&date).unwrap();
    assert_eq!(s, "2027-07-01T00:00:00Z");
    assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_814_400_000));
    let (t2, s2) = parse_expiry(&toml::Value::String("2027-07-01T08:00:00+08:00".into())).unwrap();
    assert_eq!((t2, s2.as_str()), (t, "2027-07-01T00:00:00Z"));
    assert!(parse_expiry(&toml::Value::String("2027-06-30T12:00:00".into())).is_err(), "no offset");
    assert!(parse_expiry(&toml::Value::Integer(5)).is_err());
}

#[test]
fn identify_order() {
    use base64::Engine as _;
    use portcullis_policy::{AuthError, Identified};
    let hash = hash_password("pw").unwrap();
    let text = format!("[[user]]\nname = \"u\"\npassword = \"{hash}\"\n[[address]]\ncidr = \"192.0.2.0/24\"\nuser = \"kiosk\"\n");
    let users = Users::parse("users.toml", &text).unwrap();
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:pw"));
    let bad = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:nope"));
    let kiosk_ip = "192.0.2.9".parse().unwrap();
    let other_ip = "198.51.100.1".parse().unwrap();
    assert!(matches!(users.identify(Some(&good), other_ip), Identified::User(i) if &*i.user == "u"));
    assert_eq!(users.identify(Some(&bad), kiosk_ip), Identified::Challenge(Some(AuthError::Rejected)), "no downgrade to the address map");
    assert!(matches!(users.identify(None, kiosk_ip), Identified::User(i) if &*i.user == "kiosk"));
    assert_eq!(users.identify(None, other_ip), Identified::Challenge(None));
    assert_eq!(Users::empty().identify(None, other_ip), Identified::Anonymous);
}

#[test]
fn labels_and_reason_for_block_pages() {
    let t = T::builtin();
    let chan = who("chan.taiman", &[]);
    let flow = t.engine.classify(&FlowHead { host: "mail.google.com", method: Some("POST"), path: Some("/x"), ..Default::default() });
    let findings = vec!["hkid".to_string()];
    let d = t.engine.decide(Some(&chan), &flow, Stage::Body, BodyFacts { findings: &findings, unscannable: false }, today());
    let labels: std::collections::BTreeMap<_, _> = d.labels(&flow).into_iter().collect();
    assert_eq!(labels["app"], "gmail");
    assert_eq!(labels["category"], "webmail");
    assert_eq!(labels["activity"], "upload");
    assert_eq!(labels["action"], "block");
    assert_eq!(labels["rule"], "inspect-uploads");
    assert_eq!(labels["stage"], "body");
    assert_eq!(labels["exception"], "EX-2026-0147");
    assert!(labels["approver"].contains("Head of Finance"));
    assert!(t.engine.policy.reason(&d).contains("scanned by the DLP detectors"));
    let bob = who("bob", &[]);
    let d = t.engine.decide(Some(&bob), &flow, Stage::Request, BodyFacts::default(), today());
    assert_eq!(t.engine.policy.reason(&d), "Personal webmail is not allowed on managed computers.");
}

#[test]
fn check_reports_unreachable_rules_and_idle_exceptions() {
    let text = r#"
[[rule]]
id = "no-mail"
categories = "webmail"
action = "block"

[[rule]]
id = "everything"
action = "allow"

[[rule]]
id = "late"
apps = "dropbox"
action = "block"

[[exception]]
id = "drive-for-x"
users = "x"
apps = "google-drive"
approver = "Head"
reason = "r"
expires = 2030-01-01

[[exception]]
id = "mail-for-y"
users = "y"
apps = "gmail"
approver = "Head"
reason = "r"
expires = 2030-01-01
"#;
    let p = Policy::parse("p.toml", text).unwrap();
    let problems = p.check(&Catalog::builtin(), None, today());
    let lines: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.message.as_str())).collect();
    assert!(lines.iter().any(|(l, m)| *l == 11 && m.contains("\"late\" is never reached")), "{lines:?}");
    assert!(lines.iter().any(|(l, m)| *l == 16 && m.contains("\"drive-for-x\" waives nothing")), "{lines:?}");
    assert_eq!(problems.len(), 2, "{lines:?}");
}

#[test]
fn example_users_file_is_valid() {
    let text = include_str!("../../../rules/users.example.toml");
    let users = Users::parse("rules/users.example.toml", text).unwrap();
    let id = users.verify("chan.taiman", "example-only-change-me").unwrap();
    assert!(id.groups.contains(&"finance".to_string()));
    assert!(users.verify("wong.siuming", "example-only-change-me").is_none());
    assert_eq!(&*users.by_address("10.20.40.17".parse().unwrap()).unwrap().user, "chan.taiman");
    assert_eq!(&*users.by_address("10.20.30.5".parse().unwrap()).unwrap().user, "lobby-kiosk");
}
