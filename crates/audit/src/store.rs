//! The storage seam: [`AuditStore`] is what the writer, the CLI and the admin API need from a
//! store. [`crate::SqliteStore`] is the embedded default; a later server-database store (for
//! fleets of proxies) implements the same trait.
//!
//! The trait is synchronous on purpose: embedded SQLite is a blocking library, the writer owns its
//! store on a dedicated thread, and async callers (the admin API) go through `spawn_blocking`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Action, AuditError, Event};

/// Which events a query, export or stats call covers. All set fields must match (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Only this action.
    pub action: Option<Action>,
    /// Only simulated (`Some(true)`) or only real (`Some(false)`) decisions.
    pub simulated: Option<bool>,
    /// Exact user name.
    pub user: Option<String>,
    /// Exact app id.
    pub app: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Events in which this detector matched.
    pub detector: Option<String>,
    /// Events that carried the value with this HMAC (hex, as shown in an event's `value_hmacs`):
    /// correlates one leaked value across events without anyone seeing it.
    pub value_hmac: Option<String>,
    /// Host, case-insensitive: the host itself or any subdomain of it.
    pub host: Option<String>,
    /// At or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// At or before this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Pagination cursor: only events after this one in the listing order (pass the last id of the
    /// previous page). Listing order is chronological (time, then insertion order).
    pub cursor: Option<String>,
    /// Maximum number of events (for `stats`: entries per breakdown). `None` = no limit.
    pub limit: Option<usize>,
    /// Oldest first instead of the default newest first.
    #[serde(default)]
    pub ascending: bool,
}

impl Filter {
    /// Applies a CLI/API `action` value: an [`Action`] name, or `simulate` (simulated decisions).
    pub fn set_action(&mut self, value: &str) -> Result<(), String> {
        if value.trim().eq_ignore_ascii_case("simulate") {
            self.simulated = Some(true);
        } else {
            self.action = Some(value.parse()?);
        }
        Ok(())
    }
}

/// A `--since` / `--until` value: a duration before `now` (`90s`, `15m`, `24h`, `7d`, `2w`,
/// combinations like `1h30m`), an RFC 3339 time, or a date (`2026-12-01`, midnight UTC).
pub fn parse_time_bound(value: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let v = value.trim();
    if let Ok(t) = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    let d = parse_duration(v).map_err(|e| format!("{value:?}: {e} (expected a duration like 24h or 7d, or an RFC 3339 time)"))?;
    let d = time::Duration::try_from(d).map_err(|_| format!("{value:?}: duration too large"))?;
    now.checked_sub(d).ok_or_else(|| format!("{value:?}: duration too large"))
}

/// Parses `90s`, `15m`, `24h`, `7d`, `2w`, `1h30m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in value.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("unexpected {c:?}")),
        };
        let n: u64 = digits.parse().map_err(|_| "a number must precede each unit".to_owned())?;
        total = n.checked_mul(unit).and_then(|x| total.checked_add(x)).ok_or("duration too large")?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err("a unit (s, m, h, d, w) must follow each number".to_owned());
    }
    Ok(Duration::from_secs(total))
}

/// One row of a breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Category, app, detector or user; `(none)` when the event had none.
    pub key: String,
    pub count: u64,
}

/// Counts over a period. Breakdowns count real blocks (`action = block`, not simulated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Events matching the filter (any action).
    pub total: u64,
    /// Events by action (simulated decisions counted under their real action).
    pub by_action: BTreeMap<String, u64>,
    /// Simulated decisions.
    pub simulated: u64,
    /// Real blocks.
    pub blocks: u64,
    pub blocks_by_category: Vec<Count>,
    pub blocks_by_app: Vec<Count>,
    /// Blocked events per detector (an event with two detectors counts for both).
    pub blocks_by_detector: Vec<Count>,
    pub blocks_by_user: Vec<Count>,
    /// Events that writers of this store dropped (queue full, failed batch), all time: a non-zero
    /// value means the log is known to be incomplete.
    #[serde(default)]
    pub dropped: u64,
}

/// Retention policy: delete events older than `max_age`, then the oldest events until the store
/// is at most `max_bytes` (the SQLite store measures its used pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether any limit is set.
    pub fn is_enabled(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

/// What a retention run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
}

/// An audit event store.
pub trait AuditStore: Send {
    /// Appends events atomically (all or none; the SQLite store uses one transaction) and durably
    /// (per the store's durability setting) before returning.
    fn append(&mut self, events: &[Event]) -> Result<(), AuditError>;

    /// Calls `each` for every event matching `filter`, in listing order, until it returns
    /// `Ok(false)` or `filter.limit` events were given. Streams: memory does not grow with results.
    fn scan(&self, filter: &Filter, each: &mut dyn FnMut(Event) -> Result<bool, AuditError>) -> Result<(), AuditError>;

    /// One event by id.
    fn get(&self, id: &str) -> Result<Option<Event>, AuditError>;

    /// Counts over the events matching `filter` (`filter.limit` = entries per breakdown, default 20).
    fn stats(&self, filter: &Filter) -> Result<Stats, AuditError>;

    /// Adds `n` to the store's persistent count of dropped events (reported in [`Stats::dropped`]).
    fn record_dropped(&mut self, n: u64) -> Result<(), AuditError>;

    /// Applies `policy` as of `now`.
    fn apply_retention(&mut self, policy: &Retention, now: OffsetDateTime) -> Result<RetentionReport, AuditError>;

    /// Events matching `filter`, collected.
    fn query(&self, filter: &Filter) -> Result<Vec<Event>, AuditError> {
        let mut out = Vec::new();
        self.scan(filter, &mut |e| {
            out.push(e);
            Ok(true)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_and_times() {
        let now = datetime!(2026-12-03 08:00 UTC);
        assert_eq!(parse_time_bound("24h", now).unwrap(), datetime!(2026-12-02 08:00 UTC));
        assert_eq!(parse_time_bound("1h30m", now).unwrap(), datetime!(2026-12-03 06:30 UTC));
        assert_eq!(parse_time_bound("7d", now).unwrap(), datetime!(2026-11-26 08:00 UTC));
        assert_eq!(parse_time_bound("2026-12-01T10:00:00Z", now).unwrap(), datetime!(2026-12-01 10:00 UTC));
        assert_eq!(parse_time_bound("2026-12-01T10:00:00+08:00", now).unwrap(), datetime!(2026-12-01 02:00 UTC));
        assert_eq!(parse_time_bound("2026-12-01", now).unwrap(), datetime!(2026-12-01 00:00 UTC));
        for bad in ["", "h", "10", "10x", "yesterday", "99999999999999999999d"] {
            assert!(parse_time_bound(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn action_filter_accepts_simulate() {
        let mut f = Filter::default();
        f.set_action("simulate").unwrap();
        assert_eq!(f.simulated, Some(true));
        assert_eq!(f.action, None);
        f.set_action("Block").unwrap();
        assert_eq!(f.action, Some(Action::Block));
        assert!(f.set_action("destroy").is_err());
    }
}
