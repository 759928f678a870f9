//! The HTTPS server: thin axum handlers around `respond::review`, with bounded inputs and
//! admission control (see `limits`). Decisions run on a bounded pool of blocking threads, so the
//! async workers only move bytes and answer probes.
//!
//! Shedding answers HTTP 429 with `Retry-After: 1` (queue full, memory budget, deadline while
//! waiting) or 503 (a decision that overran the deadline): the API server's client retries a
//! 429 within the webhook's timeout, and otherwise treats the call as failed, so the
//! webhook's `failurePolicy` decides, as the operator chose. An AdmissionReview answer would
//! override that choice: `allowed: false` refuses even with `Ignore`, `allowed: true` lets an
//! unexamined write through even with `Fail`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{JsonCounter, JsonCounts};
use crate::audit::{AuditLog, DEFAULT_MAX_REQUEST_BYTES};
use crate::decide::Engine;
use crate::limits::{self, Gate, Limits, Reservation, Shed, Throttle};
use crate::metrics::Metrics;
use crate::reload::ReloadStatus;
use crate::respond;
use crate::tls::CertificateStatus;

pub use crate::connections::{ServerHandle, serve_tls};

/// Probes and metrics answer within this, whatever else is going on.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;
/// A body over the limit is still read (and dropped), up to this much, so that the client
/// gets a readable 413 instead of a connection reset (HTTP/1.1) or a stream error (HTTP/2).
pub const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;
/// The rest of a refused body is read (and dropped) at least this long, and until the
/// request's deadline, so that the answer reaches the client.
pub const SLOW_BODY_DRAIN: Duration = Duration::from_secs(1);
/// Suggested wait before retrying a shed request (seconds).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Shared by every handler: the current engine (swapped whole on reload), readiness, the audit
/// log, the reload status and the limits.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<ArcSwap<Engine>>,
    pub ready: Arc<AtomicBool>,
    /// Set on SIGTERM: `/readyz` fails so endpoints drop this pod while it still serves.
    pub draining: Arc<AtomicBool>,
    pub audit: Arc<AuditLog>,
    pub reload: Arc<Mutex<ReloadStatus>>,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<Gate>,
    /// The serving certificate's status, when one is followed; `/readyz` fails within
    /// `unready_before_expiry` of its expiry (see `with_certificate`).
    certificate: Option<Arc<Mutex<CertificateStatus>>>,
    unready_before_expiry: Duration,
    throttles: Arc<Throttles>,
}

/// One log throttle per kind of limit, so each still shows up when another floods.
struct Throttles {
    shed: Throttle,
    refused: Throttle,
}

impl AppState {
    pub fn new(engine: Engine) -> Self {
        Self::with_audit(engine, AuditLog::stdout(false, DEFAULT_MAX_REQUEST_BYTES))
    }

    pub fn with_audit(engine: Engine, audit: AuditLog) -> Self {
        Self {
            engine: Arc::new(ArcSwap::from_pointee(engine)),
            ready: Arc::new(AtomicBool::new(true)),
            draining: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::with_audit(&audit)),
            audit: Arc::new(audit),
            reload: Arc::new(Mutex::new(ReloadStatus::default())),
            gate: Arc::new(Gate::new(Limits::default())),
            certificate: None,
            unready_before_expiry: Duration::ZERO,
            throttles: Arc::new(Throttles {
                shed: Throttle::new(Duration::from_secs(5)),
                refused: Throttle::new(Duration::from_secs(5)),
            }),
        }
    }

    /// Report the serving certificate on `/readyz`, and fail readiness from `margin` before it
    /// expires unless a valid replacement was loaded by then: an expired certificate fails every
    /// handshake while the process looks healthy.
    pub fn with_certificate(
        mut self,
        status: Arc<Mutex<CertificateStatus>>,
        unready_before_expiry: Duration,
    ) -> Self {
        self.certificate = Some(status);
        self.unready_before_expiry = unready_before_expiry;
        self
    }

    /// The same state with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.gate = Arc::new(Gate::new(limits));
        self
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .merge(probe_routes())
        .with_state(state)
}

/// Probes and metrics only, for an optional plain-HTTP listener (kubelet probes, scrapers).
pub fn probe_router(state: AppState) -> Router {
    probe_routes().with_state(state)
}

/// Probes never wait for decisions (those run on their own threads), so they need no
/// concurrency limit; the timeout is a backstop.
fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            PROBE_TIMEOUT,
        ))
}

#[derive(Debug, Clone, Copy)]
enum Webhook {
    Validate,
    Mutate,
}

impl Webhook {
    fn as_str(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::Mutate => "mutate",
        }
    }
}

async fn validate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    admit(state, Webhook::Validate, &headers, body).await
}

