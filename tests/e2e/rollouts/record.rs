//! The Argo Rollouts flows' recordings (`crate::recording`): what the controller, the plugin and
//! kubectl sent, into `tests/fixtures/rollouts-recorded/<flow>/`.

use serde_json::Value;

use crate::recording::{self, Corpus};

/// The Argo Rollouts version the recordings come from (`tests/e2e/components/rollouts/go.mod`).
const ROLLOUTS_VERSION: &str = "v1.10.2";

/// The last `:`-separated part of a user name (`argo-rollouts` for the controller), or the
/// part before `@` of a person's.
fn short(user: &str) -> &str {
    let last = user.rsplit(':').next().unwrap_or(user);
    last.split('@').next().unwrap_or(last)
}

/// Record every audited request for a Rollout of `namespace` named in `names` that carries its
/// AdmissionReview. Does nothing unless recording.
pub fn record(flow: &str, what: &str, namespace: &str, names: &[&str]) {
    let corpus = Corpus {
        dir: "rollouts-recorded",
        header: format!(
            "# Recorded from Argo Rollouts {ROLLOUTS_VERSION} by tests/e2e/rollouts.rs ({what}).\n\
             # Do not edit: re-record with `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e rollouts`\n\
             # (README, \"End-to-end tests\").\n"
        ),
        short,
        object: |record: &Value| {
            let name = record["name"].as_str().unwrap_or("");
            let sub_resource = record["subResource"].as_str();
            (
                format!(
                    "{name}{}",
                    sub_resource.map(|s| format!("-{s}")).unwrap_or_default()
                ),
                format!(
                    "{} Rollout {name}",
                    sub_resource.map(|s| format!(" /{s}")).unwrap_or_default()
                ),
            )
        },
    };
    recording::record(&corpus, flow, |r| {
        r["namespace"] == namespace && names.iter().any(|name| r["name"] == *name)
    });
}
