//! Where the engine comes from, and hot reload.
//!
//! Files change in many ways: edited in place, the directory replaced (`rm -rf` + copy), a symlink
//! swapped to a new revision whose old target is deleted (git-sync), the kubelet's ConfigMap
//! volume (`..data` → `..<timestamp>`, swapped atomically), deleted and re-created. A watch on a
//! directory follows its inode, not its path, so after a replacement or a swap it silently sees
//! nothing. So the reloader:
//! - watches every directory whose change can change what the paths resolve to: the policy
//!   directory, its parent, the directory of every symlink on the way, the config file's
//!   directory, or the deepest existing ancestor while a path is missing;
//! - after each burst of events, and every `interval` as a backstop, resolves the paths again,
//!   re-establishes the watches if they moved, reads what is on disk and reloads when its
//!   fingerprint (SHA-256 of exactly the bytes parsed) differs from the last one loaded or tried.
//!
//! A bad change keeps the last good engine, is logged, counted and shown on `/readyz`; the same
//! bad content is not retried until it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::config::{Config, ConfigError, EMBEDDED_CONFIG};
use crate::decide::Engine;
use crate::metrics::Metrics;
use crate::mode::Mode;
use crate::policy::{self, EMBEDDED_POLICIES, PolicyError, PolicyStore};

/// Changes closer together than this are one reload (editors and ConfigMap updates write in bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// A burst that never goes quiet (a busy parent directory) is still acted on this soon.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How often the disk is compared with what is loaded even without any file event.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

const EMBEDDED_POLICIES_ORIGIN: &str = "(embedded policies/)";
const EMBEDDED_CONFIG_ORIGIN: &str = "(embedded config/guardrails.yaml)";

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Policies(#[from] PolicyError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The inputs an engine is built from; `None` means the copy embedded in the binary.
#[derive(Debug, Clone, Default)]
pub struct EngineSource {
    pub policies: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub mode: Option<Mode>,
    /// Accept a policy set in which some action has no permit for anyone (also allowed by the
    /// config's `allowDefaultDeny`). Otherwise such a set is refused like an invalid one.
    pub allow_default_deny: bool,
}

/// What identifies the inputs of one load: the SHA-256 of the policy files and of the config
/// text, or the read error when they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    policies: String,
    config: String,
}

impl Fingerprint {
    /// The fingerprint of what `engine` was built from.
    fn of(engine: &Engine) -> Self {
        Self {
            policies: engine.policies.hash.clone(),
            config: engine.config.hash.clone(),
        }
    }
}

/// The bytes one load reads, read once: the fingerprint names exactly what gets parsed.
struct Snapshot {
    policies: Result<BTreeMap<String, String>, PolicyError>,
    policies_origin: String,
    config: Result<String, ConfigError>,
    config_origin: String,
    fingerprint: Fingerprint,
}

impl EngineSource {
    pub fn load(&self) -> Result<Engine, LoadError> {
        self.build(self.read())
    }

    fn read(&self) -> Snapshot {
        let (policies, policies_origin) = match &self.policies {
            Some(dir) => (policy::read_sources(dir), dir.display().to_string()),
            None => (
                Ok(EMBEDDED_POLICIES
                    .iter()
                    .map(|(name, text)| (name.to_string(), text.to_string()))
                    .collect()),
                EMBEDDED_POLICIES_ORIGIN.to_string(),
            ),
        };
        let (config, config_origin) = match &self.config {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                }),
                path.display().to_string(),
            ),
            None => (
                Ok(EMBEDDED_CONFIG.to_string()),
                EMBEDDED_CONFIG_ORIGIN.to_string(),
            ),
        };
        let fingerprint = Fingerprint {
            policies: match &policies {
                Ok(files) => {
                    policy::sources_hash(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
                }
                Err(error) => format!("unreadable: {error}"),
            },
            config: match &config {
                Ok(text) => policy::text_hash(text),
                Err(error) => format!("unreadable: {error}"),
            },
        };
        Snapshot {
            policies,
            policies_origin,
            config,
            config_origin,
            fingerprint,
        }
    }

    fn build(&self, snapshot: Snapshot) -> Result<Engine, LoadError> {
        let files = snapshot.policies?;
        let policies = PolicyStore::from_sources(
            files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            &snapshot.policies_origin,
        )?;
        let config = Config::from_yaml(&snapshot.config?, &snapshot.config_origin)?;
        if !policies.default_denied.is_empty() {
            if self.allow_default_deny || config.file.allow_default_deny {
                tracing::warn!(
                    actions = %policies.default_denied.join(", "),
                    "no permit policy can match these actions: they are denied to everyone (allowed by allowDefaultDeny)"
                );
            } else {
                return Err(PolicyError::DefaultDeny(policies.default_denied.clone()).into());
            }
        }
        Ok(Engine::new(policies, config, self.mode))
    }

    /// Directories whose changes can change what the sources resolve to or contain (see the
    /// module comment), with the identity of each so a replaced directory counts as a change.
    fn watch_set(&self) -> WatchSet {
        let mut dirs = BTreeSet::new();
        if let Some(dir) = &self.policies {
            match resolve(dir, &mut dirs) {
                Some(real) if real.is_dir() => {
                    dirs.insert(parent_dir(&real));
                    // Policy files may be symlinks themselves (`x.cedar -> ..data/x.cedar`).
                    if let Ok(entries) = std::fs::read_dir(&real) {
                        for entry in entries.flatten() {
                            let path = entry.path();
                            if entry.file_type().is_ok_and(|t| t.is_symlink())
                                && let Some(file) = resolve(&path, &mut dirs)
                            {
                                dirs.insert(parent_dir(&file));
                            }
                        }
                    }
                    dirs.insert(real);
                }
                Some(real) => {
                    dirs.insert(parent_dir(&real));
                }
                None => {}
            }
        }
        if let Some(file) = &self.config
            && let Some(real) = resolve(file, &mut dirs)
        {
            dirs.insert(parent_dir(&real));
        }
        dirs.into_iter()
            .filter_map(|dir| identity(&dir).map(|id| (dir, id)))
            .collect()
    }
}

