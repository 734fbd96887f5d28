//! The policy-driven [`Gate`]: who is it, what app, what activity, what does the policy say,
//! and — for uploads the policy wants inspected — what is in the body.
//!
//! Every stage asks the same [`Engine`] that `portcullis explain` asks, so what a compliance
//! officer tries is what the gateway does:
//!
//! ```text
//! authenticate ── users file (Basic) or client-address map → identity on every decision
//! on_connect   ── bypass list → tunnel (recorded)            classify(host, CONNECT) → decide(connect)
//!                 block + app not inspectable → 403 to the CONNECT (WhatsApp, WeChat, Telegram...)
//!                 block + inspectable → intercept; the request stage shows the block page over TLS
//!                 allowed + not inspectable → tunnel, recorded with the rule that allowed it
//! on_opaque    ── non-TLS bytes in a tunnel: classify(activity opaque) → decide → tunnel | block
//! on_request   ── classify(method, host, path) → decide(request): block | inspect | allow | log
//! inspector    ── extraction + scan while the body streams → decide(body, findings, unscannable)
//! ```
//!
//! Decisions the proxy does not record itself (an allowed flow under `log`, an exception used, a
//! simulated rule) go to the audit log's non-blocking queue from here; blocks are recorded by the
//! proxy's [`Recorder`](portcullis_proxy::Recorder), durably, before the block page is sent.
//!
//! Rules, apps, policy and users live in [`Controls`], swapped whole on reload: a broken file is
//! reported and the running set stays.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use http::{HeaderName, HeaderValue, Method};
use portcullis_audit::{AuditWriter, DetectorHit, Event};
use portcullis_classify::{Flow, FlowHead};
use portcullis_extract::{BodyHints, Inspection, Limits, Report, Step, Verdict};
use portcullis_policy::{Action, BodyFacts, Decision, Engine, Identified, Stage, Users};
use portcullis_proxy::{
    Auth, Blocked, BodyInspector, ChunkVerdict, ConnectDecision, Evidence, FileRecord, FinalVerdict, Gate, Identity, OpaqueDecision,
    RequestDecision, RequestHead,
};
use portcullis_scan::Ruleset;
use portcullis_telemetry::Metrics;

use crate::config::Bypass;

/// Where the reloadable pieces come from (`None`: the embedded defaults).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub rules_dir: Option<PathBuf>,
    pub apps_dir: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
    pub users_file: Option<PathBuf>,
}

/// The loaded set: detectors, app catalog + policy, users.
struct Loaded {
    rules: Arc<Ruleset>,
    engine: Arc<Engine>,
    users: Arc<Users>,
}

impl Loaded {
    fn load(s: &Sources) -> anyhow::Result<Loaded> {
        use anyhow::Context;
        let rules = match &s.rules_dir {
            Some(dir) => Arc::new(Ruleset::load_dir(dir).with_context(|| format!("detector rules in {}", dir.display()))?),
            None => Ruleset::builtin(),
        };
        let engine = Engine::load(s.apps_dir.as_deref(), s.policy_file.as_deref()).context("app catalog and policy")?;
        let users = match &s.users_file {
            Some(file) => Users::load(file).with_context(|| format!("users file {}", file.display()))?,
            None => Users::empty(),
        };
        Ok(Loaded { rules, engine: Arc::new(engine), users: Arc::new(users) })
    }
}

/// Rules, catalog, policy and users, replaced all together on a successful reload.
pub struct Controls {
    sources: Sources,
    current: RwLock<Arc<Loaded>>,
}

impl Controls {
    pub fn load(sources: Sources) -> anyhow::Result<Controls> {
        let loaded = Loaded::load(&sources)?;
        Ok(Controls { sources, current: RwLock::new(Arc::new(loaded)) })
    }

    /// Re-reads every file. On any error the running set is kept and the error returned.
    pub fn reload(&self) -> Result<String, String> {
        match Loaded::load(&self.sources) {
            Ok(loaded) => {
                let summary =
                    format!("reloaded: {} detectors, {} policy rules", loaded.rules.detectors().len(), loaded.engine.policy.rules().len());
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                tracing::info!("{summary}");
                Ok(summary)
            }
            Err(err) => {
                let msg = format!("reload refused, previous rules keep running: {err:#}");
                tracing::error!("{msg}");
                Err(msg)
            }
        }
    }

