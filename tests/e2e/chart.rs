//! The Helm chart for real: `helm lint`; `helm template` for the default values and each documented
//! variant, every rendered object accepted by the API server (server-side dry-run), the container
//! args of the Deployment and of the check Job parsed by the real CLI, the rendered policies and
//! config accepted by `guardrails check`, and `guardrails serve` started with the rendered args and
//! files until ready; the values the chart refuses, each with its message. Installing and upgrading
//! run README's own commands (`readme.rs`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cluster::{CLUSTER_NAME, Cluster, TEST_IMAGE, cluster, helm_env, shared, yaml_docs};
use crate::pod::{flag, materialize, parse_args, scratch, serve_until_ready};

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/guardrails")
}

fn chart_path() -> String {
    chart_dir().display().to_string()
}

pub const EXTRA_POLICY: &str = r#"@id("no-friday-deploys")
@reason("No production deploys on Fridays.")
@enforcement("warn")
forbid (principal, action == Action::"sync", resource in Environment::"prod")
unless { principal in Team::"platform" };
"#;

/// A values file under the run directory, written as JSON (which is YAML): strings stay strings
/// (`on` unquoted in YAML is a boolean to Helm), numbers are YAML numbers (floats to Helm).
pub fn values_file(c: &Cluster, name: &str, values: &Value) -> String {
    raw_values_file(
        c,
        name,
        &serde_json::to_string_pretty(values).expect("JSON"),
    )
}

/// A values file with exactly this text.
pub fn raw_values_file(c: &Cluster, name: &str, text: &str) -> String {
    let path = c.run_dir.join(format!("values-{name}.yaml"));
    std::fs::write(&path, text).expect("write values file");
    path.display().to_string()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name_suffix))
    })
}

