//! The policy file (`rules/policy.toml`): parsing, validation with file:line problems, and the
//! compiled [`Policy`].
//!
//! ```toml
//! [defaults]
//! action = "allow"                     # when no rule matches
//!
//! [tenant-restrictions.google]         # headers added on the way out (vendor from the catalog)
//! X-GoogApps-Allowed-Domains = "example.gov.hk"
//!
//! [[rule]]                             # ordered: the first matching rule decides
//! id = "block-webmail"
//! categories = ["webmail"]             # also: users, groups, apps, activities, stages,
//! action = "block"                     #   findings (detector ids, "*" = any), unscannable
//! simulate = false                     # true: record what it would do, do not do it
//!
//! [[exception]]                        # waives matching block rules for these users
//! id = "EX-2026-014"
//! users = ["chan.taiman"]              # and/or groups
//! apps = ["gmail"]                     # and/or categories
//! activities = ["browse", "send"]      # optional: default any
//! approver = "Head of Finance Department"
//! reason = "..."
//! expires = 2027-03-31                 # a date: valid through that day (UTC); or RFC 3339
//! ```
//!
//! Every list accepts a single string too (`apps = "gmail"`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use portcullis_classify::LoadError;
use portcullis_classify::{Activity, Catalog, Problem, Problems, line_of, toml_problem};
use serde::Deserialize;
use toml::Spanned;

use crate::decide::{Action, Stage};

/// The shipped default policy, embedded.
pub const BUILTIN_POLICY: (&str, &str) = ("rules/policy.toml", include_str!("../../../rules/policy.toml"));

/// A list that may be written as a single string: `apps = "gmail"` or `apps = ["gmail"]`.
#[derive(Default)]
struct List(Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<List, E> {
                Ok(List(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list with its position in the file.
type OneOrMany = Spanned<List>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    tenant_restrictions: HashMap<String, HashMap<String, String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    exception: Vec<Spanned<RawException>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    action: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    users: Option<OneOrMany>,
    #[serde(default)]
    groups: Option<OneOrMany>,
    #[serde(default)]
    apps: Option<OneOrMany>,
    #[serde(default)]
    categories: Option<OneOrMany>,
    #[serde(default)]
    activities: Option<OneOrMany>,
    #[serde(default)]
    stages: Option<OneOrMany>,
    #[serde(default)]
    findings: Option<OneOrMany>,
    #[serde(default)]
    unscannable: Option<bool>,
    action: Spanned<String>,
    #[serde(default)]
    simulate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    id: Spanned<String>,
    #[serde(default)]
    users: Option<OneOrMany>,
    #[serde(default)]
    groups: Option<OneOrMany>,
    #[serde(default)]
    apps: Option<OneOrMany>,
    #[serde(default)]
    categories: Option<OneOrMany>,
    #[serde(default)]
    activities: Option<OneOrMany>,
    #[serde(default)]
    rules: Option<OneOrMany>,
    approver: String,
    reason: String,
    expires: Spanned<toml::Value>,
}

/// A name in a rule or exception, with the line it was written on (for `policy check`).
#[derive(Clone, Debug)]
pub(crate) struct Named {
    pub name: String,
    pub line: usize,
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Rule id (unique in the file).
    pub id: Arc<str>,
    /// Free text.
    pub description: Option<String>,
    pub(crate) users: Vec<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) apps: Vec<Named>,
    pub(crate) categories: Vec<Named>,
    pub(crate) activities: Vec<Activity>,
    pub(crate) stages: Vec<Stage>,
    /// `Some(empty)` never happens: `findings = "*"` is stored as `any_finding`.
    pub(crate) findings: Option<Vec<Named>>,
    pub(crate) any_finding: bool,
    pub(crate) unscannable: Option<bool>,
    /// What the rule does.
    pub action: Action,
    /// Record what the rule would do, without doing it.
    pub simulate: bool,
    /// Line of the `[[rule]]` table.
    pub line: usize,
}

impl Rule {
    /// A block rule that exceptions may waive by default: an access rule (who, where, what
    /// activity), not a content rule (findings, unscannable) — an approved exception to use
    /// Gmail is not an approval to mail card numbers.
    /// No condition at all: matches every flow at every stage.
    pub(crate) fn is_catch_all(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.apps.is_empty()
            && self.categories.is_empty()
            && self.activities.is_empty()
            && self.stages.is_empty()
            && self.findings.is_none()
            && !self.any_finding
            && self.unscannable.is_none()
    }

    pub(crate) fn waivable_by_default(&self) -> bool {
        self.action == Action::Block && self.findings.is_none() && !self.any_finding && self.unscannable.is_none()
    }
}

/// An approved exception.
#[derive(Clone, Debug)]
pub struct Exception {
    /// Exception id (e.g. the approval ticket).
    pub id: Arc<str>,
    pub(crate) users: Vec<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) apps: Vec<Named>,
    pub(crate) categories: Vec<Named>,
    pub(crate) activities: Vec<Activity>,
    /// Rule ids this exception waives; empty: every access block rule.
    pub(crate) rules: Vec<Arc<str>>,
    /// Who approved it.
    pub approver: String,
    /// Why.
    pub reason: String,
    /// The instant it stops applying.
    pub expires: SystemTime,
    /// `expires` as RFC 3339 (UTC).
    pub expires_text: String,
    /// Line of the `[[exception]]` table.
    pub line: usize,
}

/// A compiled policy: immutable, cheap to share (`Arc<Policy>`); reload builds a new one.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) file: String,
    pub(crate) rules: Vec<Rule>,
    pub(crate) exceptions: Vec<Exception>,
    pub(crate) default_action: Action,
    pub(crate) tenant_headers: HashMap<String, Vec<(String, String)>>,
    tenant_lines: usize,
}

