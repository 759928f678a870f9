//! The fidelity corpus (`tests/fixtures/argo-writes/`) through the real API server: for each recorded
//! write, the object as it was is created (as the admin), then kubectl, impersonating the writer's
//! identity, makes the writer's change (`replace` of the new object, on the subresource it used;
//! `scale` for Scale bodies; `delete` with its propagation policy; `create`). The API server then
//! calls both webhooks exactly as it does for the writer, and the decision, the message and the
//! audit line must be those `cases.yaml` expects.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Identity, cluster, shared};
use crate::common::corpus::{Case, cases, dir as corpus};

/// The identities the chart's example config lists under `automation` (its status-only writes skip
/// the webhooks through the chart's matchConditions).
const CONFIGURED_AUTOMATION: &[&str] = &[
    "system:serviceaccount:argocd:argocd-application-controller",
    "system:serviceaccount:argocd:argocd-applicationset-controller",
    "system:serviceaccount:argocd:argocd-notifications-controller",
    "system:serviceaccount:kube-system:argocd-manager",
    "system:serviceaccount:argo-rollouts:argo-rollouts",
];

/// Server-set metadata that a create or replace must not carry.
fn cleaned(object: &Value, name: &str) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        metadata.insert("name".into(), json!(name));
    }
    object
}

