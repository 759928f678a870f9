//! A real Argo CD (v3.6.2, built from its Go module by `components/build-argocd.sh`) on the e2e
//! cluster, behind the same Guardrails and the chart's webhook configurations as every other e2e
//! test: its writes are decided like a production Argo CD's.
//!
//! Started once per test binary on first use ([`argocd()`]), as Argo CD's own Procfile runs it:
//! redis-server, argocd-repo-server, argocd-application-controller, argocd-server (plaintext on
//! loopback) and argocd-applicationset-controller, each a child process of the multi-call `argocd`
//! binary chosen by `ARGOCD_BINARY_NAME`, with `ARGOCD_FAKE_IN_CLUSTER=true` and a kubeconfig
//! holding a token of its own service account in `argocd` (the identities the shipped
//! config names: argocd-server as delegator, the controllers as automation). Logs are in the
//! run directory (`argocd-*.log`, repositories and homes under `argocd/`); the cluster's watchdog
//! kills the processes when the test binary exits.
//!
//! Argo CD's own objects (argocd-cm, argocd-rbac-cm, argocd-secret, its AppProject and the
//! Applications of these tests) live in the namespace [`NAMESPACE`], not in `argocd`, where the
//! other e2e tests write Applications that point at public Git hosts: this Argo CD sees only its
//! own, and reaches nothing but loopback. Git is a `file://` repository made by the test.
//!
//! People reach argocd-server with ID tokens of a loopback OpenID Connect issuer ([`oidc`]): their
//! email is what argocd-server writes into `/operation/initiatedBy/username`, so the names match
//! `config/guardrails.yaml` (admin@example.com is platform, bob@example.com is payments). Argo CD's
//! RBAC lets both do everything: Guardrails is the gate under test.

mod oidc;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    APP_CONTROLLER, APPSET_CONTROLLER, ARGOCD_SERVER, Cluster, Identity, Output, cluster, http_get,
    kubeconfig, run, shared, start_listening, tail,
};
use crate::common::process::on_free_ports;
use crate::components::{Components, argocd_components};

/// Where this Argo CD keeps its settings, project and Applications.
pub const NAMESPACE: &str = "argocd-e2e";
/// The AppProject of the tests' Applications: Argo CD's `default` (any source, any destination).
const PROJECT: &str = "default";
/// The repo-server's service account: it reads Argo CD's settings, and writes nothing decided.
const REPO_SERVER: Identity = Identity {
    user: "system:serviceaccount:argocd:argocd-repo-server",
    groups: &[],
};

/// A person reaching argocd-server, by the claims of their ID token.
#[derive(Clone, Copy, Debug)]
pub struct Person {
    pub email: &'static str,
    pub groups: &'static [&'static str],
}

/// A platform engineer (team `platform` by name in the shipped config).
pub const ADMIN: Person = Person {
    email: "admin@example.com",
    groups: &["platform-admins"],
};
/// A payments developer (team `payments` by name: Argo CD passes on no groups).
pub const BOB: Person = Person {
    email: "bob@example.com",
    groups: &["payments-devs"],
};

pub struct ArgoCd {
    /// `<run dir>/argocd`: the Git repository, homes and temporary directories.
    pub dir: PathBuf,
    components: &'static Components,
    /// `127.0.0.1:<port>` of argocd-server (plaintext gRPC and HTTP).
    pub server: String,
    /// `file://` URL of the Git repository the Applications deploy from.
    pub repo_url: String,
    repo: PathBuf,
    issuer: oidc::Issuer,
    /// Held while the repository is written.
    git: Mutex<()>,
    /// Kept so that the children are not reaped early; the watchdog kills them.
    processes: Mutex<Vec<(String, Child)>>,
}

/// The Argo CD of this test binary, started on first use on the shared cluster.
#[track_caller]
pub fn argocd() -> &'static ArgoCd {
    static ARGOCD: OnceLock<Result<ArgoCd, String>> = OnceLock::new();
    match ARGOCD.get_or_init(|| ArgoCd::start(cluster())) {
        Ok(argocd) => argocd,
        Err(error) => panic!("Argo CD did not start: {error}"),
    }
}

