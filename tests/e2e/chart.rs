//! The Helm chart for real: `helm lint`, `helm template` for the default values and each documented
//! variant with every rendered object accepted by the API server (server-side dry-run), the rendered
//! policies and config accepted by `guardrails check`, and `helm install` / `helm upgrade` against the
//! API server (no kubelet: Pods never run; the objects, ConfigMaps and webhook configurations are
//! what is checked).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cluster::{Cluster, cluster, exclusive, shared};

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/guardrails")
}

fn chart_path() -> String {
    chart_dir().display().to_string()
}

const EXTRA_POLICY: &str = r#"@id("no-friday-deploys")
@reason("No production deploys on Fridays.")
@enforcement("warn")
forbid (principal, action == Action::"sync", resource in Environment::"prod")
unless { principal in Team::"platform" };
"#;

/// A values file under the run directory.
fn values_file(c: &Cluster, name: &str, values: &Value) -> String {
    let path = c.run_dir.join(format!("values-{name}.yaml"));
    std::fs::write(
        &path,
        serde_yaml_ng::to_string(values).expect("values as YAML"),
    )
    .expect("write values file");
    path.display().to_string()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name_suffix))
    })
}

/// Run `guardrails check` on the policies and config the chart's ConfigMaps carry.
fn check_rendered_configmaps(c: &Cluster, variant: &str, docs: &[Value]) {
    let dir = c
        .run_dir
        .join(format!("rendered-{}", variant.replace(' ', "-")));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("create rendered dir");
    let policy_cm = find(docs, "ConfigMap", "-policies").expect("policies ConfigMap");
    for (file, contents) in policy_cm["data"].as_object().expect("policies data") {
        std::fs::write(policies.join(file), contents.as_str().expect("string"))
            .expect("write policy");
    }
    let config_cm = find(docs, "ConfigMap", "-config").expect("config ConfigMap");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        config_cm["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml"),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_guardrails"))
        .arg("check")
        .arg(&policies)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run guardrails check");
    assert!(
        out.status.success(),
        "{variant}: guardrails check of the rendered ConfigMaps failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn helm_lint_passes() {
    let _shared = shared();
    let c = cluster();
    let out = c.helm(&["lint", &chart_path()]).ok();
    assert!(out.stdout.contains("0 chart(s) failed"), "{out}");
    let out = c
        .helm(&[
            "lint",
            &chart_path(),
            "--set",
            "tls.certManager.enabled=false",
            "--set",
            "tls.secretName=guardrails-tls",
            "--set",
            "tls.caBundle=Cg==",
        ])
        .ok();
    assert!(out.stdout.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn every_documented_variant_is_accepted_by_the_api_server() {
    let _shared = shared();
    let c = cluster();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&c.guardrails.ca_pem);
    let extra = values_file(
        c,
        "extra-policies",
        &json!({"policies": {"extra": {"no-friday.cedar": EXTRA_POLICY}}}),
    );
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("defaults", vec![]),
        (
            "without cert-manager",
            vec![
                "--set".into(),
                "tls.certManager.enabled=false".into(),
                "--set".into(),
                "tls.secretName=guardrails-tls".into(),
                "--set".into(),
                format!("tls.caBundle={ca_bundle}"),
            ],
        ),
        (
            "cert-manager with an existing issuer",
            vec![
                "--set".into(),
                "tls.certManager.issuerRef.name=company-ca".into(),
                "--set".into(),
                "tls.certManager.issuerRef.kind=ClusterIssuer".into(),
            ],
        ),
        ("extra policies", vec!["-f".into(), extra]),
        ("audit mode", vec!["--set".into(), "mode=audit".into()]),
        (
            "excluded namespaces",
            vec![
                "--set".into(),
                "webhook.excludeNamespaces={payments-dev,storefront-dev}".into(),
            ],
        ),
        (
            "servicemonitor",
            vec!["--set".into(), "serviceMonitor.enabled=true".into()],
        ),
        (
            "stamp team label",
            vec!["--set".into(), "config.mutation.stampTeamLabel=true".into()],
        ),
        (
            "no mutating webhook, failure policy Ignore, no namespace watch",
            vec![
                "--set".into(),
                "webhook.mutating.enabled=false".into(),
                "--set".into(),
                "webhook.failurePolicy=Ignore".into(),
                "--set".into(),
                "watchNamespaces=false".into(),
            ],
        ),
        (
            "audit log with requests",
            vec!["--set".into(), "auditLog.includeRequests=true".into()],
        ),
    ];

    let mut failures = Vec::new();
    for (variant, args) in &variants {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = match c.render_chart(&refs) {
            Ok(docs) => docs,
            Err(e) => {
                failures.push(format!("{variant}: {e}"));
                continue;
            }
        };
        // A fresh release name, so that every object is a create the API server fully validates.
        let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
        let text = list
            .to_string()
            .replace("guardrails-guardrails", "variant-guardrails");
        let out = c.kubectl_stdin(
            &["create", "--dry-run=server", "-o", "name", "-f", "-"],
            &text,
        );
        if !out.success {
            failures.push(format!("{variant}: {out}"));
            continue;
        }
        check_rendered_configmaps(c, variant, &docs);

        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        match *variant {
            "defaults" => {
                for kind in [
                    "Deployment",
                    "Service",
                    "ServiceAccount",
                    "ConfigMap",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "PodDisruptionBudget",
                    "ValidatingWebhookConfiguration",
                    "MutatingWebhookConfiguration",
                    "Certificate",
                    "Issuer",
                ] {
                    assert!(
                        kinds.contains(&kind),
                        "defaults render no {kind}: {kinds:?}"
                    );
                }
                assert!(!kinds.contains(&"ServiceMonitor"));
            }
            "without cert-manager" => {
                assert!(!kinds.contains(&"Certificate") && !kinds.contains(&"Issuer"));
                let vwc = find(&docs, "ValidatingWebhookConfiguration", "").expect("vwc");
                assert_eq!(
                    vwc["webhooks"][0]["clientConfig"]["caBundle"],
                    ca_bundle.as_str()
                );
            }
            "cert-manager with an existing issuer" => {
                assert!(!kinds.contains(&"Issuer"));
                let cert = find(&docs, "Certificate", "").expect("certificate");
                assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
            }
            "extra policies" => {
                let cm = find(&docs, "ConfigMap", "-policies").expect("policies");
                assert_eq!(
                    cm["data"]["no-friday.cedar"].as_str().map(str::trim),
                    Some(EXTRA_POLICY.trim())
                );
                assert!(
                    cm["data"]["argocd.cedar"].is_string(),
                    "defaults kept: {cm:#}"
                );
            }
            "audit mode" => {
                let cm = find(&docs, "ConfigMap", "-config").expect("config");
                assert!(
                    cm["data"]["config.yaml"]
                        .as_str()
                        .unwrap_or("")
                        .contains("mode: audit"),
                    "{cm:#}"
                );
            }
            "excluded namespaces" => {
                for kind in [
                    "ValidatingWebhookConfiguration",
                    "MutatingWebhookConfiguration",
                ] {
                    let config = find(&docs, kind, "").expect(kind);
                    let values = &config["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
                        ["values"];
                    for ns in [
                        "kube-system",
                        "guardrails-system",
                        "payments-dev",
                        "storefront-dev",
                    ] {
                        assert!(
                            values.as_array().is_some_and(|v| v.contains(&json!(ns))),
                            "{kind} does not exclude {ns}: {values}"
                        );
                    }
                }
            }
            "servicemonitor" => assert!(kinds.contains(&"ServiceMonitor"), "{kinds:?}"),
            "stamp team label" => {
                let mwc = find(&docs, "MutatingWebhookConfiguration", "").expect("mwc");
                let rules = mwc["webhooks"][0]["rules"].to_string();
                assert!(
                    rules.contains("deployments") && rules.contains("rollouts"),
                    "{rules}"
                );
            }
            "no mutating webhook, failure policy Ignore, no namespace watch" => {
                assert!(!kinds.contains(&"MutatingWebhookConfiguration"));
                assert!(!kinds.contains(&"ClusterRole"));
                let vwc = find(&docs, "ValidatingWebhookConfiguration", "").expect("vwc");
                assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "variants the API server refused:\n{}",
        failures.join("\n\n")
    );
}

/// `helm uninstall` when dropped, so the release's webhooks never outlive the test.
struct Release<'a> {
    cluster: &'a Cluster,
    name: &'a str,
    namespace: &'a str,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let out = self.cluster.helm(&[
            "uninstall",
            self.name,
            "-n",
            self.namespace,
            "--wait",
            "--timeout",
            "60s",
        ]);
        if !out.success {
            eprintln!("helm uninstall failed: {out}");
        }
    }
}

