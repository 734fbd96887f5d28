//! The app catalog: TOML files under `rules/apps/` compiled into lookup tables.
//!
//! File format (one or more `[[app]]` tables per file, plus optional `[[tenant]]` tables):
//!
//! ```toml
//! [[app]]
//! id = "google-drive"             # public id: policies name it
//! name = "Google Drive"
//! category = "cloud-storage"      # webmail | cloud-storage | instant-messaging | your own
//! inspectable = true              # can content be seen after TLS interception?
//! tenant = "google"               # vendor whose tenant-restriction headers apply
//! hosts = ["drive.google.com", "*.drive.google.com"]   # exact, or `*.` = any subdomain
//! ips = ["91.108.4.0/22"]         # for clients that connect by address
//! [[app.endpoint]]                # a host shared with other services: only these paths
//! host = "www.googleapis.com"
//! paths = ["/upload/drive/*", "/drive/*"]             # `*` = any characters
//! [[app.activity]]                # first matching entry wins; otherwise the method decides
//! name = "upload"                 # login | browse | download | upload | send | opaque
//! methods = ["POST", "PUT"]
//! paths = ["/upload/*"]
//! ```
//!
//! Longest match wins across all apps: an exact host beats a suffix, a longer suffix beats a
//! shorter one, an endpoint with a matching path beats a bare host, any host beats an IP range.
//! Endpoints with paths never match a CONNECT (no path yet): a shared API host must not make
//! the whole tunnel look like one app.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::flow::{Activity, AppInfo, Flow, FlowHead};
use crate::host::{HostPattern, NormalHost, normalize_host, parents};
use crate::problem::{LoadError, Problem, Problems, line_of, toml_problem};

/// The built-in catalog files, embedded so a fresh binary works with no files on disk.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("rules/apps/webmail.toml", include_str!("../../../rules/apps/webmail.toml")),
    ("rules/apps/cloud-storage.toml", include_str!("../../../rules/apps/cloud-storage.toml")),
    ("rules/apps/instant-messaging.toml", include_str!("../../../rules/apps/instant-messaging.toml")),
    ("rules/apps/tenants.toml", include_str!("../../../rules/apps/tenants.toml")),
];

/// Loading the catalog failed; nothing was loaded.
pub type CatalogError = LoadError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
    #[serde(default)]
    tenant: Vec<Spanned<RawTenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    id: Spanned<String>,
    name: String,
    category: Spanned<String>,
    #[serde(default = "yes")]
    inspectable: bool,
    #[serde(default)]
    tenant: Option<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    ips: Vec<Spanned<String>>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
    #[serde(default)]
    activity: Vec<RawActivity>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    host: Spanned<String>,
    paths: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
    name: Spanned<String>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    vendor: Spanned<String>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    headers: Vec<String>,
}

/// A path pattern: `*` matches any run of characters; anchored at both ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathGlob {
    raw: String,
    parts: Vec<String>,
}

impl PathGlob {
    /// Parse a pattern; it must start with `/`.
    pub fn parse(raw: &str) -> Result<PathGlob, String> {
        if !raw.starts_with('/') {
            return Err(format!("path pattern {raw:?} must start with '/'"));
        }
        if raw.contains('?') || raw.contains('#') {
            return Err(format!("path pattern {raw:?}: queries are not matched; give the path only"));
        }
        Ok(PathGlob { raw: raw.to_owned(), parts: raw.split('*').map(str::to_owned).collect() })
    }

