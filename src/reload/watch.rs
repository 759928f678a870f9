//! Keeping something in step with files, however they change.
//!
//! Files change in many ways: edited in place, the directory replaced (`rm -rf` + copy), a symlink
//! swapped to a new revision whose old target is deleted (git-sync), the kubelet's ConfigMap or
//! Secret volume (`..data` → `..<timestamp>`, swapped atomically), deleted and re-created. A watch
//! on a directory follows its inode, not its path, so after a replacement or a swap it silently
//! sees nothing. So a follower:
//! - watches every directory whose change can change what the paths resolve to: a followed
//!   directory, its parent, the directory of every symlink on the way, a followed file's
//!   directory, or the deepest existing ancestor while a path is missing;
//! - after each burst of events, every `interval` as a backstop, and when its `check` asks to
//!   look again, resolves the paths again, re-establishes the watches if they moved, and lets the
//!   [`Follow`] compare the disk with what is in use.
//!
//! Policies and config (`reload`) and the serving certificate (`tls`) are both followed this way.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Changes closer together than this are one check (editors and volume updates write in bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// A burst that never goes quiet (a busy parent directory) is still acted on this soon.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How often the disk is compared with what is in use even without any file event.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// A path a follower reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A directory whose entries are read (entries may be symlinks themselves).
    Dir(PathBuf),
    File(PathBuf),
}

/// Something kept in step with files on disk.
pub trait Follow: Send + 'static {
    /// What is read; resolved again before every check.
    fn targets(&self) -> Vec<Target>;
    /// Compare the disk with what is in use and act on a difference. Returns how soon to look
    /// again even without an event (a change held back until it is stable), if at all.
    fn check(&mut self) -> Option<Duration>;
}

/// How a follower notices changes.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// React to file events (inotify and the like).
    pub file_events: bool,
    /// Compare the disk with what is in use this often regardless of events; `None`: never.
    pub interval: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            file_events: true,
            interval: Some(DEFAULT_INTERVAL),
        }
    }
}

/// A running follower: stops when dropped.
pub struct Following {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A watched directory's real path and its (device, inode).
pub(crate) type WatchSet = BTreeMap<PathBuf, (u64, u64)>;

/// Directories whose changes can change what `targets` resolve to or contain (see the module
/// comment), with the (device, inode) of each so a replaced directory counts as a change.
pub(crate) fn watch_set(targets: &[Target]) -> WatchSet {
    let mut dirs = BTreeSet::new();
    for target in targets {
        match target {
            Target::Dir(dir) => match resolve(dir, &mut dirs) {
                Some(real) if real.is_dir() => {
                    dirs.insert(parent_dir(&real));
                    // Entries may be symlinks themselves (`x.cedar -> ..data/x.cedar`).
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
            },
            Target::File(file) => {
                if let Some(real) = resolve(file, &mut dirs) {
                    dirs.insert(parent_dir(&real));
                }
            }
        }
    }
    dirs.into_iter()
        .filter_map(|dir| device_and_inode(&dir).map(|id| (dir, id)))
        .collect()
}

#[cfg(unix)]
fn device_and_inode(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn device_and_inode(dir: &Path) -> Option<(u64, u64)> {
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
pub(crate) fn resolve(path: &Path, watch: &mut BTreeSet<PathBuf>) -> Option<PathBuf> {
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

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// One follower and its watches, used from a blocking thread (checks read files and parse).
struct Watching<F> {
    follower: F,
    what: &'static str,
    watched: WatchSet,
    watcher: Option<notify::RecommendedWatcher>,
    /// Set when a watched directory itself was removed or moved: its watch is dead even if a new
    /// directory at the same path has the same inode number (inode numbers are reused at once).
    stale: Arc<AtomicBool>,
    /// Where file events go; `None` when file events are off.
    events: Option<UnboundedSender<()>>,
}

impl<F: Follow> Watching<F> {
    /// Re-resolve the paths and, if the directories to watch moved, watch the new ones. The
    /// watches are set before the disk is read, so a change after the read always shows up.
    fn refresh_watches(&mut self) -> notify::Result<()> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let wanted = watch_set(&self.follower.targets());
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
                    tracing::debug!(dir = %dir.display(), what = self.what, "watching for changes");
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

    fn check(&mut self) -> Option<Duration> {
        if let Err(error) = self.refresh_watches() {
            self.watcher = None;
            tracing::warn!(%error, what = self.what, "cannot watch for changes; relying on the periodic check");
        }
        self.follower.check()
    }
}

/// Keep `follower` in step with the disk until the returned handle is dropped. The first check
/// runs at once (it catches anything changed since the caller loaded). Must run inside a Tokio
/// runtime; fails when watching cannot work at all (e.g. out of inotify instances).
pub fn follow<F: Follow>(
    follower: F,
    what: &'static str,
    options: WatchOptions,
) -> notify::Result<Following> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watching = Watching {
        follower,
        what,
        watched: WatchSet::new(),
        watcher: None,
        stale: Arc::new(AtomicBool::new(false)),
        events: options.file_events.then_some(sender),
    };
    watching.refresh_watches()?;
    for dir in watching.watched.keys() {
        tracing::info!(dir = %dir.display(), what, "watching for changes");
    }
    let watching = Arc::new(Mutex::new(watching));
    let task = tokio::spawn(run(watching, receiver, options.interval));
    Ok(Following { task })
}

async fn run<F: Follow>(
    watching: Arc<Mutex<Watching<F>>>,
    mut events: UnboundedReceiver<()>,
    interval: Option<Duration>,
) {
    let mut ticker = interval.filter(|i| !i.is_zero()).map(|period| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut events_open = true;
    loop {
        let watching = watching.clone();
        let again = tokio::task::spawn_blocking(move || {
            let mut watching = crate::sync::lock(&watching);
            watching.check()
        })
        .await
        .ok()
        .flatten();
        if !events_open && ticker.is_none() && again.is_none() {
            return;
        }
        tokio::select! {
            event = events.recv(), if events_open => {
                if event.is_none() {
                    // No more events (file events off): only the ticker and re-checks remain.
                    events_open = false;
                } else {
                    settle(&mut events).await;
                }
            }
            () = tick(&mut ticker) => {}
            () = sleep_for(again) => {}
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

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
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

#[cfg(test)]
#[path = "../unit_tests/watch_tests.rs"]
mod tests;
