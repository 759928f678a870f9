//! Unit tests for `src/recognize.rs` (kept apart so `src/` holds only shipped code). Whole requests
//! are covered by tests/decisions.rs and the fidelity corpus (tests/fidelity.rs).

use serde_json::json;

use super::application::{normalized_source, revision_overrides};
use super::workload::defaulted_like_a_replicaset;
use super::*;
use crate::authoring::synth::Synthetic;

#[test]
fn commit_shas_are_full_hex_of_sha1_or_sha256_length() {
    assert!(is_commit_sha("0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"));
    assert!(is_commit_sha(&"ab".repeat(32)));
    assert!(
        !is_commit_sha("0a1b2c3"),
        "short SHAs are not resolved revisions"
    );
    assert!(!is_commit_sha("main"));
    assert!(!is_commit_sha("0a1b2c3d4e5f60718293a4b5c6d7e8f90123456z"));
}

#[test]
fn only_a_revision_the_object_can_tell_apart_overrides() {
    let sha = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
    // Argo CD resolves every branch to a SHA: a SHA against a branch is the branch's head.
    assert!(!revision_overrides(sha, "main"));
    assert!(!revision_overrides("main", "main"));
    assert!(!revision_overrides("", "HEAD"));
    assert!(revision_overrides("hotfix", "main"));
    // Against a pinned SHA, any other revision is an override.
    assert!(revision_overrides(
        sha,
        "89abcdef0123456789abcdef0123456789abcdef"
    ));
}

#[test]
fn sources_compare_as_argo_cd_fetches_them() {
    let spec = json!({"repoURL": "https://git.example.com/Payments/deploy.git", "path": "overlays/prod",
        "targetRevision": "main", "helm": {"valueFiles": []}});
    let same = json!({"repoURL": "https://git.example.com/payments/deploy/", "path": "overlays/prod",
        "targetRevision": "release-1"});
    assert_eq!(normalized_source(&spec), normalized_source(&same));
    let other_path =
        json!({"repoURL": "https://git.example.com/payments/deploy", "path": "overlays/dev"});
    assert_ne!(normalized_source(&spec), normalized_source(&other_path));
    let with_values = json!({"repoURL": "https://git.example.com/payments/deploy", "path": "overlays/prod",
        "helm": {"values": "replicas: 0"}});
    assert_ne!(normalized_source(&spec), normalized_source(&with_values));
}

#[test]
fn a_replicaset_template_is_recognised_by_the_api_servers_defaults() {
    let written = json!({"spec": {"containers": [{"name": "api", "image": "api:1"}]}});
    let from_replicaset = json!({"spec": {
        "containers": [{"name": "api", "image": "api:1", "terminationMessagePath": "/dev/termination-log"}],
        "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"}});
    assert!(!defaulted_like_a_replicaset(Some(&written)));
    assert!(defaulted_like_a_replicaset(Some(&from_replicaset)));
    assert!(!defaulted_like_a_replicaset(None));
}

/// Every AdmissionReview of the fidelity corpus (tests/fixtures/argo-writes).
fn corpus() -> Vec<serde_json::Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo-writes");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .expect("corpus")
        .flat_map(|dir| {
            std::fs::read_dir(dir.expect("entry").path())
                .into_iter()
                .flatten()
        })
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let reviews: Vec<serde_json::Value> = files
        .iter()
        .filter_map(|path| serde_json::from_slice(&std::fs::read(path).ok()?).ok())
        .filter(|review: &serde_json::Value| review["kind"] == "AdmissionReview")
        .collect();
    assert!(reviews.len() > 150, "the fidelity corpus is missing");
    reviews
}

/// Every JSON pointer into `value` (objects and arrays included).
fn pointers(value: &serde_json::Value, prefix: String, out: &mut Vec<String>) {
    let children: Vec<(String, &serde_json::Value)> = match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        serde_json::Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let path = format!("{prefix}/{key}");
        out.push(path.clone());
        pointers(child, path, out);
    }
}

fn recognise(review: &serde_json::Value) -> Recognition {
    let config = Config::embedded().expect("embedded config");
    let body = serde_json::to_vec(review).expect("review");
    let request = crate::admission::parse_review(&body).expect("a valid review");
    match recognize(&request, &config) {
        Recognized::Known(recognition) => recognition,
        Recognized::Unsupported { resource } => panic!("corpus review for {resource}"),
    }
}

