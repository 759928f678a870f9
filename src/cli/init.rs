//! `guardrails init`: a starter policy folder that `check` and `test` pass.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::EMBEDDED_CONFIG;
use crate::policy::{EMBEDDED_POLICIES, SCHEMA_FILE};

/// Write a starter policy folder: the schema, the default permit, one example forbid in audit
/// mode with its tests, and an example config. `guardrails check DIR --config DIR/config.yaml` and
/// `guardrails test DIR --config DIR/config.yaml` pass on it.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to create (it must not exist, or be empty).
    dir: PathBuf,
}

const DEFAULT_POLICY: &str = "\
// The default posture: everything is allowed unless a forbid says otherwise. Without a permit,
// Cedar denies everything (and `guardrails check` refuses the set).
@id(\"default-allow\")
@reason(\"Allowed unless a guardrail forbids it.\")
permit (principal, action, resource);
";

const EXAMPLE_POLICY: &str = "\
// An example guardrail, rolled out in audit mode: it is recorded (the audit log, `guardrails
// report`) but denies nothing until `@enforcement(\"audit\")` is removed.
@id(\"prod-scale-platform-only\")
@enforcement(\"audit\")
@reason(\"Scaling a production workload by hand is reserved for the platform team; change the replicas in Git.\")
forbid (
  principal,
  action == Action::\"scale\",
  resource in Environment::\"prod\"
)
unless { principal in Team::\"platform\" || principal.automation };
";

const EXAMPLE_TESTS: &str = "\
# Tests for example.cedar (`guardrails test DIR --config DIR/config.yaml`). bob@example.com is in
# team payments and admin@example.com in platform (config.yaml).
cases:
  - name: \"a developer scaling a prod Deployment matches (audit: allowed, recorded)\"
    oldObject: manifests/deployment-payments-prod.yaml
    patch: {spec: {replicas: 1}}
    user: bob@example.com
    groups: [payments-devs]
    expect: {allowed: true, actions: [scale], policies: [prod-scale-platform-only]}

  - name: the platform team may scale it
    oldObject: manifests/deployment-payments-prod.yaml
    patch: {spec: {replicas: 1}}
    user: admin@example.com
    expect: {allowed: true, actions: [scale], policies: []}
";

const EXAMPLE_MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
  namespace: payments-prod
spec:
  replicas: 3
  selector:
    matchLabels: {app: payments-api}
  template:
    metadata:
      labels: {app: payments-api}
    spec:
      containers:
        - name: api
          image: registry.example.com/payments/api:1.4.2
";

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty: `guardrails init` writes only into a new or empty folder",
                dir.display()
            );
        }
    }
    let schema = EMBEDDED_POLICIES
        .iter()
        .find(|(name, _)| *name == SCHEMA_FILE)
        .map(|(_, text)| *text)
        .context("the built-in schema is missing")?;
    let files: [(&str, &str); 6] = [
        (SCHEMA_FILE, schema),
        ("default.cedar", DEFAULT_POLICY),
        ("example.cedar", EXAMPLE_POLICY),
        ("tests/example.yaml", EXAMPLE_TESTS),
        (
            "tests/manifests/deployment-payments-prod.yaml",
            EXAMPLE_MANIFEST,
        ),
        ("config.yaml", EMBEDDED_CONFIG),
    ];
    for (name, text) in files {
        write(&dir.join(name), text)?;
    }
    let shown = dir.display();
    outln!("wrote {shown}: {SCHEMA_FILE}, default.cedar, example.cedar, tests/, config.yaml");
    outln!("next:");
    outln!("  guardrails check {shown} --config {shown}/config.yaml");
    outln!("  guardrails test {shown} --config {shown}/config.yaml");
    outln!("  guardrails serve --dev --policies {shown} --config {shown}/config.yaml");
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
