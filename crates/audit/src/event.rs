//! The audit event: one record per decision worth keeping.
//!
//! The JSON form of [`Event`] (serde, field names below) is a public interface: `portcullis logs
//! query --format json`, `logs show`, and the admin API print it as is. Fields are flat (no nesting
//! except the detector and file lists) so that CSV export and SQL filters map one-to-one.
//!
//! Nothing in an event may hold a sensitive value in clear: the URL goes through [`redact_url`]
//! (query *values* and userinfo removed), detector evidence is the scanner's masked samples, and
//! matched values appear only as HMAC-SHA256 hex under the gateway's local key.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What the gateway did (or, with `simulated`, what a simulate rule let through).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The transfer was let through without a record-worthy reason (recorded only when allowed
    /// flows are logged, or when an exception allowed it).
    Allow,
    /// The transfer was stopped (403 / refused CONNECT).
    Block,
    /// Allowed and recorded by a `log` rule.
    Log,
    /// Content was inspected and found clean (recorded only when allowed flows are logged).
    Inspect,
    /// Tunneled without interception because of the bypass list.
    Bypass,
}

impl Action {
    /// Every action, in display order.
    pub const ALL: [Action; 5] = [Action::Allow, Action::Block, Action::Log, Action::Inspect, Action::Bypass];

    /// Lowercase name used in JSON, SQL and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Log => "log",
            Action::Inspect => "inspect",
            Action::Bypass => "bypass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| format!("unknown action {s:?} (expected allow, block, log, inspect, bypass or simulate)"))
    }
}

/// One detector's result within a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorHit {
    /// Detector id (`payment-card`, `hkid`, ...).
    pub detector: String,
    /// Number of matches.
    pub count: u64,
    /// Masked samples (`4111********1111`), never clear values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// HMAC-SHA256 (hex) of each matched value under the gateway's local key, so the same leaked
    /// value can be correlated across events without being stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_hmacs: Vec<String>,
}

