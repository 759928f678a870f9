//! The AdmissionReview bodies the benchmarks send, built from `tests/fixtures` with the test
//! helpers (`tests/common`). Shared by `benches/decide.rs` and `examples/bench_inputs.rs`.
#![allow(dead_code)]

use crate::common::*;
use serde_json::{Value, json};

/// The three bodies `scripts/bench-floor.sh` serves: a developer's sync of a production
/// Application (denied), the application controller's status write on a large Application
/// (allowed), and a Deployment UPDATE.
pub const SERVED: [&str; 3] = [
    "app_sync_prod_denied",
    "app_status_bookkeeping_large",
    "kubewarden_deployment_update",
];

pub fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let prod = app_to("payments-prod");
    let velero = with(
        fixture("argocd/applications/argocd-controller-testdata-velero-status-operationState.yaml"),
        &[("/spec/destination/namespace", json!("payments-prod"))],
    );
    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    let scaled = fixture("deployments/argocd-action-testdata-deployment-scaled.yaml");
    let paused =
        fixture("rollouts/argocd-rollout-action-testdata-has_pause_condition_rollout.yaml");
    vec![
        (
            "app_sync_prod_denied",
            Review::update(&prod, &syncing(&prod, json!({"prune": true}), Value::Null))
                .by(PAYMENTS_DEV)
                .body(),
        ),
        (
            "app_delete_large_denied",
            Review::delete(&velero).by(PAYMENTS_DEV).body(),
        ),
        (
            "app_status_bookkeeping_large",
            Review::update(
                &velero,
                &with(
                    velero.clone(),
                    &[("/status/health/status", json!("Degraded"))],
                ),
            )
            .by(CONTROLLER)
            .body(),
        ),
        (
            "deployment_scale_allowed",
            Review::update(&base, &scaled).by(PAYMENTS_DEV).body(),
        ),
        (
            "rollout_promote_allowed",
            Review::update(
                &paused,
                &with(paused.clone(), &[("/status/pauseConditions", Value::Null)]),
            )
            .by(PAYMENTS_DEV)
            .body(),
        ),
        (
            "kubewarden_deployment_update",
            wrap_request(fixture(
                "admission/kubewarden-echo-deployment-update_accept.admissionrequest.json",
            )),
        ),
    ]
}

/// Requests against the generated teams' namespaces (see `generate.rs`), for the policy-count
/// curve: a team developer's sync into the team's production namespace (denied by the team's
/// `-prod-deploy-leads` rule), and an image change to a production Deployment of that team by
/// someone from another team.
pub fn generated_bodies(team: &str, other_team: &str) -> Vec<(&'static str, Vec<u8>)> {
    let prod = app_to(&format!("{team}-prod"));
    let developer = format!("dev@{team}.example.com");
    let devs = format!("{team}-devs");
    let deployment = with(
        fixture("deployments/argocd-action-testdata-deployment.yaml"),
        &[("/metadata/namespace", json!(format!("{team}-prod")))],
    );
    let new_image = with(
        deployment.clone(),
        &[(
            "/spec/template/spec/containers/0/image",
            json!("registry.example.com/app:2.0"),
        )],
    );
    let outsider = format!("dev@{other_team}.example.com");
    let outsider_group = format!("{other_team}-devs");
    vec![
        (
            "team_app_sync_prod",
            Review::update(&prod, &syncing(&prod, json!({"prune": true}), Value::Null))
                .by((developer.as_str(), &[devs.as_str(), "system:authenticated"]))
                .body(),
        ),
        (
            "team_deployment_image_by_outsider",
            Review::update(&deployment, &new_image)
                .by((
                    outsider.as_str(),
                    &[outsider_group.as_str(), "system:authenticated"],
                ))
                .body(),
        ),
    ]
}
