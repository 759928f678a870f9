//! A real Argo Rollouts (v1.10.2, built from its Go module by `components/build-rollouts.sh`) on the
//! e2e cluster, behind the same Guardrails and the chart's webhook configurations as every other
//! e2e test: the controller steps canary Rollouts, and people promote, abort, retry and undo them
//! with the real `kubectl argo rollouts` plugin (run by kubectl as its plugin).
//!
//! Started once per test binary on first use ([`rollouts()`]): Argo Rollouts' own CRDs and the
//! controller's ClusterRole from the same module, its service account `argo-rollouts` in
//! `argo-rollouts` (the identity `config/guardrails.yaml` names as Rollouts automation), and
//! `rollouts-controller` out of cluster with a kubeconfig holding a token of that service account.
//! The controller runs with `--instance-id` [`INSTANCE_ID`]: it reconciles only the Rollouts of
//! these tests (labelled with it), not those other e2e tests write while impersonating it.
//!
//! There is no kubelet and no ReplicaSet controller: no Pod ever runs. A canary `setWeight` step
//! is complete only when the canary ReplicaSet's pods are available and the stable one's are
//! created (`completedCurrentCanaryStep` in argo-rollouts' rollout/canary.go calls
//! `AtDesiredReplicaCountsForCanary` in utils/replicaset/canary.go, which reads
//! `status.availableReplicas` and `status.replicas`). So while a flow runs, [`ReplicaSetStandIn`]
//! does the ReplicaSet controller's and kubelet's part: it writes each of these Rollouts'
//! ReplicaSets' status as if `spec.replicas` pods were running and available. The controller then
//! steps as it would on a real cluster (the ReplicaSets are not routed to Guardrails).
//!
//! The controller's Rollout status writes (`UpdateStatus` and `Patch(…, "status")` in rollout/sync.go)
//! do not reach Guardrails: the chart's `not-an-automation-status-write` matchCondition
//! (`webhook.skipAutomationStatusWrites`, on by default) skips automation's status writes. Its other
//! Rollout writes do: `setRolloutRevision` (rollout/sync.go) updates the whole Rollout with its
//! `rollout.argoproj.io/revision` annotation (the first time with the typed round trip's
//! `resources: {}` on each container), `bookkeeping` by automation.
//!
//! Flows (each asserts what the controller did, from the Rollout's status, and what Guardrails
//! decided, from its audit log): a payments developer's canary in dev, stepped, promoted, aborted,
//! retried and undone; a canary in prod promoted by the developer (allowed: no shipped policy
//! reserves promotes, see [`prod_canary_promoted_and_aborted_by_people`]), not by another team's
//! developer (denied, with Guardrails' message in the plugin's output), aborted, and fully promoted
//! by a platform engineer. With `GUARDRAILS_RECORD_ARGOCD=1` each flow's AdmissionReviews are
//! recorded into `tests/fixtures/rollouts-recorded/` ([`record`]).

mod record;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{
    BOB, Cluster, DANA, Identity, Output, PLATFORM, ROLLOUTS_CONTROLLER, cluster, get, has_action,
    http_get, kubeconfig, run, shared, start_listening, wait_every, yaml_docs,
};
use crate::common::process::on_free_ports;
use crate::components::{Components, rollouts_components};

/// The controller's `--instance-id`: it reconciles only Rollouts labelled with it.
pub const INSTANCE_ID: &str = "guardrails-e2e";
const INSTANCE_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";
/// The label the tests' pod templates carry (so their ReplicaSets do): the stand-in's selector.
const STAND_IN_LABEL: &str = "guardrails.e2e/rollout";
/// The controller's namespace and service account (`config/guardrails.yaml`'s automation entry).
const CONTROLLER_NAMESPACE: &str = "argo-rollouts";
const CONTROLLER_ACCOUNT: &str = "argo-rollouts";

pub struct Rollouts {
    components: &'static Components,
    /// `<run dir>/rollouts`: kubeconfig, plugin home.
    dir: PathBuf,
    /// Kept so that the child is not reaped early; the cluster's watchdog kills it.
    _controller: Mutex<Child>,
}

