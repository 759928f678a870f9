//! Unit tests for `src/policy.rs` (kept apart so `src/` holds only shipped code).

use super::*;

fn with_policy(file: &str, text: &str) -> Result<PolicyStore, PolicyError> {
    let mut sources: Vec<(&str, &str)> = EMBEDDED_POLICIES.to_vec();
    sources.push((file, text));
    PolicyStore::from_sources(sources, "test")
}

#[test]
fn shipped_policies_load_with_ids_and_reasons() {
    let store = PolicyStore::embedded().unwrap();
    let ids: Vec<&str> = store.policies_meta().map(|m| m.id.as_str()).collect();
    for expected in [
        "default-allow",
        "prod-sync-platform-only",
        "prod-no-prune-or-force",
        "app-delete-platform-only",
        "team-owns-namespace",
        "prod-gitops-drift",
    ] {
        assert!(ids.contains(&expected), "{expected} missing from {ids:?}");
    }
    for meta in store.policies_meta() {
        assert!(meta.reason.is_some(), "{} has no @reason", meta.id);
        assert!(meta.line > 0, "{} has no line", meta.id);
    }
    let drift = store.meta(&PolicyId::new("prod-gitops-drift")).unwrap();
    assert_eq!(drift.enforcement, Mode::Audit);
}

#[test]
fn syntax_error_is_reported_with_file_and_line() {
    let error = with_policy(
        "broken.cedar",
        "\n\nforbid (principal, action, resource)\nwhen { principal.name == };\n",
    )
    .unwrap_err();
    let PolicyError::Invalid(diagnostics) = error else {
        panic!("expected diagnostics")
    };
    assert_eq!(diagnostics[0].file, "broken.cedar");
    assert_eq!(diagnostics[0].line, 4, "{diagnostics:?}");
}

#[test]
fn schema_violation_is_reported_with_policy_id_and_line() {
    let text = "// header\n@id(\"bad-attr\")\nforbid (principal, action == Action::\"sync\", resource)\nwhen { resource.replicas > 3 };\n";
    let error = with_policy("bad.cedar", text).unwrap_err();
    let rendered = error.to_string();
    assert!(rendered.contains("bad.cedar:4:"), "{rendered}");
    assert!(rendered.contains("policy bad-attr"), "{rendered}");
}

#[test]
fn unknown_action_is_rejected() {
    let text = "@id(\"x\")\nforbid (principal, action == Action::\"syncc\", resource);\n";
    let error = with_policy("typo.cedar", text).unwrap_err();
    assert!(error.to_string().contains("typo.cedar:2:"), "{error}");
}

#[test]
fn duplicate_ids_are_renamed_with_a_warning() {
    let text = "\n@id(\"default-allow\")\npermit (principal, action, resource);\n";
    let store = with_policy("dup.cedar", text).unwrap();
    let warning = store
        .warnings
        .iter()
        .find(|w| w.message.contains("duplicate @id"))
        .unwrap();
    assert_eq!((warning.file.as_str(), warning.line), ("dup.cedar", 2));
    assert!(
        store
            .meta(&PolicyId::new("default-allow#dup.cedar:2"))
            .is_some()
    );
}

#[test]
fn unknown_enforcement_warns_and_enforces() {
    let text = "@id(\"y\")\n@reason(\"r\")\n@enforcement(\"block\")\nforbid (principal, action, resource);\n";
    let store = with_policy("enf.cedar", text).unwrap();
    assert!(
        store
            .warnings
            .iter()
            .any(|w| w.message.contains("\"block\"")),
        "{:?}",
        store.warnings
    );
    assert_eq!(
        store.meta(&PolicyId::new("y")).unwrap().enforcement,
        Mode::Enforce
    );
}

#[test]
fn missing_id_and_reason_and_impossible_policies_warn() {
    let text = "forbid (principal, action == Action::\"sync\", resource is Deployment);\n";
    let store = with_policy("w.cedar", text).unwrap();
    let messages: Vec<&str> = store.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("no @id")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("without @reason")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("impossible") || m.contains("never")),
        "{messages:?}"
    );
}

#[test]
fn shipped_policies_have_no_warnings() {
    assert_eq!(PolicyStore::embedded().unwrap().warnings, []);
}

#[test]
fn missing_schema_is_an_error() {
    let error = PolicyStore::from_sources([("a.cedar", "")], "dir").unwrap_err();
    assert!(
        error.to_string().contains("schema file is missing"),
        "{error}"
    );
}

#[test]
fn shipped_directory_matches_embedded_copy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let from_disk = PolicyStore::load_dir(&dir).unwrap();
    assert_eq!(
        from_disk.policy_count(),
        PolicyStore::embedded().unwrap().policy_count()
    );
}
