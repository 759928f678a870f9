//! Action recognition: what a write *means* (sync, rollback, scale, promote…), read from
//! operation, object, oldObject and subResource. Pure: no I/O, no clock, no Cedar.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admission::Request;
use crate::config::Config;
use crate::json::{self, same, same_opt};

pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Written by the notifications controller to remember what it sent.
pub const NOTIFIED_ANNOTATION: &str = "notified.notifications.argoproj.io";
/// argocd-server's request for the hydrator, set beside the refresh annotation.
pub const HYDRATE_ANNOTATION: &str = "argocd.argoproj.io/hydrate";
/// Revision counters the deployment and Rollouts controllers keep on the objects they roll out.
pub const REVISION_ANNOTATIONS: [&str; 2] = [
    "deployment.kubernetes.io/revision",
    "rollout.argoproj.io/revision",
];
const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// The kinds Guardrails decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Application,
    Deployment,
    Rollout,
}

impl Kind {
    /// The Cedar entity type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Application => "Application",
            Kind::Deployment => "Deployment",
            Kind::Rollout => "Rollout",
        }
    }

    /// Identified by the *resource* (not the kind) so `deployments/scale` with a Scale body counts.
    pub fn from_resource(group: &str, resource: &str) -> Option<Self> {
        match (group, resource) {
            ("argoproj.io", "applications") => Some(Kind::Application),
            ("argoproj.io", "rollouts") => Some(Kind::Rollout),
            ("apps", "deployments") => Some(Kind::Deployment),
            _ => None,
        }
    }
}

/// Every action the schema knows; names match `policies/guardrails.cedarschema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Bookkeeping,
    Sync,
    AutoSync,
    Rollback,
    Override,
    Terminate,
    Refresh,
    RemoveFinalizer,
    EnableAutoSync,
    DisableAutoSync,
    Retarget,
    ChangeSource,
    Scale,
    Restart,
    Pause,
    Resume,
    ChangeImage,
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Undo,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Bookkeeping => "bookkeeping",
            Action::Sync => "sync",
            Action::AutoSync => "auto-sync",
            Action::Rollback => "rollback",
            Action::Override => "override",
            Action::Terminate => "terminate",
            Action::Refresh => "refresh",
            Action::RemoveFinalizer => "remove-finalizer",
            Action::EnableAutoSync => "enable-auto-sync",
            Action::DisableAutoSync => "disable-auto-sync",
            Action::Retarget => "retarget",
            Action::ChangeSource => "change-source",
            Action::Scale => "scale",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::ChangeImage => "change-image",
            Action::Promote => "promote",
            Action::PromoteFull => "promote-full",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Undo => "undo",
        }
    }
}

/// Sync options carried by `/operation/sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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

/// `/spec/syncPolicy/automated` of the object after the change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
}

/// Requests for kinds Guardrails does not decide are answered, never silently: see `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognized {
    Known(Recognition),
    Unsupported { resource: String },
}

fn pointer<'a>(object: Option<&'a DynamicObject>, path: &str) -> Option<&'a Value> {
    object
        .and_then(|o| json::pointer(&o.data, path))
        .filter(|v| !v.is_null())
}

fn bool_at(object: Option<&DynamicObject>, path: &str) -> bool {
    pointer(object, path).and_then(Value::as_bool) == Some(true)
}

fn str_at<'a>(object: Option<&'a DynamicObject>, path: &str) -> Option<&'a str> {
    pointer(object, path).and_then(Value::as_str)
}

fn annotation<'a>(object: Option<&'a DynamicObject>, key: &str) -> Option<&'a str> {
    object
        .and_then(|o| o.metadata.annotations.as_ref())
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn finalizers(object: Option<&DynamicObject>) -> &[String] {
    object
        .and_then(|o| o.metadata.finalizers.as_deref())
        .unwrap_or(&[])
}

