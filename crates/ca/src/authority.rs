//! Creating, loading and using the organisation CA.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::CaError;

/// How long a minted leaf is valid. Short, so a leaked leaf key is worth little, and well under
/// the 398 days browsers accept.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Leaves start this far in the past so clients with a slightly slow clock accept them.
const LEAF_BACKDATE: Duration = Duration::from_secs(24 * 3600);
/// The CA itself is valid for ten years from creation.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca.key";

/// The organisation's interception CA: its certificate and (private) signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for CertificateAuthority {
    // Never print the key, not even by accident in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// A freshly minted leaf: the chain to serve (leaf, then CA) and the leaf's own private key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl CertificateAuthority {
    /// Loads `dir/ca.pem` + `dir/ca.key`, or creates both when neither exists (first run).
    /// Exactly one of the two existing is an error: silently replacing a CA that browsers
    /// already trust would break every client.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (cert.exists(), key.exists()) {
            (true, true) => Self::load(&cert, &key),
            (false, false) => {
                let ca = Self::create("Portcullis Interception CA")?;
                ca.save(dir)?;
                tracing::info!(cert = %cert.display(), "created a new interception CA");
                Ok(ca)
            }
            _ => Err(CaError::Incomplete { cert, key }),
        }
    }

    /// Creates a new CA (ECDSA P-256) in memory. Use [`save`](Self::save) to persist it.
    pub fn create(common_name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Portcullis");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let not_after = params.not_after;
        let cert_der = cert.der().clone();
        Ok(Self { cert_pem: cert.pem(), cert_der, issuer: Issuer::new(params, key), not_after })
    }

    /// Loads an existing CA. The key file must not be readable by group or others.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        check_key_permissions(key_path)?;
        let cert_pem = fs::read_to_string(cert_path).map_err(|source| CaError::Io { path: cert_path.to_path_buf(), source })?;
        let key_pem = fs::read_to_string(key_path).map_err(|source| CaError::Io { path: key_path.to_path_buf(), source })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::BadKey { path: key_path.to_path_buf(), reason: e.to_string() })?;
        let bad_cert = |reason: String| CaError::BadCertificate { path: cert_path.to_path_buf(), reason };
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e: rustls_pki_types::pem::Error| bad_cert(e.to_string()))?;
        let cert_der: CertificateDer<'static> = der;
        let (_, parsed) = x509_parser_shim::parse(&cert_der).map_err(bad_cert)?;
        if !parsed.is_ca {
            return Err(bad_cert("it is not a CA certificate (basicConstraints CA:FALSE)".into()));
        }
        if parsed.public_key != key.subject_public_key_info() {
            return Err(bad_cert(format!("it does not belong to the key in {}", key_path.display())));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| bad_cert(e.to_string()))?;
        Ok(Self { cert_pem, cert_der, issuer, not_after: parsed.not_after })
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca.key` (0600, created with that mode so it is never
    /// readable by others, not even for an instant). Refuses to overwrite existing files.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        let io = |path: PathBuf| move |source| CaError::Io { path: path.clone(), source };
        fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let key_path = dir.join(KEY_FILE);
        write_new(&key_path, self.issuer.key().serialize_pem().as_bytes(), 0o600).map_err(io(key_path.clone()))?;
        let cert_path = dir.join(CERT_FILE);
        write_new(&cert_path, self.cert_pem.as_bytes(), 0o644).map_err(io(cert_path))?;
        Ok(())
    }

    /// The CA certificate in PEM form: what operators install in browsers and OS trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Mints a leaf for `host`: a DNS name (→ dNSName SAN) or an IP literal, with or without
    /// brackets (→ iPAddress SAN). Each leaf has its own fresh ECDSA P-256 key; the CA key only
    /// signs. Valid from a day ago for [`LEAF_VALIDITY`], never beyond the CA's own expiry.
    pub fn mint(&self, host: &str) -> Result<Leaf, CaError> {
        let san = subject_alt_name(host)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host_label(host));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// Parses the host a client asked for into the SAN a browser will check it against.
fn subject_alt_name(host: &str) -> Result<SanType, CaError> {
    let invalid = |reason: &str| CaError::InvalidHost { host: host.to_string(), reason: reason.to_string() };
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("length must be 1 to 253 characters"));
    }
    for label in name.split('.') {
        let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("not a valid DNS name"));
        }
        if label.contains('*') {
            return Err(invalid("wildcards are never minted"));
        }
    }
    let dns = name.try_into().map_err(|_| invalid("not a valid DNS name"))?;
    Ok(SanType::DnsName(dns))
}

fn host_label(host: &str) -> String {
    host.chars().take(64).collect()
}

fn random_serial() -> SerialNumber {
    // 16 random bytes with the top bit cleared so the DER integer stays positive.
    let mut bytes = [0u8; 16];
    // The key generator is the one CSPRNG we already depend on; a throwaway P-256 key's
    // public point is uniformly random enough for a serial, but ring's SystemRandom is direct.
    use rustls::crypto::ring::default_provider;
    let _ = default_provider().secure_random.fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(unix)]
fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new(path: &Path, contents: &[u8], _mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| CaError::Io { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), CaError> {
    Ok(())
}

/// The few facts we need from the CA certificate, via rcgen's x509-parser.
mod x509_parser_shim {
    use time::OffsetDateTime;
    pub struct Parsed {
        pub is_ca: bool,
        pub public_key: Vec<u8>,
        pub not_after: OffsetDateTime,
    }
    pub fn parse(der: &[u8]) -> Result<((), Parsed), String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        Ok(((), Parsed { is_ca, public_key: cert.public_key().raw.to_vec(), not_after: cert.validity().not_after.to_datetime() }))
    }
}
