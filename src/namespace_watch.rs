//! The Namespace watcher: a kube reflector that publishes every Namespace's labels into
//! `cluster::LiveNamespaces`. Kube I/O (like `policy_reports`), above the decision: decisions read
//! its snapshot, never the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::cluster::{LiveNamespaces, NamespaceLabels};
use crate::metrics::Metrics;

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

/// Every Namespace's labels, listed once (for `guardrails check --live-namespaces`).
pub async fn list_namespaces(client: Client) -> Result<NamespaceLabels, kube::Error> {
    let api: Api<Namespace> = Api::all(client);
    let list = api.list(&kube::api::ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|namespace| {
            let name = namespace.metadata.name?;
            Some((name, namespace.metadata.labels.unwrap_or_default()))
        })
        .collect())
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
