//! README.md's and certs/README.md's commands, run as written: the code blocks are read from the
//! documents at test time (only `<registry>` is substituted) and run by bash in a directory with
//! `charts/` and README's `my-values.yaml`, with `guardrails`, `kubectl` and `helm` on the PATH,
//! against the e2e API server. The chart's pre-install/pre-upgrade check Job is run by
//! [`JobRunner`] (no kubelet here): its rendered container args, with the real binary, on the hook
//! ConfigMaps the API server holds.
//!
//! In order: certs/README's option 2 (`guardrails certs`, a Secret, `helm install`) and its rotation
//! with the same CA; README's install (failurePolicy Ignore, then the upgrade to Fail with a new
//! policy), upgrades with an invalid policy and a mistyped value (both refused before anything
//! changes), each break-glass step, back to normal, and the uninstall.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::chart::EXTRA_POLICY;
use crate::cluster::{Cluster, Output, cluster, exclusive, helm_env};
use crate::pod::{JobRunner, scratch};

const NAMESPACE: &str = "guardrails-system";
const REGISTRY: &str = "registry.example.com";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced code blocks of language `lang` in the section under `heading` (up to the next heading
/// of the same or a higher level), de-indented, with `<registry>` substituted.
fn blocks(markdown: &str, heading: &str, lang: &str) -> Vec<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut found = Vec::new();
    // (indentation, language, body) of the fence being read.
    let mut fence: Option<(usize, String, String)> = None;
    for line in markdown.lines().skip_while(|line| *line != heading).skip(1) {
        let trimmed = line.trim_start();
        match fence.as_mut() {
            Some((indent, language, body)) => {
                if trimmed == "```" {
                    if language == lang {
                        found.push(body.replace("<registry>", REGISTRY));
                    }
                    fence = None;
                } else {
                    body.push_str(line.get(*indent..).unwrap_or(""));
                    body.push('\n');
                }
            }
            None => {
                if let Some(language) = trimmed.strip_prefix("```") {
                    fence = Some((
                        line.len() - trimmed.len(),
                        language.to_string(),
                        String::new(),
                    ));
                    continue;
                }
                let hashes = line.chars().take_while(|c| *c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    break;
                }
            }
        }
    }
    assert!(!found.is_empty(), "no ```{lang} block under {heading:?}");
    found
}

/// Runs code blocks like a reader's shell would.
struct Shell<'a> {
    cluster: &'a Cluster,
    dir: PathBuf,
}

impl Shell<'_> {
    fn run(&self, script: &str) -> Output {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_guardrails"));
        let path = format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin",
            binary.parent().expect("binary dir").display(),
            self.cluster.components.dir.display()
        );
        let mut command = Command::new("bash");
        command
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.dir)
            .env("KUBECONFIG", &self.cluster.kubeconfig);
        helm_env(&mut command, &self.cluster.run_dir);
        let out = command.output().expect("run bash");
        Output {
            command: script.trim().to_string(),
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .expect("base64"),
    )
    .expect("utf-8")
}

fn get(c: &Cluster, kind: &str, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", kind, name, "-n", NAMESPACE, "-o", "json"]);
    out.success.then(|| out.json())
}

fn config(c: &Cluster) -> Value {
    let cm = get(c, "configmap", "guardrails-config").expect("config ConfigMap");
    serde_yaml_ng::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
        .expect("config")
}

fn webhook(c: &Cluster, kind: &str) -> Option<Value> {
    get(c, kind, "guardrails-system-guardrails")
}

/// A server-side dry-run create of `object`.
fn try_create(c: &Cluster, object: &Value) -> Output {
    c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &object.to_string(),
    )
}

fn refused_by_the_release(out: &Output) {
    assert!(
        !out.success
            && out.stderr.contains("failed calling webhook")
            && out.stderr.contains("guardrails.guardrails-system.svc"),
        "expected the release's webhook (no pods behind it) to refuse: {out}"
    );
}

/// The certificate in a PEM file verifies for the Service under `ca_pem`.
fn verifies(cert_pem: &str, ca_pem: &str) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    guardrails::server::tls::verify_server_cert(
        &leaf,
        ca_pem,
        "guardrails.guardrails-system.svc",
        rustls::pki_types::UnixTime::now(),
    )
}

