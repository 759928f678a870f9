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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::core::admission::AdmissionResponse;
use kube::core::response::StatusSummary;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decide::PolicyMatch;
use crate::respond::Reviewed;

/// Requests larger than this are not copied into the audit log (the record says so instead).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: String,
    pub uid: &'a str,
    pub user: &'a str,
    pub principal: &'a str,
    pub delegator: Option<&'a str>,
    pub groups: &'a [String],
    pub teams: &'a [String],
    pub kind: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub operation: String,
    pub sub_resource: Option<&'a str>,
    pub actions: Vec<&'static str>,
    /// `allow`, `allow-warn`, `allow-audit`, `deny`, `unsupported` or `error`.
    pub decision: &'a str,
    pub allowed: bool,
    /// Whether an enforced policy decided (i.e. the request was denied by a policy).
    pub enforced: bool,
    pub matches: &'a [PolicyMatch],
    pub warnings: &'a [String],
    pub dry_run: bool,
    pub latency_us: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_omitted: Option<String>,
}

/// The fields `replay` reads back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedDecision {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub operation: String,
    pub allowed: bool,
    #[serde(default)]
    pub matches: Vec<PolicyMatch>,
    pub request: Option<Box<RawValue>>,
}

impl<'a> AuditRecord<'a> {
    pub fn new(reviewed: &'a Reviewed, latency: Duration) -> Self {
        let request = &reviewed.request;
        let outcome = reviewed.outcome.as_ref();
        let identity = outcome.and_then(|o| o.identity.as_ref());
        let response = reviewed.review.response.as_ref();
        Self {
            time: jiff::Timestamp::now().to_string(),
            uid: &request.uid,
            user: request.user_info.username.as_deref().unwrap_or(""),
            principal: identity.map_or("", |i| i.username.as_str()),
            delegator: identity.and_then(|i| i.delegator.as_deref()),
            groups: request.user_info.groups.as_deref().unwrap_or(&[]),
            teams: identity.map_or(&[], |i| i.teams.as_slice()),
            kind: &request.kind.kind,
            resource: &request.resource.resource,
            namespace: request.namespace.as_deref().unwrap_or(""),
            name: &request.name,
            operation: format!("{:?}", request.operation).to_uppercase(),
            sub_resource: request.sub_resource.as_deref(),
            actions: outcome
                .and_then(|o| o.recognition.as_ref())
                .map(|r| r.actions.iter().map(|a| a.as_str()).collect())
                .unwrap_or_default(),
            decision: response
                .and_then(|r| r.audit_annotations.get("decision"))
                .map_or("", String::as_str),
            allowed: response.is_some_and(|r| r.allowed),
            enforced: outcome.is_some_and(|o| o.enforced().next().is_some()),
            matches: outcome.map_or(&[], |o| o.matches.as_slice()),
            warnings: response.and_then(|r| r.warnings.as_deref()).unwrap_or(&[]),
            dry_run: request.dry_run,
            latency_us: latency.as_micros(),
            request: None,
            request_omitted: None,
        }
    }
}

/// Memory the buffer may hold before records are lost (or, with `fail`, requests refused).
pub const DEFAULT_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// At most this many records wait, whatever their size.
const MAX_BUFFERED_RECORDS: usize = 16 * 1024;
/// How often the writer checks whether the file was renamed or deleted, and retries a destination
/// whose last write failed.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
/// The writer wakes at least this often to act on SIGHUP and rotation while no record comes.
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Most bytes of waiting records the writer joins into one write.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How long the writer lets records gather after a write of several (see `run_writer`).
const BATCH_LINGER: Duration = Duration::from_millis(2);
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

