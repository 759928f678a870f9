//! Where the engine comes from, and hot reload: watch the policy directory and config file,
//! debounce, build and validate a new engine, swap it in atomically. A bad edit keeps the last
//! good engine, is logged, and shows on `/readyz`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;

use crate::config::Config;
use crate::decide::Engine;
use crate::metrics::Metrics;
use crate::mode::Mode;
use crate::policy::PolicyStore;

/// Changes closer together than this are one reload (editors and ConfigMap updates write in bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The inputs an engine is built from; `None` means the copy embedded in the binary.
#[derive(Debug, Clone, Default)]
pub struct EngineSource {
    pub policies: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub mode: Option<Mode>,
}

impl EngineSource {
    pub fn load(&self) -> anyhow::Result<Engine> {
        let policies = match &self.policies {
            Some(dir) => PolicyStore::load_dir(dir)?,
            None => PolicyStore::embedded()?,
        };
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::embedded()?,
        };
        Ok(Engine::new(policies, config, self.mode))
    }

    /// Directories to watch: the policy directory and the config file's directory (watching the
    /// directory, not the file, catches the symlink swap of a mounted ConfigMap).
    fn watched(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = &self.policies {
            dirs.push(dir.clone());
        }
        if let Some(parent) = self.config.as_deref().map(parent_dir)
            && !dirs.contains(&parent)
        {
            dirs.push(parent);
        }
        dirs
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub succeeded: u64,
    pub failed: u64,
    /// The error of the latest reload attempt if it failed (cleared by the next success).
    pub last_error: Option<String>,
    pub last_success: Option<String>,
}

/// Try one reload: swap on success, keep the current engine and record the error otherwise.
pub fn reload_once(
    source: &EngineSource,
    engine: &ArcSwap<Engine>,
    status: &Mutex<ReloadStatus>,
    metrics: &Metrics,
) -> bool {
    let result = source.load();
    let mut status = match status.lock() {
        Ok(status) => status,
        Err(poisoned) => poisoned.into_inner(),
    };
    match result {
        Ok(mut new_engine) => {
            // Live cluster data belongs to the process, not to the policy set.
            new_engine.live_namespaces = engine.load().live_namespaces.clone();
            tracing::info!(
                policies = new_engine.policies.policy_count(),
                mode = %new_engine.mode,
                "reloaded policies and config"
            );
            engine.store(Arc::new(new_engine));
            metrics.record_policy_reload(true);
            status.succeeded += 1;
            status.last_error = None;
            status.last_success = Some(jiff::Timestamp::now().to_string());
            true
        }
        Err(error) => {
            let message = format!("{error:#}");
            tracing::error!(error = %message, "reload failed; still serving the last good policies");
            status.failed += 1;
            metrics.record_policy_reload(false);
            status.last_error = Some(message);
            false
        }
    }
}

/// Watch the sources and reload on change until the returned watcher is dropped.
pub fn watch(
    source: EngineSource,
    engine: Arc<ArcSwap<Engine>>,
    status: Arc<Mutex<ReloadStatus>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    let dirs = source.watched();
    if dirs.is_empty() {
        return Ok(None);
    }
    watch_dirs(&dirs, "policies and config", move || {
        reload_once(&source, &engine, &status, &metrics);
    })
    .map(Some)
}

/// Call `on_change` (on a blocking thread) after each burst of changes in `dirs` settles.
/// Directories, not files, are watched: a mounted Secret or ConfigMap is updated by swapping a
/// symlink, which a watch on the old file never sees.
pub fn watch_dirs(
    dirs: &[PathBuf],
    what: &'static str,
    on_change: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                let _ = sender.send(());
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "file watch error"),
        })?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), what, "watching for changes");
    }
    let on_change = Arc::new(on_change);
    tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            // Debounce: wait until the burst of events is over.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, receiver.recv()).await {}
            let on_change = on_change.clone();
            let _ = tokio::task::spawn_blocking(move || on_change()).await;
        }
    });
    Ok(watcher)
}

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
