//! `guardrails serve --watch-namespaces` against the real API server, reading Namespaces as the
//! chart's own service account (ServiceAccount, ClusterRole and ClusterRoleBinding rendered by
//! `helm template`, token from `kubectl create token`).

use std::time::Duration;

use serde_json::json;

use crate::application;
use crate::cluster::{BOB, FULLNAME, RELEASE_NAMESPACE, cluster, exclusive, shared, wait_for};
use crate::common::review::Review;
use crate::common::review::User::PaymentsDev;

fn label(namespace: &str, environment: &str) {
    cluster()
        .kubectl(&[
            "label",
            "namespace",
            namespace,
            &format!("guardrails.io/environment={environment}"),
            "--overwrite",
        ])
        .ok();
}

/// Whether bob's server-side dry-run sync of `app` is allowed right now.
fn bob_may_sync(app: &str) -> bool {
    let patch = json!({"operation": {"sync": {"revision": "HEAD"}}}).to_string();
    let out = cluster().kubectl_as(
        BOB,
        &[
            "patch",
            "applications.argoproj.io",
            app,
            "-n",
            "argocd",
            "--type",
            "merge",
            "-p",
            &patch,
            "--dry-run=server",
        ],
    );
    if !out.success {
        assert!(
            out.stderr.contains("[prod-sync-platform-only]"),
            "unexpected failure: {out}"
        );
    }
    out.success
}

fn wait_until_bob_may_sync(app: &str, expected: bool) {
    wait_for(
        Duration::from_secs(20),
        &format!(
            "bob's sync of {app} to be {}",
            if expected { "allowed" } else { "denied" }
        ),
        || Ok((bob_may_sync(app) == expected).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn relabelling_a_namespace_changes_the_next_decision() {
    let _shared = shared();
    let c = cluster();
    // A namespace the config does not list: only its live labels give it a team and environment.
    c.apply_json(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "e2e-watch", "labels": {
            "guardrails.io/team": "payments", "guardrails.io/environment": "prod",
        }},
    }));
    c.apply_json(&application("e2e-watch-app", "e2e-watch"));
    // Only the outage test (which runs alone) makes the watch fail.
    let errors = c
        .guardrails
        .metric("guardrails_namespace_cache_errors_total", &[]);

    wait_until_bob_may_sync("e2e-watch-app", false);
    label("e2e-watch", "dev");
    wait_until_bob_may_sync("e2e-watch-app", true);
    label("e2e-watch", "prod");
    wait_until_bob_may_sync("e2e-watch-app", false);

    assert_eq!(
        c.guardrails
            .metric("guardrails_namespace_cache_synced", &[]),
        1.0
    );
    assert_eq!(
        c.guardrails
            .metric("guardrails_namespace_cache_errors_total", &[]),
        errors,
        "the watch with the chart's RBAC should not fail: {}",
        c.guardrails.log_text()
    );
}

#[test]
fn the_chart_service_account_may_read_namespaces_and_nothing_else() {
    let _shared = shared();
    let c = cluster();
    let sa = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{FULLNAME}");
    for verb in ["list", "watch"] {
        let out = c.kubectl(&["auth", "can-i", verb, "namespaces", "--as", &sa]);
        assert_eq!(out.stdout.trim(), "yes", "{verb} namespaces: {out}");
    }
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "configmaps"),
        ("update", "namespaces"),
        ("list", "applications.argoproj.io"),
    ] {
        let out = c.kubectl(&["auth", "can-i", verb, resource, "--as", &sa, "-A"]);
        assert_eq!(out.stdout.trim(), "no", "{verb} {resource}: {out}");
    }
}

#[test]
fn a_second_instance_syncs_its_cache_with_the_chart_service_account() {
    let _shared = shared();
    let c = cluster();
    let guardrails = c
        .start_guardrails("guardrails-watch-2", &["--no-reload"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = guardrails.probe_get("/readyz").expect("readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        guardrails.metric("guardrails_namespace_cache_synced", &[]),
        1.0
    );
    assert!(guardrails.log_text().contains("namespace cache synced"));
}

#[test]
fn an_api_server_outage_is_survived_with_the_last_namespace_labels() {
    // Stops the API server: nothing else may run meanwhile.
    let _exclusive = exclusive();
    let c = cluster();
    c.apply_json(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "e2e-outage", "labels": {
            "guardrails.io/team": "payments", "guardrails.io/environment": "prod",
        }},
    }));
    let app = application("e2e-outage-app", "e2e-outage");
    c.apply_json(&app);
    wait_until_bob_may_sync("e2e-outage-app", false);

    // What the API server would send for bob's sync, sent straight to Guardrails.
    let mut synced = app.clone();
    synced["operation"] = json!({"sync": {"revision": "HEAD"}});
    let review = Review::update(&app, &synced).by(PaymentsDev).body();
    let errors = c
        .guardrails
        .metric("guardrails_namespace_cache_errors_total", &[]);

    c.stop_api_server();
    let outage = std::panic::catch_unwind(|| {
        wait_for(
            Duration::from_secs(60),
            "the namespace watch to notice the outage",
            || {
                Ok((c
                    .guardrails
                    .metric("guardrails_namespace_cache_errors_total", &[])
                    > errors)
                    .then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (status, body) = c.guardrails.probe_get("/readyz").expect("readyz");
        assert_eq!(status, 200, "still ready on the last cache: {body}");
        let answer = c.guardrails.validate(&review).expect("validate");
        assert_eq!(
            answer["response"]["allowed"], false,
            "the cached prod label still decides: {answer:#}"
        );
    });
    let restarted = c.start_api_server();
    if let Err(panic) = outage {
        std::panic::resume_unwind(panic);
    }
    restarted.unwrap_or_else(|e| panic!("{e}"));

    // The watch resumes: a relabel after the outage is seen.
    label("e2e-outage", "dev");
    wait_until_bob_may_sync("e2e-outage-app", true);
}