/// `helm template <release> <chart> -n <namespace> --set image.repository=<test image> <args>`.
fn template(
    c: &Cluster,
    release: &str,
    namespace: &str,
    args: &[String],
) -> Result<Vec<Value>, String> {
    let mut command = Command::new(c.components.path("helm"));
    command
        .args(["template", release, &chart_path(), "--namespace", namespace])
        .args(["--set", &format!("image.repository={TEST_IMAGE}")])
        .args(args)
        .env("KUBECONFIG", &c.kubeconfig);
    helm_env(&mut command, &c.run_dir);
    let out = command.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

/// What the chart's Deployment and check Job would run: their args, parsed by the real CLI, with
/// the mounted files laid out from the rendered ConfigMaps (and a generated TLS pair); `guardrails
/// check` on the check Job's files; `guardrails serve` started with the Deployment's args until
/// `/readyz` answers. Returns the Deployment's args as rendered, and with the files laid out.
fn run_rendered_pods(
    c: &Cluster,
    variant: &str,
    docs: &[Value],
) -> Result<(Vec<String>, Vec<String>), String> {
    let root = scratch(
        c,
        &format!("pods/{}", variant.replace([' ', '/', ','], "-")),
    );
    let configmap = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
            .cloned()
    };
    let pair = guardrails::server::tls::generate(&["127.0.0.1".into()], "variant")
        .map_err(|e| e.to_string())?;
    let secret = |_: &str| {
        Some(BTreeMap::from([
            ("tls.crt".to_string(), pair.cert_pem.clone()),
            ("tls.key".to_string(), pair.key_pem.clone()),
            ("ca.crt".to_string(), pair.ca_pem.clone()),
        ]))
    };
    let deployment = find(docs, "Deployment", "").ok_or("no Deployment")?;
    let rendered: Vec<String> = serde_json::from_value(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .map_err(|e| e.to_string())?;
    parse_args(&rendered)?;
    let args = materialize(
        &deployment["spec"]["template"]["spec"],
        &root.join("deployment"),
        &configmap,
        &secret,
    )?;
    serve_until_ready(c, &args, &root.join("serve.log"))?;
    let laid_out = args;

    if let Some(job) = find(docs, "Job", "-check") {
        let args = materialize(
            &job["spec"]["template"]["spec"],
            &root.join("check"),
            &configmap,
            &secret,
        )?;
        parse_args(&args)?;
        let out = Command::new(env!("CARGO_BIN_EXE_guardrails"))
            .args(&args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the check Job's `guardrails {}` failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The check Job checks exactly what the Deployment mounts.
        for (deployed, checked) in [
            ("-policies", "-check-policies"),
            ("-config", "-check-config"),
        ] {
            let data = |suffix: &str| find(docs, "ConfigMap", suffix).map(|d| d["data"].clone());
            if data(deployed) != data(checked) {
                return Err(format!("ConfigMaps {deployed} and {checked} differ"));
            }
        }
    }
    Ok((rendered, laid_out))
}

/// Whether `guardrails eval`, with the policies and config a pod of the chart loads (`args` as laid
/// out), lets a user of `group` delete an Application.
fn may_delete_an_application(args: &[String], group: &str) -> bool {
    let policies = flag(args, "--policies").expect("--policies");
    let app = Path::new(policies).with_file_name(format!("application-{group}.json"));
    std::fs::write(
        &app,
        crate::application("eval", "payments-prod").to_string(),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_guardrails"))
        .args([
            "eval",
            "--operation",
            "DELETE",
            "--as",
            "someone",
            "--as-group",
            group,
        ])
        .arg(format!(
            "--policies={}",
            flag(args, "--policies").expect("--policies")
        ))
        .arg(format!(
            "--config={}",
            flag(args, "--config").expect("--config")
        ))
        .arg("-f")
        .arg(&app)
        .args(["--output", "json"])
        .output()
        .expect("guardrails eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review: Value = serde_json::from_slice(&out.stdout).expect("review");
    review["response"]["allowed"] == true
}

#[test]
fn helm_lint_passes() {
    let _shared = shared();
    let c = cluster();
    for extra in [
        vec![],
        vec!["--set", "image.repository=registry.example.com/guardrails"],
        vec![
            "--set",
            "tls.certManager.enabled=false",
            "--set",
            "tls.secretName=guardrails-tls",
            "--set",
            "tls.caBundle=Cg==",
        ],
    ] {
        let mut args = vec!["lint", "--strict"];
        let chart = chart_path();
        args.push(&chart);
        args.extend(extra);
        let out = c.helm(&args).ok();
        assert!(out.stdout.contains("0 chart(s) failed"), "{out}");
    }
}

/// The release namespace of the variants (one the API server has, where nothing else is installed).
const VARIANTS: &str = "e2e-variants";

/// One documented variant: its name, release namespace, and `helm template` arguments.
struct Variant {
    name: &'static str,
    namespace: &'static str,
    args: Vec<String>,
}

fn set(pairs: &[&str]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| ["--set".to_string(), p.to_string()])
        .collect()
}

#[test]
fn every_documented_variant_is_accepted_by_the_api_server_and_starts() {
    let _shared = shared();
    let c = cluster();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&c.guardrails.ca_pem);
    let file = |name: &str, values: Value| vec!["-f".to_string(), values_file(c, name, &values)];
    // Values files carry numbers as YAML numbers (Helm reads them as floats, unlike --set) and
    // strings that YAML 1.1 would read as booleans and numbers.
    let variants = vec![
        Variant {
            name: "defaults",
            namespace: VARIANTS,
            args: vec![],
        },
        Variant {
            name: "without cert-manager",
            namespace: VARIANTS,
            args: set(&[
                "tls.certManager.enabled=false",
                "tls.secretName=guardrails-tls",
                &format!("tls.caBundle={ca_bundle}"),
            ]),
        },
        Variant {
            name: "cert-manager with an existing issuer",
            namespace: VARIANTS,
            args: set(&[
                "tls.certManager.issuerRef.name=company-ca",
                "tls.certManager.issuerRef.kind=ClusterIssuer",
            ]),
        },
        Variant {
            name: "extra policies",
            namespace: VARIANTS,
            args: file(
                "extra",
                json!({"policies": {"extra": {"no-friday.cedar": EXTRA_POLICY}}}),
            ),
        },
        Variant {
            name: "only the extra policies, the first line indented",
            namespace: VARIANTS,
            args: file(
                "only-extra",
                json!({"policies": {"includeDefaults": false, "extra": {
                    "allow.cedar": "    // indented first line\n@id(\"allow-all\")\npermit (principal, action, resource);\n",
                    "no-friday.cedar": EXTRA_POLICY,
                }}}),
            ),
        },
        Variant {
            name: "audit mode",
            namespace: VARIANTS,
            args: set(&["mode=audit"]),
        },
        Variant {
            name: "excluded namespaces read as YAML 1.1 booleans and numbers, in a release namespace 0123",
            namespace: "0123",
            args: file(
                "yaml-names",
                json!({"webhook": {"excludeNamespaces": ["payments-dev", "on", "no", "123", "0123", "y"]}}),
            ),
        },
        Variant {
            name: "servicemonitor and network policy",
            namespace: VARIANTS,
            args: file(
                "monitoring",
                json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
                       "networkPolicy": {"enabled": true,
                           "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                           "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}),
            ),
        },
        Variant {
            name: "stamp team label, exempt application",
            namespace: VARIANTS,
            args: set(&[
                "config.mutation.stampTeamLabel=true",
                "webhook.exemptApplications={argocd/guardrails}",
            ]),
        },
        Variant {
            name: "no mutating webhook, failure policy Ignore, no namespace watch",
            namespace: VARIANTS,
            args: set(&[
                "webhook.mutating.enabled=false",
                "webhook.failurePolicy=Ignore",
                "watchNamespaces=false",
            ]),
        },
        Variant {
            name: "policy reports without the namespace watch",
            namespace: VARIANTS,
            args: file(
                "policy-reports",
                json!({"watchNamespaces": false,
                       "policyReports": {"enabled": true, "interval": "10s", "maxResults": 50}}),
            ),
        },
        Variant {
            name: "audit log with requests up to 1 MiB",
            namespace: VARIANTS,
            args: file(
                "audit-log",
                json!({"auditLog": {"includeRequests": true, "maxRequestBytes": 1048576}}),
            ),
        },
        Variant {
            name: "one replica, no shutdown delay, no check job",
            namespace: VARIANTS,
            args: file(
                "one",
                json!({"replicaCount": 1, "shutdownDelaySeconds": 0, "checkJob": {"enabled": false}}),
            ),
        },
        Variant {
            name: "subchart with global values, pull secrets, name overrides, a long shutdown delay",
            namespace: VARIANTS,
            args: file(
                "subchart",
                json!({"global": {"imageRegistry": "registry.example.com"},
                       "imagePullSecrets": [{"name": "regcred"}], "fullnameOverride": "gr",
                       "shutdownDelaySeconds": 20}),
            ),
        },
        Variant {
            name: "mutual TLS, limits, audit records never lost, a 10 s webhook timeout",
            namespace: VARIANTS,
            args: file(
                "mtls-limits",
                json!({"tls": {"clientCA": {"pem": c.guardrails.ca_pem.clone()}},
                       "limits": {"maxBodyBytes": "2Mi", "memoryBudget": "96Mi", "decisionWorkers": 3,
                                  "maxQueue": 10, "maxConnections": 200, "idleTimeout": "30s",
                                  "firstRequestTimeout": "5s"},
                       "webhook": {"timeoutSeconds": 10},
                       "auditLog": {"onLoss": "fail", "bufferBytes": 1048576}}),
            ),
        },
        Variant {
            name: "teams and namespaces, no platform groups",
            namespace: VARIANTS,
            args: file(
                "teams",
                json!({"platformGroups": [], "checkJob": {"denyWarnings": true}, "config": {
                    "teams": {"platform": {"groups": ["platform-admins"]}, "payments": {"groups": ["payments-devs"]}},
                    "namespaces": {"payments-prod": {"team": "payments", "environment": "prod"}},
                    "clusters": {"https://kubernetes.default.svc": "prod"}}}),
            ),
        },
    ];

    for namespace in [VARIANTS, "0123"] {
        c.apply_json(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        );
    }
    // Three at a time: helm, kubectl and serve are mostly waiting on each other.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = std::sync::Mutex::new(HashSet::new());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while let Some(variant) =
                    variants.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    if let Err(e) = one_variant(c, variant, &ca_bundle, &started) {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("{}: {e}", variant.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "variants that failed:\n{}",
        failures.join("\n\n")
    );
}

/// Render one variant, have the API server accept it, run its pods' args (once per distinct
/// Deployment and ConfigMaps), and check what it must render.
fn one_variant(
    c: &Cluster,
    variant: &Variant,
    ca_bundle: &str,
    started: &std::sync::Mutex<HashSet<String>>,
) -> Result<(), String> {
    let name = variant.name;
    let docs = template(c, "guardrails", variant.namespace, &variant.args)?;
    // In a namespace of their own, so that every object is a create the API server fully validates.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let out = c.kubectl_stdin(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        &list.to_string(),
    );
    if !out.success {
        return Err(out.to_string());
    }
    let key = json!([
        find(&docs, "Deployment", ""),
        find(&docs, "ConfigMap", "-policies"),
        find(&docs, "ConfigMap", "-config")
    ])
    .to_string();
    let first = started.lock().expect("started").insert(key);
    let (args, laid_out) = if first {
        let (args, laid_out) = run_rendered_pods(c, name, &docs)?;
        (args, Some(laid_out))
    } else {
        let deployment = find(&docs, "Deployment", "").ok_or("no Deployment")?;
        let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        (
            serde_json::from_value(args).map_err(|e| e.to_string())?,
            None,
        )
    };
    // Every variant's failures are reported, not only the first one's.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_variant(name, &docs, &args, ca_bundle)
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })?;
    // README's break-glass: the chart's platform team (platformGroups) may delete an
    // Application, others may not; with platformGroups [] nobody is platform by default.
    if let Some(files) = laid_out {
        let may_delete = |group| may_delete_an_application(&files, group);
        match name {
            "defaults" => assert!(
                may_delete("system:masters") && !may_delete("platform-admins"),
                "{name}"
            ),
            "teams and namespaces, no platform groups" => assert!(
                !may_delete("system:masters") && may_delete("platform-admins"),
                "{name}"
            ),
            _ => {}
        }
    }
    Ok(())
}

