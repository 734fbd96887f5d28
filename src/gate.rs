//! The binary's first [`Gate`]: DLP only.
//!
//! Until the policy issue lands, the decision is the one issue 5 spells out: an upload
//! (POST/PUT/PATCH) whose content has a finding is blocked, everything else is allowed. Hosts on the
//! bypass list are tunnelled blind (and logged with their reason); non-TLS tunnels follow
//! `opaque_tunnels`. The policy-driven gate replaces this module; the proxy does not change.
//!
//! Each upload gets its own [`Inspection`] (extraction + scanning, sans-IO, bounded memory): the
//! proxy feeds it body chunks as they stream and acts on its verdict.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use portcullis_extract::{BodyHints, Inspection, Limits, Report, Step, Verdict};
use portcullis_proxy::{
    BodyInspector, Blocked, ChunkVerdict, ConnectDecision, Evidence, FileRecord, FinalVerdict, Gate, Identity,
    OpaqueDecision, RequestDecision, RequestHead,
};
use portcullis_scan::Ruleset;

use crate::config::{Bypass, OpaqueMode};

/// Rule name recorded for DLP blocks made by this gate.
pub const DLP_RULE: &str = "dlp-block-uploads-with-findings";

pub struct DlpGate {
    rules: Arc<Ruleset>,
    limits: Limits,
    bypass: Vec<Bypass>,
    opaque: OpaqueMode,
    block_unscannable: bool,
}

impl DlpGate {
    pub fn new(rules: Arc<Ruleset>, bypass: Vec<Bypass>, opaque: OpaqueMode, block_unscannable: bool) -> Self {
        DlpGate { rules, limits: Limits::default(), bypass, opaque, block_unscannable }
    }
}

fn is_upload(m: &Method) -> bool {
    m == Method::POST || m == Method::PUT || m == Method::PATCH
}

/// File name from `Content-Disposition: ...; filename="x"` (uploads that PUT a file).
fn file_name(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_DISPOSITION)?.to_str().ok()?;
    let i = v.find("filename=")?;
    let rest = v[i + 9..].trim_start_matches('"');
    Some(rest.split(['"', ';']).next().unwrap_or(rest).to_string())
}

impl Gate for DlpGate {
    fn on_connect(&self, host: &str, _port: u16, _client: SocketAddr, _identity: &Identity) -> ConnectDecision {
        match self.bypass.iter().find(|b| b.matches(host)) {
            Some(b) => ConnectDecision::Tunnel { reason: b.reason.clone() },
            None => ConnectDecision::Intercept,
        }
    }

    fn on_opaque(&self, _host: &str, _port: u16, _client: SocketAddr, _identity: &Identity, _prefix: &[u8]) -> OpaqueDecision {
        match self.opaque {
            OpaqueMode::Tunnel => OpaqueDecision::Tunnel {
                reason: "non-TLS protocol inside a CONNECT tunnel (opaque_tunnels = \"tunnel\")".into(),
            },
            OpaqueMode::Block => OpaqueDecision::Block(Blocked {
                rule: "opaque-tunnels-blocked".into(),
                reason: "The connection carried a protocol other than TLS through an HTTPS tunnel; it cannot be inspected, so it was closed.".into(),
                ..Blocked::default()
            }),
        }
    }

    fn on_request(&self, head: &RequestHead<'_>) -> RequestDecision {
        if !is_upload(head.method) {
            return RequestDecision::forward();
        }
        let header = |name: http::header::HeaderName| head.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let hints = BodyHints {
            content_type: header(http::header::CONTENT_TYPE),
            content_encoding: header(http::header::CONTENT_ENCODING),
            file_name: file_name(head.headers),
        };
        let inspection = Inspection::new(self.rules.clone(), hints, self.limits.clone());
        RequestDecision::Forward {
            inspector: Some(Box::new(DlpInspector { inspection: Some(inspection), block_unscannable: self.block_unscannable })),
            add_headers: Vec::new(),
        }
    }
}

/// One upload's inspection.
struct DlpInspector {
    /// `None` once an early verdict has been reached (the rest streams through unscanned).
    inspection: Option<Inspection>,
    block_unscannable: bool,
}

impl BodyInspector for DlpInspector {
    fn chunk(&mut self, bytes: &[u8]) -> ChunkVerdict {
        let Some(inspection) = self.inspection.as_mut() else { return ChunkVerdict::Continue };
        match inspection.chunk(bytes) {
            Step::Continue => ChunkVerdict::Continue,
            Step::Done(Verdict::Match) => match self.inspection.take() {
                Some(i) => ChunkVerdict::Block(blocked_for(&i.finish())),
                None => ChunkVerdict::Continue,
            },
            Step::Done(_) => {
                // Unscannable (or an early clean): nothing more to learn from the rest.
                match self.inspection.take().map(Inspection::finish) {
                    Some(report) => self.unscannable(report),
                    None => ChunkVerdict::Continue,
                }
            }
        }
    }

