//! `guardrails eval`: decide one request offline, from a review or from manifests.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{OutputFormat, PolicyArgs, load_engine};
use crate::authoring::synth::{Synthetic, read_manifest, read_manifests};
use crate::respond;
use crate::vocabulary::Verdict;

/// Decide requests offline: an AdmissionReview (prints the response `serve` would send), or every
/// document of a manifest file as a kubectl-style dry run. Exit 0 whatever the decision, unless
/// --fail-on-deny.
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
    /// Output: `text` (default with -f) or `json` (the AdmissionReview response; default with
    /// --review; an array of them when -f holds several documents).
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
    /// Print the AdmissionReview(s) built from the input instead of deciding (e.g. for `curl
    /// --data @review.json` against a running `serve`).
    #[arg(long)]
    print_review: bool,
    /// Exit non-zero when any request is denied (for CI).
    #[arg(long)]
    fail_on_deny: bool,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let reviews = match &args.filename {
        Some(file) => manifest_reviews(&args, file)?,
        None => {
            let source = args.review.as_deref().unwrap_or("-");
            if source == "-" && std::io::stdin().is_terminal() {
                // A bare `eval` would otherwise wait silently.
                eprintln!(
                    "guardrails eval: reading an AdmissionReview (JSON) from stdin; end with Ctrl-D. \
                     See `guardrails eval --help` for -f (manifests) and --review FILE."
                );
            }
            vec![read_review(source)?]
        }
    };
    if args.print_review {
        for body in &reviews {
            outln!("{}", String::from_utf8_lossy(body));
        }
        return Ok(());
    }
    let output = args.output.unwrap_or(if args.filename.is_some() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    });
    let engine = load_engine(&args.policy)?;
    let mut denied = 0;
    let mut answers = Vec::new();
    for (index, body) in reviews.iter().enumerate() {
        let reviewed = respond::validate_review(&engine, body)?;
        denied += usize::from(reviewed.verdict == Verdict::Deny);
        match output {
            OutputFormat::Json => answers.push(serde_json::to_value(reviewed.answer())?),
            OutputFormat::Text => {
                if index > 0 {
                    outln!("---");
                }
                out!("{}", crate::authoring::explain::explain(&reviewed));
            }
        }
    }
    if output == OutputFormat::Text {
        outln!("---\n{}", super::policy_set_line(&engine.policies));
    } else {
        // stdout stays the AdmissionReview(s) machines read.
        eprintln!(
            "guardrails eval: {}",
            super::policy_set_line(&engine.policies)
        );
    }
    if output == OutputFormat::Json {
        // One document, one object (as `serve` answers); several, an array in their order.
        let printed = match <[serde_json::Value; 1]>::try_from(answers) {
            Ok([only]) => only,
            Err(all) => serde_json::Value::Array(all),
        };
        outln!("{}", serde_json::to_string_pretty(&printed)?);
    }
    if args.fail_on_deny && denied > 0 {
        bail!(
            "{denied} of {} request(s) denied (--fail-on-deny)",
            reviews.len()
        );
    }
    Ok(())
}

/// The AdmissionReview of every document of `-f`, as the API server would send it.
fn manifest_reviews(args: &EvalArgs, file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let objects = read_manifests(file)?;
    if objects.is_empty() {
        bail!("{} holds no manifest", file.display());
    }
    let old = args.old.as_deref().map(read_manifest).transpose()?;
    if old.is_some() && objects.len() > 1 {
        bail!(
            "{} holds {} documents; with --old, -f must hold the one object it replaces",
            file.display(),
            objects.len()
        );
    }
    let operation = args
        .operation
        .clone()
        .unwrap_or_else(|| if old.is_some() { "UPDATE" } else { "CREATE" }.to_string());
    objects
        .into_iter()
        .enumerate()
        .map(|(index, object)| {
            let synthetic = Synthetic {
                object: Some(object),
                old_object: old.clone(),
                operation: operation.clone(),
                user: args.as_user.clone(),
                groups: args.as_group.clone(),
                sub_resource: args.subresource.clone(),
                delegated_by: args.delegated_by.clone(),
                dry_run: false,
                uid: if index == 0 {
                    "guardrails-eval".into()
                } else {
                    format!("guardrails-eval-{}", index + 1)
                },
            };
            let review = synthetic
                .admission_review()
                .with_context(|| format!("{} (document {})", file.display(), index + 1))?;
            Ok(serde_json::to_vec(&review)?)
        })
        .collect()
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
