//! `guardrails check`: validate a policy directory and a config.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::config::Config;
use crate::policy::PolicyStore;

/// Parse and strictly validate the policies and config; non-zero exit on any error.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    policy_dir: super::PolicyDirArgs,
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
    /// Also warn where the config's `namespaces` and these Namespaces' labels
    /// (`namespaceLabels`) disagree: `kubectl get namespaces -o json` output, or Namespace
    /// manifests (YAML or JSON; `-` for stdin).
    #[arg(long, value_name = "FILE|-", conflicts_with = "live_namespaces")]
    namespaces: Option<String>,
    /// The same, with the Namespaces in the cluster (in-cluster config or KUBECONFIG; needs
    /// `list` on namespaces).
    #[arg(long)]
    live_namespaces: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let CheckArgs {
        policy_dir,
        config,
        deny_warnings,
        allow_default_deny,
        namespaces,
        live_namespaces,
    } = args;
    let store = match policy_dir.resolve() {
        Some(dir) => PolicyStore::load_dir(&dir)?,
        None => PolicyStore::embedded()?,
    };
    let config = match config {
        Some(path) => Config::load(&path)?,
        None => Config::embedded()?,
    };
    let mut warnings: Vec<String> = store.warnings.iter().map(ToString::to_string).collect();
    warnings.extend(crate::policy::unknown_names(&store, &config));
    if let Some(live) = observed_namespaces(namespaces.as_deref(), live_namespaces)? {
        warnings.extend(config.label_disagreements(&live));
    }
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
        store.source,
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

/// The Namespaces `--namespaces` or `--live-namespaces` name, if either is given.
fn observed_namespaces(
    file: Option<&str>,
    live: bool,
) -> anyhow::Result<Option<crate::cluster::NamespaceLabels>> {
    if live {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let labels = runtime.block_on(async {
            let client = kube::Client::try_default()
                .await
                .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
            crate::namespace_watch::list_namespaces(client)
                .await
                .context("cannot list the cluster's Namespaces")
        })?;
        return Ok(Some(labels));
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read Namespaces from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
    };
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document)
            .with_context(|| format!("{file} is not valid YAML or JSON"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    let labels = crate::cluster::labels_from_manifests(&documents)
        .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
    Ok(Some(labels))
}
