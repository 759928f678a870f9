//! `guardrails replay`: re-decide recorded requests with a candidate policy set.

use std::io::Write;

use anyhow::Context;

use super::{OutputFormat, PolicyArgs, load_engine};

/// Re-decide requests recorded in an audit log (`serve --audit-log-requests`) with candidate
/// policies and report what would change. Exit 0 whatever changes.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Audit log (JSON lines); `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    log: String,
    #[command(flatten)]
    policy: PolicyArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs {
        log,
        policy,
        output,
    } = args;
    let log = log.as_str();
    let engine = load_engine(&policy)?;
    let report = if log == "-" {
        crate::authoring::replay::replay(&engine, std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(log).with_context(|| format!("cannot read the log {log}"))?;
        crate::authoring::replay::replay(&engine, std::io::BufReader::new(file))
    };
    match output {
        OutputFormat::Text => out!("{}", crate::authoring::replay::render(&report)),
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
