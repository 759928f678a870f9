//! What can be checked of the Helm chart without helm: values and schema agree with every
//! template reference, every value is documented in the README, the webhook paths and ports are
//! what the server serves, the container arguments parse (as written in the template; the
//! e2e suite parses them as Helm renders them), the shipped policy copy is current, and the
//! non-template YAML parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use clap::Parser;
use guardrails::cli::Cli;
use serde_json::Value;
use tower::ServiceExt;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/guardrails")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values() -> Value {
    serde_yaml_ng::from_str(&read(&chart().join("values.yaml"))).unwrap()
}

fn schema() -> Value {
    serde_json::from_str(&read(&chart().join("values.schema.json"))).unwrap()
}

fn templates() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                read(&p),
            )
        })
        .collect();
    all.sort();
    all
}

/// Every `.Values.a.b` path used in the templates.
fn value_references() -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for (_, text) in templates() {
        for (start, _) in text.match_indices(".Values.") {
            let path: String = text[start + ".Values.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let segments: Vec<String> = path
                .trim_end_matches('.')
                .split('.')
                .map(str::to_string)
                .collect();
            found.insert(segments);
        }
    }
    found
}

fn schema_node<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for segment in path {
        node = node.get("properties")?.get(segment)?;
    }
    Some(node)
}

fn type_matches(expected: &Value, value: &Value) -> bool {
    let one = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => false,
    };
    match expected {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().any(|t| t.as_str().is_some_and(one)),
        _ => true,
    }
}

/// A small draft-07 subset: type, enum, properties, additionalProperties (false or a schema).
fn validate(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(expected) = schema.get("type")
        && !type_matches(expected, value)
    {
        errors.push(format!("{at}: expected {expected}, got {value}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let path = format!("{at}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => validate(sub, item, &path, errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{path}: not in the schema"))
                }
                (None, Some(sub)) if sub.is_object() => validate(sub, item, &path, errors),
                _ => {}
            }
        }
    }
}

#[test]
fn values_conform_to_the_schema_and_the_schema_is_strict() {
    let mut errors = Vec::new();
    validate(&schema(), &values(), "values", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // The validator itself catches a typo and a wrong type.
    let mut broken = values();
    broken["webhook"]["failurPolicy"] = Value::from("Fail");
    broken["replicaCount"] = Value::from("two");
    let mut errors = Vec::new();
    validate(&schema(), &broken, "values", &mut errors);
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn every_template_value_exists_in_values_and_schema() {
    let values = values();
    let schema = schema();
    let references = value_references();
    assert!(references.len() > 20, "{references:?}");
    for path in references {
        let mut node = &values;
        for segment in &path {
            node = node
                .get(segment)
                .unwrap_or_else(|| panic!(".Values.{} is not in values.yaml", path.join(".")));
        }
        assert!(
            schema_node(&schema, &path).is_some(),
            ".Values.{} is not in values.schema.json",
            path.join(".")
        );
    }
}

/// The container args as the default values render them: `{{- if/with/end }}` lines are followed
/// (conditions on a value's truthiness, and the client-CA helper), `{{ expr }}` replaced by the
/// value it names (relative to the enclosing `with`). The e2e suite renders them with helm.
fn deployment_args() -> Vec<String> {
    let (_, deployment) = templates()
        .into_iter()
        .find(|(name, _)| name == "deployment.yaml")
        .unwrap();
    let section = deployment
        .split("args:")
        .nth(1)
        .unwrap()
        .split("env:")
        .next()
        .unwrap();
    let values = values();
    let lookup = |path: &str, scope: &Value| -> Value {
        let (mut node, rest) = match path.strip_prefix(".Values.") {
            Some(rest) => (&values, rest),
            None => (scope, path.trim_start_matches('.')),
        };
        for key in rest.split('.') {
            node = &node[key];
        }
        node.clone()
    };
    let truthy = |v: &Value| !matches!(v, Value::Null | Value::Bool(false)) && *v != "" && *v != 0;
    let eval = |expr: &str, scope: &Value| -> Value {
        let expr = expr.split('|').next().unwrap().trim();
        match expr {
            r#"include "guardrails.clientCA" ."# => {
                let ca = &values["tls"]["clientCA"];
                Value::Bool(truthy(&ca["pem"]) || truthy(&ca["configMap"]))
            }
            r#"include "guardrails.requestTimeout" $"# => {
                let seconds = values["webhook"]["timeoutSeconds"].as_i64().unwrap();
                Value::String(format!("{}s", seconds - 1))
            }
            path => lookup(path, scope),
        }
    };
    // (condition holds, the value `.` stands for) for each open block.
    let mut blocks: Vec<(bool, Value)> = Vec::new();
    let mut args = Vec::new();
    for line in section.lines().map(str::trim) {
        let scope = blocks.last().map_or(Value::Null, |(_, s)| s.clone());
        let live = blocks.iter().all(|(on, _)| *on);
        if let Some(control) = line
            .strip_prefix("{{- ")
            .and_then(|l| l.strip_suffix(" }}"))
        {
            if control == "end" {
                blocks.pop();
            } else if let Some(expr) = control.strip_prefix("if ") {
                blocks.push((truthy(&eval(expr, &scope)), scope));
            } else if let Some(expr) = control.strip_prefix("with ") {
                let value = eval(expr, &scope);
                blocks.push((truthy(&value), value));
            } else {
                panic!("unexpected template control in args: {line}");
            }
            continue;
        }
        let Some(arg) = line.strip_prefix("- ") else {
            continue;
        };
        if !live {
            continue;
        }
        let mut rendered = String::new();
        let mut rest = arg;
        while let Some(start) = rest.find("{{ ") {
            let end = rest[start..].find(" }}").unwrap() + start;
            rendered.push_str(&rest[..start]);
            match eval(&rest[start + 3..end], &scope) {
                Value::String(text) => rendered.push_str(&text),
                other => rendered.push_str(&other.to_string()),
            }
            rest = &rest[end + 3..];
        }
        rendered.push_str(rest);
        args.push(rendered);
    }
    args
}

