//! `guardrails serve --policy-reports` against the real API server with the real PolicyReport CRD
//! (kubernetes-sigs/wg-policy-prototypes, installed with the cluster's CRDs): writing as the chart's
//! service account with the chart's RBAC rendered with `policyReports.enabled=true`, developers'
//! denied and audited writes (kubectl through a webhook configuration of the chart's, pointed at
//! that instance for one namespace) become one report with the expected results and summary;
//! without the RBAC, decisions are unaffected and the failed writes are counted.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{
    BOB, Cluster, DANA, Guardrails, RELEASE_NAMESPACE, chart_args_without_cert_manager, cluster,
    kubeconfig, loopback_webhooks, render_chart, shared, wait_for,
};
use crate::common::review::Review;
use crate::common::review::User::StorefrontDev;
use crate::{application, deployment};

/// The namespace of these tests: payments' and prod by its labels.
const NAMESPACE: &str = "e2e-reports";
/// The chart rendered under this name: a service account of its own, with the value on.
const REPORTS_FULLNAME: &str = "guardrails-reports";
const WEBHOOK: &str = "e2e-policy-reports";
const WRITES: &str = "guardrails_policy_report_writes_total";
const DROPPED: &str = "guardrails_policy_report_results_dropped_total";

/// A Deployment of `namespace` that Argo CD tracks (so a person's change is drift from Git).
fn tracked_deployment(name: &str, namespace: &str) -> Value {
    let mut object = deployment(name, namespace);
    object["metadata"]["annotations"] = json!({
        "argocd.argoproj.io/tracking-id": format!("{name}:apps/Deployment:{namespace}/{name}"),
    });
    object
}

/// The shipped policies with `prod-gitops-drift` rolled out in audit mode (as a new policy would
/// be, `@enforcement("audit")`): its matches become `warn` results next to the enforced `fail`s.
fn policies_with_drift_in_audit_mode(c: &Cluster) -> PathBuf {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = c.run_dir.join("policies-drift-audit");
    std::fs::create_dir_all(&dir).expect("a policy folder");
    for entry in std::fs::read_dir(&shipped).expect("policies/") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.ends_with(".cedar") || name.ends_with(".cedarschema")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a policy file");
        let text = match name {
            "drift.cedar" => format!("@enforcement(\"audit\")\n{text}"),
            _ => text,
        };
        std::fs::write(dir.join(name), text).expect("a policy file written");
    }
    dir
}

/// The chart's ServiceAccount, ClusterRoles and ClusterRoleBindings rendered with
/// `policyReports.enabled=true` under [`REPORTS_FULLNAME`], applied; a kubeconfig with a token of
/// that service account.
fn reports_service_account(c: &Cluster) -> PathBuf {
    let mut args = chart_args_without_cert_manager("Cg==");
    args.extend(
        [
            "--set",
            "policyReports.enabled=true",
            "--set",
            &format!("fullnameOverride={REPORTS_FULLNAME}"),
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let docs = render_chart(c.components, &c.run_dir, &refs).unwrap_or_else(|e| panic!("{e}"));
    let rbac: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding")
            )
        })
        .collect();
    let role = rbac
        .iter()
        .find(|d| {
            d["kind"] == "ClusterRole"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-policy-reports"))
        })
        .unwrap_or_else(|| panic!("no policy-reports ClusterRole: {rbac:#?}"));
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"], "verbs": ["get", "create", "update"]}])
    );
    assert_eq!(
        rbac.len(),
        5,
        "ServiceAccount, two roles and bindings: {rbac:#?}"
    );
    c.apply_json(&json!({"apiVersion": "v1", "kind": "List", "items": rbac}));
    let token = c
        .kubectl(&[
            "create",
            "token",
            REPORTS_FULLNAME,
            "-n",
            RELEASE_NAMESPACE,
            "--duration=1h",
        ])
        .ok();
    let ca_pem = std::fs::read_to_string(c.run_dir.join("pki/ca.crt")).expect("cluster CA");
    let path = c.run_dir.join("guardrails-reports-sa.kubeconfig");
    let config = kubeconfig(&c.server, &ca_pem, json!({"token": token.stdout.trim()}));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

