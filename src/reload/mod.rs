//! Where the engine comes from, and hot reload.
//!
//! The policy directory and the config file are followed by `watch` (every way files change,
//! with a periodic re-read as a backstop). What is on disk is loaded when its fingerprint
//! (SHA-256 of exactly the bytes parsed) differs from the last one loaded or tried.
//!
//! A reload never serves a transient state. Files rewritten in place (`render > file`, `curl -o`)
//! are empty or cut short for a moment: an empty file is an error, and a change that takes
//! something away (a policy file, policies, teams, namespaces, clusters, delegators, a stricter
//! mode) is *held* until the same bytes have stayed on disk for the settle interval and are read
//! again. A bad change keeps the last good engine, is logged, counted and shown on `/readyz`;
//! the same bad content is not retried until it changes.

pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{Config, ConfigError, EMBEDDED_CONFIG};
use crate::decide::{DecisionCache, Engine};
use crate::metrics::Metrics;
use crate::policy::{self, EMBEDDED_POLICIES, PolicyError, PolicyStore};
use crate::vocabulary::Mode;

pub use crate::reload::watch::{
    DEFAULT_INTERVAL as DEFAULT_RELOAD_INTERVAL, Following as Reloader,
};
/// How long a change that takes something away must stay unchanged on disk before it is loaded.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

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
    /// Most decisions each engine remembers (`None`: `decide::DECISION_CACHE_ENTRIES`).
    pub decision_cache_entries: Option<usize>,
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
                std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.display().to_string(),
                    cause,
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
        let built = self.build_engine(snapshot);
        release_freed_memory();
        built
    }

    fn build_engine(&self, snapshot: Snapshot) -> Result<Engine, LoadError> {
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
        let mut engine = Engine::new(policies, config, self.mode);
        if let Some(entries) = self.decision_cache_entries {
            engine.decisions = DecisionCache::new(entries);
        }
        Ok(engine)
    }
}

/// Hand the memory a load freed back to the system. Parsing and validating policies allocates
/// several times what the store keeps (1,000 policies: ~25 MiB), and mimalloc, the server's
/// allocator, would otherwise keep those pages: idle RSS 56 MiB instead of 30. A no-op for
/// memory another allocator manages.
fn release_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
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
    /// A change on disk that takes something away, not loaded until it has stayed unchanged for
    /// the settle interval: what it takes away, and since when it is on disk.
    pub held: Option<HeldChange>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldChange {
    pub reason: String,
    pub since: String,
}

fn apply(
    result: Result<Engine, LoadError>,
    engine: &ArcSwap<Engine>,
    status: &Mutex<ReloadStatus>,
    metrics: &Metrics,
) -> bool {
    let mut status = crate::sync::lock(status);
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

/// What a change takes away from `old`, if anything: the label of the metric and a sentence.
/// A file being rewritten (truncated, then written) looks like this for a moment.
pub fn takes_away(old: &Engine, new: &Engine) -> Option<(&'static str, String)> {
    let files = |engine: &Engine| -> BTreeSet<String> {
        engine
            .policies
            .policies_meta()
            .map(|meta| meta.file.clone())
            .collect()
    };
    let (old_files, new_files) = (files(old), files(new));
    if let Some(gone) = old_files.difference(&new_files).next() {
        return Some((
            "policy-file-removed",
            format!("no policies come from {gone} any more"),
        ));
    }
    let counts = |what: &'static str, before: usize, after: usize| {
        (after < before).then(|| (what, format!("{what}: {before} before, {after} now")))
    };
    let (old_config, new_config) = (&old.config.file, &new.config.file);
    counts(
        "fewer-policies",
        old.policies.policy_count(),
        new.policies.policy_count(),
    )
    .or_else(|| {
        counts(
            "fewer-teams",
            old_config.teams.len(),
            new_config.teams.len(),
        )
    })
    .or_else(|| {
        counts(
            "fewer-namespaces",
            old_config.namespaces.len(),
            new_config.namespaces.len(),
        )
    })
    .or_else(|| {
        counts(
            "fewer-clusters",
            old_config.clusters.len(),
            new_config.clusters.len(),
        )
    })
    .or_else(|| {
        counts(
            "fewer-delegators",
            old_config.delegators.len(),
            new_config.delegators.len(),
        )
    })
    .or_else(|| {
        (new.mode < old.mode).then(|| {
            (
                "looser-mode",
                format!("mode {} before, {} now", old.mode, new.mode),
            )
        })
    })
}

