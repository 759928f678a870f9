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
