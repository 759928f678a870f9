//! `guardrails serve`: the webhook, its listeners, reloaders and signal handling.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::PolicyArgs;
use crate::audit::{AuditLog, AuditOptions, LossPolicy};
use crate::reload::EngineSource;
use crate::server::{self, tls};
use crate::units::parse_duration;

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
    pub reload_interval: Duration,
    /// A change to --policies or --config that takes something away (a policy file, policies,
    /// teams, namespaces, clusters, delegators, a stricter mode) is loaded only once it stayed
    /// unchanged on disk this long: a file being rewritten looks like that for a moment.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, env = "GUARDRAILS_RELOAD_SETTLE")]
    pub reload_settle: Duration,
    /// /readyz fails from this long before the serving certificate expires, unless a valid
    /// replacement was loaded by then (`0` turns it off).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "GUARDRAILS_UNREADY_BEFORE_EXPIRY")]
    pub unready_before_expiry: Duration,
    /// Start with, and reload, a policy set in which some action has no permit for anyone
    /// (denied to everyone); refused otherwise. The config's `allowDefaultDeny: true` does the same.
    #[arg(long, env = "GUARDRAILS_ALLOW_DEFAULT_DENY")]
    pub allow_default_deny: bool,
    /// Most decisions remembered per loaded policy set, keyed on everything Cedar sees of a
    /// request (`0` remembers none: every request is evaluated).
    #[arg(long, value_name = "N", default_value_t = crate::decide::DECISION_CACHE_ENTRIES, env = "GUARDRAILS_DECISION_CACHE_ENTRIES")]
    pub decision_cache_entries: usize,
    /// Where --dev writes the CA certificate (PEM) for `curl --cacert`.
    #[arg(long, value_name = "FILE", default_value_os_t = std::env::temp_dir().join("guardrails-dev-ca.pem"))]
    pub dev_ca_out: PathBuf,
    /// Require a client certificate signed by a CA in this file (PEM), e.g. the API
    /// server's webhook client certificate (mutual TLS). Reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "GUARDRAILS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Write the policy matches of decided requests as PolicyReports (wgpolicyk8s.io/v1alpha2),
    /// one named `guardrails` per namespace (in-cluster config or KUBECONFIG; README: "Policy
    /// reports"). Failed writes are counted and retried; they never hold up a decision.
    #[arg(long, env = "GUARDRAILS_POLICY_REPORTS")]
    pub policy_reports: bool,
    /// How often the PolicyReports that changed are written (at most 50 per interval).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval, env = "GUARDRAILS_POLICY_REPORTS_INTERVAL")]
    pub policy_reports_interval: Duration,
    /// Results kept in one namespace's PolicyReport, the newest (1 to 500).
    #[arg(long, value_name = "N", default_value_t = crate::policy_reports::DEFAULT_MAX_RESULTS, value_parser = parse_max_results, env = "GUARDRAILS_POLICY_REPORTS_MAX_RESULTS")]
    pub policy_reports_max_results: usize,
    /// `serve`'s limits (README: "Limits and shedding").
    #[command(flatten)]
    pub limits: crate::server::limits::Limits,
}

