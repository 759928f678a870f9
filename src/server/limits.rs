//! Admission control for the webhook routes: a memory budget, a bounded pool of decision slots
//! with a short queue, and a deadline per request. What does not fit is shed at once with an
//! answer the API server understands (see `server::shed_response`) instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::{JsonCounts, MAX_BODY_BYTES, MAX_JSON_OBJECTS, MAX_JSON_VALUES};
use crate::units::{parse_bytes, parse_duration};

/// Every limit of `serve`, with its default. The README's "Limits and shedding" lists them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Largest request body; larger ones get HTTP 413.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "4Mi", env = "GUARDRAILS_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Decisions running at once on their own threads [default: the number of CPUs, at least 2;
    /// also what 0 means].
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        env = "GUARDRAILS_DECISION_WORKERS"
    )]
    pub decision_workers: usize,
    /// Requests waiting for memory or a decision slot; more are shed with HTTP 429.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUE, env = "GUARDRAILS_MAX_QUEUE")]
    pub max_queue: usize,
    /// Deadline per request from its arrival: reading, waiting and deciding. Keep it below the
    /// webhook's timeoutSeconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "4s", env = "GUARDRAILS_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,
    /// Estimated bytes all requests in flight may hold; beyond it they wait, then get HTTP 429.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "128Mi", env = "GUARDRAILS_MEMORY_BUDGET")]
    pub memory_budget: usize,
    /// Open TLS connections (lowered to RLIMIT_NOFILE - 128); at the cap idle ones are closed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, env = "GUARDRAILS_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Close a connection with no request in flight for this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s", env = "GUARDRAILS_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// Time a new connection has for its TLS handshake; at the connection cap, connections still
    /// in their handshake are closed first (oldest first).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s", env = "GUARDRAILS_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Duration,
    /// Time a new connection has for its TLS handshake and first request.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", env = "GUARDRAILS_FIRST_REQUEST_TIMEOUT")]
    pub first_request_timeout: Duration,
    /// Connections the kernel queues before they are accepted, on each listener (capped by
    /// net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LISTEN_BACKLOG, env = "GUARDRAILS_LISTEN_BACKLOG")]
    pub listen_backlog: u32,
    /// On SIGTERM, keep serving this long with /readyz failing before closing the listener.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s", env = "GUARDRAILS_SHUTDOWN_DELAY")]
    pub shutdown_delay: Duration,
    /// Then, time to finish the requests already received before exiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", env = "GUARDRAILS_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
}

/// Bytes every request is charged on arrival: headers, task, buffers.
pub const BASE_REQUEST_BYTES: usize = 16 * 1024;
/// The body is held while its parsed form, the audit line and the answer are built.
pub const BODY_COPIES: usize = 2;
/// Parsed, every JSON value costs a `serde_json::Value` and its share of the array or map
/// holding it; every object member a key and a map slot; every object a map node. Measured
/// (see README, "Limits and shedding") and rounded up.
pub const BYTES_PER_JSON_VALUE: usize = 80;
pub const BYTES_PER_JSON_MEMBER: usize = 80;
pub const BYTES_PER_JSON_OBJECT: usize = 400;

/// Request headers a connection may buffer (HTTP/1.1) or a stream may carry (HTTP/2).
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;
pub const DEFAULT_MAX_QUEUE: usize = 64;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_MEMORY_BUDGET: usize = 128 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections the plain-HTTP probe port accepts (kubelet and scrapers need a few).
pub const PROBE_MAX_CONNECTIONS: usize = 32;
/// File descriptors kept free below RLIMIT_NOFILE: the probe port's connections, policy
/// files, watchers, the audit log and the listeners.
pub const RESERVED_FDS: usize = PROBE_MAX_CONNECTIONS + 96;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake takes a few milliseconds on a cluster network; a second is generous.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_BODY_BYTES,
            decision_workers: default_decision_workers(),
            max_queue: DEFAULT_MAX_QUEUE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Decisions are CPU-bound: one per core (at least 2, so one slow request never blocks all).
pub fn default_decision_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .max(2)
}

