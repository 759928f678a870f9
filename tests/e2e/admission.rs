//! Writes through the real API server by kubectl impersonating real identities, decided by
//! `guardrails serve` behind the chart's webhook configurations: the decision, the message kubectl
//! prints, the audit line and the metrics.

use serde_json::{Value, json};

use crate::cluster::{
    APP_CONTROLLER, APPSET_CONTROLLER, ARGOCD_SERVER, BOB, DANA, HPA, Identity, PLATFORM,
    ROLLOUTS_CONTROLLER, cluster, has_action, shared,
};
use crate::{COMMIT_SHA, application, deployment, rollout};

const REQUESTS: &str = "guardrails_admission_requests_total";

fn sync_patch(username: &str) -> String {
    json!({"operation": {
        "sync": {"revision": "HEAD"},
        "initiatedBy": {"username": username},
    }})
    .to_string()
}

fn patch_app(
    identity: Identity,
    name: &str,
    patch: &str,
    extra: &[&str],
) -> crate::cluster::Output {
    let mut args = vec![
        "patch",
        "applications.argoproj.io",
        name,
        "-n",
        "argocd",
        "--type",
        "merge",
        "-p",
        patch,
    ];
    args.extend_from_slice(extra);
    cluster().kubectl_as(identity, &args)
}

fn requests(kind: &str, action: &str, decision: &str) -> f64 {
    cluster().guardrails.metric(
        REQUESTS,
        &[("kind", kind), ("action", action), ("decision", decision)],
    )
}

fn user_is(identity: Identity) -> impl Fn(&Value) -> bool {
    move |record: &Value| record["user"] == identity.user
}

#[test]
fn developer_sync_into_prod_is_denied_with_the_policy_message() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-dev-sync-prod", "payments-prod"));
    let before = requests("Application", "sync", "deny");

    let message = patch_app(
        BOB,
        "e2e-dev-sync-prod",
        &sync_patch("bob@example.com"),
        &[],
    )
    .denied();
    assert!(
        message.contains("Guardrails denied sync of Application argocd/e2e-dev-sync-prod"),
        "{message}"
    );
    assert!(message.contains("[prod-sync-platform-only]"), "{message}");

    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-dev-sync-prod", user_is(BOB));
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert_eq!(record["allowed"], false);
    assert_eq!(record["operation"], "UPDATE");
    assert!(has_action(&record, "sync"), "{record:#}");
    assert!(
        record["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("payments-devs")),
        "{record:#}"
    );
    assert!(requests("Application", "sync", "deny") > before);

    // Nothing was written.
    let live = c
        .kubectl(&[
            "get",
            "applications.argoproj.io",
            "e2e-dev-sync-prod",
            "-n",
            "argocd",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert!(live.get("operation").is_none(), "{live:#}");
}

#[test]
fn platform_engineer_sync_into_prod_is_allowed() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-platform-sync-prod", "payments-prod"));
    let before = requests("Application", "sync", "allow");

    patch_app(
        PLATFORM,
        "e2e-platform-sync-prod",
        &sync_patch("admin@example.com"),
        &[],
    )
    .ok();

    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-platform-sync-prod", user_is(PLATFORM));
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert!(
        record["teams"]
            .as_array()
            .unwrap()
            .contains(&json!("platform")),
        "{record:#}"
    );
    assert!(requests("Application", "sync", "allow") > before);
    let live = c
        .kubectl(&[
            "get",
            "applications.argoproj.io",
            "e2e-platform-sync-prod",
            "-n",
            "argocd",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(live["operation"]["sync"]["revision"], "HEAD");
}

#[test]
fn developer_sync_into_own_dev_namespace_is_allowed() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-dev-sync-dev", "payments-dev"));
    patch_app(BOB, "e2e-dev-sync-dev", &sync_patch("bob@example.com"), &[]).ok();
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-dev-sync-dev", user_is(BOB));
    assert_eq!(record["decision"], "allow", "{record:#}");
}

#[test]
fn server_side_dry_run_is_decided_and_recorded_as_dry_run() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-dry-run", "payments-prod"));

    let message = patch_app(
        BOB,
        "e2e-dry-run",
        &sync_patch("bob@example.com"),
        &["--dry-run=server"],
    )
    .denied();
    assert!(message.contains("[prod-sync-platform-only]"), "{message}");
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-dry-run", |r| r["dryRun"] == true);
    assert_eq!(record["decision"], "deny", "{record:#}");

    // An allowed dry run changes nothing.
    patch_app(
        PLATFORM,
        "e2e-dry-run",
        &sync_patch("admin@example.com"),
        &["--dry-run=server"],
    )
    .ok();
    c.guardrails.wait_audit("argocd", "e2e-dry-run", |r| {
        r["dryRun"] == true && r["decision"] == "allow"
    });
    let live = c
        .kubectl(&[
            "get",
            "applications.argoproj.io",
            "e2e-dry-run",
            "-n",
            "argocd",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert!(live.get("operation").is_none(), "{live:#}");
}

/// The chart's matchConditions reject automation UPDATEs without a subresource (see
/// [`CHART_BUG_SUBRESOURCE`]); with `webhook.skipAutomationStatusWrites=false` this test passes.
#[test]
fn application_controller_auto_sync_with_a_resolved_sha_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let mut app = application("e2e-auto-sync", "payments-prod");
    app["spec"]["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": true}});
    c.apply_json(&app);

    let patch = json!({"operation": {
        "sync": {"revision": COMMIT_SHA},
        "initiatedBy": {"automated": true},
        "retry": {"limit": 5},
    }})
    .to_string();
    patch_app(APP_CONTROLLER, "e2e-auto-sync", &patch, &[]).ok();

    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-auto-sync", user_is(APP_CONTROLLER));
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert!(has_action(&record, "auto-sync"), "{record:#}");
}

