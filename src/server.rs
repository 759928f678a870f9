//! The HTTPS server: thin axum handlers around `respond::review`, TLS by rustls, bounded inputs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::json;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admission::MAX_BODY_BYTES;
use crate::audit::{AuditLog, DEFAULT_MAX_REQUEST_BYTES};
use crate::decide::Engine;
use crate::metrics::Metrics;
use crate::reload::ReloadStatus;
use crate::respond;

/// In-flight requests beyond this wait; the API server's own timeout bounds the wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection has to send its first request (slowloris guard).
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared by every handler: the current engine (swapped whole on reload), readiness, the audit
/// log and the reload status.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<ArcSwap<Engine>>,
    pub ready: Arc<AtomicBool>,
    pub audit: Arc<AuditLog>,
    pub reload: Arc<Mutex<ReloadStatus>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(engine: Engine) -> Self {
        Self::with_audit(engine, AuditLog::stdout(false, DEFAULT_MAX_REQUEST_BYTES))
    }

    pub fn with_audit(engine: Engine, audit: AuditLog) -> Self {
        Self {
            engine: Arc::new(ArcSwap::from_pointee(engine)),
            ready: Arc::new(AtomicBool::new(true)),
            metrics: Arc::new(Metrics::with_audit(&audit)),
            audit: Arc::new(audit),
            reload: Arc::new(Mutex::new(ReloadStatus::default())),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Probes and metrics only, for an optional plain-HTTP listener (kubelet probes, scrapers).
pub fn probe_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(GlobalConcurrencyLimitLayer::new(64))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let engine = state.engine.load();
    match respond::review(&engine, &body) {
        Ok(mut reviewed) => {
            let elapsed = started.elapsed();
            // Never blocks; with audit-log-on-loss=fail it may turn the answer into an error.
            state.audit.record(&mut reviewed, &body, elapsed);
            state
                .metrics
                .record_review(&reviewed, elapsed.as_secs_f64());
            json_response(&reviewed.review)
        }
        Err(error) => {
            state.metrics.record_rejected("validate");
            bad_request(&error, body.len())
        }
    }
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let engine = state.engine.load();
    match crate::mutate::review(&engine.config, &engine.live_namespaces.load(), &body) {
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
        Err(error) => {
            state.metrics.record_rejected("mutate");
            bad_request(&error, body.len())
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
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

fn bad_request(error: &crate::admission::EnvelopeError, bytes: usize) -> Response {
    tracing::warn!(%error, bytes, "rejected request body");
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error.to_string()}).to_string(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let engine = state.engine.load();
    let ready = state.ready.load(Ordering::Acquire);
    let reload = match state.reload.lock() {
        Ok(status) => status.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    // A failed reload does not make the pod unready: it keeps serving the last good policies,
    // and says so here. Nor does a failing audit log: every replica usually shares its cause
    // (stdout collector, disk), and all of them unready would block every change.
    let body = json!({
        "ready": ready,
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

/// Serve `router` over TLS on `listen` until `handle` is told to shut down.
pub async fn serve_tls(
    listen: SocketAddr,
    config: RustlsConfig,
    app: Router,
    handle: Handle<SocketAddr>,
) -> std::io::Result<()> {
    let mut server = axum_server::bind_rustls(listen, config)
        .handle(handle)
        .first_request_timeout(FIRST_REQUEST_TIMEOUT);
    server
        .http_builder()
        .http1()
        .keep_alive(true)
        .max_buf_size(MAX_HEADER_BUFFER);
    server
        .http_builder()
        .http2()
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEADER_BUFFER as u32);
    server.serve(app.into_make_service()).await
}

/// Resolve on SIGTERM or Ctrl-C, then ask the server to drain within the grace period.
pub async fn shutdown_on_signal(handle: Handle<SocketAddr>) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "shutting down");
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
}
