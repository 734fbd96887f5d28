//! Telemetry shared by the proxy and the admin API: one Prometheus registry ([`Metrics`]) and the
//! process-wide `tracing` subscriber ([`init_tracing`]).
//!
//! Why one registry object: the proxy increments counters on its hot path (lock-free atomics from
//! `prometheus-client`), the audit writer counts dropped events, and the admin API's `/metrics`
//! endpoint encodes the same registry in the Prometheus/OpenMetrics text format. Passing one
//! `Arc<Metrics>` around keeps every number in one place and makes the scrape cheap.
//!
//! Metric names (all prefixed `portcullis_`; counters get `_total` from the encoder):
//!
//! | name | type | who updates it |
//! |---|---|---|
//! | `portcullis_requests_total` | counter | proxy: [`Metrics::inc_request`] per request/CONNECT handled |
//! | `portcullis_blocks_total{category,app}` | counter | audit writer, for every recorded `block` event ([`Metrics::record_block`]) |
//! | `portcullis_block_detections_total{detector}` | counter | same, once per detector of the blocked transfer |
//! | `portcullis_bytes_inspected_total` | counter | proxy: [`Metrics::add_bytes_inspected`] |
//! | `portcullis_scan_latency_seconds` | histogram | proxy: [`Metrics::observe_scan_latency`] per inspected transfer |
//! | `portcullis_cert_cache_hits_total`, `portcullis_cert_cache_misses_total` | counter | read at scrape time from the source set with [`Metrics::set_cert_cache_source`] |
//! | `portcullis_audit_events_total` | counter | audit writer: events committed |
//! | `portcullis_audit_dropped_events_total` | counter | audit writer: events dropped because the queue was full or the store failed |
//!
//! Labels carry only catalog ids and detector ids (bounded sets), never users or hosts, so the
//! series count stays bounded.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Errors from telemetry setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The tracing filter expression (RUST_LOG or the default) did not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    /// A global tracing subscriber was already installed.
    #[error("tracing subscriber already initialised: {0}")]
    AlreadyInitialised(String),
    /// Encoding the registry failed (only a broken writer can cause this).
    #[error("encoding metrics failed")]
    Encode,
}

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counts reported by the certificate cache, sampled at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CertCacheCounts {
    pub hits: u64,
    pub misses: u64,
}

type CertCacheSource = Arc<dyn Fn() -> CertCacheCounts + Send + Sync>;

/// Labels of `portcullis_blocks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct BlockLabels {
    category: String,
    app: String,
}

/// Labels of `portcullis_block_detections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DetectorLabels {
    detector: String,
}

/// The gateway's metrics. Cheap to update from any thread; share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests: Counter,
    blocks: Family<BlockLabels, Counter>,
    detections: Family<DetectorLabels, Counter>,
    bytes_inspected: Counter,
    scan_latency: Histogram,
    audit_events: Counter,
    audit_dropped: Counter,
    cert_cache: Arc<CertCacheCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every Portcullis metric registered (all at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Counter::default();
        registry.register("requests", "Requests and CONNECTs handled by the proxy", requests.clone());
        let blocks = Family::<BlockLabels, Counter>::default();
        registry.register("blocks", "Blocked transfers by app category and app", blocks.clone());
        let detections = Family::<DetectorLabels, Counter>::default();
        registry.register(
            "block_detections",
            "Blocked transfers by DLP detector (a transfer with two detectors counts once for each)",
            detections.clone(),
        );
        let bytes_inspected = Counter::default();
        registry.register("bytes_inspected", "Request body bytes fed to content inspection", bytes_inspected.clone());
        // 100 µs .. ~6.5 s in x4 steps: scans range from tiny form posts to large archives.
        let scan_latency = Histogram::new(exponential_buckets(0.0001, 4.0, 9));
        registry.register("scan_latency_seconds", "Time spent inspecting one transfer (extraction and scanning)", scan_latency.clone());
        let audit_events = Counter::default();
        registry.register("audit_events", "Audit events committed to the store", audit_events.clone());
        let audit_dropped = Counter::default();
        registry.register("audit_dropped_events", "Audit events dropped (writer queue full or store failure)", audit_dropped.clone());
        let cert_cache = Arc::new(CertCacheCollector { source: RwLock::new(None) });
        registry.register_collector(Box::new(Arc::clone(&cert_cache)));
        Metrics { registry, requests, blocks, detections, bytes_inspected, scan_latency, audit_events, audit_dropped, cert_cache }
    }

    /// One request (or CONNECT) handled by the proxy.
    pub fn inc_request(&self) {
        self.requests.inc();
    }

    /// One blocked transfer. `None` app/category are exported as the label value `none`.
    /// Called by the audit writer for every `block` event it accepts; the proxy need not call it.
    pub fn record_block(&self, category: Option<&str>, app: Option<&str>, detectors: &[&str]) {
        let labels = BlockLabels { category: category.unwrap_or("none").to_owned(), app: app.unwrap_or("none").to_owned() };
        self.blocks.get_or_create(&labels).inc();
        for detector in detectors {
            self.detections.get_or_create(&DetectorLabels { detector: (*detector).to_owned() }).inc();
        }
    }

    /// Bytes of request body fed to inspection.
    pub fn add_bytes_inspected(&self, bytes: u64) {
        self.bytes_inspected.inc_by(bytes);
    }

    /// Time one transfer's inspection took.
    pub fn observe_scan_latency(&self, elapsed: Duration) {
        self.scan_latency.observe(elapsed.as_secs_f64());
    }

    /// Audit events committed (called by the audit writer).
    pub fn add_audit_events(&self, n: u64) {
        self.audit_events.inc_by(n);
    }

    /// Audit events dropped (called by the audit writer).
    pub fn add_audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }

    /// Total audit events dropped so far.
    pub fn audit_dropped(&self) -> u64 {
        self.audit_dropped.get()
    }

    /// Where the certificate cache counters come from, e.g.
    /// `metrics.set_cert_cache_source(move || { let s = cache.stats(); CertCacheCounts { hits: s.hits, misses: s.misses } })`.
    /// Sampled at every scrape; until set, both counters read 0.
    pub fn set_cert_cache_source(&self, source: impl Fn() -> CertCacheCounts + Send + Sync + 'static) {
        if let Ok(mut slot) = self.cert_cache.source.write() {
            *slot = Some(Arc::new(source));
        }
    }

    /// The registry in OpenMetrics text format (serve with [`METRICS_CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|_| TelemetryError::Encode)?;
        Ok(out)
    }
}

