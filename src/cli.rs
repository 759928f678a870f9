//! Command line: `guardrails serve | eval | check`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::audit::{AuditLog, AuditOptions, LossPolicy};

/// Write to stdout, returning the error instead of panicking (a closed pipe ends the command).
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}
use crate::config::Config;
use crate::decide::Engine;
use crate::mode::Mode;
use crate::policy::PolicyStore;
use crate::reload::EngineSource;
use crate::synth::Synthetic;
use crate::{respond, server, tls};

#[derive(Debug, Parser)]
#[command(
    name = "guardrails",
    version,
    about = "Cedar-policy admission webhook for Argo CD, Rollouts and Deployments"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json, env = "GUARDRAILS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy directory (schema + *.cedar). Default: the shipped policies built into the binary.
    #[arg(long, value_name = "DIR", env = "GUARDRAILS_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Configuration file (YAML). Default: the example config built into the binary.
    #[arg(long, value_name = "FILE", env = "GUARDRAILS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Global mode, overriding `mode:` in the config.
    #[arg(long, value_parser = parse_mode, env = "GUARDRAILS_MODE")]
    pub mode: Option<Mode>,
}

fn parse_mode(value: &str) -> Result<Mode, String> {
    value.parse()
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

/// `250ms`, `4s`, `2m`, or a bare number of seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, 1.0)
    };
    let seconds: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (e.g. 500ms, 4s, 2m)"))?;
    Duration::try_from_secs_f64(seconds * scale)
        .map_err(|_| format!("{value:?} is not a duration (e.g. 500ms, 4s, 2m)"))
}

