//! `guardrails eval`: decide one request offline, from a review or from manifests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{OutputFormat, PolicyArgs, load_engine};
use crate::authoring::synth::{Synthetic, read_manifest};
use crate::respond;

/// Decide one request offline: an AdmissionReview (prints the response `serve` would send), or
/// manifests as a kubectl-style dry run. Exit 0 whatever the decision.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// AdmissionReview JSON file (a bare `request` object is accepted too); `-` for stdin.
    /// The default input when -f is not given.
    #[arg(long, value_name = "FILE|-", conflicts_with = "filename")]
    review: Option<String>,
    /// The manifest being written (YAML or JSON; for DELETE, the object being deleted).
    #[arg(short = 'f', long, value_name = "FILE")]
    filename: Option<PathBuf>,
    /// The object as it is now, for UPDATE.
    #[arg(long, value_name = "FILE", requires = "filename")]
    old: Option<PathBuf>,
    /// CREATE, UPDATE or DELETE [default: UPDATE with --old, else CREATE].
    #[arg(long, requires = "filename")]
    operation: Option<String>,
    /// The user making the request.
    #[arg(
        long = "as",
        value_name = "USER",
        requires = "filename",
        default_value = "anonymous"
    )]
    as_user: String,
    /// A group of the user (repeatable).
    #[arg(long = "as-group", value_name = "GROUP", requires = "filename")]
    as_group: Vec<String>,
    /// Send through a subresource: `scale` (the manifests are turned into Scale objects) or `status`.
    #[arg(long, requires = "filename")]
    subresource: Option<String>,
    /// The request is sent by this delegator (e.g. argocd-server) on the user's behalf.
    #[arg(long, value_name = "USER", requires = "filename")]
    delegated_by: Option<String>,
    /// Output: `text` (default with -f) or `json` (the AdmissionReview response; default with --review).
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let Some(file) = &args.filename else {
        let body = read_review(args.review.as_deref().unwrap_or("-"))?;
        return eval(
            &args.policy,
            &body,
            args.output.unwrap_or(OutputFormat::Json),
        );
    };
    let synthetic = Synthetic {
        object: None,
        old_object: None,
        operation: args.operation.clone().unwrap_or_else(|| {
            if args.old.is_some() {
                "UPDATE"
            } else {
                "CREATE"
            }
            .to_string()
        }),
        user: args.as_user.clone(),
        groups: args.as_group.clone(),
        sub_resource: args.subresource.clone(),
        delegated_by: args.delegated_by.clone(),
        dry_run: false,
        uid: "guardrails-eval".into(),
    };
    eval_manifests(
        &args.policy,
        synthetic,
        file,
        args.old.as_deref(),
        args.output.unwrap_or(OutputFormat::Text),
    )
}

/// Accept a full AdmissionReview, or a bare `request` stanza (as many projects' test data is).
fn wrap_bare_request(text: &str) -> anyhow::Result<Vec<u8>> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("the review is not valid JSON")?;
    if value.get("request").is_none()
        && value.get("uid").is_some()
        && value.get("operation").is_some()
    {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": value,
        });
        return Ok(serde_json::to_vec(&review)?);
    }
    Ok(text.as_bytes().to_vec())
}

fn read_review(review: &str) -> anyhow::Result<Vec<u8>> {
    let mut text = String::new();
    if review == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the review from stdin")?;
    } else {
        text = std::fs::read_to_string(review)
            .with_context(|| format!("cannot read the review {review}"))?;
    }
    wrap_bare_request(&text)
}

fn eval_manifests(
    args: &PolicyArgs,
    mut synthetic: Synthetic,
    file: &Path,
    old: Option<&Path>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    synthetic.object = Some(read_manifest(file)?);
    synthetic.old_object = old.map(read_manifest).transpose()?;
    let body = serde_json::to_vec(&synthetic.admission_review()?)?;
    eval(args, &body, output)
}

fn eval(args: &PolicyArgs, body: &[u8], output: OutputFormat) -> anyhow::Result<()> {
    let engine = load_engine(args)?;
    let reviewed = respond::validate_review(&engine, body)?;
    match output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&reviewed.review)?),
        OutputFormat::Text => out!("{}", crate::authoring::explain::explain(&reviewed)),
    }
    Ok(())
}
