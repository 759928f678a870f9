//! The objects reviews are built around: a real Application, edited.

use serde_json::{Value, json};

use super::fixtures::fixture;
use super::json::set;

/// `value` with each pointer set (`null` removes the key).
pub fn with(mut value: Value, changes: &[(&str, Value)]) -> Value {
    for (pointer, new) in changes {
        set(&mut value, pointer, new.clone());
    }
    value
}

/// The base Application used by the table tests: a real one, pointed at `namespace`.
pub fn app_to(namespace: &str) -> Value {
    with(
        fixture("argocd/applications/gitops-operator-nginx-app-any-namespace.yaml"),
        &[
            ("/metadata/namespace", json!("argocd")),
            ("/spec/destination/namespace", json!(namespace)),
            ("/spec/syncPolicy", Value::Null),
            (
                "/status",
                json!({"history": [
                    {"id": 1, "revision": "1111111111111111111111111111111111111111"},
                    {"id": 2, "revision": "2222222222222222222222222222222222222222"}
                ]}),
            ),
        ],
    )
}

/// `app` with a sync operation started, optionally claiming an initiator.
pub fn syncing(app: &Value, sync: Value, initiated_by: Value) -> Value {
    with(
        app.clone(),
        &[(
            "/operation",
            json!({"sync": sync, "initiatedBy": initiated_by}),
        )],
    )
}
