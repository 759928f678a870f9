//! Table tests: real manifests from tests/fixtures, wrapped in AdmissionReviews the way the API
//! server sends them, decided by the shipped policies and the example config.

mod common {
    pub mod engine;
    pub mod envelope;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
}

use common::engine::engine;
use common::envelope::wrap_request;
use common::fixtures::{fixture, fixture_docs, fixtures_dir};
use common::json::set;
use common::objects::{app_to, syncing, with};
use common::review::Review;
use common::review::User::{ArgocdServer, Controller, PaymentsDev, Platform, StorefrontDev};
use guardrails::respond::{self, Reviewed};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    review: Review,
    actions: &'static [&'static str],
    allowed: bool,
    /// Every matching policy as `id=effective-mode`, sorted.
    policies: &'static [&'static str],
}

fn run(review: &Review) -> Reviewed {
    respond::validate_review(&engine(), &review.body()).expect("valid review")
}

fn actions_of(reviewed: &Reviewed) -> Vec<String> {
    reviewed
        .outcome
        .as_ref()
        .and_then(|o| o.recognition.as_ref())
        .map(|r| r.actions.iter().map(|a| a.as_str().to_string()).collect())
        .unwrap_or_default()
}

fn policies_of(reviewed: &Reviewed) -> Vec<String> {
    let mut policies: Vec<String> = reviewed
        .outcome
        .as_ref()
        .map(|o| {
            o.matches
                .iter()
                .map(|m| format!("{}={}", m.policy, m.effective))
                .collect()
        })
        .unwrap_or_default();
    policies.sort();
    policies.dedup();
    policies
}

