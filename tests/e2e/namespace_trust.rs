//! The Namespace labels Guardrails trusts (`namespaceLabels`), guarded against the real API server
//! through the chart's own `namespaces.guardrails.io` webhook: its `matchConditions` send only
//! writes that set, change or remove a trust label, and deletes; the shipped `namespaces.cedar`
//! lets only the platform team and automation make them. `guardrails check --live-namespaces`
//! reads the same cluster.

use std::process::Command;

use serde_json::{Value, json};

use crate::cluster::{BOB, DANA, Output, cluster, shared};

const NAMESPACE: &str = "e2e-trust";

fn label_as(identity: crate::cluster::Identity, label: &str) -> Output {
    cluster().kubectl_as(
        identity,
        &["label", "namespace", NAMESPACE, label, "--overwrite"],
    )
}

#[track_caller]
fn denied_by(out: &Output, policy: &str) {
    assert!(!out.success, "should be denied: {out}");
    assert!(
        out.stderr.contains(&format!("[{policy}]")) && out.stderr.contains("Guardrails denied"),
        "should name {policy}: {out}"
    );
}

fn labels() -> Value {
    let out = cluster().kubectl(&["get", "namespace", NAMESPACE, "-o", "json"]);
    let namespace: Value = serde_json::from_str(&out.ok().stdout).unwrap_or(Value::Null);
    namespace["metadata"]["labels"].clone()
}

fn audited() -> Vec<Value> {
    cluster().guardrails.audit_for(NAMESPACE, NAMESPACE)
}

#[test]
fn trust_labels_and_prod_namespace_deletes_are_the_platform_teams() {
    let _shared = shared();
    let c = cluster();
    // Created by the admin (system:masters: the platform team), with payments' prod labels: a
    // namespace the config does not name, placed by its labels alone.
    c.apply_json(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {
            "guardrails.io/team": "payments", "guardrails.io/environment": "prod",
        }},
    }))
    .ok();
    let created = c.guardrails.wait_audit(NAMESPACE, NAMESPACE, |r| {
        r["operation"] == "CREATE" && r["actions"] == json!(["relabel"])
    });
    assert_eq!(created["allowed"], true, "{created:#}");

    // A developer relabelling their own prod namespace as dev, removing its team, or another team
    // claiming it: refused, with the reason.
    denied_by(
        &label_as(BOB, "guardrails.io/environment=dev"),
        "namespace-trust-labels-platform-only",
    );
    denied_by(
        &label_as(BOB, "guardrails.io/team-"),
        "namespace-trust-labels-platform-only",
    );
    let claim = label_as(DANA, "guardrails.io/team=storefront");
    denied_by(&claim, "namespace-trust-labels-platform-only");
    assert!(claim.stderr.contains("[team-owns-namespace]"), "{claim}");
    assert_eq!(labels()["guardrails.io/environment"], "prod");
    assert_eq!(labels()["guardrails.io/team"], "payments");

    // Any other label is not Guardrails' business: allowed, and it never reaches the webhook.
    let before = audited().len();
    label_as(BOB, "cost-center=4711").ok();
    assert_eq!(labels()["cost-center"], "4711");

    // The platform team relabels; its record is the barrier for the one above.
    c.kubectl(&[
        "label",
        "namespace",
        NAMESPACE,
        "guardrails.io/environment=staging",
        "--overwrite",
    ])
    .ok();
    let relabelled = c.guardrails.wait_audit(NAMESPACE, NAMESPACE, |r| {
        r["operation"] == "UPDATE" && r["allowed"] == true && r["actions"] == json!(["relabel"])
    });
    assert_eq!(relabelled["user"], "e2e-admin", "{relabelled:#}");
    let after: Vec<Value> = audited().into_iter().skip(before).collect();
    assert_eq!(
        after.iter().filter(|r| r["user"] == BOB.user).count(),
        0,
        "bob's unrelated label reached the webhook: {after:#?}"
    );

    // Back to prod; a developer may not delete it, the platform team may.
    c.kubectl(&[
        "label",
        "namespace",
        NAMESPACE,
        "guardrails.io/environment=prod",
        "--overwrite",
    ])
    .ok();
    denied_by(
        &c.kubectl_as(BOB, &["delete", "namespace", NAMESPACE, "--wait=false"]),
        "prod-namespace-delete-platform-only",
    );
    assert!(labels().is_object(), "the namespace is still there");
    c.kubectl(&["delete", "namespace", NAMESPACE, "--wait=false"])
        .ok();
    let deleted = c.guardrails.wait_audit(NAMESPACE, NAMESPACE, |r| {
        r["operation"] == "DELETE" && r["allowed"] == true
    });
    assert_eq!(deleted["actions"], json!(["delete"]), "{deleted:#}");
}

#[test]
fn check_reads_the_clusters_namespace_labels() {
    let _shared = shared();
    let c = cluster();
    // payments-prod as the cluster labels it (prod), against a config that calls it dev.
    let config = std::fs::read_to_string(format!(
        "{}/config/guardrails.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the example config")
    .replace(
        "payments-prod: { team: payments, environment: prod }",
        "payments-prod: { team: payments, environment: dev }",
    );
    assert!(config.contains("payments-prod: { team: payments, environment: dev }"));
    let path = c.run_dir.join("check-live-namespaces.yaml");
    std::fs::write(&path, config).expect("write the config");
    let out = Command::new(env!("CARGO_BIN_EXE_guardrails"))
        .args([
            "check",
            &format!("{}/policies", env!("CARGO_MANIFEST_DIR")),
            "--config",
            path.to_str().unwrap_or_default(),
            "--live-namespaces",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .output()
        .expect("guardrails check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "warning: namespace payments-prod: the config says environment \"dev\", its label guardrails.io/environment says \"prod\"; the label wins"
        ),
        "{stdout}"
    );
}