/// The Argo Rollouts controller of this test binary, started on first use on the shared cluster.
#[track_caller]
pub fn rollouts() -> &'static Rollouts {
    static ROLLOUTS: OnceLock<Result<Rollouts, String>> = OnceLock::new();
    match ROLLOUTS.get_or_init(|| Rollouts::start(cluster())) {
        Ok(rollouts) => rollouts,
        Err(error) => panic!("Argo Rollouts did not start: {error}"),
    }
}

impl Rollouts {
    fn start(c: &'static Cluster) -> Result<Rollouts, String> {
        let started = std::time::Instant::now();
        let components = rollouts_components()?;
        let dir = c.run_dir.join("rollouts");
        fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;

        // Argo Rollouts' CRDs of this version (the cluster starts with an older Rollout CRD from
        // tests/fixtures/e2e/crds; the controller writes fields only this one keeps). Server-side:
        // they are too big for client-side apply's annotation.
        let mut names = Vec::new();
        let mut crds: Vec<PathBuf> = fs::read_dir(components.path("crds"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        crds.sort();
        for crd in &crds {
            let text = fs::read_to_string(crd).map_err(|e| e.to_string())?;
            c.server_side_apply(&text).into_result()?;
            for doc in yaml_docs(&text)? {
                if let Some(name) = doc["metadata"]["name"].as_str() {
                    names.push(format!("crd/{name}"));
                }
            }
        }
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend(names.iter().map(String::as_str));
        c.kubectl(&args).into_result()?;

        // Its namespace, service account, and the ClusterRole Argo Rollouts ships, bound to it.
        let role_text = fs::read_to_string(components.path("argo-rollouts-clusterrole.yaml"))
            .map_err(|e| e.to_string())?;
        let mut items = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NAMESPACE}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": CONTROLLER_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}}),
        ];
        let mut role_name = None;
        for doc in yaml_docs(&role_text)? {
            role_name = doc["metadata"]["name"].as_str().map(str::to_string);
            items.push(doc);
        }
        let role_name = role_name.ok_or("the module's ClusterRole has no name")?;
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-argo-rollouts"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}],
        }));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        c.server_side_apply(&list.to_string()).into_result()?;
        assert_eq!(
            ROLLOUTS_CONTROLLER.user,
            format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}")
        );

        let token = c
            .kubectl(&[
                "create",
                "token",
                CONTROLLER_ACCOUNT,
                "-n",
                CONTROLLER_NAMESPACE,
                "--duration=24h",
            ])
            .into_result()?;
        let ca_pem = fs::read_to_string(c.run_dir.join("pki/ca.crt")).map_err(|e| e.to_string())?;
        let mut config = kubeconfig(&c.server, &ca_pem, json!({"token": token.stdout.trim()}));
        config["contexts"][0]["context"]["namespace"] = json!(CONTROLLER_NAMESPACE);
        let controller_kc = dir.join("argo-rollouts.kubeconfig");
        fs::write(&controller_kc, config.to_string()).map_err(|e| e.to_string())?;

        // Its healthz and metrics listeners are on every address (Go listens on `::` for them, so
        // not in /proc/net/tcp): ready once healthz answers.
        let controller = on_free_ports(2, |ports| {
            let healthz = format!("127.0.0.1:{}", ports[1]);
            let (child, _) = start_listening(
                &c.run_dir,
                "rollouts-controller",
                Command::new(components.path("rollouts-controller"))
                    .env("POD_NAMESPACE", CONTROLLER_NAMESPACE)
                    .env("HOME", dir.join("home"))
                    .arg("--kubeconfig")
                    .arg(&controller_kc)
                    .args(["--instance-id", INSTANCE_ID, "--leader-elect=false"])
                    .args(["--metricsPort", &ports[0].to_string()])
                    .args(["--healthzPort", &ports[1].to_string()])
                    .args(["--loglevel", "info"]),
                &[],
                Duration::from_secs(60),
                || Ok(http_get(&healthz, "/healthz").is_ok_and(|(status, _)| status == 200)),
            )?;
            Ok(child)
        })?;
        eprintln!(
            "e2e: Argo Rollouts controller ready after {:?} (log: {}/rollouts-controller.log)",
            started.elapsed(),
            c.run_dir.display()
        );
        Ok(Rollouts {
            components,
            dir,
            _controller: Mutex::new(controller),
        })
    }

    /// `kubectl argo rollouts <args> -n <namespace>` as `identity` (`--as`/`--as-group`, which the
    /// plugin takes as kubectl does): kubectl finds the plugin on PATH and runs it.
    pub fn plugin(&self, identity: Identity, namespace: &str, args: &[&str]) -> Output {
        let c = cluster();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.components.dir.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut command = Command::new(c.components.path("kubectl"));
        command
            .env("KUBECONFIG", &c.kubeconfig)
            .env("HOME", self.dir.join("home"))
            .env(
                "PATH",
                std::env::join_paths(paths).expect("PATH entries without separators"),
            )
            .args(["argo", "rollouts"])
            .args(args)
            .args(["-n", namespace])
            .args(identity.args());
        run(&mut command, None)
    }

    /// Wait (up to 60 s) until the live Rollout satisfies `done`, and return it.
    #[track_caller]
    pub fn wait_rollout(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let waited = wait_every(
            Duration::from_secs(60),
            Duration::from_millis(300),
            what,
            || {
                let Some(rollout) = get("rollouts.argoproj.io", namespace, name) else {
                    return Err("no such Rollout".into());
                };
                last = rollout.clone();
                Ok(done(&rollout).then_some(rollout))
            },
        );
        waited.unwrap_or_else(|e| {
            panic!(
                "{namespace}/{name}: {e}\n--- last seen status\n{:#}\n--- controller log: {}",
                last["status"],
                cluster().run_dir.join("rollouts-controller.log").display()
            )
        })
    }
}

