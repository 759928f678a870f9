//! Action recognition: what a write *means* (sync, rollback, scale, promote…), read from
//! operation, object, oldObject and subResource. Pure: no I/O, no clock, no Cedar.
//!
//! One file per kind (`application`, `applicationset`, `appproject`, `workload` for Deployments
//! and Rollouts), over shared object accessors (`object`) and the "what else changed" diff
//! (`diff`). This file holds the vocabulary and the one rule every kind obeys: `bookkeeping` is
//! only ever automation's; a person's (or a delegator's) write no action explains is `update`.

mod application;
mod applicationset;
mod appproject;
mod diff;
mod namespace;
mod object;
mod workload;

pub use application::{HYDRATE_ANNOTATION, REFRESH_ANNOTATION, is_commit_sha};
pub use diff::{LAST_APPLIED_ANNOTATION, NOTIFIED_ANNOTATION, REVISION_ANNOTATIONS};
pub use namespace::Relabel;
pub use workload::RESTARTED_AT_ANNOTATION;

use kube::core::admission::Operation;
use serde::Serialize;
use serde_json::Value;

use crate::admission::Request;
use crate::config::Config;
use crate::json;
use crate::vocabulary::{Action, Kind};
use object::{has_resources_finalizer, pointer};

/// Sync options carried by `/operation/sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOptions {
    pub prune: bool,
    pub force: bool,
    pub dry_run: bool,
    pub selective: bool,
    pub override_revision: bool,
    /// `sync.source(s)` differs from `spec.source(s)` (beyond the revision).
    pub override_source: bool,
    pub local_manifests: bool,
    pub revision: String,
    pub sync_options: Vec<String>,
}

impl SyncOptions {
    pub fn is_override(&self) -> bool {
        self.override_revision || self.override_source || self.local_manifests
    }
}

/// `/spec/syncPolicy/automated` of the object after the change (an ApplicationSet's template's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoSync {
    pub enabled: bool,
    pub prune: bool,
    pub self_heal: bool,
}

/// `/operation/initiatedBy` of an operation started by this request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InitiatedBy {
    pub username: Option<String>,
    pub automated: bool,
}

/// What one admission request means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recognition {
    pub kind: Kind,
    pub actions: Vec<Action>,
    pub sync: SyncOptions,
    pub auto_sync: AutoSync,
    pub cascade: bool,
    pub old_replicas: Option<i64>,
    pub new_replicas: Option<i64>,
    /// Who the new operation claims started it; trusted or not is identity's call.
    pub initiated_by: Option<InitiatedBy>,
    /// The operation claims `automated: true` but the caller is not an automation identity, so it
    /// was recognised as a manual sync.
    pub forged_automation: bool,
    /// A Namespace's trust labels before and after (`None` for other kinds; boxed so that other
    /// kinds do not carry its room).
    pub relabel: Option<Box<Relabel>>,
}

/// Requests for kinds Guardrails does not decide are answered, never silently: see `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognized {
    Known(Recognition),
    Unsupported { resource: String },
}

/// Recognise the actions in `request`. `config` says which callers are automation, because an
/// `automated: true` claim from anyone else is a manual sync in disguise.
pub fn recognize(request: &Request, config: &Config) -> Recognized {
    let Some(kind) = Kind::from_resource(&request.resource.group, &request.resource.resource)
    else {
        return Recognized::Unsupported {
            resource: resource_name(request),
        };
    };
    let caller = request.user_info.username.as_deref().unwrap_or("");
    let caller_is_automation = config.is_automation(caller);
    let caller_is_delegator = config.is_delegator(caller) && !caller_is_automation;
    let mut recognition = without_actions(kind, request);
    if kind == Kind::Namespace {
        // Nothing else about a Namespace is Guardrails' to decide: no `update` fallback.
        namespace::recognize(&mut recognition, request, config);
        return Recognized::Known(recognition);
    }
    match request.operation {
        Operation::Create => recognize_create(&mut recognition, request, caller_is_automation),
        Operation::Delete => {
            recognition.actions.push(Action::Delete);
            recognition.cascade = delete_cascades(kind, request);
        }
        Operation::Update => recognize_update(
            &mut recognition,
            request,
            caller_is_automation,
            caller_is_delegator,
        ),
        // CONNECT is never routed to Guardrails.
        Operation::Connect => {}
    }
    if recognition.actions.is_empty() {
        // Only automation's own writes go unnamed; anyone else's write is seen by policies,
        // even one that changes nothing.
        recognition.actions.push(if caller_is_automation {
            Action::Bookkeeping
        } else {
            Action::Update
        });
    }
    recognition.actions.sort_by_key(|a| a.as_str());
    recognition.actions.dedup();
    Recognized::Known(recognition)
}

