//! Editing the policy directory of a running server: a valid edit is served without a restart;
//! an invalid one keeps the last good policies and shows on /readyz.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::*;
use guardrails::reload::{self, EngineSource};
use guardrails::server::{self, AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn call(state: &AppState, request: Request<Body>) -> Value {
    let response = server::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn allowed(state: &AppState, review: &Review) -> bool {
    let request = Request::post("/validate")
        .body(Body::from(review.body()))
        .unwrap();
    call(state, request).await["response"]["allowed"]
        .as_bool()
        .unwrap()
}

async fn readyz(state: &AppState) -> Value {
    call(state, Request::get("/readyz").body(Body::empty()).unwrap()).await
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A server state built from `source`, reloading whenever it changes (while the watcher lives).
fn watched(source: EngineSource) -> (AppState, notify::RecommendedWatcher) {
    let state = AppState::with_audit(
        source.load().unwrap(),
        guardrails::audit::AuditLog::disabled(),
    );
    let watcher = reload::watch(
        source,
        state.engine.clone(),
        state.reload.clone(),
        state.metrics.clone(),
    )
    .unwrap()
    .expect("a watcher");
    (state, watcher)
}

#[tokio::test]
async fn policy_edits_reload_and_bad_edits_keep_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    copy_policies(dir.path());
    let source = EngineSource {
        policies: Some(dir.path().to_path_buf()),
        config: None,
        mode: None,
    };
    let (state, _watcher) = watched(source);
    let shipped = readyz(&state).await["policies"].as_u64().unwrap();

    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    let scale = Review::update(
        &base,
        &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
    )
    .by(PAYMENTS_DEV);
    assert!(
        allowed(&state, &scale).await,
        "scaling in an unowned namespace is allowed at first"
    );

    // A valid edit: forbid scaling for everyone but the platform team.
    std::fs::write(
        dir.path().join("scale.cedar"),
        "@id(\"no-scale\")\n@reason(\"Scaling is frozen.\")\nforbid (principal, action == Action::\"scale\", resource)\nunless { principal in Team::\"platform\" };\n",
    )
    .unwrap();
    eventually("the new policy to be served", async || {
        !allowed(&state, &scale).await
    })
    .await;
    assert_eq!(readyz(&state).await["policies"], shipped + 1);

    // An invalid edit: the previous (valid) set keeps deciding, and /readyz says why.
    std::fs::write(
        dir.path().join("scale.cedar"),
        "@id(\"no-scale\")\nforbid (principal, action == Action::\"scale\", resource)\nwhen { resource.replicas > 1 };\n",
    )
    .unwrap();
    eventually("the failed reload to be reported", async || {
        readyz(&state).await["reload"]["failed"].as_u64() == Some(1)
    })
    .await;
    let status = readyz(&state).await;
    assert_eq!(status["ready"], true);
    let error = status["reload"]["lastError"].as_str().unwrap();
    assert!(error.contains("scale.cedar:3:"), "{error}");
    assert!(
        !allowed(&state, &scale).await,
        "the last good set still denies"
    );
    assert_eq!(status["policies"], shipped + 1);

    // Fixing it clears the error.
    std::fs::remove_file(dir.path().join("scale.cedar")).unwrap();
    eventually("the fix to be served", async || {
        allowed(&state, &scale).await
    })
    .await;
    let status = readyz(&state).await;
    assert_eq!(status["reload"]["lastError"], Value::Null);
    assert_eq!(status["policies"], shipped);
}

#[tokio::test]
async fn config_edits_reload_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, guardrails::config::EMBEDDED_CONFIG).unwrap();
    let source = EngineSource {
        policies: None,
        config: Some(config.clone()),
        mode: None,
    };
    let (state, _watcher) = watched(source);
    let prod = app_to("payments-prod");
    let sync =
        Review::update(&prod, &syncing(&prod, serde_json::json!({}), Value::Null)).by(PAYMENTS_DEV);
    assert!(!allowed(&state, &sync).await);

    // Switch the whole config to audit mode: nothing is denied any more.
    let audit = guardrails::config::EMBEDDED_CONFIG.replace("mode: enforce", "mode: audit");
    assert_ne!(audit, guardrails::config::EMBEDDED_CONFIG);
    std::fs::write(&config, audit).unwrap();
    eventually("audit mode to be served", async || {
        allowed(&state, &sync).await
    })
    .await;

    // A typo keeps audit mode and reports the error.
    std::fs::write(&config, "mode: audit\nteamz: {}\n").unwrap();
    eventually("the failed reload", async || {
        readyz(&state).await["reload"]["failed"].as_u64() == Some(1)
    })
    .await;
    assert!(
        readyz(&state).await["reload"]["lastError"]
            .as_str()
            .unwrap()
            .contains("teamz")
    );
    assert!(allowed(&state, &sync).await);
    assert_eq!(readyz(&state).await["mode"], "audit");
}