#[test]
fn container_arguments_are_accepted_by_the_binary() {
    let args = deployment_args();
    assert_eq!(args[0], "serve");
    let mut argv = vec!["guardrails".to_string()];
    argv.extend(args.iter().cloned());
    assert!(args.contains(&"--watch-namespaces".to_string()));
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(args.contains(&"--listen=0.0.0.0:8443".to_string()));
    assert!(args.contains(&"--probe-listen=0.0.0.0:8080".to_string()));
    // The chart's defaults are the binary's own, but for the deadline, which stays below the
    // webhook's timeout.
    for arg in [
        "--max-body-bytes=4Mi",
        "--memory-budget=128Mi",
        "--decision-workers=0",
        "--max-queue=64",
        "--max-connections=1024",
        "--request-timeout=4s",
        "--idle-timeout=60s",
        "--first-request-timeout=10s",
        "--handshake-timeout=2s",
        "--listen-backlog=4096",
        "--decision-cache-entries=4096",
        "--audit-log-on-loss=drop",
        "--audit-log-buffer-bytes=8388608",
        "--shutdown-delay=5s",
        "--shutdown-grace=10s",
    ] {
        assert!(args.contains(&arg.to_string()), "{arg} not in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--client-ca")));
    assert!(!args.iter().any(|a| a.starts_with("--audit-log-requests")));
}

#[tokio::test]
async fn webhook_paths_and_ports_match_what_the_server_serves() {
    let all: String = templates().into_iter().map(|(_, text)| text).collect();
    assert!(all.contains("containerPort: 8443") && all.contains("containerPort: 8080"));
    let webhooks = read(&chart().join("templates/webhooks.yaml"));
    let state = guardrails::server::AppState::with_audit(
        guardrails::decide::Engine::new(
            guardrails::policy::PolicyStore::embedded().unwrap(),
            guardrails::config::Config::embedded().unwrap(),
            None,
        ),
        guardrails::audit::AuditLog::disabled(),
    );
    for path in ["/validate", "/mutate"] {
        assert!(
            webhooks.contains(&format!("\"path\" \"{path}\"")),
            "{path} not used by a webhook"
        );
        let response = guardrails::server::router(state.clone())
            .oneshot(Request::post(path).body(Body::from("{}")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            400,
            "{path} must be served (400 for a bad body, not 404)"
        );
    }
    let deployment = read(&chart().join("templates/deployment.yaml"));
    for path in ["/readyz", "/healthz"] {
        assert!(deployment.contains(&format!("path: {path}")));
        let response = guardrails::server::probe_router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} on the probe listener");
    }
    let monitor = read(&chart().join("templates/servicemonitor.yaml"));
    assert!(monitor.contains("path: /metrics"));
}

#[test]
fn webhook_rules_cover_what_guardrails_decides() {
    let webhooks = read(&chart().join("templates/webhooks.yaml"));
    for resource in [
        "\"applications\"",
        "\"applicationsets\"",
        "\"appprojects\"",
        "\"rollouts\"",
        "\"rollouts/status\"",
        "\"deployments\"",
        "\"deployments/scale\"",
        "\"namespaces\"",
    ] {
        assert!(
            webhooks.contains(resource),
            "{resource} missing from the rules"
        );
    }
    assert_eq!(webhooks.matches("sideEffects: None").count(), 3);
    assert_eq!(
        webhooks
            .matches("admissionReviewVersions: [\"v1\"]")
            .count(),
        3
    );
    assert!(webhooks.contains("reinvocationPolicy: IfNeeded"));
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    assert!(helpers.contains(
        "concat (list \"kube-system\" .Release.Namespace) .Values.webhook.excludeNamespaces"
    ));
    assert_eq!(values()["webhook"]["failurePolicy"], "Fail");
}

