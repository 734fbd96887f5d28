//! The push pipeline every decoder plugs into.
//!
//! Why push: the proxy hands us request-body chunks as they arrive (sans-IO), so every streaming
//! decoder is a [`Node`] that is *written to* and writes its output into child nodes. Formats that
//! need random access (zip, PDF) buffer inside their node under the shared [`Ctx`] budget and do
//! their work in [`Node::finish`].
//!
//! All per-transfer accounting lives in [`Ctx`]: decoded bytes, expansion ratio, nesting depth,
//! archive entries, buffered bytes and processing time. A limit that trips returns
//! [`Halt::Unscannable`], which unwinds the whole pipeline at once (nothing is half-scanned and
//! called clean). Problems confined to one member (an encrypted zip entry, a corrupt part) are
//! recorded with [`Ctx::soft_unscannable`] and scanning continues, so a match elsewhere still wins.
//!
//! Text leaves the pipeline through [`TextSink`]s: one per text stream (a file's text, a JSON
//! document's strings, a decoded base64 blob), so interleaved streams never corrupt each other's
//! boundary state.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{FileInfo, Limits};

/// Output of the pipeline: one stream of text (or raw bytes) to scan.
pub(crate) trait TextSink: Send {
    fn feed(&mut self, chunk: &[u8]);
    fn has_findings(&self) -> bool;
    /// The stream ended; hand its findings to whoever owns the results. True if it found any.
    fn close(self: Box<Self>) -> bool;
}

pub(crate) type SinkFactory = Box<dyn FnMut() -> Box<dyn TextSink> + Send>;

/// Why the whole pipeline stops early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// A detector fired and the caller asked to stop at the first match.
    Match,
    /// A limit tripped or the content cannot be inspected at all.
    Unscannable(String),
}

pub(crate) type Res = Result<(), Halt>;

/// A decoder stage. `write` may be called any number of times with chunks of any size, then
/// `finish` once. Implementations keep bounded state.
pub(crate) trait Node: Send {
    fn write(&mut self, cx: &mut Ctx, data: &[u8]) -> Res;
    fn finish(self: Box<Self>, cx: &mut Ctx) -> Res;
}

/// Index of an open text sink in the [`Ctx`] arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SinkId(usize);

/// Output below this many bytes is never judged by the expansion ratio: small inputs legitimately
/// compress very well (a 1 KiB gzip of a repetitive JSON), bombs do not stay this small.
pub(crate) const RATIO_SLACK: u64 = 1 << 20;

/// Most file records kept in a report (the rest are counted, not listed).
const MAX_FILE_RECORDS: usize = 1024;

/// A file's record and, until its end, the hash of its bytes so far.
struct FileSlot {
    info: FileInfo,
    hash: Option<Sha256>,
}

impl FileSlot {
    /// Sets the hash from the bytes seen, once; `partial`: the file's end was not reached.
    fn finalize(&mut self, partial: bool) {
        if let Some(h) = self.hash.take() {
            self.info.sha256 = hex::encode(h.finalize());
            self.info.partial = partial;
        }
    }
}

/// Per-transfer state shared by all nodes.
pub(crate) struct Ctx {
    pub limits: Limits,
    pub exhaustive: bool,
    decoded: u64,
    raw_in: u64,
    entries: u64,
    buffered: usize,
    peak_buffered: usize,
    time_used: Duration,
    call_started: Option<Instant>,
    /// The files seen, by index (`None`: dropped), each with its hash state while its bytes
    /// are still arriving. The state lives here rather than in the file's node so that a
    /// transfer stopped early (a match, a limit) still reports what was seen of each file.
    files: Vec<Option<FileSlot>>,
    files_dropped: u64,
    soft: Vec<String>,
    sinks: Vec<Option<Box<dyn TextSink>>>,
    factory: SinkFactory,
    scanned: u64,
    any_findings: bool,
}

impl Ctx {
    pub fn new(limits: Limits, factory: SinkFactory) -> Ctx {
        Ctx {
            limits,
            exhaustive: false,
            decoded: 0,
            raw_in: 0,
            entries: 0,
            buffered: 0,
            peak_buffered: 0,
            time_used: Duration::ZERO,
            call_started: None,
            files: Vec::new(),
            files_dropped: 0,
            soft: Vec::new(),
            sinks: Vec::new(),
            factory,
            scanned: 0,
            any_findings: false,
        }
    }