/// Where the writer thread puts lines: a file, stdout, or a test double.
pub trait AuditSink: Send + 'static {
    /// One write; may write part of `buf`, like `write(2)`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Open the destination anew (SIGHUP, rotation, after a failed write).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether the destination's name now points at another file or at none (rotation).
    fn moved(&self) -> bool {
        false
    }
    /// Whether the destination ends in the middle of a line (a torn record from before it was
    /// opened): the next record must start on a new line.
    fn ends_mid_line(&self) -> bool {
        false
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    // Readable too: the last byte tells whether an earlier process left a torn record.
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

struct FileSink {
    path: PathBuf,
    file: File,
}

impl AuditSink for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    #[cfg(unix)]
    fn moved(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Err(error), _) => error.kind() == io::ErrorKind::NotFound,
            (Ok(named), Ok(open)) => (named.dev(), named.ino()) != (open.dev(), open.ino()),
            (Ok(_), Err(_)) => false,
        }
    }

    #[cfg(unix)]
    fn ends_mid_line(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(length) = self.file.metadata().map(|m| m.len()) else {
            return false;
        };
        let mut last = [0u8; 1];
        length > 0 && self.file.read_exact_at(&mut last, length - 1).is_ok() && last[0] != b'\n'
    }
}

/// Stdout through a duplicate of fd 1: unbuffered (one write per line) and outside the process-wide
/// stdout lock, so a stalled reader blocks only the writer thread.
struct StdoutSink(Box<dyn Write + Send>);

impl StdoutSink {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
                return Self(Box::new(File::from(fd)));
            }
        }
        Self(Box::new(io::stdout()))
    }
}