fn check_all(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let reviewed = run(&case.review);
        let response = &reviewed.response;
        let actions = actions_of(&reviewed);
        let policies = policies_of(&reviewed);
        if actions != case.actions || response.allowed != case.allowed || policies != case.policies
        {
            failures.push(format!(
                "{}:\n  actions  {actions:?} (expected {:?})\n  allowed  {} (expected {})\n  policies {policies:?} (expected {:?})\n  message  {}",
                case.name,
                case.actions,
                response.allowed,
                case.allowed,
                case.policies,
                response.result.message
            ));
        }
        assert_eq!(response.uid, case.review.request["uid"].as_str().unwrap());
        let request = guardrails::admission::parse_review(&case.review.body()).unwrap();
        if let Err(error) = guardrails::decide::check_conformance(&engine(), &request) {
            failures.push(format!(
                "{}: does not conform to the schema: {error}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const ADMIN_SYNC: &str = "admin@example.com";
const DEPLOYMENT_CONTROLLER: (&str, &[&str]) = (
    "system:serviceaccount:kube-system:deployment-controller",
    &[
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
    ],
);

#[test]
fn application_actions() {
    let prod = app_to("payments-prod");
    let dev = app_to("payments-dev");
    let plain_sync = json!({"revision": "HEAD"});
    let by = |user: &str| json!({"username": user});
    let automated = json!({"username": "argocd-application-controller", "automated": true});
    let bob = PaymentsDev.name();

    let mut terminating_old = syncing(&prod, plain_sync.clone(), by(ADMIN_SYNC));
    set(
        &mut terminating_old,
        "/status/operationState",
        json!({"phase": "Running"}),
    );
    let terminating_new = with(
        terminating_old.clone(),
        &[("/status/operationState/phase", json!("Terminating"))],
    );

    let velero =
        fixture("argocd/applications/argocd-controller-testdata-velero-status-operationState.yaml");
    let velero_prod = with(
        velero.clone(),
        &[("/spec/destination/namespace", json!("payments-prod"))],
    );
    let velero_unfinalized = with(velero_prod.clone(), &[("/metadata/finalizers", json!([]))]);
    let velero_deleting = with(
        velero_prod.clone(),
        &[("/metadata/deletionTimestamp", json!("2024-03-05T10:00:00Z"))],
    );
    let velero_deleted = with(
        velero_deleting.clone(),
        &[("/metadata/finalizers", json!([]))],
    );

    let live =
        fixture("argocd/applications/argocd-controller-testdata-live-child-application-helm.yaml");
    let target = fixture(
        "argocd/applications/argocd-controller-testdata-target-child-application-helm.yaml",
    );

    let auto = with(dev.clone(), &[("/spec/syncPolicy/automated", json!({}))]);
    let auto_prune = with(
        dev.clone(),
        &[(
            "/spec/syncPolicy/automated",
            json!({"prune": true, "selfHeal": true}),
        )],
    );
    let auto_off = with(
        auto.clone(),
        &[("/spec/syncPolicy/automated/enabled", json!(false))],
    );

    let cases = vec![
        Case {
            name: "kubectl patch sync into prod by a team developer",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), Value::Null)).by(PaymentsDev),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "sync into prod by a platform engineer",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), Value::Null)).by(Platform),
            actions: &["sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "sync into dev by its team",
            review: Review::update(&dev, &syncing(&dev, plain_sync.clone(), Value::Null)).by(PaymentsDev),
            actions: &["sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "sync into dev by another team",
            review: Review::update(&dev, &syncing(&dev, plain_sync.clone(), Value::Null)).by(StorefrontDev),
            actions: &["sync"],
            allowed: false,
            policies: &["team-owns-namespace=enforce"],
        },
        Case {
            name: "argocd-server syncing prod for a platform engineer (delegation)",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), by(ADMIN_SYNC))).by(ArgocdServer),
            actions: &["sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "argocd-server syncing prod for a developer (delegation)",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), by(bob))).by(ArgocdServer),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "developer forging initiatedBy as a platform engineer",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), by(ADMIN_SYNC))).by(PaymentsDev),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "auto-sync started by the application controller",
            review: Review::update(&prod, &syncing(&prod, json!({"revision": "HEAD", "prune": true}), automated.clone())).by(Controller),
            actions: &["auto-sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "developer forging automated: true is a manual sync",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), automated.clone())).by(PaymentsDev),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "prune + force sync into prod for a developer",
            review: Review::update(&prod, &syncing(&prod, json!({"revision": "HEAD", "prune": true, "syncStrategy": {"apply": {"force": true}}}), by(bob))).by(ArgocdServer),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-no-prune-or-force=enforce", "prod-sync-platform-only=enforce"],
        },
        Case {
            name: "rollback of prod to an earlier history revision",
            review: Review::update(&prod, &syncing(&prod, json!({"revision": "1111111111111111111111111111111111111111"}), by(bob))).by(ArgocdServer),
            actions: &["rollback"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "override: sync dev to a revision other than targetRevision",
            review: Review::update(&dev, &syncing(&dev, json!({"revision": "feature-branch"}), by(bob))).by(ArgocdServer),
            actions: &["override", "sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "override: local manifests into prod",
            review: Review::update(&prod, &syncing(&prod, json!({"manifests": ["apiVersion: v1\nkind: ConfigMap"]}), by(ADMIN_SYNC))).by(ArgocdServer),
            actions: &["override", "sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "selective dry-run sync in dev",
            review: Review::update(&dev, &syncing(&dev, json!({"dryRun": true, "resources": [{"kind": "Deployment", "name": "web"}]}), Value::Null)).by(PaymentsDev),
            actions: &["sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "terminate a running operation",
            review: Review::update(&terminating_old, &terminating_new).by(ArgocdServer),
            actions: &["terminate"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "hard refresh by a developer of the owning team",
            review: Review::update(&dev, &with(dev.clone(), &[("/metadata/annotations", json!({"argocd.argoproj.io/refresh": "hard"}))])).by(PaymentsDev),
            actions: &["refresh"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "cascading delete of an Application by a developer (object is null)",
            review: Review::new("DELETE", None, Some(&velero_prod)).by(PaymentsDev),
            actions: &["delete"],
            allowed: false,
            policies: &["app-delete-platform-only=enforce"],
        },
        Case {
            name: "delete of an Application by a platform engineer",
            review: Review::new("DELETE", None, Some(&velero_prod)).by(Platform),
            actions: &["delete"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "removing the resources finalizer (non-cascading path)",
            review: Review::update(&velero_prod, &velero_unfinalized).by(PaymentsDev),
            actions: &["remove-finalizer"],
            allowed: false,
            policies: &["app-delete-platform-only=enforce"],
        },
        Case {
            name: "controller removing its finalizer while deleting is bookkeeping",
            review: Review::update(&velero_deleting, &velero_deleted).by(Controller),
            actions: &["bookkeeping"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "controller writing status is bookkeeping",
            review: Review::update(&velero_prod, &with(velero_prod.clone(), &[("/status/health/status", json!("Degraded"))])).by(Controller),
            actions: &["bookkeeping"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "controller clearing a finished operation is bookkeeping",
            review: Review::update(&syncing(&dev, plain_sync.clone(), automated.clone()), &dev).by(Controller),
            actions: &["bookkeeping"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "enable auto-sync",
            review: Review::update(&dev, &auto).by(PaymentsDev),
            actions: &["enable-auto-sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "turning on prune and selfHeal counts as enabling",
            review: Review::update(&auto, &auto_prune).by(PaymentsDev),
            actions: &["enable-auto-sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "disable auto-sync with enabled: false",
            review: Review::update(&auto, &auto_off).by(PaymentsDev),
            actions: &["disable-auto-sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "disable auto-sync by removing automated",
            review: Review::update(&auto, &dev).by(PaymentsDev),
            actions: &["disable-auto-sync"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "retarget into another team's namespace",
            review: Review::update(&dev, &app_to("storefront-dev")).by(PaymentsDev),
            actions: &["retarget"],
            allowed: false,
            policies: &["team-owns-namespace=enforce"],
        },
        Case {
            name: "retarget + sync in one request",
            review: Review::update(&dev, &syncing(&app_to("payments-prod"), plain_sync.clone(), Value::Null)).by(PaymentsDev),
            actions: &["retarget", "sync"],
            allowed: false,
            policies: &["prod-app-changes-through-git=enforce", "prod-sync-platform-only=enforce"],
        },
        Case {
            name: "change-source: targetRevision bump (real live/target pair)",
            review: Review::update(&live, &target).by(Platform),
            actions: &["change-source"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "plain spec edit is an update",
            review: Review::update(&dev, &with(dev.clone(), &[("/spec/revisionHistoryLimit", json!(3))])).by(PaymentsDev),
            actions: &["update"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "create an Application pointed at another team's namespace",
            review: Review::new("CREATE", Some(&app_to("storefront-prod")), None).by(PaymentsDev),
            actions: &["create"],
            allowed: false,
            policies: &["team-owns-namespace=enforce"],
        },
        Case {
            name: "create an Application with an operation starts a sync",
            review: Review::new("CREATE", Some(&syncing(&app_to("payments-prod"), plain_sync.clone(), Value::Null)), None).by(PaymentsDev),
            actions: &["create", "sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "dryRun requests are decided normally",
            review: Review::update(&prod, &syncing(&prod, plain_sync.clone(), Value::Null)).by(PaymentsDev).set("dryRun", true),
            actions: &["sync"],
            allowed: false,
            policies: &["prod-sync-platform-only=enforce"],
        },
        Case {
            name: "environment from the destination cluster when the namespace has none",
            review: Review::update(&app_to("unlisted"), &syncing(&with(app_to("unlisted"), &[("/spec/destination/server", json!("https://prod.k8s.example.com"))]), plain_sync.clone(), Value::Null)).by(PaymentsDev),
            actions: &["retarget", "sync"],
            allowed: false,
            policies: &["prod-app-changes-through-git=enforce", "prod-sync-platform-only=enforce"],
        },
    ];
    check_all(cases);
}

fn deployment(name: &str) -> Value {
    fixture(&format!("deployments/argocd-action-testdata-{name}.yaml"))
}

/// `after` as a main-resource write of it reaches admission: Deployments have a status
/// subresource, so the API server keeps `before`'s status (Argo CD's action test data pairs are
/// snapshots taken minutes apart, status included).
fn written_over(before: &Value, after: Value) -> Value {
    with(after, &[("/status", before["status"].clone())])
}

fn in_prod_managed(value: Value) -> Value {
    with(
        value,
        &[
            ("/metadata/namespace", json!("payments-prod")),
            (
                "/metadata/annotations/argocd.argoproj.io~1tracking-id",
                json!("payments:apps/Deployment:payments-prod/nginx-deploy"),
            ),
        ],
    )
}

fn scale_object(replicas: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "nginx-deploy", "namespace": "payments-prod"},
        "spec": {"replicas": replicas}, "status": {"replicas": 3, "selector": "app=nginx"}
    })
}

#[test]
fn deployment_actions() {
    let base = deployment("deployment");
    let with_image = with(
        base.clone(),
        &[(
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.27"),
        )],
    );
    let mut scale_review = Review::new("UPDATE", Some(&scale_object(6)), Some(&scale_object(3)))
        .by(PaymentsDev)
        .set("subResource", "scale");
    scale_review.request["kind"] =
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    scale_review.request["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    scale_review.request["namespace"] = json!("payments-prod");
    let mut foreign_scale = scale_review
        .clone()
        .by(StorefrontDev)
        .set("uid", "foreign-scale");
    foreign_scale.request["userInfo"]["groups"] = json!(["storefront-devs"]);

    let cases = vec![
        Case {
            name: "scale (real before/after pair)",
            review: Review::update(&base, &deployment("deployment-scaled")).by(PaymentsDev),
            actions: &["scale"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "restart (real before/after pair)",
            review: Review::update(&base, &deployment("deployment-restarted")).by(PaymentsDev),
            actions: &["restart"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "pause (real before/after pair)",
            review: Review::update(&base, &written_over(&base, deployment("deployment-pause")))
                .by(PaymentsDev),
            actions: &["pause"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "resume (real before/after pair)",
            review: Review::update(
                &deployment("deployment-pause"),
                &written_over(
                    &deployment("deployment-pause"),
                    deployment("deployment-resume"),
                ),
            )
            .by(PaymentsDev),
            actions: &["resume"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "change-image",
            review: Review::update(&base, &with_image).by(PaymentsDev),
            actions: &["change-image"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "kubectl scale through the scale subresource in prod (a Scale body has no tracking annotation: drift is not seen)",
            review: scale_review.clone(),
            actions: &["scale"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "another team scaling through the subresource",
            review: foreign_scale,
            actions: &["scale"],
            allowed: false,
            policies: &["team-owns-namespace=enforce"],
        },
        Case {
            name: "a developer restarting an Argo CD-managed prod Deployment is denied (change it in Git)",
            review: Review::update(
                &in_prod_managed(base.clone()),
                &in_prod_managed(deployment("deployment-restarted")),
            )
            .by(PaymentsDev),
            actions: &["restart"],
            allowed: false,
            policies: &["prod-gitops-drift=enforce"],
        },
        Case {
            name: "a platform engineer restarting an Argo CD-managed prod Deployment is allowed (an incident)",
            review: Review::update(
                &in_prod_managed(base.clone()),
                &in_prod_managed(deployment("deployment-restarted")),
            )
            .by(Platform),
            actions: &["restart"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "argocd-server's person-less restart (a resource action) of a managed prod Deployment is denied",
            review: Review::update(
                &in_prod_managed(base.clone()),
                &in_prod_managed(deployment("deployment-restarted")),
            )
            .by(ArgocdServer),
            actions: &["restart"],
            allowed: false,
            policies: &["prod-gitops-drift=enforce"],
        },
        Case {
            name: "the application controller applying Git's state to prod is not drift",
            review: Review::update(
                &in_prod_managed(base.clone()),
                &in_prod_managed(with_image.clone()),
            )
            .by(Controller),
            actions: &["change-image"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "another team editing a prod Deployment",
            review: Review::update(
                &in_prod_managed(base.clone()),
                &in_prod_managed(with_image.clone()),
            )
            .by(StorefrontDev),
            actions: &["change-image"],
            allowed: false,
            policies: &["prod-gitops-drift=enforce", "team-owns-namespace=enforce"],
        },
        Case {
            name: "create in an unowned namespace",
            review: Review::new(
                "CREATE",
                Some(&fixture(
                    "deployments/k8s-examples-guestbook-frontend-deployment.yaml",
                )),
                None,
            )
            .by(PaymentsDev),
            actions: &["create"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "delete of a managed prod Deployment by its team (object is null): denied, Argo CD prunes it",
            review: Review::new("DELETE", None, Some(&in_prod_managed(base.clone())))
                .by(PaymentsDev),
            actions: &["delete"],
            allowed: false,
            policies: &["prod-gitops-drift=enforce"],
        },
        Case {
            name: "label-only edit is an update",
            review: Review::update(
                &base,
                &with(
                    base.clone(),
                    &[("/metadata/labels", json!({"tier": "web"}))],
                ),
            )
            .by(PaymentsDev),
            actions: &["update"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "the deployment controller's status write is bookkeeping",
            review: Review::update(
                &base,
                &with(base.clone(), &[("/status/observedGeneration", json!(99))]),
            )
            .by(DEPLOYMENT_CONTROLLER)
            .set("subResource", "status"),
            actions: &["bookkeeping"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "a person's status write is an update: bookkeeping is automation's alone",
            review: Review::update(
                &base,
                &with(base.clone(), &[("/status/observedGeneration", json!(99))]),
            )
            .by(PaymentsDev)
            .set("subResource", "status"),
            actions: &["update"],
            allowed: true,
            policies: &[],
        },
    ];
    check_all(cases);
}

fn rollout(name: &str) -> Value {
    fixture(&format!(
        "rollouts/argocd-rollout-action-testdata-{name}.yaml"
    ))
}

#[test]
fn rollout_actions() {
    let paused = rollout("has_pause_condition_rollout");
    let aborted = rollout("aborted_rollout");
    let cases = vec![
        Case {
            name: "promote: pause condition cleared",
            review: Review::update(
                &paused,
                &with(paused.clone(), &[("/status/pauseConditions", Value::Null)]),
            )
            .by(PaymentsDev)
            .set("subResource", "status"),
            actions: &["promote"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "promote: skip-current-step (real before/after pair)",
            review: Review::update(
                &rollout("rollout-step1"),
                &rollout("rollout-step1-after-skip-current-step"),
            )
            .by(PaymentsDev),
            actions: &["promote"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "promote-full (real before/after pair)",
            review: Review::update(&aborted, &rollout("promote-full_rollout")).by(PaymentsDev),
            actions: &["promote-full"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "abort",
            review: Review::update(
                &paused,
                &with(paused.clone(), &[("/status/abort", json!(true))]),
            )
            .by(PaymentsDev),
            actions: &["abort"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "retry an aborted rollout",
            review: Review::update(
                &aborted,
                &with(aborted.clone(), &[("/status/abort", Value::Null)]),
            )
            .by(PaymentsDev),
            actions: &["retry"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "pause",
            review: Review::update(
                &paused,
                &with(paused.clone(), &[("/spec/paused", json!(true))]),
            )
            .by(PaymentsDev),
            actions: &["pause"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "restart",
            review: Review::update(
                &paused,
                &with(
                    paused.clone(),
                    &[("/spec/restartAt", json!("2025-05-15T14:13:44Z"))],
                ),
            )
            .by(PaymentsDev),
            actions: &["restart"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "undo: template replaced on an aborted rollout",
            review: Review::update(
                &aborted,
                &with(
                    aborted.clone(),
                    &[(
                        "/spec/template/spec/containers/0/image",
                        json!("nginx:1.17-alpine"),
                    )],
                ),
            )
            .by(PaymentsDev),
            actions: &["undo"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "image bump in the middle of a canary is not an undo",
            review: Review::update(
                &rollout("rollout-step1"),
                &with(
                    rollout("rollout-step1"),
                    &[(
                        "/spec/template/spec/containers/0/image",
                        json!("argoproj/rollouts-demo:green"),
                    )],
                ),
            )
            .by(PaymentsDev),
            actions: &["change-image"],
            allowed: true,
            policies: &[],
        },
        Case {
            name: "create the canary example",
            review: Review::new(
                "CREATE",
                Some(&fixture(
                    "rollouts/argo-rollouts-example-rollout-canary.yaml",
                )),
                None,
            )
            .by(PaymentsDev),
            actions: &["create"],
            allowed: true,
            policies: &[],
        },
    ];
    check_all(cases);
}

#[test]
fn every_fixture_object_is_recognised_on_create() {
    let mut seen = 0;
    for dir in ["argocd/applications", "deployments", "rollouts"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let relative = format!("{dir}/{}", path.file_name().unwrap().to_str().unwrap());
            for value in fixture_docs(&relative) {
                if !matches!(
                    value["kind"].as_str(),
                    Some("Application" | "Deployment" | "Rollout")
                ) {
                    continue; // test tables and other kinds, not objects we decide
                }
                let reviewed = run(&Review::new("CREATE", Some(&value), None).by(Controller));
                let actions = actions_of(&reviewed);
                assert!(
                    actions.contains(&"create".to_string()),
                    "{relative}: {actions:?}"
                );
                assert!(reviewed.response.allowed, "{relative}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 20, "only {seen} fixture objects found");
}

#[test]
fn kubewarden_admission_requests() {
    for (file, operation_action) in [
        ("create_accept", "create"),
        ("create_reject", "create"),
        ("delete_accept", "delete"),
        ("delete_reject", "delete"),
        ("update_accept", "update"),
        ("update_reject", "update"),
    ] {
        let request = fixture(&format!(
            "admission/kubewarden-echo-deployment-{file}.admissionrequest.json"
        ));
        let reviewed = respond::validate_review(&engine(), &wrap_request(request.clone())).unwrap();
        let response = &reviewed.response;
        assert_eq!(response.uid, request["uid"].as_str().unwrap(), "{file}");
        assert!(response.allowed, "{file}: namespace default is unowned");
        let actions = actions_of(&reviewed);
        assert!(
            actions.contains(&operation_action.to_string()),
            "{file}: {actions:?}"
        );
        if file.starts_with("delete") {
            assert!(
                request["object"].is_null(),
                "{file}: DELETE fixtures carry no object"
            );
        }
    }
}

#[test]
fn unknown_kinds_are_allowed_and_annotated_never_silently() {
    let request = fixture("admission/kubewarden-pod-delete.admissionrequest.json");
    let reviewed = respond::validate_review(&engine(), &wrap_request(request)).unwrap();
    let response = &reviewed.response;
    assert!(response.allowed);
    assert_eq!(response.audit_annotations["decision"], "unsupported");
    assert_eq!(response.audit_annotations["resource"], "core/pods");

    let review = fixture("admission/kubewarden-policy-server-pod-create.admissionreview.json");
    let reviewed =
        respond::validate_review(&engine(), &serde_json::to_vec(&review).unwrap()).unwrap();
    assert_eq!(
        reviewed.response.audit_annotations["decision"],
        "unsupported"
    );
}

#[test]
fn denial_names_each_policy_with_its_reason_and_status_403() {
    let prod = app_to("payments-prod");
    let review = Review::update(
        &prod,
        &syncing(
            &prod,
            json!({"prune": true}),
            json!({"username": PaymentsDev.name()}),
        ),
    )
    .by(ArgocdServer);
    let reviewed = run(&review);
    let response = &reviewed.response;
    assert!(!response.allowed);
    assert_eq!(response.result.code, 403);
    assert_eq!(response.result.reason, "Forbidden");
    let message = &response.result.message;
    assert!(
        message.contains("[prod-sync-platform-only] Syncing, rolling back or overriding"),
        "{message}"
    );
    assert!(
        message.contains("[prod-no-prune-or-force] Pruning"),
        "{message}"
    );
    assert!(message.contains("argocd/nginx"), "{message}");
    assert!(message.contains(PaymentsDev.name()), "{message}");
    assert_eq!(response.audit_annotations["decision"], "deny");
    assert_eq!(response.audit_annotations["delegator"], ArgocdServer.name());
    assert_eq!(
        response.audit_annotations["policies"],
        "prod-no-prune-or-force=enforce,prod-sync-platform-only=enforce"
    );
    for key in response.audit_annotations.keys() {
        // Audit annotation keys become "<webhook>/<key>": they must be valid label-style names.
        assert!(
            key.len() <= 63 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{key}"
        );
    }
    assert_eq!(reviewed.answer().api_version, "admission.k8s.io/v1");
    assert_eq!(reviewed.answer().kind, "AdmissionReview");
}

#[test]
fn forged_initiator_is_ignored_and_reported() {
    let dev = app_to("payments-dev");
    let review = Review::update(
        &dev,
        &syncing(&dev, json!({}), json!({"username": "admin@example.com"})),
    )
    .by(PaymentsDev);
    let reviewed = run(&review);
    let outcome = reviewed.outcome.as_ref().unwrap();
    let identity = outcome.identity.as_ref().unwrap();
    assert_eq!(identity.username, PaymentsDev.name());
    assert_eq!(
        identity.forged_initiator.as_deref(),
        Some("admin@example.com")
    );
    let response = &reviewed.response;
    assert!(response.allowed, "dev sync by its own team");
    let warnings = response.warnings.clone().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("\"admin@example.com\" was ignored")),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.chars().count() <= 256));
}

#[test]
fn global_audit_mode_never_denies_but_records() {
    let mut engine = engine();
    engine.mode = guardrails::vocabulary::Mode::Audit;
    let prod = app_to("payments-prod");
    let review = Review::update(&prod, &syncing(&prod, json!({}), Value::Null)).by(PaymentsDev);
    let reviewed = respond::validate_review(&engine, &review.body()).unwrap();
    let response = &reviewed.response;
    assert!(response.allowed);
    assert_eq!(response.audit_annotations["decision"], "allow-audit");
    assert_eq!(
        response.audit_annotations["policies"],
        "prod-sync-platform-only=audit"
    );
    let declared: Vec<_> = reviewed
        .outcome
        .unwrap()
        .matches
        .iter()
        .map(|m| m.declared)
        .collect();
    assert_eq!(declared, [guardrails::vocabulary::Mode::Enforce]);
}

#[test]
fn warn_mode_allows_with_a_warning() {
    let mut engine = engine();
    engine.mode = guardrails::vocabulary::Mode::Warn;
    let prod = app_to("payments-prod");
    let review = Review::update(&prod, &syncing(&prod, json!({}), Value::Null)).by(PaymentsDev);
    let response = respond::validate_review(&engine, &review.body())
        .unwrap()
        .response;
    assert!(response.allowed);
    let warnings = response.warnings.unwrap();
    assert!(
        warnings[0].starts_with("Guardrails [prod-sync-platform-only] sync:"),
        "{warnings:?}"
    );
}

#[test]
fn answers_in_the_apiversion_it_was_asked_in() {
    let dev = app_to("payments-dev");
    let mut review = Review::update(&dev, &syncing(&dev, json!({}), Value::Null))
        .by(PaymentsDev)
        .json();
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let reviewed =
        respond::validate_review(&engine(), &serde_json::to_vec(&review).unwrap()).unwrap();
    assert_eq!(reviewed.answer().api_version, "admission.k8s.io/v1beta1");
    assert_eq!(reviewed.answer().kind, "AdmissionReview");
}

/// Every combination of a policy's @enforcement and the global mode, on one request.
#[test]
fn enforcement_and_global_mode_combinations() {
    use guardrails::config::Config;
    use guardrails::decide::Engine;
    use guardrails::policy::{EMBEDDED_POLICIES, PolicyStore};
    use guardrails::vocabulary::Mode;

    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    let review = Review::update(
        &base,
        &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
    )
    .by(PaymentsDev);
    // (policy enforcement, global mode, audit warnings) -> (allowed, decision, warned)
    let table = [
        ("enforce", Mode::Enforce, false, (false, "deny", false)),
        ("enforce", Mode::Warn, false, (true, "allow-warn", true)),
        ("enforce", Mode::Audit, false, (true, "allow-audit", false)),
        ("warn", Mode::Enforce, false, (true, "allow-warn", true)),
        ("warn", Mode::Audit, false, (true, "allow-audit", false)),
        ("audit", Mode::Enforce, false, (true, "allow-audit", false)),
        ("audit", Mode::Enforce, true, (true, "allow-audit", true)),
    ];
    for (enforcement, mode, audit_warnings, (allowed, decision, warned)) in table {
        let policy = format!(
            "@id(\"freeze\")\n@reason(\"Frozen.\")\n@enforcement(\"{enforcement}\")\nforbid (principal, action == Action::\"scale\", resource);\n"
        );
        let mut sources = EMBEDDED_POLICIES.to_vec();
        sources.push(("freeze.cedar", policy.as_str()));
        let mut config = Config::embedded().unwrap();
        config.file.audit_warnings = audit_warnings;
        let engine = Engine::new(
            PolicyStore::from_sources(sources, "t").unwrap(),
            config,
            Some(mode),
        );
        let reviewed = respond::validate_review(&engine, &review.body()).unwrap();
        let response = &reviewed.response;
        let case =
            format!("@enforcement({enforcement}) under {mode}, auditWarnings {audit_warnings}");
        assert_eq!(response.allowed, allowed, "{case}");
        assert_eq!(response.audit_annotations["decision"], decision, "{case}");
        let warnings = response.warnings.clone().unwrap_or_default();
        assert_eq!(
            warnings
                .iter()
                .any(|w| w.contains("[freeze] scale: Frozen.")),
            warned,
            "{case}: {warnings:?}"
        );
        let matched = &reviewed.outcome.unwrap().matches[0];
        assert_eq!(matched.declared.as_str(), enforcement, "{case}");
    }
}

/// A policy that fails to evaluate (here an integer overflow the validator cannot see) is
/// skipped by Cedar's rules; Guardrails then fails closed for a forbid: it counts as matching,
/// with the error in its reason. A failing permit allows nothing.
#[test]
fn a_policy_that_fails_to_evaluate_fails_closed() {
    use guardrails::config::Config;
    use guardrails::decide::Engine;
    use guardrails::policy::{EMBEDDED_POLICIES, PolicyStore};

    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    let review = Review::update(
        &base,
        &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
    )
    .by(PaymentsDev);
    // `oldReplicas` is a small count for a scale: subtracting the largest integer twice overflows.
    let overflow = "context.oldReplicas - 9223372036854775807 - 9223372036854775807 < 0";
    let decide = |extra: &str| {
        let mut sources = EMBEDDED_POLICIES.to_vec();
        sources.push(("extra.cedar", extra));
        let engine = Engine::new(
            PolicyStore::from_sources(sources, "t").unwrap(),
            Config::embedded().unwrap(),
            None,
        );
        respond::validate_review(&engine, &review.body())
            .unwrap()
            .outcome
            .unwrap()
    };

    let forbid = format!(
        "@id(\"overflowing\")\n@reason(\"Never.\")\nforbid (principal, action == Action::\"scale\", resource) when {{ {overflow} }};\n"
    );
    let outcome = decide(&forbid);
    assert!(!outcome.allowed, "{outcome:?}");
    let matched = outcome
        .matches
        .iter()
        .find(|m| m.policy == "overflowing")
        .expect("the failing forbid counts as matching");
    assert!(
        matched
            .reason
            .starts_with("Never. (the policy failed to evaluate: ")
            && matched.reason.contains("overflow"),
        "{}",
        matched.reason
    );
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
    assert!(
        outcome.errors[0].starts_with("Scale: error while evaluating policy `overflowing`"),
        "{:?}",
        outcome.errors
    );

    // Without it the same request is allowed: the shipped permit holds.
    assert!(decide("// nothing added\n").allowed);
    // A permit that fails adds no permission: still allowed by the shipped permit, and the
    // error is reported without a match.
    let permit = format!(
        "@id(\"overflowing\")\npermit (principal, action == Action::\"scale\", resource) when {{ {overflow} }};\n"
    );
    let outcome = decide(&permit);
    assert!(outcome.allowed, "{outcome:?}");
    assert!(outcome.matches.iter().all(|m| m.policy != "overflowing"));
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
}
