//! Real Argo CD traffic, decided offline: the AdmissionReviews Argo CD v3.6.2 made the API server
//! send to Guardrails in the e2e flows (`tests/fixtures/argo-recorded/<flow>/`, written by
//! `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e argocd`), each with what Guardrails decided
//! then. A change to Guardrails that decides one of them differently fails here, in seconds.
//!
//! The same for real Argo Rollouts traffic: the AdmissionReviews Argo Rollouts v1.10.2's controller
//! and `kubectl argo rollouts` plugin made the API server send in `tests/e2e/rollouts.rs`'s flows
//! (`tests/fixtures/rollouts-recorded/<flow>/`, recorded by the same command with `rollouts`).

use std::path::{Path, PathBuf};

use guardrails::authoring::test_files;
use guardrails::authoring::test_files::TestFile;
use guardrails::config::Config;
use guardrails::decide::Engine;
use guardrails::policy::{PolicyStore, read_sources};

fn shipped_engine() -> Engine {
    Engine::new(
        PolicyStore::embedded().expect("the shipped policies"),
        Config::embedded().expect("the example config"),
        None,
    )
}

/// Every flow of a recorded corpus (a folder with a `cases.yaml`), sorted: its `cases.yaml` path
/// and the file.
fn recorded_flows(corpus: &str) -> Vec<(PathBuf, TestFile)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join(corpus);
    let mut flows: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the recorded corpus")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("cases.yaml"))
        .filter(|path| path.is_file())
        .collect();
    flows.sort();
    flows
        .into_iter()
        .map(|path| {
            let file = test_files::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !file.cases.is_empty(),
                "{} recorded nothing",
                path.display()
            );
            (path, file)
        })
        .collect()
}

/// Decide every case of `flows` with `engine`; returns how many were decided.
fn decide_all(engine: &Engine, flows: &[(PathBuf, TestFile)]) -> usize {
    let (mut decided, mut failures) = (0, Vec::new());
    for (path, file) in flows {
        for result in test_files::run_file(engine, path, file, None) {
            decided += 1;
            if !result.passed() {
                failures.push(format!("{}: {}", result.name, result.failures.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    decided
}

#[test]
fn recorded_argo_cd_traffic_is_decided_as_recorded() {
    let flows = recorded_flows("tests/fixtures/argo-recorded");
    assert!(
        flows.len() >= 20,
        "every Argo CD flow recorded: {}",
        flows.len()
    );
    let decided = decide_all(&shipped_engine(), &flows);
    assert!(decided >= 130, "only {decided} recorded requests");
}

#[test]
fn recorded_argo_rollouts_traffic_is_decided_as_recorded() {
    let flows = recorded_flows("tests/fixtures/rollouts-recorded");
    assert!(
        flows.len() >= 2,
        "every Argo Rollouts flow recorded: {}",
        flows.len()
    );
    let decided = decide_all(&shipped_engine(), &flows);
    assert!(decided >= 15, "only {decided} recorded requests");
}

/// The shipped policies let a team's developer promote and abort their own production Rollout
/// (`team-owns-namespace` only keeps other teams out). A policy author who wants those to be the
/// platform team's call writes this forbid; decided against the real plugin's and controller's
/// recorded requests, it denies exactly the payments developer's prod promote and abort, adds
/// itself to the other team's denials, and leaves the controller's writes, every dev write and
/// the platform engineer's alone.
#[test]
fn a_policy_reserving_prod_rollout_actions_decides_the_recorded_traffic() {
    const CANDIDATE: &str = "prod-rollout-actions-platform-only";
    let policy = format!(
        r#"@id("{CANDIDATE}")
@reason("Promoting, aborting, retrying or undoing a production Rollout is the platform team's call; ask #platform.")
forbid (
  principal,
  action in [Action::"promote", Action::"promote-full", Action::"abort", Action::"retry", Action::"undo"],
  resource is Rollout in Environment::"prod"
)
unless {{ principal in Team::"platform" || principal.automation }};
"#
    );
    let mut sources =
        read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).expect("policies/");
    sources.insert(format!("{CANDIDATE}.cedar"), policy);
    let engine = Engine::new(
        PolicyStore::from_sources(
            sources.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            "policies/ + candidate",
        )
        .expect("the candidate policy set"),
        Config::embedded().expect("the example config"),
        None,
    );

    let mut flows = recorded_flows("tests/fixtures/rollouts-recorded");
    let mut changed = Vec::new();
    for (path, file) in &mut flows {
        let prod = path
            .parent()
            .is_some_and(|flow| flow.ends_with("prod-canary"));
        for case in &mut file.cases {
            let people_action = case.expect.actions.as_ref().is_some_and(|actions| {
                actions.iter().any(|a| {
                    ["promote", "promote-full", "abort", "retry", "undo"].contains(&a.as_str())
                })
            });
            let by_platform = case.name.ends_with("as admin@example.com");
            if prod && people_action && !by_platform {
                case.expect.allowed = false;
                let policies = case.expect.policies.get_or_insert_with(Vec::new);
                policies.push(CANDIDATE.to_string());
                changed.push(case.name.clone());
            }
        }
    }
    // The payments developer's promote and abort, and the storefront developer's.
    assert_eq!(changed.len(), 4, "{changed:#?}");
    assert_eq!(
        changed
            .iter()
            .filter(|n| n.contains("as bob@example.com"))
            .count(),
        2,
        "{changed:#?}"
    );
    decide_all(&engine, &flows);
}
