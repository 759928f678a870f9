//! Real Argo CD traffic, decided offline: the AdmissionReviews Argo CD v3.6.2 made the API server
//! send to Guardrails in the e2e flows (`tests/fixtures/argo-recorded/<flow>/`, written by
//! `GUARDRAILS_RECORD_ARGOCD=1 cargo test --test e2e argocd`), each with what Guardrails decided
//! then. A change to Guardrails that decides one of them differently fails here, in seconds.

use std::path::Path;

use guardrails::authoring::test_files;
use guardrails::config::Config;
use guardrails::decide::Engine;
use guardrails::policy::PolicyStore;

#[test]
fn recorded_argo_cd_traffic_is_decided_as_recorded() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo-recorded");
    let engine = Engine::new(
        PolicyStore::embedded().expect("the shipped policies"),
        Config::embedded().expect("the example config"),
        None,
    );
    let mut flows: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the recorded corpus")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("cases.yaml").is_file())
        .collect();
    flows.sort();
    assert!(flows.len() >= 20, "every Argo CD flow recorded: {flows:?}");
    let (mut decided, mut failures) = (0, Vec::new());
    for flow in flows {
        let path = flow.join("cases.yaml");
        let file = test_files::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !file.cases.is_empty(),
            "{} recorded nothing",
            path.display()
        );
        for result in test_files::run_file(&engine, &path, &file, None) {
            decided += 1;
            if !result.passed() {
                failures.push(format!("{}: {}", result.name, result.failures.join("; ")));
            }
        }
    }
    assert!(decided >= 130, "only {decided} recorded requests");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