/// `4194304`, `512Ki`, `4Mi`, `1Gi` (or `k`, `M`, `G` for powers of 1000).
fn parse_bytes(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let units: [(&str, usize); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| value.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((value, 1));
    number
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{value:?} is not a size in bytes (e.g. 4194304, 512Ki, 4Mi)"))
}

// Parsed once at start-up: the size of `Serve` costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook over TLS.
    Serve {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Address for the TLS listener [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
        #[arg(long, env = "GUARDRAILS_LISTEN")]
        listen: Option<SocketAddr>,
        /// Serving certificate (PEM, chain allowed).
        #[arg(
            long,
            value_name = "FILE",
            requires = "tls_key",
            conflicts_with = "dev",
            env = "GUARDRAILS_TLS_CERT"
        )]
        tls_cert: Option<PathBuf>,
        /// Private key for --tls-cert (PEM).
        #[arg(
            long,
            value_name = "FILE",
            requires = "tls_cert",
            conflicts_with = "dev",
            env = "GUARDRAILS_TLS_KEY"
        )]
        tls_key: Option<PathBuf>,
        /// Development: generate an in-memory certificate for localhost and write its CA here.
        #[arg(long)]
        dev: bool,
        /// Watch Namespace labels in the cluster (in-cluster config or KUBECONFIG) for teams and
        /// environments; /readyz stays unready until the first list completes.
        #[arg(long, env = "GUARDRAILS_WATCH_NAMESPACES")]
        watch_namespaces: bool,
        /// Also serve /healthz, /readyz and /metrics over plain HTTP on this address.
        #[arg(long, value_name = "ADDR", env = "GUARDRAILS_PROBE_LISTEN")]
        probe_listen: Option<SocketAddr>,
        /// Append audit records to this file instead of stdout.
        #[arg(long, value_name = "FILE", env = "GUARDRAILS_AUDIT_LOG")]
        audit_log: Option<PathBuf>,
        /// Record each request in its audit record (up to --audit-log-max-request-bytes), so
        /// `guardrails replay` can re-decide it.
        #[arg(long, env = "GUARDRAILS_AUDIT_LOG_REQUESTS")]
        audit_log_requests: bool,
        /// Largest request copied into the audit log.
        #[arg(long, value_name = "BYTES", default_value_t = crate::audit::DEFAULT_MAX_REQUEST_BYTES)]
        audit_log_max_request_bytes: usize,
        /// When an audit record cannot be kept (buffer full, write failed): `drop` answers with
        /// the decision and counts the loss; `fail` answers with a denial (code 503) instead.
        #[arg(long, value_enum, default_value_t = LossPolicy::Drop, env = "GUARDRAILS_AUDIT_LOG_ON_LOSS")]
        audit_log_on_loss: LossPolicy,
        /// Memory for audit records waiting to be written; beyond it records are lost (counted).
        #[arg(long, value_name = "BYTES", default_value_t = crate::audit::DEFAULT_BUFFER_BYTES, env = "GUARDRAILS_AUDIT_LOG_BUFFER_BYTES")]
        audit_log_buffer_bytes: usize,
        /// Do not watch --policies, --config and the TLS files for changes.
        #[arg(long)]
        no_reload: bool,
        /// Also compare --policies and --config on disk with what is loaded this often, and reload
        /// on a difference, even when no file event arrived (`30s`, `500ms`, `2m`; `0` turns it off).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "GUARDRAILS_RELOAD_INTERVAL")]
        reload_interval: std::time::Duration,
        /// A change to --policies or --config that takes something away (a policy file, policies,
        /// teams, namespaces, clusters, delegators, a stricter mode) is loaded only once it stayed
        /// unchanged on disk this long: a file being rewritten looks like that for a moment.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, env = "GUARDRAILS_RELOAD_SETTLE")]
        reload_settle: std::time::Duration,
        /// /readyz fails from this long before the serving certificate expires, unless a valid
        /// replacement was loaded by then (`0` turns it off).
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "GUARDRAILS_UNREADY_BEFORE_EXPIRY")]
        unready_before_expiry: std::time::Duration,
        /// Start with, and reload, a policy set in which some action has no permit for anyone
        /// (denied to everyone); refused otherwise. The config's `allowDefaultDeny: true` does the same.
        #[arg(long, env = "GUARDRAILS_ALLOW_DEFAULT_DENY")]
        allow_default_deny: bool,
        /// Where --dev writes the CA certificate (PEM) for `curl --cacert`.
        #[arg(long, value_name = "FILE", default_value_os_t = std::env::temp_dir().join("guardrails-dev-ca.pem"))]
        dev_ca_out: PathBuf,
        /// Require a client certificate signed by a CA in this file (PEM), e.g. the API
        /// server's webhook client certificate (mutual TLS). Reloaded when it changes.
        #[arg(long, value_name = "FILE", env = "GUARDRAILS_CLIENT_CA")]
        client_ca: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Decide one request offline: an AdmissionReview (prints the response `serve` would send), or
    /// manifests as a kubectl-style dry run. Exit 0 whatever the decision.
    Eval {
        #[command(flatten)]
        policy: PolicyArgs,
        /// AdmissionReview JSON file (a bare `request` object is accepted too); `-` for stdin.
        /// The default input when -f is not given.
        #[arg(long, value_name = "FILE|-", conflicts_with = "filename")]
        review: Option<String>,
        /// The manifest being written (YAML or JSON; for DELETE, the object being deleted).
        #[arg(short = 'f', long, value_name = "FILE")]
        filename: Option<PathBuf>,
        /// The object as it is now, for UPDATE.
        #[arg(long, value_name = "FILE", requires = "filename")]
        old: Option<PathBuf>,
        /// CREATE, UPDATE or DELETE [default: UPDATE with --old, else CREATE].
        #[arg(long, requires = "filename")]
        operation: Option<String>,
        /// The user making the request.
        #[arg(
            long = "as",
            value_name = "USER",
            requires = "filename",
            default_value = "anonymous"
        )]
        as_user: String,
        /// A group of the user (repeatable).
        #[arg(long = "as-group", value_name = "GROUP", requires = "filename")]
        as_group: Vec<String>,
        /// Send through a subresource: `scale` (the manifests are turned into Scale objects) or `status`.
        #[arg(long, requires = "filename")]
        subresource: Option<String>,
        /// The request is sent by this delegator (e.g. argocd-server) on the user's behalf.
        #[arg(long, value_name = "USER", requires = "filename")]
        delegated_by: Option<String>,
        /// Output: `text` (default with -f) or `json` (the AdmissionReview response; default with --review).
        #[arg(long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Run the policy test files in DIR/tests against the policies in DIR; non-zero exit on any
    /// failure.
    Test {
        /// Policy directory (its `tests/` holds the test files).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Configuration for cases whose file names none (default: the embedded example).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Test files to run instead of DIR/tests: one file, or a directory of them (e.g. a
        /// corpus of recorded AdmissionReviews).
        #[arg(long, value_name = "FILE|DIR")]
        tests: Option<PathBuf>,
    },
    /// Re-decide requests recorded in an audit log (`serve --audit-log-requests`) with candidate
    /// policies and report what would change. Exit 0 whatever changes.
    Replay {
        /// Audit log (JSON lines); `-` for stdin.
        #[arg(long, value_name = "FILE|-")]
        log: String,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Write a serving certificate for the webhook Service signed by a new CA (or, with --ca-cert
    /// and --ca-key, by an existing one), and print the base64 CA bundle for the webhook
    /// configurations' `caBundle`.
    Certs {
        /// The webhook's Service name.
        #[arg(long)]
        service: String,
        /// The Service's namespace.
        #[arg(long)]
        namespace: String,
        /// Directory to write ca.crt, ca.key (a new CA only), tls.crt and tls.key into (created if
        /// missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity of the serving certificate in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Sign with this CA certificate (PEM) instead of a new CA, so the CA bundle stays the same.
        #[arg(long, value_name = "FILE", requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// The private key (PEM) of --ca-cert.
        #[arg(long, value_name = "FILE", requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// Validity of a new CA in days.
        #[arg(long, default_value_t = 3650, conflicts_with = "ca_cert")]
        ca_days: i64,
    },
    /// Parse and strictly validate the policies and config; non-zero exit on any error.
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Configuration file to validate too, and to check the teams and environments that
        /// policies name against [default: the embedded example].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Accept a policy set in which some action has no permit for anyone (a warning instead
        /// of an error). The config's `allowDefaultDeny: true` does the same.
        #[arg(long)]
        allow_default_deny: bool,
    },
    /// Format policies with Cedar's formatter (in place), or with --check list the files that
    /// would change and exit non-zero.
    Fmt {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        #[arg(long)]
        check: bool,
    },
}

