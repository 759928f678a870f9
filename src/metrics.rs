//! Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! Every label value comes from a closed set (known kinds, actions, decisions, modes, loaded
//! policy ids), never from the request: a client must not be able to grow `/metrics`.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::audit::AuditLog;
use crate::respond::Reviewed;
use crate::vocabulary::Kind;
use crate::{FastHash, sync};

/// Label value for anything outside a closed set.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `Application`, `Deployment`, `Rollout` (by resource, so `deployments/scale` counts as
    /// `Deployment`) or `other`.
    pub kind: &'static str,
    /// A recognised action, or empty when none was recognised.
    pub action: &'static str,
    pub decision: &'static str,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub action: &'static str,
    /// What the match did: enforce, warn or audit.
    pub mode: &'static str,
    /// What the policy's own `@enforcement` says it would do: an audit rollout shows here as
    /// `declared="enforce"` with `mode="audit"` under a global audit mode, and a policy marked
    /// `@enforcement("audit")` as `declared="audit"`.
    pub declared: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Known<RequestLabels>,
    policy_matches: Known<PolicyLabels>,
    decision_cache_hits: Counter,
    decision_cache_misses: Counter,
    latency: Family<WebhookLabels, Histogram, fn() -> Histogram>,
    validate_latency: Histogram,
    rejected: Family<WebhookLabels, Counter>,
    pub patches: Counter,
    policy_reloads: Family<ResultLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    policy_reloads_held: Family<ReasonLabels, Counter>,
    /// When the serving certificate in use expires (Unix seconds); 0 before one is loaded.
    pub tls_certificate_expiry: Gauge,
    pub namespace_cache_synced: Gauge,
    namespace_cache_errors: Counter,
    pub limits: LimitMetrics,
    pub policy_reports: PolicyReportMetrics,
}

/// A counter family whose series are counted on every request: each label set's counter (the
/// family's own, so both count together) is kept here once created, found again by a fast hash
/// instead of the family's lookup (SipHash of every label, then its lock). Label values come
/// from closed sets, so this holds no more series than the family.
struct Known<S> {
    family: Family<S, Counter>,
    series: RwLock<HashMap<S, Counter, FastHash>>,
}

impl<S> Known<S>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    fn new(family: Family<S, Counter>) -> Self {
        Self {
            family,
            series: RwLock::default(),
        }
    }

    fn inc(&self, labels: &S) {
        if let Some(counter) = sync::read(&self.series).get(labels) {
            counter.inc();
            return;
        }
        let counter = self.family.get_or_create_owned(labels);
        counter.inc();
        sync::write(&self.series).insert(labels.clone(), counter);
    }
}

