//! Unit tests for `src/policy/` (kept apart so `src/` holds only shipped code).

use std::str::FromStr;

use super::slice::required_team;
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
    assert_eq!(drift.enforcement, Mode::Enforce);
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
fn annotations_are_checked_like_code_with_the_line_and_a_hint() {
    // The second policy of the file: its annotation's own line, not the file's first.
    let text = "@id(\"x\")\n@reason(\"r\")\nforbid (principal, action, resource);\n\n\
                @id(\"y\")\n@reason(\"r\")\n@enforcment(\"audit\")\nforbid (principal, action, resource);\n";
    let Err(PolicyError::Invalid(diagnostics)) = with_policy("typo.cedar", text) else {
        panic!("an unknown annotation must stop the load");
    };
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let diagnostic = &diagnostics[0];
    assert_eq!((diagnostic.line, diagnostic.column), (7, 1), "{diagnostic}");
    assert_eq!(diagnostic.policy_id.as_deref(), Some("y"));
    assert!(
        diagnostic
            .message
            .contains("unknown annotation @enforcment (Guardrails reads @id, @reason and @enforcement); did you mean @enforcement?"),
        "{diagnostic}"
    );

    for (value, hint) in [
        ("Audit", Some("audit")),
        ("warning", Some("warn")),
        ("block", None),
    ] {
        let text = format!(
            "@id(\"y\")\n@reason(\"r\")\n@enforcement(\"{value}\")\nforbid (principal, action, resource);\n"
        );
        let Err(PolicyError::Invalid(diagnostics)) = with_policy("enf.cedar", &text) else {
            panic!("@enforcement({value:?}) must stop the load");
        };
        let message = &diagnostics[0].message;
        assert!(
            message.contains(&format!("unknown mode \"{value}\"")),
            "{message}"
        );
        match hint {
            Some(hint) => assert!(
                message.ends_with(&format!("did you mean \"{hint}\"?")),
                "{message}"
            ),
            None => assert!(!message.contains("did you mean"), "{message}"),
        }
        assert_eq!(diagnostics[0].line, 3);
    }
}

#[test]
fn a_policy_without_id_is_located_at_its_start() {
    let text = "@id(\"x\")\n@reason(\"r\")\nforbid (principal, action, resource);\n\n@reason(\"r\")\nforbid (principal, action, resource);\n";
    let store = with_policy("anon.cedar", text).unwrap();
    let warning = store
        .warnings
        .iter()
        .find(|w| w.message.contains("no @id"))
        .expect("a warning for the policy without @id");
    assert_eq!(warning.line, 5, "{warning}");
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
    let error = PolicyStore::from_sources([("a.cedar", "// no policies")], "dir").unwrap_err();
    assert!(
        error.to_string().contains("schema file is missing"),
        "{error}"
    );
}

/// The shipped files without `default.cedar`, plus `extra` as `extra.cedar`.
fn without_default(extra: &str) -> PolicyStore {
    let mut sources: Vec<(&str, &str)> = EMBEDDED_POLICIES
        .iter()
        .copied()
        .filter(|(name, _)| *name != "default.cedar")
        .collect();
    sources.push(("extra.cedar", extra));
    PolicyStore::from_sources(sources, "test").unwrap()
}

