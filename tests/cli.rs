//! The `guardrails` binary: eval prints exactly what serve answers; check and serve fail clearly.

mod common {
    pub mod command;
    pub mod engine;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod policies;
    pub mod process;
    pub mod review;
    pub mod serve;
}

use assert_cmd::Command;
use common::command::SucceedsExt;
use common::engine::engine;
use common::objects::{app_to, syncing};
use common::policies::policies;
use common::review::Review;
use common::review::User::PaymentsDev;
use common::serve::{Guardrails, Serve};
use serde_json::{Value, json};

fn guardrails() -> Command {
    Command::cargo_bin("guardrails").unwrap()
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn eval_prints_the_same_response_as_serve_and_exits_zero_on_deny() {
    let prod = app_to("payments-prod");
    let review = Review::update(&prod, &syncing(&prod, json!({}), Value::Null)).by(PaymentsDev);
    let output = guardrails()
        .args([
            "eval",
            "--policies",
            &repo("policies"),
            "--config",
            &repo("config/guardrails.yaml"),
            "--review",
            "-",
        ])
        .write_stdin(review.body())
        .succeeds();
    let printed: Value = serde_json::from_slice(&output).unwrap();
    let served = guardrails::respond::validate_review(&engine(), &review.body()).unwrap();
    assert_eq!(printed, serde_json::to_value(served.answer()).unwrap());
    assert_eq!(printed["response"]["allowed"], false);
}

#[test]
fn eval_reads_a_file_and_accepts_bare_request_fixtures() {
    let output = guardrails()
        .args(["eval", "--review", &repo("tests/fixtures/admission/kubewarden-echo-deployment-delete_accept.admissionrequest.json")])
        .succeeds();
    let printed: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(printed["response"]["allowed"], true);
    assert_eq!(printed["response"]["auditAnnotations"]["actions"], "delete");
}

#[test]
fn eval_global_audit_mode_allows() {
    let prod = app_to("payments-prod");
    let review = Review::update(&prod, &syncing(&prod, json!({}), Value::Null)).by(PaymentsDev);
    let output = guardrails()
        .args(["eval", "--mode", "audit"])
        .write_stdin(review.body())
        .succeeds();
    let printed: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(printed["response"]["allowed"], true);
    assert_eq!(
        printed["response"]["auditAnnotations"]["decision"],
        "allow-audit"
    );
}

#[test]
fn eval_rejects_a_malformed_review() {
    guardrails()
        .args(["eval"])
        .write_stdin("{\"kind\":\"AdmissionReview\"")
        .assert()
        .failure()
        .stderr(predicates::str::contains("not valid JSON"));
}

#[test]
fn broken_policy_stops_start_up_with_file_and_line() {
    let dir = policies(&[(
        "broken.cedar",
        "@id(\"broken\")\nforbid (principal, action == Action::\"sync\", resource)\nwhen { resource.nope == 1 };\n",
    )]);
    let dir_arg = dir.path().to_str().unwrap();
    guardrails()
        .args(["check", dir_arg])
        .assert()
        .failure()
        .stderr(predicates::str::contains("broken.cedar:3:"))
        .stderr(predicates::str::contains("policy broken"));
    guardrails()
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--policies",
            dir_arg,
        ])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("broken.cedar:3:"));
}

#[test]
fn check_accepts_the_shipped_policies() {
    guardrails()
        .args([
            "check",
            &repo("policies"),
            "--config",
            &repo("config/guardrails.yaml"),
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("policies valid"));
}

#[test]
fn config_typo_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "mode: enforce\ndelegator: []\n").unwrap();
    guardrails()
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("unknown field `delegator`"));
}

#[test]
fn serve_without_tls_refuses_to_start() {
    guardrails()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("TLS is required"));
}

#[test]
fn unreadable_certificate_is_a_clear_error() {
    guardrails()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
        ])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("/nonexistent/tls.crt"));
}