/// A watched directory's real path and its (device, inode).
type WatchSet = BTreeMap<PathBuf, (u64, u64)>;

#[cfg(unix)]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok()?.is_dir().then_some((0, 0))
}

enum Part {
    Root(OsString),
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> Vec<Part> {
    path.components()
        .filter_map(|component| match component {
            Component::Prefix(_) | Component::RootDir => {
                Some(Part::Root(component.as_os_str().to_os_string()))
            }
            Component::CurDir => None,
            Component::ParentDir => Some(Part::Parent),
            Component::Normal(name) => Some(Part::Name(name.to_os_string())),
        })
        .collect()
}

/// Resolve `path` component by component, adding to `watch` the directory of every symlink
/// followed (a swap of the link shows there) and, when a component is missing, the deepest
/// directory that exists (its re-creation shows there). `None` when the path does not resolve.
fn resolve(path: &Path, watch: &mut BTreeSet<PathBuf>) -> Option<PathBuf> {
    /// Linux's own limit on symlinks followed in one lookup.
    const MAX_LINKS: usize = 40;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut pending = parts(&absolute);
    pending.reverse();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        let name = match part {
            Part::Root(root) => {
                current.push(root);
                continue;
            }
            Part::Parent => {
                current.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let candidate = current.join(&name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                watch.insert(current.clone());
                links += 1;
                let target = std::fs::read_link(&candidate).ok()?;
                if links > MAX_LINKS {
                    return None;
                }
                let mut target_parts = parts(&target);
                target_parts.reverse();
                pending.extend(target_parts);
            }
            Ok(_) => current = candidate,
            Err(_) => {
                watch.insert(current);
                return None;
            }
        }
    }
    Some(current)
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub succeeded: u64,
    pub failed: u64,
    /// The error of the latest reload attempt if it failed (cleared by the next success).
    pub last_error: Option<String>,
    pub last_success: Option<String>,
    /// When the disk was last compared with what is loaded (after a file event or by the
    /// periodic check).
    pub last_checked: Option<String>,
}

/// Try one reload: swap on success, keep the current engine and record the error otherwise.
pub fn reload_once(
    source: &EngineSource,
    engine: &ArcSwap<Engine>,
    status: &Mutex<ReloadStatus>,
    metrics: &Metrics,
) -> bool {
    apply(source.load(), engine, status, metrics)
}

fn apply(
    result: Result<Engine, LoadError>,
    engine: &ArcSwap<Engine>,
    status: &Mutex<ReloadStatus>,
    metrics: &Metrics,
) -> bool {
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
                policy_hash = %new_engine.policies.hash,
                config_hash = %new_engine.config.hash,
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
            let message = error.to_string();
            tracing::error!(error = %message, "reload failed; still serving the last good policies");
            status.failed += 1;
            metrics.record_policy_reload(false);
            status.last_error = Some(message);
            false
        }
    }
}

/// How the reloader notices changes.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// React to file events (inotify and the like).
    pub file_events: bool,
    /// Compare the disk with what is loaded this often regardless of events; `None`: never.
    pub interval: Option<Duration>,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            file_events: true,
            interval: Some(DEFAULT_RELOAD_INTERVAL),
        }
    }
}