#[test]
fn argocd_server_delegating_for_a_developer_is_decided_as_that_developer() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-delegated", "payments-prod"));

    let message = patch_app(
        ARGOCD_SERVER,
        "e2e-delegated",
        &sync_patch("bob@example.com"),
        &[],
    )
    .denied();
    assert!(message.contains("bob@example.com"), "{message}");
    assert!(message.contains("[prod-sync-platform-only]"), "{message}");
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-delegated", user_is(ARGOCD_SERVER));
    assert_eq!(record["principal"], "bob@example.com", "{record:#}");
    assert_eq!(record["delegator"], ARGOCD_SERVER.user, "{record:#}");

    // The same sync on behalf of a platform engineer goes through.
    patch_app(
        ARGOCD_SERVER,
        "e2e-delegated",
        &sync_patch("admin@example.com"),
        &[],
    )
    .ok();
}

#[test]
fn mutating_webhook_rewrites_a_forged_initiator() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&application("e2e-forged", "payments-dev"));

    let mutations = c.guardrails.metric("guardrails_mutations_total", &[]);
    patch_app(BOB, "e2e-forged", &sync_patch("admin@example.com"), &[]).ok();
    // The validating webhook already sees the rewritten name: decided as bob, nothing forged left.
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-forged", user_is(BOB));
    assert_eq!(record["principal"], "bob@example.com", "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert!(c.guardrails.metric("guardrails_mutations_total", &[]) > mutations);
    let live = c
        .kubectl(&[
            "get",
            "applications.argoproj.io",
            "e2e-forged",
            "-n",
            "argocd",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        live["operation"]["initiatedBy"]["username"], "bob@example.com",
        "{live:#}"
    );
    assert!(c.guardrails.metric("guardrails_mutations_total", &[]) >= 1.0);
}

#[test]
fn developer_cannot_delete_an_application_or_remove_its_finalizer() {
    let _shared = shared();
    let c = cluster();
    let mut app = application("e2e-delete", "payments-dev");
    app["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
    c.apply_json(&app);

    let message = c
        .kubectl_as(
            BOB,
            &[
                "delete",
                "applications.argoproj.io",
                "e2e-delete",
                "-n",
                "argocd",
                "--wait=false",
            ],
        )
        .denied();
    assert!(message.contains("[app-delete-platform-only]"), "{message}");
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-delete", |r| r["operation"] == "DELETE");
    assert_eq!(record["decision"], "deny", "{record:#}");

    let message = patch_app(
        BOB,
        "e2e-delete",
        r#"{"metadata":{"finalizers":null}}"#,
        &[],
    )
    .denied();
    assert!(message.contains("remove-finalizer"), "{message}");

    // A platform engineer may (the object stays, terminating: no controller removes the finalizer).
    c.kubectl_as(
        PLATFORM,
        &[
            "delete",
            "applications.argoproj.io",
            "e2e-delete",
            "-n",
            "argocd",
            "--wait=false",
        ],
    )
    .ok();
}

#[test]
fn applicationset_controller_creates_applications_in_prod() {
    let _shared = shared();
    let c = cluster();
    let app = application("e2e-appset-child", "storefront-prod");
    c.kubectl_stdin_as(APPSET_CONTROLLER, &["create", "-f", "-"], &app.to_string())
        .ok();
    let record = c
        .guardrails
        .wait_audit("argocd", "e2e-appset-child", user_is(APPSET_CONTROLLER));
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert!(has_action(&record, "create"), "{record:#}");
}

#[test]
fn developer_in_another_teams_namespace_cannot_scale_restart_or_change_images() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&deployment("e2e-other-team", "payments-dev"));
    let before = c
        .guardrails
        .metric(REQUESTS, &[("action", "scale"), ("decision", "deny")]);

    for (args, action) in [
        (
            vec!["scale", "deployment/e2e-other-team", "--replicas=5"],
            "scale",
        ),
        (
            vec!["rollout", "restart", "deployment/e2e-other-team"],
            "restart",
        ),
        (
            vec![
                "set",
                "image",
                "deployment/e2e-other-team",
                "php-redis=nginx:1.27",
            ],
            "change-image",
        ),
        (
            vec!["rollout", "pause", "deployment/e2e-other-team"],
            "pause",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["-n", "payments-dev"]);
        let message = c.kubectl_as(DANA, &all).denied();
        assert!(
            message.contains("[team-owns-namespace]"),
            "{action}: {message}"
        );
        assert!(message.contains(action), "{action}: {message}");
    }
    assert!(
        c.guardrails
            .metric(REQUESTS, &[("action", "scale"), ("decision", "deny")])
            > before
    );
    let record = c
        .guardrails
        .wait_audit("payments-dev", "e2e-other-team", |r| {
            r["user"] == DANA.user && r["subResource"] == "scale"
        });
    assert_eq!(record["decision"], "deny", "{record:#}");

    // The owning team may.
    c.kubectl_as(
        BOB,
        &[
            "scale",
            "deployment/e2e-other-team",
            "--replicas=5",
            "-n",
            "payments-dev",
        ],
    )
    .ok();
    c.kubectl_as(
        BOB,
        &[
            "rollout",
            "restart",
            "deployment/e2e-other-team",
            "-n",
            "payments-dev",
        ],
    )
    .ok();
    c.kubectl_as(
        BOB,
        &[
            "set",
            "image",
            "deployment/e2e-other-team",
            "php-redis=nginx:1.27",
            "-n",
            "payments-dev",
        ],
    )
    .ok();
}

