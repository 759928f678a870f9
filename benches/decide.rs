//! The decision path, end to end minus the network: parse the AdmissionReview body, recognise,
//! identify, build entities, run Cedar per action, build and serialise the response.
//! Results and method: BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use guardrails::respond;
use serde_json::{Value, json};
use std::hint::black_box;

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
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

fn review_path(c: &mut Criterion) {
    let engine = engine();
    let mut group = c.benchmark_group("review");
    for (name, body) in bodies() {
        group.bench_function(name, |b| {
            b.iter(|| {
                let reviewed = respond::review(&engine, black_box(&body)).expect("valid review");
                black_box(serde_json::to_vec(&reviewed.review).expect("serialisable"))
            })
        });
    }
    group.finish();
}

/// The same requests split into stages: envelope parsing alone, and decision alone.
fn stages(c: &mut Criterion) {
    let engine = engine();
    let mut group = c.benchmark_group("stage");
    for (name, body) in bodies() {
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                black_box(guardrails::admission::parse_review(black_box(&body)).expect("valid"))
            })
        });
        let request = guardrails::admission::parse_review(&body).expect("valid");
        group.bench_function(format!("decide/{name}"), |b| {
            b.iter(|| {
                black_box(
                    guardrails::decide::decide(&engine, black_box(&request)).expect("decided"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, review_path, stages);
criterion_main!(benches);
