//! End-to-end tests through a real kube-apiserver, etcd, kubectl and Helm (built from their Go
//! modules by `components/build.sh`, cached under `~/.cache/guardrails-e2e/`).
//!
//! - `admission`: writes by kubectl impersonating developers, platform engineers and controllers,
//!   decided by `guardrails serve` behind the chart's webhook configurations;
//! - `namespace_watch`: `serve --watch-namespaces` with the chart's RBAC, relabelled Namespaces, an
//!   API server outage survived on the last cache;
//! - `namespace_trust`: the Namespace labels Guardrails trusts, guarded through the chart's
//!   `namespaces.guardrails.io` webhook, and `guardrails check --live-namespaces`;
//! - `policy_reports`: `serve --policy-reports` with the chart's RBAC (`policyReports.enabled`) and the
//!   real PolicyReport CRD: developers' denied and audited writes become the namespace's report;
//!   without the RBAC, decisions are unaffected and the failed writes counted;
//! - `chart`: `helm lint`, `helm template` variants accepted by the API server, their container args
//!   parsed by the real CLI and `guardrails serve` started with the rendered files, the values the
//!   chart refuses;
//! - `argocd`: a real Argo CD (built from its Go module by `components/build-argocd.sh`) syncing
//!   from a local Git repository, its writes decided by the same Guardrails: auto-sync, and
//!   `argocd app sync` by a developer and a platform engineer;
//! - `rollouts`: a real Argo Rollouts controller (built from its Go module by
//!   `components/build-rollouts.sh`) stepping canary Rollouts, and people promoting, aborting,
//!   retrying and undoing them with the real `kubectl argo rollouts` plugin, decided by the same
//!   Guardrails;
//! - `readme`: README's and certs/README's install, upgrade, certificate, break-glass and uninstall
//!   commands run as written (`pod::JobRunner` runs the chart's check Job, there being no kubelet).
//!
//! Run only these: `cargo test --test e2e`. They need Go (see `components/build.sh`); without it
//! they fail, saying what to install.

#[path = "../common"]
mod common {
    pub mod corpus;
    pub mod fixtures;
    pub mod http;
    pub mod process;
    pub mod review;
    pub mod tls;
}

mod admission;
mod argocd;
mod chart;
mod cluster;
mod components;
mod fidelity;
mod namespace_trust;
mod namespace_watch;
mod pod;
mod policy_reports;
mod readme;
mod recording;
mod rollouts;

use serde_json::{Value, json};

/// An Argo CD Application in `argocd` deploying into `destination` (a namespace of this cluster).
pub fn application(name: &str, destination: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://github.com/argoproj/argocd-example-apps.git",
                "path": "guestbook",
                "targetRevision": "HEAD",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
        },
    })
}

/// The guestbook frontend Deployment (a fixture from kubernetes/examples) renamed into `namespace`.
pub fn deployment(name: &str, namespace: &str) -> Value {
    let mut deployment =
        common::fixtures::fixture("deployments/k8s-examples-guestbook-frontend-deployment.yaml");
    deployment["metadata"]["name"] = json!(name);
    deployment["metadata"]["namespace"] = json!(namespace);
    deployment
}

/// The canary Rollout example (a fixture from argoproj/argo-rollouts) renamed into `namespace`.
pub fn rollout(name: &str, namespace: &str) -> Value {
    let mut rollout =
        common::fixtures::fixture("rollouts/argo-rollouts-example-rollout-canary.yaml");
    rollout["metadata"]["name"] = json!(name);
    rollout["metadata"]["namespace"] = json!(namespace);
    rollout
}

/// A 40-hex commit SHA, as the application controller resolves `HEAD` to.
pub const COMMIT_SHA: &str = "4e0b3f1c2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";