/// Log lines waiting for stderr; beyond this they are dropped (and counted), never waited for.
pub const LOG_BUFFER_LINES: usize = 4096;

/// Log to stderr through a writer thread: a stalled stderr drops lines
/// (`guardrails_log_lines_dropped_total`) instead of blocking requests. Keep the guard until
/// exit: dropping it flushes what is buffered (waiting at most about a second).
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("guardrails-log")
        .finish(std::io::stderr());
    crate::metrics::count_dropped_log_lines(writer.error_counter());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

impl PolicyArgs {
    /// The sources as given. Default deny is accepted here: `eval` and `replay` are what-ifs;
    /// `serve` decides for itself.
    fn source(&self) -> EngineSource {
        EngineSource {
            policies: self.policies.clone(),
            config: self.config.clone(),
            mode: self.mode,
            allow_default_deny: true,
        }
    }
}

/// Load policies and config as the flags say (embedded defaults otherwise).
pub fn load_engine(args: &PolicyArgs) -> anyhow::Result<Engine> {
    Ok(args.source().load()?)
}

struct ServeOptions {
    listen: SocketAddr,
    tls_files: Option<(PathBuf, PathBuf)>,
    dev: bool,
    dev_ca_out: PathBuf,
    client_ca: Option<PathBuf>,
    limits: crate::limits::Limits,
    audit_log: Option<PathBuf>,
    audit_log_requests: bool,
    audit_log_max_request_bytes: usize,
    audit_log_on_loss: LossPolicy,
    audit_log_buffer_bytes: usize,
    reload: bool,
    reload_interval: std::time::Duration,
    reload_settle: std::time::Duration,
    unready_before_expiry: std::time::Duration,
    allow_default_deny: bool,
    probe_listen: Option<SocketAddr>,
    watch_namespaces: bool,
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve {
            policy,
            listen,
            tls_cert,
            tls_key,
            dev,
            dev_ca_out,
            audit_log,
            audit_log_requests,
            audit_log_max_request_bytes,
            audit_log_on_loss,
            audit_log_buffer_bytes,
            no_reload,
            reload_interval,
            reload_settle,
            unready_before_expiry,
            allow_default_deny,
            probe_listen,
            watch_namespaces,
            client_ca,
            limits,
        } => {
            // A development certificate is for this machine only: do not expose it by default.
            let default_host = if dev { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
            let options = ServeOptions {
                listen: listen.unwrap_or(SocketAddr::from((default_host, 8443))),
                tls_files: tls_cert.zip(tls_key),
                dev,
                dev_ca_out,
                client_ca,
                limits: limits.limits(),
                audit_log,
                audit_log_requests,
                audit_log_max_request_bytes,
                audit_log_on_loss,
                audit_log_buffer_bytes,
                reload: !no_reload,
                reload_interval,
                reload_settle,
                unready_before_expiry,
                allow_default_deny,
                probe_listen,
                watch_namespaces,
            };
            serve(&policy, options)
        }
        Command::Eval {
            policy,
            review,
            filename,
            old,
            operation,
            as_user,
            as_group,
            subresource,
            delegated_by,
            output,
        } => match filename {
            Some(file) => eval_manifests(
                &policy,
                Synthetic {
                    object: None,
                    old_object: None,
                    operation: operation.unwrap_or_else(|| {
                        if old.is_some() { "UPDATE" } else { "CREATE" }.to_string()
                    }),
                    user: as_user,
                    groups: as_group,
                    sub_resource: subresource,
                    delegated_by,
                    dry_run: false,
                    uid: "guardrails-eval".into(),
                },
                &file,
                old.as_deref(),
                output.unwrap_or(OutputFormat::Text),
            ),
            None => read_review(review.as_deref().unwrap_or("-"))
                .and_then(|body| eval(&policy, &body, output.unwrap_or(OutputFormat::Json))),
        },
        Command::Check {
            dir,
            config,
            deny_warnings,
            allow_default_deny,
        } => check(&dir, config.as_deref(), deny_warnings, allow_default_deny),
        Command::Fmt { dir, check } => format_policies(&dir, check),
        Command::Certs {
            service,
            namespace,
            out,
            days,
            ca_cert,
            ca_key,
            ca_days,
        } => {
            let ca = match (ca_cert, ca_key) {
                (Some(cert), Some(key)) => CaSource::Existing { cert, key },
                _ => CaSource::New { days: ca_days },
            };
            write_certs(&service, &namespace, &out, days, &ca)
        }
        Command::Test { dir, config, tests } => {
            run_policy_tests(&dir, config.as_deref(), tests.as_deref())
        }
        Command::Replay {
            log,
            policy,
            output,
        } => replay(&log, &policy, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `guardrails test | head`: the reader left; that is not a failure of ours.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &PolicyArgs, options: ServeOptions) -> anyhow::Result<()> {
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
    let listen = options.listen;
    let (certificate, dev_ca) = match (&options.tls_files, options.dev) {
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
    let mut limits = options.limits.clone();
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
        let _watcher = if options.reload {
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
        let _certificate_watcher = if options.reload {
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

/// Accept a full AdmissionReview, or a bare `request` stanza (as many projects' test data is).
fn wrap_bare_request(text: &str) -> anyhow::Result<Vec<u8>> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("the review is not valid JSON")?;
    if value.get("request").is_none()
        && value.get("uid").is_some()
        && value.get("operation").is_some()
    {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": value,
        });
        return Ok(serde_json::to_vec(&review)?);
    }
    Ok(text.as_bytes().to_vec())
}

fn read_review(review: &str) -> anyhow::Result<Vec<u8>> {
    let mut text = String::new();
    if review == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the review from stdin")?;
    } else {
        text = std::fs::read_to_string(review)
            .with_context(|| format!("cannot read the review {review}"))?;
    }
    wrap_bare_request(&text)
}

/// Read a YAML or JSON manifest (the first document of a multi-document file).
pub fn read_manifest(path: &Path) -> anyhow::Result<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document)
            .with_context(|| format!("{} is not valid YAML or JSON", path.display()))?;
        if !value.is_null() {
            return Ok(value);
        }
    }
    bail!("{} holds no manifest", path.display())
}

