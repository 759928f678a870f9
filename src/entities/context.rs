//! The Cedar context of one request: the operation, who delegated, the sync and auto-sync
//! options, replicas. One shape for every action (the schema's `Context`).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use cedar_policy_core::ast::{Context as CoreContext, Value as CedarValue};
use smol_str::SmolStr;

use super::ContextFacts;
use super::string;
use crate::recognize::{AutoSync, Relabel, SyncOptions};

/// The context record of a request (the same for each of its actions).
pub fn build_context(facts: &ContextFacts) -> CoreContext {
    // In key order: the map is built from a sorted run without reordering it.
    let pairs: BTreeMap<SmolStr, CedarValue> = [
        ("autoSync", auto_sync_record(facts.auto_sync)),
        ("automated", CedarValue::from(facts.automated)),
        ("cascade", CedarValue::from(facts.cascade)),
        ("delegated", CedarValue::from(facts.delegator.is_some())),
        (
            "delegator",
            string(facts.delegator.as_deref().unwrap_or("")),
        ),
        ("dryRun", CedarValue::from(facts.dry_run)),
        ("forgedInitiator", CedarValue::from(facts.forged_initiator)),
        ("newReplicas", CedarValue::from(facts.new_replicas)),
        ("oldReplicas", CedarValue::from(facts.old_replicas)),
        ("operation", string(facts.operation)),
        ("relabel", relabel_record(facts.relabel.as_deref())),
        ("subResource", string(&facts.sub_resource)),
        ("sync", sync_record(&facts.sync)),
    ]
    .into_iter()
    .map(|(key, value)| (SmolStr::new_static(key), value))
    .collect();
    CoreContext::Value(Arc::new(pairs))
}

/// `context.sync`: the options of the sync operation this request starts.
fn sync_record(sync: &SyncOptions) -> CedarValue {
    // Most requests start no sync: their record is the same every time (a clone is a count).
    static NO_SYNC: LazyLock<CedarValue> =
        LazyLock::new(|| build_sync_record(&SyncOptions::default()));
    if *sync == SyncOptions::default() {
        return NO_SYNC.clone();
    }
    build_sync_record(sync)
}

fn build_sync_record(sync: &SyncOptions) -> CedarValue {
    CedarValue::record(
        [
            ("dryRun", CedarValue::from(sync.dry_run)),
            ("force", CedarValue::from(sync.force)),
            ("localManifests", CedarValue::from(sync.local_manifests)),
            ("override", CedarValue::from(sync.is_override())),
            ("prune", CedarValue::from(sync.prune)),
            ("revision", string(&sync.revision)),
            ("selective", CedarValue::from(sync.selective)),
            (
                "syncOptions",
                CedarValue::set(sync.sync_options.iter().map(|o| string(o)), None),
            ),
        ],
        None,
    )
}

/// `context.relabel`: a Namespace's trust labels before and after ("" for every other kind).
fn relabel_record(relabel: Option<&Relabel>) -> CedarValue {
    static EMPTY: LazyLock<CedarValue> = LazyLock::new(|| build_relabel_record(&Relabel::EMPTY));
    match relabel {
        Some(relabel) if *relabel != Relabel::EMPTY => build_relabel_record(relabel),
        _ => EMPTY.clone(),
    }
}

fn build_relabel_record(relabel: &Relabel) -> CedarValue {
    CedarValue::record(
        [
            ("newEnvironment", string(&relabel.new_environment)),
            ("newTeam", string(&relabel.new_team)),
            ("oldEnvironment", string(&relabel.old_environment)),
            ("oldTeam", string(&relabel.old_team)),
        ],
        None,
    )
}

/// `context.autoSync`: the auto-sync policy after the change; one of eight records, built once.
fn auto_sync_record(auto: AutoSync) -> CedarValue {
    static ALL: LazyLock<Vec<CedarValue>> = LazyLock::new(|| {
        (0..8)
            .map(|bits| {
                build_auto_sync_record(AutoSync {
                    enabled: bits & 1 != 0,
                    prune: bits & 2 != 0,
                    self_heal: bits & 4 != 0,
                })
            })
            .collect()
    });
    let bits =
        usize::from(auto.enabled) | usize::from(auto.prune) << 1 | usize::from(auto.self_heal) << 2;
    ALL.get(bits)
        .cloned()
        .unwrap_or_else(|| build_auto_sync_record(auto))
}

fn build_auto_sync_record(auto: AutoSync) -> CedarValue {
    CedarValue::record(
        [
            ("enabled", auto.enabled),
            ("prune", auto.prune),
            ("selfHeal", auto.self_heal),
        ],
        None,
    )
}
