//! The webhook routes: read the body within the limits, decide (inline or on a blocking
//! thread), answer; and every error answer the API server can act on.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use super::{AppState, MAX_DRAINED_BYTES, RETRY_AFTER_SECONDS, SLOW_BODY_DRAIN};
use crate::admission::JsonCounts;
use crate::respond::{self, Reviewed};
use crate::server::limits::{self, Reservation, Shed, Throttle};

#[derive(Debug, Clone, Copy)]
pub(super) enum Webhook {
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

pub(super) async fn validate_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admit(state, Webhook::Validate, &headers, body).await
}

pub(super) async fn mutate_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admit(state, Webhook::Mutate, &headers, body).await
}

/// Why a body was not read in full.
pub(super) enum BodyError {
    TooLarge,
    Slow,
    Shed(Shed),
    Broken,
}

/// Bodies up to this size are decided on the thread that read them (see `admit`).
pub(super) const INLINE_DECISION_BYTES: usize = limits::SMALL_BODY_BYTES;

/// Admission control around one webhook request: budget, body, slot, decision, each bounded
/// by one deadline that starts when the request arrives.
pub(super) async fn admit(
    state: AppState,
    webhook: Webhook,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let deadline = arrived + state.gate.limits.request_timeout;
    let (body, counts, mut reservation) =
        match receive(&state, webhook, headers, body, deadline).await {
            Ok(received) => received,
            Err(response) => return response,
        };
    if let Err(error) = crate::admission::check_counts(&counts) {
        return bad_request(&state, webhook, &error, body.len(), arrived);
    }
    let permit = match hold_room(&state, &mut reservation, body.len(), counts, deadline).await {
        Ok(permit) => permit,
        Err(shed) => return shed_response(&state, webhook, shed),
    };
    // A small body is decided in tens of microseconds: on this thread, where handing it to
    // another one and back would cost more than the decision. Larger ones run on the blocking
    // pool, so that they cannot hold up the threads serving connections and probes.
    if body.len() <= INLINE_DECISION_BYTES {
        let _held = (permit, reservation);
        return answer_body(&state, webhook, &body, arrived);
    }
    let task_state = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _held = (permit, reservation);
        answer_body(&task_state, webhook, &body, arrived)
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
        Err(_) => overran(&state, webhook),
    }
}

/// Read the whole body within the size limit, the budget and the deadline; a refusal comes
/// back as the answer to send.
async fn receive(
    state: &AppState,
    webhook: Webhook,
    headers: &HeaderMap,
    body: Body,
    deadline: Instant,
) -> Result<(Bytes, JsonCounts, Reservation), Response> {
    let limits = &state.gate.limits;
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
    read.map_err(|error| {
        // The rest of a refused body is read and dropped after the answer is sent, so the
        // client gets the answer instead of a reset (HTTP/1.1) or a stream error (HTTP/2),
        // and an HTTP/1.1 connection stays usable.
        // At least a moment more than the deadline, for a client that is merely slow.
        let until = deadline.max(Instant::now() + SLOW_BODY_DRAIN);
        if !matches!(error, BodyError::Broken) {
            tokio::spawn(drain(stream, until));
        }
        body_error(state, webhook, error)
    })
}

/// Charge what the decision will hold, then wait for a decision slot, both by the deadline.
async fn hold_room(
    state: &AppState,
    reservation: &mut Reservation,
    body_bytes: usize,
    counts: JsonCounts,
    deadline: Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, Shed> {
    // Charged before waiting for a slot, so that a queue of large bodies can never leave a
    // running decision short of budget. Until then the body stays in the receiving share:
    // bodies waiting for memory cannot take the room they wait for.
    let needed = limits::estimate(body_bytes, counts);
    if needed > reservation.bytes() {
        let more = needed - reservation.bytes();
        state.gate.grow_or_wait(reservation, more, deadline).await?;
    }
    reservation.received();
    let permit = state.gate.slot(deadline).await?;
    // A decision started with almost no time left would be answered 503 and wasted: shed it
    // now (429, retried) and leave the slot to a request that can still make it.
    if deadline.saturating_duration_since(Instant::now()) < state.gate.limits.request_timeout / 10 {
        return Err(Shed::Deadline);
    }
    Ok(permit)
}

/// A decision that overran the request deadline: counted as shed, answered 503.
fn overran(state: &AppState, webhook: Webhook) -> Response {
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
            state.gate.limits.request_timeout.as_millis()
        ),
    )
}

