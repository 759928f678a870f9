//! Recording mode: with `GUARDRAILS_RECORD_ARGOCD=1`, each Argo CD flow writes the
//! AdmissionReviews it made Argo CD (and the API server) send to Guardrails into
//! `tests/fixtures/argo-recorded/<flow>/`, with a `cases.yaml` holding what Guardrails decided,
//! so that `cargo test` (tests/recorded.rs) decides real Argo CD traffic offline.
//! Re-record after an Argo CD upgrade, and read the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::cluster::cluster;

/// The Argo CD version the recordings come from (`tests/e2e/components/argocd/go.mod`).
const ARGOCD_VERSION: &str = "v3.6.2";

fn enabled() -> bool {
    std::env::var_os("GUARDRAILS_RECORD_ARGOCD").is_some_and(|v| v == "1")
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo-recorded")
}

/// The last `:`-separated part of a user name (`argocd-server` for its service account).
fn short(user: &str) -> &str {
    user.rsplit(':').next().unwrap_or(user)
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

/// Record every audited request for an object named in `names` (an Application, the
/// Deployment it applies…) that carries its AdmissionReview. Does nothing unless recording.
pub fn record(flow: &str, what: &str, names: &[&str]) {
    if !enabled() {
        return;
    }
    let records: Vec<Value> = cluster()
        .guardrails
        .audit_records()
        .into_iter()
        .filter(|r| names.iter().any(|name| r["name"] == *name) && r["request"].is_object())
        .collect();
    let dir = corpus().join(flow);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {error}", dir.display());
    }
    let mut cases = format!(
        "# Recorded from Argo CD {ARGOCD_VERSION} by tests/e2e/argocd.rs ({what}). Do not edit: re-record\n\
         # with `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e argocd` (README, \"End-to-end tests\").\n\
         cases:\n"
    );
    for (index, record) in records.iter().enumerate() {
        let user = record["user"].as_str().unwrap_or("");
        let operation = record["operation"].as_str().unwrap_or("");
        let kind = record["kind"].as_str().unwrap_or("");
        let name = record["name"].as_str().unwrap_or("");
        let file = format!(
            "{:02}-{}-{}-{}-{}.json",
            index + 1,
            short(user),
            operation.to_lowercase(),
            kind.to_lowercase(),
            name
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
            "  - name: \"{flow} {:02}: {} {operation} {kind} {name} ({}) as {principal}\"\n    review: {file}\n    expect: {{allowed: {}, actions: [{}], policies: [{}]}}\n\n",
            index + 1,
            short(user),
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