/// `resources-finalizer.argocd.argoproj.io` and its `/foreground`, `/background` forms.
fn is_resources_finalizer(name: &str) -> bool {
    name == RESOURCES_FINALIZER
        || name
            .strip_prefix(RESOURCES_FINALIZER)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn has_resources_finalizer(object: Option<&DynamicObject>) -> bool {
    finalizers(object).iter().any(|f| is_resources_finalizer(f))
}

fn is_deleting(object: Option<&DynamicObject>) -> bool {
    object.is_some_and(|o| o.metadata.deletion_timestamp.is_some())
}

/// Recognise the actions in `request`. `config` says which callers are automation, because an
/// `automated: true` claim from anyone else is a manual sync in disguise.
pub fn recognize(request: &Request, config: &Config) -> Recognized {
    let Some(kind) = Kind::from_resource(&request.resource.group, &request.resource.resource)
    else {
        return Recognized::Unsupported {
            resource: format!(
                "{}/{}",
                if request.resource.group.is_empty() {
                    "core"
                } else {
                    &request.resource.group
                },
                request.resource.resource
            ),
        };
    };
    let caller_is_automation =
        config.is_automation(request.user_info.username.as_deref().unwrap_or(""));
    let new = request.object.as_ref();
    let old = request.old_object.as_ref();
    let mut recognition = Recognition {
        kind,
        actions: Vec::new(),
        sync: SyncOptions::default(),
        auto_sync: auto_sync_state(new.or(old)),
        cascade: false,
        old_replicas: replicas(old),
        new_replicas: replicas(new),
        initiated_by: None,
        forged_automation: false,
    };
    match request.operation {
        Operation::Create => {
            recognition.actions.push(Action::Create);
            // An Application created with auto-sync deploys at once: auto-sync appears.
            if kind == Kind::Application && recognition.auto_sync.enabled {
                recognition.actions.push(Action::EnableAutoSync);
            }
            if kind == Kind::Application
                && let Some(operation) = pointer(new, "/operation")
            {
                recognize_operation_start(
                    &mut recognition,
                    operation,
                    new,
                    new,
                    caller_is_automation,
                );
            }
        }
        Operation::Delete => {
            recognition.actions.push(Action::Delete);
            recognition.cascade = match kind {
                Kind::Application => has_resources_finalizer(old),
                // Deployments and Rollouts cascade to their ReplicaSets unless orphaned.
                Kind::Deployment | Kind::Rollout => {
                    request
                        .options
                        .as_ref()
                        .and_then(|o| json::pointer(&o.0, "/propagationPolicy"))
                        .and_then(Value::as_str)
                        != Some("Orphan")
                }
            };
        }
        Operation::Update => match kind {
            Kind::Application => {
                recognize_application_update(&mut recognition, old, new, caller_is_automation)
            }
            Kind::Deployment | Kind::Rollout => recognize_workload_update(
                &mut recognition,
                request.sub_resource.as_deref(),
                old,
                new,
                caller_is_automation,
            ),
        },
        // CONNECT is never routed to Guardrails; treat it as bookkeeping rather than guess.
        Operation::Connect => {}
    }
    if recognition.actions.is_empty() {
        recognition.actions.push(Action::Bookkeeping);
    }
    recognition.actions.sort_by_key(|a| a.as_str());
    recognition.actions.dedup();
    Recognized::Known(recognition)
}

fn replicas(object: Option<&DynamicObject>) -> Option<i64> {
    pointer(object, "/spec/replicas").and_then(Value::as_i64)
}

fn auto_sync_state(object: Option<&DynamicObject>) -> AutoSync {
    match pointer(object, "/spec/syncPolicy/automated") {
        Some(automated) => AutoSync {
            // An `automated` block without `enabled` is enabled (Argo CD's own default).
            enabled: automated.get("enabled").and_then(Value::as_bool) != Some(false),
            prune: automated.get("prune").and_then(Value::as_bool) == Some(true),
            self_heal: automated.get("selfHeal").and_then(Value::as_bool) == Some(true),
        },
        None => AutoSync::default(),
    }
}

/// The operation this request starts, if any: `/operation` appearing where there was none (from
/// anyone), or, from anyone but automation, a changed `/operation` (a takeover is a new start) or a
/// rewritten `/status/operationState` (the controller retries the operation stored there, and starts
/// `/operation` afresh when the state is cleared). The Application CRD has no status subresource, so
/// whoever may update an Application may write its status.
fn started_operation<'a>(
    old: Option<&'a DynamicObject>,
    new: Option<&'a DynamicObject>,
    caller_is_automation: bool,
) -> Option<&'a Value> {
    let (old_operation, new_operation) = (pointer(old, "/operation"), pointer(new, "/operation"));
    if let Some(operation) = new_operation
        && (old_operation.is_none()
            || (!caller_is_automation && !same_opt(old_operation, new_operation)))
    {
        return Some(operation);
    }
    if caller_is_automation || !operation_state_rewritten(old, new) {
        return None;
    }
    pointer(new, "/status/operationState/operation").or(new_operation)
}

