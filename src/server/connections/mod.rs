//! The TLS listener: TCP accept with a connection cap below the fd limit, TLS handshake,
//! HTTP/1.1 and HTTP/2 (ALPN), idle and first-request timeouts, and a drain on stop that
//! serves what was already received.
//!
//! A connection is "idle" when it has no request in flight. At the connection cap, the oldest
//! connection that has not sent a request yet (still in its TLS handshake, or silent after it) is
//! closed to make room for each new one; when there is none, idle connections are closed (HTTP/2
//! with GOAWAY). New connections wait in the kernel's backlog (`listen_backlog`) meanwhile. So a
//! flood of silent or idle connections can neither lock clients out nor exhaust file
//! descriptors: a real client's connection, which sends its handshake at once, is accepted
//! behind the flood and served.

mod connection;
mod unproven;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::metrics::Metrics;
use crate::server::limits::{Limits, MAX_HEADER_BUFFER, Throttle};
use crate::server::tls::ReloadableTls;

use connection::connection;
use unproven::Unproven;

/// Concurrent streams one HTTP/2 connection may open. Go's client (the API server's) opens
/// another connection beyond this; a hostile client needs many connections to hold many
/// requests open.
pub const MAX_CONCURRENT_STREAMS: u32 = 32;
/// While draining, an HTTP/1.1 connection is closed after this long with nothing in flight: a
/// request already sent is read well within it, so closing does not reset it.
pub const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// At the cap, how long to wait for the connection told to close before telling another.
const ROOM_RETRY: Duration = Duration::from_millis(100);

/// Tells a running server to stop, and reports its connections.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    stop: Arc<watch::Sender<bool>>,
    open: Arc<watch::Sender<usize>>,
}

impl Default for ServerHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandle {
    pub fn new() -> Self {
        Self {
            stop: Arc::new(watch::channel(false).0),
            open: Arc::new(watch::channel(0).0),
        }
    }

    /// Stop accepting (after taking the connections already in the backlog) and close every
    /// connection once what it has received is answered.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once `stop` was called.
    pub async fn stopped(&self) {
        until_true(&mut self.stop.subscribe()).await;
    }

    pub fn connection_count(&self) -> usize {
        *self.open.borrow()
    }

    fn opened(&self) -> OpenConnection {
        self.open.send_modify(|n| *n += 1);
        OpenConnection(self.open.clone())
    }
}

/// Resolves once the flag is (or already was) true, or its sender is gone.
async fn until_true(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not in a caller's future.
    let _ = flag.wait_for(|set| *set).await;
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<watch::Sender<usize>>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    /// None: plain HTTP (the probe port).
    tls: Option<ReloadableTls>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    handle: ServerHandle,
    /// Bumped when the connection cap is reached and no connection is `unproven`: idle
    /// connections close.
    pressure: watch::Sender<u64>,
    /// Connections that have not sent a request yet, oldest first: the first closed at the cap.
    unproven: Unproven,
    epoch: Instant,
    handshake_errors: Throttle,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Idle and slow-header connections are closed by `connection` (which knows whether a
    // request is in flight), not by hyper's header timer, which also runs between requests.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(MAX_HEADER_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BUFFER as u32);
    builder
}

/// A listener on `address` with room for `backlog` connections waiting to be accepted (the
/// standard library's is 128). Reuses the address, as `std::net::TcpListener::bind` does.
pub fn listen(address: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serve `app` over TLS on `listener` until `handle` is stopped and every connection has
/// finished (or `limits.shutdown_grace` has passed).
pub async fn serve_tls(
    listener: TcpListener,
    tls: ReloadableTls,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    handle: ServerHandle,
) -> std::io::Result<()> {
    serve(listener, Some(tls), app, limits, metrics, handle).await
}

/// `serve_tls` without TLS: the probe port, bounded the same way.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    handle: ServerHandle,
) -> std::io::Result<()> {
    serve(listener, None, app, limits, metrics, handle).await
}

async fn serve(
    listener: TcpListener,
    tls: Option<ReloadableTls>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    handle: ServerHandle,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared {
        builder: builder(),
        tls,
        app,
        metrics,
        handle: handle.clone(),
        pressure: watch::channel(0).0,
        unproven: Unproven::default(),
        epoch: Instant::now(),
        handshake_errors: Throttle::new(Duration::from_secs(10)),
        limits,
    });
    let cap_reached = Throttle::new(Duration::from_secs(5));
    let accept_errors = Throttle::new(Duration::from_secs(5));
    let mut stop = handle.stop.subscribe();
    // Accept first, then find room: room is only made (connections closed) for a connection
    // that is really waiting, never ahead of one.
    while let Some((tcp, peer)) = accept(&listener, &accept_errors, &mut stop).await {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match make_room(&shared, &permits, &cap_reached, &mut stop).await {
                Room::Made(permit) => permit,
                Room::Stopped => {
                    spawn_connection(&shared, tcp, peer, None);
                    break;
                }
                Room::Closed => break,
            },
        };
        spawn_connection(&shared, tcp, peer, Some(permit));
    }
    take_backlog(&shared, listener, &permits);
    wait_for_connections(&handle, shared.limits.shutdown_grace).await;
    Ok(())
}

