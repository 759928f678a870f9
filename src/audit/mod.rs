//! The audit record: one JSON line per decided request, on stdout (logs go to stderr) or a file,
//! so the stream can be collected, searched and, with the request recorded, replayed.
//!
//! Writing never blocks a decision: each record is serialised on the request path and handed to
//! a bounded buffer that one writer thread drains. A full buffer or a failed write loses the
//! record, and every loss is counted (metrics, `/readyz`, a rate-limited log line); with
//! `--audit-log-on-loss=fail` the request is answered with an error instead of its decision.
//! Lines are whole: a record goes out in one `write` of the complete line, and after a partial
//! write (a full disk) the next record starts on a new line. The file is reopened on SIGHUP and
//! when it was renamed or deleted (rotation).

mod record;
mod sink;
mod writer;

pub use record::{AuditRecord, RecordedDecision};
pub use sink::AuditSink;
use sink::{FileSink, StdoutSink, open_append};
use writer::run_writer;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::respond::Reviewed;

/// Requests larger than this are not copied into the audit log (the record says so instead).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Memory the buffer may hold before records are lost (or, with `fail`, requests refused).
pub const DEFAULT_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// At most this many records wait, whatever their size.
const MAX_BUFFERED_RECORDS: usize = 16 * 1024;
/// Losses are logged at most this often; every one is counted.
const LOSS_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long dropping the log (shutdown) waits for buffered records to be written.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to a request whose audit record cannot be kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossPolicy {
    /// Answer with the decision anyway; the lost record is counted.
    #[default]
    Drop,
    /// Answer with a denial (code 503) while records cannot be kept: nothing is admitted unrecorded.
    Fail,
}

impl LossPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LossPolicy::Drop => "drop",
            LossPolicy::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Copy each request into its record (for `replay`).
    pub include_requests: bool,
    pub max_request_bytes: usize,
    pub on_loss: LossPolicy,
    /// Bytes of records the buffer may hold.
    pub buffer_bytes: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            include_requests: false,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            on_loss: LossPolicy::Drop,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
        }
    }
}

/// Why a record was lost: the `reason` label of `guardrails_audit_records_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The buffer was full: the destination does not keep up or is stalled.
    BufferFull,
    /// The destination refused the write (full disk, closed pipe, …).
    WriteError,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::BufferFull => "buffer_full",
            LossReason::WriteError => "write_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LossLabels {
    pub reason: &'static str,
}

/// The audit log's counters; prometheus types are shared handles, so `/metrics` registers clones.
#[derive(Clone, Debug, Default)]
pub struct AuditCounters {
    pub written: Counter,
    pub dropped: Family<LossLabels, Counter>,
    pub reopens: Counter,
    /// Files found ending mid-line when opened (a record torn by an earlier process): ended with
    /// a newline before the first record.
    pub torn_tails: Counter,
    /// Records accepted and not yet written or lost (the one being written counts).
    pub buffered_records: Gauge,
    pub buffered_bytes: Gauge,
}

impl AuditCounters {
    fn new() -> Self {
        let counters = Self::default();
        // Both series exist from the start, so an alert on `increase()` sees the first loss.
        for reason in [LossReason::BufferFull, LossReason::WriteError] {
            drop(counters.dropped.get_or_create(&LossLabels {
                reason: reason.as_str(),
            }));
        }
        counters
    }

    pub fn dropped(&self, reason: LossReason) -> u64 {
        self.dropped
            .get_or_create(&LossLabels {
                reason: reason.as_str(),
            })
            .get()
    }
}

/// State shared by the request path, the writer thread and `/readyz`.
struct Shared {
    counters: AuditCounters,
    /// The last write failed and none has succeeded since.
    write_failing: AtomicBool,
    /// The last record offered found the buffer full.
    saturated: AtomicBool,
    reopen_requested: AtomicBool,
    /// A flush already waited its time for a stalled destination: dropping waits no more.
    abandoned: AtomicBool,
    last_error: Mutex<Option<(String, String)>>,
    last_loss_log: Mutex<Option<Instant>>,
    losses_unlogged: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        Self {
            counters: AuditCounters::new(),
            write_failing: AtomicBool::new(false),
            saturated: AtomicBool::new(false),
            reopen_requested: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            last_error: Mutex::new(None),
            last_loss_log: Mutex::new(None),
            losses_unlogged: AtomicU64::new(0),
        }
    }

    fn set_error(&self, message: String) {
        let entry = Some((jiff::Timestamp::now().to_string(), message));
        *crate::sync::lock(&self.last_error) = entry;
    }

    fn lost(&self, reason: LossReason, error: Option<&io::Error>) {
        self.counters
            .dropped
            .get_or_create(&LossLabels {
                reason: reason.as_str(),
            })
            .inc();
        let message = match error {
            Some(error) => format!("{}: {error}", reason.as_str()),
            None => reason.as_str().to_string(),
        };
        self.set_error(message.clone());
        let unlogged = self.losses_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        // Never wait for the lock: a loss on the request path must stay cheap.
        let Ok(mut last) = self.last_loss_log.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < LOSS_LOG_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.losses_unlogged.fetch_sub(unlogged, Ordering::Relaxed);
        tracing::warn!(
            lost = unlogged,
            reason = reason.as_str(),
            last_error = %message,
            buffer_full_total = self.counters.dropped(LossReason::BufferFull),
            write_error_total = self.counters.dropped(LossReason::WriteError),
            "audit records lost"
        );
    }
}