/// The people and the person-less delegator of the example config.
const NOT_AUTOMATION: &[(&str, &[&str])] = &[
    (
        "bob@example.com",
        &["payments-devs", "system:authenticated"],
    ),
    ("admin@example.com", &["platform-admins"]),
    (
        "system:serviceaccount:argocd:argocd-server",
        &["system:serviceaccounts"],
    ),
    (
        "system:serviceaccount:payments-prod:ci",
        &["system:serviceaccounts"],
    ),
];

/// Values a change may write: what the writers' own fields hold, and what they do not.
fn replacement(choice: usize) -> serde_json::Value {
    [
        json!(null),
        json!(""),
        json!("changed"),
        json!(0),
        json!(true),
        json!(false),
        json!({}),
        json!([]),
        json!({"enabled": true}),
        json!("resources-finalizer.argocd.argoproj.io/foreground"),
    ][choice % 10]
        .clone()
}

#[test]
fn automation_writing_nothing_new_is_bookkeeping_and_anyone_else_an_update() {
    let review = corpus()
        .into_iter()
        .find(|r| {
            r["request"]["resource"]["resource"] == "applications"
                && r["request"]["operation"] == "UPDATE"
        })
        .expect("an Application update");
    let mut unchanged = review.clone();
    unchanged["request"]["object"] = unchanged["request"]["oldObject"].clone();
    unchanged["request"]["userInfo"] =
        json!({"username": "system:serviceaccount:argocd:argocd-application-controller"});
    assert_eq!(recognise(&unchanged).actions, [Action::Bookkeeping]);
    unchanged["request"]["userInfo"] = json!({"username": "bob@example.com"});
    assert_eq!(recognise(&unchanged).actions, [Action::Update]);
}

/// argocd-server's cascading delete adds the resources finalizer before it deletes (argo-cd
/// v3.6.2, server/application/application.go, `Server.Delete`: `SetCascadedDeletion`, then a merge
/// patch of `metadata.finalizers`): from it, that patch is the delete.
#[test]
fn the_resources_finalizer_added_by_argocd_server_arms_a_cascading_delete() {
    let fixture = |path: &str| -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    };
    // Built from that code for an Application that already carries the finalizer: switching its
    // form (`--propagation-policy foreground`) arms nothing.
    let switched = recognise(&fixture(
        "tests/fixtures/argo-writes/server/argocd-server-delete-foreground-1-patch-finalizer.json",
    ));
    assert_eq!(switched.actions, [Action::Update]);
    assert!(!switched.cascade);

    // Recorded from the real argocd-server (`argocd app delete`, tests/e2e/argocd.rs) on an
    // Application without it.
    let mut review = fixture(
        "tests/fixtures/argo-recorded/app-delete/02-argocd-server-update-application-e2e-argocd-delete.json",
    );
    let added = recognise(&review);
    assert_eq!(added.actions, [Action::Delete]);
    assert!(added.cascade);

    // A person adding it says so in their own change: an update, not a delete.
    review["request"]["userInfo"] = json!({"username": "admin@example.com"});
    let by_person = recognise(&review);
    assert_eq!(by_person.actions, [Action::Update]);
    assert!(!by_person.cascade);
    // The controller adding it is its own bookkeeping.
    review["request"]["userInfo"] =
        json!({"username": "system:serviceaccount:argocd:argocd-application-controller"});
    assert_eq!(recognise(&review).actions, [Action::Bookkeeping]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// Bookkeeping is proven per writer, never assumed: whatever a person or a delegator without
    /// a person writes (a recorded write, then random changes to any field of it) is named.
    #[test]
    fn no_person_or_delegator_write_is_ever_bookkeeping(
        pick in 0usize..10_000,
        who in 0usize..NOT_AUTOMATION.len(),
        changes in proptest::collection::vec((0usize..100_000, 0usize..10, proptest::bool::ANY), 0..4),
    ) {
        thread_local! {
            static CORPUS: Vec<serde_json::Value> = corpus();
        }
        let mut review = CORPUS.with(|c| c[pick % c.len()].clone());
        let (user, groups) = NOT_AUTOMATION[who];
        review["request"]["userInfo"] = json!({"username": user, "groups": groups});
        let side = if review["request"]["object"].is_object() { "object" } else { "oldObject" };
        for (at, value, remove) in changes {
            let mut paths = Vec::new();
            pointers(&review["request"][side], String::new(), &mut paths);
            paths.retain(|p| !matches!(p.as_str(), "/apiVersion" | "/kind" | "/metadata" | "/metadata/name" | "/metadata/namespace"));
            if paths.is_empty() {
                break;
            }
            let path = &paths[at % paths.len()];
            let object = &mut review["request"][side];
            if remove {
                let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
                if let Some(serde_json::Value::Object(map)) = object.pointer_mut(parent) {
                    map.remove(&crate::json::unescape(key).into_owned());
                }
            } else if let Some(slot) = object.pointer_mut(path) {
                *slot = replacement(value);
            }
        }
        let body = serde_json::to_vec(&review).expect("review");
        // A change may make the objects unreadable (a label that is not a string): refused, fine.
        if let Ok(request) = crate::admission::parse_review(&body) {
            let config = Config::embedded().expect("embedded config");
            if let Recognized::Known(recognition) = recognize(&request, &config) {
                proptest::prop_assert!(
                    !recognition.actions.contains(&Action::Bookkeeping),
                    "{user}: {:?} for {}", recognition.actions, review["request"]["uid"]
                );
                proptest::prop_assert!(!recognition.actions.is_empty());
            }
        }
    }
}

