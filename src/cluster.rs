//! Live cluster data: a watched cache (kube reflector) of Namespace labels. Decisions read the
//! labels through the config's `namespaceLabels` keys, so a config reload applies at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::metrics::Metrics;

/// Namespace name -> its labels, as last seen in the cluster.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// Shared between the watcher and every engine, and carried over on reload.
pub type LiveNamespaces = Arc<ArcSwap<NamespaceLabels>>;

pub fn empty() -> LiveNamespaces {
    Arc::new(ArcSwap::from_pointee(HashMap::new()))
}

fn publish(store: &Store<Namespace>, live: &LiveNamespaces) {
    let snapshot: NamespaceLabels = store
        .state()
        .iter()
        .filter_map(|namespace| {
            let name = namespace.metadata.name.clone()?;
            Some((name, namespace.metadata.labels.clone().unwrap_or_default()))
        })
        .collect();
    live.store(Arc::new(snapshot));
}

/// Watch Namespaces until the stream ends (it does not, short of the process ending). `ready`
/// turns true after the first complete list; afterwards an API outage is logged and counted
/// while the last snapshot keeps serving, and the watcher retries with backoff.
pub async fn watch_namespaces(
    client: Client,
    live: LiveNamespaces,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    let api: Api<Namespace> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone) => {
                publish(&reader, &live);
                if !synced {
                    tracing::info!(namespaces = reader.state().len(), "namespace cache synced");
                }
                synced = true;
                metrics.namespace_cache_synced.set(1);
                ready.store(true, Ordering::Release);
            }
            Ok(Event::Apply(_) | Event::Delete(_)) if synced => publish(&reader, &live),
            Ok(_) => {}
            Err(error) => {
                metrics.record_namespace_cache_error();
                tracing::warn!(%error, "namespace watch failed; serving the last known namespaces and retrying");
            }
        }
    }
}