    /// Does `path` (query already removed) match?
    pub fn matches(&self, path: &str) -> bool {
        let n = self.parts.len();
        let first = &self.parts[0];
        if n == 1 {
            return path == first;
        }
        let Some(mut rest) = path.strip_prefix(first.as_str()) else {
            return false;
        };
        for mid in &self.parts[1..n - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        rest.ends_with(self.parts[n - 1].as_str())
    }

    /// Number of literal characters: more is more specific.
    pub fn specificity(&self) -> usize {
        self.parts.iter().map(String::len).sum()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// A host (pattern) of an app, optionally restricted to paths.
#[derive(Clone, Debug)]
struct Endpoint {
    app: usize,
    pattern: HostPattern,
    /// Empty: the whole host.
    paths: Vec<PathGlob>,
}

#[derive(Clone, Debug)]
struct ActivityRule {
    activity: Activity,
    methods: Vec<String>,
    hosts: Vec<HostPattern>,
    paths: Vec<PathGlob>,
}

#[derive(Clone, Debug)]
struct App {
    info: Arc<AppInfo>,
    activities: Vec<ActivityRule>,
}

/// A vendor's tenant-restriction headers and the hosts (besides its apps) where they apply,
/// e.g. Microsoft's login endpoints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tenant {
    /// Vendor id (`google`, `microsoft`, `dropbox`), named by apps' `tenant` and by policy.
    pub vendor: String,
    /// Header names the vendor honours.
    pub headers: Vec<String>,
    #[serde(skip)]
    hosts: Vec<HostPattern>,
}

/// The compiled catalog. Cheap to share (`Arc<Catalog>`); immutable; reload builds a new one.
#[derive(Debug, Default)]
pub struct Catalog {
    apps: Vec<App>,
    exact: HashMap<String, Vec<Endpoint>>,
    suffix: HashMap<String, Vec<Endpoint>>,
    /// Sorted longest prefix first.
    ips: Vec<(IpNet, usize)>,
    tenants: Vec<Tenant>,
}

impl Catalog {
    /// The shipped catalog (`rules/apps/*.toml`, embedded).
    ///
    /// # Panics
    /// Never in a released binary: the embedded files are checked by this crate's tests.
    #[allow(clippy::expect_used)]
    pub fn builtin() -> Arc<Catalog> {
        let sources: Vec<(String, String)> = BUILTIN_FILES.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
        Arc::new(Catalog::from_sources(&sources).expect("the embedded app catalog is valid"))
    }

    /// Load every `*.toml` file in `dir` (sorted by name). All or nothing.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let io = |source| CatalogError::Io { path: dir.display().to_string(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Io { path: path.display().to_string(), source })?;
            sources.push((path.display().to_string(), text));
        }
        if sources.is_empty() {
            return Err(CatalogError::Invalid(Problems(vec![Problem {
                file: dir.display().to_string(),
                line: 0,
                message: "no *.toml app files in this directory".into(),
            }])));
        }
        Catalog::from_sources(&sources)
    }

    /// Compile `(file name, toml text)` pairs. All problems of all files are collected.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Catalog, CatalogError> {
        let mut b = Builder::default();
        for (file, text) in sources {
            b.add_file(file, text);
        }
        b.finish()
    }

    /// Every app, in file order.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<AppInfo>> {
        self.apps.iter().map(|a| &a.info)
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&Arc<AppInfo>> {
        self.apps.iter().map(|a| &a.info).find(|a| a.id == id)
    }

    /// Every host pattern with the app that claims it (endpoints with paths included), for
    /// checks and listings.
    pub fn host_patterns(&self) -> impl Iterator<Item = (&HostPattern, &Arc<AppInfo>, bool)> {
        self.exact.values().chain(self.suffix.values()).flatten().map(|ep| (&ep.pattern, &self.apps[ep.app].info, !ep.paths.is_empty()))
    }

    /// The set of categories used by the apps.
    pub fn categories(&self) -> BTreeSet<&str> {
        self.apps.iter().map(|a| a.info.category.as_str()).collect()
    }

    /// Tenant-restriction vendors.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The vendor whose tenant-restriction headers apply to this flow: the app's vendor, or a
    /// vendor whose extra hosts (login endpoints) match the flow's host.
    pub fn tenant_for(&self, flow: &Flow) -> Option<&Tenant> {
        if let Some(v) = flow.app.as_ref().and_then(|a| a.tenant.as_deref()) {
            return self.tenants.iter().find(|t| t.vendor == v);
        }
        self.tenants.iter().find(|t| t.hosts.iter().any(|p| p.matches(&flow.host)))
    }

    /// Classify a flow: which app (longest match) and which activity.
    ///
    /// `head.method`: `None` for bytes in a tunnel that are not TLS/HTTP (activity `opaque`),
    /// `Some("CONNECT")` for a tunnel being opened (activity unknown, unless the app cannot be
    /// inspected: then `opaque`), otherwise the HTTP method.
    pub fn classify(&self, head: &FlowHead<'_>) -> Flow {
        let (host, ip, is_name) = match normalize_host(head.host) {
            Ok(NormalHost::Name(n)) => (n, head.ip, true),
            Ok(NormalHost::Ip(ip)) => (ip.to_string(), Some(ip), false),
            Err(_) => (head.host.to_ascii_lowercase(), head.ip, false),
        };
        let normal_path = head.path.map(normalize_path);
        let path = normal_path.as_deref();
        // The best candidate so far; formatted into `Flow::matched` only once, at the end.
        let mut best: Option<((u8, usize, usize), usize, Hit<'_>)> = None;
        if is_name {
            let exact = self.exact.get(host.as_str()).into_iter().flatten();
            let suffix = parents(&host).filter_map(|p| self.suffix.get(p)).flatten();
            for ep in exact.chain(suffix) {
                let (path_spec, hit) = if ep.paths.is_empty() {
                    (0, Hit::Host(&ep.pattern))
                } else {
                    let Some(p) = path else { continue };
                    match ep.paths.iter().filter(|g| g.matches(p)).max_by_key(|g| g.specificity()) {
                        Some(g) => (g.specificity() + 1, Hit::Path(&ep.pattern, g)),
                        None => continue,
                    }
                };
                let score = (2, ep.pattern.specificity(), path_spec);
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((score, ep.app, hit));
                }
            }
        }
        if best.is_none()
            && let Some(ip) = ip
            && let Some((net, app)) = self.ips.iter().find(|(net, _)| net.contains(&ip))
        {
            best = Some(((1, usize::from(net.prefix_len()), 0), *app, Hit::Ip(net)));
        }
        let Some((_, idx, hit)) = best else {
            return Flow { host, app: None, activity: default_activity(head.method, true), matched: None };
        };
        let matched = match hit {
            Hit::Host(p) => p.to_string(),
            Hit::Path(p, g) => format!("{p}{}", g.as_str()),
            Hit::Ip(net) => net.to_string(),
        };
        let app = &self.apps[idx];
        let activity = match head.method {
            None => Some(Activity::Opaque),
            Some(m) if m.eq_ignore_ascii_case("CONNECT") => default_activity(head.method, app.info.inspectable),
            Some(m) => app
                .activities
                .iter()
                .find(|r| r.matches(m, &host, path))
                .map(|r| r.activity)
                .or_else(|| default_activity(Some(m), app.info.inspectable)),
        };
        Flow { host, app: Some(app.info.clone()), activity, matched: Some(matched) }
    }
}