/// Did `/status/operationState` change other than by the phase turning `Terminating` (what
/// argocd-server's TerminateOperation writes)?
fn operation_state_rewritten(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> bool {
    let state = |o| pointer(o, "/status/operationState");
    let (before, after) = (state(old), state(new));
    if same_opt(before, after) {
        return false;
    }
    if terminating(old, new)
        && let (Some(Value::Object(before)), Some(Value::Object(after))) = (before, after)
    {
        let without_phase = |m: &serde_json::Map<String, Value>| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "phase")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
        };
        return without_phase(before) != without_phase(after);
    }
    true
}

fn terminating(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> bool {
    str_at(new, "/status/operationState/phase") == Some("Terminating")
        && str_at(old, "/status/operationState/phase") != Some("Terminating")
        && pointer(new, "/operation").is_some()
}

/// Classify a started operation: `auto-sync` (an automated operation from automation: never
/// `override` or `rollback`, whatever revision it resolved), `rollback` (a person's sync to an
/// earlier history entry, as argocd-server's Rollback writes it), else `sync`, plus `override`.
fn recognize_operation_start(
    recognition: &mut Recognition,
    operation: &Value,
    app: Option<&DynamicObject>,
    history_of: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    let Some(sync) = operation.get("sync").filter(|s| !s.is_null()) else {
        // The controller fails an operation without `sync` ("unsupported operation").
        return;
    };
    let initiated = InitiatedBy {
        username: json::pointer(operation, "/initiatedBy/username")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        automated: json::pointer(operation, "/initiatedBy/automated").and_then(Value::as_bool)
            == Some(true),
    };
    let mut options = sync_options(sync, app);
    if initiated.automated && caller_is_automation {
        recognition.actions.push(Action::AutoSync);
        options.override_revision = false;
        options.override_source = false;
        options.local_manifests = false;
    } else if is_rollback(sync, history_of) {
        recognition.actions.push(Action::Rollback);
        // The history entry explains a source or revision that differs from the spec.
        options.override_revision = false;
        options.override_source = false;
        if options.local_manifests {
            recognition.actions.push(Action::Override);
        }
    } else {
        recognition.actions.push(Action::Sync);
        if options.is_override() {
            recognition.actions.push(Action::Override);
        }
    }
    recognition.forged_automation = initiated.automated && !caller_is_automation;
    recognition.sync = options;
    recognition.initiated_by = Some(initiated);
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty_array(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The spec's sources in order (`spec.sources`, else `spec.source`).
fn spec_sources(app: Option<&DynamicObject>) -> Vec<&Value> {
    match pointer(app, "/spec/sources").and_then(Value::as_array) {
        Some(sources) if !sources.is_empty() => sources.iter().collect(),
        _ => pointer(app, "/spec/source").into_iter().collect(),
    }
}

fn target_revision(source: &Value) -> &str {
    source
        .get("targetRevision")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("HEAD")
}

/// A full commit SHA (SHA-1 or SHA-256), as Argo CD resolves every Git revision before syncing.
pub fn is_commit_sha(revision: &str) -> bool {
    matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The revision asked for differs from the tracked one in a way the object can show: a branch,
/// tag or version other than `targetRevision`, or anything but a pinned SHA. A SHA against a
/// branch cannot be told apart from that branch's head, which is what Argo CD always writes.
fn revision_overrides(requested: &str, target: &str) -> bool {
    let requested = if requested.is_empty() {
        "HEAD"
    } else {
        requested
    };
    requested != target && (!is_commit_sha(requested) || is_commit_sha(target))
}

fn requested_revisions(sync: &Value) -> Vec<String> {
    let many = string_list(sync.get("revisions"));
    if !many.is_empty() {
        return many;
    }
    sync.get("revision")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map(|r| vec![r.to_string()])
        .unwrap_or_default()
}

/// A source as Argo CD would fetch it, minus its revision: empty fields dropped and the repo URL
/// normalised (case, trailing `/` and `.git`), so `https://x/Repo.git` equals `https://x/repo`.
fn normalized_source(source: &Value) -> Value {
    fn prune(value: &Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::Bool(false) => None,
            Value::Array(items) => {
                let items: Vec<Value> = items.iter().filter_map(prune).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(map) => {
                let map: serde_json::Map<String, Value> = map
                    .iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k.clone(), v)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            other => Some(other.clone()),
        }
    }
    let mut source = prune(source).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut source {
        map.remove("targetRevision");
        if let Some(Value::String(url)) = map.get_mut("repoURL") {
            let trimmed = url.trim_end_matches('/');
            *url = trimmed
                .strip_suffix(".git")
                .unwrap_or(trimmed)
                .to_ascii_lowercase();
        }
    }
    source
}

fn sync_options(sync: &Value, app: Option<&DynamicObject>) -> SyncOptions {
    let spec = spec_sources(app);
    // What the controller deploys: `sync.sources`/`sync.source` when given, else the spec's.
    let requested_sources: Vec<&Value> = match sync.get("sources").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.iter().collect(),
        _ => sync
            .get("source")
            .filter(|s| !s.is_null())
            .into_iter()
            .collect(),
    };
    let override_source = !requested_sources.is_empty()
        && (requested_sources.len() != spec.len()
            || requested_sources
                .iter()
                .zip(&spec)
                .any(|(a, b)| !same(&normalized_source(a), &normalized_source(b))));
    let mut requested = requested_revisions(sync);
    if requested.is_empty() {
        // Without a revision the controller uses the requested source's own targetRevision.
        requested = requested_sources
            .iter()
            .map(|s| target_revision(s).to_string())
            .collect();
    }
    // `argocd app sync --revisions r --source-positions 2` names sources by 1-based position.
    let positions: Vec<usize> = sync
        .get("sourcePositions")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_i64)
                .filter_map(|i| usize::try_from(i - 1).ok())
                .collect()
        })
        .unwrap_or_default();
    let target_at = |i: usize| {
        let index = if positions.len() == requested.len() {
            positions[i]
        } else {
            i
        };
        spec.get(index)
            .map(|s| target_revision(s))
            .unwrap_or("HEAD")
    };
    // A requested source's own targetRevision is what `--revisions` rewrites for multi-source
    // apps (the resolved SHAs go to `revisions`).
    let override_revision = requested
        .iter()
        .enumerate()
        .any(|(i, r)| revision_overrides(r, target_at(i)))
        || requested_sources
            .iter()
            .zip(&spec)
            .any(|(a, b)| revision_overrides(target_revision(a), target_revision(b)));
    SyncOptions {
        prune: sync.get("prune").and_then(Value::as_bool) == Some(true),
        force: json::pointer(sync, "/syncStrategy/apply/force").and_then(Value::as_bool)
            == Some(true)
            || json::pointer(sync, "/syncStrategy/hook/force").and_then(Value::as_bool)
                == Some(true),
        dry_run: sync.get("dryRun").and_then(Value::as_bool) == Some(true),
        selective: non_empty_array(sync.get("resources")),
        override_revision,
        override_source,
        local_manifests: non_empty_array(sync.get("manifests")),
        revision: requested.join(","),
        sync_options: string_list(sync.get("syncOptions")),
    }
}