/// Emits the certificate cache counters from a callback at scrape time.
struct CertCacheCollector {
    source: RwLock<Option<CertCacheSource>>,
}

impl std::fmt::Debug for CertCacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertCacheCollector")
    }
}

impl Collector for CertCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self.source.read().ok().and_then(|s| s.clone());
        let counts = source.map(|f| f()).unwrap_or_default();
        for (name, help, value) in [
            ("cert_cache_hits", "Leaf certificate cache hits", counts.hits),
            ("cert_cache_misses", "Leaf certificate cache misses (a leaf was minted or awaited)", counts.misses),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// Format of the structured logs written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (expected text or json)")),
        }
    }
}

/// Environment variables holding a log filter, in order of precedence (then the default).
pub const LOG_ENV: [&str; 2] = ["PORTCULLIS_LOG", "RUST_LOG"];

/// Builds the stderr subscriber for `format`; the filter is `$PORTCULLIS_LOG`, else `$RUST_LOG`,
/// else `default_filter` (e.g. `"info"` or `"portcullis=debug,info"`). Colours only when stderr is
/// a terminal. Separate from [`init_tracing`] so tests can use it scoped
/// (`tracing::subscriber::with_default`).
pub fn subscriber(format: LogFormat, default_filter: &str) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, TelemetryError> {
    use std::io::IsTerminal;
    build(format, default_filter, std::io::stderr, std::io::stderr().is_terminal())
}

/// [`subscriber`] writing to any `MakeWriter`, without colours (tests capture output this way).
pub fn subscriber_with_writer<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    build(format, default_filter, writer, false)
}

fn build<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let from_env = LOG_ENV.iter().find_map(|k| std::env::var(k).ok().filter(|s| !s.trim().is_empty()));
    let filter_text = from_env.unwrap_or_else(|| default_filter.to_owned());
    let filter =
        EnvFilter::try_new(&filter_text).map_err(|e| TelemetryError::Filter { filter: filter_text.clone(), message: e.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    Ok(match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).with_current_span(false).finish()),
    })
}

/// Installs the global subscriber (once per process).
pub fn init_tracing(format: LogFormat, default_filter: &str) -> Result<(), TelemetryError> {
    let sub = subscriber(format, default_filter)?;
    tracing::subscriber::set_global_default(sub).map_err(|e| {
        let mut msg = String::new();
        let _ = write!(msg, "{e}");
        TelemetryError::AlreadyInitialised(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn encodes_all_metrics_with_values() {
        let m = Metrics::new();
        m.inc_request();
        m.inc_request();
        m.record_block(Some("webmail"), Some("gmail"), &["payment-card", "hkid"]);
        m.add_bytes_inspected(1234);
        m.observe_scan_latency(Duration::from_millis(3));
        m.add_audit_dropped(2);
        m.set_cert_cache_source(|| CertCacheCounts { hits: 7, misses: 3 });
        let text = m.encode().unwrap();
        for needle in [
            "portcullis_requests_total 2",
            "portcullis_blocks_total{category=\"webmail\",app=\"gmail\"} 1",
            "portcullis_block_detections_total{detector=\"payment-card\"} 1",
            "portcullis_block_detections_total{detector=\"hkid\"} 1",
            "portcullis_bytes_inspected_total 1234",
            "portcullis_scan_latency_seconds_count 1",
            "portcullis_cert_cache_hits_total 7",
            "portcullis_cert_cache_misses_total 3",
            "portcullis_audit_dropped_events_total 2",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(m.audit_dropped(), 2);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let sub = subscriber_with_writer(LogFormat::Json, "info", move || b2.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(user = "alice", "blocked upload");
            tracing::debug!("filtered out");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["message"], "blocked upload", "{out}");
        assert_eq!(v["user"], "alice", "{out}");
        assert_eq!(v["level"], "INFO", "{out}");
    }

    #[test]
    fn bad_filter_is_reported() {
        // A filter in the environment replaces the default; then this case cannot be exercised.
        if LOG_ENV.iter().any(|k| std::env::var(k).is_ok()) {
            return;
        }
        let err = subscriber(LogFormat::Text, "portcullis=notalevel").err().unwrap();
        assert!(matches!(err, TelemetryError::Filter { .. }));
    }
}
