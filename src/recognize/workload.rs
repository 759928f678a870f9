//! Deployment and Rollout semantics: scale, restart, pause/resume, image changes, and the
//! Rollout's promote, abort, retry and undo as people's tools write them.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use serde_json::Value;

use super::diff::update_unless_explained;
use super::object::{bool_at, non_empty_array, pointer};
use super::{Action, Kind, Recognition};
use crate::json::same_opt;

pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

pub fn replicas(object: Option<&DynamicObject>) -> Option<i64> {
    pointer(object, "/spec/replicas").and_then(Value::as_i64)
}

fn images(object: Option<&DynamicObject>) -> BTreeMap<String, String> {
    let mut images = BTreeMap::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let path = format!("/spec/template/spec/{list}");
        for container in pointer(object, &path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            let image = container.get("image").and_then(Value::as_str).unwrap_or("");
            images.insert(format!("{list}/{name}"), image.to_string());
        }
    }
    images
}

/// A pod template as the API server stores it in a ReplicaSet: defaulted (scheduler, DNS policy,
/// termination message path on every container). A Rollout's own template, from a CRD without pod
/// defaulting, carries none of these unless someone wrote them.
pub(super) fn defaulted_like_a_replicaset(template: Option<&Value>) -> bool {
    let Some(spec) = template.and_then(|t| t.get("spec")) else {
        return false;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    spec.get("schedulerName").is_some()
        && spec.get("dnsPolicy").is_some()
        && containers.is_some_and(|list| {
            !list.is_empty()
                && list
                    .iter()
                    .all(|c| c.get("terminationMessagePath").is_some())
        })
}

/// `kubectl argo rollouts undo` copies an older ReplicaSet's (defaulted) template over
/// `/spec/template` (its `undo.go`); replacing the template of an aborted Rollout is the other way
/// back. Mid-canary template changes are fix-forwards as often as reverts: not called undo.
fn is_rollout_undo(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> bool {
    let (before, after) = (
        pointer(old, "/spec/template"),
        pointer(new, "/spec/template"),
    );
    !same_opt(before, after)
        && (bool_at(old, "/status/abort")
            || (defaulted_like_a_replicaset(after) && !defaulted_like_a_replicaset(before)))
}

pub fn recognize_update(
    recognition: &mut Recognition,
    sub_resource: Option<&str>,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    let kind = recognition.kind;
    let actions = &mut recognition.actions;
    // Both Deployments and Rollouts default to one replica when the field is absent.
    if recognition.old_replicas.unwrap_or(1) != recognition.new_replicas.unwrap_or(1) {
        actions.push(Action::Scale);
    }
    if sub_resource == Some("scale") {
        // An autoscaling/v1 Scale body carries nothing else a person can change.
        return;
    }
    pause_actions(old, new, actions);
    if restarted(kind, old, new) {
        actions.push(Action::Restart);
    }
    let undo = kind == Kind::Rollout && !caller_is_automation && is_rollout_undo(old, new);
    if undo {
        actions.push(Action::Undo);
    } else if images(old) != images(new) {
        actions.push(Action::ChangeImage);
    }
    // The Rollouts controller's own progress (steps, pause expiry, aborts on failed analysis,
    // clearing an abort for a new revision) is bookkeeping; promote/abort/retry are people's.
    let status_action = kind == Kind::Rollout
        && !caller_is_automation
        && recognize_rollout_status(actions, old, new);
    let explained = explained_paths(caller_is_automation, undo, status_action);
    update_unless_explained(actions, old, new, &explained, caller_is_automation);
}

/// `pause` when `/spec/paused` turns on, `resume` when it turns off.
fn pause_actions(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    actions: &mut Vec<Action>,
) {
    let (was_paused, is_paused) = (bool_at(old, "/spec/paused"), bool_at(new, "/spec/paused"));
    if !was_paused && is_paused {
        actions.push(Action::Pause);
    }
    if was_paused && !is_paused {
        actions.push(Action::Resume);
    }
}

/// A new restart time: a Rollout's `/spec/restartAt`, a Deployment's `restartedAt` annotation
/// on its pod template (what `kubectl rollout restart` writes).
fn restarted(kind: Kind, old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> bool {
    let restart_path = match kind {
        Kind::Rollout => "/spec/restartAt",
        _ => "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
    };
    let restart = pointer(new, restart_path);
    restart.is_some() && !same_opt(restart, pointer(old, restart_path))
}

/// The paths the recognised actions account for; a change anywhere else is a plain update.
fn explained_paths(
    caller_is_automation: bool,
    undo: bool,
    status_action: bool,
) -> Vec<&'static str> {
    let mut explained = vec![
        "/spec/replicas",
        "/spec/paused",
        "/spec/restartAt",
        "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
        "/spec/template/spec/initContainers/*/image",
        "/spec/template/spec/containers/*/image",
        "/spec/template/spec/ephemeralContainers/*/image",
    ];
    if undo {
        explained.push("/spec/template");
    }
    // Status is the controllers'; a person's status write is explained only by what it was
    // recognised as (a promote, abort or retry writes a few status fields of its own).
    if caller_is_automation || status_action {
        explained.push("/status");
    }
    explained
}

/// Promote, promote-full, abort and retry; true when any was recognised.
fn recognize_rollout_status(
    actions: &mut Vec<Action>,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
) -> bool {
    let before = actions.len();
    let step = |o| pointer(o, "/status/currentStepIndex").and_then(Value::as_i64);
    let paused_on_condition = |o| non_empty_array(pointer(o, "/status/pauseConditions"));
    if (paused_on_condition(old) && !paused_on_condition(new))
        || matches!((step(old), step(new)), (Some(a), Some(b)) if b > a)
    {
        actions.push(Action::Promote);
    }
    if bool_at(new, "/status/promoteFull") && !bool_at(old, "/status/promoteFull") {
        actions.push(Action::PromoteFull);
    }
    let (was_aborted, is_aborted) = (bool_at(old, "/status/abort"), bool_at(new, "/status/abort"));
    if !was_aborted && is_aborted {
        actions.push(Action::Abort);
    }
    if was_aborted && !is_aborted {
        actions.push(Action::Retry);
    }
    actions.len() > before
}
