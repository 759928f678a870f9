//! Unit tests for `src/config.rs` (kept apart so `src/` holds only shipped code).

use super::*;

#[test]
fn embedded_config_loads() {
    let config = Config::embedded().unwrap();
    assert!(config.is_delegator("system:serviceaccount:argocd:argocd-server"));
    assert!(config.is_automation("system:serviceaccount:argocd:argocd-application-controller"));
    assert_eq!(config.teams_of_group("payments-devs"), ["payments"]);
    assert_eq!(config.cluster_environment("prod-eu"), Some("prod"));
    assert_eq!(
        config
            .namespace("payments-prod")
            .unwrap()
            .environment
            .as_deref(),
        Some("prod")
    );
}

#[test]
fn typo_in_a_key_is_rejected_with_its_name() {
    let error = Config::from_yaml("mode: enforce\nteamz: {}\n", "t.yaml").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("teamz"), "{text}");
    assert!(text.contains("t.yaml"), "{text}");
}

#[test]
fn unknown_mode_is_rejected() {
    let error = Config::from_yaml("mode: permissive\n", "t.yaml").unwrap_err();
    assert!(error.to_string().contains("permissive"), "{error}");
}

#[test]
fn namespace_owned_by_undefined_team_is_rejected() {
    let error = Config::from_yaml("namespaces:\n  a: {team: ghosts}\n", "t.yaml").unwrap_err();
    assert!(error.to_string().contains("ghosts"), "{error}");
}

#[test]
fn a_delegator_listed_in_a_team_is_rejected() {
    let error = Config::from_yaml(
        "teams:\n  platform:\n    users: [\"system:serviceaccount:argocd:argocd-server\"]\ndelegators: [\"system:serviceaccount:argocd:argocd-server\"]\n",
        "t.yaml",
    )
    .unwrap_err();
    assert!(error.to_string().contains("delegator"), "{error}");
}

#[test]
fn tracking_method_is_read_and_checked() {
    let config = Config::from_yaml("argocd: {trackingMethod: label}\n", "t.yaml").unwrap();
    assert_eq!(config.file.argocd.tracking_method, TrackingMethod::Label);
    assert_eq!(
        config.file.argocd.instance_label_key,
        "app.kubernetes.io/instance"
    );
    let error = Config::from_yaml("argocd: {trackingMethod: labels}\n", "t.yaml").unwrap_err();
    assert!(error.to_string().contains("labels"), "{error}");
}

fn labelled(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn labels_override_key_by_key_unless_the_config_is_authoritative() {
    let yaml = "teams: {payments: {}, storefront: {}}\n\
                namespaces: {payments-prod: {team: payments, environment: prod}}\n";
    let labels_first = Config::from_yaml(yaml, "t.yaml").unwrap();
    let relabelled = labelled(&[("guardrails.io/environment", "dev")]);
    let resolved = labels_first.resolve_namespace_labelled("payments-prod", Some(&relabelled));
    assert_eq!(resolved.environment.as_deref(), Some("dev"));
    // The team label is absent: the config's team stays.
    assert_eq!(resolved.team.as_deref(), Some("payments"));
    // An empty label value places nothing.
    let empty = labelled(&[("guardrails.io/environment", "")]);
    let resolved = labels_first.resolve_namespace_labelled("payments-prod", Some(&empty));
    assert_eq!(resolved.environment.as_deref(), Some("prod"));

    let config_first = Config::from_yaml(
        &format!("{yaml}namespaceLabels: {{precedence: config}}\n"),
        "t.yaml",
    )
    .unwrap();
    let resolved = config_first.resolve_namespace_labelled("payments-prod", Some(&relabelled));
    assert_eq!(resolved.environment.as_deref(), Some("prod"));
    // A namespace the config does not name is still placed by its labels.
    let other = labelled(&[("guardrails.io/team", "storefront")]);
    let resolved = config_first.resolve_namespace_labelled("checkout", Some(&other));
    assert_eq!(resolved.team.as_deref(), Some("storefront"));

    let error = Config::from_yaml(
        &format!("{yaml}namespaceLabels: {{precedence: cluster}}\n"),
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("precedence") || error.contains("cluster"),
        "{error}"
    );
}

#[test]
fn disagreements_name_the_namespace_the_key_and_the_winner() {
    let config = Config::from_yaml(
        "teams: {payments: {}}\n\
         namespaces: {payments-prod: {team: payments, environment: prod}, payments-dev: {team: payments}}\n",
        "t.yaml",
    )
    .unwrap();
    let live = HashMap::from([
        (
            "payments-prod".to_string(),
            labelled(&[
                ("guardrails.io/team", "payments"),
                ("guardrails.io/environment", "dev"),
            ]),
        ),
        // No environment in the config: a label there adds, it does not disagree.
        (
            "payments-dev".to_string(),
            labelled(&[("guardrails.io/environment", "dev")]),
        ),
        (
            "elsewhere".to_string(),
            labelled(&[("guardrails.io/team", "x")]),
        ),
    ]);
    assert_eq!(
        config.label_disagreements(&live),
        [
            "namespace payments-prod: the config says environment \"prod\", its label guardrails.io/environment says \"dev\"; the label wins (namespaceLabels.precedence: labels)"
        ]
    );
}