#[test]
fn shipped_policy_tests_pass() {
    let output = guardrails().args(["test", &repo("policies")]).succeeds();
    let text = String::from_utf8(output).unwrap();
    let summary = text.lines().last().unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 20, "{summary}");
    // Every shipped forbid policy is exercised by at least one case on its denying side.
    for id in [
        "prod-sync-platform-only",
        "prod-no-prune-or-force",
        "app-delete-platform-only",
        "team-owns-namespace",
        "prod-gitops-drift",
    ] {
        let tests = std::fs::read_dir(repo("policies/tests"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .collect::<String>();
        assert!(
            tests.contains(&format!("policies: [{id}")) || tests.contains(&format!(", {id}]")),
            "{id} untested"
        );
    }
}

#[test]
fn a_failing_policy_test_fails_the_run_and_says_why() {
    let dir = policies(&[(
        "tests/wrong.yaml",
        "cases:\n  - name: expects the wrong thing\n    oldObject: manifests/app-payments-prod.yaml\n    patch: {operation: {sync: {}}}\n    user: bob@example.com\n    groups: [payments-devs]\n    expect: {allowed: true}\n",
    )]);
    guardrails()
        .args(["test", dir.path().to_str().unwrap()])
        .assert()
        .failure()
        .stdout(predicates::str::contains("FAIL"))
        .stdout(predicates::str::contains("expects the wrong thing"))
        .stdout(predicates::str::contains("expected allowed, got denied"))
        .stdout(predicates::str::contains(" passed, 1 failed"));
}

#[test]
fn eval_from_manifests_explains_the_decision() {
    let manifests = repo("policies/tests/manifests");
    guardrails()
        .args([
            "eval",
            "-f",
            &format!("{manifests}/deployment-payments-prod.yaml"),
            "--operation",
            "DELETE",
            "--as",
            "dana@example.com",
            "--as-group",
            "storefront-devs",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("actions:    delete"))
        .stdout(predicates::str::contains("teams: storefront"))
        .stdout(predicates::str::contains(
            "team-owns-namespace on delete: enforce",
        ))
        .stdout(predicates::str::contains("decision:   DENIED (403)"));
    let output = guardrails()
        .args([
            "eval",
            "-f",
            &format!("{manifests}/deployment-payments-prod.yaml"),
            "--old",
            &format!("{manifests}/deployment-payments-prod.yaml"),
            "--subresource",
            "scale",
            "--as",
            "bob@example.com",
            "--as-group",
            "payments-devs",
            "--output",
            "json",
        ])
        .succeeds();
    let printed: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(printed["response"]["allowed"], true);
    // A person's scale to the same count changes nothing, and is still a person's write: never
    // bookkeeping, which is automation's alone.
    assert_eq!(printed["response"]["auditAnnotations"]["actions"], "update");
}

#[test]
fn check_warns_about_names_the_config_never_defines_and_deny_warnings_fails() {
    let dir = policies(&[(
        "typo.cedar",
        "@id(\"typo\")\n@reason(\"r\")\nforbid (principal, action == Action::\"sync\", resource in Environment::\"prd\")\nunless { principal in Team::\"platfrom\" };\n",
    )]);
    let dir_arg = dir.path().to_str().unwrap();
    guardrails()
        .args(["check", dir_arg])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "warning: typo.cedar:1: policy typo: Environment::\"prd\" is not defined",
        ))
        .stdout(predicates::str::contains(
            "Team::\"platfrom\" is not defined",
        ))
        .stdout(predicates::str::contains("2 warning(s)"));
    guardrails()
        .args(["check", dir_arg, "--deny-warnings"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("--deny-warnings"));
}

#[test]
fn shipped_policies_are_formatted() {
    guardrails()
        .args(["fmt", "--check", &repo("policies")])
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "@id(\"a\")\npermit(principal,action,resource);\n",
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    guardrails()
        .args(["fmt", "--check", dir_arg])
        .assert()
        .failure()
        .stdout(predicates::str::contains("would reformat"));
    guardrails().args(["fmt", dir_arg]).assert().success();
    guardrails()
        .args(["fmt", "--check", dir_arg])
        .assert()
        .success();
}

#[test]
fn certs_writes_a_ca_and_serving_pair_and_prints_the_ca_bundle() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let output = guardrails()
        .args([
            "certs",
            "--service",
            "guardrails",
            "--namespace",
            "guardrails-system",
            "--out",
            out.to_str().unwrap(),
        ])
        .succeeds();
    let bundle = String::from_utf8(output).unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(ca, std::fs::read(out.join("ca.crt")).unwrap());
    // The pair is usable as the server's TLS configuration.
    guardrails::server::tls::load_server_config(&out.join("tls.crt"), &out.join("tls.key"))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key must not be readable by others");
    }
}