/// One uploaded file seen in the transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// File name as sent (multipart filename or archive entry path), if any.
    #[serde(default)]
    pub name: Option<String>,
    /// The form field a multipart part was sent in (its Content-Disposition `name`). A text
    /// field, such as a webmail message body, has a field and no file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The transfer was stopped (or ended) before the file did: `sha256` and `size` cover the
    /// file's first `size` bytes, the part that arrived.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// One audit record. Build with [`Event::new`] (which assigns the id and time) and fill the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Time-ordered incident id, `PC-` + 20 Crockford base32 characters; shown on block pages.
    pub id: String,
    /// When the decision was made (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Authenticated user (proxy auth or IP map), if known.
    #[serde(default)]
    pub user: Option<String>,
    /// Client socket address (`ip:port`) or IP.
    #[serde(default)]
    pub client: Option<String>,
    /// HTTP method (`CONNECT` for tunnel decisions).
    #[serde(default)]
    pub method: Option<String>,
    /// Destination host (no port).
    pub host: String,
    /// Full URL with query values redacted ([`redact_url`]); `None` for CONNECT-level decisions.
    #[serde(default)]
    pub url: Option<String>,
    /// App id from the catalog (`gmail`, `google-drive`, ...).
    #[serde(default)]
    pub app: Option<String>,
    /// App category (`webmail`, `cloud-storage`, `instant-messaging`).
    #[serde(default)]
    pub category: Option<String>,
    /// Activity (`login`, `browse`, `download`, `upload`, `send`, `opaque`).
    #[serde(default)]
    pub activity: Option<String>,
    /// What was done.
    pub action: Action,
    /// The policy rule that decided (or the bypass-list entry).
    #[serde(default)]
    pub rule: Option<String>,
    /// Id of the exception the decision went through, if any.
    #[serde(default)]
    pub exception: Option<String>,
    /// Who approved that exception.
    #[serde(default)]
    pub approver: Option<String>,
    /// The deciding rule is in simulate mode: `action` is what happened, `would` what it would do.
    #[serde(default)]
    pub simulated: bool,
    /// With `simulated`: the action the rule would have taken.
    #[serde(default)]
    pub would: Option<Action>,
    /// DLP detectors that matched, with counts, masked evidence and value HMACs.
    #[serde(default)]
    pub detectors: Vec<DetectorHit>,
    /// Files seen in the transfer.
    #[serde(default)]
    pub files: Vec<FileRecord>,
    /// Request body bytes seen (uploads) or tunneled.
    #[serde(default)]
    pub bytes: u64,
    /// Free-text reason: unscannable reason, bypass reason, exception reason.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Event {
    /// A new event with a fresh id and the current time; every optional field empty.
    pub fn new(action: Action, host: impl Into<String>) -> Event {
        let (id, time) = new_id();
        Event {
            id,
            time,
            user: None,
            client: None,
            method: None,
            host: host.into(),
            url: None,
            app: None,
            category: None,
            activity: None,
            action,
            rule: None,
            exception: None,
            approver: None,
            simulated: false,
            would: None,
            detectors: Vec::new(),
            files: Vec::new(),
            bytes: 0,
            reason: None,
        }
    }

    /// Sets `url` to the redacted form of `url` (see [`redact_url`]).
    pub fn with_url(mut self, url: &str) -> Event {
        self.url = Some(redact_url(url));
        self
    }

    /// Detector ids, in order.
    pub fn detector_ids(&self) -> Vec<&str> {
        self.detectors.iter().map(|d| d.detector.as_str()).collect()
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Last issued (millisecond, random) pair: ids issued within one millisecond increase the random
/// part by one, so ids are strictly increasing within a process and sort by time across processes.
static LAST_ID: Mutex<(u64, u64)> = Mutex::new((0, 0));

const RANDOM_BITS: u32 = 50;

/// A new time-ordered id (`PC-` + 10 base32 chars of Unix milliseconds + 10 of randomness) and the
/// time it encodes (millisecond precision, UTC).
pub fn new_id() -> (String, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let (ms, rnd) = {
        let mut last = LAST_ID.lock().unwrap_or_else(|p| p.into_inner());
        let mask = (1u64 << RANDOM_BITS) - 1;
        let next = if now_ms <= last.0 {
            // Same (or earlier: clock stepped back) millisecond: keep order by counting up.
            let r = last.1 + 1;
            if r > mask { (last.0 + 1, rand::random::<u64>() & (mask >> 1)) } else { (last.0, r) }
        } else {
            // Leave headroom so a burst within one millisecond does not overflow the counter.
            (now_ms, rand::random::<u64>() & (mask >> 1))
        };
        *last = next;
        next
    };
    let mut out = String::with_capacity(23);
    out.push_str("PC-");
    encode_base32(&mut out, ms, 10);
    encode_base32(&mut out, rnd, 10);
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(now);
    (out, time)
}

fn encode_base32(out: &mut String, value: u64, chars: u32) {
    for i in (0..chars).rev() {
        let idx = ((value >> (i * 5)) & 31) as usize;
        out.push(char::from(CROCKFORD[idx]));
    }
}

/// Whether `s` is acceptable as an event id: 1 to 64 characters of `A-Z a-z 0-9 - _`. Ids made
/// by [`new_id`] (`PC-` + 20 Crockford base32 characters) are; so are other recorders' ids. Used
/// to reject junk before it reaches the store.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Removes what must not be stored from a URL: query parameter *values* become `REDACTED`
/// (names are kept: they say what kind of data was there), userinfo (`user:pass@`) and the
/// fragment are dropped. Works on absolute URLs and on origin-form paths (`/p?q=1`).
///
/// `https://u:p@mail.example/send?to=bob&token=abc#x` → `https://mail.example/send?to=REDACTED&token=REDACTED`
pub fn redact_url(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or("");
    let (base, query) = match without_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (without_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            out.push_str(scheme);
            out.push_str("://");
            out.push_str(host);
            out.push_str(path);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push_str("=REDACTED");
                }
                None => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sorted_and_well_formed() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id().0).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        for id in &ids {
            assert!(is_valid_id(id), "{id}");
            assert_eq!(id.len(), 23);
            assert!(id.starts_with("PC-") && id.bytes().skip(3).all(|b| CROCKFORD.contains(&b)), "{id}");
        }
        assert!(is_valid_id("0123456789abcdef"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("PC-../../etc"));
        assert!(!is_valid_id(&"A".repeat(65)));
    }

    #[test]
    fn id_time_matches_event_time() {
        let e = Event::new(Action::Block, "h");
        let t = e.time;
        let now = OffsetDateTime::now_utc();
        assert!((now - t).whole_seconds().abs() < 5);
        assert_eq!(t.nanosecond() % 1_000_000, 0);
    }

    #[test]
    fn redacts_query_values_userinfo_and_fragment() {
        assert_eq!(
            redact_url("https://u:p@mail.example/send?to=bob&token=abc#frag"),
            "https://mail.example/send?to=REDACTED&token=REDACTED"
        );
        assert_eq!(redact_url("http://h.example/a/b"), "http://h.example/a/b");
        assert_eq!(redact_url("/upload?card=4111111111111111&flag"), "/upload?card=REDACTED&flag");
        assert_eq!(redact_url("https://h.example?x=1"), "https://h.example?x=REDACTED");
        assert_eq!(redact_url("https://h.example/p?"), "https://h.example/p?");
        assert_eq!(redact_url("https://h.example/p?a=1=2&&b="), "https://h.example/p?a=REDACTED&&b=REDACTED");
    }

    #[test]
    fn action_round_trips() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        assert!("nope".parse::<Action>().is_err());
    }

    #[test]
    fn json_shape_is_stable() {
        let mut e = Event::new(Action::Block, "mail.example");
        e.detectors.push(DetectorHit {
            detector: "payment-card".into(),
            count: 2,
            evidence: vec!["4111********1111".into()],
            value_hmacs: vec!["ab".repeat(32)],
        });
        let v = serde_json::to_value(&e).unwrap();
        for k in [
            "id", "time", "user", "client", "method", "host", "url", "app", "category", "activity", "action", "rule", "exception",
            "approver", "simulated", "would", "detectors", "files", "bytes", "reason",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["action"], "block");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
