//! The proxy's [`Recorder`] backed by the audit log.
//!
//! A block is written with [`AuditWriter::record_durable`] and the proxy sends the block page only
//! after that resolves, so every incident id a user sees is in the log, even if the gateway is
//! killed the next instant. Bypasses and other records go through the non-blocking queue: the
//! request path never waits on them, and anything dropped is counted in `/metrics`.

use portcullis_audit::{AuditWriter, DetectorHit, Event};
use portcullis_proxy::{Action, RecordFuture, Recorder, TransferRecord};

use crate::policy_gate::{apply_labels, audit_file};

pub struct AuditRecorder {
    writer: AuditWriter,
}

impl AuditRecorder {
    pub fn new(writer: AuditWriter) -> Self {
        AuditRecorder { writer }
    }
}

/// Maps the proxy's record (with the gate's labels) to an audit event, keeping the proxy's
/// incident id and time: the block page shows that id.
pub fn to_event(r: &TransferRecord) -> Event {
    let action = match r.action {
        Action::Block => portcullis_audit::Action::Block,
        Action::Bypass => portcullis_audit::Action::Bypass,
        Action::Allow => portcullis_audit::Action::Allow,
    };
    let mut e = Event::new(action, r.host.clone()).with_url(&r.url);
    if portcullis_audit::is_valid_id(&r.id) {
        e.id = r.id.clone();
    }
    e.time = r.time;
    e.user = r.identity.user.clone();
    e.client = Some(r.client.ip().to_string());
    e.method = Some(r.method.clone());
    e.rule = (!r.detail.rule.is_empty()).then(|| r.detail.rule.clone());
    apply_labels(&mut e, &r.detail.labels);
    e.detectors = r
        .detail
        .evidence
        .iter()
        .map(|ev| DetectorHit {
            detector: ev.detector.clone(),
            count: ev.count,
            evidence: ev.samples.clone(),
            value_hmacs: ev.value_hmacs.clone(),
        })
        .collect();
    e.files = r.detail.files.iter().map(audit_file).collect();
    e.bytes = r.bytes_up;
    e.reason = (!r.detail.reason.is_empty()).then(|| r.detail.reason.clone());
    e
}

impl Recorder for AuditRecorder {
    fn incident_id(&self) -> String {
        portcullis_audit::new_id().0
    }

    fn record(&self, record: TransferRecord) -> RecordFuture<'_> {
        // Keep the stderr line too: operators tail it.
        let log = portcullis_proxy::LogRecorder.record(record.clone());
        let event = to_event(&record);
        Box::pin(async move {
            log.await;
            if record.action == Action::Block {
                if let Err(err) = self.writer.record_durable(event).await {
                    tracing::error!(incident = %record.id, "block could not be written to the audit log: {err}");
                }
            } else if !self.writer.try_record(event) {
                tracing::warn!(incident = %record.id, "audit queue full; event dropped (counted in /metrics)");
            }
        })
    }
}
