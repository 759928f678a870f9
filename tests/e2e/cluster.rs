//! One real cluster per test binary: etcd and kube-apiserver on free loopback ports with their own
//! PKI and RBAC, the Argo CD and Argo Rollouts CRDs, team/environment-labelled namespaces, and
//! `guardrails serve` registered through the webhook configurations rendered from the chart by
//! `helm template` (only `clientConfig` switched to the loopback URL and its `caBundle`).
//!
//! API for tests (all blocking; tests run in parallel threads, so use object names of your own):
//! - [`cluster()`] starts the cluster on first use and returns it (panics with the start-up error);
//! - [`shared()`] is held by every test that uses the API server, [`exclusive()`] by a test that
//!   disturbs it (installs webhooks with no Pods behind them, stops the API server);
//! - [`Cluster::kubectl`] / [`Cluster::kubectl_as`] / [`Cluster::kubectl_stdin`] /
//!   [`Cluster::kubectl_stdin_as`] run the built kubectl as the admin (a `system:masters` client
//!   certificate), optionally impersonating an [`Identity`] with `--as`/`--as-group`, and return an
//!   [`Output`] (`.ok()` and `.denied()` assert how it ended);
//! - [`Cluster::apply_yaml`] / [`Cluster::apply_json`] apply manifests as the admin;
//! - [`Cluster::helm`] runs the built helm against the cluster; [`render_chart`] runs
//!   `helm template` of the repository's chart;
//! - [`Guardrails::audit_for`] / [`Guardrails::wait_audit`] find audit lines,
//!   [`Guardrails::metric`] reads `/metrics`, [`Guardrails::validate`] posts an AdmissionReview
//!   straight to the server;
//! - [`Cluster::start_guardrails`] starts another `guardrails serve` (killed when dropped), as the
//!   chart's service account or, [`Cluster::start_guardrails_with`], with another kubeconfig;
//!   [`Cluster::stop_api_server`] / [`Cluster::start_api_server`] make an outage.
//!
//! Every process writes its log into the run directory `target/tmp/e2e-runs/<id>/`, named in every
//! failed command's output. A watchdog process kills the cluster when the test binary exits, also
//! after a panic; the last three run directories are kept.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::http::client;
use crate::common::process::{listens, on_free_ports};
use crate::components::{Components, components, target_dir};

pub const RELEASE: &str = "guardrails";
/// Not README's `guardrails-system`: the README test installs the chart there as written.
pub const RELEASE_NAMESPACE: &str = "guardrails-e2e";
/// The chart's namespaced object names: the release name, which contains `guardrails`.
pub const FULLNAME: &str = "guardrails";
/// The chart's cluster-scoped object names: `<release namespace>-<fullname>`.
pub const CLUSTER_NAME: &str = "guardrails-e2e-guardrails";
/// The image every render sets (`image.repository` has no default); never pulled (no kubelet).
pub const TEST_IMAGE: &str = "registry.example.com/guardrails";

/// Who kubectl impersonates. The API server adds `system:authenticated` (and, for service
/// accounts, `system:serviceaccounts[:<ns>]`) itself.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

impl Identity {
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--as".to_string(), self.user.to_string()];
        for group in self.groups {
            args.push("--as-group".to_string());
            args.push(group.to_string());
        }
        args
    }
}

/// A payments developer (team `payments` by group and by name in the shipped example config).
pub const BOB: Identity = Identity {
    user: "bob@example.com",
    groups: &["payments-devs"],
};
/// A storefront developer.
pub const DANA: Identity = Identity {
    user: "dana@example.com",
    groups: &["storefront-devs"],
};
/// A platform engineer.
pub const PLATFORM: Identity = Identity {
    user: "admin@example.com",
    groups: &["platform-admins"],
};
pub const APP_CONTROLLER: Identity = Identity {
    user: "system:serviceaccount:argocd:argocd-application-controller",
    groups: &[],
};
pub const ARGOCD_SERVER: Identity = Identity {
    user: "system:serviceaccount:argocd:argocd-server",
    groups: &[],
};
pub const APPSET_CONTROLLER: Identity = Identity {
    user: "system:serviceaccount:argocd:argocd-applicationset-controller",
    groups: &[],
};
pub const ROLLOUTS_CONTROLLER: Identity = Identity {
    user: "system:serviceaccount:argo-rollouts:argo-rollouts",
    groups: &[],
};
/// The HorizontalPodAutoscaler controller's identity (kube-controller-manager with
/// `--use-service-account-credentials`).
pub const HPA: Identity = Identity {
    user: "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    groups: &[],
};

