#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
//! The CA as clients see it: files on disk, real TLS handshakes against minted leaves, the
//! cache under a concurrent burst, and ClientHello peeking on bytes a real client produced.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_ca::{CertificateAuthority, LeafCache, peek_client_hello};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_config(ca: &CertificateAuthority, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(portcullis_ca::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Handshakes a real rustls client (trusting only the CA) with a server using the cache's
/// config over loopback TCP; returns the negotiated ALPN.
async fn handshake(cache: &LeafCache, host: &str, client_alpn: &[&[u8]]) -> Result<Option<Vec<u8>>, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = cache.server_config(host, &[b"h2", b"http/1.1"]).await.map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await.ok()?;
        tls.write_all(b"hello").await.ok()?;
        tls.shutdown().await.ok()
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(cache.authority(), client_alpn));
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
    assert_eq!(got, b"hello");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let _ = server.await;
    Ok(alpn)
}

#[test]
fn first_run_creates_ca_with_private_key_and_second_run_loads_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let created = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "CA key must be private");
    let pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(created.cert_pem(), pem);
    let loaded = CertificateAuthority::load_or_create(dir.path()).unwrap();
    assert_eq!(loaded.cert_der(), created.cert_der(), "the same CA is loaded, not a new one");
    assert!(!format!("{loaded:?}").contains("PRIVATE"), "Debug must not print the key");
}

#[test]
fn refuses_a_group_readable_key_and_half_present_ca() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    let key = dir.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::remove_file(&key).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err().to_string();
    assert!(err.contains("exists but"), "{err}");
}

#[test]
fn refuses_a_certificate_that_does_not_match_the_key() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(a.path()).unwrap();
    CertificateAuthority::load_or_create(b.path()).unwrap();
    std::fs::copy(b.path().join("ca.pem"), a.path().join("ca.pem")).unwrap();
    let err = CertificateAuthority::load_or_create(a.path()).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");
}

#[test]
fn minted_leaves_carry_the_right_san_and_validity_window() {
    let ca = CertificateAuthority::create("test CA").unwrap();
    for (host, want_ip) in [
        ("mail.example.com", None),
        ("10.1.2.3", Some(vec![10u8, 1, 2, 3])),
        ("[::1]", Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]).to_string().parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec())),
    ] {
        let leaf = ca.mint(host).unwrap();
        assert_eq!(leaf.chain.len(), 2);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.chain[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        assert_eq!(names.len(), 1);
        match (&names[0], &want_ip) {
            (x509_parser::extensions::GeneralName::DNSName(n), None) => assert_eq!(*n, host),
            (x509_parser::extensions::GeneralName::IPAddress(ip), Some(want)) => assert_eq!(ip.to_vec(), *want),
            (other, _) => panic!("{host}: unexpected SAN {other:?}"),
        }
        let now = time::OffsetDateTime::now_utc();
        assert!(cert.validity().not_before.to_datetime() < now - time::Duration::hours(1), "starts in the past");
        assert!(cert.validity().not_after.to_datetime() > now + time::Duration::days(7));
        assert!(!cert.is_ca());
    }
}

#[test]
fn never_mints_for_garbage_or_wildcards() {
    let ca = CertificateAuthority::create("test CA").unwrap();
    for host in ["", "*.example.com", "exa mple.com", "-bad.example", "a..b", &"x".repeat(300)] {
        assert!(ca.mint(host).is_err(), "{host:?} must be refused");
    }
}

#[tokio::test]
async fn real_clients_accept_minted_leaves_for_names_and_ips_and_negotiate_alpn() {
    let cache = LeafCache::new(Arc::new(CertificateAuthority::create("test CA").unwrap()), 100).unwrap();
    assert_eq!(handshake(&cache, "drive.example.com", &[b"h2", b"http/1.1"]).await.unwrap(), Some(b"h2".to_vec()));
    assert_eq!(handshake(&cache, "127.0.0.1", &[b"http/1.1"]).await.unwrap(), Some(b"http/1.1".to_vec()));
}

#[tokio::test]
async fn a_leaf_for_one_host_is_rejected_for_another() {
    let ca = Arc::new(CertificateAuthority::create("test CA").unwrap());
    let cache = LeafCache::new(Arc::clone(&ca), 100).unwrap();
    // Serve a.example's leaf to a client expecting b.example.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = cache.server_config("a.example", &[]).await.unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await;
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = connector.connect(ServerName::try_from("b.example").unwrap(), tcp).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_connections_mints_once() {
    let cache = Arc::new(LeafCache::new(Arc::new(CertificateAuthority::create("test CA").unwrap()), 100).unwrap());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.server_config("new.example.org", &[b"h2"]).await.unwrap() })
        })
        .collect();
    let mut configs = Vec::new();
    for t in tasks {
        configs.push(t.await.unwrap());
    }
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])), "everyone shares one config");
    let stats = cache.stats();
    assert_eq!(stats.mints, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.misses, 100);
    assert_eq!(stats.entries, 1);
    // Case and trailing dot are the same host.
    cache.server_config("NEW.example.org.", &[b"h2"]).await.unwrap();
    assert_eq!(cache.stats().mints, 1);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let cache = LeafCache::new(Arc::new(CertificateAuthority::create("test CA").unwrap()), 3).unwrap();
    for i in 0..10 {
        cache.server_config(&format!("h{i}.example"), &[]).await.unwrap();
    }
    assert_eq!(cache.stats().entries, 3);
    assert_eq!(cache.stats().mints, 10);
}

/// The bytes a real rustls client sends first.
fn real_client_hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let ca = CertificateAuthority::create("test CA").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(&ca, alpn), ServerName::try_from(sni.to_string()).unwrap()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn peek_reads_sni_and_alpn_and_asks_for_more_on_every_prefix() {
    let hello = real_client_hello("web.whatsapp.com", &[b"h2", b"http/1.1"]);
    for end in 0..hello.len() {
        assert_eq!(peek_client_hello(&hello[..end]).unwrap(), None, "prefix of {end} bytes");
    }
    let info = peek_client_hello(&hello).unwrap().unwrap();
    assert_eq!(info.sni.as_deref(), Some("web.whatsapp.com"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn peek_recognises_what_is_not_tls() {
    assert!(peek_client_hello(b"GET / HTTP/1.1\r\n").is_err());
    assert!(peek_client_hello(b"\x16\x01garbage").is_err());
    assert!(peek_client_hello(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00").is_err(), "a ServerHello is not a ClientHello");
}
