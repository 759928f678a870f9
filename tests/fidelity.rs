//! The fidelity corpus (`tests/fixtures/argo-writes/`): AdmissionReviews built field for field from
//! what Argo CD, Argo Rollouts, kubectl and Kubernetes' own controllers write (each folder's
//! SOURCES.md cites the code), decided with the shipped policies and the example config, through
//! `guardrails test`, `guardrails eval` and a running `guardrails serve`, all against the expectations
//! in `cases.yaml`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common {
    pub mod corpus;
    pub mod http;
    pub mod process;
    pub mod serve;
    pub mod tls;
}

use common::corpus::{Case, cases, dir as corpus};
use common::http::client;
use common::serve::{Guardrails, Serve};

fn sorted_list(text: Option<&str>) -> Vec<String> {
    let mut items: Vec<String> = text
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        // `policies` annotations read `<id>=<mode>`.
        .map(|s| s.split('=').next().unwrap_or(s).to_string())
        .collect();
    items.sort();
    items
}

/// Compare one AdmissionReview response with a case; an empty result means it matched.
fn mismatches(case: &Case, review: &Value) -> Vec<String> {
    let response = &review["response"];
    let annotations = &response["auditAnnotations"];
    let mut problems = Vec::new();
    if response["allowed"].as_bool() != Some(case.expect.allowed) {
        problems.push(format!(
            "allowed: expected {}, got {} ({})",
            case.expect.allowed, response["allowed"], response["status"]["message"]
        ));
    }
    let mut want_actions = case.expect.actions.clone();
    want_actions.sort();
    let got_actions = sorted_list(annotations["actions"].as_str());
    if got_actions != want_actions {
        problems.push(format!(
            "actions: expected {want_actions:?}, got {got_actions:?}"
        ));
    }
    let mut want_policies = case.expect.policies.clone();
    want_policies.sort();
    let got_policies = sorted_list(annotations["policies"].as_str());
    if got_policies != want_policies {
        problems.push(format!(
            "policies: expected {want_policies:?}, got {got_policies:?}"
        ));
    }
    if case.expect.no_warnings && response.get("warnings").is_some_and(|w| !w.is_null()) {
        problems.push(format!(
            "expected no warnings, got {}",
            response["warnings"]
        ));
    }
    problems
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_recorded_write_has_a_case() {
    let listed: Vec<PathBuf> = cases().into_iter().map(|c| c.review).collect();
    let mut missing = Vec::new();
    for folder in std::fs::read_dir(corpus()).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        assert!(
            folder.join("SOURCES.md").is_file(),
            "{} has no SOURCES.md",
            folder.display()
        );
        for file in std::fs::read_dir(&folder).unwrap() {
            let path = file.unwrap().path();
            let relative = path.strip_prefix(corpus()).unwrap().to_path_buf();
            let is_review = path.extension().is_some_and(|e| e == "json")
                && serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap())
                    .is_ok_and(|v| v["kind"] == "AdmissionReview");
            if is_review && !listed.contains(&relative) {
                missing.push(relative.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "reviews without a case: {missing:?}");
    assert!(listed.len() >= 90, "only {} cases", listed.len());
}

#[test]
fn guardrails_test_runs_the_corpus() {
    let output = assert_cmd::Command::cargo_bin("guardrails")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "--tests", "tests/fixtures/argo-writes/cases.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", cases().len())),
        "{stdout}"
    );
}

#[test]
fn guardrails_eval_decides_each_write_as_expected() {
    let mut failures = Vec::new();
    for case in cases() {
        let output = assert_cmd::Command::cargo_bin("guardrails")
            .unwrap()
            .arg("eval")
            .arg("--review")
            .arg(corpus().join(&case.review))
            .args(["--output", "json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", case.name);
        let review: Value = serde_json::from_slice(&output.stdout).expect("eval prints JSON");
        for problem in mismatches(&case, &review) {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    report(failures);
}

/// A `guardrails serve --dev` process, killed on drop, with its CA and audit log.
struct Served {
    guardrails: Guardrails,
    ca_pem: String,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let audit_log = dir.path().join("audit.log");
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("guardrails"));
    command
        .args(["serve", "--no-reload", "--audit-log"])
        .arg(&audit_log);
    let guardrails = Guardrails::start(Serve {
        command,
        probes: false,
        dev_ca: Some(&ca),
        log: Some(&dir.path().join("stderr.log")),
    });
    Served {
        guardrails,
        ca_pem: std::fs::read_to_string(&ca).unwrap(),
        audit_log,
        _dir: dir,
    }
}

#[tokio::test]
async fn guardrails_serve_decides_each_write_as_expected() {
    let served = serve();
    let client = client(&served.ca_pem, true, Duration::from_secs(60));
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let body = std::fs::read(corpus().join(&case.review)).unwrap();
        let response = client
            .post(format!(
                "https://localhost:{}/validate",
                served.guardrails.port
            ))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", case.name);
        let review: Value = response.json().await.unwrap();
        for problem in mismatches(case, &review) {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    report(failures);
    // One audit line per request, carrying the decision the client saw.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&served.audit_log).unwrap_or_default();
        let records: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if records.len() >= all.len() {
            let denied = records.iter().filter(|r| r["decision"] == "deny").count();
            let expected_denied = all.iter().filter(|c| !c.expect.allowed).count();
            assert_eq!(denied, expected_denied, "audit log:\n{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} audit records for {} requests",
            records.len(),
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