#[test]
fn certs_writes_the_new_ca_key_and_reuses_an_existing_ca() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let out_arg = out.to_str().unwrap();
    let base = [
        "certs",
        "--service",
        "gr",
        "--namespace",
        "ns",
        "--out",
        out_arg,
    ];
    let first = guardrails().args(base).succeeds();
    let ca = std::fs::read_to_string(out.join("ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(out.join("ca.key")).unwrap();
    let first_leaf = std::fs::read_to_string(out.join("tls.crt")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the CA key must not be readable by others");
    }
    // Rotation: the same CA signs a new pair; the CA bundle printed is the same.
    let (ca_cert_arg, ca_key_arg) = (
        out.join("ca.crt").display().to_string(),
        out.join("ca.key").display().to_string(),
    );
    let second = guardrails()
        .args(base)
        .args(["--ca-cert", &ca_cert_arg, "--ca-key", &ca_key_arg])
        .succeeds();
    assert_eq!(first, second, "the same CA bundle");
    assert_eq!(std::fs::read_to_string(out.join("ca.crt")).unwrap(), ca);
    assert_eq!(std::fs::read_to_string(out.join("ca.key")).unwrap(), ca_key);
    let leaf = std::fs::read_to_string(out.join("tls.crt")).unwrap();
    assert_ne!(leaf, first_leaf, "a new serving certificate");
    let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.as_bytes()).unwrap();
    guardrails::server::tls::verify_server_cert(
        &der,
        &ca,
        "gr.ns.svc",
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap();
    guardrails::server::tls::load_server_config(&out.join("tls.crt"), &out.join("tls.key"))
        .unwrap();
    // A key that is not the CA's, a certificate that is not a CA, and a CA that expires first are
    // refused.
    let other = dir.path().join("other");
    guardrails()
        .args(["certs", "--service", "x", "--namespace", "y", "--out"])
        .arg(&other)
        .succeeds();
    let other_key = other.join("ca.key").display().to_string();
    let leaf_as_ca = other.join("tls.crt").display().to_string();
    let leaf_key = other.join("tls.key").display().to_string();
    for (cert, key, expected) in [
        (ca_cert_arg.as_str(), other_key.as_str(), "does not verify"),
        (leaf_as_ca.as_str(), leaf_key.as_str(), "is not a CA"),
    ] {
        guardrails()
            .args(base)
            .args(["--ca-cert", cert, "--ca-key", key])
            .assert()
            .failure()
            .stderr(predicates::str::contains(expected));
    }
    guardrails()
        .args(base)
        .args([
            "--ca-cert",
            &ca_cert_arg,
            "--ca-key",
            &ca_key_arg,
            "--days",
            "4000",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "before the new certificate would",
        ));
    // --ca-cert needs --ca-key.
    guardrails()
        .args(base)
        .args(["--ca-cert", &ca_cert_arg])
        .assert()
        .failure();
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("guardrails"));
    command.args(["serve", "--shutdown-delay", "500ms"]);
    let mut served = Guardrails::start(Serve {
        command,
        probes: false,
        dev_ca: Some(&ca),
        log: None,
    });
    // The start-up banner is on stderr, with the logs (stdout is the audit log's); the readers
    // are dropped right away: closed pipes must not stop the server.
    drop(served.child.stdout.take());
    let banner = BufReader::new(served.child.stderr.take().unwrap())
        .lines()
        .take(100)
        .map_while(Result::ok)
        .find(|line| line.contains("development certificate"));
    assert!(banner.is_some(), "no --dev banner on stderr");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Process, Stdio};
    // Far more output than a pipe buffers, so the command is still writing when the reader leaves.
    let case = "  - name: a platform engineer may sync prod, padded to make the output long enough to fill a pipe\n    oldObject: manifests/app-payments-prod.yaml\n    patch: {operation: {sync: {}}}\n    user: admin@example.com\n    expect: {allowed: true}\n";
    let dir = policies(&[("tests/many.yaml", &format!("cases:\n{}", case.repeat(1500)))]);
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("guardrails"))
        .args(["test", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("policies "),
        "the set used comes first: {first}"
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn check_warns_where_the_config_and_namespace_labels_disagree() {
    // `kubectl get namespaces -o json`: payments-prod labelled dev (the config says prod),
    // storefront-dev agreeing, checkout unknown to the config.
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments-prod",
                "labels": {"guardrails.io/team": "payments", "guardrails.io/environment": "dev"}}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "storefront-dev",
                "labels": {"guardrails.io/team": "storefront", "guardrails.io/environment": "dev"}}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "checkout",
                "labels": {"guardrails.io/team": "payments"}}},
        ],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("namespaces.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let stdout = guardrails()
        .args(["check", &repo("policies"), "--namespaces", file])
        .succeeds();
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout.contains(
            "warning: namespace payments-prod: the config says environment \"prod\", its label guardrails.io/environment says \"dev\"; the label wins (namespaceLabels.precedence: labels)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
    guardrails()
        .args([
            "check",
            &repo("policies"),
            "--namespaces",
            file,
            "--deny-warnings",
        ])
        .assert()
        .failure();
    // With the config authoritative, the same disagreement says the config wins.
    let stdout = guardrails()
        .args([
            "check",
            &repo("policies"),
            "--config",
            &repo("policies/tests/manifests/config-authoritative.yaml"),
            "--namespaces",
            file,
        ])
        .succeeds();
    assert!(
        String::from_utf8(stdout)
            .unwrap()
            .contains("the config wins (namespaceLabels.precedence: config)")
    );
    // Anything but Namespaces is refused, naming what it found.
    std::fs::write(
        dir.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
    )
    .unwrap();
    guardrails()
        .args([
            "check",
            &repo("policies"),
            "--namespaces",
            dir.path().join("pod.yaml").to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "expected Namespaces or a List of them, found kind \"Pod\"",
        ));
}

#[test]
fn eval_decides_every_document_prints_reviews_and_fails_on_deny_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.yaml");
    let prod = std::fs::read_to_string(repo(
        "policies/tests/manifests/namespace-payments-prod.yaml",
    ))
    .unwrap();
    let dev = std::fs::read_to_string(repo("policies/tests/manifests/namespace-checkout-dev.yaml"))
        .unwrap();
    std::fs::write(&file, format!("{prod}---\n{dev}")).unwrap();
    let file = file.to_str().unwrap();
    let as_bob = [
        "--operation",
        "DELETE",
        "--as",
        "bob@example.com",
        "--as-group",
        "payments-devs",
    ];

    // Both documents decided, in order; exit 0 without --fail-on-deny.
    let mut args = vec!["eval", "-f", file, "--output", "json"];
    args.extend(as_bob);
    let printed: Value = serde_json::from_slice(&guardrails().args(&args).succeeds()).unwrap();
    let answers = printed.as_array().expect("an array for two documents");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0]["response"]["allowed"], false);
    assert_eq!(answers[1]["response"]["allowed"], true);

    let mut args = vec!["eval", "-f", file, "--fail-on-deny"];
    args.extend(as_bob);
    guardrails()
        .args(&args)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "1 of 2 request(s) denied (--fail-on-deny)",
        ));

    // --print-review writes what it would decide; deciding that file gives the same answer.
    let mut args = vec!["eval", "-f", file, "--print-review"];
    args.extend(as_bob);
    let reviews = String::from_utf8(guardrails().args(&args).succeeds()).unwrap();
    let first = reviews.lines().next().unwrap();
    let review: Value = serde_json::from_str(first).unwrap();
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["request"]["operation"], "DELETE");
    let saved = dir.path().join("review.json");
    std::fs::write(&saved, first).unwrap();
    let answer: Value = serde_json::from_slice(
        &guardrails()
            .args(["eval", "--review", saved.to_str().unwrap()])
            .succeeds(),
    )
    .unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");

    // --old pairs with one object only.
    guardrails()
        .args([
            "eval",
            "-f",
            file,
            "--old",
            &repo("policies/tests/manifests/namespace-payments-prod.yaml"),
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "with --old, -f must hold the one object it replaces",
        ));
}