#[test]
fn hpa_scales_a_prod_deployment_through_the_scale_subresource() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&deployment("e2e-hpa", "payments-prod"));
    c.kubectl_as(
        HPA,
        &[
            "scale",
            "deployment/e2e-hpa",
            "--replicas=6",
            "-n",
            "payments-prod",
        ],
    )
    .ok();
    let record = c
        .guardrails
        .wait_audit("payments-prod", "e2e-hpa", user_is(HPA));
    assert_eq!(record["subResource"], "scale", "{record:#}");
    assert!(record["allowed"] == true, "{record:#}");
}

#[test]
fn rollout_promote_through_the_status_subresource() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&rollout("e2e-rollout", "storefront-dev"));
    let promote = r#"{"status":{"promoteFull":true}}"#;

    let message = c
        .kubectl_as(
            BOB,
            &[
                "patch",
                "rollouts.argoproj.io",
                "e2e-rollout",
                "-n",
                "storefront-dev",
                "--subresource=status",
                "--type",
                "merge",
                "-p",
                promote,
            ],
        )
        .denied();
    assert!(message.contains("promote-full"), "{message}");
    assert!(message.contains("[team-owns-namespace]"), "{message}");

    // The Rollouts controller's own status write is allowed without reaching Guardrails: the
    // chart's matchConditions (webhook.skipAutomationStatusWrites) skip automation status writes.
    c.kubectl_as(
        ROLLOUTS_CONTROLLER,
        &[
            "patch",
            "rollouts.argoproj.io",
            "e2e-rollout",
            "-n",
            "storefront-dev",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            promote,
        ],
    )
    .ok();
    let live = c
        .kubectl(&[
            "get",
            "rollouts.argoproj.io",
            "e2e-rollout",
            "-n",
            "storefront-dev",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(live["status"]["promoteFull"], true, "{live:#}");

    // `kubectl scale` of a Rollout by another team goes through the CRD's scale subresource.
    let message = c
        .kubectl_as(
            BOB,
            &[
                "scale",
                "rollouts.argoproj.io/e2e-rollout",
                "--replicas=2",
                "-n",
                "storefront-dev",
            ],
        )
        .denied();
    assert!(message.contains("scale"), "{message}");
    // The scale is recorded, and Guardrails writes its records in the order it decides: had the
    // status write reached the webhook before it, its record would be in the log by now.
    c.guardrails
        .wait_audit("storefront-dev", "e2e-rollout", |r| {
            r["user"] == BOB.user && r["subResource"] == "scale"
        });
    let automation: Vec<Value> = c
        .guardrails
        .audit_for("storefront-dev", "e2e-rollout")
        .into_iter()
        .filter(|r| r["user"] == ROLLOUTS_CONTROLLER.user)
        .collect();
    assert!(
        automation.is_empty(),
        "an automation status write reached the webhook: {automation:#?}"
    );
}

/// See [`CHART_BUG_SUBRESOURCE`].
#[test]
fn rollouts_controller_annotates_its_rollout() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&rollout("e2e-rollout-annotate", "payments-prod"));
    c.kubectl_as(
        ROLLOUTS_CONTROLLER,
        &[
            "annotate",
            "rollouts.argoproj.io",
            "e2e-rollout-annotate",
            "-n",
            "payments-prod",
            "rollout.argoproj.io/revision=2",
            "--overwrite",
        ],
    )
    .ok();
    let record = c.guardrails.wait_audit(
        "payments-prod",
        "e2e-rollout-annotate",
        user_is(ROLLOUTS_CONTROLLER),
    );
    assert_eq!(record["decision"], "allow", "{record:#}");
}