    fn get(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The binary's gate.
pub struct PolicyGate {
    controls: Arc<Controls>,
    bypass: Vec<Bypass>,
    limits: Limits,
    hmac_key: Option<[u8; 32]>,
    audit: Option<AuditWriter>,
    record_allowed: bool,
    metrics: Option<Arc<Metrics>>,
}

impl PolicyGate {
    pub fn new(controls: Arc<Controls>, bypass: Vec<Bypass>, limits: Limits) -> PolicyGate {
        PolicyGate { controls, bypass, limits, hmac_key: None, audit: None, record_allowed: false, metrics: None }
    }

    /// HMAC key for matched values (so responders can correlate a leaked value across events).
    pub fn with_hmac_key(mut self, key: [u8; 32]) -> Self {
        self.hmac_key = Some(key);
        self
    }

    /// Where allowed-but-recorded decisions (log, exception used, simulate) go; with
    /// `record_allowed`, every allowed request too.
    pub fn with_audit(mut self, writer: AuditWriter, record_allowed: bool) -> Self {
        self.audit = Some(writer);
        self.record_allowed = record_allowed;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records a decision that let the flow through but must be kept (never blocks).
    fn side_record(&self, ctx: &FlowCtx, d: &Decision, flow: &Flow, detail: Option<&Report>) {
        if !(d.should_record() || self.record_allowed) || d.action == Action::Block {
            return;
        }
        if let Some(writer) = &self.audit {
            writer.try_record(ctx.event(d, flow, detail));
        }
    }
}

/// What we know about a flow independent of the decision.
#[derive(Clone)]
struct FlowCtx {
    client: SocketAddr,
    identity: Identity,
    method: String,
    host: String,
    url: String,
}

impl FlowCtx {
    fn event(&self, d: &Decision, flow: &Flow, report: Option<&Report>) -> Event {
        let action = match d.action {
            Action::Allow => portcullis_audit::Action::Allow,
            Action::Block => portcullis_audit::Action::Block,
            Action::Log => portcullis_audit::Action::Log,
            Action::Inspect => portcullis_audit::Action::Inspect,
        };
        let mut e = Event::new(action, self.host.clone()).with_url(&self.url);
        e.user = self.identity.user.clone();
        e.client = Some(self.client.ip().to_string());
        e.method = Some(self.method.clone());
        apply_labels(&mut e, &labels(d, flow));
        if let Some(r) = report {
            e.detectors = r
                .findings
                .iter()
                .map(|f| DetectorHit {
                    detector: f.detector.clone(),
                    count: f.count,
                    evidence: f.samples.clone(),
                    value_hmacs: f.value_hmacs.clone(),
                })
                .collect();
            e.files = r.files.iter().map(|f| audit_file(&file_record(f))).collect();
            e.bytes = r.decoded_bytes;
            e.reason = r.reason.clone();
        }
        e
    }
}

/// Copies the decision labels the proxy carries in [`Blocked::labels`] onto an audit event.
pub fn apply_labels(e: &mut Event, labels: &BTreeMap<String, String>) {
    let get = |k: &str| labels.get(k).cloned();
    e.app = get("app");
    e.category = get("category");
    e.activity = get("activity");
    e.rule = get("rule").or_else(|| e.rule.take());
    e.exception = get("exception");
    e.approver = get("approver");
    if let Some(w) = labels.get("would") {
        // A simulated rule matched on the way. The event is a simulation record unless the
        // flow was really blocked (by a later, live rule): then it is a block, with the trial
        // rule's verdict kept for the officer tuning it.
        e.would = w.parse().ok();
        e.simulated = e.action != portcullis_audit::Action::Block;
    }
}

fn labels(d: &Decision, flow: &Flow) -> BTreeMap<String, String> {
    d.labels(flow).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn who(identity: &Identity) -> Option<portcullis_policy::Identity> {
    identity.user.as_ref().map(|u| portcullis_policy::Identity { user: Arc::from(u.as_str()), groups: Arc::from(identity.groups.clone()) })
}

fn blocked(engine: &Engine, d: &Decision, flow: &Flow) -> Blocked {
    Blocked {
        rule: d.rule.as_deref().unwrap_or("default").to_string(),
        reason: engine.policy.reason(d),
        labels: labels(d, flow),
        ..Blocked::default()
    }
}

fn is_upload(m: &Method) -> bool {
    m == Method::POST || m == Method::PUT || m == Method::PATCH
}

impl Gate for PolicyGate {
    fn authenticate(&self, client: SocketAddr, proxy_authorization: Option<&HeaderValue>) -> Auth {
        let header = proxy_authorization.and_then(|v| v.to_str().ok());
        match self.controls.get().users.identify(header, client.ip()) {
            Identified::User(id) => Auth::Allow(Identity { user: Some(id.user.to_string()), groups: id.groups.to_vec() }),
            Identified::Anonymous => Auth::Allow(Identity::default()),
            Identified::Challenge(why) => {
                if let Some(why) = why {
                    tracing::info!(client = %client, "proxy authentication failed: {why}");
                }
                Auth::Challenge { realm: "Portcullis".into() }
            }
        }
    }

    fn on_connect(&self, host: &str, port: u16, client: SocketAddr, identity: &Identity) -> ConnectDecision {
        if let Some(m) = &self.metrics {
            m.inc_request();
        }
        if let Some(b) = self.bypass.iter().find(|b| b.matches(host)) {
            return ConnectDecision::Tunnel { reason: b.reason.clone() };
        }
        let loaded = self.controls.get();
        let head = FlowHead { host, port: Some(port), ip: host.parse().ok(), method: Some("CONNECT"), path: None };
        let flow = loaded.engine.classify(&head);
        let d = loaded.engine.decide(who(identity).as_ref(), &flow, Stage::Connect, BodyFacts::default(), SystemTime::now());
        let inspectable = flow.app.as_ref().is_none_or(|a| a.inspectable);
        let ctx = FlowCtx {
            client,
            identity: identity.clone(),
            method: "CONNECT".into(),
            host: host.to_string(),
            url: format!("https://{host}:{port}/"),
        };
        match d.action {
            // The policy already answers `inspect` at CONNECT for blocks of inspectable apps, so
            // the browser gets a readable block page from the request stage; `block` here means
            // an app that cannot be inspected, or a rule that says `stages = ["connect"]`.
            Action::Block => ConnectDecision::Block(blocked(&loaded.engine, &d, &flow)),
            _ if !inspectable => {
                let app = flow.app.as_ref().map_or("-", |a| a.id.as_str());
                let by = d.exception.as_ref().map(|e| format!("exception {} approved by {}", e.id, e.approver));
                let by = by.or_else(|| d.rule.as_ref().map(|r| format!("rule {r}"))).unwrap_or_else(|| "the default action".into());
                self.side_record(&ctx, &d, &flow, None);
                ConnectDecision::Tunnel { reason: format!("{app} cannot be inspected; allowed by {by}") }
            }
            _ => {
                self.side_record(&ctx, &d, &flow, None);
                ConnectDecision::Intercept
            }
        }
    }

    fn on_opaque(&self, host: &str, port: u16, _client: SocketAddr, identity: &Identity, _prefix: &[u8]) -> OpaqueDecision {
        let loaded = self.controls.get();
        let head = FlowHead { host, port: Some(port), ip: host.parse().ok(), method: None, path: None };
        let flow = loaded.engine.classify(&head);
        let d = loaded.engine.decide(who(identity).as_ref(), &flow, Stage::Connect, BodyFacts::default(), SystemTime::now());
        match d.action {
            Action::Block => {
                let mut b = blocked(&loaded.engine, &d, &flow);
                b.reason = format!(
                    "The connection carried a protocol other than TLS through an HTTPS tunnel, so it cannot be inspected. {}",
                    b.reason
                );
                OpaqueDecision::Block(b)
            }
            _ => OpaqueDecision::Tunnel {
                reason: format!(
                    "non-TLS protocol inside a CONNECT tunnel, allowed by {}",
                    d.rule.as_deref().unwrap_or("the default action")
                ),
            },
        }
    }

    fn on_request(&self, head: &RequestHead<'_>) -> RequestDecision {
        if let Some(m) = &self.metrics {
            m.inc_request();
        }
        let loaded = self.controls.get();
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let fh = FlowHead {
            host: head.host,
            port: Some(head.port),
            ip: head.host.parse().ok(),
            method: Some(head.method.as_str()),
            path: Some(path),
        };
        let flow = loaded.engine.classify(&fh);
        let identity = who(head.identity);
        let d = loaded.engine.decide(identity.as_ref(), &flow, Stage::Request, BodyFacts::default(), SystemTime::now());
        let ctx = FlowCtx {
            client: head.client,
            identity: head.identity.clone(),
            method: head.method.to_string(),
            host: head.host.to_string(),
            url: head.uri.to_string(),
        };
        let add_headers = loaded
            .engine
            .tenant_headers(&flow)
            .iter()
            .filter_map(|(k, v)| Some((HeaderName::try_from(k.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?)))
            .collect();
        match d.action {
            Action::Block => RequestDecision::Block(blocked(&loaded.engine, &d, &flow)),
            Action::Inspect if is_upload(head.method) || head.headers.contains_key(http::header::CONTENT_LENGTH) => {
                let header = |n: http::header::HeaderName| head.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                let hints = BodyHints {
                    content_type: header(http::header::CONTENT_TYPE),
                    content_encoding: header(http::header::CONTENT_ENCODING),
                    file_name: file_name(head.headers),
                };
                let mut inspection = Inspection::new(Arc::clone(&loaded.rules), hints, self.limits.clone());
                if let Some(key) = self.hmac_key {
                    inspection = inspection.with_hmac_key(key);
                }
                let inspector = PolicyInspector {
                    inspection: Some(inspection),
                    engine: Arc::clone(&loaded.engine),
                    identity,
                    flow,
                    ctx,
                    audit: self.audit.clone(),
                    metrics: self.metrics.clone(),
                    started: Instant::now(),
                    bytes: 0,
                };
                RequestDecision::Forward { inspector: Some(Box::new(inspector)), add_headers }
            }
            _ => {
                self.side_record(&ctx, &d, &flow, None);
                RequestDecision::Forward { inspector: None, add_headers }
            }
        }
    }
}

/// File name from `Content-Disposition: ...; filename="x"` (uploads that PUT a file).
fn file_name(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_DISPOSITION)?.to_str().ok()?;
    let i = v.find("filename=")?;
    let rest = v[i + 9..].trim_start_matches('"');
    Some(rest.split(['"', ';']).next().unwrap_or(rest).to_string())
}

/// One upload's inspection, asking the policy again once the content is known.
struct PolicyInspector {
    /// `None` once a verdict has been reached (the rest streams through unscanned).
    inspection: Option<Inspection>,
    engine: Arc<Engine>,
    identity: Option<portcullis_policy::Identity>,
    flow: Flow,
    ctx: FlowCtx,
    audit: Option<AuditWriter>,
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    bytes: u64,
}

impl PolicyInspector {
    /// The body-stage decision for a finished report: `Some(block)` or `None` (let it go).
    fn decide(&mut self, report: Report) -> Option<Blocked> {
        if let Some(m) = &self.metrics {
            m.add_bytes_inspected(self.bytes);
            m.observe_scan_latency(self.started.elapsed());
        }
        let findings: Vec<String> = report.findings.iter().map(|f| f.detector.clone()).collect();
        let unscannable = report.verdict == Verdict::Unscannable;
        let facts = BodyFacts { findings: &findings, unscannable };
        let d = self.engine.decide(self.identity.as_ref(), &self.flow, Stage::Body, facts, SystemTime::now());
        if d.action == Action::Block {
            return Some(body_blocked(&self.engine, &d, &self.flow, &report));
        }
        if d.should_record()
            && let Some(writer) = &self.audit
        {
            writer.try_record(self.ctx.event(&d, &self.flow, Some(&report)));
        }
        if unscannable {
            tracing::info!(
                host = %self.ctx.host,
                reason = report.reason.as_deref().unwrap_or("-"),
                rule = d.rule.as_deref().unwrap_or("default"),
                "upload could not be inspected; allowed by policy"
            );
        }
        None
    }
}

impl BodyInspector for PolicyInspector {
    fn chunk(&mut self, bytes: &[u8]) -> ChunkVerdict {
        let Some(inspection) = self.inspection.as_mut() else { return ChunkVerdict::Continue };
        self.bytes += bytes.len() as u64;
        match inspection.chunk(bytes) {
            Step::Continue => ChunkVerdict::Continue,
            Step::Done(_) => {
                let Some(report) = self.inspection.take().map(Inspection::finish) else { return ChunkVerdict::Continue };
                match self.decide(report) {
                    Some(b) => ChunkVerdict::Block(b),
                    None => ChunkVerdict::Continue,
                }
            }
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.inspection.as_ref().map_or(0, Inspection::buffered_bytes)
    }

    fn finish(mut self: Box<Self>) -> FinalVerdict {
        let Some(report) = self.inspection.take().map(Inspection::finish) else { return FinalVerdict::Allow };
        match self.decide(report) {
            Some(b) => FinalVerdict::Block(b),
            None => FinalVerdict::Allow,
        }
    }
}

/// Plain words for a detector id.
fn describe(detector: &str) -> String {
    match detector {
        "payment-card" => "a payment card number".into(),
        "hkid" => "a Hong Kong identity card number".into(),
        "cn-resident-id" => "a PRC resident identity card number".into(),
        "iban" => "a bank account number (IBAN)".into(),
        "us-ssn" => "a US social security number".into(),
        "aws-access-key" => "an AWS access key".into(),
        "private-key" => "a private key".into(),
        "github-token" => "a GitHub token".into(),
        "classification-marking" => "a protective classification marking".into(),
        other => format!("data matching the `{other}` rule"),
    }
}

fn body_blocked(engine: &Engine, d: &Decision, flow: &Flow, report: &Report) -> Blocked {
    let what: Vec<String> = report.findings.iter().map(|f| describe(&f.detector)).collect();
    let reason = match report.verdict {
        Verdict::Unscannable => format!(
            "This upload could not be inspected ({}), and content that cannot be inspected may not be sent here. {}",
            report.reason.as_deref().unwrap_or("unknown reason"),
            engine.policy.reason(d)
        ),
        _ => format!(
            "This upload contains {} and was stopped before it left the organisation. {}",
            if what.is_empty() { "sensitive data".to_string() } else { what.join(", ") },
            engine.policy.reason(d)
        ),
    };
    let mut labels = labels(d, flow);
    if let Some(r) = &report.reason {
        labels.insert("unscannable".into(), r.clone());
    }
    Blocked {
        rule: d.rule.as_deref().unwrap_or("default").to_string(),
        reason,
        evidence: report
            .findings
            .iter()
            .map(|f| Evidence {
                detector: f.detector.clone(),
                count: f.count,
                samples: f.samples.clone(),
                value_hmacs: f.value_hmacs.clone(),
            })
            .collect(),
        files: report.files.iter().map(file_record).collect(),
        labels,
    }
}

/// A file of the extraction report as the proxy carries it in a block.
fn file_record(f: &portcullis_extract::FileInfo) -> FileRecord {
    FileRecord { name: f.name.clone(), field: f.field.clone(), sha256: f.sha256.clone(), size: f.size, partial: f.partial }
}

/// A file as the audit log records it.
pub(crate) fn audit_file(f: &FileRecord) -> portcullis_audit::FileRecord {
    portcullis_audit::FileRecord {
        name: f.name.clone(),
        field: f.field.clone(),
        sha256: f.sha256.clone(),
        size: f.size,
        partial: f.partial,
    }
}
