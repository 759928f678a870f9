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

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::audit::AuditLog;
use crate::decide::Engine;
use crate::metrics::Metrics;
use crate::policy_reports::Reports as PolicyReports;
use crate::reload::ReloadStatus;
use crate::server::limits::{Gate, Limits, Throttle};
use crate::server::tls::CertificateStatus;

mod admit;
pub mod connections;
pub mod limits;
mod probes;
mod shutdown;
pub mod tls;

pub use crate::server::connections::{ServerHandle, serve_tls};
use admit::{mutate_route, validate_route};
use probes::{healthz, metrics, readyz};
pub use probes::{serve_probes, serve_probes_apart};
pub use shutdown::{Signals, drain_on_signal};

/// Probes and metrics answer within this, whatever else is going on.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// With `--policy-reports`: where decided requests with policy matches are handed over.
    policy_reports: Option<PolicyReports>,
}

/// One log throttle per kind of limit, so each still shows up when another floods.
struct Throttles {
    shed: Throttle,
    refused: Throttle,
}

impl AppState {
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
            policy_reports: None,
        }
    }

    /// Hand each decided request with policy matches to the PolicyReport writer.
    pub fn with_policy_reports(mut self, reports: PolicyReports) -> Self {
        self.policy_reports = Some(reports);
        self
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
        .route("/validate", post(validate_route))
        .route("/mutate", post(mutate_route))
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
