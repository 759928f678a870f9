//! A policy set in which some action has no permit for anyone (e.g. `default.cedar` removed:
//! everything denied, Argo CD's own status writes included) is an error for `check`, stops
//! `serve` from starting and is refused on reload, unless explicitly allowed.

mod common {
    pub mod engine;
    pub mod policies;
}

use assert_cmd::Command;
use common::engine::engine;
use common::policies::policies;
use guardrails::policy::PolicyError;
use guardrails::reload::{EngineSource, LoadError};

fn guardrails() -> Command {
    Command::cargo_bin("guardrails").unwrap()
}

/// The shipped policies without `default.cedar`.
fn without_default() -> tempfile::TempDir {
    let dir = policies(&[]);
    std::fs::remove_file(dir.path().join("default.cedar")).unwrap();
    dir
}

#[test]
fn check_fails_and_names_the_actions_unless_allowed() {
    let dir = without_default();
    let dir_arg = dir.path().to_str().unwrap();
    guardrails()
        .args(["check", dir_arg])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no permit policy can match"))
        .stderr(predicates::str::contains("bookkeeping"))
        .stderr(predicates::str::contains("--allow-default-deny"));
    guardrails()
        .args(["check", dir_arg, "--allow-default-deny"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "warning: no permit policy can match",
        ));
    // Allowed in the config instead of by flag.
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{}\nallowDefaultDeny: true\n",
            guardrails::config::EMBEDDED_CONFIG
        ),
    )
    .unwrap();
    guardrails()
        .args(["check", dir_arg, "--config", config.to_str().unwrap()])
        .assert()
        .success();
    // ... but `--deny-warnings` still holds it to account.
    guardrails()
        .args(["check", dir_arg, "--allow-default-deny", "--deny-warnings"])
        .assert()
        .failure();
}

#[test]
fn check_prints_the_hashes_readyz_reports() {
    let output = guardrails()
        .args(["check", &format!("{}/policies", env!("CARGO_MANIFEST_DIR"))])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let engine = engine();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains(&engine.policies.hash), "{text}");
    assert!(text.contains(&engine.config.hash), "{text}");
}

#[test]
fn serve_refuses_to_start() {
    let dir = without_default();
    let ca = tempfile::tempdir().unwrap();
    guardrails()
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-ca-out",
            ca.path().join("ca.pem").to_str().unwrap(),
            "--policies",
            dir.path().to_str().unwrap(),
        ])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("no permit policy can match"));
}

#[test]
fn loading_for_serve_refuses_unless_allowed() {
    let dir = without_default();
    let source = EngineSource {
        policies: Some(dir.path().to_path_buf()),
        ..EngineSource::default()
    };
    match source.load() {
        Err(LoadError::Policies(PolicyError::DefaultDeny(actions))) => {
            assert!(actions.contains(&"bookkeeping".to_string()), "{actions:?}");
        }
        other => panic!("expected a default-deny refusal, got {other:?}"),
    }
    let allowed = EngineSource {
        allow_default_deny: true,
        ..source
    };
    let engine = allowed.load().unwrap();
    assert!(!engine.policies.default_denied.is_empty());
}

#[test]
fn a_bad_reload_interval_is_refused() {
    guardrails()
        .args(["serve", "--dev", "--reload-interval", "5x"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("\"5x\" is not a duration"));
}