    pub fn set_factory(&mut self, factory: SinkFactory) {
        self.factory = factory;
    }

    // ---- time: only time spent inside our calls counts (a slow uploader is not a bomb) ----

    pub fn begin_call(&mut self) {
        self.call_started = Some(Instant::now());
    }

    pub fn end_call(&mut self) {
        if let Some(t) = self.call_started.take() {
            self.time_used += t.elapsed();
        }
    }

    pub fn check_time(&self) -> Res {
        let running = self.call_started.map(|t| t.elapsed()).unwrap_or_default();
        if self.time_used + running > self.limits.max_time {
            return Err(Halt::Unscannable(format!("processing time limit exceeded (max_time {:?})", self.limits.max_time)));
        }
        Ok(())
    }

    // ---- budget ----

    pub fn add_raw(&mut self, n: usize) {
        self.raw_in += n as u64;
    }

    /// Account for `n` bytes produced by an expanding decoder (decompression, base64, PDF text).
    pub fn charge_decoded(&mut self, n: usize) -> Res {
        self.decoded += n as u64;
        let l = &self.limits;
        if self.decoded > l.max_decoded_bytes {
            return Err(Halt::Unscannable(format!("decoded size exceeds max_decoded_bytes ({} bytes)", l.max_decoded_bytes)));
        }
        let allowed = l.max_ratio.saturating_mul(self.raw_in.max(1)).saturating_add(RATIO_SLACK);
        if self.decoded > allowed {
            return Err(Halt::Unscannable(format!(
                "expansion ratio exceeds max_ratio {} ({} bytes decoded from {} bytes)",
                l.max_ratio, self.decoded, self.raw_in
            )));
        }
        self.check_time()
    }

    /// Bytes an archive or document may still produce before a limit trips.
    pub fn decoded_headroom(&self) -> u64 {
        let l = &self.limits;
        let by_ratio = l.max_ratio.saturating_mul(self.raw_in.max(1)).saturating_add(RATIO_SLACK);
        l.max_decoded_bytes.min(by_ratio).saturating_sub(self.decoded)
    }

    pub fn count_entry(&mut self) -> Res {
        self.count_entries(1)
    }

    /// Count `n` members at once (a zip's central directory is known up front).
    pub fn count_entries(&mut self, n: u64) -> Res {
        self.entries = self.entries.saturating_add(n);
        if self.entries > u64::from(self.limits.max_entries) {
            return Err(Halt::Unscannable(format!("more than max_entries ({}) archive entries or parts", self.limits.max_entries)));
        }
        Ok(())
    }

    /// Reserve room in the random-access buffer budget (shared by all buffering nodes).
    pub fn reserve_buffer(&mut self, n: usize, what: &str) -> Res {
        let next = self.buffered.saturating_add(n);
        if next > self.limits.max_buffer {
            return Err(Halt::Unscannable(format!(
                "{what} needs more than max_buffer ({} bytes) of random-access buffer",
                self.limits.max_buffer
            )));
        }
        self.buffered = next;
        self.peak_buffered = self.peak_buffered.max(next);
        Ok(())
    }

