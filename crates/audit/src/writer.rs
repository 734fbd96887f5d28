//! The audit writer: a dedicated thread that owns the store and commits events in batches.
//!
//! Why a thread and a bounded queue: SQLite commits block (fsync), and the proxy's request path
//! must never wait on disk except where it chose to (a block page is sent only after its event is
//! durable). Producers put events on a bounded `tokio::sync::mpsc` queue; the thread takes the
//! first event, then everything else already queued (up to `max_batch`), and commits them in ONE
//! transaction. That is group commit: while one batch is being fsynced the next one accumulates,
//! so throughput grows with load and no timer adds latency.
//!
//! Two ways in:
//! * [`AuditWriter::record_durable`] — for events a client will see (blocks): waits for queue space
//!   if needed, and resolves only after the transaction containing the event committed. With the
//!   default `synchronous=FULL` that means fsynced; see [`crate::Synchronous`].
//! * [`AuditWriter::try_record`] — for everything else: never blocks; if the queue is full the event
//!   is dropped and counted ([`AuditWriter::dropped`], metric `portcullis_audit_dropped_events_total`).
//!
//! Retention runs when the writer starts and then every `retention_interval`, on the writer thread
//! (so it never contends with inserts for the write lock).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_telemetry::Metrics;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditStore, Retention};
use crate::{Action, AuditError, Event, SqliteStore};

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Events that may wait in the queue (beyond that `try_record` drops). Default 8192.
    pub queue_capacity: usize,
    /// Most events per transaction. Default 1024.
    pub max_batch: usize,
    /// Retention policy (default: none).
    pub retention: Retention,
    /// How often retention runs after the start-up run. Default 10 minutes.
    pub retention_interval: Duration,
    /// Metrics to update (blocks, committed and dropped events).
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 8192,
            max_batch: 1024,
            retention: Retention::default(),
            retention_interval: Duration::from_secs(600),
            metrics: None,
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Msg {
    Event(Box<Event>, Option<Ack>),
    Flush(Ack),
    Retention,
}

#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    /// Drops not yet added to the store's persistent count.
    unpersisted_drops: AtomicU64,
    written: AtomicU64,
    failed_batches: AtomicU64,
}

