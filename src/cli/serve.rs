//! `guardrails serve`: the webhook, its listeners, reloaders and signal handling.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::PolicyArgs;
use super::units::{parse_bytes, parse_duration};
use crate::audit::{AuditLog, AuditOptions, LossPolicy};
use crate::reload::EngineSource;
use crate::{server, tls};

/// `guardrails serve`'s arguments (README: "guardrails serve").
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Address for the TLS listener [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
    #[arg(long, env = "GUARDRAILS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serving certificate (PEM, chain allowed).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "dev",
        env = "GUARDRAILS_TLS_CERT"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "dev",
        env = "GUARDRAILS_TLS_KEY"
    )]
    pub tls_key: Option<PathBuf>,
    /// Development: generate an in-memory certificate for localhost and write its CA here.
    #[arg(long)]
    pub dev: bool,
    /// Watch Namespace labels in the cluster (in-cluster config or KUBECONFIG) for teams and
    /// environments; /readyz stays unready until the first list completes.
    #[arg(long, env = "GUARDRAILS_WATCH_NAMESPACES")]
    pub watch_namespaces: bool,
    /// Also serve /healthz, /readyz and /metrics over plain HTTP on this address.
    #[arg(long, value_name = "ADDR", env = "GUARDRAILS_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,
    /// Append audit records to this file instead of stdout.
    #[arg(long, value_name = "FILE", env = "GUARDRAILS_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Record each request in its audit record (up to --audit-log-max-request-bytes), so
    /// `guardrails replay` can re-decide it.
    #[arg(long, env = "GUARDRAILS_AUDIT_LOG_REQUESTS")]
    pub audit_log_requests: bool,
    /// Largest request copied into the audit log.
    #[arg(long, value_name = "BYTES", default_value_t = crate::audit::DEFAULT_MAX_REQUEST_BYTES)]
    pub audit_log_max_request_bytes: usize,
    /// When an audit record cannot be kept (buffer full, write failed): `drop` answers with
    /// the decision and counts the loss; `fail` answers with a denial (code 503) instead.
    #[arg(long, value_enum, default_value_t = LossPolicy::Drop, env = "GUARDRAILS_AUDIT_LOG_ON_LOSS")]
    pub audit_log_on_loss: LossPolicy,
    /// Memory for audit records waiting to be written; beyond it records are lost (counted).
    #[arg(long, value_name = "BYTES", default_value_t = crate::audit::DEFAULT_BUFFER_BYTES, env = "GUARDRAILS_AUDIT_LOG_BUFFER_BYTES")]
    pub audit_log_buffer_bytes: usize,
    /// Do not watch --policies, --config and the TLS files for changes.
    #[arg(long)]
    pub no_reload: bool,
    /// Also compare --policies and --config on disk with what is loaded this often, and reload
    /// on a difference, even when no file event arrived (`30s`, `500ms`, `2m`; `0` turns it off).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "GUARDRAILS_RELOAD_INTERVAL")]
    pub reload_interval: std::time::Duration,
    /// A change to --policies or --config that takes something away (a policy file, policies,
    /// teams, namespaces, clusters, delegators, a stricter mode) is loaded only once it stayed
    /// unchanged on disk this long: a file being rewritten looks like that for a moment.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, env = "GUARDRAILS_RELOAD_SETTLE")]
    pub reload_settle: std::time::Duration,
    /// /readyz fails from this long before the serving certificate expires, unless a valid
    /// replacement was loaded by then (`0` turns it off).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "GUARDRAILS_UNREADY_BEFORE_EXPIRY")]
    pub unready_before_expiry: std::time::Duration,
    /// Start with, and reload, a policy set in which some action has no permit for anyone
    /// (denied to everyone); refused otherwise. The config's `allowDefaultDeny: true` does the same.
    #[arg(long, env = "GUARDRAILS_ALLOW_DEFAULT_DENY")]
    pub allow_default_deny: bool,
    /// Where --dev writes the CA certificate (PEM) for `curl --cacert`.
    #[arg(long, value_name = "FILE", default_value_os_t = std::env::temp_dir().join("guardrails-dev-ca.pem"))]
    pub dev_ca_out: PathBuf,
    /// Require a client certificate signed by a CA in this file (PEM), e.g. the API
    /// server's webhook client certificate (mutual TLS). Reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "GUARDRAILS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `serve`'s limits (README: "Limits and shedding").
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Largest request body; larger ones get HTTP 413.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "4Mi", env = "GUARDRAILS_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Decisions running at once on their own threads [default: the number of CPUs, at least 2;
    /// also what 0 means].
    #[arg(long, value_name = "N", env = "GUARDRAILS_DECISION_WORKERS")]
    pub decision_workers: Option<usize>,
    /// Requests waiting for memory or a decision slot; more are shed with HTTP 429.
    #[arg(long, value_name = "N", default_value_t = crate::limits::DEFAULT_MAX_QUEUE, env = "GUARDRAILS_MAX_QUEUE")]
    pub max_queue: usize,
    /// Deadline per request from its arrival: reading, waiting and deciding. Keep it below the
    /// webhook's timeoutSeconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "4s", env = "GUARDRAILS_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,
    /// Estimated bytes all requests in flight may hold; beyond it they wait, then get HTTP 429.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "128Mi", env = "GUARDRAILS_MEMORY_BUDGET")]
    pub memory_budget: usize,
    /// Open TLS connections (lowered to RLIMIT_NOFILE - 128); at the cap idle ones are closed.
    #[arg(long, value_name = "N", default_value_t = crate::limits::DEFAULT_MAX_CONNECTIONS, env = "GUARDRAILS_MAX_CONNECTIONS")]
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
    #[arg(long, value_name = "N", default_value_t = crate::limits::DEFAULT_LISTEN_BACKLOG, env = "GUARDRAILS_LISTEN_BACKLOG")]
    pub listen_backlog: u32,
    /// On SIGTERM, keep serving this long with /readyz failing before closing the listener.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s", env = "GUARDRAILS_SHUTDOWN_DELAY")]
    pub shutdown_delay: Duration,
    /// Then, time to finish the requests already received before exiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", env = "GUARDRAILS_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            max_body_bytes: self.max_body_bytes,
            decision_workers: self
                .decision_workers
                .filter(|&workers| workers > 0)
                .unwrap_or_else(crate::limits::default_decision_workers),
            max_queue: self.max_queue,
            request_timeout: self.request_timeout,
            memory_budget: self.memory_budget,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            first_request_timeout: self.first_request_timeout,
            listen_backlog: self.listen_backlog,
            shutdown_delay: self.shutdown_delay,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