/// How the reloader notices changes, and how long a change that takes something away must stay.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// React to file events (inotify and the like).
    pub file_events: bool,
    /// Compare the disk with what is loaded this often regardless of events; `None`: never.
    pub interval: Option<Duration>,
    /// A change that takes something away is loaded only once the same bytes stayed this long.
    pub settle: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            file_events: true,
            interval: Some(DEFAULT_RELOAD_INTERVAL),
            settle: DEFAULT_SETTLE,
        }
    }
}

/// A change held back: what is on disk, and since when.
struct Pending {
    fingerprint: Fingerprint,
    since: Instant,
}

/// Keeps the engine in step with its sources (see the module comment).
struct EngineFollower {
    source: EngineSource,
    engine: Arc<ArcSwap<Engine>>,
    status: Arc<Mutex<ReloadStatus>>,
    metrics: Arc<Metrics>,
    settle: Duration,
    /// What was last loaded or tried: the same content is not tried again.
    last: Fingerprint,
    pending: Option<Pending>,
}

impl EngineFollower {
    fn set_held(&self, held: Option<HeldChange>) {
        let mut status = crate::sync::lock(&self.status);
        status.held = held;
    }
}

impl crate::reload::watch::Follow for EngineFollower {
    fn targets(&self) -> Vec<crate::reload::watch::Target> {
        let mut targets = Vec::new();
        if let Some(dir) = &self.source.policies {
            targets.push(crate::reload::watch::Target::Dir(dir.clone()));
        }
        if let Some(file) = &self.source.config {
            targets.push(crate::reload::watch::Target::File(file.clone()));
        }
        targets
    }

    fn check(&mut self) -> Option<Duration> {
        let snapshot = self.source.read();
        {
            let mut status = crate::sync::lock(&self.status);
            status.last_checked = Some(jiff::Timestamp::now().to_string());
        }
        if snapshot.fingerprint == self.last {
            if self.pending.take().is_some() {
                tracing::info!("the change held back is gone from disk; nothing to load");
                self.set_held(None);
            }
            return None;
        }
        let fingerprint = snapshot.fingerprint.clone();
        let result = self.source.build(snapshot);
        if let Ok(new_engine) = &result
            && let Some((label, reason)) = takes_away(&self.engine.load(), new_engine)
        {
            let settled = self
                .pending
                .as_ref()
                .filter(|pending| pending.fingerprint == fingerprint)
                .map(|pending| pending.since.elapsed());
            match settled {
                Some(stable) if stable >= self.settle => {
                    tracing::info!(%reason, stable_ms = stable.as_millis(), "a change that takes something away stayed unchanged: loading it");
                }
                Some(stable) => return Some(self.settle - stable),
                None => {
                    tracing::warn!(%reason, settle_ms = self.settle.as_millis(), "holding back a change that takes something away until it stays unchanged on disk");
                    self.metrics.record_reload_held(label);
                    self.pending = Some(Pending {
                        fingerprint,
                        since: Instant::now(),
                    });
                    self.set_held(Some(HeldChange {
                        reason,
                        since: jiff::Timestamp::now().to_string(),
                    }));
                    return Some(self.settle);
                }
            }
        }
        self.pending = None;
        self.set_held(None);
        self.last = fingerprint;
        apply(result, &self.engine, &self.status, &self.metrics);
        None
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
    let last = Fingerprint::of(&engine.load());
    let follower = EngineFollower {
        source,
        engine,
        status,
        metrics,
        settle: options.settle,
        last,
        pending: None,
    };
    let watch_options = crate::reload::watch::WatchOptions {
        file_events: options.file_events,
        interval: options.interval,
    };
    crate::reload::watch::follow(follower, "policies and config", watch_options).map(Some)
}

#[cfg(test)]
#[path = "../unit_tests/reload_tests.rs"]
mod tests;