/// A Deployment of `name` running `image` (no kubelet runs it: Argo CD applies it, that is all).
fn deployment_manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: web
          image: {image}
"
    )
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// Poll `check` every `every` until it returns `Some`, or fail after `timeout` with its last
/// complaint.
fn poll<T>(
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

impl ArgoCd {
    fn start(c: &'static Cluster) -> Result<ArgoCd, String> {
        let started = Instant::now();
        let components = argocd_components()?;
        if !run(Command::new("redis-server").arg("--version"), None).success {
            return Err(
                "redis-server is not installed: the Argo CD e2e tests run Argo CD's \
                        cache in a local redis-server (Debian: apt-get install redis-server)"
                    .into(),
            );
        }
        let dir = c.run_dir.join("argocd");
        for sub in ["home", "tmp", "tls", "ssh", "gpg", "static", "redis", "cli"] {
            mkdir(&dir.join(sub))?;
        }
        let issuer = oidc::Issuer::start()?;

        // The Git repository: a dev and a prod path, each with one small Deployment.
        let repo = dir.join("repo");
        mkdir(&repo)?;
        let argocd = ArgoCd {
            repo_url: format!("file://{}", repo.display()),
            dir: dir.clone(),
            components,
            server: String::new(),
            repo,
            issuer,
            git: Mutex::new(()),
            processes: Mutex::new(Vec::new()),
        };
        argocd.git(&["init", "--quiet", "--initial-branch=main"])?;
        argocd.commit(
            &[
                (
                    "dev/deployment.yaml",
                    deployment_manifest("web", "registry.example.com/web:v1"),
                ),
                (
                    "prod/deployment.yaml",
                    deployment_manifest("web", "registry.example.com/web:v1"),
                ),
            ],
            "dev and prod",
        )?;

        // Argo CD's settings, its service accounts and what RBAC lets them do.
        c.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=e2e",
                "-f",
                "-",
            ],
            &argocd.settings().to_string(),
        )
        .into_result()?;
        let mut kubeconfigs = Vec::new();
        for identity in [
            APP_CONTROLLER,
            ARGOCD_SERVER,
            APPSET_CONTROLLER,
            REPO_SERVER,
        ] {
            kubeconfigs.push(argocd.kubeconfig(c, identity)?);
        }
        let [controller_kc, server_kc, appset_kc, repo_kc] =
            <[PathBuf; 4]>::try_from(kubeconfigs).expect("four kubeconfigs");

        let mut processes = Vec::new();
        let redis = on_free_ports(1, |ports| {
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-redis",
                Command::new("redis-server")
                    .args(["--port", &ports[0].to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(dir.join("redis")),
                ports,
                Duration::from_secs(30),
                || Ok(true),
            )?;
            Ok((child, format!("127.0.0.1:{}", ports[0])))
        })?;
        processes.push(("argocd-redis".to_string(), redis.0));
        let redis = redis.1;

        let repo_server = on_free_ports(2, |ports| {
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-repo-server",
                argocd
                    .command("argocd-repo-server", &repo_kc)
                    .args(["--address", "127.0.0.1", "--port", &ports[0].to_string()])
                    .args(["--metrics-address", "127.0.0.1"])
                    .args(["--metrics-port", &ports[1].to_string()])
                    .args(["--redis", &redis, "--disable-tls", "--client-ca-path", ""]),
                ports,
                Duration::from_secs(60),
                || Ok(true),
            )?;
            Ok((child, format!("127.0.0.1:{}", ports[0])))
        })?;
        processes.push(("argocd-repo-server".to_string(), repo_server.0));
        let repo_server = repo_server.1;

        // Its metrics listener is on every address whatever the flags say; readiness through it.
        let controller = on_free_ports(1, |ports| {
            let metrics = format!("127.0.0.1:{}", ports[0]);
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-application-controller",
                argocd
                    .command("argocd-application-controller", &controller_kc)
                    .env("HOSTNAME", "argocd-application-controller-0")
                    .args(["--metrics-port", &ports[0].to_string()])
                    .args(["--redis", &redis, "--repo-server", &repo_server])
                    .args(["--repo-server-plaintext"])
                    .args(["--status-processors", "4", "--operation-processors", "4"]),
                &[],
                Duration::from_secs(60),
                || Ok(http_get(&metrics, "/healthz").is_ok_and(|(status, _)| status == 200)),
            )?;
            Ok(child)
        })?;
        processes.push(("argocd-application-controller".to_string(), controller));

        let server = on_free_ports(2, |ports| {
            let address = format!("127.0.0.1:{}", ports[0]);
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-server",
                argocd
                    .command("argocd-server", &server_kc)
                    .args(["--insecure", "--address", "127.0.0.1"])
                    .args(["--port", &ports[0].to_string()])
                    .args(["--metrics-address", "127.0.0.1"])
                    .args(["--metrics-port", &ports[1].to_string()])
                    .args(["--redis", &redis, "--repo-server", &repo_server])
                    .args(["--repo-server-plaintext"])
                    // No Dex here (SSO is the loopback issuer); never dial the default name.
                    .args([
                        "--dex-server",
                        "http://127.0.0.1:9",
                        "--dex-server-plaintext",
                    ])
                    .arg("--staticassets")
                    .arg(dir.join("static")),
                ports,
                Duration::from_secs(60),
                || Ok(http_get(&address, "/healthz").is_ok_and(|(status, _)| status == 200)),
            )?;
            Ok((child, address))
        })?;
        processes.push(("argocd-server".to_string(), server.0));

        // Its probe listener answers 404 to everything (no checks registered): ready once its
        // metrics answer.
        let appset = on_free_ports(3, |ports| {
            let metrics = format!("127.0.0.1:{}", ports[0]);
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-applicationset-controller",
                argocd
                    .command("argocd-applicationset-controller", &appset_kc)
                    .args(["--metrics-addr", &metrics])
                    .args(["--probe-addr", &format!("127.0.0.1:{}", ports[1])])
                    .args(["--webhook-addr", &format!("127.0.0.1:{}", ports[2])])
                    .args(["--argocd-repo-server", &repo_server])
                    .args(["--repo-server-plaintext", "--namespace", NAMESPACE]),
                ports,
                Duration::from_secs(60),
                || Ok(http_get(&metrics, "/metrics").is_ok_and(|(status, _)| status == 200)),
            )?;
            Ok(child)
        })?;
        processes.push(("argocd-applicationset-controller".to_string(), appset));

        eprintln!(
            "e2e: Argo CD ready after {:?} (logs: {}/argocd-*.log)",
            started.elapsed(),
            c.run_dir.display()
        );
        Ok(ArgoCd {
            server: server.1,
            processes: Mutex::new(processes),
            ..argocd
        })
    }

    /// Argo CD's namespace, settings, RBAC, AppProject and service accounts, as one List.
    fn settings(&self) -> Value {
        let part_of = json!({"app.kubernetes.io/part-of": "argocd"});
        let oidc = format!(
            "name: E2E\nissuer: {}\nclientID: {}\ncliClientID: {}\n\
             requestedScopes: [openid, email, groups]\n",
            self.issuer.url,
            oidc::CLIENT_ID,
            oidc::CLI_CLIENT_ID
        );
        let mut items = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": NAMESPACE, "labels": part_of},
                "data": {
                    "url": "http://127.0.0.1",
                    "admin.enabled": "false",
                    "oidc.config": oidc,
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-rbac-cm", "namespace": NAMESPACE, "labels": part_of},
                "data": {
                    "policy.csv": format!(
                        "g, {}, role:admin\ng, {}, role:admin\n",
                        ADMIN.email, BOB.email
                    ),
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": part_of},
                "stringData": {"server.secretkey": "e2e-server-secret-key-not-a-secret"},
            }),
            // argocd-server creates its `default` project at start-up when it is missing, and exits
            // if it cannot: Guardrails lets that through only in argocd-server's own namespace
            // (`argocd`), and this Argo CD keeps its objects elsewhere. So the platform team creates
            // it here, as argocd-server would.
            json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                "metadata": {"name": PROJECT, "namespace": NAMESPACE},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"server": "*", "namespace": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            }),
        ];
        let mut subjects = Vec::new();
        for identity in [
            APP_CONTROLLER,
            ARGOCD_SERVER,
            APPSET_CONTROLLER,
            REPO_SERVER,
        ] {
            let name = identity
                .user
                .strip_prefix("system:serviceaccount:argocd:")
                .expect("a service account of argocd");
            items.push(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": "argocd"},
            }));
            subjects.push(json!({"kind": "ServiceAccount", "namespace": "argocd", "name": name}));
        }
        // Argo CD's own install binds the controller to everything and argocd-server to nearly
        // everything; RBAC is not what these tests are about.
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-argocd"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subjects,
        }));
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    }

    /// A kubeconfig holding a token of `identity`'s service account, with Argo CD's namespace as
    /// its context's (where `ARGOCD_FAKE_IN_CLUSTER` processes look for their settings).
    fn kubeconfig(&self, c: &Cluster, identity: Identity) -> Result<PathBuf, String> {
        let name = identity
            .user
            .strip_prefix("system:serviceaccount:argocd:")
            .expect("a service account of argocd");
        let token = c
            .kubectl(&["create", "token", name, "-n", "argocd", "--duration=24h"])
            .into_result()?;
        let ca_pem = fs::read_to_string(c.run_dir.join("pki/ca.crt")).map_err(|e| e.to_string())?;
        let mut config = kubeconfig(&c.server, &ca_pem, json!({"token": token.stdout.trim()}));
        config["contexts"][0]["context"]["namespace"] = json!(NAMESPACE);
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write(&path, &config.to_string())?;
        Ok(path)
    }

    /// The multi-call binary as `binary_name`, as Argo CD's Procfile runs it.
    fn command(&self, binary_name: &str, kubeconfig: &Path) -> Command {
        let mut command = Command::new(self.components.path("argocd"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.components.dir.clone()];
        paths.extend(std::env::split_paths(&path));
        command
            .env("ARGOCD_BINARY_NAME", binary_name)
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("ARGOCD_TLS_DATA_PATH", self.dir.join("tls"))
            .env("ARGOCD_SSH_DATA_PATH", self.dir.join("ssh"))
            .env("ARGOCD_GNUPGHOME", self.dir.join("gpg"))
            .env("ARGOCD_GPG_ENABLED", "false")
            .env(
                "PATH",
                std::env::join_paths(paths).expect("PATH entries without separators"),
            )
            .args(["--loglevel", "info"]);
        command
    }

    fn git(&self, args: &[&str]) -> Result<Output, String> {
        run(
            Command::new("git")
                .arg("-C")
                .arg(&self.repo)
                .args(args)
                .env("HOME", self.dir.join("home"))
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "e2e")
                .env("GIT_AUTHOR_EMAIL", "e2e@example.com")
                .env("GIT_COMMITTER_NAME", "e2e")
                .env("GIT_COMMITTER_EMAIL", "e2e@example.com"),
            None,
        )
        .into_result()
    }

    /// Write `files` (paths in the repository) and commit them; returns the commit's SHA.
    pub fn commit(&self, files: &[(&str, String)], message: &str) -> Result<String, String> {
        let _git = self.git.lock().unwrap_or_else(|e| e.into_inner());
        for (path, contents) in files {
            write(&self.repo.join(path), contents)?;
        }
        self.git(&["add", "--all"])?;
        self.git(&["commit", "--quiet", "-m", message])?;
        Ok(self.git(&["rev-parse", "HEAD"])?.stdout.trim().to_string())
    }

    /// Commit a Deployment `name` running `image` at `path`/deployment.yaml; returns the SHA.
    #[track_caller]
    pub fn commit_deployment(&self, path: &str, name: &str, image: &str) -> String {
        self.commit(
            &[(
                &format!("{path}/deployment.yaml"),
                deployment_manifest(name, image),
            )],
            &format!("{path}: {name} runs {image}"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An Application in [`NAMESPACE`] deploying `path` of the repository at HEAD into
    /// `destination`, auto-synced or not.
    pub fn application(&self, name: &str, path: &str, destination: &str, auto: bool) -> Value {
        let mut app = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "project": PROJECT,
                "source": {"repoURL": self.repo_url, "path": path, "targetRevision": "HEAD"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
            },
        });
        if auto {
            app["spec"]["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": false}});
        }
        app
    }

    /// `argocd <args>` (the CLI) against argocd-server as `person`, with an ID token of theirs.
    pub fn cli(&self, person: Person, args: &[&str]) -> Output {
        let token = self.issuer.token(person.email, person.groups);
        let config = self.dir.join("cli").join(person.email);
        run(
            Command::new(self.components.path("argocd"))
                .args(args)
                .args(["--server", &self.server, "--plaintext"])
                .args(["--auth-token", &token])
                .arg("--config")
                .arg(config)
                .env("HOME", self.dir.join("cli"))
                .env_remove("ARGOCD_BINARY_NAME"),
            None,
        )
    }

    /// The live Application `name`.
    pub fn app(&self, name: &str) -> Value {
        cluster()
            .kubectl(&[
                "get",
                "applications.argoproj.io",
                name,
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ])
            .ok()
            .json()
    }

    /// Wait (up to 2 minutes) until Application `name` satisfies `done`; returns it. Failing, says
    /// what it last was and where the Argo CD logs are.
    #[track_caller]
    pub fn wait_app(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        poll(
            Duration::from_secs(120),
            Duration::from_millis(500),
            what,
            || {
                last = self.app(name);
                Ok(done(&last).then(|| last.clone()))
            },
        )
        .unwrap_or_else(|error| {
            panic!(
                "{error}\n--- Application {NAMESPACE}/{name}\n{last:#}\n{}",
                self.logs()
            )
        })
    }

    /// The last lines of every Argo CD process's log, for failures.
    pub fn logs(&self) -> String {
        let run_dir = &cluster().run_dir;
        let mut text = String::new();
        let dead: Vec<String> = self
            .processes
            .lock()
            .map(|mut processes| {
                processes
                    .iter_mut()
                    .filter_map(|(name, child)| {
                        (!matches!(child.try_wait(), Ok(None))).then(|| name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !dead.is_empty() {
            text.push_str(&format!("--- exited: {dead:?}\n"));
        }
        for name in [
            "argocd-application-controller",
            "argocd-server",
            "argocd-repo-server",
        ] {
            let log = run_dir.join(format!("{name}.log"));
            text.push_str(&format!(
                "--- {} (last lines)\n{}\n",
                log.display(),
                tail(&log, 15)
            ));
        }
        text
    }
}

impl Output {
    /// `Ok` with the output if the command succeeded, else `Err` saying all it printed.
    pub fn into_result(self) -> Result<Output, String> {
        if self.success {
            Ok(self)
        } else {
            Err(self.to_string())
        }
    }
}

/// The live object `kind/name` in `namespace`, if there is one.
fn get(kind: &str, namespace: &str, name: &str) -> Option<Value> {
    let out = cluster().kubectl(&["get", kind, name, "-n", namespace, "-o", "json"]);
    out.success.then(|| out.json())
}

/// The Application's last operation ended `Succeeded` having synced `revision` (any, if `None`).
fn synced(app: &Value, revision: Option<&str>) -> bool {
    let state = &app["status"]["operationState"];
    state["phase"] == "Succeeded" && revision.is_none_or(|r| state["syncResult"]["revision"] == r)
}

fn image(deployment: &Value) -> &str {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

fn has_action(record: &Value, action: &str) -> bool {
    record["actions"]
        .as_array()
        .is_some_and(|actions| actions.contains(&json!(action)))
}

/// (a) A new commit reaches a production Application by auto-sync: the application controller
/// writes the operation (as automation) and applies the Deployment; Guardrails allows both.
#[test]
fn auto_sync_of_a_new_commit_into_prod_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-auto";
    let first = argo.commit_deployment("prod-auto", "web-auto", "registry.example.com/web:v1");
    c.apply_json(&argo.application(name, "prod-auto", "payments-prod", true));
    argo.wait_app(name, "the first auto-sync", |app| synced(app, Some(&first)));

    let second = argo.commit_deployment("prod-auto", "web-auto", "registry.example.com/web:v2");
    // What a Git webhook would do: ask for a refresh now rather than at the next poll.
    argo.cli(ADMIN, &["app", "get", name, "--refresh", "-o", "json"])
        .ok();
    let app = argo.wait_app(name, "the auto-sync of the new commit", |app| {
        synced(app, Some(&second))
    });
    let operation = &app["status"]["operationState"]["operation"];
    assert_eq!(operation["initiatedBy"]["automated"], true, "{app:#}");
    let deployment = get("deployments.apps", "payments-prod", "web-auto").expect("deployed");
    assert_eq!(image(&deployment), "registry.example.com/web:v2");

    // Guardrails decided the controller's operation writes as automation's auto-sync: allowed.
    let records: Vec<Value> = c
        .guardrails
        .audit_for(NAMESPACE, name)
        .into_iter()
        .filter(|r| r["user"] == APP_CONTROLLER.user && has_action(r, "auto-sync"))
        .collect();
    assert!(records.len() >= 2, "two auto-syncs audited: {records:#?}");
    for record in &records {
        assert_eq!(record["decision"], "allow", "{record:#}");
        assert_eq!(record["principal"], APP_CONTROLLER.user, "{record:#}");
    }
    // And its apply of the Deployment.
    let record = c.guardrails.wait_audit("payments-prod", "web-auto", |r| {
        r["user"] == APP_CONTROLLER.user && r["operation"] == "UPDATE"
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
}

/// (b) A payments developer's `argocd app sync` of a production Application: argocd-server writes
/// the operation naming them, Guardrails denies it, and the CLI shows Guardrails' message.
#[test]
fn developer_sync_of_a_prod_app_through_argocd_is_denied() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-bob-prod";
    c.apply_json(&argo.application(name, "prod", "payments-prod", false));

    let out = argo.cli(BOB, &["app", "sync", name, "--timeout", "120"]);
    assert!(!out.success, "bob's sync of a prod app went through: {out}");
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(printed.contains("Guardrails denied"), "{out}");
    assert!(printed.contains("[prod-sync-platform-only]"), "{out}");

    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "sync")
    });
    assert_eq!(record["principal"], BOB.email, "{record:#}");
    assert_eq!(record["delegator"], ARGOCD_SERVER.user, "{record:#}");
    assert_eq!(record["decision"], "deny", "{record:#}");
    // Nothing was started.
    let app = argo.app(name);
    assert!(app.get("operation").is_none(), "{app:#}");
    assert!(app["status"]["operationState"].is_null(), "{app:#}");
}

/// (c) The same developer syncing a dev Application of their team: allowed, and Argo CD deploys.
#[test]
fn developer_sync_of_a_dev_app_through_argocd_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-bob-dev";
    c.apply_json(&argo.application(name, "dev", "payments-dev", false));

    argo.cli(BOB, &["app", "sync", name, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(name, "bob's sync", |app| synced(app, None));
    let operation = &app["status"]["operationState"]["operation"];
    assert_eq!(operation["initiatedBy"]["username"], BOB.email, "{app:#}");
    assert!(get("deployments.apps", "payments-dev", "web").is_some());

    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "sync")
    });
    assert_eq!(record["principal"], BOB.email, "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
}

/// (d) A platform engineer's `argocd app sync` of a production Application: allowed.
#[test]
fn platform_sync_of_a_prod_app_through_argocd_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-admin-prod";
    c.apply_json(&argo.application(name, "prod", "payments-prod", false));

    argo.cli(ADMIN, &["app", "sync", name, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(name, "the platform engineer's sync", |app| {
        synced(app, None)
    });
    let operation = &app["status"]["operationState"]["operation"];
    assert_eq!(operation["initiatedBy"]["username"], ADMIN.email, "{app:#}");
    assert!(get("deployments.apps", "payments-prod", "web").is_some());

    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "sync")
    });
    assert_eq!(record["principal"], ADMIN.email, "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
}
