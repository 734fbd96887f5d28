//! Configuration: raw TOML (every key optional, `serde(default)`) → validated [`Config`].
//!
//! The shipped `portcullis.toml` is embedded and is, by construction, what `RawConfig::default()`
//! yields (a test checks it), so a user's file only needs the keys it changes. Command-line flags
//! (`--listen`, `--resolve`, `--upstream-ca`) override or extend the file. Validation turns strings
//! into typed values and refuses unsafe combinations (an open proxy) before anything binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use portcullis_audit::{AdminSettings, AuditSettings};
use portcullis_proxy::{Limits, ProxyConfig, ResolveOverride};
use portcullis_telemetry::LogFormat;

use crate::policy_gate::Sources;
use serde::Deserialize;

/// The shipped defaults, embedded.
pub const DEFAULT_TOML: &str = include_str!("../portcullis.toml");

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub allow_clients: Vec<String>,
    pub ca_dir: PathBuf,
    pub rules_dir: String,
    pub apps_dir: String,
    pub policy_file: String,
    pub users_file: String,
    pub value_hmac_key_file: PathBuf,
    pub log_format: String,
    pub upstream_ca: Vec<PathBuf>,
    pub resolve: Vec<String>,
    pub bypass: Vec<RawBypass>,
    pub limits: RawLimits,
    pub audit: AuditSettings,
    pub admin: AdminSettings,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:8080".into(),
            allow_clients: Vec::new(),
            ca_dir: PathBuf::from("certs"),
            rules_dir: String::new(),
            apps_dir: String::new(),
            policy_file: String::new(),
            users_file: String::new(),
            value_hmac_key_file: PathBuf::from("data/value-hmac.key"),
            log_format: "text".into(),
            upstream_ca: Vec::new(),
            resolve: Vec::new(),
            bypass: Vec::new(),
            limits: RawLimits::default(),
            audit: AuditSettings::default(),
            admin: AdminSettings::default(),
        }
    }
}

#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBypass {
    pub host: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: usize,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
    pub connect_timeout_secs: u64,
    pub tls_handshake_timeout_secs: u64,
    pub leaf_cache_capacity: usize,
    pub upstream_pool_max_idle_per_host: usize,
    pub upstream_pool_idle_timeout_secs: u64,
    pub upstream_h2_connections_per_host: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        let l = Limits::default();
        RawLimits {
            max_header_bytes: l.max_header_bytes,
            header_read_timeout_secs: l.header_read_timeout.as_secs(),
            idle_timeout_secs: l.idle_timeout.as_secs(),
            max_connections: l.max_connections,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
            h2_max_pending_accept_reset_streams: l.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: l.h2_max_local_error_reset_streams,
            connect_timeout_secs: l.connect_timeout.as_secs(),
            tls_handshake_timeout_secs: l.tls_handshake_timeout.as_secs(),
            leaf_cache_capacity: l.leaf_cache_capacity,
            upstream_pool_max_idle_per_host: l.upstream_pool_max_idle_per_host,
            upstream_pool_idle_timeout_secs: l.upstream_pool_idle_timeout.as_secs(),
            upstream_h2_connections_per_host: l.upstream_h2_connections_per_host,
        }
    }
}

/// A bypass entry: exact host, or `*.suffix` for subdomains.
#[derive(Clone, Debug, PartialEq)]
pub struct Bypass {
    pub pattern: String,
    pub reason: String,
}

impl Bypass {
    pub fn matches(&self, host: &str) -> bool {
        match self.pattern.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host == self.pattern,
        }
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub ca_dir: PathBuf,
    /// Detector rules, app catalog, policy and users (reloadable).
    pub sources: Sources,
    pub value_hmac_key_file: PathBuf,
    pub log_format: LogFormat,
    pub bypass: Vec<Bypass>,
    pub audit: AuditSettings,
    pub admin: AdminSettings,
}

/// Command-line overrides.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub resolve: Vec<String>,
    pub upstream_ca: Vec<PathBuf>,
    pub log_format: Option<String>,
    pub admin_listen: Option<String>,
    pub rules_dir: Option<PathBuf>,
    pub apps_dir: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
    pub users_file: Option<PathBuf>,
}

