//! `guardrails eval`: decide one request offline, from a review or from manifests.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;

use super::{OutputFormat, PolicyArgs, load_engine};
use crate::respond;
use crate::synth::{Synthetic, read_manifest};

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

pub fn read_review(review: &str) -> anyhow::Result<Vec<u8>> {
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

pub fn eval_manifests(
    args: &PolicyArgs,
    mut synthetic: Synthetic,
    file: &Path,
    old: Option<&Path>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    synthetic.object = Some(read_manifest(file)?);
    synthetic.old_object = old.map(read_manifest).transpose()?;
    let body = serde_json::to_vec(&synthetic.review()?)?;
    eval(args, &body, output)
}

pub fn eval(args: &PolicyArgs, body: &[u8], output: OutputFormat) -> anyhow::Result<()> {
    let engine = load_engine(args)?;
    let reviewed = respond::review(&engine, body)?;
    match output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&reviewed.review)?),
        OutputFormat::Text => out!("{}", crate::explain::explain(&reviewed)),
    }
    Ok(())
}