/// The chart's validating webhook for workloads, sent to `guardrails` for [`NAMESPACE`] only;
/// deleted when dropped.
struct NamespaceWebhook<'a>(&'a Cluster);

impl<'a> NamespaceWebhook<'a> {
    fn install(c: &'a Cluster, guardrails: &Guardrails) -> Self {
        let ca = base64_encode(&guardrails.ca_pem);
        let args = chart_args_without_cert_manager(&ca);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = render_chart(c.components, &c.run_dir, &refs).unwrap_or_else(|e| panic!("{e}"));
        let mut vwc = docs
            .into_iter()
            .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
            .expect("the chart's ValidatingWebhookConfiguration");
        vwc["metadata"] = json!({"name": WEBHOOK});
        let webhooks = vwc["webhooks"].as_array_mut().expect("webhooks");
        webhooks.retain(|w| w["name"] == "validate.guardrails.io");
        assert_eq!(webhooks.len(), 1, "{vwc:#}");
        webhooks[0]["namespaceSelector"] =
            json!({"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}});
        let vwc = loopback_webhooks(&[vwc], &guardrails.listen, &guardrails.ca_pem)
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0);
        c.apply_json(&vwc);
        Self(c)
    }
}

impl Drop for NamespaceWebhook<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            WEBHOOK,
            "--ignore-not-found",
        ]);
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The namespace's `guardrails` PolicyReport read as v1alpha2, when it exists.
fn policy_report(c: &Cluster) -> Option<Value> {
    let out = c.kubectl(&[
        "get",
        "policyreports.v1alpha2.wgpolicyk8s.io",
        "guardrails",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]);
    out.success
        .then(|| serde_json::from_str(&out.stdout).expect("report JSON"))
}

/// Wait for the report to satisfy `done`.
#[track_caller]
fn wait_report(
    c: &Cluster,
    guardrails: &Guardrails,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(Duration::from_secs(30), what, || {
        Ok(policy_report(c).filter(|r| done(r)))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nreport: {:#?}\n--- guardrails log\n{}",
            policy_report(c),
            guardrails.log_text()
        )
    })
}

/// The result of `policy` for `rule` on Deployment `name`.
fn find<'r>(report: &'r Value, policy: &str, rule: &str, name: &str) -> &'r Value {
    report["results"]
        .as_array()
        .and_then(|results| {
            results.iter().find(|r| {
                r["policy"] == policy && r["rule"] == rule && r["resources"][0]["name"] == name
            })
        })
        .unwrap_or_else(|| panic!("no {policy}/{rule} result for {name}: {report:#}"))
}