/// `group/resource` of a request Guardrails does not decide (`core` for the core group).
fn resource_name(request: &Request) -> String {
    format!(
        "{}/{}",
        if request.resource.group.is_empty() {
            "core"
        } else {
            &request.resource.group
        },
        request.resource.resource
    )
}

/// What is read alike for every operation: auto-sync after the change, replicas before and after.
fn without_actions(kind: Kind, request: &Request) -> Recognition {
    let new = request.object.as_ref();
    let old = request.old_object.as_ref();
    let sync_policy_path = match kind {
        Kind::ApplicationSet => "/spec/template/spec/syncPolicy",
        _ => "/spec/syncPolicy",
    };
    Recognition {
        kind,
        actions: Vec::new(),
        sync: SyncOptions::default(),
        auto_sync: match kind {
            Kind::Application | Kind::ApplicationSet => {
                application::auto_sync_at(pointer(new.or(old), sync_policy_path))
            }
            _ => AutoSync::default(),
        },
        cascade: false,
        old_replicas: workload::replicas(old),
        new_replicas: workload::replicas(new),
        initiated_by: None,
        forged_automation: false,
        relabel: None,
    }
}

/// A create, and what it starts: auto-sync, or an Application's operation written with it.
fn recognize_create(recognition: &mut Recognition, request: &Request, caller_is_automation: bool) {
    let new = request.object.as_ref();
    recognition.actions.push(Action::Create);
    // An Application created with auto-sync deploys at once, and so does every Application an
    // ApplicationSet with an auto-syncing template generates.
    if recognition.auto_sync.enabled {
        recognition.actions.push(Action::EnableAutoSync);
    }
    if recognition.kind == Kind::Application
        && let Some(operation) = pointer(new, "/operation")
    {
        application::recognize_operation_start(
            recognition,
            operation,
            new,
            new,
            caller_is_automation,
        );
    }
}

/// Whether deleting the object deletes what it manages too.
fn delete_cascades(kind: Kind, request: &Request) -> bool {
    let old = request.old_object.as_ref();
    let orphaned = request
        .options
        .as_ref()
        .and_then(|o| json::pointer(&o.0, "/propagationPolicy"))
        .and_then(Value::as_str)
        == Some("Orphan");
    match kind {
        Kind::Application => has_resources_finalizer(old),
        Kind::ApplicationSet => !orphaned && applicationset::deletes_resources(old),
        // Deployments and Rollouts cascade to their ReplicaSets unless orphaned.
        Kind::Deployment | Kind::Rollout => !orphaned,
        Kind::AppProject => false,
        // Decided in `namespace`.
        Kind::Namespace => true,
    }
}

/// An update, by the kind's own rules.
fn recognize_update(
    recognition: &mut Recognition,
    request: &Request,
    caller_is_automation: bool,
    caller_is_delegator: bool,
) {
    let new = request.object.as_ref();
    let old = request.old_object.as_ref();
    match recognition.kind {
        Kind::Application => application::recognize_update(
            recognition,
            old,
            new,
            caller_is_automation,
            caller_is_delegator,
        ),
        Kind::ApplicationSet => {
            applicationset::recognize_update(recognition, old, new, caller_is_automation)
        }
        Kind::AppProject => {
            appproject::recognize_update(recognition, old, new, caller_is_automation)
        }
        Kind::Deployment | Kind::Rollout => workload::recognize_update(
            recognition,
            request.sub_resource.as_deref(),
            old,
            new,
            caller_is_automation,
        ),
        // Recognised apart, in `namespace`.
        Kind::Namespace => {}
    }
}

#[cfg(test)]
#[path = "../unit_tests/recognize_tests.rs"]
mod tests;