#[test]
fn test_reports_junit_json_filters_and_uncovered_policies() {
    // A forbid no case exercises, and a failing case whose name needs escaping in XML.
    let dir = policies(&[
        (
            "freeze.cedar",
            "@id(\"freeze-rollouts\")\n@reason(\"Frozen.\")\nforbid (principal, action == Action::\"retry\", resource);\n",
        ),
        (
            "tests/broken.yaml",
            "cases:\n  - name: \"expects <the impossible> & more\"\n    oldObject: manifests/deployment-payments-prod.yaml\n    patch: {spec: {replicas: 1}}\n    user: admin@example.com\n    expect: {allowed: false}\n",
        ),
    ]);
    let dir_arg = dir.path().to_str().unwrap();

    let output = guardrails()
        .args(["test", dir_arg, "--output", "junit"])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let xml = String::from_utf8(output).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"expects &lt;the impossible&gt; &amp; more\">"),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"expected denied, got allowed\">"),
        "{xml}"
    );

    // --run selects by name; the uncovered list is only reported over a whole run.
    let json: Value = serde_json::from_slice(
        &guardrails()
            .args([
                "test",
                dir_arg,
                "--output",
                "json",
                "--run",
                "prod namespace",
            ])
            .succeeds(),
    )
    .unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    assert!(
        cases
            .iter()
            .all(|c| c["name"].as_str().unwrap().contains("prod namespace"))
    );
    assert_eq!(json["uncovered"], json!([]));

    std::fs::remove_file(dir.path().join("tests/broken.yaml")).unwrap();
    let stdout = String::from_utf8(guardrails().args(["test", dir_arg]).succeeds()).unwrap();
    assert!(
        stdout.contains("no case matched: freeze-rollouts"),
        "{stdout}"
    );
    guardrails()
        .args(["test", dir_arg, "--fail-uncovered"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "matched by no case (--fail-uncovered): freeze-rollouts",
        ));
}

