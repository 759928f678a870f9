//! Changing the policies and config of a running server, in every way files change in practice:
//! in-place edits, the directory replaced, git-sync symlink swaps, the kubelet's ConfigMap volume,
//! deletion and re-creation. Each way is repeated, and after each change the test waits until
//! /readyz names exactly what is on disk and the decisions follow it. File-event tests run without
//! the periodic check, so they pass only if the watches themselves keep up.

mod common {
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
    pub mod wait;
}

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::fixtures::fixture;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::PaymentsDev;
use common::wait::eventually;
use guardrails::policy::{sources_hash, text_hash};
use guardrails::reload::{self, EngineSource, ReloadOptions, Reloader};
use guardrails::server::{self, AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const ITERATIONS: usize = 6;

async fn call(state: &AppState, request: Request<Body>) -> Vec<u8> {
    let response = server::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

async fn allowed(state: &AppState, review: &Review) -> bool {
    let request = Request::post("/validate")
        .body(Body::from(review.body()))
        .unwrap();
    let body: Value = serde_json::from_slice(&call(state, request).await).unwrap();
    body["response"]["allowed"].as_bool().unwrap()
}

async fn readyz(state: &AppState) -> Value {
    let body = call(state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    serde_json::from_slice(&body).unwrap()
}

async fn metrics(state: &AppState) -> String {
    let body = call(state, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    String::from_utf8(body).unwrap()
}

/// File events only: no periodic check to cover for a lost watch.
const EVENTS_ONLY: ReloadOptions = ReloadOptions {
    file_events: true,
    interval: None,
    settle: SETTLE,
};
/// Short, so tests that take something away wait little; long enough to see a change held.
const SETTLE: Duration = Duration::from_millis(500);

/// A server state built from `source`, reloading on changes while the reloader lives.
fn watched(source: EngineSource, options: ReloadOptions) -> (AppState, Reloader) {
    let state = AppState::with_audit(
        source.load().unwrap(),
        guardrails::audit::AuditLog::disabled(),
    );
    let reloader = reload::watch(
        source,
        state.engine.clone(),
        state.reload.clone(),
        state.metrics.clone(),
        options,
    )
    .unwrap()
    .expect("a reloader");
    (state, reloader)
}

fn policies_at(dir: &Path) -> EngineSource {
    EngineSource {
        policies: Some(dir.to_path_buf()),
        ..EngineSource::default()
    }
}

/// A developer scaling a Deployment in a namespace no team owns: allowed by the shipped policies.
fn scale() -> Review {
    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    Review::update(
        &base,
        &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
    )
    .by(PaymentsDev)
}

const FREEZE: &str = "@id(\"no-scale\")\n@reason(\"Scaling is frozen.\")\nforbid (principal, action == Action::\"scale\", resource)\nunless { principal in Team::\"platform\" };\n";

type Files = Vec<(String, String)>;

/// The shipped schema and policies.
fn shipped() -> Files {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    guardrails::policy::read_sources(&dir)
        .unwrap()
        .into_iter()
        .collect()
}

/// Revision `n` of a policy set: the shipped files, a marker so every revision differs, and on
/// odd revisions a freeze on scaling.
fn revision(n: usize) -> Files {
    let mut files = shipped();
    files.push(("revision.cedar".into(), format!("// revision {n}\n")));
    if frozen(n) {
        files.push(("freeze.cedar".into(), FREEZE.into()));
    }
    files
}

fn frozen(n: usize) -> bool {
    n % 2 == 1
}

fn hash(files: &Files) -> String {
    sources_hash(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

fn write_files(dir: &Path, files: &[(String, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Edit `dir` in place from one revision to another, as a person would (only what changes).
fn edit_in_place(dir: &Path, from: &Files, to: &Files) {
    for (name, text) in to {
        if !from.contains(&(name.clone(), text.clone())) {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    for (name, _) in from {
        if !to.iter().any(|(other, _)| other == name) {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
}

/// Wait until revision `n` is what /readyz says is loaded and what decides.
async fn serves(state: &AppState, n: usize, how: &str) {
    let expected = hash(&revision(n));
    let scale = scale();
    eventually(
        &format!("revision {n} to be served after {how}"),
        async || readyz(state).await["loaded"]["policies"] == expected.as_str(),
    )
    .await;
    assert_eq!(allowed(state, &scale).await, !frozen(n), "revision {n}");
    let status = readyz(state).await;
    assert_eq!(status["reload"]["lastError"], Value::Null, "{status}");
}

#[tokio::test]
async fn in_place_edits_reload_and_bad_edits_keep_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &revision(0));
    let (state, _reloader) = watched(policies_at(dir.path()), EVENTS_ONLY);
    let status = readyz(&state).await;
    assert_eq!(status["loaded"]["policies"], hash(&revision(0)).as_str());
    assert_eq!(
        status["loaded"]["config"],
        text_hash(guardrails::config::EMBEDDED_CONFIG).as_str()
    );
    let first_load = status["loaded"]["at"].as_str().unwrap().to_string();
    let shipped = status["policies"].as_u64().unwrap();

    for n in 1..=ITERATIONS {
        edit_in_place(dir.path(), &revision(n - 1), &revision(n));
        serves(&state, n, "an in-place edit").await;
        let expected = shipped + u64::from(frozen(n));
        assert_eq!(readyz(&state).await["policies"], expected);
    }
    assert_ne!(readyz(&state).await["loaded"]["at"], first_load.as_str());

    // An invalid edit: the previous (valid) set keeps deciding, and /readyz says why.
    let good = readyz(&state).await["loaded"].clone();
    std::fs::write(
        dir.path().join("freeze.cedar"),
        "@id(\"no-scale\")\nforbid (principal, action == Action::\"scale\", resource)\nwhen { resource.replicas > 1 };\n",
    )
    .unwrap();
    // (Compared loosely: a check that caught a write half-done would count a failure too.)
    eventually("the failed reload to be reported", async || {
        readyz(&state).await["reload"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("freeze.cedar:3:"))
    })
    .await;
    let status = readyz(&state).await;
    assert_eq!(status["ready"], true);
    assert_eq!(status["loaded"], good, "the last good set is still loaded");
    assert_eq!(allowed(&state, &scale()).await, !frozen(ITERATIONS));
    let failed = status["reload"]["failed"].as_u64().unwrap();
    assert!(failed >= 1);
    assert!(metrics(&state).await.contains(&format!(
        "guardrails_policy_reloads_total{{result=\"failure\"}} {failed}"
    )));

    // Fixing it clears the error.
    std::fs::write(dir.path().join("freeze.cedar"), FREEZE).unwrap();
    std::fs::write(dir.path().join("revision.cedar"), "// fixed\n").unwrap();
    eventually("the fix to be served", async || {
        readyz(&state).await["reload"]["lastError"].is_null()
    })
    .await;
    assert!(!allowed(&state, &scale()).await);
}

/// `rm -rf` and a fresh copy, or a staged copy renamed into place; then edits in the new copy.
#[tokio::test]
async fn the_directory_replaced_then_edited() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    write_files(&dir, &revision(0));
    let (state, _reloader) = watched(policies_at(&dir), EVENTS_ONLY);
    let mut n = 0;
    for round in 0..ITERATIONS {
        n += 1;
        std::fs::remove_dir_all(&dir).unwrap();
        if round % 2 == 0 {
            write_files(&dir, &revision(n));
        } else {
            let staged = root.path().join("staged");
            write_files(&staged, &revision(n));
            std::fs::rename(&staged, &dir).unwrap();
        }
        serves(&state, n, "replacing the directory").await;
        n += 1;
        edit_in_place(&dir, &revision(n - 1), &revision(n));
        serves(&state, n, "an edit in the replaced directory").await;
    }
}

/// git-sync: `root/current -> .worktrees/<rev>`, swapped atomically, the old worktree deleted.
#[tokio::test]
async fn git_sync_symlink_swaps_with_the_old_revision_deleted() {
    let root = tempfile::tempdir().unwrap();
    let worktree = |n: usize| root.path().join(".worktrees").join(format!("rev-{n}"));
    write_files(&worktree(0).join("policies"), &revision(0));
    std::os::unix::fs::symlink(".worktrees/rev-0", root.path().join("current")).unwrap();
    let (state, _reloader) = watched(
        policies_at(&root.path().join("current/policies")),
        EVENTS_ONLY,
    );
    serves(&state, 0, "start-up").await;
    let mut live = 0;
    let mut n = 0;
    for _ in 0..ITERATIONS {
        n += 1;
        write_files(&worktree(n).join("policies"), &revision(n));
        let staged = root.path().join("current.tmp");
        std::os::unix::fs::symlink(format!(".worktrees/rev-{n}"), &staged).unwrap();
        std::fs::rename(&staged, root.path().join("current")).unwrap();
        std::fs::remove_dir_all(worktree(live)).unwrap();
        live = n;
        serves(&state, n, "a symlink swap").await;
        // Someone edits the checked-out revision (or a later sync rewrites it in place).
        n += 1;
        let dir = worktree(live).join("policies");
        edit_in_place(&dir, &revision(n - 1), &revision(n));
        serves(&state, n, "an edit after a swap").await;
    }
}

/// What the kubelet's AtomicWriter does to a ConfigMap volume: the files of each version in a
/// `..<timestamp>` directory, `..data` pointing at the current one (swapped by renaming a new
/// link over it), each key a symlink `key -> ..data/key`, the old version deleted.
struct ConfigMapVolume {
    mount: std::path::PathBuf,
    version: usize,
}

impl ConfigMapVolume {
    fn new(mount: &Path, files: &Files) -> Self {
        std::fs::create_dir_all(mount).unwrap();
        let mut volume = Self {
            mount: mount.to_path_buf(),
            version: 0,
        };
        volume.update(files, &[]);
        volume
    }

    fn version_dir(&self, version: usize) -> String {
        format!("..2025_01_01_00_00_00.{version:04}")
    }

    fn update(&mut self, files: &[(String, String)], previous: &[(String, String)]) {
        self.version += 1;
        let version_dir = self.version_dir(self.version);
        write_files(&self.mount.join(&version_dir), files);
        let staged = self.mount.join("..data_tmp");
        std::os::unix::fs::symlink(&version_dir, &staged).unwrap();
        std::fs::rename(&staged, self.mount.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.mount.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        for (name, _) in previous {
            if !files.iter().any(|(other, _)| other == name) {
                std::fs::remove_file(self.mount.join(name)).unwrap();
            }
        }
        if self.version > 1 {
            std::fs::remove_dir_all(self.mount.join(self.version_dir(self.version - 1))).unwrap();
        }
    }
}

#[tokio::test]
async fn kubelet_configmap_volume_updates() {
    let root = tempfile::tempdir().unwrap();
    let policies = root.path().join("policies");
    let config_mount = root.path().join("config");
    let config_text =
        |n: usize| format!("{}\n# version {n}\n", guardrails::config::EMBEDDED_CONFIG);
    let mut policy_volume = ConfigMapVolume::new(&policies, &revision(0));
    let mut config_volume =
        ConfigMapVolume::new(&config_mount, &vec![("config.yaml".into(), config_text(0))]);
    let source = EngineSource {
        policies: Some(policies.clone()),
        config: Some(config_mount.join("config.yaml")),
        ..EngineSource::default()
    };
    let (state, _reloader) = watched(source, EVENTS_ONLY);
    serves(&state, 0, "start-up").await;
    for n in 1..=ITERATIONS * 2 {
        policy_volume.update(&revision(n), &revision(n - 1));
        serves(&state, n, "a ConfigMap update").await;
        if n % 3 == 0 {
            let text = config_text(n);
            config_volume.update(&[("config.yaml".into(), text.clone())], &[]);
            eventually(&format!("config version {n}"), async || {
                readyz(&state).await["loaded"]["config"] == text_hash(&text).as_str()
            })
            .await;
        }
    }
}

/// The directory deleted (the last good set keeps deciding, the error shows) and re-created;
/// the same for the config file.
#[tokio::test]
async fn deletion_and_recreation_of_the_directory_and_the_config() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    let config = root.path().join("etc/config.yaml");
    write_files(&dir, &revision(0));
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, guardrails::config::EMBEDDED_CONFIG).unwrap();
    let source = EngineSource {
        policies: Some(dir.clone()),
        config: Some(config.clone()),
        ..EngineSource::default()
    };
    let (state, _reloader) = watched(source, EVENTS_ONLY);
    for n in 1..=ITERATIONS {
        let failed_before = readyz(&state).await["reload"]["failed"].as_u64().unwrap();
        let loaded = readyz(&state).await["loaded"].clone();
        std::fs::remove_dir_all(&dir).unwrap();
        eventually("the missing directory to be reported", async || {
            let status = readyz(&state).await;
            status["reload"]["failed"].as_u64() > Some(failed_before)
                && status["reload"]["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("cannot read policies"))
        })
        .await;
        assert_eq!(readyz(&state).await["loaded"], loaded, "last good set kept");
        assert_eq!(allowed(&state, &scale()).await, !frozen(n - 1));
        write_files(&dir, &revision(n));
        eventually(&format!("revision {n} after re-creation"), async || {
            let status = readyz(&state).await;
            status["loaded"]["policies"] == hash(&revision(n)).as_str()
                && status["reload"]["lastError"].is_null()
        })
        .await;
        assert_eq!(allowed(&state, &scale()).await, !frozen(n));

        // The config file, and then its whole directory.
        let text = format!("{}\n# version {n}\n", guardrails::config::EMBEDDED_CONFIG);
        if n % 2 == 0 {
            std::fs::remove_file(&config).unwrap();
        } else {
            std::fs::remove_dir_all(config.parent().unwrap()).unwrap();
        }
        eventually("the missing config to be reported", async || {
            readyz(&state).await["reload"]["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("cannot read config"))
        })
        .await;
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, &text).unwrap();
        eventually("the re-created config", async || {
            let status = readyz(&state).await;
            status["loaded"]["config"] == text_hash(&text).as_str()
                && status["reload"]["lastError"].is_null()
        })
        .await;
    }
}

/// With no file events at all, the periodic check alone finds every change.
#[tokio::test]
async fn the_periodic_check_reloads_without_file_events() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &revision(0));
    let options = ReloadOptions {
        file_events: false,
        interval: Some(Duration::from_millis(200)),
        settle: SETTLE,
    };
    let (state, _reloader) = watched(policies_at(dir.path()), options);
    for n in 1..=3 {
        edit_in_place(dir.path(), &revision(n - 1), &revision(n));
        serves(&state, n, "the periodic check").await;
    }
    let status = readyz(&state).await;
    assert!(status["reload"]["lastChecked"].is_string(), "{status}");
    // Unchanged content is not reloaded again. A check records when it starts: once two more
    // have started, the first of them has read the disk after `status` and finished.
    let succeeded = status["reload"]["succeeded"].clone();
    let mut checked = status["reload"]["lastChecked"].clone();
    for n in 1..=2 {
        eventually(
            &format!("periodic check {n} after the last reload"),
            async || {
                let now = readyz(&state).await["reload"]["lastChecked"].clone();
                let new = now != checked;
                checked = now;
                new
            },
        )
        .await;
    }
    assert_eq!(readyz(&state).await["reload"]["succeeded"], succeeded);
}

#[tokio::test]
async fn config_edits_reload_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, guardrails::config::EMBEDDED_CONFIG).unwrap();
    let source = EngineSource {
        config: Some(config.clone()),
        ..EngineSource::default()
    };
    let (state, _reloader) = watched(source, EVENTS_ONLY);
    let prod = app_to("payments-prod");
    let sync =
        Review::update(&prod, &syncing(&prod, serde_json::json!({}), Value::Null)).by(PaymentsDev);
    assert!(!allowed(&state, &sync).await);

    // Switch the whole config to audit mode: nothing is denied any more.
    let audit = guardrails::config::EMBEDDED_CONFIG.replace("mode: enforce", "mode: audit");
    assert_ne!(audit, guardrails::config::EMBEDDED_CONFIG);
    std::fs::write(&config, audit).unwrap();
    eventually("audit mode to be served", async || {
        allowed(&state, &sync).await
    })
    .await;

    // A typo keeps audit mode and reports the error.
    std::fs::write(&config, "mode: audit\nteamz: {}\n").unwrap();
    eventually("the failed reload", async || {
        readyz(&state).await["reload"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("teamz"))
    })
    .await;
    assert!(allowed(&state, &sync).await);
    assert_eq!(readyz(&state).await["mode"], "audit");
}

/// Removing `default.cedar` would deny everything, Argo CD's own writes included: the reload is
/// refused unless the config allows it.
#[tokio::test]
async fn a_set_without_any_permit_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &revision(0));
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, guardrails::config::EMBEDDED_CONFIG).unwrap();
    let source = EngineSource {
        policies: Some(dir.path().to_path_buf()),
        config: Some(config.clone()),
        ..EngineSource::default()
    };
    let (state, _reloader) = watched(source, EVENTS_ONLY);
    let loaded = readyz(&state).await["loaded"].clone();

    std::fs::remove_file(dir.path().join("default.cedar")).unwrap();
    eventually("the refused reload", async || {
        readyz(&state).await["reload"]["failed"].as_u64() == Some(1)
    })
    .await;
    let status = readyz(&state).await;
    let error = status["reload"]["lastError"].as_str().unwrap();
    assert!(
        error.contains("no permit policy can match") && error.contains("bookkeeping"),
        "{error}"
    );
    assert_eq!(status["loaded"], loaded, "the last good set is kept");
    assert!(allowed(&state, &scale()).await);
    assert!(
        metrics(&state)
            .await
            .contains("guardrails_policy_reloads_total{result=\"failure\"} 1")
    );

    // Allowed in the config: the same set loads, and denies.
    let allowing = format!(
        "{}\nallowDefaultDeny: true\n",
        guardrails::config::EMBEDDED_CONFIG
    );
    std::fs::write(&config, allowing).unwrap();
    eventually("the default-deny set to be served", async || {
        !allowed(&state, &scale()).await
    })
    .await;
    assert_eq!(readyz(&state).await["reload"]["lastError"], Value::Null);
}
