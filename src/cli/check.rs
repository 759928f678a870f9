//! `guardrails check` and `guardrails fmt`: validate and format a policy directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Config;
use crate::policy::PolicyStore;

pub fn check(
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

pub fn format_policies(dir: &Path, check: bool) -> anyhow::Result<()> {
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