#[test]
fn init_writes_a_starter_folder_that_check_and_test_pass() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("my-policies");
    let dir_arg = dir.to_str().unwrap();
    let stdout = String::from_utf8(guardrails().args(["init", dir_arg]).succeeds()).unwrap();
    assert!(stdout.contains("next:"), "{stdout}");
    let config = dir.join("config.yaml");
    let config = config.to_str().unwrap();
    let checked = String::from_utf8(
        guardrails()
            .args(["check", dir_arg, "--config", config, "--deny-warnings"])
            .succeeds(),
    )
    .unwrap();
    assert!(checked.contains("2 policies valid"), "{checked}");
    let tested = String::from_utf8(
        guardrails()
            .args(["test", dir_arg, "--config", config, "--fail-uncovered"])
            .succeeds(),
    )
    .unwrap();
    assert!(tested.contains("2 passed, 0 failed"), "{tested}");
    // Never over an existing folder's files.
    guardrails()
        .args(["init", dir_arg])
        .assert()
        .failure()
        .stderr(predicates::str::contains("exists and is not empty"));
}

#[test]
fn every_command_reads_policies_by_one_rule_and_names_the_set() {
    // ./policies when it holds a schema; else the built-in set; --policies (or DIR) wins.
    let work = tempfile::tempdir().unwrap();
    let local = policies(&[(
        "freeze.cedar",
        "@id(\"freeze\")\n@reason(\"Frozen.\")\nforbid (principal, action == Action::\"retry\", resource);\n",
    )]);
    std::fs::rename(local.path(), work.path().join("policies")).unwrap();
    let in_work = |args: &[&str]| {
        let mut command = guardrails();
        command.current_dir(work.path()).args(args);
        String::from_utf8(command.succeeds()).unwrap()
    };
    assert!(in_work(&["check"]).contains("policies: 13 policies valid"));
    let evaluated = in_work(&[
        "eval",
        "-f",
        &repo("policies/tests/manifests/namespace-checkout-dev.yaml"),
    ]);
    assert!(
        evaluated.contains("\npolicies policies sha256:"),
        "{evaluated}"
    );
    assert!(in_work(&["test"]).starts_with("policies policies sha256:"));

    let empty = tempfile::tempdir().unwrap();
    let in_empty = |args: &[&str]| {
        let mut command = guardrails();
        command.current_dir(empty.path()).args(args);
        command
    };
    let checked = String::from_utf8(in_empty(&["check"]).succeeds()).unwrap();
    assert!(
        checked.starts_with("(embedded policies/): 12 policies valid"),
        "{checked}"
    );
    let checked = String::from_utf8(
        in_empty(&[
            "check",
            "--policies",
            work.path().join("policies").to_str().unwrap(),
        ])
        .succeeds(),
    )
    .unwrap();
    assert!(checked.contains("13 policies valid"), "{checked}");
    in_empty(&["fmt"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "fmt formats files: give a policy folder",
        ));
    in_empty(&["test"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("carry no test files"));
}

#[test]
fn argocd_explain_puts_both_gates_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let csv = payments_dev_rbac(dir.path());
    let explain = |action: &str, extra: &[&str]| {
        let mut args = vec![
            "argocd",
            "explain",
            action,
            "-f",
            "policies/tests/manifests/app-payments-prod.yaml",
            "--as",
            "bob@example.com",
            "--as-group",
            "payments-devs",
            "--rbac",
            csv.to_str().unwrap(),
        ];
        args.extend(extra);
        let mut command = guardrails();
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args(&args);
        String::from_utf8(command.succeeds()).unwrap()
    };
    let sync = explain("sync", &[]);
    assert!(
        sync.contains(
            "Argo CD RBAC: allowed (bob@example.com, applications, sync, payments/payments)"
        ),
        "{sync}"
    );
    assert!(
        sync.contains("policy.csv line 1: p, role:payments-dev"),
        "{sync}"
    );
    assert!(
        sync.contains("Guardrails: deny (UPDATE payments as bob@example.com: sync)"),
        "{sync}"
    );
    assert!(
        sync.contains("the UI allows what Guardrails denies"),
        "{sync}"
    );

    // A person-less edit: Guardrails sees argocd-server only.
    let label = explain("update", &[]);
    assert!(
        label.contains("as system:serviceaccount:argocd:argocd-server: update"),
        "{label}"
    );
    assert!(
        label.contains("Argo CD's RBAC is the only gate on who"),
        "{label}"
    );
    let retarget = explain(
        "update",
        &["--change", r#"{"spec":{"source":{"targetRevision":"v2"}}}"#],
    );
    assert!(
        retarget.contains("[prod-app-changes-through-git]"),
        "{retarget}"
    );

    // Another team: Argo CD stops it first.
    let dana = {
        let mut command = guardrails();
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "argocd",
            "explain",
            "sync",
            "-f",
            "policies/tests/manifests/app-payments-prod.yaml",
            "--as",
            "dana@example.com",
            "--as-group",
            "storefront-devs",
            "--rbac",
            csv.to_str().unwrap(),
        ]);
        String::from_utf8(command.succeeds()).unwrap()
    };
    assert!(dana.contains("Argo CD RBAC: denied"), "{dana}");
    assert!(dana.contains("both deny"), "{dana}");
}

