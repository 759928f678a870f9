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
    let annotation = ArgoCdConfig::default();
    assert_eq!(
        managed_by(Some(&object), &annotation).as_deref(),
        Some("shop")
    );
    let untracked: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}
    }))
    .unwrap();
    assert_eq!(managed_by(Some(&untracked), &annotation), None);
}

#[test]
fn the_instance_label_tracks_only_with_label_tracking() {
    // Every Helm chart sets app.kubernetes.io/instance: with Argo CD's default (annotation)
    // tracking it says nothing about Argo CD.
    let labelled: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/instance": "shop"}}
    }))
    .unwrap();
    assert_eq!(managed_by(Some(&labelled), &ArgoCdConfig::default()), None);
    let by_label = ArgoCdConfig {
        tracking_method: TrackingMethod::Label,
        ..ArgoCdConfig::default()
    };
    assert_eq!(
        managed_by(Some(&labelled), &by_label).as_deref(),
        Some("shop")
    );
    let custom_key = ArgoCdConfig {
        tracking_method: TrackingMethod::Label,
        instance_label_key: "argocd.argoproj.io/instance".into(),
    };
    assert_eq!(managed_by(Some(&labelled), &custom_key), None);
}
