//! `guardrails replay`: re-decide recorded requests with a candidate policy set.

use std::io::Write;

use anyhow::Context;

use super::{OutputFormat, PolicyArgs, load_engine};

pub fn replay(log: &str, args: &PolicyArgs, output: OutputFormat) -> anyhow::Result<()> {
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