fn eval_manifests(
    args: &PolicyArgs,
    mut synthetic: Synthetic,
    file: &Path,
    old: Option<&Path>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    synthetic.object = Some(read_manifest(file)?);
    synthetic.old_object = old.map(read_manifest).transpose()?;
    let body = serde_json::to_vec(&synthetic.review()?)?;
    eval(args, &body, output)
}

fn eval(args: &PolicyArgs, body: &[u8], output: OutputFormat) -> anyhow::Result<()> {
    let engine = load_engine(args)?;
    let reviewed = respond::review(&engine, body)?;
    match output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&reviewed.review)?),
        OutputFormat::Text => out!("{}", crate::explain::explain(&reviewed)),
    }
    Ok(())
}

fn check(
    dir: &Path,
    config: Option<&Path>,
    deny_warnings: bool,
    allow_default_deny: bool,
) -> anyhow::Result<()> {
    let store = PolicyStore::load_dir(dir)?;
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let mut warnings: Vec<String> = store.warnings.iter().map(ToString::to_string).collect();
    warnings.extend(crate::policy::unknown_names(&store, &config));
    let default_deny_allowed = allow_default_deny || config.file.allow_default_deny;
    if !store.default_denied.is_empty() && default_deny_allowed {
        warnings.push(format!(
            "no permit policy can match {}: denied to everyone (allowed by allowDefaultDeny)",
            store.default_denied.join(", ")
        ));
    }
    for warning in &warnings {
        outln!("warning: {warning}");
    }
    if !store.default_denied.is_empty() && !default_deny_allowed {
        return Err(crate::policy::PolicyError::DefaultDeny(store.default_denied.clone()).into());
    }
    outln!(
        "{}: {} policies valid against {}, {} warning(s)",
        dir.display(),
        store.policy_count(),
        crate::policy::SCHEMA_FILE,
        warnings.len()
    );
    outln!("policies {}, config {}", store.hash, config.hash);
    if deny_warnings && !warnings.is_empty() {
        bail!("{} warning(s) and --deny-warnings", warnings.len());
    }
    Ok(())
}

