//! `guardrails report`: who would be denied, from an audit log.

use std::io::Write;

use anyhow::{Context, bail};

use crate::authoring::report::{self, GroupBy, ReportOptions};

/// Who would be denied, from an audit log (file or stdin): requests a policy matched, grouped by
/// team, person, namespace, environment, policy and action. A match counts when its policy
/// declares `enforce` (what enforcing an audit rollout would deny), or with --as-enforced always.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Audit log (JSON lines, as `serve` writes them); `-` for stdin.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    log: String,
    /// Group by these, in order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "policy,team,person"
    )]
    by: Vec<GroupBy>,
    /// Only records at or after this time: RFC 3339, or a span back from now (`24h`, `7d`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records before this time (same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Count every match as if enforced, policies marked `@enforcement("audit")` included.
    #[arg(long)]
    as_enforced: bool,
    /// `text`, `json` or `markdown`.
    #[arg(long, value_enum, default_value_t = ReportOutput::Text)]
    output: ReportOutput,
    /// Exit non-zero when any request would be denied (for CI gates on recent traffic).
    #[arg(long, value_enum)]
    fail_on: Option<ReportFailOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportOutput {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFailOn {
    /// Any request a counted match would deny.
    WouldDeny,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let time = |value: &Option<String>, flag: &str| {
        value
            .as_deref()
            .map(|v| report::parse_time(v, now))
            .transpose()
            .map_err(|error| anyhow::anyhow!("{flag}: {error}"))
    };
    let options = ReportOptions {
        since: time(&args.since, "--since")?,
        until: time(&args.until, "--until")?,
        as_enforced: args.as_enforced,
    };
    let reading = if args.log == "-" {
        report::read_audit_log(std::io::stdin().lock(), &options)
    } else {
        let file = std::fs::File::open(&args.log)
            .with_context(|| format!("cannot read the audit log {}", args.log))?;
        report::read_audit_log(std::io::BufReader::new(file), &options)
    };
    let rows = report::group(&reading.facts, &args.by);
    let counted = if args.as_enforced {
        "every match counted as enforced"
    } else {
        "matches of policies that declare enforce"
    };
    match args.output {
        ReportOutput::Json => {
            let mut value = serde_json::to_value(&reading)?;
            value["groups"] = serde_json::to_value(&rows)?;
            value["asEnforced"] = args.as_enforced.into();
            outln!("{}", serde_json::to_string_pretty(&value)?);
        }
        ReportOutput::Text | ReportOutput::Markdown => {
            outln!(
                "{} of {} request(s) would be denied ({counted}); {} were denied. Records {} .. {}.",
                reading.would_deny,
                reading.records,
                reading.denied,
                reading.first.as_deref().unwrap_or("-"),
                reading.last.as_deref().unwrap_or("-"),
            );
            if !rows.is_empty() {
                outln!();
                match args.output {
                    ReportOutput::Markdown => out!("{}", report::render_markdown(&rows, &args.by)),
                    _ => out!("{}", report::render_text(&rows, &args.by)),
                }
            }
            for invalid in &reading.invalid {
                outln!("invalid: {invalid}");
            }
        }
    }
    if args.fail_on == Some(ReportFailOn::WouldDeny) && reading.would_deny > 0 {
        bail!(
            "{} request(s) would be denied (--fail-on would-deny)",
            reading.would_deny
        );
    }
    Ok(())
}