/// Register `metric` under `name` and hand it back (a metric is a shared handle).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~0.8 s: decisions take tens of microseconds, so the low end must be fine-grained.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guardrails");
        registry.register_collector(Box::new(LogLinesDropped));
        let decision_cache = registered(
            &mut registry,
            "decision_cache_requests",
            "Decided requests by whether their decision was remembered (hit) or evaluated (miss)",
            Family::<ResultLabels, Counter>::default(),
        );
        let latency = registered(
            &mut registry,
            "request_duration_seconds",
            "Time to parse, decide and answer one request",
            Family::<WebhookLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
        );
        Self {
            requests: Known::new(registered(
                &mut registry,
                "admission_requests",
                "Decided admission requests, one per recognised action",
                Family::<RequestLabels, Counter>::default(),
            )),
            policy_matches: Known::new(registered(
                &mut registry,
                "policy_matches",
                "Forbid policies that matched, by policy id and effective mode",
                Family::<PolicyLabels, Counter>::default(),
            )),
            decision_cache_hits: decision_cache
                .get_or_create_owned(&ResultLabels { result: "hit" }),
            decision_cache_misses: decision_cache
                .get_or_create_owned(&ResultLabels { result: "miss" }),
            validate_latency: latency.get_or_create_owned(&WebhookLabels {
                webhook: "validate",
            }),
            latency,
            rejected: registered(
                &mut registry,
                "rejected_requests",
                "Bodies that were not AdmissionReviews (answered 400)",
                Family::<WebhookLabels, Counter>::default(),
            ),
            patches: registered(
                &mut registry,
                "mutations",
                "Mutating responses that carried a patch",
                Counter::default(),
            ),
            policy_reloads: registered(
                &mut registry,
                "policy_reloads",
                "Policy and config reloads by result",
                Family::<ResultLabels, Counter>::default(),
            ),
            tls_reloads: registered(
                &mut registry,
                "tls_certificate_reloads",
                "TLS certificate reloads by result",
                Family::<ResultLabels, Counter>::default(),
            ),
            policy_reloads_held: registered(
                &mut registry,
                "policy_reloads_held",
                "Changes on disk held back until they stayed unchanged for the settle interval, by what they take away",
                Family::<ReasonLabels, Counter>::default(),
            ),
            tls_certificate_expiry: registered(
                &mut registry,
                "tls_certificate_expiry_timestamp_seconds",
                "When the serving certificate in use expires (Unix time)",
                Gauge::default(),
            ),
            namespace_cache_synced: registered(
                &mut registry,
                "namespace_cache_synced",
                "1 once the live namespace cache has synced",
                Gauge::default(),
            ),
            namespace_cache_errors: registered(
                &mut registry,
                "namespace_cache_errors",
                "Errors watching namespaces (the last cache keeps serving)",
                Counter::default(),
            ),
            limits: LimitMetrics::register(&mut registry),
            policy_reports: PolicyReportMetrics::register(&mut registry),
            registry,
        }
    }

    pub fn record_review(&self, reviewed: &Reviewed, seconds: f64) {
        self.validate_latency.observe(seconds);
        let decision = reviewed.verdict.as_str();
        let request = &reviewed.request;
        let kind = Kind::from_resource(&request.resource.group, &request.resource.resource)
            .map_or(OTHER, Kind::as_str);
        let Some(outcome) = &reviewed.outcome else {
            self.requests.inc(&RequestLabels {
                kind,
                action: "",
                decision,
                mode: "",
            });
            return;
        };
        if outcome.unsupported.is_none() {
            match outcome.remembered {
                true => self.decision_cache_hits.inc(),
                false => self.decision_cache_misses.inc(),
            };
        }
        let actions = outcome
            .recognition
            .as_ref()
            .map_or(&[][..], |r| &r.actions[..]);
        // A request with no action is counted once, under `action=""`.
        let named = actions.iter().map(|a| a.as_str());
        for action in named.chain(actions.is_empty().then_some("")) {
            self.requests.inc(&RequestLabels {
                kind,
                action,
                decision,
                mode: outcome.mode.as_str(),
            });
        }
        for m in &outcome.matches {
            self.policy_matches.inc(&PolicyLabels {
                policy: m.policy.clone(),
                action: m.action.as_str(),
                mode: m.effective.as_str(),
                declared: m.declared.as_str(),
            });
        }
    }

    pub fn record_mutation(&self, seconds: f64, patched: bool) {
        self.latency
            .get_or_create(&WebhookLabels { webhook: "mutate" })
            .observe(seconds);
        if patched {
            self.patches.inc();
        }
    }

    pub fn record_rejected(&self, webhook: &'static str) {
        self.rejected
            .get_or_create(&WebhookLabels { webhook })
            .inc();
    }

    pub fn record_policy_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.policy_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn record_reload_held(&self, reason: &'static str) {
        self.policy_reloads_held
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn record_tls_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn record_namespace_cache_error(&self) {
        self.namespace_cache_errors.inc();
    }

    /// These metrics plus the audit log's counters.
    pub fn with_audit(audit: &AuditLog) -> Self {
        let mut metrics = Self::new();
        let counters = audit.counters();
        let registry = &mut metrics.registry;
        registry.register(
            "audit_records_written",
            "Audit records written to the destination",
            counters.written.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Audit records lost: buffer_full (destination slow or stalled) or write_error",
            counters.dropped.clone(),
        );
        registry.register(
            "audit_reopens",
            "Audit log reopened (SIGHUP, rotation, after a failed write)",
            counters.reopens.clone(),
        );
        registry.register(
            "audit_torn_tails",
            "Audit log files found ending mid-line when opened (a record torn by an earlier process); ended with a newline",
            counters.torn_tails.clone(),
        );
        registry.register(
            "audit_buffered_records",
            "Audit records waiting to be written",
            counters.buffered_records.clone(),
        );
        registry.register(
            "audit_buffered_bytes",
            "Bytes of audit records waiting to be written",
            counters.buffered_bytes.clone(),
        );
        metrics
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Lines the non-blocking log writer dropped, set once by `cli::init_logging`.
static LOG_LINES_DROPPED: OnceLock<tracing_appender::non_blocking::ErrorCounter> = OnceLock::new();

/// Report `counter` as `guardrails_log_lines_dropped_total`.
pub fn count_dropped_log_lines(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = LOG_LINES_DROPPED.set(counter);
}

#[derive(Debug)]
struct LogLinesDropped;

impl Collector for LogLinesDropped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dropped = LOG_LINES_DROPPED
            .get()
            .map_or(0, |counter| counter.dropped_lines() as u64);
        let counter = ConstCounter::new(dropped);
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and shedding (server side): every label comes from a fixed set of `&'static str`.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Counters and gauges for the server's limits: what was shed or refused, and how full it is.
#[derive(Debug, Default)]
pub struct LimitMetrics {
    /// Requests shed (HTTP 429/503): `queue`, `memory`, `deadline`.
    pub shed: Family<ReasonLabels, Counter>,
    /// Requests refused for their size or shape: `body-size` (413), `slow-body` (408),
    /// `limit` (JSON values, groups, userInfo, uid: 400).
    pub refused: Family<ReasonLabels, Counter>,
    /// Connections closed by the server: `idle`, `first-request`, `pressure` (at the cap),
    /// `handshake` (TLS failed or timed out), `drain`.
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Times the connection cap was reached (accepting pauses until one closes).
    pub connection_limit_reached: Counter,
    pub connections_open: Gauge,
    /// Bytes reserved from the memory budget by requests in flight.
    pub memory_reserved_bytes: Gauge,
    /// Requests waiting for a decision slot.
    pub decisions_queued: Gauge,
}

impl LimitMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "shed_requests",
            "Requests shed by the limits (answered 429 or 503), by reason",
            metrics.shed.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused for their size or shape (413, 408 or 400), by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed by the server, by reason",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "connection_limit_reached",
            "Times the connection cap was reached",
            metrics.connection_limit_reached.clone(),
        );
        registry.register(
            "connections_open",
            "Open connections (webhook and probe ports)",
            metrics.connections_open.clone(),
        );
        registry.register(
            "memory_reserved_bytes",
            "Bytes of the memory budget reserved by requests in flight",
            metrics.memory_reserved_bytes.clone(),
        );
        registry.register(
            "decisions_queued",
            "Requests waiting for a decision slot",
            metrics.decisions_queued.clone(),
        );
        metrics
    }

    pub fn record_shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn record_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn record_connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