/// Flows running now: the stand-in polls only while there is one.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The ReplicaSet controller's and kubelet's part, while a flow holds it: every ReplicaSet of
/// these tests' Rollouts (label [`STAND_IN_LABEL`]) gets the status a ReplicaSet whose
/// `spec.replicas` pods all run and are available would have (`replicas`, `fullyLabeledReplicas`,
/// `readyReplicas`, `availableReplicas`, `observedGeneration`), written as the admin through the
/// status subresource, as the ReplicaSet controller writes it. Nothing else is faked: the Rollouts
/// controller reads these counts and steps on its own.
pub struct ReplicaSetStandIn;

impl ReplicaSetStandIn {
    pub fn start() -> ReplicaSetStandIn {
        static THREAD: OnceLock<()> = OnceLock::new();
        THREAD.get_or_init(|| {
            std::thread::spawn(|| {
                loop {
                    if ACTIVE.load(Ordering::SeqCst) > 0 {
                        mark_replica_sets_available();
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        });
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        ReplicaSetStandIn
    }
}

impl Drop for ReplicaSetStandIn {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn mark_replica_sets_available() {
    let c = cluster();
    let out = c.kubectl(&[
        "get",
        "replicasets.apps",
        "-A",
        "-l",
        STAND_IN_LABEL,
        "-o",
        "json",
    ]);
    if !out.success {
        return;
    }
    for rs in out.json()["items"].as_array().into_iter().flatten() {
        let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let generation = rs["metadata"]["generation"].as_i64().unwrap_or(0);
        let status = &rs["status"];
        let count = |field: &str| status[field].as_i64().unwrap_or(0);
        if [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
        ]
        .iter()
        .all(|field| count(field) == desired)
            && status["observedGeneration"].as_i64() == Some(generation)
        {
            continue;
        }
        let patch = json!({"status": {
            "replicas": desired,
            "fullyLabeledReplicas": desired,
            "readyReplicas": desired,
            "availableReplicas": desired,
            "observedGeneration": generation,
        }});
        // A conflict or a deleted ReplicaSet is retried (or gone) at the next poll.
        let _ = c.kubectl(&[
            "patch",
            "replicasets.apps",
            rs["metadata"]["name"].as_str().unwrap_or_default(),
            "-n",
            rs["metadata"]["namespace"].as_str().unwrap_or_default(),
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }
}

/// A canary Rollout of 5 replicas running `image`, for this controller (its instance label), with
/// steps `setWeight: 20`, `pause: {}`, `setWeight: 60`, `pause: {}` (the shape of argo-rollouts'
/// examples/rollout-canary.yaml, with indefinite pauses so that only a person moves it on).
fn canary(name: &str, namespace: &str, image: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": {INSTANCE_LABEL: INSTANCE_ID}},
        "spec": {
            "replicas": 5,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, STAND_IN_LABEL: name}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "strategy": {"canary": {"steps": [
                {"setWeight": 20},
                {"pause": {}},
                {"setWeight": 60},
                {"pause": {}},
            ]}},
        },
    })
}

const STEPS: i64 = 4;

fn step(rollout: &Value) -> Option<i64> {
    rollout["status"]["currentStepIndex"].as_i64()
}

fn phase(rollout: &Value) -> &str {
    rollout["status"]["phase"].as_str().unwrap_or_default()
}

fn image(rollout: &Value) -> &str {
    rollout["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

/// The controller has seen the current spec and its pod template hash is the stable one: every
/// step done (or skipped, for the first revision and for a return to the stable template).
fn healthy(rollout: &Value) -> bool {
    let status = &rollout["status"];
    status["observedGeneration"].as_str()
        == rollout["metadata"]["generation"]
            .as_i64()
            .map(|g| g.to_string())
            .as_deref()
        && phase(rollout) == "Healthy"
        && step(rollout) == Some(STEPS)
        && status["stableRS"].is_string()
        && status["stableRS"] == status["currentPodHash"]
}

/// Paused by the controller at canary pause step `index` (a `CanaryPauseStep` pause condition).
fn paused_at(rollout: &Value, index: i64) -> bool {
    step(rollout) == Some(index)
        && phase(rollout) == "Paused"
        && rollout["status"]["pauseConditions"]
            .as_array()
            .is_some_and(|conditions| conditions.iter().any(|c| c["reason"] == "CanaryPauseStep"))
        && rollout["status"]["controllerPause"] == true
}

fn aborted(rollout: &Value) -> bool {
    rollout["status"]["abort"] == true && phase(rollout) == "Degraded" && step(rollout) == Some(0)
}

/// `spec.replicas` of the ReplicaSet of pod template hash `hash` in `namespace`.
fn replica_set_replicas(namespace: &str, hash: &str) -> Option<i64> {
    let out = cluster().kubectl(&[
        "get",
        "replicasets.apps",
        "-n",
        namespace,
        "-l",
        &format!("rollouts-pod-template-hash={hash}"),
        "-o",
        "json",
    ]);
    out.json()["items"][0]["spec"]["replicas"].as_i64()
}

/// Guardrails' audit record of `identity`'s write to the Rollout carrying `action` (the newest).
#[track_caller]
fn audited(namespace: &str, name: &str, identity: Identity, action: &str) -> Value {
    cluster().guardrails.wait_audit(namespace, name, |r| {
        r["user"] == identity.user && has_action(r, action)
    })
}

/// Every audit record of the controller's writes to the Rollout: all allowed, as automation.
#[track_caller]
fn controller_writes_allowed(namespace: &str, name: &str) -> Vec<Value> {
    let records: Vec<Value> = cluster()
        .guardrails
        .audit_for(namespace, name)
        .into_iter()
        .filter(|r| r["user"] == ROLLOUTS_CONTROLLER.user)
        .collect();
    for record in &records {
        assert_eq!(record["decision"], "allow", "{record:#}");
        assert_eq!(record["principal"], ROLLOUTS_CONTROLLER.user, "{record:#}");
        assert!(
            !["promote", "promote-full", "abort", "retry", "undo"]
                .iter()
                .any(|action| has_action(record, action)),
            "the controller's own progress is not a person's action: {record:#}"
        );
    }
    records
}

fn printed(out: &Output) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// A payments developer's canary in dev: their `kubectl create`, then `kubectl argo rollouts set
/// image` (`SetImage` in pkg/kubectl-argo-rollouts/cmd/set/set_image.go: an Update of the whole
/// Rollout); the controller steps to the first pause; `promote` (`PromoteRollout` in
/// …/cmd/promote/promote.go: a merge patch `{"status":{"pauseConditions":null}}` of the status
/// subresource, `getPatches`' default case); the controller steps to the second pause; `abort`
/// (`AbortRollout` in …/cmd/abort/abort.go: `{"status":{"abort":true}}` on status); `retry rollout`
/// (`RetryRollout` in …/cmd/retry/retry.go: `{"status":{"abort":false}}` on status); the controller
/// steps to the first pause again; `undo` (`RunUndoRollout` in …/cmd/undo/undo.go: a JSON patch
/// replacing `/spec/template` with the previous revision's ReplicaSet's template, defaulted by the
/// API server). Every write is allowed: the team owns the namespace.
#[test]
fn dev_canary_stepped_promoted_aborted_retried_and_undone_by_its_developer() {
    let _shared = shared();
    let c = cluster();
    let ro = rollouts();
    let _pods = ReplicaSetStandIn::start();
    let (ns, name) = ("payments-dev", "e2e-ro-dev");

    c.kubectl_stdin_as(
        BOB,
        &["create", "-f", "-"],
        &canary(name, ns, "registry.example.com/web:v1").to_string(),
    )
    .ok();
    let first = ro.wait_rollout(ns, name, "the first revision to be stable", healthy);
    let stable_v1 = first["status"]["stableRS"].as_str().unwrap().to_string();
    assert_eq!(audited(ns, name, BOB, "create")["decision"], "allow");

    // The image change: a new ReplicaSet, 20 % of the replicas, then the pause.
    ro.plugin(
        BOB,
        ns,
        &["set", "image", name, "web=registry.example.com/web:v2"],
    )
    .ok();
    let record = audited(ns, name, BOB, "change-image");
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(record["operation"], "UPDATE", "{record:#}");
    let paused = ro.wait_rollout(ns, name, "the first pause step", |r| paused_at(r, 1));
    let canary_hash = paused["status"]["currentPodHash"].as_str().unwrap();
    assert_ne!(canary_hash, stable_v1);
    assert_eq!(replica_set_replicas(ns, canary_hash), Some(1), "20 % of 5");
    assert_eq!(paused["status"]["stableRS"], stable_v1.as_str());

    let out = ro.plugin(BOB, ns, &["promote", name]).ok();
    assert!(out.stdout.contains("promoted"), "{out}");
    let record = audited(ns, name, BOB, "promote");
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(record["subResource"], "status", "{record:#}");
    ro.wait_rollout(ns, name, "the second pause step", |r| paused_at(r, 3));
    assert_eq!(replica_set_replicas(ns, canary_hash), Some(3), "60 % of 5");

    ro.plugin(BOB, ns, &["abort", name]).ok();
    let record = audited(ns, name, BOB, "abort");
    assert_eq!(record["decision"], "allow", "{record:#}");
    let rollout = ro.wait_rollout(ns, name, "the abort", |r| {
        aborted(r) && replica_set_replicas(ns, canary_hash) == Some(0)
    });
    assert_eq!(rollout["status"]["stableRS"], stable_v1.as_str());

    ro.plugin(BOB, ns, &["retry", "rollout", name]).ok();
    let record = audited(ns, name, BOB, "retry");
    assert_eq!(record["decision"], "allow", "{record:#}");
    ro.wait_rollout(ns, name, "the retried canary's first pause", |r| {
        paused_at(r, 1) && r["status"]["abort"] != true
    });

    let out = ro.plugin(BOB, ns, &["undo", name]).ok();
    assert!(out.stdout.contains("undo"), "{out}");
    let record = audited(ns, name, BOB, "undo");
    assert_eq!(record["decision"], "allow", "{record:#}");
    // Back on the stable template: the controller skips the steps ("Rollback to stable").
    let rollout = ro.wait_rollout(ns, name, "the undo to the stable revision", healthy);
    assert_eq!(image(&rollout), "registry.example.com/web:v1");
    assert_eq!(rollout["status"]["stableRS"], stable_v1.as_str());

    let controller = controller_writes_allowed(ns, name);
    assert!(
        !controller.is_empty(),
        "the controller's revision annotations were decided"
    );
    record::record(
        "dev-canary",
        "a payments developer's dev canary stepped by the controller, promoted, aborted, retried and undone with the plugin",
        ns,
        &[name],
    );
}

/// A canary in prod, its image changed by a platform engineer; the controller steps to the first
/// pause. A storefront developer's `promote` and `abort` are denied by `team-owns-namespace`, with
/// Guardrails' message in the plugin's output, and change nothing. The payments developer's
/// `promote` is allowed: the shipped policies reserve prod syncs, not Rollout promotes, for the
/// platform team (a policy that does is decided against these recorded requests in
/// tests/recorded.rs). A platform engineer's `promote` completes the canary; their next image
/// change is aborted by the developer (allowed), and fully promoted by the platform engineer
/// (`promote --full`: `{"status":{"promoteFull":true}}` on status, plus `{"spec":{"paused":false}}`
/// only if `spec.paused`).
#[test]
fn prod_canary_promoted_and_aborted_by_people() {
    let _shared = shared();
    let c = cluster();
    let ro = rollouts();
    let _pods = ReplicaSetStandIn::start();
    let (ns, name) = ("payments-prod", "e2e-ro-prod");

    c.kubectl_stdin_as(
        PLATFORM,
        &["create", "-f", "-"],
        &canary(name, ns, "registry.example.com/web:v1").to_string(),
    )
    .ok();
    ro.wait_rollout(ns, name, "the first revision to be stable", healthy);
    ro.plugin(
        PLATFORM,
        ns,
        &["set", "image", name, "web=registry.example.com/web:v2"],
    )
    .ok();
    let before = ro.wait_rollout(ns, name, "the first pause step", |r| paused_at(r, 1));

    // Another team's developer: denied, and the plugin prints Guardrails' answer.
    let out = ro.plugin(DANA, ns, &["promote", name]);
    assert!(!out.success, "dana's promote went through: {out}");
    let text = printed(&out);
    assert!(
        text.contains("admission webhook \"validate.guardrails.io\" denied the request"),
        "{out}"
    );
    assert!(text.contains("[team-owns-namespace]"), "{out}");
    let record = audited(ns, name, DANA, "promote");
    assert_eq!(record["decision"], "deny", "{record:#}");
    let out = ro.plugin(DANA, ns, &["abort", name]);
    assert!(!out.success, "dana's abort went through: {out}");
    assert!(printed(&out).contains("[team-owns-namespace]"), "{out}");
    assert_eq!(audited(ns, name, DANA, "abort")["decision"], "deny");
    let after = get("rollouts.argoproj.io", ns, name).expect("the Rollout");
    assert!(paused_at(&after, 1), "{:#}", after["status"]);
    assert_eq!(after["status"]["abort"], before["status"]["abort"]);

    // The team's own developer: allowed by the shipped policies.
    ro.plugin(BOB, ns, &["promote", name]).ok();
    let record = audited(ns, name, BOB, "promote");
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(record["matches"], json!([]), "{record:#}");
    ro.wait_rollout(ns, name, "the second pause step", |r| paused_at(r, 3));

    // A platform engineer completes it.
    ro.plugin(PLATFORM, ns, &["promote", name]).ok();
    assert_eq!(audited(ns, name, PLATFORM, "promote")["decision"], "allow");
    let rollout = ro.wait_rollout(ns, name, "the canary to complete", healthy);
    assert_eq!(image(&rollout), "registry.example.com/web:v2");

    // The next image: aborted by the developer, then fully promoted by a platform engineer.
    ro.plugin(
        PLATFORM,
        ns,
        &["set", "image", name, "web=registry.example.com/web:v3"],
    )
    .ok();
    ro.wait_rollout(ns, name, "the v3 canary's first pause", |r| paused_at(r, 1));
    ro.plugin(BOB, ns, &["abort", name]).ok();
    assert_eq!(audited(ns, name, BOB, "abort")["decision"], "allow");
    ro.wait_rollout(ns, name, "the abort", aborted);
    let out = ro.plugin(PLATFORM, ns, &["promote", name, "--full"]).ok();
    assert!(out.stdout.contains("fully promoted"), "{out}");
    let record = audited(ns, name, PLATFORM, "promote-full");
    assert_eq!(record["decision"], "allow", "{record:#}");
    let rollout = ro.wait_rollout(ns, name, "the full promotion", |r| {
        healthy(r) && r["status"]["abort"] != true
    });
    assert_eq!(image(&rollout), "registry.example.com/web:v3");

    controller_writes_allowed(ns, name);
    record::record(
        "prod-canary",
        "a prod canary promoted and aborted with the plugin by another team's developer (denied), the team's developer and a platform engineer",
        ns,
        &[name],
    );
}
