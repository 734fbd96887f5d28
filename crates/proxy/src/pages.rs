//! What the user sees when the proxy refuses or fails: block pages and error pages.
//!
//! Every page exists in two forms: HTML for browsers and JSON for programs (chosen by `Accept`).
//! Both say, in plain words, what happened, and for blocks carry the incident id (the key to the
//! log entry), the rule and the *masked* evidence. Pages never contain a full sensitive value.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::ProxyBody;
use crate::hooks::{Blocked, Evidence};

/// A page to render.
#[derive(Debug, Serialize)]
pub struct Page<'a> {
    #[serde(skip)]
    pub status: StatusCode,
    /// Short title ("Upload blocked", "Bad gateway").
    pub title: &'a str,
    /// Plain-words explanation.
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub evidence: &'a [Evidence],
    /// Technical detail (e.g. the upstream error), for the helpdesk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

impl<'a> Page<'a> {
    /// A 403 block page for a recorded incident.
    pub fn blocked(incident: &'a str, b: &'a Blocked) -> Self {
        Page {
            status: StatusCode::FORBIDDEN,
            title: "Blocked by Portcullis",
            reason: &b.reason,
            incident: Some(incident),
            rule: Some(&b.rule),
            evidence: &b.evidence,
            detail: None,
        }
    }

    /// An error page with no incident.
    pub fn error(status: StatusCode, title: &'a str, reason: &'a str, detail: Option<&'a str>) -> Self {
        Page { status, title, reason, incident: None, rule: None, evidence: &[], detail }
    }
}

/// Whether the client prefers JSON (`Accept` names JSON and does not prefer HTML).
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept =
        headers.get_all(http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",").to_ascii_lowercase();
    match (accept.find("json"), accept.find("text/html")) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Render a page as a response.
pub fn render(page: &Page<'_>, json: bool) -> Response<ProxyBody> {
    let (ctype, body) = if json {
        #[derive(Serialize)]
        struct J<'a> {
            status: u16,
            blocked: bool,
            #[serde(flatten)]
            page: &'a Page<'a>,
        }
        let j = J { status: page.status.as_u16(), blocked: page.incident.is_some(), page };
        let mut s = serde_json::to_string(&j).unwrap_or_else(|_| String::from("{}"));
        s.push('\n');
        ("application/json", s)
    } else {
        ("text/html; charset=utf-8", html(page))
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = page.status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html(p: &Page<'_>) -> String {
    let mut s = String::new();
    s.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    s.push_str(&esc(p.title));
    s.push_str("</title><style>body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}h1{color:#a00}code{background:#eee;padding:0 .3em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style></head><body>\n");
    s.push_str(&format!("<h1>{}</h1>\n<p>{}</p>\n", esc(p.title), esc(p.reason)));
    if let Some(rule) = p.rule {
        s.push_str(&format!("<p>Rule: <code>{}</code></p>\n", esc(rule)));
    }
    if !p.evidence.is_empty() {
        // Inspection stops once the verdict is a block, so counts cover the content up to there.
        s.push_str("<p>What was found up to the point the upload was stopped (values masked):</p>\n<table><tr><th>Detector</th><th>Count</th><th>Examples</th></tr>\n");
        for e in p.evidence {
            s.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n", esc(&e.detector), e.count, esc(&e.samples.join(", "))));
        }
        s.push_str("</table>\n");
    }
    if let Some(id) = p.incident {
        s.push_str(&format!(
            "<p>Incident id: <code>{}</code>. If you believe this is a mistake, contact your IT helpdesk and quote this id.</p>\n",
            esc(id)
        ));
    }
    if let Some(d) = p.detail {
        s.push_str(&format!("<p>Details: <code>{}</code></p>\n", esc(d)));
    }
    s.push_str("<p><small>Portcullis gateway</small></p></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_when_asked() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,application/json;q=0.9"));
        assert!(!wants_json(&h));
    }

    #[tokio::test]
    async fn block_page_forms() {
        let b = Blocked {
            rule: "dlp-default".into(),
            reason: "The upload contains a <payment card> number.".into(),
            evidence: vec![Evidence {
                detector: "payment-card".into(),
                count: 1,
                samples: vec!["4111********1111".into()],
                value_hmacs: vec![],
            }],
            ..Default::default()
        };
        let p = Page::blocked("abc123", &b);
        let r = render(&p, true);
        assert_eq!(r.status(), 403);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["incident"], "abc123");
        assert_eq!(v["rule"], "dlp-default");
        assert_eq!(v["blocked"], true);
        assert_eq!(v["evidence"][0]["samples"][0], "4111********1111");
        let r = render(&p, false);
        let body = String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(body.contains("abc123") && body.contains("4111********1111") && body.contains("&lt;payment card&gt;"));
        assert!(body.contains("up to the point the upload was stopped"), "{body}");
    }
}
