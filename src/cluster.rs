//! Live cluster data, as plain values: the Namespace labels last seen in the cluster. Decisions
//! read the labels through the config's `namespaceLabels` keys, so a config reload applies at once.
//! The watcher that fills this (kube I/O) is `namespace_watch`, above the decision.

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

/// Namespace labels from manifests: Namespaces, or Lists of them (`kubectl get namespaces -o
/// json`). Anything else is an error naming what it is.
pub fn labels_from_manifests(documents: &[serde_json::Value]) -> Result<NamespaceLabels, String> {
    let mut found = NamespaceLabels::new();
    let mut add = |item: &serde_json::Value| -> Result<(), String> {
        let kind = item.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "Namespace" {
            return Err(format!(
                "expected Namespaces or a List of them, found kind {kind:?}"
            ));
        }
        let name = item
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .ok_or("a Namespace without metadata.name")?;
        let labels = item
            .pointer("/metadata/labels")
            .and_then(|l| l.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        found.insert(name.to_string(), labels);
        Ok(())
    };
    for document in documents {
        match document.get("items").and_then(|i| i.as_array()) {
            Some(items) => items.iter().try_for_each(&mut add)?,
            None => add(document)?,
        }
    }
    Ok(found)
}