/// The running reloader: stops when dropped.
pub struct Reloader {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The state of one reloader, used from a blocking thread (it reads files and parses policies).
struct Checker {
    source: EngineSource,
    engine: Arc<ArcSwap<Engine>>,
    status: Arc<Mutex<ReloadStatus>>,
    metrics: Arc<Metrics>,
    /// What was last loaded or tried: the same content is not tried again.
    last: Fingerprint,
    watched: WatchSet,
    watcher: Option<notify::RecommendedWatcher>,
    /// Set when a watched directory itself was removed or moved: its watch is dead even if a new
    /// directory at the same path has the same inode number (inode numbers are reused at once).
    stale: Arc<AtomicBool>,
    /// Where file events go; `None` when file events are off.
    events: Option<UnboundedSender<()>>,
}

impl Checker {
    /// Re-resolve the paths and, if the directories to watch moved, watch the new ones. The
    /// watches are set before the disk is read, so a change after the read always shows up.
    fn refresh_watches(&mut self) -> notify::Result<()> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let wanted = self.source.watch_set();
        let stale = self.stale.swap(false, Ordering::AcqRel);
        if !stale && wanted == self.watched && self.watcher.is_some() {
            return Ok(());
        }
        // A fresh watcher: re-adding a path to an inotify watcher whose old inode is gone mixes
        // the old watch with the new one.
        let sender = events.clone();
        let stale = self.stale.clone();
        let dirs: BTreeSet<PathBuf> = wanted.keys().cloned().collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if !event.kind.is_access() => {
                    let moved_or_removed = matches!(
                        event.kind,
                        notify::EventKind::Remove(_)
                            | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                    );
                    if moved_or_removed && event.paths.iter().any(|p| dirs.contains(p)) {
                        stale.store(true, Ordering::Release);
                    }
                    let _ = sender.send(());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "file watch error");
                    // An overflow or a lost watch: look again, from scratch.
                    stale.store(true, Ordering::Release);
                    let _ = sender.send(());
                }
            })?;
        let mut watched = WatchSet::new();
        for (dir, id) in wanted {
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching for policy and config changes");
                    watched.insert(dir, id);
                }
                // Gone since it was resolved: the set differs next time, which retries.
                Err(error) => tracing::debug!(dir = %dir.display(), %error, "cannot watch"),
            }
        }
        self.watcher = Some(watcher);
        self.watched = watched;
        Ok(())
    }

    fn check(&mut self) {
        if let Err(error) = self.refresh_watches() {
            self.watcher = None;
            tracing::warn!(%error, "cannot watch the policy directory and config; relying on the periodic check");
        }
        let snapshot = self.source.read();
        {
            let mut status = match self.status.lock() {
                Ok(status) => status,
                Err(poisoned) => poisoned.into_inner(),
            };
            status.last_checked = Some(jiff::Timestamp::now().to_string());
        }
        if snapshot.fingerprint == self.last {
            return;
        }
        self.last = snapshot.fingerprint.clone();
        apply(
            self.source.build(snapshot),
            &self.engine,
            &self.status,
            &self.metrics,
        );
    }
}

/// Reload `engine` from `source` on every change until the returned reloader is dropped.
/// `None` when there is nothing to watch (only embedded sources). Must run inside a Tokio runtime.
pub fn watch(
    source: EngineSource,
    engine: Arc<ArcSwap<Engine>>,
    status: Arc<Mutex<ReloadStatus>>,
    metrics: Arc<Metrics>,
    options: ReloadOptions,
) -> notify::Result<Option<Reloader>> {
    if source.policies.is_none() && source.config.is_none() {
        return Ok(None);
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let last = Fingerprint::of(&engine.load());
    let mut checker = Checker {
        source,
        engine,
        status,
        metrics,
        last,
        watched: WatchSet::new(),
        watcher: None,
        stale: Arc::new(AtomicBool::new(false)),
        events: options.file_events.then_some(sender),
    };
    // Fail at start-up when watching cannot work at all (e.g. out of inotify instances).
    checker.refresh_watches()?;
    for dir in checker.watched.keys() {
        tracing::info!(dir = %dir.display(), "watching for policy and config changes");
    }
    let checker = Arc::new(Mutex::new(checker));
    let task = tokio::spawn(run(checker, receiver, options.interval));
    Ok(Some(Reloader { task }))
}

async fn run(
    checker: Arc<Mutex<Checker>>,
    mut events: UnboundedReceiver<()>,
    interval: Option<Duration>,
) {
    let mut ticker = interval.filter(|i| !i.is_zero()).map(|period| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    // The first check runs at once: it catches anything changed since the engine was loaded.
    loop {
        let checker = checker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut checker = match checker.lock() {
                Ok(checker) => checker,
                Err(poisoned) => poisoned.into_inner(),
            };
            checker.check();
        })
        .await;
        tokio::select! {
            event = events.recv() => {
                if event.is_none() {
                    // No more events (file events off): only the ticker remains.
                    match &mut ticker {
                        Some(ticker) => { ticker.tick().await; }
                        None => return,
                    }
                } else {
                    settle(&mut events).await;
                }
            }
            () = tick(&mut ticker) => {}
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Wait until events stop for `DEBOUNCE`, or `MAX_DEBOUNCE` after the first.
async fn settle(events: &mut UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        let quiet = DEBOUNCE.min(deadline - now);
        match tokio::time::timeout(quiet, events.recv()).await {
            Ok(Some(())) => {}
            Ok(None) | Err(_) => return,
        }
    }
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

#[cfg(test)]
#[path = "unit_tests/reload_tests.rs"]
mod tests;
