//! Host names as the proxy sees them (`Host:` headers, CONNECT authorities, SNI) and the
//! patterns the catalog matches them against.
//!
//! Why normalise: `MAIL.Google.com.`, `mail.google.com:443` and `mail.google.com` are one
//! host, and so are `bücher.example` and `xn--bcher-kva.example`. A catalog that compared raw
//! strings would be trivially bypassed by a trailing dot or a capital letter.
//!
//! Why two pattern kinds only (exact and subdomain suffix): a pattern must never claim a whole
//! registrable domain that hosts unrelated services (`qq.com` serves WeChat, QQ Mail and news),
//! and a suffix pattern `*.example.com` must never match `evil-example.com` or
//! `example.com.evil.net`: suffixes are compared on label boundaries.

use std::net::IpAddr;

/// A host normalised for matching: lowercase ASCII (IDNA A-labels), no port, no trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormalHost {
    /// A DNS name.
    Name(String),
    /// An IP literal (`10.0.0.1`, `[2001:db8::1]`).
    Ip(IpAddr),
}

/// Why a host string is not a usable host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host name {host:?}: {reason}")]
pub struct HostError {
    /// The input as given.
    pub host: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Normalise a host as found in a request: strips an optional `:port`, brackets around IPv6
/// literals and one trailing dot; lowercases; converts Unicode labels to IDNA A-labels.
pub fn normalize_host(raw: &str) -> Result<NormalHost, HostError> {
    let err = |reason| HostError { host: raw.to_owned(), reason };
    let trimmed = raw.trim();
    // IPv6 literal, possibly with a port: "[::1]:443".
    if let Some(rest) = trimmed.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(err("unclosed '[' in IPv6 literal"));
        };
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.starts_with(':')) {
            return Err(err("garbage after IPv6 literal"));
        }
        return rest[..end].parse::<IpAddr>().map(NormalHost::Ip).map_err(|_| err("not an IPv6 address"));
    }
    // A bare IPv6 address has several colons and no port.
    if trimmed.matches(':').count() > 1 {
        return trimmed.parse::<IpAddr>().map(NormalHost::Ip).map_err(|_| err("not an IPv6 address"));
    }
    let without_port = match trimmed.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        Some(_) => return Err(err("port is not a number")),
        None => trimmed,
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.is_empty() {
        return Err(err("empty host"));
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(NormalHost::Ip(ip));
    }
    // Fast path: lowercase letters, digits, '-', '_' and '.' with no empty or `xn--` label is
    // already its own IDNA form (UTS 46 maps such labels to themselves), so skip the IDNA
    // machinery, which dominates the cost of classifying a request.
    let lower = name.to_ascii_lowercase();
    if lower.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.')
        && lower.split('.').all(|l| !l.is_empty() && !l.starts_with("xn--"))
    {
        return Ok(NormalHost::Name(lower));
    }
    let ascii = idna::domain_to_ascii(name).map_err(|_| err("not a valid IDNA domain name"))?;
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(err("empty label"));
    }
    if !ascii.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return Err(err("characters not allowed in a host name"));
    }
    Ok(NormalHost::Name(ascii))
}

/// A catalog host pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `mail.google.com`: exactly this host.
    Exact(String),
    /// `*.whatsapp.net`: any host strictly below this domain (not the domain itself).
    Suffix(String),
}

impl HostPattern {
    /// Parse `name` or `*.name`; the name is normalised like a request host.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let (wild, name) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if name.contains('*') {
            return Err(format!("{raw:?}: '*' is only allowed as a leading '*.' label"));
        }
        if name.contains(':') || name.contains('/') {
            return Err(format!("{raw:?}: a host pattern has no port or path"));
        }
        let normal = match normalize_host(name) {
            Ok(NormalHost::Name(n)) => n,
            Ok(NormalHost::Ip(_)) => {
                return Err(format!("{raw:?}: IP addresses go in `ips`, as CIDR ranges"));
            }
            Err(e) => return Err(e.to_string()),
        };
        if wild {
            if !normal.contains('.') {
                return Err(format!("{raw:?}: a suffix pattern must have at least two labels"));
            }
            if SHARED_DOMAINS.contains(&normal.as_str()) {
                return Err(format!("{raw:?}: {normal} hosts several unrelated services; list the service's own hosts instead"));
            }
            Ok(HostPattern::Suffix(normal))
        } else {
            Ok(HostPattern::Exact(normal))
        }
    }

    /// The domain part of the pattern (without `*.`).
    pub fn domain(&self) -> &str {
        match self {
            HostPattern::Exact(d) | HostPattern::Suffix(d) => d,
        }
    }

    /// Does the normalised host `host` match? Suffixes match on label boundaries only.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(d) => host == d,
            HostPattern::Suffix(d) => is_strict_subdomain(host, d),
        }
    }

    /// Specificity, for "longest match wins": more characters win, and an exact pattern beats
    /// a suffix pattern of the same domain.
    pub fn specificity(&self) -> usize {
        match self {
            HostPattern::Exact(d) => d.len() * 2 + 1,
            HostPattern::Suffix(d) => d.len() * 2,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(d) => f.write_str(d),
            HostPattern::Suffix(d) => write!(f, "*.{d}"),
        }
    }
}