/// Team and environment labels of the namespaces every cluster has.
pub const NAMESPACES: &[(&str, &str, &str)] = &[
    ("payments-dev", "payments", "dev"),
    ("payments-prod", "payments", "prod"),
    ("storefront-dev", "storefront", "dev"),
    ("storefront-prod", "storefront", "prod"),
    ("argocd", "platform", "prod"),
];

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics (with everything printed) unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success, "command failed: {self}");
        self
    }

    /// Panics unless the command failed because a Guardrails webhook denied the request, and
    /// returns the message kubectl printed.
    #[track_caller]
    pub fn denied(self) -> String {
        assert!(
            !self.success
                && self
                    .stderr
                    .contains("admission webhook \"validate.guardrails.io\" denied the request"),
            "expected a denial by validate.guardrails.io: {self}"
        );
        self.stderr.clone()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// `Ok` with the output if the command succeeded, else `Err` saying all it printed.
    pub fn into_result(self) -> Result<Output, String> {
        if self.success {
            Ok(self)
        } else {
            Err(self.to_string())
        }
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            if self.success { "succeeded" } else { "failed" },
            self.stdout,
            self.stderr
        )?;
        if let Some(dir) = RUN_DIR.get() {
            write!(f, "--- logs of every cluster process: {}", dir.display())?;
        }
        Ok(())
    }
}

/// The run directory, once a cluster has started (for failure messages).
static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// A running `guardrails serve`.
pub struct Guardrails {
    /// `127.0.0.1:<port>` of the TLS listener.
    pub listen: String,
    /// `127.0.0.1:<port>` of the plain-HTTP probe listener (`/metrics`, `/readyz`).
    pub probe: String,
    pub audit_log: PathBuf,
    pub log: PathBuf,
    /// The CA that signed its serving certificate (PEM).
    pub ca_pem: String,
    child: Mutex<Child>,
}

impl Guardrails {
    /// Every audit record written so far.
    pub fn audit_records(&self) -> Vec<Value> {
        fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Audit records of one object.
    pub fn audit_for(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.audit_records()
            .into_iter()
            .filter(|r| r["namespace"] == namespace && r["name"] == name)
            .collect()
    }

    /// Wait (up to 10 s) for the `nth` (0-based) audit record of one object matching `filter`.
    #[track_caller]
    pub fn wait_audit(
        &self,
        namespace: &str,
        name: &str,
        filter: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(record) = self
                .audit_for(namespace, name)
                .into_iter()
                .rev()
                .find(|r| filter(r))
            {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit record for {namespace}/{name} in {}; records for it: {:#?}",
                self.audit_log.display(),
                self.audit_for(namespace, name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the probe listener.
    pub fn probe_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.probe, path)
    }

    /// Every sample on `/metrics`, keyed by the series as printed (`name{labels}`).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, text) = self.probe_get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// The value of one series, with its labels in any order (0 when absent), e.g.
    /// `metric("guardrails_admission_requests_total", &[("kind", "Application"), ("decision", "deny")])`
    /// sums every series of that name whose labels include those given.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .into_iter()
            .filter(|(series, _)| {
                let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
                series_name == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// POST an AdmissionReview body straight to this server's `/validate` (no API server
    /// involved) and return the AdmissionReview it answers.
    pub fn validate(&self, body: &[u8]) -> Result<Value, String> {
        let client = client(&self.ca_pem, true, Duration::from_secs(30));
        let url = format!("https://{}/validate", self.listen);
        let body = body.to_vec();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            response.json::<Value>().await.map_err(|e| e.to_string())
        })
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Guardrails {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Cluster {
    /// Logs, kubeconfigs, certificates of this run.
    pub run_dir: PathBuf,
    pub components: &'static Components,
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub server: String,
    /// The `guardrails serve` behind the chart's webhook configurations.
    pub guardrails: Guardrails,
    processes: Mutex<Vec<(String, Child)>>,
    api_args: Vec<String>,
    api_restarts: Mutex<u32>,
}

/// The live object `kind/name` in `namespace`, if there is one.
pub fn get(kind: &str, namespace: &str, name: &str) -> Option<Value> {
    let out = cluster().kubectl(&["get", kind, name, "-n", namespace, "-o", "json"]);
    out.success.then(|| out.json())
}

/// Whether an audit record names `action` among its actions.
pub fn has_action(record: &Value, action: &str) -> bool {
    record["actions"]
        .as_array()
        .is_some_and(|actions| actions.iter().any(|a| a == action))
}

/// The cluster of this test binary, started on first use.
#[track_caller]
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(cluster) => cluster,
        Err(error) => panic!("the e2e cluster did not start: {error}"),
    }
}

static WEBHOOK_LOCK: RwLock<()> = RwLock::new(());

/// Held by every test that writes through the webhooks, so that a test which installs other
/// webhook configurations (a `helm install` of the chart, whose webhooks have no running Pods
/// behind them) can hold [`exclusive`] and run alone.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    WEBHOOK_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// See [`shared`].
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    WEBHOOK_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP response: {response}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Poll `check` every 100 ms until it returns `Some`, or fail after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    wait_every(timeout, Duration::from_millis(100), what, check)
}

/// Poll `check` every `every` until it returns `Some`, or fail after `timeout` with its last
/// complaint (a slower `every` for checks that run a process each time).
pub fn wait_every<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = error,
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}: {last}"
            ));
        }
        std::thread::sleep(every);
    }
}

