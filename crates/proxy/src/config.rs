//! Validated proxy settings.
//!
//! The binary turns its TOML/CLI input into a [`ProxyConfig`] and calls [`ProxyConfig::validate`];
//! the proxy only ever runs with a validated one. Every limit has a safe default so that a config
//! file naming none of them is still protected against slowloris, connection floods and HTTP/2
//! rapid reset.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use rustls_pki_types::CertificateDer;

/// A `--resolve HOST:PORT:ADDR` override (curl's syntax). Overrides are the operator's own
/// configuration: the SSRF guard does not apply to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOverride {
    /// Lower-case host name (or IP literal without brackets).
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for ResolveOverride {
    type Err = String;
    /// Parse `HOST:PORT:ADDR`; ADDR may be an IPv6 literal with or without brackets.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (it.next(), it.next(), it.next()) else {
            return Err(format!("`{s}`: expected HOST:PORT:ADDR"));
        };
        if host.is_empty() {
            return Err(format!("`{s}`: empty host"));
        }
        let port: u16 = port.parse().map_err(|_| format!("`{s}`: bad port `{port}`"))?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}`: bad address `{addr}`"))?;
        Ok(ResolveOverride { host: host.trim_end_matches('.').to_ascii_lowercase(), port, addr })
    }
}

/// Limits and timeouts. Defaults are safe for an inline enterprise gateway.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head (request line + headers) accepted, HTTP/1.1 and HTTP/2.
    pub max_header_bytes: usize,
    /// Time allowed for a client to send a complete request head (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent client connections; more are refused at accept.
    pub max_connections: usize,
    /// HTTP/2 concurrent streams per client connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 rapid-reset protection: streams reset by the client before we accepted them.
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams we reset because of client protocol errors, before the connection is closed.
    pub h2_max_local_error_reset_streams: usize,
    /// TCP connect to an upstream.
    pub connect_timeout: Duration,
    /// TLS handshake (client side and upstream side) and the wait for the ClientHello.
    pub tls_handshake_timeout: Duration,
    /// Leaf certificates kept in the cache.
    pub leaf_cache_capacity: usize,
    /// Idle upstream connections kept per host.
    pub upstream_pool_max_idle_per_host: usize,
    /// HTTP/2 connections per upstream host: client connections are spread over this many
    /// lanes, each with its own pool, so requests to one origin are not all multiplexed onto a
    /// single connection (one TCP flow, one task, one origin stream limit for every user).
    pub upstream_h2_connections_per_host: usize,
    /// How long an idle upstream connection is kept.
    pub upstream_pool_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 8192,
            h2_max_concurrent_streams: 128,
            h2_max_pending_accept_reset_streams: 32,
            h2_max_local_error_reset_streams: 256,
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            leaf_cache_capacity: 4096,
            upstream_pool_max_idle_per_host: 32,
            upstream_h2_connections_per_host: 4,
            upstream_pool_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything the proxy needs to run.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Clients allowed to connect, besides loopback (which is always allowed). Required when
    /// listening on a non-loopback address: Portcullis is never an open proxy.
    pub allow_clients: Vec<IpNet>,
    pub resolve: Vec<ResolveOverride>,
    /// Extra trusted roots for upstream servers (internal CAs), on top of the webpki roots.
    pub upstream_roots: Vec<CertificateDer<'static>>,
    pub limits: Limits,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_clients: Vec::new(),
            resolve: Vec::new(),
            upstream_roots: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// A configuration that must not run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("listening on {0} (not loopback) needs `allow_clients` (client CIDRs); refusing to run an open proxy")]
    OpenProxy(SocketAddr),
    #[error("limit `{0}` must be greater than zero")]
    ZeroLimit(&'static str),
}

impl ProxyConfig {
    /// Check the invariants the proxy relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.allow_clients.is_empty() {
            return Err(ConfigError::OpenProxy(self.listen));
        }
        let l = &self.limits;
        for (name, zero) in [
            ("max_header_bytes", l.max_header_bytes == 0),
            ("header_read_timeout", l.header_read_timeout.is_zero()),
            ("idle_timeout", l.idle_timeout.is_zero()),
            ("max_connections", l.max_connections == 0),
            ("h2_max_concurrent_streams", l.h2_max_concurrent_streams == 0),
            ("connect_timeout", l.connect_timeout.is_zero()),
            ("tls_handshake_timeout", l.tls_handshake_timeout.is_zero()),
            ("leaf_cache_capacity", l.leaf_cache_capacity == 0),
            ("upstream_h2_connections_per_host", l.upstream_h2_connections_per_host == 0),
        ] {
            if zero {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        Ok(())
    }

    /// Whether a client address may use the proxy.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        let ip = crate::addr::canonical(ip);
        ip.is_loopback() || self.allow_clients.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_syntax() {
        let r: ResolveOverride = "Origin.Test:443:127.0.0.1".parse().unwrap();
        assert_eq!(r, ResolveOverride { host: "origin.test".into(), port: 443, addr: [127, 0, 0, 1].into() });
        let r: ResolveOverride = "h:1:[::1]".parse().unwrap();
        assert_eq!(r.addr, "::1".parse::<IpAddr>().unwrap());
        assert!("h:1".parse::<ResolveOverride>().is_err());
        assert!("h:x:1.2.3.4".parse::<ResolveOverride>().is_err());
        assert!(":1:1.2.3.4".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn not_an_open_proxy() {
        let mut c = ProxyConfig { listen: "0.0.0.0:8080".parse().unwrap(), ..Default::default() };
        assert!(matches!(c.validate(), Err(ConfigError::OpenProxy(_))));
        c.allow_clients.push("10.0.0.0/8".parse().unwrap());
        c.validate().unwrap();
        assert!(c.client_allowed("10.1.2.3".parse().unwrap()));
        assert!(c.client_allowed("127.0.0.1".parse().unwrap()));
        assert!(c.client_allowed("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.client_allowed("192.168.1.1".parse().unwrap()));
        ProxyConfig::default().validate().unwrap();
    }
}