impl AuditSink for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.0.write(buf)?;
        self.0.flush()?;
        Ok(written)
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
        match self.last_error.lock() {
            Ok(mut last) => *last = entry,
            Err(poisoned) => *poisoned.into_inner() = entry,
        }
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
    pub fn stdout(include_requests: bool, max_request_bytes: usize) -> Self {
        Self::to_stdout(AuditOptions {
            include_requests,
            max_request_bytes,
            ..AuditOptions::default()
        })
    }

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
        let last = match self.shared.last_error.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
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

    /// Record one decided request; `body` is the request as received. Never blocks: a record
    /// that cannot be buffered is counted as lost, and with `LossPolicy::Fail` the answer in
    /// `reviewed` becomes a denial (the record then says so).
    pub fn record(&self, reviewed: &mut Reviewed, body: &[u8], latency: Duration) {
        if !self.enabled {
            return;
        }
        let fail = self.options.on_loss == LossPolicy::Fail;
        // A destination that is failing now will most likely lose this record too.
        let refused = fail && self.shared.write_failing.load(Ordering::Acquire);
        if refused {
            refuse(reviewed);
        }
        let kept = match self.line(reviewed, body, latency) {
            Some(line) => self.offer(line),
            None => {
                self.shared.lost(LossReason::WriteError, None);
                false
            }
        };
        if !kept && fail && !refused {
            refuse(reviewed);
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
        match serde_json::to_vec(&record) {
            Ok(mut line) => {
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

/// The answer under `LossPolicy::Fail` when the record cannot be kept: no change is admitted
/// unrecorded, whatever the webhook's failurePolicy.
fn refuse(reviewed: &mut Reviewed) {
    let mut response = AdmissionResponse::from(&reviewed.request).deny(
        "Guardrails cannot write its audit log (audit-log-on-loss: fail), so it refuses changes until it can; see /readyz",
    );
    response.result.code = 503;
    response.result.status = Some(StatusSummary::Failure);
    response.result.reason = "ServiceUnavailable".into();
    response
        .audit_annotations
        .insert("decision".into(), "error".into());
    response
        .audit_annotations
        .insert("audit".into(), "unavailable".into());
    reviewed.review = crate::admission::into_review(response);
}

/// Write `buf` completely; on failure, how much of it was written.
fn write_fully(sink: &mut dyn AuditSink, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match sink.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(written) => done += written,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err((done, error)),
        }
    }
    Ok(())
}

/// The writer thread's side: whole lines, and a new line after any fragment.
struct LineWriter {
    sink: Box<dyn AuditSink>,
    /// A fragment of a line was written: the next record must start on a new line.
    fragment: bool,
}

impl LineWriter {
    fn new(sink: Box<dyn AuditSink>, shared: &Shared) -> Self {
        let mut writer = Self {
            sink,
            fragment: false,
        };
        writer.check_tail(shared);
        writer
    }

    /// A file that ends mid-line (a process that died or hit a full disk mid-write) gets its
    /// fragment terminated before our first record, which would otherwise be glued to it.
    fn check_tail(&mut self, shared: &Shared) {
        if !self.fragment && self.sink.ends_mid_line() {
            self.fragment = true;
            shared.counters.torn_tails.inc();
            tracing::warn!(
                "the audit log ends in a torn record from an earlier write: ending it with a newline; `guardrails replay` reports it as torn"
            );
        }
    }

    /// Write whole lines; on failure, how many bytes of them were written.
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), (usize, io::Error)> {
        if self.fragment {
            write_fully(self.sink.as_mut(), b"\n").map_err(|(_, error)| (0, error))?;
            self.fragment = false;
        }
        write_fully(self.sink.as_mut(), lines).inspect_err(|&(written, _)| {
            self.fragment = written > 0 && lines[written - 1] != b'\n';
        })
    }

    fn reopen(&mut self, shared: &Shared, why: &'static str) {
        let moved = self.sink.moved();
        match self.sink.reopen() {
            Ok(()) => {
                shared.counters.reopens.inc();
                // A new file starts clean; the fragment stays in the old one.
                if moved {
                    self.fragment = false;
                }
                tracing::info!(why, "audit log reopened");
                self.check_tail(shared);
            }
            Err(error) => {
                tracing::error!(%error, why, "cannot reopen the audit log; writing on to the open one");
                shared.set_error(format!("cannot reopen: {error}"));
            }
        }
    }
}

fn run_writer(sink: Box<dyn AuditSink>, receiver: Receiver<Vec<u8>>, shared: &Shared) {
    let mut writer = LineWriter::new(sink, shared);
    let mut last_check = Instant::now();
    let mut batch = Vec::new();
    loop {
        let received = receiver.recv_timeout(IDLE_WAKE);
        if shared.reopen_requested.swap(false, Ordering::AcqRel) {
            writer.reopen(shared, "SIGHUP");
            last_check = Instant::now();
        } else if last_check.elapsed() >= ROTATION_CHECK {
            last_check = Instant::now();
            if writer.sink.moved() {
                writer.reopen(shared, "renamed or deleted");
            } else if shared.write_failing.load(Ordering::Acquire) {
                writer.reopen(shared, "after a failed write");
            }
        }
        let line = match received {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Under load, lines arrive faster than one write each: whatever else is already
        // waiting goes out in the same write (still whole lines, in order).
        batch.clear();
        batch.extend_from_slice(&line);
        let mut lines: u64 = 1;
        while batch.len() < MAX_BATCH_BYTES {
            match receiver.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Err(_) => break,
            }
        }
        match writer.write_lines(&batch) {
            Ok(()) => {
                shared.counters.written.inc_by(lines);
                shared.write_failing.store(false, Ordering::Release);
            }
            Err((written, error)) => {
                // Lines wholly written before the failure were kept.
                let kept = batch[..written].iter().filter(|&&b| b == b'\n').count() as u64;
                shared.counters.written.inc_by(kept);
                shared.write_failing.store(true, Ordering::Release);
                for _ in kept..lines {
                    shared.lost(LossReason::WriteError, Some(&error));
                }
            }
        }
        shared
            .counters
            .buffered_records
            .dec_by(i64::try_from(lines).unwrap_or(i64::MAX));
        shared
            .counters
            .buffered_bytes
            .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
        // A burst must not keep a large buffer alive once it has passed.
        if batch.capacity() > MAX_BATCH_BYTES * 2 {
            batch = Vec::new();
        }
        // Under load, let records gather for a moment rather than being woken for each one:
        // a sender wakes the writer only when it waits in `recv`, and every wake-up costs the
        // request path a system call and both sides a context switch.
        if lines > 1 {
            std::thread::sleep(BATCH_LINGER);
        }
    }
}

#[cfg(test)]
#[path = "unit_tests/audit_tests.rs"]
mod tests;