/// Parse a multi-document YAML stream, skipping empty documents.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).map_err(|e| e.to_string()))
        .filter(|doc| !matches!(doc, Ok(Value::Null)))
        .collect()
}

/// The cluster's certificate authority.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Result<Self, String> {
        let err = |e: rcgen::Error| e.to_string();
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "guardrails-e2e-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(err)?).map_err(err)?;
        Ok(Self { ca })
    }

    /// A certificate and key (PEM) for `names`, as a server and/or client.
    fn issue(
        &self,
        names: &[&str],
        common_name: &str,
        organizations: &[&str],
        server: bool,
    ) -> Result<(String, String), String> {
        let err = |e: rcgen::Error| e.to_string();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *organization);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.ca).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The last `lines` lines of a log file, for start-up errors.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run_dir() -> Result<PathBuf, String> {
    let runs = target_dir().join("tmp/e2e-runs");
    fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
    // Keep the last three runs' logs.
    let mut old: Vec<PathBuf> = fs::read_dir(&runs)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    old.sort();
    for dir in old.iter().rev().skip(2) {
        let _ = fs::remove_dir_all(dir);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let dir = runs.join(format!("{stamp}-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Kill everything listed in `pids` once this process is gone, however it ended, then remove the
/// etcd data directory (logs stay).
fn start_watchdog(run_dir: &Path) -> Result<(), String> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        pids=$(cat "$2" 2>/dev/null)
        [ -n "$pids" ] && kill $pids 2>/dev/null
        sleep 3
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        rm -rf "$3"
    "#;
    Command::new("sh")
        .args(["-c", script, "e2e-watchdog"])
        .arg(std::process::id().to_string())
        .arg(run_dir.join("pids"))
        .arg(run_dir.join("etcd-data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    Ok(())
}

/// Spawn `command` with its output in `<run_dir>/<name>.log` and its pid in the watchdog's list.
fn spawn_logged(
    run_dir: &Path,
    name: &str,
    command: &mut Command,
) -> Result<(Child, PathBuf), String> {
    let log = run_dir.join(format!("{name}.log"));
    let file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = file.try_clone().map_err(|e| e.to_string())?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    let _pids = PIDS.lock().unwrap_or_else(|e| e.into_inner());
    let mut pids = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("pids"))
        .map_err(|e| e.to_string())?;
    writeln!(pids, "{}", child.id()).map_err(|e| e.to_string())?;
    Ok((child, log))
}

/// Held while the watchdog's list of pids is written.
static PIDS: Mutex<()> = Mutex::new(());

/// Kill and reap `child`, and take it off the watchdog's list (its pid may be reused).
fn stop(run_dir: &Path, child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
    let _pids = PIDS.lock().unwrap_or_else(|e| e.into_inner());
    let path = run_dir.join("pids");
    if let Ok(text) = fs::read_to_string(&path) {
        let pid = child.id().to_string();
        let kept: String = text
            .lines()
            .filter(|line| *line != pid)
            .map(|line| format!("{line}\n"))
            .collect();
        let _ = fs::write(&path, kept);
    }
}

/// [`spawn_logged`], then wait up to `within` until the process holds sockets listening on
/// `ports` and `ready` says it is ready (`Err`: not yet, and why). If it exits or the time runs
/// out, it is stopped and the error ends with its log, which says whether a port was taken meanwhile
/// (for [`on_free_ports`]).
pub fn start_listening(
    run_dir: &Path,
    name: &str,
    command: &mut Command,
    ports: &[u16],
    within: Duration,
    mut ready: impl FnMut() -> Result<bool, String>,
) -> Result<(Child, PathBuf), String> {
    let (mut child, log) = spawn_logged(run_dir, name, command)?;
    let waited = wait_for(within, name, || {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Some(Err(format!("{name} exited ({status})"))));
        }
        if let Some(port) = ports.iter().find(|port| !listens(child.id(), **port)) {
            return Err(format!("{name} does not listen on port {port}"));
        }
        Ok(ready()?.then_some(Ok(())))
    })
    .and_then(|outcome| outcome);
    match waited {
        Ok(()) => Ok((child, log)),
        Err(error) => {
            stop(run_dir, &mut child);
            Err(format!(
                "{error}\n--- {name} log ({})\n{}",
                log.display(),
                tail(&log, 30)
            ))
        }
    }
}

/// kube-apiserver's arguments: the cluster's PKI in `pki_dir`, etcd at `etcd_url`, serving on
/// 127.0.0.1:`port`.
fn api_args(pki_dir: &Path, etcd_url: &str, port: u16) -> Vec<String> {
    let pki_path = |name: &str| pki_dir.join(name).display().to_string();
    vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", pki_path("apiserver.crt")),
        format!("--tls-private-key-file={}", pki_path("apiserver.key")),
        format!("--client-ca-file={}", pki_path("ca.crt")),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-key-file={}", pki_path("sa.pub")),
        format!("--service-account-signing-key-file={}", pki_path("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        // No kubelet, no controller manager: nothing mounts service-account tokens, and nothing
        // keeps the `kubernetes` Service's endpoints.
        "--disable-admission-plugins=ServiceAccount".into(),
        "--endpoint-reconciler-type=none".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

pub fn kubeconfig(server: &str, ca_pem: &str, user: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": "e2e", "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
        "current-context": "e2e",
    })
}

/// `helm template` of the repository's chart with `image.repository` set to [`TEST_IMAGE`] and
/// `args` (e.g. `--set`, `-f`) as documents.
pub fn render_chart(
    components: &Components,
    run_dir: &Path,
    args: &[&str],
) -> Result<Vec<Value>, String> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/guardrails");
    let mut command = Command::new(components.path("helm"));
    command
        .arg("template")
        .arg(RELEASE)
        .arg(&chart)
        .args(["--namespace", RELEASE_NAMESPACE])
        .arg("--set")
        .arg(format!("image.repository={TEST_IMAGE}"))
        .args(args);
    helm_env(&mut command, run_dir);
    let output = run(&mut command, None);
    if !output.success {
        return Err(format!("helm template failed: {output}"));
    }
    yaml_docs(&output.stdout)
}

pub fn helm_env(command: &mut Command, run_dir: &Path) {
    let home = run_dir.join("helm");
    command
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
}

pub fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let description = format!(
        "{} {}",
        Path::new(command.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        command
            .get_args()
            .map(|a| a.to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let result = command.spawn().and_then(|mut child| {
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let input = input.to_string();
            // Write from another thread so a large input cannot deadlock against full output pipes.
            std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        child.wait_with_output()
    });
    match result {
        Ok(output) => Output {
            command: description,
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        },
        Err(error) => Output {
            command: description,
            success: false,
            stdout: String::new(),
            stderr: format!("could not run: {error}"),
        },
    }
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let started = Instant::now();
        let components = components()?;
        let run_dir = run_dir()?;
        eprintln!(
            "e2e: components in {}; logs of this run in {}",
            components.dir.display(),
            run_dir.display()
        );
        let _ = RUN_DIR.set(run_dir.clone());
        start_watchdog(&run_dir)?;
        let mut processes = Vec::new();

        // PKI: one CA for the API server's serving certificate, the admin client certificate
        // and the service-account signing key.
        let pki = Pki::new()?;
        let ca_pem = pki.ca.pem();
        let (server_cert, server_key) = pki.issue(
            &["127.0.0.1", "localhost", "kubernetes.default.svc"],
            "kube-apiserver",
            &[],
            true,
        )?;
        let (admin_cert, admin_key) = pki.issue(&[], "e2e-admin", &["system:masters"], false)?;
        let sa_key = KeyPair::generate().map_err(|e| e.to_string())?;
        let pki_dir = run_dir.join("pki");
        fs::create_dir_all(&pki_dir).map_err(|e| e.to_string())?;
        write(&pki_dir.join("ca.crt"), &ca_pem)?;
        write(&pki_dir.join("apiserver.crt"), &server_cert)?;
        write(&pki_dir.join("apiserver.key"), &server_key)?;
        write(&pki_dir.join("sa.key"), &sa_key.serialize_pem())?;
        write(&pki_dir.join("sa.pub"), &sa_key.public_key_pem())?;

        // etcd, on two free ports (again on others if one was taken before etcd bound it).
        let ((etcd, etcd_log), etcd_url) = on_free_ports(2, |ports| {
            let (etcd_port, peer_port) = (ports[0], ports[1]);
            let etcd_url = format!("http://127.0.0.1:{etcd_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            // A failed attempt may have begun a data directory for its own peer URL.
            let _ = fs::remove_dir_all(run_dir.join("etcd-data"));
            let etcd_addr = format!("127.0.0.1:{etcd_port}");
            let started = start_listening(
                &run_dir,
                "etcd",
                Command::new(components.path("etcd"))
                    .arg("--name=e2e")
                    .arg(format!(
                        "--data-dir={}",
                        run_dir.join("etcd-data").display()
                    ))
                    .arg(format!("--listen-client-urls={etcd_url}"))
                    .arg(format!("--advertise-client-urls={etcd_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster=e2e={peer_url}"))
                    .arg("--unsafe-no-fsync")
                    .arg("--log-level=warn"),
                ports,
                Duration::from_secs(30),
                || match http_get(&etcd_addr, "/health") {
                    Ok((200, body)) if body.contains("true") => Ok(true),
                    Ok((status, body)) => Err(format!("etcd /health: {status}: {body}")),
                    Err(e) => Err(e),
                },
            )?;
            Ok((started, etcd_url))
        })?;
        processes.push(("etcd".to_string(), etcd));

        // kube-apiserver, on a free port, with the admin kubeconfig pointing at it.
        let kubeconfig_path = run_dir.join("admin.kubeconfig");
        let (server, api_args, (child, _)) = on_free_ports(1, |ports| {
            let server = format!("https://127.0.0.1:{}", ports[0]);
            let admin = kubeconfig(
                &server,
                &ca_pem,
                json!({"client-certificate-data": b64(&admin_cert), "client-key-data": b64(&admin_key)}),
            );
            write(&kubeconfig_path, &admin.to_string())?;
            let partial = PartialCluster {
                run_dir: run_dir.clone(),
                components,
                kubeconfig: kubeconfig_path.clone(),
                server: server.clone(),
            };
            let args = api_args(&pki_dir, &etcd_url, ports[0]);
            let started = start_listening(
                &run_dir,
                "kube-apiserver",
                Command::new(components.path("kube-apiserver")).args(&args),
                ports,
                Duration::from_secs(90),
                || {
                    if processes
                        .iter_mut()
                        .any(|(_, p)| !matches!(p.try_wait(), Ok(None)))
                    {
                        return Err(format!(
                            "etcd exited\n--- etcd log\n{}",
                            tail(&etcd_log, 10)
                        ));
                    }
                    Ok(partial.kubectl(&["get", "--raw", "/readyz"]).success)
                },
            )?;
            Ok((server, args, started))
        })?;
        processes.push(("kube-apiserver".to_string(), child));

        // Guardrails' serving certificate, from the crate's own generator.
        let tls = guardrails::server::tls::generate(
            &["127.0.0.1".into(), "localhost".into()],
            "guardrails-e2e",
        )
        .map_err(|e| e.to_string())?;
        write(&pki_dir.join("guardrails.crt"), &tls.cert_pem)?;
        write(&pki_dir.join("guardrails.key"), &tls.key_pem)?;
        write(&pki_dir.join("guardrails-ca.crt"), &tls.ca_pem)?;

        // The main Guardrails is created below, once the API server is up; until then the struct
        // is built in pieces.
        let partial = PartialCluster {
            run_dir: run_dir.clone(),
            components,
            kubeconfig: kubeconfig_path,
            server: server.clone(),
        };
        eprintln!("e2e: API server ready after {:?}", started.elapsed());

        partial.setup_cluster_objects()?;
        let guardrails = partial.start_guardrails_sa(&tls, "guardrails", &[])?;
        partial.register_webhooks(&guardrails, &tls.ca_pem, &[])?;
        partial.wait_webhooks_active(&guardrails)?;
        eprintln!("e2e: cluster ready after {:?}", started.elapsed());

        Ok(Cluster {
            run_dir,
            components,
            kubeconfig: partial.kubeconfig,
            server,
            guardrails,
            processes: Mutex::new(processes),
            api_args,
            api_restarts: Mutex::new(0),
        })
    }

    /// Stop the API server (etcd and Guardrails keep running). Hold [`exclusive`] around an outage.
    pub fn stop_api_server(&self) {
        let mut processes = self.processes.lock().expect("process list");
        for (name, child) in processes.iter_mut() {
            if name == "kube-apiserver" {
                stop(&self.run_dir, child);
            }
        }
    }

    /// Start the API server again on the same port (the kubeconfigs and webhooks name it) and
    /// wait until it is ready.
    pub fn start_api_server(&self) -> Result<(), String> {
        let mut restarts = self.api_restarts.lock().expect("restart count");
        *restarts += 1;
        let (child, _) = start_listening(
            &self.run_dir,
            &format!("kube-apiserver-{}", *restarts),
            Command::new(self.components.path("kube-apiserver")).args(&self.api_args),
            &[],
            Duration::from_secs(90),
            || Ok(self.kubectl(&["get", "--raw", "/readyz"]).success),
        )?;
        let mut processes = self.processes.lock().expect("process list");
        processes.retain(|(name, _)| name != "kube-apiserver");
        processes.push(("kube-apiserver".to_string(), child));
        Ok(())
    }

    fn base(&self) -> PartialCluster {
        PartialCluster {
            run_dir: self.run_dir.clone(),
            components: self.components,
            kubeconfig: self.kubeconfig.clone(),
            server: self.server.clone(),
        }
    }

    /// `kubectl <args>` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.base().kubectl(args)
    }

    /// `kubectl --as <identity> ... <args>`.
    pub fn kubectl_as(&self, identity: Identity, args: &[&str]) -> Output {
        let mut all: Vec<String> = identity.args();
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.kubectl(&refs)
    }

    /// `kubectl --as <identity> ... <args>` with `stdin` as standard input (use `-f -`).
    pub fn kubectl_stdin_as(&self, identity: Identity, args: &[&str], stdin: &str) -> Output {
        let mut all: Vec<String> = identity.args();
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.kubectl_stdin(&refs, stdin)
    }

    /// `kubectl <args>` as the admin with `stdin` as standard input (use `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.base().kubectl_stdin(args, stdin)
    }

    /// `kubectl apply --server-side -f -` as the admin.
    pub fn server_side_apply(&self, text: &str) -> Output {
        self.base().server_side_apply(text)
    }

    /// `kubectl apply --server-side -f -` as the admin; panics on failure.
    #[track_caller]
    pub fn apply_yaml(&self, yaml: &str) -> Output {
        self.server_side_apply(yaml).ok()
    }

    /// Apply one object (JSON) as the admin; panics on failure.
    #[track_caller]
    pub fn apply_json(&self, object: &Value) -> Output {
        self.apply_yaml(&object.to_string())
    }

    /// `helm <args>` against the cluster (admin kubeconfig).
    pub fn helm(&self, args: &[&str]) -> Output {
        let mut command = Command::new(self.components.path("helm"));
        command.args(args).env("KUBECONFIG", &self.kubeconfig);
        helm_env(&mut command, &self.run_dir);
        run(&mut command, None)
    }

    /// Start another `guardrails serve --watch-namespaces` (reading Namespaces as the chart's
    /// service account) with `args` added. It is not registered as a webhook.
    pub fn start_guardrails(&self, name: &str, args: &[&str]) -> Result<Guardrails, String> {
        let tls =
            guardrails::server::tls::generate(&["127.0.0.1".into(), "localhost".into()], name)
                .map_err(|e| e.to_string())?;
        self.base().start_guardrails_sa(&tls, name, args)
    }

    /// Start another `guardrails serve --watch-namespaces` reading the cluster with `kubeconfig`
    /// (e.g. another service account's token) with `args` added. It is not registered as a webhook.
    pub fn start_guardrails_with(
        &self,
        name: &str,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Guardrails, String> {
        let tls =
            guardrails::server::tls::generate(&["127.0.0.1".into(), "localhost".into()], name)
                .map_err(|e| e.to_string())?;
        self.base()
            .start_guardrails_kubeconfig(&tls, name, kubeconfig, args)
    }

    /// Names of the processes of this cluster that have exited.
    pub fn dead_processes(&self) -> Vec<String> {
        let mut processes = self.processes.lock().expect("process list");
        processes
            .iter_mut()
            .filter_map(|(name, child)| {
                (!matches!(child.try_wait(), Ok(None))).then(|| name.clone())
            })
            .collect()
    }
}

/// What the set-up steps need before the `Cluster` exists.
struct PartialCluster {
    run_dir: PathBuf,
    components: &'static Components,
    kubeconfig: PathBuf,
    server: String,
}

impl PartialCluster {
    fn kubectl_command(&self) -> Command {
        let mut command = Command::new(self.components.path("kubectl"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.run_dir)
            .arg(format!(
                "--cache-dir={}",
                self.run_dir.join("kube-cache").display()
            ))
            .arg("--request-timeout=30s");
        command
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        run(self.kubectl_command().args(args), None)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(self.kubectl_command().args(args), Some(stdin))
    }

    /// `kubectl apply --server-side -f -` as the admin (server-side: some CRDs are too big for
    /// the client-side annotation).
    fn server_side_apply(&self, text: &str) -> Output {
        self.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=e2e",
                "-f",
                "-",
            ],
            text,
        )
    }

    fn apply(&self, yaml: &str) -> Result<(), String> {
        self.server_side_apply(yaml).into_result().map(drop)
    }

    fn setup_cluster_objects(&self) -> Result<(), String> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut crds = Vec::new();
        for dir in ["argocd/crds", "e2e/crds"] {
            let mut files: Vec<PathBuf> = fs::read_dir(fixtures.join(dir))
                .map_err(|e| format!("{dir}: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            crds.extend(files);
        }
        for file in &crds {
            let out = run(
                self.kubectl_command()
                    .args(["apply", "--server-side", "--field-manager=e2e", "-f"])
                    .arg(file),
                None,
            );
            if !out.success {
                return Err(out.to_string());
            }
        }

        let mut objects = Vec::new();
        for (name, team, environment) in NAMESPACES {
            objects.push(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {
                    "guardrails.io/team": team, "guardrails.io/environment": environment,
                }},
            }));
        }
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}}));
        // The identities the tests impersonate may write the workloads and Applications: RBAC
        // lets their requests through, so that what is decided is Guardrails' part.
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "e2e-workload-writer"},
            "rules": [
                {"apiGroups": ["argoproj.io", "apps"], "resources": ["*"], "verbs": ["*"]},
                // Relabelling and deleting Namespaces are decided too (`namespace_trust`).
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            ],
        }));
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-workload-writer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-workload-writer"},
            "subjects": writer_subjects(),
        }));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.apply(&list.to_string())?;

        let names: Vec<String> = crds
            .iter()
            .filter_map(|file| {
                let text = fs::read_to_string(file).ok()?;
                let docs = yaml_docs(&text).ok()?;
                Some(
                    docs.iter()
                        .filter_map(|d| d["metadata"]["name"].as_str().map(|n| format!("crd/{n}")))
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend(names.iter().map(String::as_str));
        let out = self.kubectl(&args);
        if !out.success {
            return Err(out.to_string());
        }
        Ok(())
    }

    /// Apply the chart's ServiceAccount, ClusterRole and ClusterRoleBinding, then mint a token for
    /// that service account and write a kubeconfig with it.
    fn service_account_kubeconfig(&self) -> Result<PathBuf, String> {
        let path = self.run_dir.join("guardrails-sa.kubeconfig");
        if path.exists() {
            return Ok(path);
        }
        let docs = {
            let args = chart_args_without_cert_manager("Cg==");
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            render_chart(self.components, &self.run_dir, &refs)?
        };
        let rbac: Vec<Value> = docs
            .into_iter()
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding")
                )
            })
            .collect();
        if rbac.len() != 3 {
            return Err(format!(
                "the chart should render a ServiceAccount, a ClusterRole and a ClusterRoleBinding: {rbac:#?}"
            ));
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": rbac});
        self.apply(&list.to_string())?;
        let out = self.kubectl(&[
            "create",
            "token",
            FULLNAME,
            "-n",
            RELEASE_NAMESPACE,
            "--duration=24h",
        ]);
        if !out.success {
            return Err(out.to_string());
        }
        let ca_pem =
            fs::read_to_string(self.run_dir.join("pki/ca.crt")).map_err(|e| e.to_string())?;
        let config = kubeconfig(&self.server, &ca_pem, json!({"token": out.stdout.trim()}));
        write(&path, &config.to_string())?;
        Ok(path)
    }

    /// `guardrails serve --watch-namespaces` reading Namespaces as the chart's service account.
    fn start_guardrails_sa(
        &self,
        tls: &guardrails::server::tls::PemPair,
        name: &str,
        extra: &[&str],
    ) -> Result<Guardrails, String> {
        let kubeconfig = self.service_account_kubeconfig()?;
        self.start_guardrails_kubeconfig(tls, name, &kubeconfig, extra)
    }

    /// `guardrails serve --watch-namespaces` reading the cluster with `kubeconfig`.
    fn start_guardrails_kubeconfig(
        &self,
        tls: &guardrails::server::tls::PemPair,
        name: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Result<Guardrails, String> {
        let dir = self.run_dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        write(&dir.join("tls.crt"), &tls.cert_pem)?;
        write(&dir.join("tls.key"), &tls.key_pem)?;
        let audit_log = dir.join("audit.jsonl");
        let (listen, probe, child, log) = on_free_ports(2, |ports| {
            let listen = format!("127.0.0.1:{}", ports[0]);
            let probe = format!("127.0.0.1:{}", ports[1]);
            let (child, log) = start_listening(
                &self.run_dir,
                name,
                Command::new(env!("CARGO_BIN_EXE_guardrails"))
                    .arg("serve")
                    .args(["--listen", &listen, "--probe-listen", &probe])
                    .arg("--tls-cert")
                    .arg(dir.join("tls.crt"))
                    .arg("--tls-key")
                    .arg(dir.join("tls.key"))
                    .arg("--audit-log")
                    .arg(&audit_log)
                    .arg("--watch-namespaces")
                    // Recording real traffic (tests/e2e/recording.rs) needs the requests.
                    .args(crate::recording::enabled().then_some("--audit-log-requests"))
                    .args(extra)
                    .env("KUBECONFIG", kubeconfig)
                    .env("RUST_LOG", "info"),
                ports,
                Duration::from_secs(30),
                || match http_get(&probe, "/readyz") {
                    Ok((200, _)) => Ok(true),
                    Ok((status, body)) => Err(format!("/readyz: {status}: {body}")),
                    Err(e) => Err(e),
                },
            )?;
            Ok((listen, probe, child, log))
        })?;
        Ok(Guardrails {
            listen,
            probe,
            audit_log,
            log,
            ca_pem: tls.ca_pem.clone(),
            child: Mutex::new(child),
        })
    }

    /// Apply the chart's webhook configurations with `clientConfig` pointing at `guardrails`.
    fn register_webhooks(
        &self,
        guardrails: &Guardrails,
        ca_pem: &str,
        extra_args: &[&str],
    ) -> Result<(), String> {
        let mut args = chart_args_without_cert_manager(&b64(ca_pem));
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = render_chart(self.components, &self.run_dir, &refs)?;
        let webhooks = loopback_webhooks(&docs, &guardrails.listen, ca_pem)?;
        let list = json!({"apiVersion": "v1", "kind": "List", "items": webhooks});
        self.apply(&list.to_string())
    }

    /// The API server picks webhook configurations up asynchronously: wait until a dry-run create
    /// of an Application is both audited by the validating webhook and patched by the mutating one.
    fn wait_webhooks_active(&self, guardrails: &Guardrails) -> Result<(), String> {
        let sentinel = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "e2e-sentinel", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://example.com/repo.git", "path": "."},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "payments-dev"},
            },
            "operation": {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "someone-else"}},
        });
        wait_for(Duration::from_secs(30), "the webhooks to be called", || {
            let out = self.kubectl_stdin(
                &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                &sentinel.to_string(),
            );
            if !out.success {
                return Err(out.to_string());
            }
            let object: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
            let mutated = object["operation"]["initiatedBy"]["username"] == "e2e-admin";
            let audited = !guardrails.audit_for("argocd", "e2e-sentinel").is_empty();
            Ok((mutated && audited).then_some(()))
        })
        .map_err(|e| format!("{e}\n--- guardrails log\n{}", tail(&guardrails.log, 20)))
    }
}

