//! /mutate on fixtures: forged initiators are overwritten with the real caller, delegated and
//! automated operations are left alone, patches apply to the expected object and are idempotent.

mod common {
    pub mod engine;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
}

use axum::body::Body;
use axum::http::Request;
use common::engine::engine;
use common::fixtures::fixture;
use common::objects::{app_to, syncing, with};
use common::review::Review;
use common::review::User::{ArgocdServer, Controller, PaymentsDev};
use guardrails::config::Config;
use guardrails::mutate;
use guardrails::server::{self, AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Run /mutate's logic, apply its patch to the request's object, and return (patched, op count).
fn mutate_and_apply(review: &Review, config: &Config) -> (Value, usize) {
    let (answer, count) =
        mutate::mutate_review(config, &Default::default(), &review.body()).unwrap();
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "mutation never denies");
    let mut object = review.request["object"].clone();
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_slice(&base64_decode(patch)).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    (object, count)
}

/// A second pass over the patched object must change nothing (reinvocationPolicy: IfNeeded).
fn assert_idempotent(review: &Review, patched: &Value, config: &Config) {
    let mut again = review.clone();
    again.request["object"] = patched.clone();
    let (_, count) = mutate_and_apply(&again, config);
    assert_eq!(count, 0, "a second pass must not patch");
}

fn config() -> Config {
    Config::embedded().unwrap()
}

#[test]
fn forged_initiator_is_overwritten_with_the_caller() {
    let app = app_to("payments-prod");
    let review = Review::update(
        &app,
        &syncing(
            &app,
            json!({"revision": "HEAD"}),
            json!({"username": "admin@example.com"}),
        ),
    )
    .by(PaymentsDev);
    let (patched, count) = mutate_and_apply(&review, &config());
    assert_eq!(count, 1);
    let expected = syncing(
        &app,
        json!({"revision": "HEAD"}),
        json!({"username": PaymentsDev.name()}),
    );
    assert_eq!(patched, expected);
    assert_idempotent(&review, &patched, &config());
}

#[test]
fn missing_initiator_is_filled_in() {
    let app = app_to("payments-dev");
    let mut new = app.clone();
    new["operation"] = json!({"sync": {}});
    let review = Review::update(&app, &new).by(PaymentsDev);
    let (patched, count) = mutate_and_apply(&review, &config());
    assert_eq!(count, 1);
    assert_eq!(
        patched["operation"]["initiatedBy"],
        json!({"username": PaymentsDev.name()})
    );
    assert_idempotent(&review, &patched, &config());
}

#[test]
fn forged_automation_is_attributed_to_the_caller() {
    let app = app_to("payments-prod");
    let review =
        Review::update(&app, &syncing(&app, json!({}), json!({"automated": true}))).by(PaymentsDev);
    let (patched, count) = mutate_and_apply(&review, &config());
    assert_eq!(count, 2);
    assert_eq!(
        patched["operation"]["initiatedBy"],
        json!({"username": PaymentsDev.name(), "automated": false})
    );
    assert_idempotent(&review, &patched, &config());
}

#[test]
fn delegated_and_automated_operations_are_untouched() {
    let app = app_to("payments-prod");
    for review in [
        Review::update(
            &app,
            &syncing(&app, json!({}), json!({"username": "admin@example.com"})),
        )
        .by(ArgocdServer),
        Review::update(&app, &syncing(&app, json!({}), json!({"automated": true}))).by(Controller),
    ] {
        let (patched, count) = mutate_and_apply(&review, &config());
        assert_eq!(count, 0);
        assert_eq!(patched, review.request["object"]);
    }
}

#[test]
fn other_writes_get_no_patch() {
    let velero =
        fixture("argocd/applications/argocd-controller-testdata-velero-status-operationState.yaml");
    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    for review in [
        Review::update(
            &velero,
            &with(
                velero.clone(),
                &[("/status/health/status", json!("Degraded"))],
            ),
        )
        .by(Controller),
        Review::update(
            &base,
            &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
        )
        .by(PaymentsDev),
        Review::new("CREATE", Some(&base), None).by(PaymentsDev),
        Review::new("DELETE", None, Some(&base)).by(PaymentsDev),
    ] {
        assert_eq!(mutate_and_apply(&review, &config()).1, 0);
    }
    // An operation already in progress is not re-attributed to whoever writes next.
    let app = app_to("payments-dev");
    let running = syncing(&app, json!({}), json!({"username": "admin@example.com"}));
    let review = Review::update(
        &running,
        &with(
            running.clone(),
            &[("/status/operationState/phase", json!("Running"))],
        ),
    )
    .by(Controller);
    assert_eq!(mutate_and_apply(&review, &config()).1, 0);
}

#[test]
fn team_label_is_stamped_on_create_only_when_enabled() {
    let deployment = with(
        fixture("deployments/k8s-examples-guestbook-frontend-deployment.yaml"),
        &[("/metadata/namespace", json!("payments-dev"))],
    );
    let review = Review::new("CREATE", Some(&deployment), None).by(PaymentsDev);
    assert_eq!(mutate_and_apply(&review, &config()).1, 0, "off by default");

    let mut enabled = config();
    enabled.file.mutation.stamp_team_label = true;
    let (patched, count) = mutate_and_apply(&review, &enabled);
    assert_eq!(count, 1);
    assert_eq!(
        patched["metadata"]["labels"]["guardrails.io/team"],
        "payments"
    );
    assert_eq!(
        patched["metadata"]["labels"]["app"],
        deployment["metadata"]["labels"]["app"]
    );
    assert_idempotent(&review, &patched, &enabled);

    let unlabelled = with(deployment.clone(), &[("/metadata/labels", Value::Null)]);
    let (patched, _) = mutate_and_apply(
        &Review::new("CREATE", Some(&unlabelled), None).by(PaymentsDev),
        &enabled,
    );
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"guardrails.io/team": "payments"})
    );

    let unowned = with(deployment, &[("/metadata/namespace", json!("default"))]);
    assert_eq!(
        mutate_and_apply(
            &Review::new("CREATE", Some(&unowned), None).by(PaymentsDev),
            &enabled
        )
        .1,
        0
    );
}

#[tokio::test]
async fn mutate_route_answers_with_a_base64_json_patch() {
    let app = app_to("payments-prod");
    let review = Review::update(
        &app,
        &syncing(&app, json!({}), json!({"username": "admin@example.com"})),
    )
    .by(PaymentsDev)
    .set("uid", "m-1");
    let state = AppState::with_audit(engine(), guardrails::audit::AuditLog::disabled());
    let response = server::router(state.clone())
        .oneshot(
            Request::post("/mutate")
                .body(Body::from(review.body()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let answer = &body["response"];
    assert_eq!(answer["uid"], "m-1");
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["patchType"], "JSONPatch");
    let patch = answer["patch"].as_str().unwrap();
    let decoded = base64_decode(patch);
    let ops: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(
        ops,
        json!([{"op": "replace", "path": "/operation/initiatedBy/username", "value": PaymentsDev.name()}])
    );

    let response = server::router(state)
        .oneshot(Request::post("/mutate").body(Body::from("nope")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