/// Every action requests are made for (the schema's actions with `appliesTo`).
fn requested_actions(store: &PolicyStore) -> Vec<String> {
    let mut actions: Vec<String> = store
        .schema
        .request_envs()
        .map(|env| env.action().id().unescaped().to_string())
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

#[test]
fn the_shipped_set_permits_every_action() {
    assert_eq!(
        PolicyStore::embedded().unwrap().default_denied,
        Vec::<String>::new()
    );
}

#[test]
fn without_default_cedar_every_action_is_denied_to_everyone() {
    let store = without_default("// no permits");
    let actions = requested_actions(&store);
    assert!(actions.contains(&"bookkeeping".to_string()), "{actions:?}");
    assert_eq!(store.default_denied, actions);
}

#[test]
fn a_permit_for_writes_only_leaves_controller_bookkeeping_denied() {
    let store =
        without_default("@id(\"w\")\npermit (principal, action in Action::\"write\", resource);\n");
    assert_eq!(store.default_denied, ["bookkeeping"]);
}

#[test]
fn a_permit_for_people_only_leaves_service_accounts_denied() {
    let store = without_default("@id(\"u\")\npermit (principal is User, action, resource);\n");
    assert!(
        store.default_denied.contains(
            &"bookkeeping (ServiceAccount on AppProject, ServiceAccount on Application, ServiceAccount on ApplicationSet, ServiceAccount on Deployment, ServiceAccount on Rollout)"
                .to_string()
        ),
        "{:?}",
        store.default_denied
    );
    assert!(
        store
            .default_denied
            .contains(&"sync (ServiceAccount on Application)".to_string()),
        "{:?}",
        store.default_denied
    );
    assert_eq!(store.default_denied.len(), requested_actions(&store).len());
}

#[test]
fn resource_scopes_narrow_what_a_permit_covers() {
    let store = without_default(
        "@id(\"d\")\npermit (principal, action, resource is Deployment);\n@id(\"r\")\npermit (principal, action, resource == Rollout::\"x\");\n@id(\"a\")\npermit (principal, action, resource in Team::\"platform\");\n",
    );
    // `in Team` can hold any Application, Deployment or Rollout: everything is covered.
    assert_eq!(store.default_denied, Vec::<String>::new());
    let store =
        without_default("@id(\"d\")\npermit (principal, action, resource is Deployment);\n");
    assert!(store.default_denied.contains(&"sync".to_string()));
    assert!(
        store
            .default_denied
            .contains(&"scale (ServiceAccount on Rollout, User on Rollout)".to_string()),
        "{:?}",
        store.default_denied
    );
}

#[test]
fn conditional_permits_count_but_impossible_ones_do_not() {
    let store = without_default(
        "@id(\"auto\")\npermit (principal in Team::\"platform\", action, resource) when { principal.automation };\n",
    );
    assert_eq!(store.default_denied, Vec::<String>::new());
    let store =
        without_default("@id(\"never\")\npermit (principal, action, resource) when { false };\n");
    assert_eq!(store.default_denied, requested_actions(&store));
}

#[test]
fn the_hash_names_the_files_and_their_contents() {
    let embedded = PolicyStore::embedded().unwrap();
    let mut reversed: Vec<(&str, &str)> = EMBEDDED_POLICIES.to_vec();
    reversed.reverse();
    assert_eq!(
        PolicyStore::from_sources(reversed, "x").unwrap().hash,
        embedded.hash
    );
    assert!(embedded.hash.starts_with("sha256:") && embedded.hash.len() == 7 + 64);
    let renamed: Vec<(&str, &str)> = EMBEDDED_POLICIES
        .iter()
        .map(|&(name, text)| {
            (
                if name == "drift.cedar" {
                    "drift2.cedar"
                } else {
                    name
                },
                text,
            )
        })
        .collect();
    assert_ne!(
        PolicyStore::from_sources(renamed, "x").unwrap().hash,
        embedded.hash
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    assert_eq!(PolicyStore::load_dir(&dir).unwrap().hash, embedded.hash);
}

#[test]
fn a_policy_is_filed_under_a_team_only_when_its_condition_requires_it_without_error() {
    let team = |text: &str| {
        let policy = Policy::from_str(text).unwrap();
        required_team(&policy).map(|uid| uid.to_string())
    };
    let t00 = Some(r#"Team::"t00""#.to_string());
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) when { resource has team && resource.team == Team::"t00" && !principal.automation };"#
        ),
        t00
    );
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) when { resource has team && Team::"t00" == resource.team } unless { principal.automation };"#
        ),
        t00
    );
    // Without the guard a resource with no team is an evaluation error (a forbid then matches):
    // it must be evaluated for every resource.
    assert_eq!(
        team(r#"forbid (principal, action, resource) when { resource.team == Team::"t00" };"#),
        None
    );
    // Something before the guard could fail to evaluate first.
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) when { context.sync.force && resource has team && resource.team == Team::"t00" };"#
        ),
        None
    );
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) unless { resource has team && resource.team == Team::"t00" };"#
        ),
        None
    );
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) when { resource has team && resource.team != Team::"t00" };"#
        ),
        None
    );
    assert_eq!(
        team(
            r#"forbid (principal, action, resource) when { resource has environment && resource.environment == Environment::"prod" };"#
        ),
        None
    );
}

#[test]
fn shipped_directory_matches_embedded_copy() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut on_disk: Vec<String> = std::fs::read_dir(&directory)
        .expect("policies/ is readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".cedar") || name.ends_with(".cedarschema"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = EMBEDDED_POLICIES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    embedded.sort();
    assert_eq!(
        embedded, on_disk,
        "EMBEDDED_POLICIES must list every file in policies/ (serve --dev and eval use them)"
    );
    for (name, text) in EMBEDDED_POLICIES {
        let file = std::fs::read_to_string(directory.join(name)).expect("policy file");
        assert_eq!(*text, file, "{name} differs from policies/{name}");
    }
}

#[test]
fn cedar_per_parse_ids_never_reach_messages() {
    let text = "@reason(\"r\")\nforbid (principal, action == Action::\"sync\", resource) when { resource.nope == 1 };\n";
    let Err(PolicyError::Invalid(diagnostics)) = with_policy("anon.cedar", text) else {
        panic!("an unknown attribute must stop the load");
    };
    let shown = diagnostics[0].to_string();
    assert!(shown.starts_with("anon.cedar:2:"), "{shown}");
    assert!(
        shown.contains("policy anon.cedar#0: attribute `nope`"),
        "{shown}"
    );
    assert!(!shown.contains("policy0"), "{shown}");
}