struct Writer {
    sender: Option<SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where audit lines go, and whether they carry the request for `replay`.
pub struct AuditLog {
    /// `None` when disabled, or when the writer thread could not start (every record then
    /// counts as lost).
    writer: Option<Writer>,
    enabled: bool,
    destination: String,
    options: AuditOptions,
    shared: Arc<Shared>,
}

/// The audit log's state, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditStatus {
    pub destination: String,
    pub on_loss: LossPolicy,
    /// No loss pending: the last write succeeded and the last record found room.
    pub healthy: bool,
    pub written: u64,
    pub dropped_buffer_full: u64,
    pub dropped_write_error: u64,
    pub buffered_records: i64,
    pub buffered_bytes: i64,
    pub last_error: Option<String>,
    pub last_error_time: Option<String>,
}

impl AuditLog {
    pub fn to_stdout(options: AuditOptions) -> Self {
        Self::with_sink("stdout", Box::new(StdoutSink::new()), options)
    }

    /// Record nothing (embedding and tests).
    pub fn disabled() -> Self {
        Self {
            writer: None,
            enabled: false,
            destination: "none".into(),
            options: AuditOptions::default(),
            shared: Arc::new(Shared::new()),
        }
    }

    /// Append to `path` (created if missing).
    pub fn file(path: &Path, include_requests: bool, max_request_bytes: usize) -> io::Result<Self> {
        Self::to_file(
            path,
            AuditOptions {
                include_requests,
                max_request_bytes,
                ..AuditOptions::default()
            },
        )
    }

    /// Append to `path` (created if missing); reopened on SIGHUP and when rotated away.
    pub fn to_file(path: &Path, options: AuditOptions) -> io::Result<Self> {
        let sink = FileSink {
            path: path.to_path_buf(),
            file: open_append(path)?,
        };
        Ok(Self::with_sink(
            &format!("file:{}", path.display()),
            Box::new(sink),
            options,
        ))
    }