#[test]
fn argocd_check_finds_confusing_buttons_and_unattributed_prod_changes() {
    let dir = tempfile::tempdir().unwrap();
    let csv = payments_dev_rbac(dir.path());
    let run = |extra: &[&str]| {
        let mut command = guardrails();
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "argocd",
            "check",
            "--rbac",
            csv.to_str().unwrap(),
            "--applications",
            "policies/tests/manifests/app-payments-prod.yaml",
        ]);
        command.args(extra);
        command
    };
    let report: Value = serde_json::from_slice(&run(&["--output", "json"]).succeeds()).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let has = |severity: &str, person: &str, action: &str| {
        findings
            .iter()
            .any(|f| f["severity"] == severity && f["person"] == person && f["action"] == action)
    };
    assert!(has("confusing", "bob@example.com", "sync"), "{report:#}");
    assert!(has("confusing", "bob@example.com", "delete"), "{report:#}");
    assert!(has("hole", "bob@example.com", "update"), "{report:#}");
    // argocd-server passes no groups on: a member known only by group is in no team.
    assert!(
        findings
            .iter()
            .any(|f| f["person"] == "member-of:payments-devs"
                && f["policies"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("team-owns-namespace"))),
        "{report:#}"
    );
    // Nobody else is granted anything: no finding for storefront or platform people.
    assert!(
        findings
            .iter()
            .all(|f| f["groups"] == json!(["payments-devs"])),
        "{report:#}"
    );
    run(&["--fail-on", "hole"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("finding(s) (--fail-on Hole)"));
}