#[test]
fn helm_install_and_upgrade_against_the_api_server() {
    // The installed webhooks have no Pods behind them (no kubelet): every write in a covered
    // namespace fails while they exist, so this test runs alone.
    let _exclusive = exclusive();
    let c = cluster();
    let (name, namespace) = ("e2e-install", "e2e-install-system");
    let fullname = "e2e-install-guardrails";
    let chart = chart_path();

    let out = c.helm(&[
        "install",
        name,
        &chart,
        "-n",
        namespace,
        "--create-namespace",
    ]);
    let _release = Release {
        cluster: c,
        name,
        namespace,
    };
    let out = out.ok();
    assert!(out.stdout.contains("STATUS: deployed"), "{out}");

    let get = |kind: &str, object: &str, ns: Option<&str>| -> Value {
        let mut args = vec!["get", kind, object, "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        c.kubectl(&args).ok().json()
    };
    let deployment = get("deployment", fullname, Some(namespace));
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        fullname
    );
    get("service", fullname, Some(namespace));
    get("serviceaccount", fullname, Some(namespace));
    get("poddisruptionbudget", fullname, Some(namespace));
    get("certificates.cert-manager.io", fullname, Some(namespace));
    get("clusterrole", fullname, None);
    get("clusterrolebinding", fullname, None);
    let policies = get(
        "configmap",
        &format!("{fullname}-policies"),
        Some(namespace),
    );
    let shipped: Vec<String> = std::fs::read_dir(chart_dir().join("files/policies"))
        .expect("chart policies")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    for file in &shipped {
        assert!(
            policies["data"][file].is_string(),
            "{file} missing from {policies:#}"
        );
    }

    for (kind, path) in [
        ("validatingwebhookconfiguration", "/validate"),
        ("mutatingwebhookconfiguration", "/mutate"),
    ] {
        let config = get(kind, fullname, None);
        let webhook = &config["webhooks"][0];
        assert_eq!(
            webhook["clientConfig"]["service"],
            json!({"name": fullname, "namespace": namespace, "path": path, "port": 443}),
            "{kind}: {config:#}"
        );
        assert_eq!(webhook["failurePolicy"], "Fail");
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{namespace}/{fullname}")
        );
    }

    // The installed webhooks are live: a Deployment write in a team namespace now goes to the
    // release's Service, which has no endpoints (no Pods), and failurePolicy Fail refuses it.
    let out = c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &crate::deployment("e2e-install-probe", "payments-dev").to_string(),
    );
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("failed calling webhook"), "{out}");
    assert!(out.stderr.contains(fullname), "{out}");
    // ... but not in the release's own namespace, which the chart excludes.
    c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &crate::deployment("e2e-install-probe", namespace).to_string(),
    )
    .ok();

    // Upgrade with a changed policy set and audit mode: the ConfigMaps follow.
    let values = values_file(
        c,
        "upgrade",
        &json!({"mode": "audit", "policies": {"extra": {"no-friday.cedar": EXTRA_POLICY}}}),
    );
    let out = c
        .helm(&["upgrade", name, &chart, "-n", namespace, "-f", &values])
        .ok();
    assert!(out.stdout.contains("REVISION: 2"), "{out}");
    let policies = get(
        "configmap",
        &format!("{fullname}-policies"),
        Some(namespace),
    );
    assert_eq!(
        policies["data"]["no-friday.cedar"].as_str().map(str::trim),
        Some(EXTRA_POLICY.trim())
    );
    let config = get("configmap", &format!("{fullname}-config"), Some(namespace));
    assert!(
        config["data"]["config.yaml"]
            .as_str()
            .unwrap_or("")
            .contains("mode: audit"),
        "{config:#}"
    );
    let history = c
        .helm(&["history", name, "-n", namespace, "-o", "json"])
        .ok()
        .json();
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history:#}");
}

#[test]
fn main_fixture_webhooks_come_from_the_chart() {
    let _shared = shared();
    let c = cluster();
    let live = c
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "guardrails-guardrails",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let webhook = &live["webhooks"][0];
    assert_eq!(webhook["name"], "validate.guardrails.io");
    assert!(
        webhook["clientConfig"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/validate")),
        "{webhook:#}"
    );
    assert!(
        c.dead_processes().is_empty(),
        "{:?} exited",
        c.dead_processes()
    );
    let resources = webhook["rules"].to_string();
    for resource in [
        "applications",
        "rollouts/status",
        "rollouts/scale",
        "deployments/scale",
    ] {
        assert!(resources.contains(resource), "{resource}: {resources}");
    }
}
