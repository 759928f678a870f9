//! Unit tests for `src/recognize.rs` (kept apart so `src/` holds only shipped code). Whole requests
//! are covered by tests/decisions.rs and the fidelity corpus (tests/fidelity.rs).

use serde_json::json;

use super::application::{normalized_source, revision_overrides};
use super::workload::defaulted_like_a_replicaset;
use super::*;

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