impl Policy {
    /// The shipped default policy (`rules/policy.toml`, embedded).
    ///
    /// # Panics
    /// Never in a released binary: the embedded file is checked by this crate's tests.
    #[allow(clippy::expect_used)]
    pub fn builtin() -> Arc<Policy> {
        Arc::new(Policy::parse(BUILTIN_POLICY.0, BUILTIN_POLICY.1).expect("the embedded policy is valid"))
    }

    /// Load a policy file. On error nothing is loaded.
    pub fn load(path: &Path) -> Result<Policy, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Policy::parse(&path.display().to_string(), &text)
    }

    /// Parse policy text; `file` names it in problems.
    pub fn parse(file: &str, text: &str) -> Result<Policy, LoadError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| LoadError::Invalid(Problems(vec![toml_problem(file, text, &e)])))?;
        let mut cx = Cx { file, text, problems: Vec::new() };
        let default_action = match &raw.defaults {
            Some(d) => cx.parse_with(&d.action, |s| s.parse::<Action>()).unwrap_or(Action::Allow),
            None => Action::Allow,
        };
        let mut rules: Vec<Rule> = Vec::new();
        for r in raw.rule {
            let line = line_of(text, r.span().start);
            if let Some(rule) = cx.rule(line, r.into_inner()) {
                if let Some(other) = rules.iter().find(|o| o.id == rule.id) {
                    cx.problem(line, format!("rule id {:?} already used at line {}", &*rule.id, other.line));
                }
                rules.push(rule);
            }
        }
        let mut exceptions: Vec<Exception> = Vec::new();
        for e in raw.exception {
            let line = line_of(text, e.span().start);
            if let Some(ex) = cx.exception(line, e.into_inner(), &rules) {
                if let Some(other) = exceptions.iter().find(|o| o.id == ex.id) {
                    cx.problem(line, format!("exception id {:?} already used at line {}", &*ex.id, other.line));
                }
                exceptions.push(ex);
            }
        }
        if !cx.problems.is_empty() {
            return Err(LoadError::Invalid(Problems(cx.problems)));
        }
        let tenant_lines = text.find("[tenant-restrictions").map_or(0, |o| line_of(text, o));
        let tenant_headers = raw
            .tenant_restrictions
            .into_iter()
            .map(|(vendor, headers)| {
                let mut h: Vec<(String, String)> = headers.into_iter().collect();
                h.sort();
                (vendor, h)
            })
            .collect();
        Ok(Policy { file: file.to_owned(), rules, exceptions, default_action, tenant_headers, tenant_lines })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The exceptions.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.id == id)
    }

    /// Plain words for a block page: the deciding rule's `description`, else a generic sentence.
    pub fn reason(&self, decision: &crate::Decision) -> String {
        decision
            .rule
            .as_deref()
            .and_then(|id| self.rule(id))
            .and_then(|r| r.description.clone())
            .unwrap_or_else(|| "This transfer is not allowed by the organisation's policy.".to_owned())
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// Configured tenant-restriction headers for a vendor (`google`, `microsoft`, `dropbox`).
    pub fn tenant_headers(&self, vendor: &str) -> &[(String, String)] {
        self.tenant_headers.get(vendor).map_or(&[], Vec::as_slice)
    }

    /// Problems that do not stop the policy from loading but that an officer must see:
    /// app ids and categories the catalog does not know (such a rule never matches), detector
    /// ids the scanner does not know (when `detectors` is given), tenant-restriction vendors or
    /// headers the catalog does not define, and exceptions that have expired at `now`.
    pub fn check(&self, catalog: &Catalog, detectors: Option<&[String]>, now: SystemTime) -> Vec<Problem> {
        let mut out = Vec::new();
        let p = |line: usize, message: String| Problem { file: self.file.clone(), line, message };
        let categories = catalog.categories();
        let check_names = |out: &mut Vec<Problem>, what: &str, apps: &[Named], cats: &[Named]| {
            for a in apps {
                if catalog.app(&a.name).is_none() {
                    out.push(p(a.line, format!("{what}: unknown app id {:?} (not in the app catalog)", a.name)));
                }
            }
            for c in cats {
                if !categories.contains(c.name.as_str()) {
                    out.push(p(c.line, format!("{what}: unknown category {:?} (known: {})", c.name, join(&categories))));
                }
            }
        };
        for r in &self.rules {
            check_names(&mut out, &format!("rule {:?}", &*r.id), &r.apps, &r.categories);
            if let (Some(known), Some(findings)) = (detectors, &r.findings) {
                for f in findings {
                    if !known.contains(&f.name) {
                        out.push(p(f.line, format!("rule {:?}: unknown detector id {:?}", &*r.id, f.name)));
                    }
                }
            }
        }
        // A rule after a catch-all that nothing can waive never applies.
        if let Some(all) = self.rules.iter().find(|r| !r.simulate && r.is_catch_all() && !self.exceptions.iter().any(|e| e.covers(r))) {
            for r in self.rules.iter().filter(|r| r.line > all.line) {
                out.push(p(
                    r.line,
                    format!("rule {:?} is never reached: rule {:?} (line {}) matches everything", &*r.id, &*all.id, all.line),
                ));
            }
        }
        for e in &self.exceptions {
            check_names(&mut out, &format!("exception {:?}", &*e.id), &e.apps, &e.categories);
            if e.expires <= now {
                out.push(p(e.line, format!("exception {:?} (approved by {}) expired at {}", &*e.id, e.approver, e.expires_text)));
            }
            if !self.rules.iter().any(|r| e.covers(r) && overlaps(r, e, catalog)) {
                out.push(p(
                    e.line,
                    format!("exception {:?} waives nothing: no block rule it covers applies to its apps or categories", &*e.id),
                ));
            }
        }
        let mut vendors: Vec<_> = self.tenant_headers.iter().collect();
        vendors.sort();
        for (vendor, headers) in vendors {
            match catalog.tenants().iter().find(|t| t.vendor == *vendor) {
                None => out.push(p(self.tenant_lines, format!("tenant-restrictions: unknown vendor {vendor:?}"))),
                Some(t) => {
                    for (name, _) in headers {
                        if !t.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                            out.push(p(
                                self.tenant_lines,
                                format!("tenant-restrictions.{vendor}: {name:?} is not one of {}", t.headers.join(", ")),
                            ));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|x| x.line);
        out
    }
}

/// Could rule `r` and exception `e` ever concern the same app?
fn overlaps(r: &Rule, e: &Exception, catalog: &Catalog) -> bool {
    if r.apps.is_empty() && r.categories.is_empty() {
        return true;
    }
    let category_of = |app: &str| catalog.app(app).map(|a| a.category.clone());
    let e_categories: Vec<String> =
        e.categories.iter().map(|c| c.name.clone()).chain(e.apps.iter().filter_map(|a| category_of(&a.name))).collect();
    let app_ok =
        |app: &str| e.apps.iter().any(|a| a.name == app) || category_of(app).is_some_and(|c| e.categories.iter().any(|x| x.name == c));
    // A rule's app and category lists are both conditions (AND).
    let apps_ok = r.apps.is_empty() || r.apps.iter().any(|a| app_ok(&a.name));
    let cats_ok = r.categories.is_empty() || r.categories.iter().any(|c| e_categories.contains(&c.name));
    apps_ok && cats_ok
}

fn join(set: &std::collections::BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(", ")
}

struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    fn problem(&mut self, line: usize, message: String) {
        self.problems.push(Problem { file: self.file.to_owned(), line, message });
    }

    fn line(&self, s: &Spanned<impl Sized>) -> usize {
        line_of(self.text, s.span().start)
    }

    fn parse_with<T>(&mut self, s: &Spanned<String>, f: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        match f(s.get_ref()) {
            Ok(v) => Some(v),
            Err(m) => {
                let line = self.line(s);
                self.problem(line, m);
                None
            }
        }
    }

    /// The line of each element: its quoted text within the list's span (lists often span
    /// several lines), else the list's first line.
    fn element_lines(&self, v: &OneOrMany) -> Vec<usize> {
        let span = v.span();
        let region = self.text.get(span.clone()).unwrap_or("");
        let mut from = 0;
        v.get_ref()
            .0
            .iter()
            .map(|name| match region[from..].find(&format!("\"{name}\"")) {
                Some(i) => {
                    from += i + name.len() + 2;
                    line_of(self.text, span.start + from)
                }
                None => line_of(self.text, span.start),
            })
            .collect()
    }

    fn names(&self, v: Option<OneOrMany>) -> Vec<Named> {
        let Some(v) = v else { return vec![] };
        let lines = self.element_lines(&v);
        v.into_inner().0.into_iter().zip(lines).map(|(name, line)| Named { name, line }).collect()
    }

    fn strings(v: Option<OneOrMany>) -> Vec<String> {
        v.map(|v| v.into_inner().0).unwrap_or_default()
    }

    fn parsed<T>(&mut self, v: Option<OneOrMany>, f: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
        let mut out = Vec::new();
        for n in self.names(v) {
            match f(&n.name) {
                Ok(x) => out.push(x),
                Err(m) => self.problem(n.line, m),
            }
        }
        out
    }

    fn rule(&mut self, line: usize, r: RawRule) -> Option<Rule> {
        let id = r.id.get_ref().trim().to_owned();
        if id.is_empty() {
            self.problem(line, "rule id is empty".into());
        }
        let action = self.parse_with(&r.action, |s| s.parse::<Action>());
        let activities = self.parsed(r.activities, |s| s.parse::<Activity>());
        let stages = self.parsed(r.stages, |s| s.parse::<Stage>());
        let (findings, any_finding) = match r.findings {
            None => (None, false),
            Some(f) => {
                let names = self.names(Some(f));
                if names.is_empty() {
                    self.problem(line, format!("rule {id:?}: `findings` is empty; use \"*\" for any finding"));
                }
                let any = names.iter().any(|n| n.name == "*");
                if any { (None, true) } else { (Some(names), false) }
            }
        };
        let rule = Rule {
            id: Arc::from(id),
            description: r.description,
            users: Cx::strings(r.users),
            groups: Cx::strings(r.groups),
            apps: self.names(r.apps),
            categories: self.names(r.categories),
            activities,
            stages,
            findings,
            any_finding,
            unscannable: r.unscannable,
            action: action?,
            simulate: r.simulate,
            line,
        };
        if rule.stages.contains(&Stage::Connect)
            && rule.stages.len() == 1
            && (rule.findings.is_some() || rule.any_finding || rule.unscannable.is_some())
        {
            self.problem(line, format!("rule {:?}: findings and unscannable are only known at the body stage", &*rule.id));
        }
        Some(rule)
    }

    fn exception(&mut self, line: usize, e: RawException, rules: &[Rule]) -> Option<Exception> {
        let id = e.id.get_ref().trim().to_owned();
        if id.is_empty() {
            self.problem(line, "exception id is empty".into());
        }
        let users = Cx::strings(e.users);
        let groups = Cx::strings(e.groups);
        if users.is_empty() && groups.is_empty() {
            self.problem(line, format!("exception {id:?}: name the users or groups it is for"));
        }
        let apps = self.names(e.apps);
        let categories = self.names(e.categories);
        if apps.is_empty() && categories.is_empty() {
            self.problem(line, format!("exception {id:?}: name the apps or categories it is for"));
        }
        let activities = self.parsed(e.activities, |s| s.parse::<Activity>());
        let mut rule_ids = Vec::new();
        for r in self.names(e.rules) {
            match rules.iter().find(|x| *x.id == *r.name) {
                Some(x) => rule_ids.push(x.id.clone()),
                None => self.problem(r.line, format!("exception {id:?}: no rule with id {:?}", r.name)),
            }
        }
        if e.approver.trim().is_empty() {
            self.problem(line, format!("exception {id:?}: approver is empty"));
        }
        if e.reason.trim().is_empty() {
            self.problem(line, format!("exception {id:?}: reason is empty"));
        }
        let expires_line = self.line(&e.expires);
        let expires = match parse_expiry(e.expires.get_ref()) {
            Ok(t) => Some(t),
            Err(m) => {
                self.problem(expires_line, format!("exception {id:?}: expires: {m}"));
                None
            }
        }?;
        Some(Exception {
            id: Arc::from(id),
            users,
            groups,
            apps,
            categories,
            activities,
            rules: rule_ids,
            approver: e.approver,
            reason: e.reason,
            expires: expires.0,
            expires_text: expires.1,
            line,
        })
    }
}

/// `2027-03-31` (valid through that day, UTC: stops applying at 2027-04-01T00:00:00Z) or an
/// RFC 3339 instant with offset (`2027-03-31T18:00:00+08:00`), as a TOML date/datetime or string.
pub fn parse_expiry(v: &toml::Value) -> Result<(SystemTime, String), String> {
    let text = match v {
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("expected a date (2027-03-31) or RFC 3339 time, found {}", other.type_str())),
    };
    parse_expiry_text(&text)
}

/// [`parse_expiry`] for text (command-line flags).
pub fn parse_expiry_text(text: &str) -> Result<(SystemTime, String), String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim().to_owned();
    let instant = if text.len() == 10 {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(&text, fmt).map_err(|e| format!("{text:?}: {e}"))?;
        let next = date.next_day().ok_or_else(|| format!("{text:?}: date out of range"))?;
        next.midnight().assume_utc()
    } else {
        time::OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|e| format!("{text:?}: {e} (a date like 2027-03-31, or a time with its UTC offset)"))?
    };
    let secs = u64::try_from(instant.unix_timestamp()).map_err(|_| format!("{text:?}: before 1970"))?;
    let utc = instant.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or(text);
    Ok((UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(u64::from(instant.nanosecond())), utc))
}