/// Read the body, charging what arrives beyond the declared length to the budget, and count
/// its JSON for the limits and the memory estimate.
pub(super) async fn read_body(
    stream: &mut axum::body::BodyDataStream,
    declared: Option<usize>,
    reservation: &mut Reservation,
    max: usize,
    deadline: Instant,
) -> Result<(Bytes, JsonCounts), BodyError> {
    // A declared length is a hint, not a promise: allocate for it only up to a small size.
    let mut body: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limits::SMALL_BODY_BYTES));
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
        body.extend_from_slice(&chunk);
    }
    // Counted whole once it is here: the common small body by a vector-wide bound.
    let counts = crate::admission::count_for_limits(&body);
    Ok((Bytes::from(body), counts))
}

/// Read and drop the rest of a refused body, up to `MAX_DRAINED_BYTES` and the deadline.
pub(super) async fn drain(mut stream: axum::body::BodyDataStream, deadline: Instant) {
    let until = tokio::time::Instant::from_std(deadline);
    let mut drained = 0usize;
    while drained < MAX_DRAINED_BYTES {
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(Some(Ok(chunk))) => drained += chunk.len(),
            _ => return,
        }
    }
}

/// Write the audit record (never blocks). Under `audit-log-on-loss: fail` a request whose record
/// cannot be kept is refused, so no change is admitted unrecorded.
fn record_or_refuse(state: &AppState, reviewed: &mut Reviewed, body: &[u8], elapsed: Duration) {
    let refused = state.audit.refuses_now();
    if refused {
        respond::refuse_unrecorded(reviewed);
    }
    let kept = state.audit.record(reviewed, body, elapsed);
    if !kept && !refused && state.audit.refuses_unrecorded() {
        respond::refuse_unrecorded(reviewed);
    }
}

/// The decision proper, holding a slot and the request's budget: parse,
/// decide, record and serialise.
pub(super) fn answer_body(
    state: &AppState,
    webhook: Webhook,
    body: &[u8],
    arrived: Instant,
) -> Response {
    let started = Instant::now();
    let engine = state.engine.load();
    match webhook {
        // `admit` checked the body's JSON counts as it arrived.
        Webhook::Validate => match respond::validate_counted(&engine, body) {
            Ok(mut reviewed) => {
                let elapsed = started.elapsed();
                record_or_refuse(state, &mut reviewed, body, elapsed);
                state
                    .metrics
                    .record_review(&reviewed, elapsed.as_secs_f64());
                if let Some(reports) = &state.policy_reports {
                    reports.observe(&reviewed);
                }
                review_response(&reviewed.answer())
            }
            Err(error) => bad_request(state, webhook, &error, body.len(), arrived),
        },
        Webhook::Mutate => {
            match crate::mutate::mutate_review(&engine.config, &engine.live_namespaces.load(), body)
            {
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

pub(super) fn log_limit(throttle: &Throttle, webhook: Webhook, reason: &'static str, what: &str) {
    if let Some(suppressed) = throttle.ready() {
        tracing::warn!(
            webhook = webhook.as_str(),
            reason,
            suppressed,
            "{what} (similar events since the last such line: {suppressed})"
        );
    }
}

pub(super) fn body_error(state: &AppState, webhook: Webhook, error: BodyError) -> Response {
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
pub(super) fn shed_response(state: &AppState, webhook: Webhook, shed: Shed) -> Response {
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

pub(super) fn plain_error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// A validating answer: plain data (see `json::write_answer`).
fn review_response(review: &crate::admission::Answer<'_>) -> Response {
    // Room for a denial with its message and annotations without growing as it is written.
    let mut json = Vec::with_capacity(1024);
    let written = crate::json::write_answer(&mut json, review).map_err(|e| e.to_string());
    json_body(json, written)
}

/// A mutating answer: a `Value`, which serde_json writes.
fn json_response(review: &impl serde::Serialize) -> Response {
    let mut json = Vec::with_capacity(1024);
    let written = serde_json::to_writer(&mut json, review).map_err(|e| e.to_string());
    json_body(json, written)
}

fn json_body(json: Vec<u8>, written: Result<(), String>) -> Response {
    match written {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
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

pub(super) fn bad_request(
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
