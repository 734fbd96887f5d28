//! A bounded, shared, single-flight cache of per-host TLS server configurations.
//!
//! Why single-flight: when a browser opens a page it often races a dozen connections to a host
//! it has never visited; minting one leaf per connection would waste CPU and hand out different
//! certificates for the same name. Each cache slot holds a `tokio::sync::OnceCell`: the first
//! caller mints, everyone else awaits the same result.
//!
//! Why cache `ServerConfig` and not just the certificate: building a config is not free, and a
//! shared session cache and ticketer let clients resume TLS sessions with the proxy.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use tokio::sync::OnceCell;

use crate::{CaError, CertificateAuthority, LEAF_VALIDITY};

/// A cached config is replaced once it is this old, long before its leaf expires.
const REFRESH_AFTER: Duration = Duration::from_secs(LEAF_VALIDITY.as_secs() / 2);

type Key = (String, Vec<Vec<u8>>);

struct Ready {
    config: Arc<ServerConfig>,
    minted_at: Instant,
}

/// Counters for observability (`/metrics`) and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by an existing (or in-flight) entry.
    pub hits: u64,
    /// Lookups that created a new entry.
    pub misses: u64,
    /// Leaves actually minted.
    pub mints: u64,
    /// Entries currently cached.
    pub entries: u64,
}

/// Per-host leaf certificates, minted on first use and shared across connections.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
    slots: Mutex<LruCache<Key, Arc<OnceCell<Ready>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    mints: AtomicU64,
}

impl LeafCache {
    /// A cache holding at most `capacity` hosts (least recently used evicted first).
    pub fn new(ca: Arc<CertificateAuthority>, capacity: usize) -> Result<Self, CaError> {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            ca,
            provider: crate::crypto_provider(),
            sessions: ServerSessionMemoryCache::new(8192),
            ticketer: rustls::crypto::ring::Ticketer::new()?,
            slots: Mutex::new(LruCache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            mints: AtomicU64::new(0),
        })
    }

    /// The CA this cache mints with.
    pub fn authority(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// A server config presenting a leaf for `host` and offering `alpn` (in preference order).
    /// Concurrent calls for the same host and ALPN mint once.
    pub async fn server_config(&self, host: &str, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, CaError> {
        let key: Key = (normalise(host), alpn.iter().map(|p| p.to_vec()).collect());
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let fresh = |cell: &OnceCell<Ready>| cell.get().is_none_or(|r| r.minted_at.elapsed() < REFRESH_AFTER);
            match slots.get(&key) {
                Some(cell) if fresh(cell) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(cell)
                }
                _ => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let cell = Arc::new(OnceCell::new());
                    slots.put(key.clone(), Arc::clone(&cell));
                    cell
                }
            }
        };
        let ready = slot.get_or_try_init(|| async { self.build(&key.0, &key.1) }).await?;
        Ok(Arc::clone(&ready.config))
    }

    fn build(&self, host: &str, alpn: &[Vec<u8>]) -> Result<Ready, CaError> {
        let leaf = self.ca.mint(host)?;
        self.mints.fetch_add(1, Ordering::Relaxed);
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)?;
        config.alpn_protocols = alpn.to_vec();
        config.session_storage = Arc::clone(&self.sessions);
        config.ticketer = Arc::clone(&self.ticketer);
        Ok(Ready { config: Arc::new(config), minted_at: Instant::now() })
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let entries = self.slots.lock().map(|s| s.len()).unwrap_or_else(|p| p.into_inner().len());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            mints: self.mints.load(Ordering::Relaxed),
            entries: entries as u64,
        }
    }
}

/// Case, trailing dot and IPv6 brackets do not make a different host.
fn normalise(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}
