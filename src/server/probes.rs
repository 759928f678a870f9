//! `/healthz`, `/readyz`, `/metrics`, and the plain-HTTP probe listener.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, ServerHandle, probe_router};
use crate::server::limits::{self, Limits};

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let engine = state.engine.load();
    let draining = state.draining.load(Ordering::Acquire);
    let reload = crate::sync::lock(&state.reload).clone();
    let certificate = state
        .certificate
        .as_ref()
        .map(|status| crate::sync::lock(status).clone());
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
    crate::server::connections::serve_plain(listener, probe_router(state), limits, metrics, handle)
        .await
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
