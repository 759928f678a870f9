//! Action recognition: what a write *means* (sync, rollback, scale, promote…), read from
//! operation, object, oldObject and subResource. Pure: no I/O, no clock, no Cedar.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admission::Request;
use crate::config::Config;

pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
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
    pub local_manifests: bool,
    pub revision: String,
    pub sync_options: Vec<String>,
}

impl SyncOptions {
    pub fn is_override(&self) -> bool {
        self.override_revision || self.local_manifests
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
        .and_then(|o| o.data.pointer(path))
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
            if kind == Kind::Application {
                recognize_operation_start(&mut recognition, None, new, caller_is_automation);
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
                        .and_then(|o| o.0.pointer("/propagationPolicy"))
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

/// A sync starts when `/operation/sync` appears where there was no operation.
fn recognize_operation_start(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    if pointer(old, "/operation").is_some() {
        return;
    }
    let Some(sync) = pointer(new, "/operation/sync") else {
        return;
    };
    let initiated = InitiatedBy {
        username: str_at(new, "/operation/initiatedBy/username")
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        automated: bool_at(new, "/operation/initiatedBy/automated"),
    };
    let options = sync_options(sync, new);
    let rollback = is_rollback(&options, sync, old.or(new));
    recognition.actions.push(if rollback {
        Action::Rollback
    } else if initiated.automated && caller_is_automation {
        Action::AutoSync
    } else {
        Action::Sync
    });
    if !rollback && options.is_override() {
        recognition.actions.push(Action::Override);
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

fn target_revisions(app: Option<&DynamicObject>) -> Vec<String> {
    let revision = |source: &Value| {
        source
            .get("targetRevision")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or("HEAD")
            .to_string()
    };
    match pointer(app, "/spec/sources").and_then(Value::as_array) {
        Some(sources) if !sources.is_empty() => sources.iter().map(revision).collect(),
        _ => pointer(app, "/spec/source")
            .map(|s| vec![revision(s)])
            .unwrap_or_default(),
    }
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

fn sync_options(sync: &Value, app: Option<&DynamicObject>) -> SyncOptions {
    let requested = requested_revisions(sync);
    let targets = target_revisions(app);
    let override_revision = !requested.is_empty()
        && requested
            .iter()
            .enumerate()
            .any(|(i, r)| targets.get(i).is_none_or(|t| t != r));
    SyncOptions {
        prune: sync.get("prune").and_then(Value::as_bool) == Some(true),
        force: sync
            .pointer("/syncStrategy/apply/force")
            .and_then(Value::as_bool)
            == Some(true)
            || sync
                .pointer("/syncStrategy/hook/force")
                .and_then(Value::as_bool)
                == Some(true),
        dry_run: sync.get("dryRun").and_then(Value::as_bool) == Some(true),
        selective: non_empty_array(sync.get("resources")),
        override_revision,
        local_manifests: non_empty_array(sync.get("manifests")),
        revision: requested.join(","),
        sync_options: string_list(sync.get("syncOptions")),
    }
}

/// A rollback is a sync to a revision that was deployed before but is not the current one.
/// (Argo CD has no `operation.rollback`; its rollback is a sync to a history entry.)
fn is_rollback(options: &SyncOptions, sync: &Value, app: Option<&DynamicObject>) -> bool {
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
    let Some((current, earlier)) = history.split_last() else {
        return false;
    };
    let current = entry_revisions(current);
    requested != current
        && earlier
            .iter()
            .any(|entry| entry_revisions(entry) == requested)
        && !options.local_manifests
}

fn source_identity(source: &Value) -> [Option<&str>; 4] {
    ["repoURL", "path", "chart", "targetRevision"].map(|k| source.get(k).and_then(Value::as_str))
}

fn sources(app: Option<&DynamicObject>) -> Vec<[Option<&str>; 4]> {
    let mut all: Vec<_> = pointer(app, "/spec/source")
        .map(source_identity)
        .into_iter()
        .collect();
    if let Some(list) = pointer(app, "/spec/sources").and_then(Value::as_array) {
        all.extend(list.iter().map(source_identity));
    }
    all
}

fn recognize_application_update(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    recognize_operation_start(recognition, old, new, caller_is_automation);
    let actions = &mut recognition.actions;

    if str_at(new, "/status/operationState/phase") == Some("Terminating")
        && str_at(old, "/status/operationState/phase") != Some("Terminating")
        && pointer(new, "/operation").is_some()
    {
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
    .any(|path| pointer(old, path) != pointer(new, path));
    if destination_changed {
        actions.push(Action::Retarget);
    }
    if sources(old) != sources(new) {
        actions.push(Action::ChangeSource);
    }
    // Whatever the recognised actions do not explain is a plain update.
    const EXPLAINED: &[&str] = &[
        "/status",
        "/operation",
        "/spec/destination",
        "/spec/project",
        "/spec/source/repoURL",
        "/spec/source/path",
        "/spec/source/chart",
        "/spec/source/targetRevision",
        "/spec/sources/*/repoURL",
        "/spec/sources/*/path",
        "/spec/sources/*/chart",
        "/spec/sources/*/targetRevision",
        "/spec/syncPolicy/automated",
    ];
    if data_differs(old, new, EXPLAINED) || metadata_differs(old, new) {
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

fn recognize_workload_update(
    recognition: &mut Recognition,
    sub_resource: Option<&str>,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
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
    if restart.is_some() && restart != pointer(old, restart_path) {
        actions.push(Action::Restart);
    }
    if images(old) != images(new) {
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
    if kind == Kind::Rollout {
        recognize_rollout_status(actions, old, new);
        // Replacing the template of an aborted Rollout is how `kubectl argo rollouts undo` (and a
        // manual revert) looks; the object carries no explicit marker. Mid-canary template changes
        // are fix-forwards as often as reverts, so they are not called undo.
        if bool_at(old, "/status/abort")
            && pointer(old, "/spec/template") != pointer(new, "/spec/template")
        {
            actions.push(Action::Undo);
            explained.push("/spec/template");
        }
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
    let patterns: Vec<Vec<String>> = ["/apiVersion", "/kind", "/metadata"]
        .iter()
        .chain(explained)
        .map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
                .collect()
        })
        .collect();
    let live: Vec<&[String]> = patterns.iter().map(Vec::as_slice).collect();
    let null = Value::Null;
    let old = old.map_or(&null, |o| &o.data);
    let new = new.map_or(&null, |o| &o.data);
    differs_at(old, new, &live)
}

/// `live` holds the unmatched rest of every pattern whose prefix matches the current path, so a
/// subtree no pattern reaches is compared in one go.
fn differs_at(old: &Value, new: &Value, live: &[&[String]]) -> bool {
    if live.iter().any(|rest| rest.is_empty()) {
        return false;
    }
    if live.is_empty() {
        return !same_ignoring_absent(old, new);
    }
    let descend = |segment: &str, x: &Value, y: &Value| {
        let next: Vec<&[String]> = live
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
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .map(|(k, x)| (k, x, b.get(k).unwrap_or(&Value::Null)))
            .chain(
                b.iter()
                    .filter(|(k, _)| !a.contains_key(*k))
                    .map(|(k, y)| (k, &Value::Null, y)),
            )
            .any(|(key, x, y)| descend(key, x, y)),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .any(|(index, (x, y))| descend(&index.to_string(), x, y)),
        _ => old != new,
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
    a == b || (empty(a) && empty(b))
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
            .filter(|(k, _)| !matches!(k.as_str(), REFRESH_ANNOTATION | LAST_APPLIED_ANNOTATION))
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