/// Estimated bytes a request of `body_bytes` holding `counts` takes while it is decided.
pub fn estimate(body_bytes: usize, counts: JsonCounts) -> usize {
    BASE_REQUEST_BYTES
        .saturating_add(body_bytes.saturating_mul(BODY_COPIES))
        .saturating_add(counts.values.saturating_mul(BYTES_PER_JSON_VALUE))
        .saturating_add(counts.members.saturating_mul(BYTES_PER_JSON_MEMBER))
        .saturating_add(counts.objects.saturating_mul(BYTES_PER_JSON_OBJECT))
}

/// The soft RLIMIT_NOFILE of this process, if it has one.
pub fn open_file_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.and_then(|n| usize::try_from(n).ok())
}

impl Limits {
    /// Clamp what must hold together, and say what was changed (for a log line each):
    /// connections below the fd limit, and a budget that admits the largest single request.
    pub fn normalise(&mut self, open_files: Option<usize>) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(files) = open_files {
            let most = files.saturating_sub(RESERVED_FDS).max(1);
            if self.max_connections > most {
                notes.push(format!(
                    "max connections lowered from {} to {most}: RLIMIT_NOFILE is {files}, {RESERVED_FDS} kept for files",
                    self.max_connections
                ));
                self.max_connections = most;
            }
        }
        let least = self.least_memory_budget();
        if self.memory_budget < least {
            notes.push(format!(
                "memory budget raised from {} to {least} bytes: the largest single request (a {}-byte body) must fit beside the bodies waiting",
                self.memory_budget, self.max_body_bytes
            ));
            self.memory_budget = least;
        }
        if self.decision_workers == 0 {
            self.decision_workers = default_decision_workers();
        }
        self.max_connections = self.max_connections.max(1);
        notes
    }

    /// The smallest budget that always admits the largest request: bodies still arriving or
    /// waiting hold at most 1/RECEIVING_SHARE of it (plus their first bytes), the rest must fit
    /// the largest estimate.
    pub fn least_memory_budget(&self) -> usize {
        let waiting = self
            .max_queue
            .saturating_mul(SMALL_BODY_BYTES + BASE_REQUEST_BYTES);
        self.largest_request()
            .saturating_add(waiting)
            .saturating_mul(RECEIVING_SHARE)
            / (RECEIVING_SHARE - 1)
    }

    /// The estimate for the largest request the limits allow.
    pub fn largest_request(&self) -> usize {
        // Every value at most two bytes of text; members are values too.
        let values = MAX_JSON_VALUES.min(self.max_body_bytes / 2 + 1);
        estimate(
            self.max_body_bytes,
            JsonCounts {
                values,
                members: values,
                objects: MAX_JSON_OBJECTS.min(values),
            },
        )
    }
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue for decision slots was full.
    Queue,
    /// The memory budget could not hold the request (before its deadline).
    Memory,
    /// The deadline passed while the request waited for a slot.
    Deadline,
}

impl Shed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Memory => "memory",
            Self::Deadline => "deadline",
        }
    }
}

