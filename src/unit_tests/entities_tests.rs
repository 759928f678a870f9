//! Unit tests for `src/entities.rs` (kept apart so `src/` holds only shipped code).

use super::*;

#[test]
fn built_in_type_names_parse() {
    assert!(types().is_ok());
}

#[test]
fn live_namespace_labels_override_static_config() {
    let config = Config::embedded().unwrap();
    let live = NamespaceLabels::from([(
        "payments-dev".to_string(),
        [(
            "guardrails.io/environment".to_string(),
            "staging".to_string(),
        )]
        .into(),
    )]);
    let resolved = resolve_namespace(&config, &live, "payments-dev");
    assert_eq!(resolved.team.as_deref(), Some("payments"));
    assert_eq!(resolved.environment.as_deref(), Some("staging"));
}

#[test]
fn tracking_id_names_the_managing_application() {
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {TRACKING_ID_ANNOTATION: "shop:apps/Deployment:shop-prod/web"}}
    }))
    .unwrap();
    assert_eq!(managed_by(Some(&object)).as_deref(), Some("shop"));
    let labelled: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {INSTANCE_LABEL: "shop"}}
    }))
    .unwrap();
    assert_eq!(managed_by(Some(&labelled)).as_deref(), Some("shop"));
    let untracked: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}
    }))
    .unwrap();
    assert_eq!(managed_by(Some(&untracked)), None);
}
