//! Where an upstream request may go: DNS with operator overrides, and the SSRF guard.
//!
//! A forward proxy sits inside the network perimeter, so a client naming `127.0.0.1:6379`,
//! `169.254.169.254` (cloud metadata) or a DNS name that resolves there could reach services that
//! were never meant to face users. Every destination is checked *after* resolution, on the
//! addresses actually dialled, so DNS rebinding does not get around it. `--resolve` overrides are
//! the operator's own configuration and are honoured as given.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::ResolveOverride;

/// Why an address is refused as an upstream destination, or `None` if it may be dialled.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if o[0] == 0 {
        Some("unspecified address")
    } else if ip.is_link_local() {
        Some("link-local address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast/broadcast address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_unspecified() {
        Some("unspecified address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique-local address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64: check the embedded IPv4 address.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        forbidden_v4(v4)
    } else {
        None
    }
}

/// Errors resolving an upstream destination.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{host} is a {reason}; the proxy does not connect there")]
    Forbidden { host: String, reason: &'static str },
    #[error("cannot resolve {host}: {source}")]
    Dns { host: String, source: std::io::Error },
    #[error("{host} resolves only to forbidden addresses ({reason})")]
    AllForbidden { host: String, reason: &'static str },
}

/// DNS with `--resolve` overrides and the SSRF guard.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    overrides: HashMap<(String, u16), Vec<IpAddr>>,
}

impl Resolver {
    pub fn new(overrides: &[ResolveOverride]) -> Self {
        let mut map: HashMap<(String, u16), Vec<IpAddr>> = HashMap::new();
        for o in overrides {
            map.entry((o.host.clone(), o.port)).or_default().push(o.addr);
        }
        Resolver { overrides: map }
    }

    /// Whether `host:port` is pinned by the operator.
    pub fn is_overridden(&self, host: &str, port: u16) -> bool {
        self.overrides.contains_key(&(normalise(host), port))
    }

    /// Check a host that is an IP literal without resolving: `Err` if it is forbidden and not
    /// overridden. Names are `Ok` (they are checked when resolved).
    pub fn precheck(&self, host: &str, port: u16) -> Result<(), ResolveError> {
        if self.is_overridden(host, port) {
            return Ok(());
        }
        match normalise(host).parse::<IpAddr>().ok().and_then(forbidden_reason) {
            Some(reason) => Err(ResolveError::Forbidden { host: host.to_string(), reason }),
            None => Ok(()),
        }
    }

    /// Addresses to dial for `host:port`, forbidden ones removed (unless overridden).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let name = normalise(host);
        if let Some(addrs) = self.overrides.get(&(name.clone(), port)) {
            return Ok(addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            if let Some(reason) = forbidden_reason(ip) {
                return Err(ResolveError::Forbidden { host: host.to_string(), reason });
            }
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found =
            tokio::net::lookup_host((name.as_str(), port)).await.map_err(|source| ResolveError::Dns { host: host.to_string(), source })?;
        let mut ok = Vec::new();
        let mut last_reason = None;
        for addr in found {
            match forbidden_reason(addr.ip()) {
                Some(reason) => last_reason = Some(reason),
                None => ok.push(addr),
            }
        }
        match (ok.is_empty(), last_reason) {
            (true, Some(reason)) => Err(ResolveError::AllForbidden { host: host.to_string(), reason }),
            (true, None) => {
                Err(ResolveError::Dns { host: host.to_string(), source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses") })
            }
            (false, _) => Ok(ok),
        }
    }
}

/// Lower case, no trailing dot, no IPv6 brackets.
pub fn normalise(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn ssrf_table() {
        for s in [
            "127.0.0.1", "127.9.9.9", "0.0.0.0", "169.254.169.254", "169.254.1.1", "::1", "::", "fd00:ec2::254", "fe80::1", "fc00::1",
            "fdff::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "224.0.0.1", "255.255.255.255", "100.100.100.200",
        ] {
            assert!(bad(s), "{s} must be refused");
        }
        for s in ["93.184.216.34", "10.1.2.3", "192.168.1.10", "2606:4700::1", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(!bad(s), "{s} must be allowed");
        }
    }

    #[tokio::test]
    async fn overrides_win_and_literals_are_checked() {
        let r = Resolver::new(&["Origin.Test:443:127.0.0.1".parse().unwrap()]);
        assert_eq!(r.resolve("origin.test.", 443).await.unwrap(), vec!["127.0.0.1:443".parse().unwrap()]);
        assert!(matches!(r.resolve("127.0.0.1", 443).await, Err(ResolveError::Forbidden { .. })));
        assert!(matches!(r.resolve("[::1]", 80).await, Err(ResolveError::Forbidden { .. })));
        assert!(r.precheck("169.254.169.254", 80).is_err());
        assert!(r.precheck("example.com", 80).is_ok());
        // `localhost` resolves to loopback only: refused after resolution.
        assert!(matches!(r.resolve("localhost", 80).await, Err(ResolveError::AllForbidden { .. })));
        // An override for the literal itself is honoured.
        let r = Resolver::new(&["127.0.0.1:8443:127.0.0.1".parse().unwrap()]);
        assert!(r.resolve("127.0.0.1", 8443).await.is_ok());
    }
}