#[test]
fn readme_install_upgrade_certificate_and_break_glass_commands_work_as_written() {
    // The release's webhooks have no pods behind them: once they are Fail, every write they cover
    // fails, so this test runs alone.
    let _exclusive = exclusive();
    let c = cluster();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let certs_readme =
        std::fs::read_to_string(repo().join("certs/README.md")).expect("certs/README.md");
    let dir = scratch(c, "readme");
    std::os::unix::fs::symlink(repo().join("charts"), dir.join("charts")).expect("symlink");
    let shell = Shell {
        cluster: c,
        dir: dir.clone(),
    };
    let my_values = blocks(&readme, "### Install", "yaml").remove(0);
    std::fs::write(dir.join("my-values.yaml"), &my_values).expect("my-values.yaml");
    let runner = JobRunner::start(c, NAMESPACE);
    let uninstall = blocks(&readme, "### Uninstall", "sh").remove(0);
    struct Uninstall<'a>(&'a Shell<'a>, String);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&self.1);
        }
    }
    let _uninstall = Uninstall(&shell, uninstall.clone());
    let checks_passed = |before: usize| {
        let runs = runner.runs();
        assert!(runs.len() > before, "no check Job ran: {runs:#?}");
        for run in &runs[before..] {
            assert!(run.success, "{run:#?}");
            assert_eq!(run.job, "guardrails-check");
            assert_eq!(run.args[0], "check");
        }
        runs.len()
    };
    let deployment = crate::deployment("readme-probe", "payments-dev");

    // certs/README.md, option 2: a CA and pair from `guardrails certs`, a Secret, the chart.
    let option2 = blocks(
        &certs_readme,
        "## Option 2: `guardrails certs` and a Secret",
        "sh",
    );
    shell.run(&option2[0]).ok();
    let ca_pem = shell.file("certs/ca.crt");
    assert_eq!(shell.file("ca-bundle.txt").trim(), b64(&ca_pem));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("certs/ca.key"))
            .expect("ca.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "ca.key must be private");
    }
    let ran = checks_passed(0);
    let vwc = webhook(c, "validatingwebhookconfiguration").expect("installed");
    assert_eq!(vwc["webhooks"][0]["clientConfig"]["caBundle"], b64(&ca_pem));
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"]["service"]["name"],
        "guardrails"
    );
    let secret = get(c, "secret", "guardrails-tls").expect("secret");
    let served = unb64(secret["data"]["tls.crt"].as_str().expect("tls.crt"));
    verifies(&served, &ca_pem).expect("the served certificate verifies under the CA bundle");
    assert!(get(c, "certificates.cert-manager.io", "guardrails").is_none());

    // Rotation with the same CA: only the Secret changes, the webhooks' CA bundle still trusts it.
    let rotation = blocks(&certs_readme, "### Rotation: keep the same CA", "sh");
    shell.run(&rotation[0]).ok();
    assert_eq!(shell.file("certs/ca.crt"), ca_pem, "the same CA");
    let secret = get(c, "secret", "guardrails-tls").expect("secret");
    let rotated = unb64(secret["data"]["tls.crt"].as_str().expect("tls.crt"));
    assert_ne!(rotated, served, "a new serving certificate");
    assert_eq!(rotated, shell.file("certs/tls.crt"));
    let vwc = webhook(c, "validatingwebhookconfiguration").expect("installed");
    let bundle = unb64(
        vwc["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .expect("caBundle"),
    );
    verifies(&rotated, &bundle)
        .expect("the rotated certificate verifies under the unchanged bundle");
    shell.run(&uninstall).ok();
    assert!(webhook(c, "validatingwebhookconfiguration").is_none());

    // README, Install: first with failurePolicy Ignore, then the upgrade that enforces.
    let install = blocks(&readme, "### Install", "sh");
    assert_eq!(install.len(), 2, "{install:#?}");
    let out = shell.run(&install[0]).ok();
    // NOTES.txt: how to wait for the pods, and that the webhooks let writes through meanwhile.
    for note in [
        "kubectl -n guardrails-system rollout status deployment/guardrails",
        "let writes through unchecked while no Guardrails pod answers",
    ] {
        assert!(out.stdout.contains(note), "{note}: {out}");
    }
    let ran = checks_passed(ran);
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let config = webhook(c, kind).unwrap_or_else(|| panic!("{kind}"));
        let hook = &config["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(hook["clientConfig"]["service"]["name"], "guardrails");
        assert_eq!(hook["clientConfig"]["service"]["namespace"], NAMESPACE);
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "guardrails-system/guardrails"
        );
    }
    let installed = get(c, "deployment", "guardrails").expect("deployment");
    assert_eq!(installed["spec"]["replicas"], 2);
    assert_eq!(
        installed["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{REGISTRY}/guardrails:0.1.0")
    );
    c.kubectl(&[
        "get",
        "-n",
        NAMESPACE,
        "service/guardrails",
        "serviceaccount/guardrails",
        "poddisruptionbudget/guardrails",
        "certificates.cert-manager.io/guardrails",
        "certificates.cert-manager.io/guardrails-ca",
        "issuers.cert-manager.io/guardrails-ca",
        "configmap/guardrails-policies",
        "clusterrole/guardrails-system-guardrails",
        "clusterrolebinding/guardrails-system-guardrails",
    ])
    .ok();
    assert!(
        get(c, "job", "guardrails-check").is_none(),
        "the check Job is deleted once it passed"
    );
    assert_eq!(
        config(c)["teams"]["payments"]["users"],
        json!(["bob@example.com"])
    );
    // With Ignore, the webhooks (no pods yet) let writes through.
    try_create(c, &deployment).ok();

    // Once the pods are ready (they never are here): enforce, with a policy added to my-values.yaml
    // meanwhile, which the check Job checks first.
    let mut values: Value = serde_yaml_ng::from_str(&my_values).expect("my-values.yaml");
    let write_values = |values: &Value| {
        std::fs::write(
            dir.join("my-values.yaml"),
            serde_yaml_ng::to_string(values).expect("yaml"),
        )
        .expect("write my-values.yaml")
    };
    values["policies"] = json!({"extra": {"no-friday.cedar": EXTRA_POLICY}});
    write_values(&values);
    shell.run(&install[1]).ok();
    checks_passed(ran);
    let policies = || get(c, "configmap", "guardrails-policies").expect("policies")["data"].clone();
    let good = policies();
    assert_eq!(good["no-friday.cedar"], EXTRA_POLICY);
    let vwc = webhook(c, "validatingwebhookconfiguration").expect("vwc");
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Fail");
    refused_by_the_release(&try_create(c, &deployment));
    // ... but not in the release's namespace, nor for the exempt Application.
    try_create(c, &crate::deployment("readme-probe", NAMESPACE)).ok();
    try_create(c, &crate::application("guardrails", "guardrails-system")).ok();
    refused_by_the_release(&try_create(c, &crate::application("other", "payments-dev")));

    // README, Upgrade: the same command.
    let upgrade = blocks(&readme, "### Upgrade", "sh").remove(0);
    assert_eq!(upgrade.trim(), install[1].trim());
    let revision = |c: &Cluster| -> usize {
        c.helm(&["history", "guardrails", "-n", NAMESPACE, "-o", "json"])
            .ok()
            .json()
            .as_array()
            .map_or(0, Vec::len)
    };
    let ran = runner.runs().len();
    // A mistyped value: refused by the schema before any hook.
    let mut typo = values.clone();
    typo["config"]["teams"]["payments"]["group"] = json!(["payments-devs"]);
    write_values(&typo);
    let revisions = revision(c);
    let out = shell.run(&upgrade);
    assert!(
        !out.success
            && out
                .stderr
                .contains("values don't meet the specifications of the schema"),
        "{out}"
    );
    assert_eq!(revision(c), revisions, "no release recorded");
    assert_eq!(runner.runs().len(), ran, "no check Job for a schema error");
    write_values(&values);

    // README, Break-glass.
    let steps = blocks(&readme, "### Break-glass", "sh");
    assert_eq!(steps.len(), 4, "{steps:#?}");
    // 1. Audit mode, every other value kept (--reuse-values), no check Job (--no-hooks).
    shell.run(&steps[0]).ok();
    let config_now = config(c);
    assert_eq!(config_now["mode"], "audit");
    assert_eq!(
        config_now["teams"]["payments"]["users"],
        json!(["bob@example.com"]),
        "values kept"
    );
    assert_eq!(policies(), good, "values kept");
    assert_eq!(
        get(c, "deployment", "guardrails").expect("deployment")["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        format!("{REGISTRY}/guardrails:0.1.0")
    );
    assert_eq!(runner.runs().len(), ran, "--no-hooks");
    // 2. Delete both webhook configurations: writes flow again.
    shell.run(&steps[1]).ok();
    assert!(webhook(c, "validatingwebhookconfiguration").is_none());
    assert!(webhook(c, "mutatingwebhookconfiguration").is_none());
    try_create(c, &deployment).ok();
    // ... and `helm upgrade` recreates them.
    shell.run(&steps[2]).ok();
    let ran = checks_passed(ran);
    assert!(webhook(c, "validatingwebhookconfiguration").is_some());
    assert!(webhook(c, "mutatingwebhookconfiguration").is_some());
    assert_eq!(
        config(c)["mode"],
        "audit",
        "--reuse-values keeps the break-glass mode"
    );
    // 3. One namespace out of scope.
    shell.run(&steps[3]).ok();
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let config = webhook(c, kind).expect(kind);
        let excluded = &config["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"];
        assert_eq!(
            excluded,
            &json!(["kube-system", NAMESPACE, "payments-prod"]),
            "{kind}"
        );
    }
    try_create(c, &crate::deployment("readme-probe", "payments-prod")).ok();
    // Back to normal: the upgrade command with my-values.yaml.
    shell.run(&upgrade).ok();
    checks_passed(ran);
    assert_eq!(config(c)["mode"], "enforce");
    let vwc = webhook(c, "validatingwebhookconfiguration").expect("vwc");
    assert_eq!(
        vwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", NAMESPACE])
    );
    refused_by_the_release(&try_create(c, &deployment));

    // An invalid policy fails the check Job, so the upgrade fails and nothing changes
    // (tests/e2e/chart.rs shows the Job refusing invalid configs too).
    let ran = runner.runs().len();
    let mut broken = values.clone();
    broken["policies"]["extra"]["no-friday.cedar"] =
        json!(EXTRA_POLICY.replace("\"sync\"", "\"synk\""));
    write_values(&broken);
    let out = shell.run(&upgrade);
    assert!(
        !out.success && out.stderr.contains("pre-upgrade hooks failed"),
        "{out}"
    );
    let runs = runner.runs();
    let run = runs
        .get(ran)
        .unwrap_or_else(|| panic!("no check Job ran: {runs:#?}"));
    assert!(!run.success && run.output.contains("synk"), "{run:#?}");
    assert_eq!(policies(), good, "the policies changed");
    assert!(
        get(c, "job", "guardrails-check").is_some(),
        "a failed check Job stays for its logs"
    );
    assert_eq!(config(c)["mode"], "enforce");

    // README, Uninstall (which also removes the failed check Job the release does not own).
    shell.run(&uninstall).ok();
    assert!(
        c.kubectl(&["get", "jobs,configmaps", "-n", NAMESPACE, "-o", "name"])
            .ok()
            .stdout
            .lines()
            .all(|object| object.ends_with("/kube-root-ca.crt")),
        "leftovers after uninstall"
    );
    assert!(webhook(c, "validatingwebhookconfiguration").is_none());
    assert!(get(c, "deployment", "guardrails").is_none());
    try_create(c, &deployment).ok();
}

#[test]
fn readme_blocks_are_found() {
    let md = "# T\n## A\ntext\n```sh\n# one\n```\n### A.1\n   ```sh\n   two\n     three\n   ```\n```yaml\nx\n```\n## B\n```sh\nfour\n```\n";
    assert_eq!(blocks(md, "## A", "sh"), vec!["# one\n", "two\n  three\n"]);
    assert_eq!(blocks(md, "## A", "yaml"), vec!["x\n"]);
    assert_eq!(blocks(md, "### A.1", "sh"), vec!["two\n  three\n"]);
}