/// What matched, kept by reference until the winner is known.
enum Hit<'a> {
    Host(&'a HostPattern),
    Path(&'a HostPattern, &'a PathGlob),
    Ip(&'a IpNet),
}

impl ActivityRule {
    fn matches(&self, method: &str, host: &str, path: Option<&str>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
            && (self.paths.is_empty() || path.is_some_and(|p| self.paths.iter().any(|g| g.matches(p))))
    }
}

/// The activity when no catalog entry says otherwise: reads browse, writes upload (the safe
/// side for DLP: any request body is treated as data leaving), tunnels opaque when the app's
/// content can never be seen and unknown until interception otherwise.
fn default_activity(method: Option<&str>, inspectable: bool) -> Option<Activity> {
    let Some(m) = method else { return Some(Activity::Opaque) };
    let m = m.to_ascii_uppercase();
    match m.as_str() {
        "CONNECT" if inspectable => None,
        "CONNECT" => Some(Activity::Opaque),
        "POST" | "PUT" | "PATCH" => Some(Activity::Upload),
        _ => Some(Activity::Browse),
    }
}

/// The path part of a request target, normalised so that equivalent spellings match the same
/// patterns: query and fragment removed, percent-encoded unreserved characters decoded
/// (RFC 3986 §6.2.2.2: `%75pload` is `upload`), repeated slashes collapsed and `.`/`..`
/// segments resolved. `%2F` and other reserved escapes stay encoded: decoding them would
/// change the path's meaning.
pub fn normalize_path(target: &str) -> std::borrow::Cow<'_, str> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let path = &target[..end];
    let clean = !path.contains('%') && !path.contains("//") && !path.contains("/.") && path.starts_with('/');
    if clean {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut decoded = String::with_capacity(path.len() + 1);
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                decoded.push(char::from(c));
                i += 3;
                continue;
            }
        }
        // `i` is always on a char boundary: escapes are ASCII, other input advances by chars.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        decoded.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[derive(Default)]
struct Builder {
    problems: Vec<Problem>,
    apps: Vec<App>,
    ids: HashMap<String, (String, usize)>,
    endpoints: Vec<(Endpoint, String, usize)>,
    ips: Vec<(IpNet, usize)>,
    tenants: Vec<Tenant>,
    tenant_refs: Vec<(String, String, usize)>,
}

