//! `guardrails fmt`: format a policy directory with Cedar's formatter.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Format policies with Cedar's formatter (in place), or with --check list the files that
/// would change and exit non-zero.
#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    #[command(flatten)]
    policy_dir: super::PolicyDirArgs,
    /// Write nothing: list the files that would change, and exit non-zero if there are any.
    #[arg(long)]
    check: bool,
}

pub fn run(args: FmtArgs) -> anyhow::Result<()> {
    let FmtArgs { policy_dir, check } = args;
    let Some(dir) = policy_dir.resolve() else {
        bail!(
            "fmt formats files: give a policy folder (no ./policies here holds a guardrails.cedarschema)"
        );
    };
    let config = cedar_policy_formatter::Config::default();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    entries.sort();
    let mut unformatted = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let pretty =
            cedar_policy_formatter::policies_str_to_pretty(&text, &config).map_err(|e| {
                // The formatter says only that it cannot parse: say where, as `check` does.
                match crate::policy::parse_error(&path.display().to_string(), &text) {
                    Some(diagnostic) => anyhow::anyhow!("{diagnostic}"),
                    None => anyhow::anyhow!("{}: {e}", path.display()),
                }
            })?;
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