pub fn serve(options: ServeArgs) -> anyhow::Result<()> {
    let listen = options.listen_address();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // Catch SIGHUP first thing: its default action would kill the process.
    #[cfg(unix)]
    let hangup = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?
    };
    let source = EngineSource {
        allow_default_deny: options.allow_default_deny,
        decision_cache_entries: Some(options.decision_cache_entries),
        ..options.policy.source()
    };
    let engine = source.load()?;
    let (certificate, dev_ca) = options.serving_certificate()?;
    let loaded_certificate = certificate.load_with_expiry(options.client_ca.as_deref())?;
    let mut limits = options.limits.clone();
    for note in limits.normalise(crate::server::limits::open_file_limit()) {
        tracing::warn!("{note}");
    }
    let state =
        server::AppState::with_audit(engine, options.audit_log()?).with_limits(limits.clone());
    let tls = tls::ReloadableTls::loaded(loaded_certificate, &state.metrics);
    let state = state.with_certificate(tls.status(), options.unready_before_expiry);
    let audit = state.audit.clone();
    let result = runtime.block_on(async move {
        let signals = server::Signals::install();
        #[cfg(unix)]
        reopen_audit_log_on_hangup(hangup, state.audit.clone());
        // Bind before anything is written: a second instance on a busy port must fail without
        // touching the running one's files (the --dev CA).
        let (listener, probe_listener) =
            bind(listen, options.probe_listen, limits.listen_backlog)?;
        if let Some(ca_pem) = &dev_ca {
            write_dev_ca(&options.dev_ca_out, ca_pem, listen.port())?;
        }
        log_start(&state, listen, &limits, options.client_ca.is_some());
        let _policy_watcher = options.follow_policies(source, &state)?;
        if options.watch_namespaces {
            start_namespace_watch(&state).await?;
        }
        let state = if options.policy_reports {
            start_policy_reports(&options, state).await?
        } else {
            state
        };
        let handle = server::ServerHandle::new();
        if let Some(listener) = probe_listener {
            tracing::info!(address = ?listener.local_addr().ok(), "serving probes and metrics over plain HTTP");
            server::serve_probes_apart(listener, state.clone(), handle.clone())
                .context("cannot start the probe listener")?;
        }
        let _certificate_watcher = options.follow_certificate(certificate, &tls, &state)?;
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
    runtime.shutdown_timeout(Duration::from_secs(1));
    flush_at_exit(&audit);
    result
}

/// The webhook listener, and the probe listener when one is asked for.
fn bind(
    listen: SocketAddr,
    probe_listen: Option<SocketAddr>,
    backlog: u32,
) -> anyhow::Result<(tokio::net::TcpListener, Option<std::net::TcpListener>)> {
    let listener = crate::server::connections::listen(listen, backlog)
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let probe_listener = match probe_listen {
        Some(address) => Some(
            crate::server::connections::listen(address, backlog)
                .with_context(|| format!("cannot listen on {address} for probes"))?,
        ),
        None => None,
    };
    Ok((listener, probe_listener))
}

/// Write out what is buffered; a stalled destination must not hold up the exit for long.
fn flush_at_exit(audit: &AuditLog) {
    if !audit.flush(crate::audit::DRAIN_TIMEOUT) {
        tracing::warn!(
            buffered = audit.counters().buffered_records.get(),
            "audit records still buffered at exit are lost"
        );
    }
}

impl ServeArgs {
    fn listen_address(&self) -> SocketAddr {
        // A development certificate is for this machine only: do not expose it by default.
        let default_host = if self.dev {
            [127, 0, 0, 1]
        } else {
            [0, 0, 0, 0]
        };
        self.listen
            .unwrap_or(SocketAddr::from((default_host, 8443)))
    }

    /// The serving certificate, and with `--dev` the CA to write out for clients.
    fn serving_certificate(&self) -> anyhow::Result<(tls::ServingCertificate, Option<String>)> {
        match (self.tls_cert.as_ref().zip(self.tls_key.as_ref()), self.dev) {
            (Some((cert, key)), _) => Ok((
                tls::ServingCertificate::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                None,
            )),
            (None, true) => {
                let pair = tls::generate_dev()?;
                let ca = pair.ca_pem.clone();
                Ok((tls::ServingCertificate::Memory(pair), Some(ca)))
            }
            (None, false) => bail!(
                "TLS is required: pass --tls-cert and --tls-key, or --dev for a local self-signed certificate"
            ),
        }
    }

    fn audit_log(&self) -> anyhow::Result<AuditLog> {
        let options = AuditOptions {
            include_requests: self.audit_log_requests,
            max_request_bytes: self.audit_log_max_request_bytes,
            on_loss: self.audit_log_on_loss,
            buffer_bytes: self.audit_log_buffer_bytes,
        };
        Ok(match &self.audit_log {
            Some(path) => AuditLog::to_file(path, options)
                .with_context(|| format!("cannot open the audit log {}", path.display()))?,
            None => AuditLog::to_stdout(options),
        })
    }

    /// `--reload-interval`, where `0` turns the periodic comparison off.
    fn reload_interval(&self) -> Option<Duration> {
        Some(self.reload_interval).filter(|i| !i.is_zero())
    }

    /// Reload the policies and config on change, unless `--no-reload`.
    fn follow_policies(
        &self,
        source: EngineSource,
        state: &server::AppState,
    ) -> anyhow::Result<Option<crate::reload::Reloader>> {
        if self.no_reload {
            return Ok(None);
        }
        crate::reload::watch(
            source,
            state.engine.clone(),
            state.reload.clone(),
            state.metrics.clone(),
            crate::reload::ReloadOptions {
                file_events: true,
                interval: self.reload_interval(),
                settle: self.reload_settle,
            },
        )
        .context("cannot watch the policy directory and config")
    }

    /// Reload the serving certificate and client CA on change, unless `--no-reload`.
    fn follow_certificate(
        &self,
        certificate: tls::ServingCertificate,
        tls: &tls::ReloadableTls,
        state: &server::AppState,
    ) -> anyhow::Result<Option<crate::reload::watch::Following>> {
        if self.no_reload {
            return Ok(None);
        }
        tls::watch_certificate(
            certificate,
            self.client_ca.clone(),
            tls.clone(),
            state.metrics.clone(),
            crate::reload::watch::WatchOptions {
                file_events: true,
                interval: self.reload_interval(),
            },
        )
        .context("cannot watch the TLS certificate")
    }
}

#[cfg(unix)]
fn reopen_audit_log_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    audit: std::sync::Arc<AuditLog>,
) {
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reopening the audit log");
            audit.reopen();
        }
    });
}