impl RawConfig {
    /// Parse TOML (missing keys take the shipped defaults).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<RawConfig> {
        toml::from_str(text).with_context(|| format!("{origin}: invalid configuration"))
    }

    /// Load `path`, or the embedded defaults when `None`. Relative paths in a file are taken
    /// relative to the file's directory (so a deployment directory is self-contained); those of
    /// the embedded defaults, relative to the working directory.
    pub fn load(path: Option<&Path>) -> anyhow::Result<RawConfig> {
        match path {
            None => Self::parse(DEFAULT_TOML, "portcullis.toml (embedded)"),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                let mut raw = Self::parse(&text, &p.display().to_string())?;
                if let Some(base) = p.parent().filter(|b| !b.as_os_str().is_empty()) {
                    raw.rebase(base);
                }
                Ok(raw)
            }
        }
    }

    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        let fix_str = |s: &mut String| {
            if !s.trim().is_empty() && Path::new(s.as_str()).is_relative() {
                *s = base.join(s.as_str()).display().to_string();
            }
        };
        fix(&mut self.ca_dir);
        fix(&mut self.value_hmac_key_file);
        fix(&mut self.audit.db);
        fix(&mut self.admin.token_file);
        self.upstream_ca.iter_mut().for_each(fix);
        fix_str(&mut self.rules_dir);
        fix_str(&mut self.apps_dir);
        fix_str(&mut self.policy_file);
        fix_str(&mut self.users_file);
    }

    /// Apply CLI overrides and validate.
    pub fn validate(mut self, o: Overrides) -> anyhow::Result<Config> {
        if let Some(l) = o.listen {
            self.listen = l;
        }
        self.resolve.extend(o.resolve);
        self.upstream_ca.extend(o.upstream_ca);
        if let Some(f) = o.log_format {
            self.log_format = f;
        }
        if let Some(a) = o.admin_listen {
            self.admin.listen = a;
        }
        let set = |field: &mut String, v: Option<PathBuf>| {
            if let Some(p) = v {
                *field = p.display().to_string();
            }
        };
        set(&mut self.rules_dir, o.rules_dir);
        set(&mut self.apps_dir, o.apps_dir);
        set(&mut self.policy_file, o.policy_file);
        set(&mut self.users_file, o.users_file);

        let listen: SocketAddr = self.listen.parse().with_context(|| format!("listen: `{}` is not an address:port", self.listen))?;
        let allow_clients = self
            .allow_clients
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("allow_clients: `{s}` is not a CIDR"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let resolve = self
            .resolve
            .iter()
            .map(|s| s.parse::<ResolveOverride>().map_err(|e| anyhow::anyhow!("resolve: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut upstream_roots = Vec::new();
        for path in &self.upstream_ca {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .with_context(|| format!("upstream_ca: cannot read {}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("upstream_ca: {} is not PEM certificates", path.display()))?;
            if certs.is_empty() {
                bail!("upstream_ca: {} holds no certificate", path.display());
            }
            upstream_roots.extend(certs);
        }
        let log_format = match self.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format: `{other}` must be \"text\" or \"json\""),
        };
        self.audit.validate().context("[audit]")?;
        if !self.admin.listen.trim().is_empty() {
            let admin: SocketAddr =
                self.admin.listen.parse().with_context(|| format!("[admin] listen: `{}` is not an address:port", self.admin.listen))?;
            if !admin.ip().is_loopback() {
                bail!("[admin] listen: `{admin}` is not a loopback address; the admin API is for the gateway host only");
            }
        }
        let mut bypass = Vec::new();
        for b in &self.bypass {
            let pattern = b.host.trim().trim_end_matches('.').to_ascii_lowercase();
            if pattern.is_empty() || pattern.contains('/') || (pattern.contains('*') && !pattern.starts_with("*.")) {
                bail!("bypass: `{}` must be a host name or *.domain", b.host);
            }
            let reason = if b.reason.trim().is_empty() { format!("on the bypass list ({pattern})") } else { b.reason.clone() };
            bypass.push(Bypass { pattern, reason });
        }
        let l = &self.limits;
        let limits = Limits {
            max_header_bytes: l.max_header_bytes,
            header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            max_connections: l.max_connections,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
            h2_max_pending_accept_reset_streams: l.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: l.h2_max_local_error_reset_streams,
            connect_timeout: Duration::from_secs(l.connect_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(l.tls_handshake_timeout_secs),
            leaf_cache_capacity: l.leaf_cache_capacity,
            upstream_pool_max_idle_per_host: l.upstream_pool_max_idle_per_host,
            upstream_pool_idle_timeout: Duration::from_secs(l.upstream_pool_idle_timeout_secs),
            upstream_h2_connections_per_host: l.upstream_h2_connections_per_host,
        };
        let proxy = ProxyConfig { listen, allow_clients, resolve, upstream_roots, limits };
        proxy.validate()?;
        let opt = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let sources = Sources {
            rules_dir: opt(&self.rules_dir),
            apps_dir: opt(&self.apps_dir),
            policy_file: opt(&self.policy_file),
            users_file: opt(&self.users_file),
        };
        Ok(Config {
            proxy,
            ca_dir: self.ca_dir,
            sources,
            value_hmac_key_file: self.value_hmac_key_file,
            log_format,
            bypass,
            audit: self.audit,
            admin: self.admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_is_the_default() {
        assert_eq!(RawConfig::parse(DEFAULT_TOML, "embedded").unwrap(), RawConfig::default());
        let c = RawConfig::default().validate(Overrides::default()).unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn partial_file_and_overrides() {
        let raw = RawConfig::parse("listen = \"0.0.0.0:3128\"\nallow_clients = [\"10.0.0.0/8\"]\n[limits]\nidle_timeout_secs = 5\n", "t")
            .unwrap();
        let c = raw.validate(Overrides { resolve: vec!["a.test:443:127.0.0.1".into()], ..Default::default() }).unwrap();
        assert_eq!(c.proxy.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.proxy.limits.max_connections, Limits::default().max_connections);
        assert_eq!(c.proxy.resolve.len(), 1);
    }

    #[test]
    fn refusals() {
        let open = RawConfig::parse("listen = \"0.0.0.0:3128\"", "t").unwrap();
        assert!(open.validate(Overrides::default()).is_err());
        assert!(RawConfig::parse("lisen = \"x\"", "t").is_err(), "unknown keys are errors");
        let bad = RawConfig::parse("log_format = \"xml\"", "t").unwrap();
        assert!(bad.validate(Overrides::default()).is_err());
        let wide_admin = RawConfig::parse("[admin]\nlisten = \"0.0.0.0:9090\"", "t").unwrap();
        assert!(wide_admin.validate(Overrides::default()).is_err(), "admin API stays on loopback");
        let no_lanes = RawConfig::parse("[limits]\nupstream_h2_connections_per_host = 0", "t").unwrap();
        let err = no_lanes.validate(Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("upstream_h2_connections_per_host"), "{err}");
        let lanes = RawConfig::parse("[limits]\nupstream_h2_connections_per_host = 8", "t").unwrap();
        assert_eq!(lanes.validate(Overrides::default()).unwrap().proxy.limits.upstream_h2_connections_per_host, 8);
    }

    #[test]
    fn relative_paths_in_a_file_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, "ca_dir = \"ca\"\npolicy_file = \"policy.toml\"\n[audit]\ndb = \"/var/x.db\"\n").unwrap();
        let raw = RawConfig::load(Some(&file)).unwrap();
        assert_eq!(raw.ca_dir, dir.path().join("ca"));
        assert_eq!(raw.policy_file, dir.path().join("policy.toml").display().to_string());
        assert_eq!(raw.audit.db, PathBuf::from("/var/x.db"));
        assert_eq!(raw.admin.token_file, dir.path().join("data/admin.token"));
    }

    #[test]
    fn bypass_patterns() {
        let b = Bypass { pattern: "*.bank.example".into(), reason: String::new() };
        assert!(b.matches("www.bank.example"));
        assert!(!b.matches("bank.example"));
        assert!(!b.matches("evilbank.example"));
        let b = Bypass { pattern: "bank.example".into(), reason: String::new() };
        assert!(b.matches("bank.example") && !b.matches("www.bank.example"));
    }
}
