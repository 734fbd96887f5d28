//! [`Engine`]: the catalog and the policy together, and the one sequence of questions the
//! proxy asks for a flow. `portcullis explain` runs exactly this sequence, so what officers see
//! is what the proxy does.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_classify::{Catalog, Flow, FlowHead, LoadError};

use crate::decide::{Action, Decision, Facts, Stage};
use crate::file::Policy;
use crate::identity::Identity;

/// Catalog + policy. Cheap to clone; swap the whole value on reload.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The app catalog.
    pub catalog: Arc<Catalog>,
    /// The policy.
    pub policy: Arc<Policy>,
}

/// What the body inspection found (for [`Engine::decide`] at [`Stage::Body`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyFacts<'a> {
    /// Detector ids with findings.
    pub findings: &'a [String],
    /// The content could not be inspected.
    pub unscannable: bool,
}

/// Why `explain` could not run.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL.
    pub url: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// The result of walking a request through every stage, as the proxy would.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explanation {
    /// The flow at the stage that decided.
    pub flow: Flow,
    /// The deciding stage's decision.
    pub decision: Decision,
}

impl Engine {
    /// Both shipped defaults.
    pub fn builtin() -> Engine {
        Engine { catalog: Catalog::builtin(), policy: Policy::builtin() }
    }

    /// Load the catalog from `apps` (a directory of `*.toml`) and the policy from `policy`,
    /// each falling back to the embedded default when `None`. For reload: on error nothing
    /// changes; the caller keeps its current engine.
    pub fn load(apps: Option<&Path>, policy: Option<&Path>) -> Result<Engine, LoadError> {
        let catalog = match apps {
            Some(dir) => Arc::new(Catalog::load_dir(dir)?),
            None => Catalog::builtin(),
        };
        let policy = match policy {
            Some(file) => Arc::new(Policy::load(file)?),
            None => Policy::builtin(),
        };
        Ok(Engine { catalog, policy })
    }

    /// Classify (see [`Catalog::classify`]).
    pub fn classify(&self, head: &FlowHead<'_>) -> Flow {
        self.catalog.classify(head)
    }

    /// Decide for a classified flow at a stage. `body` only matters at [`Stage::Body`].
    pub fn decide(&self, who: Option<&Identity>, flow: &Flow, stage: Stage, body: BodyFacts<'_>, now: SystemTime) -> Decision {
        let facts = Facts {
            user: who.map(|i| &*i.user),
            groups: who.map_or(&[], |i| &i.groups[..]),
            flow,
            stage,
            findings: if stage == Stage::Body { body.findings } else { &[] },
            unscannable: stage == Stage::Body && body.unscannable,
        };
        self.policy.decide(&facts, now)
    }

    /// Tenant-restriction headers to add to this flow's requests (empty when the flow's vendor
    /// has none configured in the policy).
    pub fn tenant_headers(&self, flow: &Flow) -> &[(String, String)] {
        match self.catalog.tenant_for(flow) {
            Some(t) => self.policy.tenant_headers(&t.vendor),
            None => &[],
        }
    }

    /// Walk `method url` through the stages the proxy would: CONNECT (for https), the request,
    /// and — when the request stage says `inspect` — the body with `body` as the scan result.
    /// The first final decision (anything but `inspect`, or the last stage reached) is returned.
    pub fn explain(
        &self,
        who: Option<&Identity>,
        method: &str,
        url: &str,
        body: BodyFacts<'_>,
        now: SystemTime,
    ) -> Result<Explanation, UrlError> {
        let u = split_url(url)?;
        let ip = u.host.trim_start_matches('[').trim_end_matches(']').parse().ok();
        if u.tls || method.eq_ignore_ascii_case("CONNECT") {
            let head = FlowHead { host: u.host, port: Some(u.port), ip, method: Some("CONNECT"), path: None };
            let flow = self.classify(&head);
            let decision = self.decide(who, &flow, Stage::Connect, body, now);
            if decision.action == Action::Block || method.eq_ignore_ascii_case("CONNECT") {
                return Ok(Explanation { flow, decision });
            }
        }
        let head = FlowHead { host: u.host, port: Some(u.port), ip, method: Some(method), path: Some(u.path) };
        let flow = self.classify(&head);
        let decision = self.decide(who, &flow, Stage::Request, body, now);
        if decision.action != Action::Inspect || (body.findings.is_empty() && !body.unscannable) {
            return Ok(Explanation { flow, decision });
        }
        let decision = self.decide(who, &flow, Stage::Body, body, now);
        Ok(Explanation { flow, decision })
    }
}

struct Url<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn split_url(url: &str) -> Result<Url<'_>, UrlError> {
    let err = |reason| UrlError { url: url.to_owned(), reason };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| err("expected scheme://host/path"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        _ => return Err(err("scheme must be http or https")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let path = if end == rest.len() || rest[end..].starts_with('#') { "/" } else { &rest[end..] };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            let port = authority[i + 1..].parse::<u16>().map_err(|_| err("port is not a number"))?;
            (&authority[..i], port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(err("no host"));
    }
    Ok(Url { tls, host, port, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = split_url("https://mail.google.com/mail/u/0/?x=1").unwrap();
        assert!(u.tls);
        assert_eq!((u.host, u.port, u.path), ("mail.google.com", 443, "/mail/u/0/?x=1"));
        let u = split_url("http://user:pw@[2001:db8::1]:8080").unwrap();
        assert_eq!((u.host, u.port, u.path), ("[2001:db8::1]", 8080, "/"));
        let u = split_url("https://example.com?q").unwrap();
        assert_eq!(u.path, "?q");
        assert!(split_url("mail.google.com").is_err());
        assert!(split_url("ftp://x").is_err());
        assert!(split_url("https://x:99999/").is_err());
        assert!(split_url("https:///x").is_err());
    }
}