/// The next connection, or None once stopped.
async fn accept(
    listener: &TcpListener,
    errors: &Throttle,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning; the cap keeps this rare.
                    if let Some(suppressed) = errors.ready() {
                        tracing::error!(%error, suppressed, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = until_true(stop) => return None,
        }
    }
}

/// How waiting for room at the connection cap ended.
enum Room {
    Made(OwnedSemaphorePermit),
    /// Stopped while waiting: the connection accepted is served over the cap.
    Stopped,
    /// The permits are gone.
    Closed,
}

/// At the connection cap: close the oldest connection that has sent nothing (else idle ones)
/// until a permit is free.
async fn make_room(
    shared: &Shared,
    permits: &Arc<Semaphore>,
    cap_reached: &Throttle,
    stop: &mut watch::Receiver<bool>,
) -> Room {
    shared.metrics.limits.connection_limit_reached.inc();
    if let Some(suppressed) = cap_reached.ready() {
        tracing::warn!(
            max_connections = shared.limits.max_connections,
            suppressed,
            "connection limit reached: closing connections that sent nothing, else idle ones; new connections wait"
        );
    }
    loop {
        if !shared.unproven.close_oldest() {
            shared.pressure.send_modify(|generation| *generation += 1);
        }
        tokio::select! {
            permit = permits.clone().acquire_owned() => return match permit {
                Ok(permit) => Room::Made(permit),
                Err(_) => Room::Closed,
            },
            // The one told to close had just become busy: make room again.
            () = tokio::time::sleep(ROOM_RETRY) => {}
            () = until_true(stop) => return Room::Stopped,
        }
    }
}

/// Wait until every connection has finished, or `grace` has passed.
async fn wait_for_connections(handle: &ServerHandle, grace: Duration) {
    let mut open = handle.open.subscribe();
    let all_closed = async move {
        let _ = open.wait_for(|count| *count == 0).await;
    };
    let finished = tokio::time::timeout(grace, all_closed).await;
    match finished {
        Ok(_) => tracing::info!("every connection finished"),
        Err(_) => tracing::warn!(
            connections = handle.connection_count(),
            grace_ms = grace.as_millis(),
            "connections still open when the shutdown grace ran out"
        ),
    }
}

/// Connections the kernel completed before the listener closes were sent by clients that
/// expect an answer: serve them too, then close the listener.
fn take_backlog(shared: &Arc<Shared>, listener: TcpListener, permits: &Arc<Semaphore>) {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot take the listener's backlog");
            return;
        }
    };
    let mut taken = 0usize;
    loop {
        match listener.accept() {
            Ok((tcp, peer)) => {
                let tcp = match tcp
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(tcp))
                {
                    Ok(tcp) => tcp,
                    Err(error) => {
                        tracing::warn!(%error, "cannot serve a connection from the backlog");
                        continue;
                    }
                };
                taken += 1;
                // Over the cap or not: these are few, and already waiting.
                spawn_connection(shared, tcp, peer, permits.clone().try_acquire_owned().ok());
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => {
                tracing::warn!(%error, "stopped taking the backlog");
                break;
            }
        }
    }
    if taken > 0 {
        tracing::info!(
            connections = taken,
            "serving connections taken from the backlog"
        );
    }
}

fn spawn_connection(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
) {
    let shared = shared.clone();
    let open = shared.handle.opened();
    shared.metrics.limits.connections_open.inc();
    // Registered before the task runs, so the accept loop can close it from the first moment.
    let unproven = shared.unproven.register();
    tokio::spawn(async move {
        connection(&shared, tcp, peer, unproven).await;
        shared.metrics.limits.connections_open.dec();
        drop(open);
        drop(permit);
    });
}