/// What each variant must render.
fn check_variant(variant: &str, docs: &[Value], args: &[String], ca_bundle: &str) {
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let deployment = find(docs, "Deployment", "").expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let config = |docs: &[Value]| -> Value {
        let cm = find(docs, "ConfigMap", "-config").expect("config");
        serde_yaml_ng::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("config")
    };
    let policies = find(docs, "ConfigMap", "-policies").expect("policies");
    let webhooks = [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ];
    match variant {
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
                "Job",
            ] {
                assert!(
                    kinds.contains(&kind),
                    "defaults render no {kind}: {kinds:?}"
                );
            }
            assert!(!kinds.contains(&"ServiceMonitor") && !kinds.contains(&"NetworkPolicy"));
            assert_eq!(deployment["metadata"]["name"], "guardrails");
            for kind in [
                "ClusterRole",
                "ClusterRoleBinding",
                "ValidatingWebhookConfiguration",
            ] {
                assert_eq!(
                    find(docs, kind, "").expect(kind)["metadata"]["name"],
                    "e2e-variants-guardrails"
                );
            }
            // The serving certificate comes from the release's own CA, not from a self-signed issuer.
            let cert = find(docs, "Certificate", "guardrails").expect("serving certificate");
            assert_eq!(
                cert["spec"]["issuerRef"]["name"], "guardrails-ca",
                "{cert:#}"
            );
            let ca = find(docs, "Certificate", "-ca").expect("CA certificate");
            assert_eq!(ca["spec"]["isCA"], true);
            assert_eq!(ca["spec"]["issuerRef"]["name"], "guardrails-selfsigned");
            assert_eq!(ca["spec"]["privateKey"]["rotationPolicy"], "Never");
            let ca_issuer = find(docs, "Issuer", "-ca").expect("CA issuer");
            assert_eq!(
                ca_issuer["spec"]["ca"]["secretName"],
                ca["spec"]["secretName"]
            );
            for kind in webhooks {
                let config = find(docs, kind, "").expect(kind);
                assert_eq!(
                    config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                    "e2e-variants/guardrails"
                );
            }
            // The chart's default config has no team a user could not drop; system:masters is
            // platform through platformGroups (README's break-glass).
            let config = config(docs);
            assert_eq!(
                config["teams"],
                json!({"platform": {"groups": ["system:masters"]}})
            );
            assert_eq!(config["clusters"], json!({}));
            assert_eq!(config["namespaces"], json!({}));
            // Token only for the namespace watch; the shutdown delay is the server's own (no
            // preStop hook, which needs Kubernetes >= 1.30), within the grace period.
            assert_eq!(pod["automountServiceAccountToken"], true);
            assert!(pod["containers"][0]["lifecycle"].is_null());
            assert_eq!(pod["terminationGracePeriodSeconds"], 20);
            for arg in [
                "--shutdown-delay=5s",
                "--shutdown-grace=10s",
                "--request-timeout=4s",
                "--max-body-bytes=4Mi",
                "--memory-budget=128Mi",
                "--audit-log-on-loss=drop",
            ] {
                assert!(args.iter().any(|a| a == arg), "{arg} in {args:?}");
            }
            assert!(!args.iter().any(|a| a.starts_with("--client-ca")));
            assert!(find(docs, "ConfigMap", "-client-ca").is_none());
            assert!(!args.iter().any(|a| a.starts_with("--policy-reports")));
            assert!(find(docs, "ClusterRole", "-policy-reports").is_none());
            assert_eq!(pod["containers"][0]["image"], format!("{TEST_IMAGE}:0.1.0"));
            let job = find(docs, "Job", "-check").expect("check job");
            assert_eq!(
                job["metadata"]["annotations"]["helm.sh/hook"],
                "pre-install,pre-upgrade"
            );
            assert_eq!(
                job["spec"]["template"]["spec"]["containers"][0]["args"][0],
                "check"
            );
            // The check Job's pod is no replica to the Service, PodDisruptionBudget or NetworkPolicy.
            let selector = deployment["spec"]["selector"]["matchLabels"]
                .as_object()
                .expect("selector");
            let job_labels = &job["spec"]["template"]["metadata"]["labels"];
            assert!(
                selector.iter().any(|(k, v)| &job_labels[k] != v),
                "{job_labels}"
            );
            // The shipped policies, byte for byte.
            for entry in std::fs::read_dir(chart_dir().join("files/policies")).expect("policies") {
                let path = entry.expect("entry").path();
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .to_string();
                assert_eq!(
                    policies["data"][&name].as_str(),
                    Some(std::fs::read_to_string(&path).expect("read").as_str()),
                    "{name}"
                );
            }
        }
        "without cert-manager" => {
            assert!(!kinds.contains(&"Certificate") && !kinds.contains(&"Issuer"));
            for kind in webhooks {
                let config = find(docs, kind, "").expect(kind);
                assert_eq!(config["webhooks"][0]["clientConfig"]["caBundle"], ca_bundle);
                assert!(config["metadata"]["annotations"].is_null(), "{config:#}");
            }
            assert_eq!(pod["volumes"][0]["secret"]["secretName"], "guardrails-tls");
        }
        "cert-manager with an existing issuer" => {
            assert!(!kinds.contains(&"Issuer"));
            let cert = find(docs, "Certificate", "").expect("certificate");
            assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
            assert_eq!(kinds.iter().filter(|k| **k == "Certificate").count(), 1);
        }
        "extra policies" => {
            assert_eq!(policies["data"]["no-friday.cedar"], EXTRA_POLICY);
            assert!(
                policies["data"]["argocd.cedar"].is_string(),
                "defaults kept: {policies:#}"
            );
        }
        "only the extra policies, the first line indented" => {
            let files: HashSet<&str> = policies["data"]
                .as_object()
                .expect("data")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                files,
                HashSet::from(["guardrails.cedarschema", "allow.cedar", "no-friday.cedar"]),
                "the schema stays without the default policies"
            );
            assert!(
                policies["data"]["allow.cedar"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("    // indented first line\n"))
            );
        }
        "audit mode" => assert_eq!(config(docs)["mode"], "audit"),
        "excluded namespaces read as YAML 1.1 booleans and numbers, in a release namespace 0123" => {
            for kind in webhooks {
                let config = find(docs, kind, "").expect(kind);
                assert_eq!(
                    config["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
                    json!([
                        "kube-system",
                        "0123",
                        "payments-dev",
                        "on",
                        "no",
                        "123",
                        "y"
                    ]),
                    "{kind}"
                );
                assert_eq!(
                    config["webhooks"][0]["clientConfig"]["service"]["namespace"],
                    "0123"
                );
                assert_eq!(config["metadata"]["name"], "0123-guardrails");
            }
            assert_eq!(deployment["metadata"]["namespace"], "0123");
        }
        "servicemonitor and network policy" => {
            assert!(kinds.contains(&"ServiceMonitor"), "{kinds:?}");
            let policy = find(docs, "NetworkPolicy", "").expect("network policy");
            assert_eq!(
                policy["spec"]["ingress"],
                json!([
                    {"ports": [{"port": "https", "protocol": "TCP"}],
                     "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
                    {"ports": [{"port": "http-probes", "protocol": "TCP"}],
                     "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
                ])
            );
        }
        "stamp team label, exempt application" => {
            let mwc = find(docs, "MutatingWebhookConfiguration", "").expect("mwc");
            let rules = mwc["webhooks"][0]["rules"].to_string();
            assert!(
                rules.contains("deployments") && rules.contains("rollouts"),
                "{rules}"
            );
            for kind in webhooks {
                let conditions =
                    find(docs, kind, "").expect(kind)["webhooks"][0]["matchConditions"].clone();
                let exempt = conditions
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["name"] == "not-an-exempt-application"))
                    .unwrap_or_else(|| panic!("{kind}: {conditions:#}"));
                assert!(
                    exempt["expression"]
                        .as_str()
                        .is_some_and(|e| e.contains("[\"argocd/guardrails\"]"))
                );
            }
        }
        "no mutating webhook, failure policy Ignore, no namespace watch" => {
            assert!(!kinds.contains(&"MutatingWebhookConfiguration"));
            assert!(!kinds.contains(&"ClusterRole"));
            let vwc = find(docs, "ValidatingWebhookConfiguration", "").expect("vwc");
            assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
            assert_eq!(pod["automountServiceAccountToken"], false);
            assert!(!args.contains(&"--watch-namespaces".to_string()));
        }
        "policy reports without the namespace watch" => {
            // The token is mounted for the reports alone; the only ClusterRole is theirs.
            assert_eq!(pod["automountServiceAccountToken"], true);
            assert!(!args.contains(&"--watch-namespaces".to_string()));
            assert!(args.contains(&"--policy-reports".to_string()), "{args:?}");
            assert_eq!(flag(args, "--policy-reports-interval"), Some("10s"));
            assert_eq!(flag(args, "--policy-reports-max-results"), Some("50"));
            let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
            assert_eq!(roles.len(), 1, "{roles:#?}");
            assert_eq!(
                roles[0]["metadata"]["name"],
                "e2e-variants-guardrails-policy-reports"
            );
            assert_eq!(
                roles[0]["rules"],
                json!([{"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"],
                        "verbs": ["get", "create", "update"]}])
            );
            let binding = find(docs, "ClusterRoleBinding", "-policy-reports").expect("binding");
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "guardrails", "namespace": "e2e-variants"}])
            );
        }
        "audit log with requests up to 1 MiB" => {
            assert_eq!(
                flag(args, "--audit-log-max-request-bytes"),
                Some("1048576"),
                "{args:?}"
            );
            assert!(args.contains(&"--audit-log-requests".to_string()));
        }
        "one replica, no shutdown delay, no check job" => {
            assert!(
                !kinds.contains(&"PodDisruptionBudget"),
                "a PDB with one replica blocks drains"
            );
            assert!(!kinds.contains(&"Job"));
            assert_eq!(pod["terminationGracePeriodSeconds"], 15);
            assert_eq!(flag(args, "--shutdown-delay"), Some("0s"), "{args:?}");
        }
        "mutual TLS, limits, audit records never lost, a 10 s webhook timeout" => {
            // The pods ran with these (run_rendered_pods): the CA file mounted where --client-ca
            // reads it, from the ConfigMap the chart rendered.
            for (name, value) in [
                ("--client-ca", "/etc/guardrails/client-ca/ca.crt"),
                ("--request-timeout", "9s"),
                ("--max-body-bytes", "2Mi"),
                ("--memory-budget", "96Mi"),
                ("--decision-workers", "3"),
                ("--max-queue", "10"),
                ("--max-connections", "200"),
                ("--idle-timeout", "30s"),
                ("--first-request-timeout", "5s"),
                ("--audit-log-on-loss", "fail"),
                ("--audit-log-buffer-bytes", "1048576"),
            ] {
                assert_eq!(flag(args, name), Some(value), "{args:?}");
            }
            let c_ca_pem = base64::engine::general_purpose::STANDARD
                .decode(ca_bundle)
                .map(|pem| String::from_utf8_lossy(&pem).into_owned())
                .expect("CA bundle");
            let ca = find(docs, "ConfigMap", "-client-ca").expect("client CA ConfigMap");
            assert_eq!(
                ca["data"]["ca.crt"].as_str().map(str::trim),
                Some(c_ca_pem.trim())
            );
            let container = &pod["containers"][0];
            assert!(
                container["volumeMounts"]
                    .as_array()
                    .is_some_and(|m| m.contains(&json!({"name": "client-ca", "mountPath": "/etc/guardrails/client-ca", "readOnly": true})))
            );
        }
        "subchart with global values, pull secrets, name overrides, a long shutdown delay" => {
            assert_eq!(deployment["metadata"]["name"], "gr");
            assert_eq!(
                find(docs, "ClusterRole", "").expect("role")["metadata"]["name"],
                "e2e-variants-gr"
            );
            assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
            let job = find(docs, "Job", "").expect("job");
            assert_eq!(
                job["spec"]["template"]["spec"]["imagePullSecrets"],
                json!([{"name": "regcred"}])
            );
            assert_eq!(pod["terminationGracePeriodSeconds"], 35);
            assert_eq!(
                find(docs, "Certificate", "gr").expect("cert")["spec"]["dnsNames"][0],
                "gr.e2e-variants.svc"
            );
        }
        "teams and namespaces, no platform groups" => {
            let config = config(docs);
            assert_eq!(
                config["teams"]["platform"],
                json!({"groups": ["platform-admins"]})
            );
            assert_eq!(
                config["clusters"],
                json!({"https://kubernetes.default.svc": "prod"})
            );
            let job = find(docs, "Job", "").expect("job");
            assert!(
                job["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!("--deny-warnings")))
            );
        }
        _ => {}
    }
    // Every object carries the chart label.
    for doc in docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(
            labels["helm.sh/chart"], "guardrails-0.1.0",
            "{variant}: {doc:#}"
        );
    }
}