async fn mutate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    admit(state, Webhook::Mutate, &headers, body).await
}

/// Why a body was not read in full.
enum BodyError {
    TooLarge,
    Slow,
    Shed(Shed),
    Broken,
}

/// Admission control around one webhook request: budget, body, slot, decision, each bounded
/// by one deadline that starts when the request arrives.
/// Bodies up to this size are decided on the thread that read them (see `admit`).
const INLINE_DECISION_BYTES: usize = limits::SMALL_BODY_BYTES;

async fn admit(state: AppState, webhook: Webhook, headers: &HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    let limits = &state.gate.limits;
    let deadline = arrived + limits.request_timeout;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();

    let reserved = if declared.is_some_and(|n| n > limits.max_body_bytes) {
        Err(BodyError::TooLarge)
    } else {
        // Only what arrives is charged: a declared length costs nothing until it is sent.
        state
            .gate
            .reserve(limits::BASE_REQUEST_BYTES)
            .map_err(BodyError::Shed)
    };
    let read = match reserved {
        Ok(mut reservation) => read_body(
            &mut stream,
            declared,
            &mut reservation,
            limits.max_body_bytes,
            deadline,
        )
        .await
        .map(|(body, counts)| (body, counts, reservation)),
        Err(error) => Err(error),
    };
    let (body, counts, mut reservation) = match read {
        Ok(read) => read,
        Err(error) => {
            // The rest of a refused body is read and dropped after the answer is sent, so the
            // client gets the answer instead of a reset (HTTP/1.1) or a stream error (HTTP/2),
            // and an HTTP/1.1 connection stays usable.
            // At least a moment more than the deadline, for a client that is merely slow.
            let until = deadline.max(Instant::now() + SLOW_BODY_DRAIN);
            if !matches!(error, BodyError::Broken) {
                tokio::spawn(drain(stream, until));
            }
            return body_error(&state, webhook, error);
        }
    };
    if let Err(error) = crate::admission::check_counts(&counts) {
        return bad_request(&state, webhook, &error, body.len(), arrived);
    }
    // Charge what the decision will hold before waiting for a slot, so that a queue of large
    // bodies can never leave a running decision short of budget. Until then the body stays in
    // the receiving share: bodies waiting for memory cannot take the room they wait for.
    let needed = limits::estimate(body.len(), counts);
    if needed > reservation.bytes() {
        let more = needed - reservation.bytes();
        if let Err(shed) = state
            .gate
            .grow_or_wait(&mut reservation, more, deadline)
            .await
        {
            return shed_response(&state, webhook, shed);
        }
    }
    reservation.received();

    let permit = match state.gate.slot(deadline).await {
        Ok(permit) => permit,
        Err(shed) => return shed_response(&state, webhook, shed),
    };
    // A decision started with almost no time left would be answered 503 and wasted: shed it
    // now (429, retried) and leave the slot to a request that can still make it.
    if deadline.saturating_duration_since(Instant::now()) < limits.request_timeout / 10 {
        return shed_response(&state, webhook, Shed::Deadline);
    }
    // A small body is decided in tens of microseconds: on this thread, where handing it to
    // another one and back would cost more than the decision. Larger ones run on the blocking
    // pool, so that they cannot hold up the threads serving connections and probes.
    if body.len() <= INLINE_DECISION_BYTES {
        let _held = (permit, reservation);
        return decide(&state, webhook, &body, arrived);
    }
    let task_state = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _held = (permit, reservation);
        decide(&task_state, webhook, &body, arrived)
    });
    match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), task).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::error!(%error, webhook = webhook.as_str(), "a decision failed");
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Guardrails failed while deciding this request".into(),
            )
        }
        // The decision keeps its slot and budget until it ends; the client is answered now.
        Err(_) => {
            state.metrics.limits.record_shed(Shed::Deadline.as_str());
            log_limit(
                &state.throttles.shed,
                webhook,
                "deadline",
                "a decision overran the request deadline",
            );
            plain_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Guardrails could not decide within {} ms",
                    limits.request_timeout.as_millis()
                ),
            )
        }
    }
}

/// Read the body, charging what arrives beyond the declared length to the budget.
async fn read_body(
    stream: &mut axum::body::BodyDataStream,
    declared: Option<usize>,
    reservation: &mut Reservation,
    max: usize,
    deadline: Instant,
) -> Result<(Bytes, JsonCounts), BodyError> {
    // A declared length is a hint, not a promise: allocate for it only up to a small size.
    let mut body: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limits::SMALL_BODY_BYTES));
    let mut counter = JsonCounter::default();
    let until = tokio::time::Instant::from_std(deadline);
    loop {
        let chunk = match tokio::time::timeout_at(until, stream.next()).await {
            Err(_) => return Err(BodyError::Slow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let length = body.len() + chunk.len();
        if length > max {
            return Err(BodyError::TooLarge);
        }
        reservation
            .body_grew(body.len(), length)
            .map_err(BodyError::Shed)?;
        counter.feed(&chunk);
        body.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(body), counter.counts()))
}