pub fn serve(options: ServeArgs) -> anyhow::Result<()> {
    let args = &options.policy;
    // A development certificate is for this machine only: do not expose it by default.
    let default_host = if options.dev {
        [127, 0, 0, 1]
    } else {
        [0, 0, 0, 0]
    };
    let listen = options
        .listen
        .unwrap_or(SocketAddr::from((default_host, 8443)));
    let reload = !options.no_reload;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // Catch SIGHUP first thing: its default action would kill the process.
    #[cfg(unix)]
    let mut hangup = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?
    };
    let source = EngineSource {
        allow_default_deny: options.allow_default_deny,
        ..args.source()
    };
    let engine = source.load()?;
    let (certificate, dev_ca) = match (
        options.tls_cert.as_ref().zip(options.tls_key.as_ref()),
        options.dev,
    ) {
        (Some((cert, key)), _) => (
            tls::ServingCertificate::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            None,
        ),
        (None, true) => {
            let pair = tls::generate_dev()?;
            let ca = pair.ca_pem.clone();
            (tls::ServingCertificate::Memory(pair), Some(ca))
        }
        (None, false) => bail!(
            "TLS is required: pass --tls-cert and --tls-key, or --dev for a local self-signed certificate"
        ),
    };
    let loaded_certificate = certificate.load_with_expiry(options.client_ca.as_deref())?;
    let mut limits = options.limits.limits();
    for note in limits.normalise(crate::limits::open_file_limit()) {
        tracing::warn!("{note}");
    }
    let audit_options = AuditOptions {
        include_requests: options.audit_log_requests,
        max_request_bytes: options.audit_log_max_request_bytes,
        on_loss: options.audit_log_on_loss,
        buffer_bytes: options.audit_log_buffer_bytes,
    };
    let audit = match &options.audit_log {
        Some(path) => AuditLog::to_file(path, audit_options)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?,
        None => AuditLog::to_stdout(audit_options),
    };
    let state = server::AppState::with_audit(engine, audit).with_limits(limits.clone());
    let tls = tls::ReloadableTls::loaded(loaded_certificate, &state.metrics);
    let state = state.with_certificate(tls.status(), options.unready_before_expiry);
    let audit = state.audit.clone();
    let result = runtime.block_on(async move {
        let signals = server::Signals::install();
        #[cfg(unix)]
        {
            let audit = state.audit.clone();
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reopening the audit log");
                    audit.reopen();
                }
            });
        }
        // Bind before anything is written: a second instance on a busy port must fail without
        // touching the running one's files (the --dev CA).
        let listener = crate::connections::listen(listen, limits.listen_backlog)
            .and_then(tokio::net::TcpListener::from_std)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let probe_listener = match options.probe_listen {
            Some(address) => Some(
                crate::connections::listen(address, limits.listen_backlog)
                    .with_context(|| format!("cannot listen on {address} for probes"))?,
            ),
            None => None,
        };
        if let Some(ca_pem) = &dev_ca {
            let ca_out = &options.dev_ca_out;
            std::fs::write(ca_out, ca_pem)
                .with_context(|| format!("cannot write the dev CA to {}", ca_out.display()))?;
            // A closed stdout (e.g. a supervisor that stopped reading) must not stop the server.
            let _ = writeln!(
                std::io::stdout().lock(),
                "guardrails: development certificate for localhost; CA written to {}\n  try: curl --cacert {} https://localhost:{}/readyz",
                ca_out.display(),
                ca_out.display(),
                listen.port()
            );
        }
        let engine = state.engine.load();
        tracing::info!(
            %listen,
            policies = engine.policies.policy_count(),
            policy_source = %engine.policies.source,
            policy_hash = %engine.policies.hash,
            config_hash = %engine.config.hash,
            mode = %engine.mode,
            mutual_tls = options.client_ca.is_some(),
            max_body_bytes = limits.max_body_bytes,
            decision_workers = limits.decision_workers,
            max_queue = limits.max_queue,
            request_timeout_ms = limits.request_timeout.as_millis(),
            memory_budget = limits.memory_budget,
            max_connections = limits.max_connections,
            "starting guardrails"
        );
        for warning in &engine.policies.warnings {
            tracing::warn!(%warning, "policy warning");
        }
        drop(engine);
        let _watcher = if reload {
            crate::reload::watch(
                source,
                state.engine.clone(),
                state.reload.clone(),
                state.metrics.clone(),
                crate::reload::ReloadOptions {
                    file_events: true,
                    interval: Some(options.reload_interval).filter(|i| !i.is_zero()),
                    settle: options.reload_settle,
                },
            )
            .context("cannot watch the policy directory and config")?
        } else {
            None
        };
        if options.watch_namespaces {
            let client = kube::Client::try_default()
                .await
                .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
            state
                .ready
                .store(false, std::sync::atomic::Ordering::Release);
            tokio::spawn(crate::cluster::watch_namespaces(
                client,
                state.engine.load().live_namespaces.clone(),
                state.ready.clone(),
                state.metrics.clone(),
            ));
        }
        let handle = server::ServerHandle::new();
        if let Some(listener) = probe_listener {
            tracing::info!(address = ?listener.local_addr().ok(), "serving probes and metrics over plain HTTP");
            server::serve_probes_apart(listener, state.clone(), handle.clone())
                .context("cannot start the probe listener")?;
        }
        let _certificate_watcher = if reload {
            tls::watch_certificate(
                certificate,
                options.client_ca.clone(),
                tls.clone(),
                state.metrics.clone(),
                crate::watch::WatchOptions {
                    file_events: true,
                    interval: Some(options.reload_interval).filter(|i| !i.is_zero()),
                },
            )
            .context("cannot watch the TLS certificate")?
        } else {
            None
        };
        tokio::spawn(server::drain_on_signal(
            signals,
            state.clone(),
            handle.clone(),
            limits.shutdown_delay,
        ));
        server::serve_tls(
            listener,
            tls,
            server::router(state.clone()),
            limits,
            state.metrics.clone(),
            handle,
        )
        .await
        .with_context(|| format!("cannot serve on {listen}"))
    });
    // Decisions still running past their deadline must not hold the exit for long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Write out what is buffered; a stalled destination must not hold up the exit for long.
    if !audit.flush(crate::audit::DRAIN_TIMEOUT) {
        tracing::warn!(
            buffered = audit.counters().buffered_records.get(),
            "audit records still buffered at exit are lost"
        );
    }
    result
}
