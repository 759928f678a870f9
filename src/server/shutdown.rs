//! SIGTERM and SIGINT: fail `/readyz`, keep serving for the shutdown delay, then drain.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{AppState, ServerHandle};

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
