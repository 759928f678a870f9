//! The audit log records each decision (and, when asked, the request); `guardrails replay`
//! re-decides those requests with candidate policies and reports what changes.

mod common {
    pub mod command;
    pub mod engine;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
}

use std::path::Path;

use assert_cmd::Command;
use axum::body::Body;
use axum::http::Request;
use common::command::SucceedsExt;
use common::engine::engine;
use common::fixtures::fixture;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::PaymentsDev;
use guardrails::audit::AuditLog;
use guardrails::server::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(state: &AppState, review: &Review) {
    let request = Request::post("/validate")
        .body(Body::from(review.body()))
        .unwrap();
    let response = server::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn traffic() -> Vec<Review> {
    let prod = app_to("payments-prod");
    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    vec![
        Review::update(&prod, &syncing(&prod, json!({}), Value::Null))
            .by(PaymentsDev)
            .set("uid", "u-prod-sync"),
        Review::update(
            &base,
            &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
        )
        .by(PaymentsDev)
        .set("uid", "u-scale"),
        Review::update(
            &base,
            &fixture("deployments/argocd-action-testdata-deployment-restarted.yaml"),
        )
        .by(PaymentsDev)
        .set("uid", "u-restart")
        .set("dryRun", true),
    ]
}

async fn record_traffic(log: &Path, include_requests: bool, max_bytes: usize) {
    let state = AppState::with_audit(
        engine(),
        AuditLog::file(log, include_requests, max_bytes).unwrap(),
    );
    for review in traffic() {
        send(&state, &review).await;
    }
}

#[tokio::test]
async fn audit_records_carry_the_decision_and_optionally_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    record_traffic(&log, true, 1 << 20).await;
    let lines = records(&log);
    assert_eq!(lines.len(), 3);
    let denied = &lines[0];
    assert_eq!(denied["uid"], "u-prod-sync");
    assert_eq!(denied["user"], PaymentsDev.name());
    assert_eq!(denied["teams"], json!(["payments"]));
    assert_eq!(denied["kind"], "Application");
    assert_eq!(denied["operation"], "UPDATE");
    assert_eq!(denied["actions"], json!(["sync"]));
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["enforced"], true);
    assert_eq!(denied["matches"][0]["policy"], "prod-sync-platform-only");
    assert_eq!(denied["matches"][0]["declared"], "enforce");
    assert_eq!(denied["request"]["request"]["uid"], "u-prod-sync");
    assert!(denied["latencyUs"].as_u64().is_some());
    assert!(denied["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[2]["dryRun"], true);
    assert_eq!(lines[1]["decision"], "allow");

    let small = dir.path().join("small.jsonl");
    record_traffic(&small, true, 100).await;
    let lines = records(&small);
    assert!(lines[0].get("request").is_none());
    assert!(
        lines[0]["requestOmitted"]
            .as_str()
            .unwrap()
            .contains("exceeds the 100 byte limit")
    );

    let plain = dir.path().join("plain.jsonl");
    record_traffic(&plain, false, 1 << 20).await;
    assert!(records(&plain).iter().all(|r| r.get("request").is_none()));
}

/// `guardrails replay --log LOG ARGS...`, which must succeed; its stdout.
fn replay(log: &Path, args: &[&str]) -> Vec<u8> {
    Command::cargo_bin("guardrails")
        .unwrap()
        .args(["replay", "--log", log.to_str().unwrap()])
        .args(args)
        .succeeds()
}

#[tokio::test]
async fn replay_reports_what_a_candidate_policy_set_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    record_traffic(&log, true, 1 << 20).await;
    std::fs::write(
        &log,
        format!("{}not json\n", std::fs::read_to_string(&log).unwrap()),
    )
    .unwrap();

    // The candidate: no Argo CD prod guardrail, but scaling frozen for everyone but platform.
    let candidate = dir.path().join("candidate");
    std::fs::create_dir(&candidate).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in [
        "guardrails.cedarschema",
        "default.cedar",
        "ownership.cedar",
        "drift.cedar",
    ] {
        std::fs::copy(shipped.join(file), candidate.join(file)).unwrap();
    }
    std::fs::write(
        candidate.join("freeze.cedar"),
        "@id(\"scale-freeze\")\n@reason(\"Scaling is frozen this week.\")\nforbid (principal, action == Action::\"scale\", resource)\nunless { principal in Team::\"platform\" };\n",
    )
    .unwrap();

    let candidate = candidate.to_str().unwrap();
    let output = replay(&log, &["--policies", candidate]);
    let text = String::from_utf8(output).unwrap();
    assert!(
        text.starts_with("replayed 3 requests: 1 newly denied, 1 newly allowed, 1 unchanged"),
        "{text}"
    );
    assert!(
        text.contains("policies newly denying: scale-freeze (1)"),
        "{text}"
    );
    assert!(
        text.contains("policies no longer denying: prod-sync-platform-only (1)"),
        "{text}"
    );
    assert!(text.contains("DENIED  line 2"), "{text}");
    assert!(text.contains("[scale] by scale-freeze"), "{text}");
    assert!(text.contains("ALLOWED line 1"), "{text}");
    assert!(
        text.contains("invalid: line 4: not an audit record"),
        "{text}"
    );

    let output = replay(&log, &["--policies", candidate, "--output", "json"]);
    let report: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(report["newlyDenied"], 1);
    assert_eq!(report["newlyAllowed"], 1);
    assert_eq!(report["unchanged"], 1);
    assert_eq!(report["changes"][0]["uid"], "u-prod-sync");
    assert_eq!(report["changes"][0]["nowAllowed"], true);
    assert_eq!(report["changes"][1]["policies"], json!(["scale-freeze"]));

    // The same policies as recorded: nothing changes.
    let output = replay(&log, &[]);
    assert!(
        String::from_utf8(output)
            .unwrap()
            .starts_with("replayed 3 requests: 0 newly denied, 0 newly allowed, 3 unchanged")
    );
}

