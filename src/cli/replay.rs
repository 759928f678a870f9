//! `guardrails replay`: re-decide recorded requests with a candidate policy set.

use std::io::Write;

use anyhow::{Context, bail};

use super::{OutputFormat, PolicyArgs, load_engine};
use crate::authoring::replay;
use crate::authoring::report::{self, GroupBy};

/// Re-decide requests recorded in an audit log (`serve --audit-log-requests`) with candidate
/// policies and report what would change, the new denials grouped. Exit 0 whatever changes,
/// unless --fail-on.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Audit log (JSON lines); `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    log: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// `text` for a person, `json` for machines.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Count a request as denied, before and after, when any policy matches it, policies in
    /// audit or warn mode included.
    #[arg(long)]
    as_enforced: bool,
    /// Group the new denials by these, in order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "policy,team,person"
    )]
    by: Vec<GroupBy>,
    /// Exit non-zero when the candidate denies a request the log shows allowed (for CI).
    #[arg(long, value_enum)]
    fail_on: Option<ReplayFailOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFailOn {
    NewDenials,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let log = args.log.as_str();
    let engine = load_engine(&args.policy)?;
    let report = if log == "-" {
        replay::replay(&engine, std::io::stdin().lock(), args.as_enforced)
    } else {
        let file =
            std::fs::File::open(log).with_context(|| format!("cannot read the log {log}"))?;
        replay::replay(&engine, std::io::BufReader::new(file), args.as_enforced)
    };
    let groups = report::group(&replay::new_denials(&report), &args.by);
    match args.output {
        OutputFormat::Text => {
            out!("{}", replay::render(&report));
            if !groups.is_empty() {
                outln!(
                    "new denials by {}:",
                    args.by
                        .iter()
                        .map(|b| b.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                out!("{}", report::render_text(&groups, &args.by));
            }
            outln!("{}", super::policy_set_line(&engine.policies));
        }
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&report)?;
            value["newDenialGroups"] = serde_json::to_value(&groups)?;
            value["policies"] = engine.policies.source.clone().into();
            value["policyHash"] = engine.policies.hash.clone().into();
            outln!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    if args.fail_on == Some(ReplayFailOn::NewDenials) && report.newly_denied > 0 {
        bail!(
            "the candidate policies deny {} request(s) the log shows allowed (--fail-on new-denials)",
            report.newly_denied
        );
    }
    Ok(())
}