/// Who the `e2e-workload-writer` ClusterRole is bound to: every group and service account of the
/// [`Identity`] constants (not `system:authenticated`, which would include Guardrails' own).
fn writer_subjects() -> Value {
    let mut subjects = Vec::new();
    for identity in [
        BOB,
        DANA,
        PLATFORM,
        APP_CONTROLLER,
        ARGOCD_SERVER,
        APPSET_CONTROLLER,
        ROLLOUTS_CONTROLLER,
        HPA,
    ] {
        if let Some(rest) = identity.user.strip_prefix("system:serviceaccount:") {
            let (namespace, name) = rest.split_once(':').unwrap_or(("", rest));
            subjects.push(json!({"kind": "ServiceAccount", "namespace": namespace, "name": name}));
        } else {
            subjects.push(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": identity.user}));
        }
        for group in identity.groups {
            subjects.push(
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}),
            );
        }
    }
    Value::Array(subjects)
}

/// `helm template` arguments for a cluster without cert-manager: a Secret name and the CA bundle.
pub fn chart_args_without_cert_manager(ca_bundle_b64: &str) -> Vec<String> {
    [
        "--set",
        "tls.certManager.enabled=false",
        "--set",
        "tls.secretName=guardrails-e2e-tls",
        "--set",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("tls.caBundle={ca_bundle_b64}")])
    .collect()
}

/// The chart's Validating/MutatingWebhookConfigurations from rendered documents, with each
/// webhook's `clientConfig` replaced by `https://<listen><service path>` and `ca_pem`.
pub fn loopback_webhooks(docs: &[Value], listen: &str, ca_pem: &str) -> Result<Vec<Value>, String> {
    let mut found = Vec::new();
    for doc in docs {
        if !matches!(
            doc["kind"].as_str(),
            Some("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
        ) {
            continue;
        }
        let mut doc = doc.clone();
        let webhooks = doc["webhooks"]
            .as_array_mut()
            .ok_or_else(|| "a webhook configuration without webhooks".to_string())?;
        for webhook in webhooks {
            let path = webhook["clientConfig"]["service"]["path"]
                .as_str()
                .ok_or_else(|| format!("webhook without clientConfig.service.path: {webhook}"))?
                .to_string();
            webhook["clientConfig"] = json!({
                "url": format!("https://{listen}{path}"),
                "caBundle": b64(ca_pem),
            });
        }
        found.push(doc);
    }
    if found.is_empty() {
        return Err("the chart rendered no webhook configuration".into());
    }
    Ok(found)
}