impl Builder {
    fn add_file(&mut self, file: &str, text: &str) {
        let raw: RawFile = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                self.problems.push(toml_problem(file, text, &e));
                return;
            }
        };
        let at = |span: std::ops::Range<usize>| line_of(text, span.start);
        for app in raw.app {
            let line = at(app.span());
            self.add_app(file, text, line, app.into_inner());
        }
        for t in raw.tenant {
            let line = at(t.span());
            let t = t.into_inner();
            let mut hosts = Vec::new();
            for h in &t.hosts {
                match HostPattern::parse(h.get_ref()) {
                    Ok(p) => hosts.push(p),
                    Err(m) => self.problem(file, at(h.span()), m),
                }
            }
            if self.tenants.iter().any(|x| x.vendor == *t.vendor.get_ref()) {
                self.problem(file, line, format!("tenant vendor {:?} defined twice", t.vendor.get_ref()));
            }
            self.tenants.push(Tenant { vendor: t.vendor.into_inner(), headers: t.headers, hosts });
        }
    }

    fn problem(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.problems.push(Problem { file: file.to_owned(), line, message: message.into() });
    }

    fn add_app(&mut self, file: &str, text: &str, line: usize, raw: RawApp) {
        let at = |span: std::ops::Range<usize>| line_of(text, span.start);
        let id = raw.id.get_ref().clone();
        if !is_id(&id) {
            self.problem(file, at(raw.id.span()), format!("app id {id:?}: use lowercase letters, digits and '-'"));
        }
        if let Some((f, l)) = self.ids.get(&id) {
            let msg = format!("app id {id:?} already defined at {f}:{l}");
            self.problem(file, at(raw.id.span()), msg);
        }
        self.ids.insert(id.clone(), (file.to_owned(), line));
        if !is_id(raw.category.get_ref()) {
            self.problem(file, at(raw.category.span()), "category: use lowercase letters, digits and '-'");
        }
        if raw.hosts.is_empty() && raw.ips.is_empty() && raw.endpoint.is_empty() {
            self.problem(file, line, format!("app {id:?} has no hosts, endpoints or ips"));
        }
        let idx = self.apps.len();
        for h in &raw.hosts {
            match HostPattern::parse(h.get_ref()) {
                Ok(pattern) => {
                    self.endpoints.push((Endpoint { app: idx, pattern, paths: vec![] }, file.to_owned(), at(h.span())));
                }
                Err(m) => self.problem(file, at(h.span()), m),
            }
        }
        for ep in &raw.endpoint {
            let l = at(ep.host.span());
            let pattern = match HostPattern::parse(ep.host.get_ref()) {
                Ok(p) => p,
                Err(m) => {
                    self.problem(file, l, m);
                    continue;
                }
            };
            let paths = self.globs(file, text, &ep.paths);
            if paths.is_empty() {
                self.problem(file, l, "an endpoint needs at least one path; put whole hosts in `hosts`");
                continue;
            }
            self.endpoints.push((Endpoint { app: idx, pattern, paths }, file.to_owned(), l));
        }
        for ip in &raw.ips {
            match ip.get_ref().parse::<IpNet>() {
                Ok(net) => self.ips.push((net.trunc(), idx)),
                Err(_) => self.problem(file, at(ip.span()), format!("{:?} is not a CIDR range", ip.get_ref())),
            }
        }
        let mut activities = Vec::new();
        for a in &raw.activity {
            let activity = match a.name.get_ref().parse::<Activity>() {
                Ok(x) => x,
                Err(m) => {
                    self.problem(file, at(a.name.span()), m);
                    continue;
                }
            };
            let mut methods = Vec::new();
            for m in &a.methods {
                let s = m.get_ref();
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
                    self.problem(file, at(m.span()), format!("{s:?} is not an HTTP method"));
                }
                methods.push(s.to_ascii_uppercase());
            }
            let mut hosts = Vec::new();
            for h in &a.hosts {
                match HostPattern::parse(h.get_ref()) {
                    Ok(p) => hosts.push(p),
                    Err(m) => self.problem(file, at(h.span()), m),
                }
            }
            let paths = self.globs(file, text, &a.paths);
            activities.push(ActivityRule { activity, methods, hosts, paths });
        }
        let tenant = raw.tenant.map(|t| {
            self.tenant_refs.push((t.get_ref().clone(), file.to_owned(), at(t.span())));
            t.into_inner()
        });
        let info = AppInfo { id, name: raw.name, category: raw.category.into_inner(), inspectable: raw.inspectable, tenant };
        self.apps.push(App { info: Arc::new(info), activities });
    }

    fn globs(&mut self, file: &str, text: &str, raw: &[Spanned<String>]) -> Vec<PathGlob> {
        let mut out = Vec::new();
        for p in raw {
            match PathGlob::parse(p.get_ref()) {
                Ok(g) => out.push(g),
                Err(m) => self.problem(file, line_of(text, p.span().start), m),
            }
        }
        out
    }

    fn finish(mut self) -> Result<Catalog, CatalogError> {
        let refs = std::mem::take(&mut self.tenant_refs);
        for (vendor, file, line) in refs {
            if !self.tenants.iter().any(|t| t.vendor == vendor) {
                self.problem(&file, line, format!("tenant vendor {vendor:?} is not defined by any [[tenant]]"));
            }
        }
        let mut catalog = Catalog { apps: self.apps, ..Catalog::default() };
        // Two apps claiming the same host pattern (for the same paths) is ambiguous.
        let mut seen: HashMap<(HostPattern, Vec<String>), usize> = HashMap::new();
        for (ep, file, line) in self.endpoints {
            let key = (ep.pattern.clone(), ep.paths.iter().map(|g| g.as_str().to_owned()).collect());
            if let Some(&other) = seen.get(&key)
                && other != ep.app
            {
                self.problems.push(Problem {
                    file,
                    line,
                    message: format!("{} is already claimed by app {:?}", ep.pattern, catalog.apps[other].info.id),
                });
                continue;
            }
            seen.insert(key, ep.app);
            let map = match &ep.pattern {
                HostPattern::Exact(d) => catalog.exact.entry(d.clone()),
                HostPattern::Suffix(d) => catalog.suffix.entry(d.clone()),
            };
            map.or_default().push(ep);
        }
        if !self.problems.is_empty() {
            return Err(CatalogError::Invalid(Problems(self.problems)));
        }
        self.ips.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        catalog.ips = self.ips;
        catalog.tenants = self.tenants;
        Ok(catalog)
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::from_sources(&[("t.toml".into(), text.into())])
    }

    #[test]
    fn paths_normalised() {
        assert_eq!(normalize_path("/upload/drive/v3/files?x=1"), "/upload/drive/v3/files");
        assert_eq!(normalize_path("/%75pload//drive/./v3/x/../files"), "/upload/drive/v3/files");
        assert_eq!(normalize_path("/a%2Fb"), "/a%2Fb");
        assert_eq!(normalize_path("/a%2"), "/a%2");
        assert_eq!(normalize_path("/a/"), "/a/");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("?q"), "/");
        assert_eq!(normalize_path("/caf\u{e9}%41"), "/caf\u{e9}A");
        assert_eq!(normalize_path("*"), "/*");
    }

    #[test]
    fn globs() {
        let g = PathGlob::parse("/upload/*/files/*").unwrap();
        assert!(g.matches("/upload/drive/v3/files/abc"));
        assert!(!g.matches("/download/drive/v3/files/abc"));
        assert!(PathGlob::parse("/a").unwrap().matches("/a"));
        assert!(!PathGlob::parse("/a").unwrap().matches("/ab"));
        assert!(PathGlob::parse("/a*").unwrap().matches("/ab"));
        assert!(PathGlob::parse("*x").is_err());
    }

    #[test]
    fn errors_name_lines() {
        let err = cat("[[app]]\nid = \"x\"\nname = \"X\"\ncategory = \"webmail\"\nhosts = [\"*.qq.com\"]\n").unwrap_err();
        let p = err.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 5);
        assert!(p[0].message.contains("several unrelated services"), "{}", p[0].message);

        let err = cat("[[app]]\nid = \"x\"\nname = \"X\"\ncategory = \"webmail\"\nhostz = [\"a.com\"]\n").unwrap_err();
        assert_eq!(err.problems()[0].line, 5, "{err}");

        let err =
            cat("[[app]]\nid = \"x\"\nname = \"X\"\ncategory = \"webmail\"\nhosts = [\"a.com\"]\n[[app.activity]]\nname = \"steal\"\n")
                .unwrap_err();
        assert_eq!(err.problems()[0].line, 7, "{err}");
    }

    #[test]
    fn duplicate_claims_refused() {
        let t = "[[app]]\nid = \"a\"\nname = \"A\"\ncategory = \"webmail\"\nhosts = [\"m.example\"]\n\
                 [[app]]\nid = \"b\"\nname = \"B\"\ncategory = \"webmail\"\nhosts = [\"m.example\"]\n";
        let err = cat(t).unwrap_err();
        assert_eq!(err.problems()[0].line, 10, "{err}");
        let t = "[[app]]\nid = \"a\"\nname = \"A\"\ncategory = \"webmail\"\nhosts = [\"m.example\"]\n\
                 [[app]]\nid = \"a\"\nname = \"B\"\ncategory = \"webmail\"\nhosts = [\"n.example\"]\n";
        assert!(cat(t).unwrap_err().to_string().contains("already defined"));
    }
}