/// `helm template` must fail with a message containing `expected`.
fn refused(c: &Cluster, what: &str, args: &[String], expected: &str) -> Option<String> {
    match template(c, "guardrails", VARIANTS, args) {
        Ok(_) => Some(format!("{what}: rendered")),
        Err(e) if e.contains(expected) => None,
        Err(e) => Some(format!("{what}: expected {expected:?} in:\n{e}")),
    }
}

#[test]
fn the_chart_refuses_values_that_would_break_the_cluster_with_a_message() {
    let _shared = shared();
    let c = cluster();
    let file = |name: &str, values: Value| vec!["-f".to_string(), values_file(c, name, &values)];
    let mut failures = Vec::new();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no image",
            set(&["image.repository="]),
            "build the image from the repository's Dockerfile",
        ),
        (
            "a policy file name with a space",
            file(
                "space",
                json!({"policies": {"extra": {"my policy.cedar": EXTRA_POLICY}}}),
            ),
            "\"my policy.cedar\" is not a usable file name",
        ),
        (
            "a policy file that would never be loaded",
            file(
                "txt",
                json!({"policies": {"extra": {"no-friday.txt": EXTRA_POLICY}}}),
            ),
            "\"no-friday.txt\" would never be loaded",
        ),
        (
            "a PodDisruptionBudget no drain can satisfy",
            set(&["podDisruptionBudget.minAvailable=2"]),
            "must be below replicaCount",
        ),
        (
            "a config key typo",
            file(
                "typo",
                json!({"config": {"teams": {"payments": {"group": ["payments-devs"]}}}}),
            ),
            "additional properties 'group' not allowed",
        ),
        (
            "a namespace's environment that is not a string",
            file(
                "env",
                json!({"config": {"namespaces": {"payments-prod": {"environment": 1}}}}),
            ),
            "at '/config/namespaces/payments-prod/environment': got number, want string",
        ),
        (
            "an excluded namespace that is not a namespace name",
            set(&["webhook.excludeNamespaces={Payments_Prod}"]),
            "at '/webhook/excludeNamespaces/0': 'Payments_Prod' does not match pattern",
        ),
        (
            "an excluded namespace `on` unquoted in YAML (a boolean to Helm)",
            vec![
                "-f".into(),
                raw_values_file(c, "on", "webhook:\n  excludeNamespaces: [on]\n"),
            ],
            "at '/webhook/excludeNamespaces/0': got boolean, want string",
        ),
        (
            "a client CA given twice",
            set(&["tls.clientCA.pem=x", "tls.clientCA.configMap=ca"]),
            "tls.clientCA: set either pem or configMap, not both",
        ),
        (
            "a client CA that is not PEM",
            set(&["tls.clientCA.pem=not a certificate"]),
            "tls.clientCA.pem: expected PEM certificates",
        ),
        (
            "a limit with a unit serve does not read",
            set(&["limits.memoryBudget=128MB"]),
            "at '/limits/memoryBudget': '128MB' does not match pattern",
        ),
        (
            "cert-manager enabled on a cluster without it",
            vec!["--api-versions".into(), "apiregistration.k8s.io/v1".into()],
            "cert-manager.io/v1 is not served by this cluster: install cert-manager, or set tls.certManager.enabled=false",
        ),
        (
            "a ServiceMonitor on a cluster without the Prometheus Operator",
            vec![
                "--api-versions".into(),
                "apiregistration.k8s.io/v1".into(),
                "--api-versions".into(),
                "cert-manager.io/v1".into(),
                "--set".into(),
                "serviceMonitor.enabled=true".into(),
            ],
            "monitoring.coreos.com/v1 is not served by this cluster",
        ),
        (
            "policy reports on a cluster without the PolicyReport CRD",
            vec![
                "--api-versions".into(),
                "apiregistration.k8s.io/v1".into(),
                "--api-versions".into(),
                "cert-manager.io/v1".into(),
                "--set".into(),
                "policyReports.enabled=true".into(),
            ],
            "wgpolicyk8s.io/v1alpha2 is not served by this cluster: install the PolicyReport CRD",
        ),
        (
            "a policy report interval of 0",
            set(&["policyReports.interval=0s"]),
            "at '/policyReports/interval': '0s' does not match pattern",
        ),
    ];
    for (what, args, expected) in &cases {
        failures.extend(refused(c, what, args, expected));
    }
    // With the APIs served, the same values render; `helm template --validate` takes them from the
    // e2e cluster, which serves both.
    for args in [
        vec![
            "--api-versions",
            "apiregistration.k8s.io/v1",
            "--api-versions",
            "cert-manager.io/v1",
            "--api-versions",
            "monitoring.coreos.com/v1",
            "--set",
            "serviceMonitor.enabled=true",
        ],
        vec![
            "--validate",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "policyReports.enabled=true",
        ],
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        if let Err(e) = template(c, "guardrails", VARIANTS, &args) {
            failures.push(format!("{args:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Policies and configs that `serve` refuses at start-up (the pods would crash-loop): the check Job
/// the chart runs before an upgrade refuses them too, so the upgrade fails before anything changes
/// (readme.rs shows Helm stopping on a failed check Job).
#[test]
fn the_check_job_refuses_what_serve_would_refuse() {
    let _shared = shared();
    let c = cluster();
    let cases = [
        (
            "a policy naming an undeclared action",
            json!({"policies": {"extra": {"no-friday.cedar": EXTRA_POLICY.replace("\"sync\"", "\"synk\"")}}}),
            "synk",
        ),
        (
            "a namespace owned by an undefined team",
            json!({"config": {"namespaces": {"storefront-prod": {"team": "storefront"}}}}),
            "which is not defined under teams",
        ),
        (
            "a delegator listed as a team member",
            json!({"config": {"teams": {"platform": {"users": ["system:serviceaccount:argocd:argocd-server"]}}}}),
            "lists the delegator",
        ),
    ];
    for (what, values, diagnostic) in cases {
        let file = values_file(c, &what.replace(' ', "-"), &values);
        let docs = template(c, "guardrails", VARIANTS, &["-f".to_string(), file])
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let root = scratch(c, &format!("refused/{}", what.replace(' ', "-")));
        let configmap = |name: &str| {
            docs.iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
                .cloned()
        };
        let no_secret = |_: &str| None;
        let job = find(&docs, "Job", "-check").expect("check job");
        let args = materialize(
            &job["spec"]["template"]["spec"],
            &root,
            &configmap,
            &no_secret,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = Command::new(env!("CARGO_BIN_EXE_guardrails"))
            .args(&args)
            .output()
            .expect("guardrails check");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && printed.contains(diagnostic),
            "{what}: {printed}"
        );
        // And serve, with the Deployment's args and the same files, would not start.
        let deployment = find(&docs, "Deployment", "").expect("deployment");
        let pair = guardrails::server::tls::generate(&["127.0.0.1".into()], "x").expect("pair");
        let secret = |_: &str| {
            Some(BTreeMap::from([
                ("tls.crt".to_string(), pair.cert_pem.clone()),
                ("tls.key".to_string(), pair.key_pem.clone()),
            ]))
        };
        let args = materialize(
            &deployment["spec"]["template"]["spec"],
            &root.join("serve"),
            &configmap,
            &secret,
        )
        .expect("lay out the Deployment's files");
        let err = serve_until_ready(c, &args, &root.join("serve.log"))
            .expect_err("serve starts on what the check refused");
        assert!(err.contains(diagnostic), "{what}: {err}");
    }
}

#[test]
fn main_fixture_webhooks_come_from_the_chart() {
    let _shared = shared();
    let c = cluster();
    let live = c
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            CLUSTER_NAME,
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
        "applicationsets",
        "appprojects",
        "rollouts/status",
        "rollouts/scale",
        "deployments/scale",
    ] {
        assert!(resources.contains(resource), "{resource}: {resources}");
    }
}
