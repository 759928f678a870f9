//! Unit tests for `src/synth.rs` (kept apart so `src/` holds only shipped code).

use super::*;

fn deployment(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": replicas}})
}

#[test]
fn scale_subresource_sends_scale_objects() {
    let review = Synthetic {
        object: Some(deployment(5)),
        old_object: Some(deployment(2)),
        operation: "update".into(),
        user: "bob".into(),
        sub_resource: Some("scale".into()),
        uid: "u".into(),
        ..Default::default()
    }
    .admission_review()
    .unwrap();
    let request = &review["request"];
    assert_eq!(request["kind"]["kind"], "Scale");
    assert_eq!(request["resource"]["resource"], "deployments");
    assert_eq!(request["object"]["spec"]["replicas"], 5);
    assert_eq!(request["oldObject"]["spec"]["replicas"], 2);
    assert_eq!(request["subResource"], "scale");
}

#[test]
fn delegation_moves_the_person_into_initiated_by() {
    let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                     "metadata": {"name": "a", "namespace": "argocd"}, "operation": {"sync": {}}});
    let review = Synthetic {
        object: Some(app.clone()),
        old_object: Some(app),
        operation: "UPDATE".into(),
        user: "alice".into(),
        delegated_by: Some("system:serviceaccount:argocd:argocd-server".into()),
        ..Default::default()
    }
    .admission_review()
    .unwrap();
    assert_eq!(
        review["request"]["userInfo"]["username"],
        "system:serviceaccount:argocd:argocd-server"
    );
    assert_eq!(
        review["request"]["object"]["operation"]["initiatedBy"]["username"],
        "alice"
    );
}

#[test]
fn missing_pieces_are_clear_errors() {
    let update = Synthetic {
        object: Some(deployment(1)),
        operation: "UPDATE".into(),
        ..Default::default()
    };
    assert_eq!(
        update.admission_review(),
        Err(SynthError::Missing("UPDATE", "an old object"))
    );
    let bad = Synthetic {
        object: Some(deployment(1)),
        operation: "PATCH".into(),
        ..Default::default()
    };
    assert_eq!(
        bad.admission_review(),
        Err(SynthError::Operation("PATCH".into()))
    );
}