/// `argocd-server` syncing an Application in `argocd` with `sync` as its operation, the Application
/// carrying `sync_policy` as its `spec.syncPolicy`.
fn sync_review(sync: serde_json::Value, sync_policy: serde_json::Value) -> serde_json::Value {
    let app = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "payments", "namespace": "argocd"},
        "spec": {
            "project": "payments",
            "source": {"repoURL": "https://git.example.com/payments/deploy", "path": "prod", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "payments-prod"},
            "syncPolicy": sync_policy,
        },
    });
    let mut syncing = app.clone();
    syncing["operation"] = json!({"sync": sync, "initiatedBy": {"username": "admin@example.com"}});
    Synthetic {
        object: Some(syncing),
        old_object: Some(app),
        operation: "UPDATE".into(),
        user: "system:serviceaccount:argocd:argocd-server".into(),
        uid: "force-1".into(),
        ..Synthetic::default()
    }
    .admission_review()
    .expect("a review")
}

/// Argo CD v3.6.2 deletes and re-creates (`kubectl apply --force`, `kubectl replace --force`) on
/// the operation's `syncStrategy.{apply,hook}.force` alone: the controller passes
/// `syncOp.SyncStrategy.Force()` to gitops-engine (`controller/sync.go`, `SyncAppState`:
/// `sync.WithOperationSettings`), and reads `Replace=true`, never `Force=true`, from
/// `syncOp.SyncOptions`. `Force=true` forces only as a resource's own
/// `argocd.argoproj.io/sync-options` annotation (gitops-engine `pkg/sync/sync_context.go`,
/// `applyObject`). So `Force=true` among the operation's (or the spec's) sync options is not
/// `sync.force`; it stays visible, as written, in `sync.syncOptions`.
#[test]
fn only_the_sync_strategy_forces_a_sync() {
    let cases = [
        (
            json!({"syncStrategy": {"hook": {"force": true}}}),
            json!(null),
            true,
        ),
        (
            json!({"syncStrategy": {"apply": {"force": true}}}),
            json!(null),
            true,
        ),
        (
            json!({"syncStrategy": {"apply": {"force": true}}, "syncOptions": ["Replace=true"]}),
            json!(null),
            true,
        ),
        (json!({"syncStrategy": {"hook": {}}}), json!(null), false),
        (json!({"syncOptions": ["Force=true"]}), json!(null), false),
        (
            json!({"syncOptions": ["Force=true", "Replace=true"]}),
            json!(null),
            false,
        ),
        (
            json!({"syncStrategy": {"hook": {}}}),
            json!({"syncOptions": ["Force=true", "Replace=true"]}),
            false,
        ),
    ];
    for (sync, sync_policy, force) in cases {
        let recognition = recognise(&sync_review(sync.clone(), sync_policy.clone()));
        assert_eq!(recognition.actions, [Action::Sync], "{sync} {sync_policy}");
        assert_eq!(recognition.sync.force, force, "{sync} {sync_policy}");
        let written: Vec<String> = sync["syncOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
        assert_eq!(recognition.sync.sync_options, written, "{sync}");
    }
}
