//! What argocd-server writes to the cluster when its RBAC allows an action on an Application,
//! as Guardrails then sees it (observed from Argo CD v3.6.2 in `tests/fixtures/argo-recorded/`;
//! code: server/application/application.go):
//!
//! | RBAC action | the write | Guardrails' principal |
//! |---|---|---|
//! | `sync` | UPDATE of the Application setting `/operation` (`initiatedBy.username`: the person, `sync.revision`, `sync.source`, `syncStrategy.hook`) | the person (argocd-server is a delegator) |
//! | `override` | the same, with a revision other than `targetRevision` | the person |
//! | `update` | UPDATE of the Application (`argocd app set`, `app patch`, a UI edit) | argocd-server itself |
//! | `delete` | DELETE of the Application (after an UPDATE adding the resources finalizer, for a cascading delete) | argocd-server itself |
//!
//! `rollback` writes a sync to a revision of `status.history`, and `action/…` patches the resource
//! the action targets: neither is modelled here.

use serde_json::{Value, json};

use super::synth::Synthetic;

/// argocd-server's own identity, as the example config names it.
pub const ARGOCD_SERVER: &str = "system:serviceaccount:argocd:argocd-server";

/// The request argocd-server would send for `action` on `app` by `person`; `Err` says why an
/// action is not modelled. `change` (a JSON merge patch) is what an `update` changes (default:
/// a label), `revision` what an `override` syncs to.
pub fn write_for(
    action: &str,
    app: &Value,
    person: &str,
    change: Option<&Value>,
    revision: Option<&str>,
) -> Result<Synthetic, String> {
    let base = Synthetic {
        user: person.to_string(),
        delegated_by: Some(ARGOCD_SERVER.to_string()),
        uid: "guardrails-argocd-explain".into(),
        ..Synthetic::default()
    };
    let spec_revision = app
        .pointer("/spec/source/targetRevision")
        .and_then(Value::as_str)
        .unwrap_or("HEAD");
    match action {
        "sync" | "override" => {
            let revision = match (action, revision) {
                ("override", Some(revision)) => revision,
                ("override", None) => return Err("override needs --revision".into()),
                _ => spec_revision,
            };
            let mut synced = app.clone();
            synced["operation"] = json!({
                "initiatedBy": {"username": person},
                "retry": {},
                "sync": {
                    "revision": revision,
                    "source": app.pointer("/spec/source").cloned().unwrap_or(Value::Null),
                    "syncStrategy": {"hook": {}},
                },
            });
            Ok(Synthetic {
                object: Some(synced),
                old_object: Some(app.clone()),
                operation: "UPDATE".into(),
                ..base
            })
        }
        "update" => {
            let mut changed = app.clone();
            let default = json!({"metadata": {"labels": {"guardrails.io/explain": "edited"}}});
            json_patch::merge(&mut changed, change.unwrap_or(&default));
            // argocd-server writes these as itself: no person in the request.
            Ok(Synthetic {
                object: Some(changed),
                old_object: Some(app.clone()),
                operation: "UPDATE".into(),
                user: ARGOCD_SERVER.into(),
                delegated_by: None,
                ..base
            })
        }
        "delete" => Ok(Synthetic {
            object: None,
            old_object: Some(app.clone()),
            operation: "DELETE".into(),
            user: ARGOCD_SERVER.into(),
            delegated_by: None,
            ..base
        }),
        other => Err(format!(
            "what argocd-server writes for {other:?} is not modelled (sync, override, update, delete are)"
        )),
    }
}
