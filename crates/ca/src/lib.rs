//! The interception certificate authority.
//!
//! Portcullis terminates TLS with the organisation's own CA: every intercepted host gets a leaf
//! certificate minted on first use and cached. This crate owns that and nothing else:
//!
//! - [`CertificateAuthority`]: create the CA on first run (`ca.pem` + `ca.key`, the key written
//!   with mode 0600 and never logged) or load it; mint leaves for host names and IP literals.
//! - [`LeafCache`]: a bounded, shared, single-flight cache of ready-to-use `rustls::ServerConfig`s,
//!   so a burst of 100 connections to a new host mints exactly once.
//! - [`peek_client_hello`]: read SNI and ALPN from the first bytes of a connection *without*
//!   consuming them, so the proxy can decide (intercept, bypass, block, opaque) before any
//!   handshake. It drives rustls' own `Acceptor` over a copy of the bytes instead of a
//!   hand-written TLS parser.
//!
//! What it does not do: it never verifies or touches upstream certificates (that is the proxy's
//! upstream client, which always verifies), and it never mints for a name that is not a valid
//! DNS name or IP address.
#![forbid(unsafe_code)]

mod authority;
mod cache;
mod error;
mod hello;

pub use authority::{CertificateAuthority, LEAF_VALIDITY, Leaf};
pub use cache::{CacheStats, LeafCache};
pub use error::CaError;
pub use hello::{ClientHelloInfo, NotTls, peek_client_hello};

/// The process-wide crypto provider used for everything this crate builds.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
