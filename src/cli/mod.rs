//! Command line: one file per command (`serve`, `eval`, `check`, `fmt`, `test`, `replay`,
//! `report`, `certs`, `argocd`, `init`), each with its arguments and its `run`; this one holds what they share (policy
//! flags, output and log formats, logging) and dispatches.

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

mod argocd;
mod certs;
mod check;
mod eval;
mod fmt;
mod init;
mod replay;
mod report;
mod serve;
mod test;

pub use serve::ServeArgs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::decide::Engine;
use crate::reload::EngineSource;
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
    /// Policy directory (schema + *.cedar) [default: ./policies when it holds a
    /// guardrails.cedarschema, else the shipped policies built into the binary].
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
    Eval(eval::EvalArgs),
    Test(test::TestArgs),
    Replay(replay::ReplayArgs),
    Report(report::ReportArgs),
    Certs(certs::CertsArgs),
    Check(check::CheckArgs),
    Fmt(fmt::FmtArgs),
    Init(init::InitArgs),
    /// Argo CD's own RBAC, offline (`argocd can`).
    Argocd(argocd::ArgocdArgs),
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
        // Colours only for a person at a terminal, not in a file or a log collector.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    guard
}

impl PolicyArgs {
    /// The sources as given. Default deny is accepted here: `eval` and `replay` are what-ifs;
    /// `serve` decides for itself.
    fn source(&self) -> EngineSource {
        EngineSource {
            policies: policy_dir(self.policies.as_deref()),
            config: self.config.clone(),
            mode: self.mode,
            allow_default_deny: true,
            decision_cache_entries: None,
        }
    }
}

/// The policy folder of `check`, `test` and `fmt`: positional, or `--policies` as elsewhere.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyDirArgs {
    /// Policy directory (its `tests/` holds `test`'s files) [default: ./policies when it holds a
    /// guardrails.cedarschema, else the shipped policies built into the binary, which `fmt` cannot
    /// format]; the same as --policies.
    #[arg(value_name = "DIR", conflicts_with = "policies")]
    dir: Option<PathBuf>,
    /// Policy directory (as the positional DIR).
    #[arg(long, value_name = "DIR", env = "GUARDRAILS_POLICIES")]
    policies: Option<PathBuf>,
}

impl PolicyDirArgs {
    /// The folder by the one rule (`policy_dir`); `None`: the built-in set.
    pub fn resolve(&self) -> Option<PathBuf> {
        policy_dir(self.dir.as_deref().or(self.policies.as_deref()))
    }
}

/// The one rule every command reads policies by: the folder given, else `./policies` when it
/// holds a schema, else (`None`) the shipped policies built into the binary.
pub fn policy_dir(given: Option<&std::path::Path>) -> Option<PathBuf> {
    if let Some(dir) = given {
        return Some(dir.to_path_buf());
    }
    let local = PathBuf::from("policies");
    local
        .join(crate::policy::SCHEMA_FILE)
        .is_file()
        .then_some(local)
}

/// `<source> <hash>`: the policy set a command used, for its output.
pub fn policy_set_line(store: &crate::policy::PolicyStore) -> String {
    format!("policies {} {}", store.source, store.hash)
}

/// Load policies and config as the flags say (embedded defaults otherwise).
pub fn load_engine(args: &PolicyArgs) -> anyhow::Result<Engine> {
    Ok(args.source().load()?)
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Init(args) => init::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Test(args) => test::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Report(args) => report::run(args),
        Command::Argocd(args) => argocd::run(args),
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
