//! ApplicationSet semantics: what it generates (template, generators), how what it generates
//! syncs (the template's sync policy, its own sync policy and progressive strategy), refresh.
//! Which environments it reaches is the entities' business (`entities::destinations`).

use kube::core::DynamicObject;
use serde_json::Value;

use super::application::{auto_sync_actions, auto_sync_at, sync_policy_changed};
use super::diff::{
    Writer, changed, data_differs, metadata_differs, same_ignoring_absent, values_differ,
};
use super::object::{annotation_set, bool_at, is_resources_finalizer, pointer};
use super::{Action, Recognition};

/// Asks the ApplicationSet controller to generate again now; it removes the annotation after.
pub const APPLICATIONSET_REFRESH_ANNOTATION: &str = "argocd.argoproj.io/application-set-refresh";

const TEMPLATE_SYNC_POLICY: &str = "/spec/template/spec/syncPolicy";

/// Deleting the ApplicationSet deletes its Applications (they are owned by it) and, through
/// their resources finalizer, what they deployed, unless `preserveResourcesOnDeletion` is set.
pub fn deletes_resources(appset: Option<&DynamicObject>) -> bool {
    let template_finalizers = pointer(appset, "/spec/template/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(is_resources_finalizer);
    template_finalizers && !bool_at(appset, "/spec/syncPolicy/preserveResourcesOnDeletion")
}

pub fn recognize_update(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    let actions = &mut recognition.actions;
    let null = Value::Null;
    let template = |o| pointer(o, "/spec/template").unwrap_or(&null);
    if values_differ(template(old), template(new), &["/spec/syncPolicy"])
        || changed(
            old,
            new,
            &[
                "/spec/templatePatch",
                "/spec/goTemplate",
                "/spec/goTemplateOptions",
            ],
        )
    {
        actions.push(Action::ChangeTemplate);
    }
    if !same_ignoring_absent(
        pointer(old, "/spec/generators").unwrap_or(&null),
        pointer(new, "/spec/generators").unwrap_or(&null),
    ) {
        actions.push(Action::ChangeGenerators);
    }
    let (before, after) = (
        pointer(old, TEMPLATE_SYNC_POLICY),
        pointer(new, TEMPLATE_SYNC_POLICY),
    );
    auto_sync_actions(auto_sync_at(before), auto_sync_at(after), actions);
    if sync_policy_changed(before, after)
        || changed(old, new, &["/spec/syncPolicy", "/spec/strategy"])
    {
        actions.push(Action::ChangeSyncPolicy);
    }
    // The controller sets it itself on a Git webhook; people and CI set it too.
    let refreshed = annotation_set(old, new, APPLICATIONSET_REFRESH_ANNOTATION);
    if refreshed {
        actions.push(Action::Refresh);
    }
    let mut explained = vec![
        "/spec/template",
        "/spec/templatePatch",
        "/spec/goTemplate",
        "/spec/goTemplateOptions",
        "/spec/generators",
        "/spec/syncPolicy",
        "/spec/strategy",
    ];
    if caller_is_automation {
        explained.push("/status");
    }
    let writer = Writer {
        automation: caller_is_automation,
        recognised: !actions.is_empty(),
        refresh_annotations: &[APPLICATIONSET_REFRESH_ANNOTATION],
        refreshed,
        finalizer_action: false,
        cascade_armed: false,
    };
    if data_differs(old, new, &explained) || metadata_differs(old, new, writer) {
        actions.push(Action::Update);
    }
}