/// What argocd-server's Rollback writes: a sync to an *earlier* `/status/history` entry's
/// revision(s) (not the current, last one), with that entry's source when it names one.
fn is_rollback(sync: &Value, app: Option<&DynamicObject>) -> bool {
    let requested = requested_revisions(sync);
    if requested.is_empty() {
        return false;
    }
    let Some(history) = pointer(app, "/status/history").and_then(Value::as_array) else {
        return false;
    };
    let entry_revisions = |entry: &Value| {
        let many = string_list(entry.get("revisions"));
        if many.is_empty() {
            string_list(Some(&Value::Array(
                entry.get("revision").cloned().into_iter().collect(),
            )))
        } else {
            many
        }
    };
    let source_matches = |entry: &Value| {
        let wanted = sync
            .get("sources")
            .filter(|s| non_empty_array(Some(s)))
            .or(sync.get("source"));
        let had = entry
            .get("sources")
            .filter(|s| non_empty_array(Some(s)))
            .or(entry.get("source"));
        match (wanted, had) {
            (None | Some(Value::Null), _) => true,
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| same(&normalized_source(x), &normalized_source(y)))
            }
            (Some(a), Some(b)) => same(&normalized_source(a), &normalized_source(b)),
            (Some(_), None) => false,
        }
    };
    let Some((current, earlier)) = history.split_last() else {
        return false;
    };
    requested != entry_revisions(current)
        && earlier
            .iter()
            .any(|entry| entry_revisions(entry) == requested && source_matches(entry))
}

