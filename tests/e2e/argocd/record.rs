//! The Argo CD flows' recordings (`crate::recording`): into `tests/fixtures/argo-recorded/<flow>/`.

use serde_json::Value;

use crate::recording::{self, Corpus};

/// The Argo CD version the recordings come from (`tests/e2e/components/argocd/go.mod`).
const ARGOCD_VERSION: &str = "v3.6.2";

/// The last `:`-separated part of a user name (`argocd-server` for its service account).
fn short(user: &str) -> &str {
    user.rsplit(':').next().unwrap_or(user)
}

/// Record every audited request for an object named in `names` (an Application, the
/// Deployment it applies…) that carries its AdmissionReview. Does nothing unless recording.
pub fn record(flow: &str, what: &str, names: &[&str]) {
    let corpus = Corpus {
        dir: "argo-recorded",
        header: format!(
            "# Recorded from Argo CD {ARGOCD_VERSION} by tests/e2e/argocd.rs ({what}). Do not edit: re-record\n\
             # with `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e argocd` (README, \"End-to-end tests\").\n"
        ),
        short,
        object: |record: &Value| {
            let kind = record["kind"].as_str().unwrap_or("");
            let name = record["name"].as_str().unwrap_or("");
            (
                format!("{}-{name}", kind.to_lowercase()),
                format!(" {kind} {name}"),
            )
        },
    };
    recording::record(&corpus, flow, |r| {
        names.iter().any(|name| r["name"] == *name)
    });
}