    /// Bytes held in random-access buffers right now.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn release_buffer(&mut self, n: usize) {
        self.buffered = self.buffered.saturating_sub(n);
    }

    /// Depth a child of a node at `depth` gets, or `None` when that is deeper than allowed.
    pub fn child_depth(&self, depth: u32) -> Option<u32> {
        (depth < self.limits.max_depth).then_some(depth + 1)
    }

    /// Something inside could not be inspected, but the rest can: note it and go on.
    pub fn soft_unscannable(&mut self, reason: String) {
        if self.soft.len() < 16 && !self.soft.contains(&reason) {
            self.soft.push(reason);
        }
    }

    // ---- sinks ----

    pub fn open_sink(&mut self) -> SinkId {
        let sink = (self.factory)();
        if let Some(i) = self.sinks.iter().position(Option::is_none) {
            self.sinks[i] = Some(sink);
            SinkId(i)
        } else {
            self.sinks.push(Some(sink));
            SinkId(self.sinks.len() - 1)
        }
    }

    pub fn feed(&mut self, id: SinkId, data: &[u8]) -> Res {
        if data.is_empty() {
            return Ok(());
        }
        self.check_time()?;
        let Some(Some(sink)) = self.sinks.get_mut(id.0) else {
            return Ok(());
        };
        sink.feed(data);
        self.scanned += data.len() as u64;
        if !self.any_findings && sink.has_findings() {
            self.any_findings = true;
            if !self.exhaustive {
                return Err(Halt::Match);
            }
        }
        Ok(())
    }

    /// End of a text stream: its last values are decided now, so this can be the match.
    pub fn close_sink(&mut self, id: SinkId) -> Res {
        if let Some(slot) = self.sinks.get_mut(id.0)
            && let Some(sink) = slot.take()
            && sink.close()
            && !std::mem::replace(&mut self.any_findings, true)
            && !self.exhaustive
        {
            return Err(Halt::Match);
        }
        Ok(())
    }

    /// Close every sink still open (after an early halt).
    pub fn close_all(&mut self) {
        for i in 0..self.sinks.len() {
            let _ = self.close_sink(SinkId(i));
        }
    }

    // ---- file records ----

    /// A new file record; `field`: the form field a multipart part was sent in.
    pub fn new_file(&mut self, name: Option<String>, field: Option<String>) -> Option<usize> {
        if self.files.len() >= MAX_FILE_RECORDS {
            self.files_dropped += 1;
            return None;
        }
        let info = FileInfo { name, field, sha256: String::new(), size: 0, kind: String::new(), partial: false };
        self.files.push(Some(FileSlot { info, hash: Some(Sha256::new()) }));
        Some(self.files.len() - 1)
    }

    /// File `idx`'s slot, unless it was dropped or never recorded.
    fn slot(&mut self, idx: Option<usize>) -> Option<&mut FileSlot> {
        idx.and_then(|i| self.files.get_mut(i)).and_then(Option::as_mut)
    }

    pub fn file_mut(&mut self, idx: Option<usize>) -> Option<&mut FileInfo> {
        self.slot(idx).map(|f| &mut f.info)
    }

    /// The next bytes of file `idx`: hashed and counted.
    pub fn file_bytes(&mut self, idx: Option<usize>, data: &[u8]) {
        if let Some(f) = self.slot(idx) {
            if let Some(h) = f.hash.as_mut() {
                h.update(data);
            }
            f.info.size += data.len() as u64;
        }
    }

    /// File `idx` ended: its hash is final.
    pub fn file_done(&mut self, idx: Option<usize>) {
        if let Some(f) = self.slot(idx) {
            f.finalize(false);
        }
    }

    pub fn drop_file(&mut self, idx: Option<usize>) {
        if let Some(slot) = idx.and_then(|i| self.files.get_mut(i)) {
            *slot = None;
        }
    }

    // ---- results ----

    /// Every file seen; those whose end was never reached (the transfer was stopped, or
    /// ended early) are marked partial, hashed over the bytes that arrived.
    pub fn take_files(&mut self) -> Vec<FileInfo> {
        std::mem::take(&mut self.files)
            .into_iter()
            .flatten()
            .map(|mut f| {
                f.finalize(true);
                f.info
            })
            .collect()
    }

    pub fn soft_reasons(&self) -> &[String] {
        &self.soft
    }

    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    pub fn raw_in(&self) -> u64 {
        self.raw_in
    }

    pub fn peak_buffered(&self) -> usize {
        self.peak_buffered
    }

    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    pub fn files_dropped(&self) -> u64 {
        self.files_dropped
    }
}

/// Feed `data` to `node` in slices of at most `max` bytes, so that a single huge caller chunk
/// does not turn into a huge intermediate buffer anywhere downstream.
pub(crate) fn write_sliced(node: &mut dyn Node, cx: &mut Ctx, data: &[u8], max: usize) -> Res {
    for piece in data.chunks(max.max(1)) {
        node.write(cx, piece)?;
    }
    Ok(())
}