fn leaked_identity(user: &'static str, groups: &'static [&'static str]) -> Identity {
    Identity { user, groups }
}

/// The writer as kubectl impersonates it: the API server adds `system:authenticated` and the
/// service-account groups itself.
fn writer(request: &Value) -> Identity {
    let user = request["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let groups: Vec<&'static str> = request["userInfo"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|g| !g.starts_with("system:"))
        .map(|g| &*Box::leak(g.to_string().into_boxed_str()))
        .collect();
    leaked_identity(
        Box::leak(user.into_boxed_str()),
        Box::leak(groups.into_boxed_slice()),
    )
}

fn plural(request: &Value) -> String {
    let resource = &request["resource"];
    let group = resource["group"].as_str().unwrap_or_default();
    let name = resource["resource"].as_str().unwrap_or_default();
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// Is this write one the chart's webhooks see at all (rules, then matchConditions)?
fn routed(request: &Value) -> bool {
    let resource = request["resource"]["resource"].as_str().unwrap_or_default();
    let sub = request["subResource"].as_str().unwrap_or_default();
    let covered = matches!(
        (resource, sub),
        ("applications", "")
            | ("applicationsets", "")
            | ("appprojects", "")
            | ("rollouts", "")
            | ("rollouts", "status")
            | ("rollouts", "scale")
            | ("deployments", "")
            | ("deployments", "scale")
    );
    if !covered {
        return false;
    }
    let user = request["userInfo"]["username"].as_str().unwrap_or_default();
    if request["operation"] != "UPDATE" || !CONFIGURED_AUTOMATION.contains(&user) {
        return true;
    }
    if sub == "status" {
        return false;
    }
    let (old, new) = (&request["oldObject"], &request["object"]);
    let status_only = resource == "applications"
        && sub.is_empty()
        && old["spec"] == new["spec"]
        && old["operation"] == new["operation"]
        && old["metadata"]["labels"] == new["metadata"]["labels"]
        && old["metadata"]["annotations"] == new["metadata"]["annotations"]
        && old["metadata"]["finalizers"] == new["metadata"]["finalizers"]
        && new["metadata"]["deletionTimestamp"].is_null();
    !status_only
}

/// Create the object as it was before the write (status included; deleting if it was), as the
/// admin (a platform engineer in the example config).
fn set_up(request: &Value, plural: &str, namespace: &str, name: &str) -> Result<(), String> {
    let c = cluster();
    let old = &request["oldObject"];
    if old.is_null() {
        return Ok(());
    }
    let object = if old["kind"] == "Scale" {
        // A Scale is a view of its Deployment: create the Deployment it shows.
        let mut parent =
            crate::common::fixtures::fixture("argo-writes/kubernetes/base-deployment.yaml");
        parent["spec"]["replicas"] = old["spec"]["replicas"].clone();
        cleaned(&parent, name)
    } else {
        cleaned(old, name)
    };
    let created = c.kubectl_stdin(&["create", "-f", "-"], &object.to_string());
    if !created.success {
        return Err(format!("setting up the old object: {created}"));
    }
    // Applications and AppProjects keep their status in the main resource.
    let has_status_subresource = !matches!(
        plural,
        "applications.argoproj.io" | "appprojects.argoproj.io"
    );
    if has_status_subresource && old["kind"] != "Scale" && !old["status"].is_null() {
        let current = c
            .kubectl(&["get", plural, name, "-n", namespace, "-o", "json"])
            .ok()
            .json();
        let mut with_status = current;
        with_status["status"] = old["status"].clone();
        let replaced = c.kubectl_stdin(
            &["replace", "--subresource", "status", "-f", "-"],
            &with_status.to_string(),
        );
        if !replaced.success {
            return Err(format!("setting up the old status: {replaced}"));
        }
    }
    if !old["metadata"]["deletionTimestamp"].is_null() {
        // The API server keeps the garbage collector's finalizer only for the propagation that
        // asks for it (a background delete drops it, and the object would be gone at once).
        let finalizers = old["metadata"]["finalizers"].to_string();
        let cascade = if finalizers.contains("\"foregroundDeletion\"") {
            "--cascade=foreground"
        } else if finalizers.contains("\"orphan\"") {
            "--cascade=orphan"
        } else {
            "--cascade=background"
        };
        c.kubectl(&[
            "delete",
            plural,
            name,
            "-n",
            namespace,
            cascade,
            "--wait=false",
        ])
        .ok();
    }
    Ok(())
}

/// Make the writer's change as the writer.
fn act(request: &Value, plural: &str, namespace: &str, name: &str) -> crate::cluster::Output {
    let c = cluster();
    let identity = writer(request);
    let sub = request["subResource"].as_str().unwrap_or_default();
    match request["operation"].as_str().unwrap_or_default() {
        "CREATE" => c.kubectl_stdin_as(
            identity,
            &["create", "-f", "-"],
            &cleaned(&request["object"], name).to_string(),
        ),
        "DELETE" => {
            let cascade = match request["options"]["propagationPolicy"].as_str() {
                Some("Foreground") => "--cascade=foreground",
                Some("Orphan") => "--cascade=orphan",
                _ => "--cascade=background",
            };
            c.kubectl_as(
                identity,
                &[
                    "delete",
                    plural,
                    name,
                    "-n",
                    namespace,
                    cascade,
                    "--wait=false",
                ],
            )
        }
        _ if sub == "scale" => {
            let replicas = request["object"]["spec"]["replicas"]
                .as_i64()
                .unwrap_or_default()
                .to_string();
            c.kubectl_as(
                identity,
                &[
                    "scale",
                    plural,
                    name,
                    "-n",
                    namespace,
                    &format!("--replicas={replicas}"),
                ],
            )
        }
        _ => {
            // The writer's change, applied to the object as the API server stored it (the set-up
            // went through the mutating webhook too, which may have rewritten parts of it).
            let current = c
                .kubectl(&["get", plural, name, "-n", namespace, "-o", "json"])
                .ok()
                .json();
            let change = json_patch::diff(
                &cleaned(&request["oldObject"], name),
                &cleaned(&request["object"], name),
            );
            let mut new = current;
            if let Err(error) = json_patch::patch(&mut new, &change) {
                panic!("the recorded change does not apply to the stored object: {error}");
            }
            let mut args = vec!["replace", "-f", "-"];
            if sub == "status" {
                args.extend(["--subresource", "status"]);
            }
            c.kubectl_stdin_as(identity, &args, &new.to_string())
        }
    }
}

/// Every writer may write what it writes: RBAC is not what this test is about.
fn grant_writers(cases: &[Case]) {
    let mut users: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let review: Value =
                serde_json::from_slice(&std::fs::read(corpus().join(&case.review)).ok()?).ok()?;
            review["request"]["userInfo"]["username"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    users.sort();
    users.dedup();
    let subjects: Vec<Value> = users
        .iter()
        .map(|user| json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}))
        .collect();
    let c = cluster();
    c.apply_json(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e-fidelity-writers"},
        "rules": [
            {"apiGroups": ["argoproj.io"],
             "resources": ["applications", "applicationsets", "applicationsets/status",
                           "appprojects", "rollouts", "rollouts/status", "rollouts/scale"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apps"],
             "resources": ["deployments", "deployments/scale", "deployments/status"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
        ],
    }));
    c.apply_json(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-fidelity-writers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "e2e-fidelity-writers"},
        "subjects": subjects,
    }));
}