    fn finish(self: Box<Self>) -> FinalVerdict {
        let Some(inspection) = self.inspection else {
            // Early verdict already given and it was not a block.
            return FinalVerdict::Allow;
        };
        let report = inspection.finish();
        match report.verdict {
            Verdict::Match => FinalVerdict::Block(blocked_for(&report)),
            Verdict::Unscannable if self.block_unscannable => FinalVerdict::Block(unscannable_block(&report)),
            Verdict::Unscannable => {
                tracing::info!(reason = report.reason.as_deref().unwrap_or("-"), "upload could not be inspected; allowed (block_unscannable = false)");
                FinalVerdict::Allow
            }
            Verdict::Clean => FinalVerdict::Allow,
        }
    }
}

impl DlpInspector {
    fn unscannable(&self, report: Report) -> ChunkVerdict {
        if self.block_unscannable {
            ChunkVerdict::Block(unscannable_block(&report))
        } else {
            tracing::info!(reason = report.reason.as_deref().unwrap_or("-"), "upload could not be inspected; allowed (block_unscannable = false)");
            ChunkVerdict::Continue
        }
    }
}

fn unscannable_block(report: &Report) -> Blocked {
    Blocked {
        rule: "block-unscannable-uploads".into(),
        reason: format!(
            "The upload could not be inspected ({}), and uploads that cannot be inspected are not allowed.",
            report.reason.as_deref().unwrap_or("unknown reason")
        ),
        files: files(report),
        ..Blocked::default()
    }
}

fn files(report: &Report) -> Vec<FileRecord> {
    report.files.iter().map(|f| FileRecord { name: f.name.clone(), sha256: f.sha256.clone(), size: f.size }).collect()
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

fn blocked_for(report: &Report) -> Blocked {
    let what: Vec<String> = report.findings.iter().map(|f| describe(&f.detector)).collect();
    let reason = format!(
        "This upload contains {} and was stopped before it left the organisation.",
        if what.is_empty() { "sensitive data".to_string() } else { what.join(", ") }
    );
    Blocked {
        rule: DLP_RULE.into(),
        reason,
        evidence: report
            .findings
            .iter()
            .map(|f| Evidence { detector: f.detector.clone(), count: f.count, samples: f.samples.clone(), value_hmacs: f.value_hmacs.clone() })
            .collect(),
        files: files(report),
        labels: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> DlpGate {
        DlpGate::new(Ruleset::builtin(), vec![Bypass { pattern: "*.bank.example".into(), reason: "banking".into() }], OpaqueMode::Block, false)
    }

    fn inspect(g: &DlpGate, method: Method, body: &[&[u8]]) -> Option<Blocked> {
        let headers = http::HeaderMap::new();
        let uri: http::Uri = "https://upload.example/x".parse().unwrap();
        let id = Identity::default();
        let head = RequestHead {
            client: "127.0.0.1:1".parse().unwrap(),
            identity: &id,
            method: &method,
            uri: &uri,
            headers: &headers,
            host: "upload.example",
            port: 443,
            intercepted: true,
        };
        let RequestDecision::Forward { inspector, .. } = g.on_request(&head) else { panic!("blocked at head") };
        let mut i = inspector?;
        for c in body {
            if let ChunkVerdict::Block(b) = i.chunk(c) {
                return Some(b);
            }
        }
        match i.finish() {
            FinalVerdict::Allow => None,
            FinalVerdict::Block(b) => Some(b),
        }
    }

    #[test]
    fn card_number_upload_is_blocked_with_masked_evidence() {
        let g = gate();
        let b = inspect(&g, Method::POST, &[b"name=x&card=4111 1111 ", b"1111 1111&ok=1"]).expect("blocked");
        assert_eq!(b.rule, DLP_RULE);
        assert_eq!(b.evidence[0].detector, "payment-card");
        assert!(!format!("{b:?}").contains("4111 1111 1111 1111"), "evidence is masked");
        assert!(b.reason.contains("payment card"));
    }

    #[test]
    fn clean_upload_and_get_pass() {
        let g = gate();
        assert!(inspect(&g, Method::POST, &[b"hello ", b"world"]).is_none());
        assert!(inspect(&g, Method::GET, &[b"4111 1111 1111 1111"]).is_none(), "GET is not inspected");
    }

    #[test]
    fn bypass_and_opaque() {
        let g = gate();
        let id = Identity::default();
        let c = "127.0.0.1:1".parse().unwrap();
        assert!(matches!(g.on_connect("www.bank.example", 443, c, &id), ConnectDecision::Tunnel { .. }));
        assert!(matches!(g.on_connect("mail.example", 443, c, &id), ConnectDecision::Intercept));
        assert!(matches!(g.on_opaque("x", 443, c, &id, b"SSH-2.0"), OpaqueDecision::Block(_)));
    }
}
