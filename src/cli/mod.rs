//! Command line: one file per command (`serve`, `eval`, `check` and `fmt`, `test`, `replay`,
//! `certs`); this one holds the arguments and dispatches.

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

mod certs;
mod check;
mod eval;
mod replay;
mod serve;
mod test;

pub use serve::ServeArgs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::decide::Engine;
use crate::reload::EngineSource;
use crate::synth::Synthetic;
use crate::vocabulary::Mode;

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

// Parsed once at start-up: the size of `Serve` costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook over TLS.
    Serve(serve::ServeArgs),
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

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
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
            Some(file) => eval::eval_manifests(
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
            None => eval::read_review(review.as_deref().unwrap_or("-"))
                .and_then(|body| eval::eval(&policy, &body, output.unwrap_or(OutputFormat::Json))),
        },
        Command::Check {
            dir,
            config,
            deny_warnings,
            allow_default_deny,
        } => check::check(&dir, config.as_deref(), deny_warnings, allow_default_deny),
        Command::Fmt { dir, check } => check::format_policies(&dir, check),
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
                (Some(cert), Some(key)) => certs::CaSource::Existing { cert, key },
                _ => certs::CaSource::New { days: ca_days },
            };
            certs::write_certs(&service, &namespace, &out, days, &ca)
        }
        Command::Test { dir, config, tests } => {
            test::run_policy_tests(&dir, config.as_deref(), tests.as_deref())
        }
        Command::Replay {
            log,
            policy,
            output,
        } => replay::replay(&log, &policy, output),
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