/// Replay one case; the problems found (none when it matched).
fn replay(index: usize, case: &Case) -> Vec<String> {
    let c = cluster();
    let review: Value =
        serde_json::from_slice(&std::fs::read(corpus().join(&case.review)).expect("review file"))
            .expect("review JSON");
    let request = &review["request"];
    let plural = plural(request);
    let namespace = request["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let source = if request["oldObject"].is_null() {
        &request["object"]
    } else {
        &request["oldObject"]
    };
    let original = source["metadata"]["name"].as_str().unwrap_or("object");
    // argocd-server's own `default` project is let through by name: keep it.
    let name: String = if plural == "appprojects.argoproj.io" && original == "default" {
        original.to_string()
    } else {
        format!("fw{index}-{original}").chars().take(60).collect()
    };
    if let Err(error) = set_up(request, &plural, &namespace, &name) {
        return vec![error];
    }
    let output = act(request, &plural, &namespace, &name);

    let mut problems = Vec::new();
    // A write the chart does not route (a Deployment's status) never reaches Guardrails: the API
    // server lets it through, whatever the offline decision in `cases.yaml`.
    let allowed = case.expect.allowed || !routed(request);
    if output.success != allowed {
        problems.push(format!(
            "expected {}, kubectl {}",
            if allowed { "allowed" } else { "denied" },
            output
        ));
    }
    if !output.success {
        if !output.stderr.contains("denied the request") {
            problems.push(format!("not a webhook denial: {output}"));
        }
        for policy in &case.expect.policies {
            // Every shipped forbid enforces: each is named in the message kubectl prints.
            if !output.stderr.contains(&format!("[{policy}]")) {
                problems.push(format!("message does not name [{policy}]: {output}"));
            }
        }
    }
    if routed(request) {
        let user = request["userInfo"]["username"].as_str().unwrap_or_default();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let record = loop {
            let found = c
                .guardrails
                .audit_for(&namespace, &name)
                .into_iter()
                .rev()
                .find(|r| r["user"] == user);
            if found.is_some() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match record {
            None => problems.push("no audit line".into()),
            Some(record) => {
                let mut got: Vec<String> = record["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                got.sort();
                let mut want = case.expect.actions.clone();
                want.sort();
                if got != want {
                    problems.push(format!("audited actions {got:?}, expected {want:?}"));
                }
                if case.expect.no_warnings
                    && record["warnings"].as_array().is_some_and(|w| !w.is_empty())
                {
                    problems.push(format!(
                        "expected no warnings, audited {}",
                        record["warnings"]
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_recorded_write_is_decided_the_same_through_the_api_server() {
    let _shared = shared();
    let cases = cases();
    grant_writers(&cases);
    // A few at a time: each case is a handful of kubectl calls, mostly waiting on the API server.
    const LANES: usize = 3;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let cases = &cases;
                scope.spawn(move || {
                    cases
                        .iter()
                        .enumerate()
                        .filter(|(index, _)| index % LANES == lane)
                        .filter_map(|(index, case)| {
                            let problems = replay(index, case);
                            (!problems.is_empty())
                                .then(|| format!("{}:\n  {}", case.name, problems.join("\n  ")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        lanes
            .into_iter()
            .flat_map(|lane| lane.join().expect("a replay lane panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} recorded writes differ through the API server:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
