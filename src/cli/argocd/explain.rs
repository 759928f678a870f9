//! `guardrails argocd explain`: both gates on one Argo CD action — Argo CD's RBAC, and Guardrails
//! on the write argocd-server then makes — side by side, with what decided each.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use super::{RbacSource, load_rbac};
use crate::argocd::Request;
use crate::authoring::argocd_writes::{ARGOCD_SERVER, write_for};
use crate::authoring::synth::read_manifest;
use crate::respond;
use crate::vocabulary::Verdict;

/// Both gates on one action on an Application: Argo CD's RBAC for the person, and Guardrails on the
/// write argocd-server then sends (a sync names the person; `update` and `delete` do not).
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// sync, override, update or delete.
    action: String,
    /// The Application (YAML or JSON manifest).
    #[arg(short = 'f', long = "application", value_name = "FILE")]
    application: PathBuf,
    /// The person: Argo CD's subject, and the name argocd-server writes into the operation.
    #[arg(long = "as", value_name = "USER")]
    user: String,
    /// A group of the person (the token's `scopes` claims); repeat for more.
    #[arg(long = "as-group", value_name = "GROUP")]
    groups: Vec<String>,
    /// For `override`: the revision asked for.
    #[arg(long, value_name = "REVISION")]
    revision: Option<String>,
    /// For `update`: what changes, as a JSON merge patch [default: a label].
    #[arg(long, value_name = "JSON")]
    change: Option<String>,
    /// The namespace Argo CD runs in: Applications elsewhere are `<project>/<namespace>/<name>`
    /// objects to its RBAC.
    #[arg(long, value_name = "NAMESPACE", default_value = "argocd")]
    argocd_namespace: String,
    #[command(flatten)]
    rbac: RbacSource,
    #[command(flatten)]
    policy: crate::cli::PolicyArgs,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let app = read_manifest(&args.application)?;
    let name = app
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let object = super::rbac_object(&app, &args.argocd_namespace);

    let argo_allows = argo_cd(&args, &object)?;

    let change = args
        .change
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .context("--change is not JSON")?;
    let write = write_for(
        &args.action,
        &app,
        &args.user,
        change.as_ref(),
        args.revision.as_deref(),
    )
    .map_err(|message| anyhow::anyhow!(message))?;
    let engine = crate::cli::load_engine(&args.policy)?;
    let body = serde_json::to_vec(&write.admission_review()?)?;
    let reviewed = respond::validate_review(&engine, &body)?;
    let outcome = reviewed.outcome.as_ref();
    let actions: Vec<&str> = outcome
        .and_then(|o| o.recognition.as_ref())
        .map(|r| r.actions.iter().map(|a| a.as_str()).collect())
        .unwrap_or_default();
    let principal = outcome
        .and_then(|o| o.identity.as_ref())
        .map_or(ARGOCD_SERVER, |i| i.username.as_str());
    let guardrails_allows = reviewed.allowed();
    outln!(
        "Guardrails: {} ({} {} as {principal}: {})",
        reviewed.verdict,
        write.operation,
        name,
        actions.join(", ")
    );
    for m in outcome.map_or(&[][..], |o| o.matches.as_slice()) {
        outln!(
            "  [{}] {} ({}): {}",
            m.policy,
            m.action.as_str(),
            m.effective,
            m.reason
        );
    }
    outln!(
        "{}",
        verdict(argo_allows, guardrails_allows, reviewed.verdict, principal)
    );
    outln!("{}", crate::cli::policy_set_line(&engine.policies));
    Ok(())
}

/// Argo CD's answer for the person, printed with the line that decided; whether it allows.
fn argo_cd(args: &ExplainArgs, object: &str) -> anyhow::Result<bool> {
    let rbac = load_rbac(&args.rbac)?;
    let request = Request {
        subject: &args.user,
        groups: &args.groups,
        resource: "applications",
        action: &args.action,
        object,
    };
    let argo = rbac.enforce(&request);
    outln!(
        "Argo CD RBAC: {} ({}, applications, {}, {object})",
        if argo.allowed { "allowed" } else { "denied" },
        args.user,
        args.action
    );
    match &argo.deciding_line {
        Some(line) => outln!("  by {line}"),
        None => outln!("  no policy line allows it"),
    }
    Ok(argo.allowed)
}

/// What the two answers mean together.
fn verdict(argo: bool, guardrails: bool, verdict: Verdict, principal: &str) -> String {
    match (argo, guardrails) {
        (true, true) if principal == ARGOCD_SERVER && verdict == Verdict::Allow => {
            "both allow — and Guardrails sees argocd-server, not the person: Argo CD's RBAC is the only gate on who".into()
        }
        (true, true) => "both allow".into(),
        (true, false) => "the UI allows what Guardrails denies: the button works, then the change fails with Guardrails' message".into(),
        (false, true) => "Argo CD denies it before anything reaches the cluster".into(),
        (false, false) => "both deny".into(),
    }
}
