//! The pinned Kubernetes components (kube-apiserver, kubectl, etcd, helm), built from their Go
//! modules by `components/build.sh` into `~/.cache/guardrails-e2e/bin/<pin-hash>/`, and the pinned
//! Argo CD, built by `components/build-argocd.sh` into `…/bin/argocd-<pin-hash>/`, and the pinned Argo
//! Rollouts, built by `components/build-rollouts.sh` into `…/bin/rollouts-<pin-hash>/`; each reused
//! until its pins change. Without Go the build scripts explain what to install and every e2e test that
//! needs them fails with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub struct Components {
    pub dir: PathBuf,
}

impl Components {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The target directory this test binary was built in (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

/// Build (or find) the components once per test binary; the script's file lock serialises
/// concurrent test binaries and checkouts sharing the target directory.
pub fn components() -> Result<&'static Components, String> {
    static BUILT: OnceLock<Result<Components, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build(
                "build.sh",
                "kube-apiserver, etcd, kubectl and helm",
                &["etcd", "kube-apiserver", "kubectl", "helm"],
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The pinned Argo CD (the multi-call `argocd` binary and the `git-verify-wrapper.sh` its repo
/// server runs), built or found once per test binary, like [`components`].
pub fn argocd_components() -> Result<&'static Components, String> {
    static BUILT: OnceLock<Result<Components, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build(
                "build-argocd.sh",
                "Argo CD",
                &["argocd", "git-verify-wrapper.sh"],
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The pinned Argo Rollouts (`rollouts-controller`, the `kubectl-argo-rollouts` plugin, and from
/// the same module its CRDs under `crds/` and the controller's ClusterRole), built or found once
/// per test binary, like [`components`].
pub fn rollouts_components() -> Result<&'static Components, String> {
    static BUILT: OnceLock<Result<Components, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build(
                "build-rollouts.sh",
                "Argo Rollouts",
                &[
                    "rollouts-controller",
                    "kubectl-argo-rollouts",
                    "argo-rollouts-clusterrole.yaml",
                    "crds/rollout-crd.yaml",
                ],
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Run `components/<script>`, which prints the directory holding `expected`.
fn build(script: &str, what: &str, expected: &[&str]) -> Result<Components, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/components")
        .join(script);
    let output = Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): the end-to-end tests need Go and its module proxy to build {what}; \
             see the messages above",
            script.display(),
            output.status
        ));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let components = Components {
        dir: PathBuf::from(dir),
    };
    for name in expected {
        if !components.path(name).is_file() {
            return Err(format!(
                "{} did not produce {}",
                script.display(),
                components.path(name).display()
            ));
        }
    }
    Ok(components)
}