fn format_policies(dir: &Path, check: bool) -> anyhow::Result<()> {
    let config = cedar_policy_formatter::Config::default();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    entries.sort();
    let mut unformatted = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let pretty = cedar_policy_formatter::policies_str_to_pretty(&text, &config)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if pretty != text {
            if check {
                outln!("would reformat {}", path.display());
            } else {
                std::fs::write(&path, &pretty)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                outln!("formatted {}", path.display());
            }
            unformatted.push(path);
        }
    }
    if check && !unformatted.is_empty() {
        bail!("{} file(s) are not formatted", unformatted.len());
    }
    Ok(())
}

fn run_policy_tests(dir: &Path, config: Option<&Path>, tests: Option<&Path>) -> anyhow::Result<()> {
    use crate::policy_test;
    let policies = PolicyStore::load_dir(dir)?;
    let default_config = match config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let files = match tests {
        Some(file) if file.is_file() => vec![file.to_path_buf()],
        Some(tests_dir) => policy_test::test_files(tests_dir)?,
        None => policy_test::test_files(&dir.join("tests"))?,
    };
    let default_engine = Engine::new(policies, default_config, None);
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in files {
        let file = policy_test::load(&path)?;
        let results = match &file.config {
            Some(relative) => {
                let config_path = path.parent().unwrap_or(Path::new(".")).join(relative);
                let engine = Engine::new(
                    PolicyStore::load_dir(dir)?,
                    Config::load(&config_path)?,
                    None,
                );
                policy_test::run_file(&engine, &path, &file)
            }
            None => policy_test::run_file(&default_engine, &path, &file),
        };
        for result in results {
            if result.passed() {
                passed += 1;
                outln!("PASS {}: {}", result.file, result.name);
            } else {
                failed += 1;
                outln!("FAIL {}: {}", result.file, result.name);
                for failure in &result.failures {
                    outln!("     {failure}");
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    Ok(())
}

fn replay(log: &str, args: &PolicyArgs, output: OutputFormat) -> anyhow::Result<()> {
    let engine = load_engine(args)?;
    let report = if log == "-" {
        crate::replay::replay(&engine, std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(log).with_context(|| format!("cannot read the log {log}"))?;
        crate::replay::replay(&engine, std::io::BufReader::new(file))
    };
    match output {
        OutputFormat::Text => out!("{}", crate::replay::render(&report)),
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

/// Where `guardrails certs` gets its CA.
enum CaSource {
    New { days: i64 },
    Existing { cert: PathBuf, key: PathBuf },
}

fn write_certs(
    service: &str,
    namespace: &str,
    out: &Path,
    days: i64,
    ca_source: &CaSource,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let names = vec![
        format!("{service}.{namespace}.svc"),
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    let common_name = format!("{service}.{namespace}.svc");
    let (ca, ca_origin) = match ca_source {
        CaSource::New { days: ca_days } => (
            tls::generate_ca(&format!("{common_name} CA"), *ca_days)?,
            None,
        ),
        CaSource::Existing { cert, key } => {
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            (
                tls::CaPem {
                    cert_pem: read(cert)?,
                    key_pem: read(key)?,
                },
                Some(cert),
            )
        }
    };
    let pair = tls::issue(&names, &common_name, days, &ca)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: &str, contents: &str, private: bool| -> anyhow::Result<()> {
        use std::io::Write as _;
        let path = out.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            // Created unreadable by others; an existing file is narrowed below.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    };
    if ca_origin.is_none() {
        write("ca.key", &ca.key_pem, true)?;
    }
    write("ca.crt", &ca.cert_pem, false)?;
    write("tls.crt", &pair.cert_pem, false)?;
    write("tls.key", &pair.key_pem, true)?;
    eprintln!(
        "wrote {0}/tls.crt, {0}/tls.key for {1} (valid {days} days) signed by {2}; caBundle:",
        out.display(),
        names.join(", "),
        match ca_origin {
            None => format!(
                "a new CA ({0}/ca.crt, key {0}/ca.key: keep it to sign the next pair with --ca-cert/--ca-key)",
                out.display()
            ),
            Some(cert) => format!("the CA of {}", cert.display()),
        }
    );
    outln!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem)
    );
    Ok(())
}