// ---------------------------------------------------------------------------------------------
// PolicyReports (`serve --policy-reports`): every label comes from a fixed set of `&'static str`.

/// Why a result did not reach a report: the `reason` of
/// `guardrails_policy_report_results_dropped_total`.
pub mod policy_report_dropped {
    /// The queue from the request path to the writer task was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// `policy_reports::MAX_PENDING_RESULTS` results were already waiting to be written.
    pub const PENDING_FULL: &str = "pending_full";
    /// Newer results of the same namespace pushed it out of the per-namespace bound before it was
    /// written.
    pub const EVICTED: &str = "evicted";
    /// Their namespace was deleted (or is being deleted) before they were written.
    pub const NAMESPACE_GONE: &str = "namespace_gone";
    pub const ALL: [&str; 4] = [QUEUE_FULL, PENDING_FULL, EVICTED, NAMESPACE_GONE];
}

/// What `policy_reports` did: reports written, write failures, results that never made it.
#[derive(Debug, Default)]
pub struct PolicyReportMetrics {
    /// One per report write: `written`, `conflict` (another writer changed it first; retried at
    /// the next interval), `error` (any other API error, e.g. no RBAC or no CRD; retried too).
    pub writes: Family<ResultLabels, Counter>,
    /// Results that reached no report, by reason (see `policy_report_dropped`).
    pub dropped: Family<ReasonLabels, Counter>,
    /// Namespaces whose report waits to be written.
    pub pending_namespaces: Gauge,
}

impl PolicyReportMetrics {
    /// The write results, each series present from the start.
    pub const WRITE_RESULTS: [&'static str; 3] = ["written", "conflict", "error"];

    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        for result in Self::WRITE_RESULTS {
            drop(metrics.writes.get_or_create(&ResultLabels { result }));
        }
        for reason in policy_report_dropped::ALL {
            drop(metrics.dropped.get_or_create(&ReasonLabels { reason }));
        }
        registry.register(
            "policy_report_writes",
            "PolicyReport writes by result: written, conflict (retried), error (retried)",
            metrics.writes.clone(),
        );
        registry.register(
            "policy_report_results_dropped",
            "Policy report results that reached no report: queue_full, pending_full, evicted, namespace_gone",
            metrics.dropped.clone(),
        );
        registry.register(
            "policy_report_pending_namespaces",
            "Namespaces whose PolicyReport waits to be written",
            metrics.pending_namespaces.clone(),
        );
        metrics
    }

    pub fn record_write(&self, result: &'static str) {
        self.writes.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn record_dropped(&self, reason: &'static str, results: u64) {
        if results > 0 {
            self.dropped
                .get_or_create(&ReasonLabels { reason })
                .inc_by(results);
        }
    }
}
