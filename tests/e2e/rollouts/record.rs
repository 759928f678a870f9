//! Recording mode, as for Argo CD (`argocd/record.rs`): with `GUARDRAILS_RECORD_ARGOCD=1` (which
//! also makes the e2e Guardrails keep each AdmissionReview in its audit log), each Argo Rollouts
//! flow writes the AdmissionReviews it made the controller, the plugin and kubectl send to
//! Guardrails into `tests/fixtures/rollouts-recorded/<flow>/`, with a `cases.yaml` holding what
//! Guardrails decided, so that `cargo test` (tests/recorded.rs) decides real Argo Rollouts traffic
//! offline. Re-record after an Argo Rollouts upgrade, and read the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::cluster::cluster;

/// The Argo Rollouts version the recordings come from (`tests/e2e/components/rollouts/go.mod`).
const ROLLOUTS_VERSION: &str = "v1.10.2";

fn enabled() -> bool {
    std::env::var_os("GUARDRAILS_RECORD_ARGOCD").is_some_and(|v| v == "1")
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rollouts-recorded")
}

/// The last `:`-separated part of a user name (`argo-rollouts` for the controller), or the
/// part before `@` of a person's.
fn short(user: &str) -> &str {
    let last = user.rsplit(':').next().unwrap_or(user);
    last.split('@').next().unwrap_or(last)
}

fn sorted_strings(value: &Value, field: Option<&str>) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| match field {
            Some(field) => item[field].as_str(),
            None => item.as_str(),
        })
        .map(str::to_string)
        .collect();
    items.sort();
    items.dedup();
    items
}

/// Record every audited request for a Rollout of `namespace` named in `names` that carries its
/// AdmissionReview. Does nothing unless recording.
pub fn record(flow: &str, what: &str, namespace: &str, names: &[&str]) {
    if !enabled() {
        return;
    }
    let records: Vec<Value> = cluster()
        .guardrails
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["namespace"] == namespace
                && names.iter().any(|name| r["name"] == *name)
                && r["request"].is_object()
        })
        .collect();
    let dir = corpus().join(flow);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {error}", dir.display());
    }
    let mut cases = format!(
        "# Recorded from Argo Rollouts {ROLLOUTS_VERSION} by tests/e2e/rollouts.rs ({what}).\n\
         # Do not edit: re-record with `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e rollouts`\n\
         # (README, \"End-to-end tests\").\n\
         cases:\n"
    );
    for (index, record) in records.iter().enumerate() {
        let user = record["user"].as_str().unwrap_or("");
        let operation = record["operation"].as_str().unwrap_or("");
        let sub_resource = record["subResource"].as_str();
        let name = record["name"].as_str().unwrap_or("");
        let file = format!(
            "{:02}-{}-{}-{}{}.json",
            index + 1,
            short(user),
            operation.to_lowercase(),
            name,
            sub_resource.map(|s| format!("-{s}")).unwrap_or_default(),
        );
        let body = serde_json::to_string_pretty(&record["request"]).unwrap_or_default();
        if let Err(error) = std::fs::write(dir.join(&file), body + "\n") {
            panic!("cannot write {file}: {error}");
        }
        let actions = sorted_strings(&record["actions"], None);
        let policies = sorted_strings(&record["matches"], Some("policy"));
        let principal = record["principal"].as_str().unwrap_or("");
        let _ = write!(
            cases,
            "  - name: \"{flow} {:02}: {} {operation}{} Rollout {name} ({}) as {principal}\"\n    review: {file}\n    expect: {{allowed: {}, actions: [{}], policies: [{}]}}\n\n",
            index + 1,
            short(user),
            sub_resource.map(|s| format!(" /{s}")).unwrap_or_default(),
            actions.join(", "),
            record["allowed"].as_bool().unwrap_or(false),
            actions.join(", "),
            policies.join(", "),
        );
    }
    if let Err(error) = std::fs::write(dir.join("cases.yaml"), cases) {
        panic!("cannot write cases.yaml: {error}");
    }
}
