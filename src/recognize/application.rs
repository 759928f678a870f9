//! Application semantics: operations started (sync, auto-sync, rollback, override), terminate,
//! refresh, finalizers, auto-sync and sync policy, destination and source changes.

use std::borrow::Cow;

use kube::core::DynamicObject;
use serde_json::Value;

use super::diff::{Writer, data_differs, metadata_differs, values_differ};
use super::object::{
    annotation_set, has_resources_finalizer, is_deleting, non_empty_array, pointer, str_at,
    string_list,
};
use super::{Action, AutoSync, InitiatedBy, Recognition, SyncOptions};
use crate::json::{self, member, same, same_opt};

pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
/// argocd-server's request for the hydrator, set beside the refresh annotation.
pub const HYDRATE_ANNOTATION: &str = "argocd.argoproj.io/hydrate";
/// What a refresh writes (argocd-server) and the controller clears once done.
/// Argo CD 3.6 writes all four on every refresh; the controller clears the first pair once it
/// has refreshed, the hydrator the second once it has hydrated (a JSON patch each).
pub const REFRESH_ANNOTATIONS: [&str; 4] = [
    REFRESH_ANNOTATION,
    "argocd.argoproj.io/refresh-timestamp",
    HYDRATE_ANNOTATION,
    "argocd.argoproj.io/hydrate-timestamp",
];

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
pub fn recognize_operation_start(
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
    let initiated_by = member(Some(operation), "initiatedBy");
    let initiated = InitiatedBy {
        username: member(initiated_by, "username")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        automated: member(initiated_by, "automated").and_then(Value::as_bool) == Some(true),
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

/// The spec's sources in order (`spec.sources`, else `spec.source`, else the Source Hydrator's
/// sync source: what argocd-server and the controller put in a hydrated app's operation).
fn spec_sources(app: Option<&DynamicObject>) -> Vec<Cow<'_, Value>> {
    let spec = pointer(app, "/spec");
    match member(spec, "sources").and_then(Value::as_array) {
        Some(sources) if !sources.is_empty() => sources.iter().map(Cow::Borrowed).collect(),
        _ => match member(spec, "source") {
            Some(source) => vec![Cow::Borrowed(source)],
            None => hydrated_sync_source(app)
                .map(Cow::Owned)
                .into_iter()
                .collect(),
        },
    }
}

/// `ApplicationSpec.GetSource` for a hydrated app: the dry source's repo (or the sync source's
/// own), the sync source's path, the hydrated branch as revision.
fn hydrated_sync_source(app: Option<&DynamicObject>) -> Option<Value> {
    let hydrator = pointer(app, "/spec/sourceHydrator")?;
    let text = |path: &str| {
        json::pointer(hydrator, path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let repo = text("/syncSource/repoURL").or(text("/drySource/repoURL"))?;
    let mut source = serde_json::Map::new();
    source.insert("repoURL".into(), Value::from(repo));
    if let Some(path) = text("/syncSource/path") {
        source.insert("path".into(), Value::from(path));
    }
    if let Some(branch) = text("/syncSource/targetBranch") {
        source.insert("targetRevision".into(), Value::from(branch));
    }
    Some(Value::Object(source))
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
pub(super) fn revision_overrides(requested: &str, target: &str) -> bool {
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
pub(super) fn normalized_source(source: &Value) -> Value {
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
    let requested_sources = requested_sources(sync);
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
    let override_revision = revisions_override(sync, &requested, &requested_sources, &spec);
    let strategy = member(Some(sync), "syncStrategy");
    SyncOptions {
        prune: sync.get("prune").and_then(Value::as_bool) == Some(true),
        force: ["apply", "hook"].iter().any(|kind| {
            member(member(strategy, kind), "force").and_then(Value::as_bool) == Some(true)
        }),
        dry_run: sync.get("dryRun").and_then(Value::as_bool) == Some(true),
        selective: non_empty_array(sync.get("resources")),
        override_revision,
        override_source,
        local_manifests: non_empty_array(sync.get("manifests")),
        revision: requested.join(","),
        sync_options: string_list(sync.get("syncOptions")),
    }
}

/// What the controller deploys: `sync.sources`/`sync.source` when given (empty: the spec's).
fn requested_sources(sync: &Value) -> Vec<&Value> {
    match sync.get("sources").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.iter().collect(),
        _ => sync
            .get("source")
            .filter(|s| !s.is_null())
            .into_iter()
            .collect(),
    }
}

/// Does a `requested` revision, or a requested source's own targetRevision, override the one the
/// spec's source tracks?
fn revisions_override(
    sync: &Value,
    requested: &[String],
    requested_sources: &[&Value],
    spec: &[Cow<'_, Value>],
) -> bool {
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
    requested
        .iter()
        .enumerate()
        .any(|(i, r)| revision_overrides(r, target_at(i)))
        || requested_sources
            .iter()
            .zip(spec)
            .any(|(a, b)| revision_overrides(target_revision(a), target_revision(b)))
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

/// Everything the controller fetches and renders: `spec.source`, `spec.sources` and the Source
/// Hydrator's dry source, sync source and branch, whole (`spec` is the Application's `/spec`).
fn sources(spec: Option<&Value>) -> [Option<&Value>; 3] {
    [
        member(spec, "source"),
        member(spec, "sources"),
        member(spec, "sourceHydrator"),
    ]
}

/// `automated` under `sync_policy` (an Application's `/spec/syncPolicy`, an ApplicationSet
/// template's).
pub fn auto_sync_at(sync_policy: Option<&Value>) -> AutoSync {
    match sync_policy
        .and_then(|p| p.get("automated"))
        .filter(|a| !a.is_null())
    {
        Some(automated) => AutoSync {
            // An `automated` block without `enabled` is enabled (Argo CD's own default).
            enabled: automated.get("enabled").and_then(Value::as_bool) != Some(false),
            prune: automated.get("prune").and_then(Value::as_bool) == Some(true),
            self_heal: automated.get("selfHeal").and_then(Value::as_bool) == Some(true),
        },
        None => AutoSync::default(),
    }
}

/// `enable-auto-sync` when auto-sync turns on or gains prune or self-heal; `disable-auto-sync`
/// when it turns off.
pub fn auto_sync_actions(before: AutoSync, after: AutoSync, actions: &mut Vec<Action>) {
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
}

/// A sync policy changed beyond what `enable-auto-sync` / `disable-auto-sync` say: sync options,
/// retry, managed namespace metadata, `allowEmpty`, prune or self-heal turning off. Absent, `null`
/// and `false` read the same.
pub fn sync_policy_changed(old: Option<&Value>, new: Option<&Value>) -> bool {
    let null = Value::Null;
    if values_differ(old.unwrap_or(&null), new.unwrap_or(&null), &["/automated"]) {
        return true;
    }
    let (before, after) = (auto_sync_at(old), auto_sync_at(new));
    if before.enabled && !after.enabled {
        // Turning auto-sync off explains whatever it carried.
        return false;
    }
    let automated = |policy: Option<&Value>| {
        policy
            .and_then(|p| p.get("automated"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (automated(old), automated(new));
    let unset =
        |v: Option<&Value>| matches!(v, None | Some(Value::Null) | Some(Value::Bool(false)));
    a.keys()
        .chain(b.keys())
        .filter(|key| key.as_str() != "enabled")
        .any(|key| {
            let (x, y) = (a.get(key), b.get(key));
            if (unset(x) && unset(y)) || same_opt(x, y) {
                return false;
            }
            // Prune or self-heal turning on is `enable-auto-sync`.
            let turned_on = matches!(key.as_str(), "prune" | "selfHeal")
                && y == Some(&Value::Bool(true))
                && after.enabled;
            !turned_on
        })
}

pub fn recognize_update(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
    caller_is_delegator: bool,
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
    // argocd-server's Delete (server/application/application.go, `Server.Delete`) adds the
    // resources finalizer by a merge patch before it deletes. Allowed alone, a denied delete would
    // leave it behind and the next delete, meant or not, would cascade: it is the delete it
    // prepares, decided as one.
    let arms_cascade = caller_is_delegator
        && !is_deleting(new)
        && !has_resources_finalizer(old)
        && has_resources_finalizer(new);
    recognition.cascade |= arms_cascade;
    let actions = &mut recognition.actions;
    let terminate = terminating(old, new);
    if terminate {
        actions.push(Action::Terminate);
    }
    let refreshed = REFRESH_ANNOTATIONS
        .iter()
        .any(|key| annotation_set(old, new, key));
    if refreshed {
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
    if arms_cascade {
        actions.push(Action::Delete);
    }
    spec_change_actions(old, new, recognition.auto_sync, actions);
    let writer = Writer {
        automation: caller_is_automation,
        recognised: !actions.is_empty(),
        refresh_annotations: &REFRESH_ANNOTATIONS,
        refreshed,
        finalizer_action: true,
        cascade_armed: arms_cascade,
    };
    if changed_beyond_actions(old, new, writer, started.is_some() || terminate) {
        actions.push(Action::Update);
    }
}

/// Auto-sync turning on or off, the sync policy, the destination and the sources changing.
fn spec_change_actions(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    auto_sync: AutoSync,
    actions: &mut Vec<Action>,
) {
    // Each side's spec read once; every field below is one step from it.
    let (old_spec, new_spec) = (pointer(old, "/spec"), pointer(new, "/spec"));
    let old_policy = member(old_spec, "syncPolicy");
    auto_sync_actions(auto_sync_at(old_policy), auto_sync, actions);
    if sync_policy_changed(old_policy, member(new_spec, "syncPolicy")) {
        actions.push(Action::ChangeSyncPolicy);
    }
    let (old_destination, new_destination) = (
        member(old_spec, "destination"),
        member(new_spec, "destination"),
    );
    let destination_changed =
        ["server", "name", "namespace"].iter().any(|field| {
            !same_opt(
                member(old_destination, field),
                member(new_destination, field),
            )
        }) || !same_opt(member(old_spec, "project"), member(new_spec, "project"));
    if destination_changed {
        actions.push(Action::Retarget);
    }
    if !sources(old_spec)
        .into_iter()
        .zip(sources(new_spec))
        .all(|(a, b)| same_opt(a, b))
    {
        actions.push(Action::ChangeSource);
    }
}

/// Whatever the recognised actions do not explain is a plain update. Status and clearing a
/// finished operation are the controllers' own; from anyone else only the operation a start
/// or terminate explains (`operation_explained`).
fn changed_beyond_actions(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    writer: Writer<'_>,
    operation_explained: bool,
) -> bool {
    let owned: &[&str] = if writer.automation {
        &["/status", "/operation"]
    } else if operation_explained {
        &["/status/operationState", "/operation"]
    } else {
        &[]
    };
    const EXPLAINED: &[&str] = &[
        "/spec/destination",
        "/spec/project",
        "/spec/source",
        "/spec/sources",
        "/spec/sourceHydrator",
        "/spec/syncPolicy",
    ];
    let explained: Vec<&str> = EXPLAINED.iter().chain(owned).copied().collect();
    data_differs(old, new, &explained) || metadata_differs(old, new, writer)
}
