//! The Cedar context of one request: the operation, who delegated, the sync and auto-sync
//! options, replicas. One shape for every action (the schema's `Context`).

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::Context;
use cedar_policy_core::ast::{Context as CoreContext, Value as CedarValue};
use kube::core::admission::Operation;
use smol_str::SmolStr;

use super::{EntityError, string};
use crate::admission::Request;
use crate::identity::Identity;
use crate::recognize::{AutoSync, Recognition, Relabel, SyncOptions};

pub fn build_context(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
) -> Result<Context, EntityError> {
    let pairs: BTreeMap<SmolStr, CedarValue> = [
        ("operation", string(operation_name(&request.operation))),
        ("dryRun", CedarValue::from(request.dry_run)),
        (
            "subResource",
            string(request.sub_resource.as_deref().unwrap_or("")),
        ),
        ("delegated", CedarValue::from(identity.delegator.is_some())),
        (
            "delegator",
            string(identity.delegator.as_deref().unwrap_or("")),
        ),
        (
            "forgedInitiator",
            CedarValue::from(identity.forged_initiator.is_some() || recognition.forged_automation),
        ),
        ("automated", CedarValue::from(identity.automation)),
        ("sync", sync_record(&recognition.sync)),
        (
            "relabel",
            relabel_record(recognition.relabel.as_deref().unwrap_or(&Relabel::EMPTY)),
        ),
        ("autoSync", auto_sync_record(recognition.auto_sync)),
        ("cascade", CedarValue::from(recognition.cascade)),
        (
            "oldReplicas",
            CedarValue::from(recognition.old_replicas.unwrap_or(-1)),
        ),
        (
            "newReplicas",
            CedarValue::from(recognition.new_replicas.unwrap_or(-1)),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (SmolStr::new_static(key), value))
    .collect();
    Ok(CoreContext::Value(Arc::new(pairs)).into())
}

/// `context.sync`: the options of the sync operation this request starts.
fn sync_record(sync: &SyncOptions) -> CedarValue {
    CedarValue::record(
        [
            ("prune", CedarValue::from(sync.prune)),
            ("force", CedarValue::from(sync.force)),
            ("dryRun", CedarValue::from(sync.dry_run)),
            ("selective", CedarValue::from(sync.selective)),
            ("override", CedarValue::from(sync.is_override())),
            ("localManifests", CedarValue::from(sync.local_manifests)),
            ("revision", string(&sync.revision)),
            (
                "syncOptions",
                CedarValue::set(sync.sync_options.iter().map(|o| string(o)), None),
            ),
        ],
        None,
    )
}

/// `context.relabel`: a Namespace's trust labels before and after.
fn relabel_record(relabel: &Relabel) -> CedarValue {
    CedarValue::record(
        [
            ("oldTeam", string(&relabel.old_team)),
            ("newTeam", string(&relabel.new_team)),
            ("oldEnvironment", string(&relabel.old_environment)),
            ("newEnvironment", string(&relabel.new_environment)),
        ],
        None,
    )
}

/// `context.autoSync`: the auto-sync policy after the change.
fn auto_sync_record(auto: AutoSync) -> CedarValue {
    CedarValue::record(
        [
            ("enabled", auto.enabled),
            ("prune", auto.prune),
            ("selfHeal", auto.self_heal),
        ],
        None,
    )
}

/// The operation as kube serialises it.
fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
