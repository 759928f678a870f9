//! Live cluster data, as plain values: the Namespace labels last seen in the cluster. Decisions
//! read the labels through the config's `namespaceLabels` keys, so a config reload applies at once.
//! The watcher that fills this (the only kube I/O) is `namespace_watch`, above the decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Namespace name -> its labels, as last seen in the cluster.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// Shared between the watcher and every engine, and carried over on reload.
pub type LiveNamespaces = Arc<ArcSwap<NamespaceLabels>>;

pub fn empty() -> LiveNamespaces {
    Arc::new(ArcSwap::from_pointee(HashMap::new()))
}