/// Everything the controller fetches and renders: `spec.source` and `spec.sources`, whole.
fn sources(app: Option<&DynamicObject>) -> [Option<&Value>; 2] {
    [pointer(app, "/spec/source"), pointer(app, "/spec/sources")]
}

fn recognize_application_update(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    let started = started_operation(old, new, caller_is_automation);
    if let Some(operation) = started {
        recognize_operation_start(
            recognition,
            operation,
            new,
            old.or(new),
            caller_is_automation,
        );
    }
    let actions = &mut recognition.actions;
    let terminate = terminating(old, new);
    if terminate {
        actions.push(Action::Terminate);
    }
    let refresh = annotation(new, REFRESH_ANNOTATION);
    if refresh.is_some() && refresh != annotation(old, REFRESH_ANNOTATION) {
        actions.push(Action::Refresh);
    }
    // Removing the resources finalizer outside a deletion (or by a person during one) turns the
    // next delete into a non-cascading one; the controller removing it while deleting is routine.
    if has_resources_finalizer(old)
        && !has_resources_finalizer(new)
        && (!is_deleting(new) || !caller_is_automation)
    {
        actions.push(Action::RemoveFinalizer);
    }
    let before = auto_sync_state(old);
    let after = recognition.auto_sync;
    if after.enabled
        && (!before.enabled
            || (after.prune && !before.prune)
            || (after.self_heal && !before.self_heal))
    {
        actions.push(Action::EnableAutoSync);
    }
    if before.enabled && !after.enabled {
        actions.push(Action::DisableAutoSync);
    }
    let destination_changed = [
        "/spec/destination/server",
        "/spec/destination/name",
        "/spec/destination/namespace",
        "/spec/project",
    ]
    .iter()
    .any(|path| !same_opt(pointer(old, path), pointer(new, path)));
    if destination_changed {
        actions.push(Action::Retarget);
    }
    if !sources(old)
        .into_iter()
        .zip(sources(new))
        .all(|(a, b)| same_opt(a, b))
    {
        actions.push(Action::ChangeSource);
    }
    // Whatever the recognised actions do not explain is a plain update. Status is the
    // controllers' own; from anyone else only the operation state a start or terminate explains.
    let status: &[&str] = if caller_is_automation {
        &["/status"]
    } else if started.is_some() || terminate {
        &["/status/operationState"]
    } else {
        &[]
    };
    const EXPLAINED: &[&str] = &[
        "/operation",
        "/spec/destination",
        "/spec/project",
        "/spec/source",
        "/spec/sources",
        "/spec/syncPolicy/automated",
    ];
    let explained: Vec<&str> = EXPLAINED.iter().chain(status).copied().collect();
    if data_differs(old, new, &explained) || metadata_differs(old, new) {
        actions.push(Action::Update);
    }
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
fn defaulted_like_a_replicaset(template: Option<&Value>) -> bool {
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

fn recognize_workload_update(
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
    let (was_paused, is_paused) = (bool_at(old, "/spec/paused"), bool_at(new, "/spec/paused"));
    if !was_paused && is_paused {
        actions.push(Action::Pause);
    }
    if was_paused && !is_paused {
        actions.push(Action::Resume);
    }
    let restart_path = match kind {
        Kind::Rollout => "/spec/restartAt",
        _ => "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
    };
    let restart = pointer(new, restart_path);
    if restart.is_some() && !same_opt(restart, pointer(old, restart_path)) {
        actions.push(Action::Restart);
    }
    let undo = kind == Kind::Rollout && !caller_is_automation && is_rollout_undo(old, new);
    if undo {
        actions.push(Action::Undo);
    } else if images(old) != images(new) {
        actions.push(Action::ChangeImage);
    }
    let mut explained = vec![
        "/status",
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
    // The Rollouts controller's own progress (steps, pause expiry, aborts on failed analysis,
    // clearing an abort for a new revision) is bookkeeping; promote/abort/retry are people's.
    if kind == Kind::Rollout && !caller_is_automation {
        recognize_rollout_status(actions, old, new);
    }
    if data_differs(old, new, &explained) || metadata_differs(old, new) {
        actions.push(Action::Update);
    }
}

fn recognize_rollout_status(
    actions: &mut Vec<Action>,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
) {
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
}

/// Does anything outside `explained` differ? Patterns are JSON pointers; `*` matches one segment.
fn data_differs(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    explained: &[&str],
) -> bool {
    // The typed metadata is compared separately; apiVersion and kind cannot change.
    let patterns: Vec<Vec<Cow<str>>> = ["/apiVersion", "/kind", "/metadata"]
        .iter()
        .chain(explained)
        .map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .map(json::unescape)
                .collect()
        })
        .collect();
    let live: Vec<&[Cow<str>]> = patterns.iter().map(Vec::as_slice).collect();
    let null = Value::Null;
    let old = old.map_or(&null, |o| &o.data);
    let new = new.map_or(&null, |o| &o.data);
    differs_at(old, new, &live)
}

/// `live` holds the unmatched rest of every pattern whose prefix matches the current path, so a
/// subtree no pattern reaches is compared in one go.
fn differs_at(old: &Value, new: &Value, live: &[&[Cow<str>]]) -> bool {
    if live.iter().any(|rest| rest.is_empty()) {
        return false;
    }
    if live.is_empty() {
        return !same_ignoring_absent(old, new);
    }
    let descend = |segment: &str, x: &Value, y: &Value| {
        let next: Vec<&[Cow<str>]> = live
            .iter()
            .filter(|rest| rest[0] == "*" || rest[0] == segment)
            .map(|rest| &rest[1..])
            .collect();
        differs_at(x, y, &next)
    };
    let empty = Value::Object(serde_json::Map::new());
    // An absent block and a new one (or the reverse): compare field by field against nothing.
    let (old, new) = match (old, new) {
        (Value::Null, Value::Object(_)) => (&empty, new),
        (Value::Object(_), Value::Null) => (old, &empty),
        _ => (old, new),
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            // Keys usually come in the same order on both sides: pair them up without a lookup
            // until they do not.
            let mut in_step = a.len() == b.len();
            let mut b_entries = b.iter();
            for (key, x) in a {
                let paired = match b_entries.next() {
                    Some((other, y)) if in_step && other == key => Some(y),
                    _ => {
                        in_step = false;
                        None
                    }
                };
                let y = paired.or_else(|| b.get(key)).unwrap_or(&Value::Null);
                if descend(key, x, y) {
                    return true;
                }
            }
            // Every key of `b` was paired with the same key of `a` when still in step.
            !in_step
                && b.iter()
                    .filter(|(k, _)| !a.contains_key(*k))
                    .any(|(k, y)| descend(k, &Value::Null, y))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .any(|(index, (x, y))| descend(&index.to_string(), x, y)),
        _ => !same(old, new),
    }
}

/// Structural equality where an absent (null) value equals an empty object or list.
fn same_ignoring_absent(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(l) => l.is_empty(),
        _ => false,
    };
    same(a, b) || (empty(a) && empty(b))
}

