use std::path::PathBuf;

/// Everything that can go wrong creating, loading or using the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a usable CA certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "{path}: the CA private key is readable by group or others (mode {mode:o}); \
         run `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{cert} exists but {key} does not (or the other way round); restore both or remove both")]
    Incomplete { cert: PathBuf, key: PathBuf },
    #[error("cannot mint a certificate for {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}