#[test]
fn hardened_pod_defaults() {
    let deployment = read(&chart().join("templates/deployment.yaml"))
        + &read(&chart().join("templates/_helpers.tpl"));
    for helper in [
        "include \"guardrails.podSecurityContext\"",
        "include \"guardrails.containerSecurityContext\"",
    ] {
        for template in ["deployment.yaml", "check-job.yaml"] {
            assert!(
                read(&chart().join("templates").join(template)).contains(helper),
                "{template}: {helper}"
            );
        }
    }
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "podAntiAffinity",
        "readinessProbe",
        "livenessProbe",
    ] {
        assert!(deployment.contains(needle), "{needle} missing");
    }
    assert_eq!(values()["replicaCount"], 2);
    assert!(values()["resources"]["limits"].is_object());
    let rbac = read(&chart().join("templates/rbac.yaml"));
    assert!(
        rbac.contains("resources: [\"namespaces\"]")
            && rbac.contains("verbs: [\"list\", \"watch\"]")
    );
    assert_eq!(
        rbac.matches("verbs:").count(),
        1,
        "read-only namespaces, nothing more"
    );
}

#[test]
fn chart_policy_copy_matches_the_shipped_policies() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let copy = chart().join("files/policies");
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect()
    };
    assert_eq!(
        names(&shipped),
        names(&copy),
        "run: cp policies/*.cedar policies/*.cedarschema charts/guardrails/files/policies/"
    );
    for name in names(&shipped) {
        assert_eq!(
            read(&shipped.join(&name)),
            read(&copy.join(&name)),
            "{name} differs: copy it into the chart"
        );
    }
}

#[test]
fn non_template_yaml_parses() {
    let chart_yaml: Value = serde_yaml_ng::from_str(&read(&chart().join("Chart.yaml"))).unwrap();
    assert_eq!(chart_yaml["name"], "guardrails");
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
    // The embedded config keys are the chart's config keys.
    let config_keys: BTreeSet<String> = values()["config"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut file: Value = serde_yaml_ng::from_str(guardrails::config::EMBEDDED_CONFIG).unwrap();
    file.as_object_mut().unwrap().remove("mode");
    let embedded_keys: BTreeSet<String> = file.as_object().unwrap().keys().cloned().collect();
    assert_eq!(config_keys, embedded_keys);
    // And values' config is a valid Guardrails config.
    let mut config = values()["config"].clone();
    config["mode"] = values()["mode"].clone();
    guardrails::config::Config::from_yaml(
        &serde_yaml_ng::to_string(&config).unwrap(),
        "values.yaml",
    )
    .unwrap();
}

/// Every value path of values.yaml, down to `depth` levels (`config` is documented in the
/// README's Configuration section, key by key).
fn value_paths(value: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (key, item) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let leaf = !item.is_object() || item.as_object().is_some_and(|o| o.is_empty());
        if leaf || depth == 1 || path == "config" || path.ends_with("resources") {
            out.push(path);
        } else {
            value_paths(item, &path, depth - 1, out);
        }
    }
}

#[test]
fn every_value_is_documented_in_the_readme() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let table = readme
        .split("### Chart values")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("README has a Chart values section");
    let mut paths = Vec::new();
    value_paths(&values(), "", 3, &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    let mut missing = Vec::new();
    for path in &paths {
        // `a.b` may be documented as `a.b`, or with its siblings as `a.b`, `c` in one row.
        let last = path.rsplit('.').next().unwrap_or(path);
        let parent = path.rsplit_once('.').map(|(p, _)| p);
        let documented = table.contains(&format!("`{path}`"))
            || parent.is_some_and(|p| {
                table
                    .lines()
                    .any(|l| l.contains(&format!("`{p}.")) && l.contains(&format!("`{last}`")))
            });
        if !documented {
            missing.push(path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "values not in README's Chart values: {missing:?}"
    );
    // And every key of the schema's root is a value.
    let schema = schema();
    for key in schema["properties"].as_object().unwrap().keys() {
        assert!(
            key == "global" || values().get(key).is_some(),
            "{key} is in the schema, not in values.yaml"
        );
        assert!(table.contains(&format!("`{key}")), "{key} undocumented");
    }
}