/// Read and drop the rest of a refused body, up to `MAX_DRAINED_BYTES` and the deadline.
async fn drain(mut stream: axum::body::BodyDataStream, deadline: Instant) {
    let until = tokio::time::Instant::from_std(deadline);
    let mut drained = 0usize;
    while drained < MAX_DRAINED_BYTES {
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(Some(Ok(chunk))) => drained += chunk.len(),
            _ => return,
        }
    }
}

/// The decision proper, holding a slot and the request's budget: parse,
/// decide, record and serialise.
fn decide(state: &AppState, webhook: Webhook, body: &[u8], arrived: Instant) -> Response {
    let started = Instant::now();
    let engine = state.engine.load();
    match webhook {
        Webhook::Validate => match respond::review(&engine, body) {
            Ok(mut reviewed) => {
                let elapsed = started.elapsed();
                // Never blocks; with audit-log-on-loss=fail it may turn the answer into an error.
                state.audit.record(&mut reviewed, body, elapsed);
                state
                    .metrics
                    .record_review(&reviewed, elapsed.as_secs_f64());
                json_response(&reviewed.review)
            }
            Err(error) => bad_request(state, webhook, &error, body.len(), arrived),
        },
        Webhook::Mutate => {
            match crate::mutate::review(&engine.config, &engine.live_namespaces.load(), body) {
                Ok((review, operations)) => {
                    state
                        .metrics
                        .record_mutation(started.elapsed().as_secs_f64(), operations > 0);
                    if operations > 0 {
                        tracing::info!(
                            uid = review["response"]["uid"].as_str().unwrap_or(""),
                            operations,
                            "patched"
                        );
                    }
                    json_response(&review)
                }
                Err(error) => bad_request(state, webhook, &error, body.len(), arrived),
            }
        }
    }
}

fn log_limit(throttle: &Throttle, webhook: Webhook, reason: &'static str, what: &str) {
    if let Some(suppressed) = throttle.ready() {
        tracing::warn!(
            webhook = webhook.as_str(),
            reason,
            suppressed,
            "{what} (similar events since the last such line: {suppressed})"
        );
    }
}

fn body_error(state: &AppState, webhook: Webhook, error: BodyError) -> Response {
    let limits = &state.gate.limits;
    let (status, reason, message) = match error {
        BodyError::Shed(shed) => return shed_response(state, webhook, shed),
        BodyError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-size",
            format!(
                "request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        ),
        BodyError::Slow => (
            StatusCode::REQUEST_TIMEOUT,
            "slow-body",
            format!(
                "request body was not received within {} ms",
                limits.request_timeout.as_millis()
            ),
        ),
        BodyError::Broken => (
            StatusCode::BAD_REQUEST,
            "broken-body",
            "the request body could not be read".to_string(),
        ),
    };
    state.metrics.limits.record_refused(reason);
    log_limit(&state.throttles.refused, webhook, reason, &message);
    plain_error(status, message)
}

/// A shed request: 429 with Retry-After (the API server may retry within its timeout), and
/// the reason, counted and logged.
fn shed_response(state: &AppState, webhook: Webhook, shed: Shed) -> Response {
    state.metrics.limits.record_shed(shed.as_str());
    let limits = &state.gate.limits;
    let message = match shed {
        Shed::Queue => format!(
            "Guardrails is overloaded: {} decisions running and {} waiting; retry",
            limits.decision_workers, limits.max_queue
        ),
        Shed::Memory => format!(
            "Guardrails is overloaded: its memory budget of {} bytes stayed in use for {} ms; retry",
            limits.memory_budget,
            limits.request_timeout.as_millis()
        ),
        Shed::Deadline => format!(
            "Guardrails is overloaded: no decision slot within {} ms; retry",
            limits.request_timeout.as_millis()
        ),
    };
    log_limit(&state.throttles.shed, webhook, shed.as_str(), &message);
    let mut response = plain_error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

fn plain_error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let limits = &state.metrics.limits;
    limits
        .memory_reserved_bytes
        .set(i64::try_from(state.gate.reserved()).unwrap_or(i64::MAX));
    limits
        .decisions_queued
        .set(i64::try_from(state.gate.queued()).unwrap_or(i64::MAX));
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

fn json_response(review: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(review) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serialise AdmissionReview response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialise response",
            )
                .into_response()
        }
    }
}