/// `host` is below `domain` on a label boundary (`a.b.example` below `example`, but not
/// `evil-example`).
pub fn is_strict_subdomain(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1 && host.ends_with(domain) && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

/// Domains that host several unrelated services: a suffix pattern over one of them would
/// classify unrelated traffic (qq.com serves WeChat, QQ Mail and news; google.com serves
/// Search as well as Gmail and Drive). The catalog must list the service's own hosts.
pub const SHARED_DOMAINS: &[&str] = &[
    "qq.com", "google.com", "googleapis.com", "googleusercontent.com", "gstatic.com", "microsoft.com", "live.com", "office.com",
    "yahoo.com", "apple.com", "163.com", "126.com", "baidu.com", "amazonaws.com", "cloudfront.net", "akamaihd.net", "akamaized.net",
    "azureedge.net", "windows.net", "facebook.com", "fbcdn.net", "tencent.com", "cloudflare.com", "fastly.net",
];

/// Parent domains of `host`, longest first: `a.b.c` → `b.c`, `c`.
pub(crate) fn parents(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NormalHost {
        NormalHost::Name(s.to_owned())
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_host("MAIL.Google.COM.").unwrap(), name("mail.google.com"));
        assert_eq!(normalize_host("mail.google.com:443").unwrap(), name("mail.google.com"));
        assert_eq!(normalize_host("mail.google.com.:443").unwrap(), name("mail.google.com"));
        assert_eq!(normalize_host("bücher.example").unwrap(), name("xn--bcher-kva.example"));
        assert_eq!(normalize_host("BÜCHER.example").unwrap(), name("xn--bcher-kva.example"));
        assert_eq!(normalize_host("149.154.167.51:443").unwrap(), NormalHost::Ip("149.154.167.51".parse().unwrap()));
        assert_eq!(normalize_host("[2001:67c:4e8:f004::9]:443").unwrap(), NormalHost::Ip("2001:67c:4e8:f004::9".parse().unwrap()));
        assert_eq!(normalize_host("2001:db8::1").unwrap(), NormalHost::Ip("2001:db8::1".parse().unwrap()));
        assert!(normalize_host("").is_err());
        assert!(normalize_host("a..b").is_err());
        assert!(normalize_host("host:http").is_err());
        assert!(normalize_host("[::1").is_err());
        assert!(normalize_host("exa mple.com").is_err());
    }

    #[test]
    fn fast_path_agrees_with_idna() {
        for h in ["mail.google.com", "a-b.c_d.example", "MiXeD.Example", "x1.y2", "xn--bcher-kva.example", "_dmarc.example"] {
            let fast = normalize_host(h).unwrap();
            let slow = idna::domain_to_ascii(h).map(NormalHost::Name);
            if let Ok(slow) = slow {
                assert_eq!(fast, slow, "{h}");
            }
        }
        assert!(normalize_host("xn--zz.example").is_err(), "invalid punycode goes through IDNA and fails");
    }

    #[test]
    fn suffix_on_label_boundary() {
        let p = HostPattern::parse("*.dropbox.com").unwrap();
        assert!(p.matches("www.dropbox.com"));
        assert!(p.matches("a.b.dropbox.com"));
        assert!(!p.matches("dropbox.com"));
        assert!(!p.matches("evil-dropbox.com"));
        assert!(!p.matches("dropbox.com.evil.example"));
        assert!(!p.matches("xdropbox.com"));
    }

    #[test]
    fn patterns_refused() {
        assert!(HostPattern::parse("*.qq.com").is_err());
        assert!(HostPattern::parse("*.com").is_err());
        assert!(HostPattern::parse("mail.*.com").is_err());
        assert!(HostPattern::parse("10.0.0.1").is_err());
        assert!(HostPattern::parse("a.com:443").is_err());
        assert_eq!(HostPattern::parse("wx.qq.com").unwrap(), HostPattern::Exact("wx.qq.com".into()));
    }

    #[test]
    fn parents_longest_first() {
        let v: Vec<_> = parents("a.b.c").collect();
        assert_eq!(v, ["b.c", "c"]);
    }
}
