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
use portcullis_proxy::{Limits, ProxyConfig, ResolveOverride};
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
    pub upstream_ca: Vec<PathBuf>,
    pub resolve: Vec<String>,
    pub opaque_tunnels: String,
    pub block_unscannable: bool,
    pub bypass: Vec<RawBypass>,
    pub limits: RawLimits,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:8080".into(),
            allow_clients: Vec::new(),
            ca_dir: PathBuf::from("certs"),
            rules_dir: String::new(),
            upstream_ca: Vec::new(),
            resolve: Vec::new(),
            opaque_tunnels: "block".into(),
            block_unscannable: false,
            bypass: Vec::new(),
            limits: RawLimits::default(),
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
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.',
            None => host == self.pattern,
        }
    }
}

/// What to do with non-TLS bytes in a CONNECT tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpaqueMode {
    Block,
    Tunnel,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub ca_dir: PathBuf,
    pub rules_dir: Option<PathBuf>,
    pub bypass: Vec<Bypass>,
    pub opaque: OpaqueMode,
    pub block_unscannable: bool,
}

/// Command-line overrides.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub resolve: Vec<String>,
    pub upstream_ca: Vec<PathBuf>,
}

impl RawConfig {
    /// Parse TOML (missing keys take the shipped defaults).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<RawConfig> {
        toml::from_str(text).with_context(|| format!("{origin}: invalid configuration"))
    }

    /// Load `path`, or the embedded defaults when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<RawConfig> {
        match path {
            None => Self::parse(DEFAULT_TOML, "portcullis.toml (embedded)"),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Apply CLI overrides and validate.
    pub fn validate(mut self, o: Overrides) -> anyhow::Result<Config> {
        if let Some(l) = o.listen {
            self.listen = l;
        }
        self.resolve.extend(o.resolve);
        self.upstream_ca.extend(o.upstream_ca);

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
        let opaque = match self.opaque_tunnels.as_str() {
            "block" => OpaqueMode::Block,
            "tunnel" => OpaqueMode::Tunnel,
            other => bail!("opaque_tunnels: `{other}` must be \"block\" or \"tunnel\""),
        };
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
        };
        let proxy = ProxyConfig { listen, allow_clients, resolve, upstream_roots, limits };
        proxy.validate()?;
        let rules_dir = (!self.rules_dir.trim().is_empty()).then(|| PathBuf::from(&self.rules_dir));
        Ok(Config { proxy, ca_dir: self.ca_dir, rules_dir, bypass, opaque, block_unscannable: self.block_unscannable })
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
        let raw = RawConfig::parse("listen = \"0.0.0.0:3128\"\nallow_clients = [\"10.0.0.0/8\"]\n[limits]\nidle_timeout_secs = 5\n", "t").unwrap();
        let c = raw
            .validate(Overrides { resolve: vec!["a.test:443:127.0.0.1".into()], ..Default::default() })
            .unwrap();
        assert_eq!(c.proxy.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.proxy.limits.max_connections, Limits::default().max_connections);
        assert_eq!(c.proxy.resolve.len(), 1);
    }

    #[test]
    fn refusals() {
        let open = RawConfig::parse("listen = \"0.0.0.0:3128\"", "t").unwrap();
        assert!(open.validate(Overrides::default()).is_err());
        assert!(RawConfig::parse("lisen = \"x\"", "t").is_err(), "unknown keys are errors");
        let bad = RawConfig::parse("opaque_tunnels = \"maybe\"", "t").unwrap();
        assert!(bad.validate(Overrides::default()).is_err());
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