fn bad_request(
    state: &AppState,
    webhook: Webhook,
    error: &crate::admission::EnvelopeError,
    bytes: usize,
    arrived: Instant,
) -> Response {
    state.metrics.record_rejected(webhook.as_str());
    if matches!(error, crate::admission::EnvelopeError::TooComplex(_)) {
        state.metrics.limits.record_refused("limit");
    }
    // The error quotes the input at most `admission::MAX_QUOTED_CHARS` long.
    if let Some(suppressed) = state.throttles.refused.ready() {
        tracing::warn!(
            %error,
            bytes,
            webhook = webhook.as_str(),
            kind = error.kind(),
            elapsed_ms = arrived.elapsed().as_millis(),
            suppressed,
            "rejected request body"
        );
    }
    plain_error(StatusCode::BAD_REQUEST, error.to_string())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let engine = state.engine.load();
    let draining = state.draining.load(Ordering::Acquire);
    let reload = match state.reload.lock() {
        Ok(status) => status.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let certificate = state
        .certificate
        .as_ref()
        .map(|status| match status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        });
    let margin = i64::try_from(state.unready_before_expiry.as_secs()).unwrap_or(i64::MAX);
    let expiring = certificate
        .as_ref()
        .and_then(|status| status.not_after_unix)
        .is_some_and(|not_after| {
            jiff::Timestamp::now().as_second().saturating_add(margin) >= not_after
        });
    let ready = state.ready.load(Ordering::Acquire) && !draining && !expiring;
    // A failed reload does not make the pod unready: it keeps serving the last good policies,
    // and says so here. Nor does a failing audit log: every replica usually shares its cause
    // (stdout collector, disk), and all of them unready would block every change.
    let body = json!({
        "ready": ready,
        "draining": draining,
        "policies": engine.policies.policy_count(),
        "policySource": engine.policies.source,
        "mode": engine.mode,
        // What is being served, to compare with what was shipped (`guardrails check` prints the same).
        "loaded": {
            "policies": engine.policies.hash,
            "config": engine.config.hash,
            "at": engine.loaded_at.to_string(),
        },
        "reload": reload,
        "certificate": certificate.map(|status| json!({
            "notAfter": status.not_after,
            "expiring": expiring,
            "reloadsSucceeded": status.reloads_succeeded,
            "reloadsFailed": status.reloads_failed,
            "lastError": status.last_error,
        })),
        "audit": state.audit.status(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// SIGTERM and SIGINT, registered up front: a signal that arrives before anyone waits for it
/// is still seen (and never kills the process with the default action).
pub struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Register the handlers; call from within the runtime, before the listeners are bound.
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::error!(%error, signal = name, "cannot listen for the signal");
                    None
                }
            };
            Self {
                terminate: register(SignalKind::terminate(), "SIGTERM"),
                interrupt: register(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Wait for SIGTERM or Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.terminate) => {},
                () = recv(&mut self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// On SIGTERM or Ctrl-C: fail `/readyz` and keep serving for `delay` (endpoints and the API
/// server's connections move away meanwhile), then stop accepting and finish what was received.
/// A second signal skips the rest of the delay.
pub async fn drain_on_signal(
    mut signals: Signals,
    state: AppState,
    handle: ServerHandle,
    delay: Duration,
) {
    signals.next().await;
    state.draining.store(true, Ordering::Release);
    tracing::info!(
        delay_ms = delay.as_millis(),
        "shutting down: /readyz fails; still serving until the delay is over"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {},
        () = signals.next() => {
            tracing::info!("second signal: skipping the rest of the delay");
        },
    }
    tracing::info!(
        connections = handle.connection_count(),
        "no longer accepting connections; finishing the requests received"
    );
    handle.stop();
}

/// Serve the probe routes over plain HTTP on `listener` until `handle` stops, with the same
/// timeouts as the TLS port and at most `limits::PROBE_MAX_CONNECTIONS` connections.
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    state: AppState,
    handle: ServerHandle,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: limits::PROBE_MAX_CONNECTIONS,
        ..state.gate.limits.clone()
    };
    let metrics = state.metrics.clone();
    crate::connections::serve_plain(listener, probe_router(state), limits, metrics, handle).await
}

/// `serve_probes` on a thread and runtime of its own: the kubelet's probes are answered however
/// busy the webhook port's runtime is (a flood of connections or requests there cannot fail
/// liveness and restart every replica at once).
pub fn serve_probes_apart(
    listener: std::net::TcpListener,
    state: AppState,
    handle: ServerHandle,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("guardrails-probes".into())
        .spawn(move || {
            runtime.block_on(async move {
                let result = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve_probes(listener, state, handle).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = result {
                    tracing::error!(%error, "probe listener stopped");
                }
            });
        })?;
    Ok(())
}