#[test]
fn developer_changes_to_a_prod_application_go_through_git() {
    let _shared = shared();
    let c = cluster();
    let mut app = application("e2e-prod-edits", "payments-prod");
    app["spec"]["syncPolicy"] = json!({"automated": {"selfHeal": true}});
    c.apply_json(&app);

    // Turning auto-sync off, or pointing the Application elsewhere, is a Git change.
    let message = patch_app(
        BOB,
        "e2e-prod-edits",
        r#"{"spec":{"syncPolicy":{"automated":null}}}"#,
        &[],
    )
    .denied();
    assert!(message.contains("disable-auto-sync"), "{message}");
    assert!(
        message.contains("[prod-app-changes-through-git]"),
        "{message}"
    );
    let message = patch_app(
        BOB,
        "e2e-prod-edits",
        r#"{"spec":{"destination":{"namespace":"payments-dev"}}}"#,
        &[],
    )
    .denied();
    assert!(message.contains("retarget"), "{message}");

    // A refresh is not a deploy.
    c.kubectl_as(
        BOB,
        &[
            "annotate",
            "applications.argoproj.io",
            "e2e-prod-edits",
            "-n",
            "argocd",
            "argocd.argoproj.io/refresh=normal",
        ],
    )
    .ok();
    let record = c.guardrails.wait_audit("argocd", "e2e-prod-edits", |r| {
        r["user"] == BOB.user && r["allowed"] == true
    });
    assert!(has_action(&record, "refresh"), "{record:#}");
}
