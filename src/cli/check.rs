//! `guardrails check`: validate a policy directory and a config.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;

use crate::config::Config;
use crate::policy::PolicyStore;

/// Parse and strictly validate the policies and config; non-zero exit on any error.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
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
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let CheckArgs {
        dir,
        config,
        deny_warnings,
        allow_default_deny,
    } = args;
    let store = PolicyStore::load_dir(&dir)?;
    let config = match config {
        Some(path) => Config::load(&path)?,
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