/// Share of the memory budget (1/n) that large bodies still being received may hold together:
/// the rest is kept for requests that have arrived in full, so a flood of uploads cannot
/// starve decisions.
pub const RECEIVING_SHARE: usize = 4;
/// The first bytes of every body are charged to the budget only, not to the receiving share:
/// reviews are usually a few KiB, so uploads of large bodies cannot crowd them out.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Shared admission state: the budget, the decision slots and the queue.
#[derive(Debug)]
pub struct Gate {
    pub limits: Limits,
    reserved: Arc<Counter>,
    receiving: Arc<Counter>,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

/// Bytes charged against a limit.
#[derive(Debug)]
struct Counter {
    used: AtomicUsize,
    limit: usize,
    /// Woken whenever bytes are given back, for requests waiting for room.
    released: tokio::sync::Notify,
}

impl Counter {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            released: tokio::sync::Notify::new(),
        })
    }

    fn charge(&self, more: usize) -> Result<(), Shed> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(more);
            if next > self.limit {
                return Err(Shed::Memory);
            }
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.released.notify_waiters();
        }
    }
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.decision_workers)),
            reserved: Counter::new(limits.memory_budget),
            receiving: Counter::new(limits.memory_budget / RECEIVING_SHARE),
            queued: AtomicUsize::new(0),
            limits,
        }
    }

    /// Bytes currently reserved by requests in flight.
    pub fn reserved(&self) -> usize {
        self.reserved.used.load(Ordering::Relaxed)
    }

    /// Requests waiting for a decision slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Charge `bytes` to the budget for a new request, or refuse.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, Shed> {
        let mut reservation = Reservation {
            total: self.reserved.clone(),
            receiving: self.receiving.clone(),
            bytes: 0,
            receiving_bytes: 0,
        };
        reservation.grow(bytes)?;
        Ok(reservation)
    }

    /// Grow `reservation` by `more` bytes, waiting in the queue until `deadline` for other
    /// requests to give memory back if the budget is full.
    pub async fn grow_or_wait(
        &self,
        reservation: &mut Reservation,
        more: usize,
        deadline: Instant,
    ) -> Result<(), Shed> {
        if reservation.grow(more).is_ok() {
            return Ok(());
        }
        let _queued = self.enqueue()?;
        let until = tokio::time::Instant::from_std(deadline);
        loop {
            // Registered before trying, so a release between the try and the wait is not missed.
            let released = self.reserved.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if reservation.grow(more).is_ok() {
                return Ok(());
            }
            if tokio::time::timeout_at(until, released).await.is_err() {
                return Err(Shed::Memory);
            }
        }
    }

    /// A decision slot, waiting in the queue until `deadline` if none is free.
    pub async fn slot(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, Shed> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _queued = self.enqueue()?;
        let waited = tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            self.slots.clone().acquire_owned(),
        )
        .await;
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Shed::Deadline),
        }
    }

    /// A place in the queue, or `Shed::Queue` if it is full.
    fn enqueue(&self) -> Result<Queued<'_>, Shed> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::Queue);
        }
        Ok(Queued(&self.queued))
    }
}

/// A place in the queue, given back when dropped.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes charged to the memory budget (and, while the body arrives, to the receiving share),
/// given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    total: Arc<Counter>,
    receiving: Arc<Counter>,
    bytes: usize,
    receiving_bytes: usize,
}

impl Reservation {
    /// The body has grown from `before` to `after` bytes: charge the difference (beyond
    /// `SMALL_BODY_BYTES` also to the receiving share), or refuse (keeping what is held).
    pub fn body_grew(&mut self, before: usize, after: usize) -> Result<(), Shed> {
        let small = |n: usize| n.min(SMALL_BODY_BYTES);
        let large = |n: usize| n.saturating_sub(SMALL_BODY_BYTES);
        self.grow(small(after).saturating_sub(small(before)))?;
        self.grow_receiving(large(after).saturating_sub(large(before)))
    }

    /// Charge `more` bytes of a body still arriving, or refuse (keeping what is held).
    fn grow_receiving(&mut self, more: usize) -> Result<(), Shed> {
        self.receiving.charge(more)?;
        if let Err(shed) = self.total.charge(more) {
            self.receiving.release(more);
            return Err(shed);
        }
        self.receiving_bytes += more;
        self.bytes += more;
        Ok(())
    }

    /// The body has arrived: it no longer counts against the receiving share.
    pub fn received(&mut self) {
        self.receiving.release(self.receiving_bytes);
        self.receiving_bytes = 0;
    }

    /// Charge `more` bytes, or refuse (keeping what is already held) if the budget is full.
    pub fn grow(&mut self, more: usize) -> Result<(), Shed> {
        self.total.charge(more)?;
        self.bytes += more;
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.receiving.release(self.receiving_bytes);
        self.total.release(self.bytes);
    }
}

/// Logs a limit that bites at most once per interval, with how often it bit meanwhile, so an
/// attack cannot turn into a log flood (which would stall on a slow log collector).
#[derive(Debug)]
pub struct Throttle {
    started: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            started: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(times suppressed since the last log)` when it is time to log again.
    pub fn ready(&self) -> Option<u64> {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_ms),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
#[path = "../unit_tests/limits_tests.rs"]
mod tests;
