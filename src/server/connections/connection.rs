//! One connection: the TLS handshake (bounded, and closed first under pressure), HTTP/1.1 or
//! HTTP/2 by ALPN, and its close when idle, under pressure or on stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::unproven::Registration;
use super::{DRAIN_QUIET, Shared, until_true};

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since_ms: AtomicU64,
    served: AtomicBool,
    /// Signalled when the connection becomes idle, so its idle timer starts then.
    became_idle: tokio::sync::Notify,
}

impl Activity {
    /// Nothing in flight yet, and idle since `now_ms`.
    fn new(now_ms: u64) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
            served: AtomicBool::new(false),
            became_idle: tokio::sync::Notify::new(),
        }
    }
}

/// Marks a request in flight until dropped.
struct InFlight {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity
                .idle_since_ms
                .store(self.shared.now_ms(), Ordering::Release);
            self.activity.became_idle.notify_one();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    /// A graceful close started at this instant.
    Closing(Instant),
}

pub(super) async fn connection(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    unproven: Registration,
) {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &shared.tls else {
        return serve_connection(shared, TokioIo::new(tcp), false, peer, unproven).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let deadline = shared
        .limits
        .handshake_timeout
        .min(shared.limits.first_request_timeout);
    let handshake = tokio::time::timeout(deadline, acceptor.accept(tcp));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                shared.metrics.limits.record_connection_closed("handshake");
                if let Some(suppressed) = shared.handshake_errors.ready() {
                    tracing::info!(%error, %peer, suppressed, "TLS handshake failed");
                }
                return;
            }
            Err(_) => {
                shared.metrics.limits.record_connection_closed("handshake-timeout");
                return;
            }
        },
        () = unproven.closing.notified() => {
            shared.metrics.limits.record_connection_closed("pressure-handshake");
            return;
        }
    };
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_connection(shared, TokioIo::new(stream), http2, peer, unproven).await;
}

/// HTTP on one connection, closed when idle, under pressure or on stop (see `Phase`).
async fn serve_connection<I>(
    shared: &Arc<Shared>,
    io: I,
    http2: bool,
    peer: SocketAddr,
    unproven: Registration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(shared.now_ms()));
    let unproven = Arc::new(unproven);
    let service = {
        let (activity, shared, unproven) = (activity.clone(), shared.clone(), unproven.clone());
        hyper::service::service_fn(move |request| answer(&activity, &shared, &unproven, request))
    };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stop = shared.handle.stop.subscribe();
    let mut pressure = shared.pressure.subscribe();
    pressure.mark_unchanged();
    let mut phase = if *stop.borrow() {
        Phase::Draining
    } else {
        Phase::Serving
    };
    // Start a graceful close once, counting why.
    macro_rules! close {
        ($reason:expr) => {
            if !matches!(phase, Phase::Closing(_)) {
                conn.as_mut().graceful_shutdown();
                shared.metrics.limits.record_connection_closed($reason);
                phase = Phase::Closing(Instant::now());
            }
        };
    }
    loop {
        let now = Snapshot::take(shared, &activity);
        match now.due(phase, http2, shared.limits.shutdown_grace) {
            Some(Due::Close(reason)) => close!(reason),
            Some(Due::CutOff) => return,
            None => {}
        }
        let wake = now.wake(phase, shared.limits.shutdown_grace);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wake) => {}
            () = activity.became_idle.notified() => {}
            () = unproven.closing.notified(), if phase == Phase::Serving => {
                if activity.in_flight.load(Ordering::Acquire) == 0 {
                    close!("pressure-silent");
                }
            }
            changed = pressure.changed(), if phase == Phase::Serving => {
                if changed.is_ok() && activity.in_flight.load(Ordering::Acquire) == 0 {
                    close!("pressure");
                }
            }
            () = until_true(&mut stop), if phase == Phase::Serving => {
                phase = Phase::Draining;
                // The quiet period counts from now, not from the last request.
                activity.idle_since_ms.fetch_max(shared.now_ms(), Ordering::AcqRel);
            }
        }
    }
}

/// One request through the app, in flight until answered. The first proves the connection.
fn answer(
    activity: &Arc<Activity>,
    shared: &Arc<Shared>,
    unproven: &Registration,
    request: hyper::Request<Incoming>,
) -> impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send + use<>
{
    activity.in_flight.fetch_add(1, Ordering::AcqRel);
    if !activity.served.swap(true, Ordering::AcqRel) {
        unproven.proven();
    }
    let guard = InFlight {
        activity: activity.clone(),
        shared: shared.clone(),
    };
    let app = shared.app.clone();
    async move {
        let response = app.oneshot(request).await;
        drop(guard);
        response
    }
}

/// One look at a connection's activity, and the timeout that applies to it now.
struct Snapshot {
    idle: bool,
    idle_for: Duration,
    served: bool,
    /// The idle timeout once a request was served, else the first-request timeout.
    timeout: Duration,
    /// Why the connection is closed when `timeout` runs out.
    reason: &'static str,
}

/// What a connection's state calls for.
enum Due {
    Close(&'static str),
    CutOff,
}

impl Snapshot {
    fn take(shared: &Shared, activity: &Activity) -> Self {
        let idle = activity.in_flight.load(Ordering::Acquire) == 0;
        let idle_for = Duration::from_millis(
            shared
                .now_ms()
                .saturating_sub(activity.idle_since_ms.load(Ordering::Acquire)),
        );
        let served = activity.served.load(Ordering::Acquire);
        let (timeout, reason) = if served {
            (shared.limits.idle_timeout, "idle")
        } else {
            (shared.limits.first_request_timeout, "first-request")
        };
        Self {
            idle,
            idle_for,
            served,
            timeout,
            reason,
        }
    }

    /// A graceful close due in `phase` (and why), or a close that took longer than `grace`.
    fn due(&self, phase: Phase, http2: bool, grace: Duration) -> Option<Due> {
        match phase {
            Phase::Serving if self.idle && self.idle_for >= self.timeout => {
                Some(Due::Close(self.reason))
            }
            // A connection with a request in flight closes once it is answered (HTTP/1.1
            // with `Connection: close`, HTTP/2 with GOAWAY naming the last stream served).
            // HTTP/2 drains without races once its preface is read; an idle HTTP/1.1
            // connection is given a moment, so a request already sent is read first.
            Phase::Draining
                if !self.idle || self.idle_for >= DRAIN_QUIET || (http2 && self.served) =>
            {
                Some(Due::Close("drain"))
            }
            // A peer that does not let a graceful close finish is cut off.
            Phase::Closing(since) if since.elapsed() >= grace => Some(Due::CutOff),
            _ => None,
        }
    }

    /// How long to wait in `phase` before looking again.
    fn wake(&self, phase: Phase, grace: Duration) -> Duration {
        match phase {
            Phase::Serving if self.idle => self.timeout.saturating_sub(self.idle_for),
            Phase::Serving => self.timeout,
            Phase::Draining => DRAIN_QUIET / 5,
            Phase::Closing(_) => grace,
        }
    }
}