/// `guardrails <args>`: its output, and whether it succeeded.
fn guardrails(args: &[&str]) -> (bool, String, String) {
    let output = Command::cargo_bin("guardrails")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn report_shows_who_an_audit_rollout_would_deny() {
    // The whole set rolled out in audit mode: nothing is denied, everything is recorded.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut audit_mode = engine();
    audit_mode.mode = guardrails::vocabulary::Mode::Audit;
    let state = AppState::with_audit(audit_mode, AuditLog::file(&log, true, 1 << 20).unwrap());
    for review in traffic() {
        send(&state, &review).await;
    }
    drop(state);
    let lines = records(&log);
    assert!(lines.iter().all(|r| r["allowed"] == true));
    assert_eq!(
        lines[0]["placement"]["environments"],
        json!(["prod"]),
        "{:#}",
        lines[0]
    );
    let log = log.to_str().unwrap();

    let (ok, text, _) = guardrails(&["report", "--log", log]);
    assert!(ok);
    assert!(
        text.starts_with("1 of 3 request(s) would be denied (matches of policies that declare enforce); 0 were denied."),
        "{text}"
    );
    assert!(
        text.contains("prod-sync-platform-only  payments  bob@example.com  1         0       1"),
        "{text}"
    );

    // Grouped by other keys, as JSON (--as-enforced counts audit-declared matches too; the unit
    // tests show the difference).
    let (_, json_text, _) = guardrails(&[
        "report",
        "--log",
        log,
        "--as-enforced",
        "--by",
        "policy,environment",
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(report["wouldDeny"], 1, "{report:#}");
    assert_eq!(report["asEnforced"], true);
    assert_eq!(
        report["groups"][0]["key"],
        json!({"policy": "prod-sync-platform-only", "environment": "prod"})
    );

    let (_, markdown, _) = guardrails(&["report", "--log", log, "--output", "markdown"]);
    assert!(
        markdown.contains("| POLICY | TEAM | PERSON | REQUESTS | DENIED | OBJECTS |"),
        "{markdown}"
    );

    let (ok, _, stderr) = guardrails(&["report", "--log", log, "--fail-on", "would-deny"]);
    assert!(!ok);
    assert!(
        stderr.contains("1 request(s) would be denied (--fail-on would-deny)"),
        "{stderr}"
    );
    let (ok, text, _) = guardrails(&[
        "report",
        "--log",
        log,
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(ok);
    assert!(text.starts_with("0 of 0 request(s)"), "{text}");

    // Replayed against the same policies enforced: the prod sync is a new denial, grouped,
    // and --fail-on new-denials gates on it.
    let (ok, text, stderr) = guardrails(&["replay", "--log", log, "--fail-on", "new-denials"]);
    assert!(!ok);
    assert!(
        stderr.contains("deny 1 request(s) the log shows allowed"),
        "{stderr}"
    );
    assert!(
        text.contains("new denials by policy, team, person:"),
        "{text}"
    );
    assert!(
        text.contains("prod-sync-platform-only  payments  bob@example.com"),
        "{text}"
    );
    let (_, json_text, _) = guardrails(&["replay", "--log", log, "--output", "json"]);
    let replayed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(replayed["changes"][0]["principal"], "bob@example.com");
    assert_eq!(replayed["changes"][0]["teams"], json!(["payments"]));
    assert_eq!(
        replayed["changes"][0]["placement"]["environments"],
        json!(["prod"])
    );
    // As enforced, the drift match counts on both sides: it was already a match, no new denial.
    let (_, json_text, _) =
        guardrails(&["replay", "--log", log, "--as-enforced", "--output", "json"]);
    let replayed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(replayed["newlyDenied"], 0, "{replayed:#}");
}