#[test]
fn developers_denied_and_audited_writes_become_the_namespace_policy_report() {
    let _shared = shared();
    let c = cluster();
    c.apply_json(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {
            "guardrails.io/team": "payments", "guardrails.io/environment": "prod",
        }},
    }));
    let sa = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{REPORTS_FULLNAME}");
    let kubeconfig = reports_service_account(c);
    for (verb, expected) in [
        ("get", "yes"),
        ("create", "yes"),
        ("update", "yes"),
        ("delete", "no"),
        ("list", "no"),
    ] {
        let out = c.kubectl(&[
            "auth",
            "can-i",
            verb,
            "policyreports.wgpolicyk8s.io",
            "-n",
            NAMESPACE,
            "--as",
            &sa,
        ]);
        assert_eq!(out.stdout.trim(), expected, "{verb} policyreports: {out}");
    }
    for name in ["e2e-reports-bob", "e2e-reports-dana"] {
        c.apply_json(&tracked_deployment(name, NAMESPACE));
    }

    let policies = policies_with_drift_in_audit_mode(c);
    let guardrails = c
        .start_guardrails_with(
            "guardrails-reports",
            &kubeconfig,
            &[
                "--policies",
                policies.to_str().expect("a UTF-8 path"),
                "--no-reload",
                "--policy-reports",
                "--policy-reports-interval",
                "300ms",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let _webhook = NamespaceWebhook::install(c, &guardrails);
    // The API server picks the configuration up asynchronously: wait until a dry run (which no
    // report shows) reaches this instance.
    wait_for(
        Duration::from_secs(30),
        "the namespace's webhook to be called",
        || {
            c.kubectl(&[
                "annotate",
                "deployment",
                "e2e-reports-bob",
                "-n",
                NAMESPACE,
                "e2e/ping=1",
                "--overwrite",
                "--dry-run=server",
            ])
            .ok();
            Ok((!guardrails
                .audit_for(NAMESPACE, "e2e-reports-bob")
                .is_empty())
            .then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- guardrails log\n{}", guardrails.log_text()));

    // Bob changes his own prod Deployment by hand: drift from Git. This instance, with the drift
    // policy rolled out in audit mode, allows and reports it; the cluster's own Guardrails (the
    // shipped policies, called in parallel for every namespace) denies it.
    let set_image = |name: &str| {
        vec![
            "set".to_string(),
            "image".into(),
            format!("deployment/{name}"),
            "php-redis=nginx:1.27".into(),
            "-n".into(),
            NAMESPACE.into(),
        ]
    };
    let args = set_image("e2e-reports-bob");
    let message = c
        .kubectl_as(BOB, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .denied();
    assert!(message.contains("[prod-gitops-drift]"), "{message}");
    // Dana, of another team, may neither change the image nor scale.
    let args = set_image("e2e-reports-dana");
    let message = c
        .kubectl_as(DANA, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .denied();
    assert!(message.contains("[team-owns-namespace]"), "{message}");
    let scale = [
        "scale",
        "deployment/e2e-reports-dana",
        "--replicas=5",
        "-n",
        NAMESPACE,
    ];
    c.kubectl_as(DANA, &scale).denied();

    let report = wait_report(c, &guardrails, "2 fail and 2 warn results", |r| {
        r["summary"]["fail"] == 2 && r["summary"]["warn"] == 2
    });
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "guardrails"
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 0, "fail": 2, "warn": 2, "error": 0, "skip": 0})
    );
    assert_eq!(
        report["results"].as_array().map(Vec::len),
        Some(4),
        "{report:#}"
    );
    let uid = |name: &str| {
        c.kubectl(&[
            "get",
            "deployment",
            name,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .ok()
        .stdout
    };

    let drift = find(
        &report,
        "prod-gitops-drift",
        "change-image",
        "e2e-reports-bob",
    );
    assert_eq!(drift["result"], "warn", "{drift:#}");
    assert_eq!(drift["source"], "guardrails");
    assert_eq!(
        drift["resources"][0],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NAMESPACE,
               "name": "e2e-reports-bob", "uid": uid("e2e-reports-bob")})
    );
    assert_eq!(drift["properties"]["principal"], BOB.user);
    assert_eq!(drift["properties"]["teams"], "payments");
    assert_eq!(drift["properties"]["mode"], "audit");
    assert_eq!(drift["properties"]["operation"], "UPDATE");
    assert!(
        drift["timestamp"]["seconds"]
            .as_i64()
            .is_some_and(|s| s > 0)
    );
    assert!(
        drift["message"].as_str().is_some_and(|m| m.contains("Git")),
        "{drift:#}"
    );
    let record = guardrails.wait_audit(NAMESPACE, "e2e-reports-bob", |r| r["user"] == BOB.user);
    assert_eq!(drift["properties"]["requestUid"], record["uid"]);

    let denied = find(
        &report,
        "team-owns-namespace",
        "change-image",
        "e2e-reports-dana",
    );
    assert_eq!(denied["result"], "fail", "{denied:#}");
    assert_eq!(denied["properties"]["principal"], DANA.user);
    assert_eq!(denied["properties"]["teams"], "storefront");
    assert_eq!(denied["properties"]["mode"], "enforce");
    assert_eq!(denied["resources"][0]["uid"], uid("e2e-reports-dana"));
    let audited = find(
        &report,
        "prod-gitops-drift",
        "change-image",
        "e2e-reports-dana",
    );
    assert_eq!(audited["result"], "warn");
    assert_eq!(audited["properties"]["principal"], DANA.user);
    let scaled = find(&report, "team-owns-namespace", "scale", "e2e-reports-dana");
    assert_eq!(scaled["result"], "fail");
    assert_eq!(scaled["properties"]["subResource"], "scale");
    assert_eq!(scaled["resources"][0]["kind"], "Deployment");

    // Dana tries again: the same result is updated in place (an update of the report at the
    // version read), not added.
    let first = scaled["properties"]["requestUid"].clone();
    c.kubectl_as(DANA, &scale).denied();
    let report = wait_report(c, &guardrails, "the scale result updated", |r| {
        find(r, "team-owns-namespace", "scale", "e2e-reports-dana")["properties"]["requestUid"]
            != first
    });
    assert_eq!(
        report["results"].as_array().map(Vec::len),
        Some(4),
        "{report:#}"
    );
    assert_eq!(report["summary"]["fail"], 2);

    // An Application in a namespace that does not exist (sent straight to this instance, as no
    // API server would): nothing to report into; its results are dropped and counted, not retried.
    let mut app = application("e2e-reports-gone-app", "payments-prod");
    app["metadata"]["namespace"] = json!("e2e-reports-gone");
    let mut synced = app.clone();
    synced["operation"] = json!({"sync": {"revision": "HEAD"}});
    let review = Review::update(&app, &synced).by(StorefrontDev).body();
    let answer = guardrails.validate(&review).expect("validate");
    assert_eq!(answer["response"]["allowed"], false, "{answer:#}");
    wait_for(
        Duration::from_secs(20),
        "the gone namespace's results to be dropped",
        || Ok((guardrails.metric(DROPPED, &[("reason", "namespace_gone")]) >= 1.0).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}\n--- guardrails log\n{}", guardrails.log_text()));
    assert_eq!(
        guardrails.metric("guardrails_policy_report_pending_namespaces", &[]),
        0.0
    );

    assert!(guardrails.metric(WRITES, &[("result", "written")]) >= 2.0);
    assert_eq!(
        guardrails.metric(WRITES, &[("result", "error")]),
        0.0,
        "{}",
        guardrails.log_text()
    );
    for reason in ["queue_full", "pending_full", "evicted"] {
        assert_eq!(
            guardrails.metric(DROPPED, &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
}

#[test]
fn without_the_rbac_decisions_are_unaffected_and_failed_writes_are_counted() {
    let _shared = shared();
    let c = cluster();
    // The chart's service account with the default values: it may read Namespaces, not write
    // PolicyReports.
    let guardrails = c
        .start_guardrails(
            "guardrails-reports-no-rbac",
            &[
                "--no-reload",
                "--policy-reports",
                "--policy-reports-interval",
                "200ms",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let old = tracked_deployment("e2e-reports-no-rbac", "payments-prod");
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let review = Review::update(&old, &new).by(StorefrontDev).body();

    for _ in 0..3 {
        let answer = guardrails.validate(&review).expect("validate");
        let expected = c.guardrails.validate(&review).expect("validate");
        assert_eq!(answer["response"]["allowed"], false, "{answer:#}");
        assert_eq!(
            answer["response"]["status"], expected["response"]["status"],
            "the same decision as without --policy-reports"
        );
    }
    wait_for(
        Duration::from_secs(20),
        "a failed write to be counted",
        || Ok((guardrails.metric(WRITES, &[("result", "error")]) >= 2.0).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}\n--- guardrails log\n{}", guardrails.log_text()));
    assert_eq!(guardrails.metric(WRITES, &[("result", "written")]), 0.0);
    // The results wait, bounded, for a write that can succeed.
    assert_eq!(
        guardrails.metric("guardrails_policy_report_pending_namespaces", &[]),
        1.0
    );
    let (status, body) = guardrails.probe_get("/readyz").expect("readyz");
    assert_eq!(status, 200, "{body}");
    let log = guardrails.log_text();
    assert!(log.contains("cannot write PolicyReports"), "{log}");
    assert_eq!(
        log.matches("cannot write PolicyReports").count(),
        1,
        "logged once while it lasts: {log}"
    );
    let out = c.kubectl(&["get", "policyreports", "-n", "payments-prod", "-o", "name"]);
    assert!(out.success && out.stdout.trim().is_empty(), "{out}");
    // Decided after the failures as before.
    let answer = guardrails.validate(&review).expect("validate");
    assert_eq!(answer["response"]["allowed"], false);
}
