//! Recording mode, shared by the Argo CD and Argo Rollouts flows (`argocd/record.rs`,
//! `rollouts/record.rs`): with `GUARDRAILS_RECORD_ARGOCD=1` (which also makes the e2e Guardrails
//! keep each AdmissionReview in its audit log), a flow writes the AdmissionReviews it made the
//! real writers send to Guardrails into `tests/fixtures/<corpus>/<flow>/`, one file each, with a
//! `cases.yaml` holding what Guardrails decided, so that `cargo test` (tests/recorded.rs) decides
//! real traffic offline. Re-record after an upgrade, and read the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::cluster::cluster;

/// Whether this run records.
pub fn enabled() -> bool {
    std::env::var_os("GUARDRAILS_RECORD_ARGOCD").is_some_and(|v| v == "1")
}

/// How one corpus names what it records.
pub struct Corpus {
    /// The folder under `tests/fixtures/`.
    pub dir: &'static str,
    /// The comment heading every `cases.yaml` (`#` lines, each ending in a newline).
    pub header: String,
    /// The short form of a user name, in file and case names.
    pub short: fn(&str) -> &str,
    /// What names the object in a file name (after index, user and operation) and in a case
    /// name (after the operation).
    pub object: fn(&Value) -> (String, String),
}

/// Write `flow`: every audited request `keep` selects that carries its AdmissionReview, and the
/// cases deciding them as Guardrails did. Does nothing unless recording.
pub fn record(corpus: &Corpus, flow: &str, keep: impl Fn(&Value) -> bool) {
    if !enabled() {
        return;
    }
    let records: Vec<Value> = cluster()
        .guardrails
        .audit_records()
        .into_iter()
        .filter(|r| keep(r) && r["request"].is_object())
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(corpus.dir)
        .join(flow);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {error}", dir.display());
    }
    let mut cases = format!("{}cases:\n", corpus.header);
    for (index, record) in records.iter().enumerate() {
        let user = (corpus.short)(record["user"].as_str().unwrap_or(""));
        let operation = record["operation"].as_str().unwrap_or("");
        let (in_file, in_case) = (corpus.object)(record);
        let file = format!(
            "{:02}-{user}-{}-{in_file}.json",
            index + 1,
            operation.to_lowercase(),
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
            "  - name: \"{flow} {:02}: {user} {operation}{in_case} ({}) as {principal}\"\n    review: {file}\n    expect: {{allowed: {}, actions: [{}], policies: [{}]}}\n\n",
            index + 1,
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