#[test]
fn argocd_generate_writes_rbac_that_check_finds_nothing_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argocd");
    guardrails()
        .args(["argocd", "generate", "--out", out.to_str().unwrap()])
        .succeeds();
    let rbac = out.join("argocd-rbac-cm.yaml");
    let text = std::fs::read_to_string(&rbac).unwrap();
    assert!(
        text.contains("p, role:team-payments, applications, sync, payments-dev/*, allow"),
        "{text}"
    );
    assert!(
        !text.contains("p, role:team-payments, applications, sync, payments-prod/*"),
        "{text}"
    );
    assert!(
        text.contains("g, bob@example.com, role:team-payments"),
        "{text}"
    );
    // An Application in every generated project, deploying into one of its namespaces.
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    for entry in std::fs::read_dir(out.join("projects")).unwrap() {
        let path = entry.unwrap().path();
        let project: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = project["metadata"]["name"].as_str().unwrap();
        let namespace = project["spec"]["destinations"][0]["namespace"]
            .as_str()
            .unwrap();
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": format!("app-{name}"), "namespace": "argocd"},
            "spec": {
                "project": name,
                "source": {"repoURL": "https://git.example.com/apps.git", "path": name, "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            },
        });
        std::fs::write(apps.join(format!("{name}.json")), app.to_string()).unwrap();
    }
    let report: Value = serde_json::from_slice(
        &guardrails()
            .args([
                "argocd",
                "check",
                "--output",
                "json",
                "--rbac",
                rbac.to_str().unwrap(),
                "--projects",
                out.join("projects").to_str().unwrap(),
                "--applications",
                apps.to_str().unwrap(),
            ])
            .succeeds(),
    )
    .unwrap();
    assert!(report["checked"].as_u64().unwrap() >= 60, "{report:#}");
    assert_eq!(report["findings"], json!([]), "{report:#}");
}

#[test]
fn argocd_check_lints_rbac_that_does_not_do_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let config_map = dir.path().join("argocd-rbac-cm.yaml");
    std::fs::write(
        &config_map,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-rbac-cm}\ndata:\n  policy.default: role:admin\n  policy.csv: |\n    p, my-org:payments, applications, sync, payments/*, allow\n    p, role:nodelete, applications, delete, */*, deny\n    g, payments-devs, role:nodelete\n",
    )
    .unwrap();
    let mut command = guardrails();
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "argocd",
        "check",
        "--output",
        "json",
        "--rbac",
        config_map.to_str().unwrap(),
        "--applications",
        "policies/tests/manifests/app-payments-prod.yaml",
    ]);
    let report: Value = serde_json::from_slice(&command.succeeds()).unwrap();
    let lints: Vec<&str> = report["lints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let has = |needle: &str| lints.iter().any(|l| l.contains(needle));
    assert!(has("no `g, my-org:payments, role:…` line"), "{lints:#?}");
    assert!(has("argo-cd#17547"), "{lints:#?}");
    assert!(
        has("policy.default (role:admin) allows `delete`"),
        "{lints:#?}"
    );
    // role:admin for everyone: every write the UI allows is a finding somewhere.
    assert!(
        !report["findings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

/// A `policy.csv` letting the payments developers do anything to the `payments` project's
/// Applications in Argo CD: what `argocd explain` and `check` compare Guardrails with.
fn payments_dev_rbac(dir: &std::path::Path) -> std::path::PathBuf {
    let csv = dir.join("policy.csv");
    std::fs::write(
        &csv,
        "p, role:payments-dev, applications, *, payments/*, allow\ng, payments-devs, role:payments-dev\n",
    )
    .unwrap();
    csv
}