fn write_dev_ca(path: &std::path::Path, ca_pem: &str, port: u16) -> anyhow::Result<()> {
    std::fs::write(path, ca_pem)
        .with_context(|| format!("cannot write the dev CA to {}", path.display()))?;
    // On stderr with the logs: stdout carries the audit log by default. A closed stderr (e.g. a
    // supervisor that stopped reading) must not stop the server.
    let _ = writeln!(
        std::io::stderr().lock(),
        "guardrails: development certificate for localhost; CA written to {}\n  try: curl --cacert {} https://localhost:{port}/readyz",
        path.display(),
        path.display(),
    );
    Ok(())
}

fn log_start(
    state: &server::AppState,
    listen: SocketAddr,
    limits: &crate::server::limits::Limits,
    mutual_tls: bool,
) {
    let engine = state.engine.load();
    tracing::info!(
        %listen,
        policies = engine.policies.policy_count(),
        policy_source = %engine.policies.source,
        policy_hash = %engine.policies.hash,
        config_hash = %engine.config.hash,
        mode = %engine.mode,
        mutual_tls,
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
}

/// `--watch-namespaces`: unready until the watcher's first complete list.
async fn start_namespace_watch(state: &server::AppState) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    tokio::spawn(crate::namespace_watch::watch_namespaces(
        client,
        state.engine.load().live_namespaces.clone(),
        state.ready.clone(),
        state.metrics.clone(),
    ));
    Ok(())
}

/// `--policy-reports`: the writer task, and the request path's handle to it in the state.
async fn start_policy_reports(
    options: &ServeArgs,
    state: server::AppState,
) -> anyhow::Result<server::AppState> {
    let client = kube::Client::try_default().await.context(
        "cannot configure a Kubernetes client (in-cluster or KUBECONFIG) for --policy-reports",
    )?;
    let (reports, receiver) = crate::policy_reports::Reports::channel(state.metrics.clone());
    let writer = crate::policy_reports::writer::WriterOptions::new(
        options.policy_reports_interval,
        options.policy_reports_max_results,
    );
    tracing::info!(
        interval_ms = writer.interval.as_millis(),
        max_results = writer.max_results,
        max_writes = writer.max_writes,
        "writing PolicyReports (wgpolicyk8s.io/v1alpha2)"
    );
    tokio::spawn(crate::policy_reports::writer::run(
        client,
        receiver,
        writer,
        state.metrics.clone(),
    ));
    Ok(state.with_policy_reports(reports))
}

/// `--policy-reports-interval`: a duration, not zero.
fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = parse_duration(value)?;
    if interval.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(interval)
}

/// `--policy-reports-max-results`: 1 to `policy_reports::MAX_RESULTS_LIMIT`.
fn parse_max_results(value: &str) -> Result<usize, String> {
    let limit = crate::policy_reports::MAX_RESULTS_LIMIT;
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=limit).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {limit}")),
    }
}