    /// Write through `sink` on a thread of its own.
    pub fn with_sink(destination: &str, sink: Box<dyn AuditSink>, options: AuditOptions) -> Self {
        let shared = Arc::new(Shared::new());
        let (sender, receiver) = std::sync::mpsc::sync_channel(MAX_BUFFERED_RECORDS);
        let thread_shared = shared.clone();
        let writer = match std::thread::Builder::new()
            .name("guardrails-audit".into())
            .spawn(move || run_writer(sink, receiver, &thread_shared))
        {
            Ok(thread) => Some(Writer {
                sender: Some(sender),
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::error!(%error, "cannot start the audit writer: every record will be counted as lost");
                shared.set_error(format!("cannot start the audit writer: {error}"));
                None
            }
        };
        Self {
            writer,
            enabled: true,
            destination: destination.to_string(),
            options,
            shared,
        }
    }

    pub fn counters(&self) -> &AuditCounters {
        &self.shared.counters
    }

    pub fn on_loss(&self) -> LossPolicy {
        self.options.on_loss
    }

    /// Reopen the destination (SIGHUP): the writer does it before its next write, or within
    /// a fraction of a second when idle.
    pub fn reopen(&self) {
        self.shared.reopen_requested.store(true, Ordering::Release);
    }

    pub fn status(&self) -> AuditStatus {
        let counters = &self.shared.counters;
        let last = crate::sync::lock(&self.shared.last_error).clone();
        let (last_error_time, last_error) = last.unzip();
        AuditStatus {
            destination: self.destination.clone(),
            on_loss: self.options.on_loss,
            healthy: !self.enabled || (self.writer.is_some() && !self.failing()),
            written: counters.written.get(),
            dropped_buffer_full: counters.dropped(LossReason::BufferFull),
            dropped_write_error: counters.dropped(LossReason::WriteError),
            buffered_records: counters.buffered_records.get(),
            buffered_bytes: counters.buffered_bytes.get(),
            last_error,
            last_error_time,
        }
    }

    fn failing(&self) -> bool {
        self.shared.write_failing.load(Ordering::Acquire)
            || self.shared.saturated.load(Ordering::Acquire)
    }

    /// Wait until every buffered record is written or lost, at most `timeout`; whether it was.
    /// After a flush that timed out, dropping the log does not wait again.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.counters.buffered_records.get() > 0 {
            if Instant::now() >= deadline {
                self.shared.abandoned.store(true, Ordering::Release);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Whether the loss policy refuses changes before trying: `audit-log-on-loss: fail` while the
    /// destination is failing (this record would most likely be lost too). The record of a
    /// refused request then says it was refused.
    pub fn refuses_now(&self) -> bool {
        self.enabled
            && self.options.on_loss == LossPolicy::Fail
            && self.shared.write_failing.load(Ordering::Acquire)
    }

    /// Whether a record that could not be kept refuses its request (`audit-log-on-loss: fail`).
    pub fn refuses_unrecorded(&self) -> bool {
        self.enabled && self.options.on_loss == LossPolicy::Fail
    }

    /// Record one decided request; `body` is the request as received. Never blocks: a record
    /// that cannot be buffered is counted as lost and `false` returned; what the answer then
    /// becomes is the caller's (see `refuses_unrecorded`).
    pub fn record(&self, reviewed: &Reviewed, body: &[u8], latency: Duration) -> bool {
        if !self.enabled {
            return true;
        }
        match self.line(reviewed, body, latency) {
            Some(line) => self.offer(line),
            None => {
                self.shared.lost(LossReason::WriteError, None);
                false
            }
        }
    }

    fn line(&self, reviewed: &Reviewed, body: &[u8], latency: Duration) -> Option<Vec<u8>> {
        let mut record = AuditRecord::new(reviewed, latency);
        let raw;
        if self.options.include_requests {
            if body.len() > self.options.max_request_bytes {
                record.request_omitted = Some(format!(
                    "request of {} bytes exceeds the {} byte limit",
                    body.len(),
                    self.options.max_request_bytes
                ));
            } else {
                raw = std::str::from_utf8(body)
                    .ok()
                    .and_then(|text| RawValue::from_string(text.to_string()).ok());
                match &raw {
                    Some(value) => record.request = Some(value),
                    None => record.request_omitted = Some("request is not valid JSON text".into()),
                }
            }
        }
        // Room for a record (and the request it quotes) without growing as it is written.
        let quoted = record.request.map_or(0, |raw| raw.get().len());
        let mut line = Vec::with_capacity(1024 + quoted);
        match record.write(&mut line) {
            Ok(()) => {
                line.push(b'\n');
                Some(line)
            }
            Err(error) => {
                tracing::error!(%error, "cannot serialise audit record");
                None
            }
        }
    }

    /// Hand a line to the writer; false (and counted) when it cannot be kept.
    fn offer(&self, line: Vec<u8>) -> bool {
        let counters = &self.shared.counters;
        let Some(sender) = self.writer.as_ref().and_then(|w| w.sender.as_ref()) else {
            self.shared.lost(LossReason::WriteError, None);
            return false;
        };
        let len = i64::try_from(line.len()).unwrap_or(i64::MAX);
        let budget = i64::try_from(self.options.buffer_bytes).unwrap_or(i64::MAX);
        let before = counters.buffered_bytes.inc_by(len);
        // A record larger than the whole budget still goes when nothing else waits.
        if before > 0 && before.saturating_add(len) > budget {
            counters.buffered_bytes.dec_by(len);
            self.shared.saturated.store(true, Ordering::Release);
            self.shared.lost(LossReason::BufferFull, None);
            return false;
        }
        counters.buffered_records.inc();
        match sender.try_send(line) {
            Ok(()) => {
                self.shared.saturated.store(false, Ordering::Release);
                true
            }
            Err(refused) => {
                counters.buffered_records.dec();
                counters.buffered_bytes.dec_by(len);
                match refused {
                    TrySendError::Full(_) => {
                        self.shared.saturated.store(true, Ordering::Release);
                        self.shared.lost(LossReason::BufferFull, None);
                    }
                    TrySendError::Disconnected(_) => {
                        self.shared.lost(LossReason::WriteError, None);
                    }
                }
                false
            }
        }
    }
}

impl Drop for AuditLog {
    /// Let the writer finish what is buffered, for at most `DRAIN_TIMEOUT` (a stalled destination
    /// must not hold up shutdown); what is left then is reported.
    fn drop(&mut self) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        writer.sender = None;
        let Some(thread) = writer.thread.take() else {
            return;
        };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !thread.is_finished() {
            if self.shared.abandoned.load(Ordering::Acquire) {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    buffered = self.shared.counters.buffered_records.get(),
                    "audit records still buffered at shutdown are lost"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
    }
}

#[cfg(test)]
#[path = "../unit_tests/audit_tests.rs"]
mod tests;