/// Metadata a person changes (labels, annotations, owners, non-Argo finalizers), ignoring what
/// the API server and Argo CD maintain themselves.
fn metadata_differs(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> bool {
    let (Some(old), Some(new)) = (old, new) else {
        return false;
    };
    let (a, b) = (&old.metadata, &new.metadata);
    fn annotations(m: &kube::core::ObjectMeta) -> Vec<(&String, &String)> {
        m.annotations
            .iter()
            .flatten()
            .filter(|(k, _)| {
                !REVISION_ANNOTATIONS.contains(&k.as_str())
                    && !matches!(
                        k.as_str(),
                        REFRESH_ANNOTATION
                            | HYDRATE_ANNOTATION
                            | LAST_APPLIED_ANNOTATION
                            | NOTIFIED_ANNOTATION
                    )
            })
            .collect()
    }
    fn finalizers(m: &kube::core::ObjectMeta) -> Vec<&String> {
        m.finalizers
            .iter()
            .flatten()
            .filter(|f| !is_resources_finalizer(f))
            .collect()
    }
    a.labels != b.labels
        || annotations(a) != annotations(b)
        || finalizers(a) != finalizers(b)
        || a.owner_references != b.owner_references
}

#[cfg(test)]
#[path = "unit_tests/recognize_tests.rs"]
mod tests;