/// Handle to the writer thread. Cheap to clone; the thread drains the queue and exits when the
/// last handle is dropped (or use [`AuditWriter::close`] to wait for that).
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").field("dropped", &self.dropped()).field("written", &self.written()).finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Opens (creating) the SQLite database at `path` and starts the writer on it.
    pub fn open(path: impl AsRef<std::path::Path>, config: WriterConfig) -> Result<AuditWriter, AuditError> {
        let store = SqliteStore::open(path)?;
        Self::spawn(Box::new(store), config)
    }

    /// Starts the writer thread on `store`. Runs retention once before accepting the first batch.
    /// Needs no tokio runtime; `record_durable` can be awaited on any executor.
    pub fn spawn(store: Box<dyn AuditStore>, config: WriterConfig) -> Result<AuditWriter, AuditError> {
        if config.queue_capacity == 0 || config.max_batch == 0 {
            return Err(AuditError::Config("queue_capacity and max_batch must be at least 1".into()));
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            store,
            rx,
            counters: Arc::clone(&counters),
            metrics: config.metrics.clone(),
            max_batch: config.max_batch,
            retention: config.retention,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || worker.run())
            .map_err(|e| AuditError::Config(format!("cannot start the audit writer thread: {e}")))?;
        if config.retention.is_enabled() {
            let weak = tx.downgrade();
            let interval = config.retention_interval.max(Duration::from_secs(1));
            let _ = std::thread::Builder::new().name("audit-retention".into()).spawn(move || {
                // Wakes every second to notice a closed writer quickly; asks for retention each interval.
                let mut last = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_secs(1).min(interval));
                    let Some(tx) = weak.upgrade() else { break };
                    if last.elapsed() >= interval {
                        let _ = tx.try_send(Msg::Retention);
                        last = Instant::now();
                    }
                }
            });
        }
        Ok(AuditWriter { tx, counters, metrics: config.metrics })
    }

    /// Blocks are counted when they happen, whether or not their event is then stored.
    fn count_block(&self, event: &Event) {
        if let Some(m) = &self.metrics
            && event.action == Action::Block
            && !event.simulated
        {
            m.record_block(event.category.as_deref(), event.app.as_deref(), &event.detector_ids());
        }
    }

    fn count_drop(&self, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        self.counters.unpersisted_drops.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.add_audit_dropped(n);
        }
    }

    /// Records `event` and resolves once the transaction containing it has committed. Returns the
    /// event id (for the block page). Waits for queue space rather than dropping.
    pub async fn record_durable(&self, event: Event) -> Result<String, AuditError> {
        let id = event.id.clone();
        self.count_block(&event);
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Event(Box::new(event), Some(ack))).await.is_err() {
            self.count_drop(1);
            return Err(AuditError::Closed);
        }
        match done.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(message)) => Err(AuditError::Write(message)),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Queues `event` without waiting. Returns `false` (and counts a drop) if the queue is full or
    /// the writer has stopped.
    pub fn try_record(&self, event: Event) -> bool {
        self.count_block(&event);
        if self.tx.try_send(Msg::Event(Box::new(event), None)).is_err() {
            self.count_drop(1);
            return false;
        }
        true
    }

    /// Resolves after everything queued before this call has been committed (or failed).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Flush(ack)).await.map_err(|_| AuditError::Closed)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::Write(message)),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Blocking [`flush`](Self::flush) for non-async callers (must not be called from async code).
    pub fn flush_blocking(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx.blocking_send(Msg::Flush(ack)).map_err(|_| AuditError::Closed)?;
        match done.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::Write(message)),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Flushes, then drops this handle (the thread exits when the last handle is gone).
    pub async fn close(self) -> Result<(), AuditError> {
        self.flush().await
    }

    /// Events dropped so far (queue full, writer stopped, or a failed batch).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Events committed so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Batches whose transaction failed (their events are counted in `dropped`).
    pub fn failed_batches(&self) -> u64 {
        self.counters.failed_batches.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

struct Worker {
    store: Box<dyn AuditStore>,
    rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
    metrics: Option<Arc<Metrics>>,
    max_batch: usize,
    retention: Retention,
}

impl Worker {
    fn run(mut self) {
        self.run_retention();
        let mut events: Vec<Event> = Vec::with_capacity(self.max_batch);
        let mut acks: Vec<Ack> = Vec::with_capacity(self.max_batch);
        let mut retention_due = false;
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(e, ack) => {
                        events.push(*e);
                        acks.extend(ack);
                    }
                    Msg::Flush(ack) => acks.push(ack),
                    Msg::Retention => retention_due = true,
                }
                if events.len() < self.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            let result = if events.is_empty() { Ok(()) } else { self.store.append(&events) };
            let n = events.len() as u64;
            let outcome = match result {
                Ok(()) => {
                    self.counters.written.fetch_add(n, Ordering::Relaxed);
                    if let Some(m) = &self.metrics {
                        m.add_audit_events(n);
                    }
                    Ok(())
                }
                Err(err) => {
                    tracing::error!(error = %err, events = n, "audit batch failed; events lost");
                    self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                    self.counters.unpersisted_drops.fetch_add(n, Ordering::Relaxed);
                    if let Some(m) = &self.metrics {
                        m.add_audit_dropped(n);
                    }
                    Err(err.to_string())
                }
            };
            events.clear();
            // Persist drop counts before acknowledging, so a flush also covers them (one small
            // transaction, only when something was dropped).
            let drops = self.counters.unpersisted_drops.swap(0, Ordering::Relaxed);
            if drops > 0
                && let Err(err) = self.store.record_dropped(drops)
            {
                tracing::warn!(error = %err, drops, "could not record the dropped-event count");
                self.counters.unpersisted_drops.fetch_add(drops, Ordering::Relaxed);
            }
            for ack in acks.drain(..) {
                let _ = ack.send(outcome.clone());
            }
            if retention_due {
                retention_due = false;
                self.run_retention();
            }
        }
    }

    fn run_retention(&mut self) {
        if !self.retention.is_enabled() {
            return;
        }
        match self.store.apply_retention(&self.retention, OffsetDateTime::now_utc()) {
            Ok(r) if r.deleted_by_age + r.deleted_by_size > 0 => {
                tracing::info!(deleted_by_age = r.deleted_by_age, deleted_by_size = r.deleted_by_size, "audit retention");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "audit retention failed"),
        }
    }
}
