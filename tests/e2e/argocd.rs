//! A real Argo CD (v3.6.2, built from its Go module by `components/build-argocd.sh`) on the e2e
//! cluster, behind the same Guardrails and the chart's webhook configurations as every other e2e
//! test: its writes are decided like a production Argo CD's.
//!
//! Started once per test binary on first use ([`argocd()`]), as Argo CD's own Procfile runs it:
//! redis-server, argocd-repo-server, argocd-application-controller, argocd-server (plaintext on
//! loopback), argocd-applicationset-controller and argocd-notifications (the notifications
//! controller), each a child process of the multi-call `argocd` binary chosen by
//! `ARGOCD_BINARY_NAME`, with `ARGOCD_FAKE_IN_CLUSTER=true` and a kubeconfig holding a token of its
//! own service account in `argocd` (the identities the shipped config names: argocd-server as
//! delegator, the controllers as automation). The repo server renders Helm sources with the e2e
//! components' pinned `helm`, linked alone into a directory on its PATH. Logs are in the run
//! directory (`argocd-*.log`, repositories and homes under `argocd/`); the cluster's watchdog kills
//! the processes when the test binary exits.
//!
//! Argo CD's own objects (argocd-cm, argocd-rbac-cm, argocd-secret, its AppProject and the
//! Applications of these tests) live in the namespace [`NAMESPACE`], not in `argocd`, where the
//! other e2e tests write Applications that point at public Git hosts: this Argo CD sees only its
//! own, and reaches nothing but loopback. Git is a `file://` repository made by the test.
//!
//! People reach argocd-server with ID tokens of a loopback OpenID Connect issuer ([`oidc`]): their
//! email is what argocd-server writes into `/operation/initiatedBy/username`, so the names match
//! `config/guardrails.yaml` (admin@example.com is platform, bob@example.com is payments). Argo CD's
//! RBAC lets both do everything: Guardrails is the gate under test. A local account (`bob`) shows
//! what argocd-server names for those: the bare account name.
//!
//! Flows (each asserts what Argo CD did, from the Application's operation state and the deployed
//! objects, and what Guardrails decided, from its audit log; each is recorded, see [`record`]):
//! auto-sync of a new commit into prod; `argocd app sync` of prod by a developer (denied, with
//! Guardrails' message in the CLI's output) and a platform engineer, of dev by the developer;
//! `argocd app rollback`; `argocd app set` and `argocd app delete`, which argocd-server does as
//! itself; an ApplicationSet's generated Application and a developer's edit of one into prod; hard
//! refresh; `--prune --force`; terminate; a multi-source sync; self-heal; a namespace Argo CD creates
//! with trust labels; a local account's sync; `argocd app actions run … restart` on a Deployment
//! (argocd-server's patch names nobody: allowed in dev, denied by `prod-gitops-drift` in prod for
//! the developer and the platform engineer alike, whose own `kubectl rollout restart` is allowed);
//! a Helm chart in Git (auto-synced into dev with its rendered values, a developer's prod sync
//! denied); syncs with `--server-side`, `--apply-out-of-sync-only` and `--replace`, and with
//! `Force=true` in the Application's sync options (sync options, not a force: the Deployment is
//! replaced in place), then `--replace --force` (deleted and re-created); and the notifications
//! controller's `notified.notifications.argoproj.io` annotation after a webhook notification
//! (bookkeeping by automation).

mod oidc;
mod record;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    APP_CONTROLLER, APPSET_CONTROLLER, ARGOCD_SERVER, Cluster, Identity, Output, PLATFORM, cluster,
    get, has_action, http_get, kubeconfig, run, shared, start_listening, tail, wait_every,
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

/// The notifications controller's service account: automation in the shipped config (it records
/// what it sent in the `notified.notifications.argoproj.io` annotation).
pub const NOTIFICATIONS_CONTROLLER: Identity = Identity {
    user: "system:serviceaccount:argocd:argocd-notifications-controller",
    groups: &[],
};

/// The service accounts of Argo CD's processes, each with a kubeconfig of its own.
const IDENTITIES: [Identity; 5] = [
    APP_CONTROLLER,
    ARGOCD_SERVER,
    APPSET_CONTROLLER,
    REPO_SERVER,
    NOTIFICATIONS_CONTROLLER,
];

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
/// An Argo CD local account (`accounts.bob` in argocd-cm) and its password: what argocd-server
/// names for it is the bare account name, which the shipped config does not know.
pub const LOCAL_ACCOUNT: &str = "bob";
const LOCAL_PASSWORD: &str = "e2e-local-password";

pub struct ArgoCd {
    /// `<run dir>/argocd`: the Git repository, homes and temporary directories.
    pub dir: PathBuf,
    components: &'static Components,
    /// `127.0.0.1:<port>` of argocd-server (plaintext gRPC and HTTP).
    pub server: String,
    /// The Git repository most Applications deploy from: `dev/` and `prod/`, each a Deployment
    /// `web`, and `appset/` (`web-appset`). Tests that commit make a repository of their own
    /// ([`ArgoCd::repository`]), so that no other Application's revision moves under them.
    pub repo: Repo,
    issuer: oidc::Issuer,
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
        for sub in [
            "home", "tmp", "tls", "ssh", "gpg", "static", "redis", "cli", "bin",
        ] {
            mkdir(&dir.join(sub))?;
        }
        // The repo server renders Helm sources with `helm` from PATH (Argo CD's image ships one):
        // the e2e components' pinned Helm, linked alone into `bin/` (not kube-apiserver and kubectl).
        let helm = c.components.path("helm");
        std::os::unix::fs::symlink(&helm, dir.join("bin/helm"))
            .map_err(|e| format!("{}: {e}", helm.display()))?;
        let issuer = oidc::Issuer::start()?;

        let repo = Repo::create(&dir.join("repos/main"), &dir.join("home"))?;
        repo.commit(
            &[
                (
                    "dev/deployment.yaml",
                    deployment_manifest("web", "registry.example.com/web:v1"),
                ),
                (
                    "prod/deployment.yaml",
                    deployment_manifest("web", "registry.example.com/web:v1"),
                ),
                (
                    "appset/deployment.yaml",
                    deployment_manifest("web-appset", "registry.example.com/web:v1"),
                ),
            ],
            "dev, prod and an ApplicationSet's path",
        )?;
        let argocd = ArgoCd {
            dir: dir.clone(),
            components,
            server: String::new(),
            repo,
            issuer,
            processes: Mutex::new(Vec::new()),
        };

        // Argo CD's settings, its service accounts and what RBAC lets them do.
        let bcrypt = run(
            Command::new(components.path("argocd"))
                .args(["account", "bcrypt", "--password", LOCAL_PASSWORD])
                .env("HOME", dir.join("cli")),
            None,
        )
        .into_result()?;
        c.server_side_apply(&argocd.settings(bcrypt.stdout.trim()).to_string())
            .into_result()?;
        let mut kubeconfigs = Vec::new();
        for identity in IDENTITIES {
            kubeconfigs.push(argocd.kubeconfig(c, identity)?);
        }
        let [
            controller_kc,
            server_kc,
            appset_kc,
            repo_kc,
            notifications_kc,
        ] = <[PathBuf; 5]>::try_from(kubeconfigs).expect("five kubeconfigs");

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

        // Its metrics listener is on every address (`0.0.0.0:<port>`); ready once they answer. Its
        // services and triggers are argocd-notifications-cm's, which the tests that use it write.
        let notifications = on_free_ports(1, |ports| {
            let metrics = format!("127.0.0.1:{}", ports[0]);
            let (child, _) = start_listening(
                &c.run_dir,
                "argocd-notifications",
                argocd
                    .command("argocd-notifications", &notifications_kc)
                    .args(["--metrics-port", &ports[0].to_string()])
                    .args(["--argocd-repo-server", &repo_server])
                    .args(["--argocd-repo-server-plaintext"]),
                &[],
                Duration::from_secs(60),
                || Ok(http_get(&metrics, "/metrics").is_ok_and(|(status, _)| status == 200)),
            )?;
            Ok(child)
        })?;
        processes.push(("argocd-notifications".to_string(), notifications));

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

    /// Argo CD's namespace, settings, RBAC, AppProject and service accounts, as one List; the
    /// local account's password hash is `bcrypt`.
    fn settings(&self, bcrypt: &str) -> Value {
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
                    format!("accounts.{LOCAL_ACCOUNT}"): "login",
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-rbac-cm", "namespace": NAMESPACE, "labels": part_of},
                "data": {
                    "policy.csv": format!(
                        "g, {}, role:admin\ng, {}, role:admin\ng, {LOCAL_ACCOUNT}, role:admin\n",
                        ADMIN.email, BOB.email
                    ),
                },
            }),
            // The notifications controller's settings: no services or triggers until a test
            // writes them (`notifications_of_a_sync_are_bookkeeping`).
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-notifications-cm", "namespace": NAMESPACE, "labels": part_of},
            }),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "argocd-notifications-secret", "namespace": NAMESPACE, "labels": part_of},
            }),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": part_of},
                "stringData": {
                    "server.secretkey": "e2e-server-secret-key-not-a-secret",
                    format!("accounts.{LOCAL_ACCOUNT}.password"): bcrypt,
                },
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
        for identity in IDENTITIES {
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
        // `helm` for the repo server's Helm sources: the pinned one, alone in `bin/`.
        let mut paths = vec![self.components.dir.clone(), self.dir.join("bin")];
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

    /// A Git repository of its own for one test (under `repos/<name>`), empty.
    #[track_caller]
    pub fn repository(&self, name: &str) -> Repo {
        Repo::create(&self.dir.join("repos").join(name), &self.dir.join("home"))
            .unwrap_or_else(|e| panic!("{e}"))
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

    /// `argocd <args>` as the local account [`LOCAL_ACCOUNT`], logged in with its password.
    pub fn cli_local(&self, args: &[&str]) -> Output {
        let config = self.dir.join("cli").join(format!("local-{LOCAL_ACCOUNT}"));
        let argocd = || {
            let mut command = Command::new(self.components.path("argocd"));
            command
                .arg("--config")
                .arg(&config)
                .env("HOME", self.dir.join("cli"))
                .env_remove("ARGOCD_BINARY_NAME");
            command
        };
        let login = run(
            argocd().args(["login", &self.server, "--plaintext"]).args([
                "--username",
                LOCAL_ACCOUNT,
                "--password",
                LOCAL_PASSWORD,
            ]),
            None,
        );
        if !login.success {
            return login;
        }
        run(argocd().args(args), None)
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
        wait_every(
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

    /// Wait (up to 2 minutes) until Application `name` exists; returns it.
    #[track_caller]
    pub fn wait_app_created(&self, name: &str) -> Value {
        wait_every(
            Duration::from_secs(120),
            Duration::from_millis(500),
            &format!("Application {NAMESPACE}/{name}"),
            || Ok(get("applications.argoproj.io", NAMESPACE, name)),
        )
        .unwrap_or_else(|error| panic!("{error}\n{}", self.logs()))
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
            "argocd-applicationset-controller",
            "argocd-notifications",
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

/// A `file://` Git repository (a work tree: Argo CD's repo server clones it).
pub struct Repo {
    /// `file://<path>`.
    pub url: String,
    path: PathBuf,
    home: PathBuf,
    /// Held while the repository is written.
    lock: Mutex<()>,
}

impl Repo {
    fn create(path: &Path, home: &Path) -> Result<Repo, String> {
        mkdir(path)?;
        let repo = Repo {
            url: format!("file://{}", path.display()),
            path: path.to_path_buf(),
            home: home.to_path_buf(),
            lock: Mutex::new(()),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"])?;
        Ok(repo)
    }

    fn git(&self, args: &[&str]) -> Result<Output, String> {
        run(
            Command::new("git")
                .arg("-C")
                .arg(&self.path)
                .args(args)
                .env("HOME", &self.home)
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
        let _lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for (path, contents) in files {
            write(&self.path.join(path), contents)?;
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

    /// An Application in [`NAMESPACE`] deploying `path` of this repository at HEAD into
    /// `destination`, auto-synced or not.
    pub fn application(&self, name: &str, path: &str, destination: &str, auto: bool) -> Value {
        let mut app = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "project": PROJECT,
                "source": {"repoURL": self.url, "path": path, "targetRevision": "HEAD"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
            },
        });
        if auto {
            app["spec"]["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": false}});
        }
        app
    }
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

/// (a) A new commit reaches a production Application by auto-sync: the application controller
/// writes the operation (as automation) and applies the Deployment; Guardrails allows both.
#[test]
fn auto_sync_of_a_new_commit_into_prod_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-auto";
    let repo = argo.repository(name);
    let first = repo.commit_deployment("prod", "web-auto", "registry.example.com/web:v1");
    c.apply_json(&repo.application(name, "prod", "payments-prod", true));
    argo.wait_app(name, "the first auto-sync", |app| synced(app, Some(&first)));

    let second = repo.commit_deployment("prod", "web-auto", "registry.example.com/web:v2");
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
    record::record(
        "auto-sync-prod",
        "the application controller auto-syncing a new commit into a prod Application",
        &[name, "web-auto"],
    );
}

/// (b) A payments developer's `argocd app sync` of a production Application: argocd-server writes
/// the operation naming them, Guardrails denies it, and the CLI shows Guardrails' message.
#[test]
fn developer_sync_of_a_prod_app_through_argocd_is_denied() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-bob-prod";
    c.apply_json(&argo.repo.application(name, "prod", "payments-prod", false));

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
    record::record(
        "developer-sync-prod",
        "a payments developer's argocd app sync of a prod Application",
        &[name],
    );
}

/// (c) The same developer syncing a dev Application of their team: allowed, and Argo CD deploys.
#[test]
fn developer_sync_of_a_dev_app_through_argocd_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-bob-dev";
    c.apply_json(&argo.repo.application(name, "dev", "payments-dev", false));

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
    record::record(
        "developer-sync-dev",
        "a payments developer's argocd app sync of a dev Application",
        &[name],
    );
}

/// (d) A platform engineer's `argocd app sync` of a production Application: allowed.
#[test]
fn platform_sync_of_a_prod_app_through_argocd_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-admin-prod";
    c.apply_json(&argo.repo.application(name, "prod", "payments-prod", false));

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
    record::record(
        "platform-sync-prod",
        "a platform engineer's argocd app sync of a prod Application",
        &[name],
    );
}

/// An Argo CD local account's sync names the account, `bob`, which is not bob@example.com: a
/// person in no team, whom Guardrails keeps out of the payments namespaces. (Local account names
/// cannot be emails: argocd-cm keys allow no `@` and Argo CD splits them on `.`.)
#[test]
fn local_account_sync_names_the_bare_account() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-local-dev";
    c.apply_json(&argo.repo.application(name, "dev", "payments-dev", false));

    let out = argo.cli_local(&["app", "sync", name, "--timeout", "120"]);
    assert!(!out.success, "the local account's sync went through: {out}");
    assert!(
        out.stderr.contains(&format!(
            "Guardrails denied sync of Application {NAMESPACE}/{name} by {LOCAL_ACCOUNT}:"
        )),
        "{out}"
    );
    assert!(out.stderr.contains("[team-owns-namespace]"), "{out}");

    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "sync")
    });
    assert_eq!(record["principal"], LOCAL_ACCOUNT, "{record:#}");
    assert_eq!(record["delegator"], ARGOCD_SERVER.user, "{record:#}");
    assert_eq!(record["teams"], json!([]), "{record:#}");
    assert_eq!(record["decision"], "deny", "{record:#}");
    record::record(
        "local-account-sync",
        "a local account's argocd app sync",
        &[name],
    );
}

/// `argocd app set` names nobody: argocd-server edits the Application as itself. A dev
/// Application's source may change that way; a production one's may not, whoever asked.
#[test]
fn app_set_is_decided_as_argocd_server_itself() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let dev = "e2e-argocd-set-dev";
    let prod = "e2e-argocd-set-prod";
    c.apply_json(&argo.repo.application(dev, "dev", "payments-dev", false));
    c.apply_json(&argo.repo.application(prod, "prod", "payments-prod", false));

    argo.cli(BOB, &["app", "set", dev, "--revision", "main"])
        .ok();
    assert_eq!(argo.app(dev)["spec"]["source"]["targetRevision"], "main");
    let record = c.guardrails.wait_audit(NAMESPACE, dev, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "change-source")
    });
    assert_eq!(record["principal"], ARGOCD_SERVER.user, "{record:#}");
    assert!(record["delegator"].is_null(), "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");

    // Even the platform engineer: argocd-server does not say who asked.
    let out = argo.cli(ADMIN, &["app", "set", prod, "--revision", "main"]);
    assert!(
        !out.success,
        "a prod app's source changed through argocd-server: {out}"
    );
    assert!(out.stderr.contains("Guardrails denied"), "{out}");
    assert!(
        out.stderr.contains("[prod-app-changes-through-git]"),
        "{out}"
    );
    assert_eq!(argo.app(prod)["spec"]["source"]["targetRevision"], "HEAD");
    let record = c.guardrails.wait_audit(NAMESPACE, prod, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "change-source")
    });
    assert_eq!(record["principal"], ARGOCD_SERVER.user, "{record:#}");
    assert_eq!(record["decision"], "deny", "{record:#}");
    record::record(
        "app-set",
        "argocd app set on a dev and a prod Application",
        &[dev, prod],
    );
}

/// `argocd app delete` names nobody either: refused, even for the platform engineer (who deletes
/// with kubectl), and the Application stays.
#[test]
fn app_delete_through_argocd_is_denied() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-delete";
    c.apply_json(&argo.repo.application(name, "dev", "storefront-dev", false));

    let out = argo.cli(ADMIN, &["app", "delete", name, "--yes"]);
    assert!(!out.success, "the delete went through: {out}");
    assert!(out.stderr.contains("Guardrails denied"), "{out}");
    assert!(out.stderr.contains("[app-delete-platform-only]"), "{out}");
    let app = argo.app(name);
    assert!(app["metadata"]["deletionTimestamp"].is_null(), "{app:#}");
    // For a cascading delete argocd-server first adds the resources finalizer, then deletes. The
    // patch is decided as the delete it prepares: denied, so no finalizer stays behind to make a
    // later delete cascade, and argocd-server never sends the DELETE.
    assert!(app["metadata"]["finalizers"].is_null(), "{app:#}");
    let record = c
        .guardrails
        .wait_audit(NAMESPACE, name, |r| r["operation"] == "UPDATE");
    assert_eq!(record["user"], ARGOCD_SERVER.user, "{record:#}");
    assert_eq!(record["principal"], ARGOCD_SERVER.user, "{record:#}");
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert!(has_action(&record, "delete"), "{record:#}");

    // The platform engineer's own delete goes through.
    c.kubectl(&[
        "delete",
        "applications.argoproj.io",
        name,
        "-n",
        NAMESPACE,
        "--wait=false",
    ])
    .ok();
    record::record("app-delete", "argocd app delete", &[name]);
}

/// `argocd app rollback` of a production Application to its first sync: denied for the payments
/// developer, done for the platform engineer.
#[test]
fn rollback_of_a_prod_app_through_argocd() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-rollback";
    let repo = argo.repository(name);
    let first = repo.commit_deployment("prod", "web-rollback", "registry.example.com/web:v1");
    c.apply_json(&repo.application(name, "prod", "payments-prod", false));
    argo.cli(ADMIN, &["app", "sync", name, "--timeout", "120"])
        .ok();
    argo.wait_app(name, "the first sync", |app| synced(app, Some(&first)));
    let second = repo.commit_deployment("prod", "web-rollback", "registry.example.com/web:v2");
    argo.cli(ADMIN, &["app", "sync", name, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(name, "the second sync", |app| synced(app, Some(&second)));
    let history = app["status"]["history"].as_array().expect("history");
    let id = history
        .iter()
        .find(|entry| entry["revision"] == first.as_str())
        .and_then(|entry| entry["id"].as_i64())
        .unwrap_or_else(|| panic!("no history entry of {first}: {app:#}"))
        .to_string();

    let out = argo.cli(BOB, &["app", "rollback", name, &id, "--timeout", "120"]);
    assert!(!out.success, "bob's rollback went through: {out}");
    assert!(out.stderr.contains("Guardrails denied rollback"), "{out}");
    assert!(out.stderr.contains("[prod-sync-platform-only]"), "{out}");
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["principal"] == BOB.email && has_action(r, "rollback")
    });
    assert_eq!(record["decision"], "deny", "{record:#}");

    argo.cli(ADMIN, &["app", "rollback", name, &id, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(name, "the rollback", |app| synced(app, Some(&first)));
    assert_eq!(
        app["status"]["operationState"]["operation"]["initiatedBy"]["username"], ADMIN.email,
        "{app:#}"
    );
    let deployment = get("deployments.apps", "payments-prod", "web-rollback").expect("deployed");
    assert_eq!(image(&deployment), "registry.example.com/web:v1");
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["principal"] == ADMIN.email && has_action(r, "rollback")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "rollback-prod",
        "argocd app rollback of a prod Application",
        &[name, "web-rollback"],
    );
}

/// An ApplicationSet written by the platform team: the ApplicationSet controller creates the
/// Application it generates and the application controller auto-syncs it, both as automation.
#[test]
fn applicationset_generates_and_syncs_as_automation() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let generated = "e2e-argocd-appset-dev";
    c.apply_json(&json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "e2e-argocd-appset", "namespace": NAMESPACE},
        "spec": {
            "generators": [{"list": {"elements": [{"env": "dev"}]}}],
            "template": {
                "metadata": {"name": "e2e-argocd-appset-{{env}}"},
                "spec": {
                    "project": PROJECT,
                    "source": {"repoURL": argo.repo.url, "path": "appset", "targetRevision": "HEAD"},
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": "payments-{{env}}",
                    },
                    "syncPolicy": {"automated": {}},
                },
            },
        },
    }));

    let app = argo.wait_app_created(generated);
    assert_eq!(
        app["metadata"]["ownerReferences"][0]["name"], "e2e-argocd-appset",
        "{app:#}"
    );
    argo.wait_app(generated, "the generated app's auto-sync", |app| {
        synced(app, None)
    });
    assert!(get("deployments.apps", "payments-dev", "web-appset").is_some());
    let record = c
        .guardrails
        .wait_audit(NAMESPACE, generated, |r| r["operation"] == "CREATE");
    assert_eq!(record["user"], APPSET_CONTROLLER.user, "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
    let record = c.guardrails.wait_audit(NAMESPACE, generated, |r| {
        r["user"] == APP_CONTROLLER.user && has_action(r, "auto-sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "applicationset",
        "an ApplicationSet generating and auto-syncing an Application",
        &["e2e-argocd-appset", generated, "web-appset"],
    );
}

/// A developer's `argocd app get --hard-refresh` of a production Application: argocd-server writes
/// the refresh annotations as itself, Guardrails allows a refresh (it deploys nothing).
#[test]
fn hard_refresh_of_a_prod_app_is_a_refresh() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-refresh";
    c.apply_json(&argo.repo.application(name, "prod", "payments-prod", false));
    argo.wait_app(name, "the first reconcile", |app| {
        !app["status"]["sync"]["status"].is_null()
    });

    argo.cli(BOB, &["app", "get", name, "--hard-refresh", "-o", "json"])
        .ok();
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "refresh")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(
        record["principal"], ARGOCD_SERVER.user,
        "argocd-server names no one: {record:#}"
    );
    record::record(
        "hard-refresh-prod",
        "argocd app get --hard-refresh of a prod Application",
        &[name],
    );
}

/// `argocd app sync --prune --force` of a production Application: the developer is denied (both
/// prod policies name it), the platform engineer is not, and the options reach the operation.
#[test]
fn prune_and_force_sync_of_a_prod_app() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-prune";
    c.apply_json(&argo.repo.application(name, "prod", "payments-prod", false));

    let out = argo.cli(
        BOB,
        &[
            "app",
            "sync",
            name,
            "--prune",
            "--force",
            "--timeout",
            "120",
        ],
    );
    assert!(
        !out.success,
        "bob's prune-and-force sync went through: {out}"
    );
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(printed.contains("[prod-no-prune-or-force]"), "{out}");
    assert!(printed.contains("[prod-sync-platform-only]"), "{out}");

    argo.cli(
        ADMIN,
        &[
            "app",
            "sync",
            name,
            "--prune",
            "--force",
            "--timeout",
            "120",
        ],
    )
    .ok();
    let app = argo.wait_app(name, "the platform engineer's sync", |app| {
        synced(app, None)
    });
    let sync = &app["status"]["operationState"]["operation"]["sync"];
    assert_eq!(sync["prune"], true, "{app:#}");
    // What argo-cd 3.6 writes for --force (observed): the hook strategy, forced.
    assert_eq!(sync["syncStrategy"]["hook"]["force"], true, "{app:#}");
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["principal"] == ADMIN.email && has_action(r, "sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "prune-force-prod",
        "argocd app sync --prune --force of a prod Application",
        &[name],
    );
}

/// A developer editing an ApplicationSet so that it generates a production Application: denied
/// (`prod-appset-changes-through-git`), and nothing is generated.
#[test]
fn developer_edit_of_an_applicationset_into_prod_is_denied() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let appset = "e2e-argocd-appset-edit";
    c.apply_json(&json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": appset, "namespace": NAMESPACE},
        "spec": {
            "generators": [{"list": {"elements": [{"env": "dev"}]}}],
            "template": {
                "metadata": {"name": "e2e-argocd-edit-{{env}}"},
                "spec": {
                    "project": PROJECT,
                    "source": {"repoURL": argo.repo.url, "path": "appset", "targetRevision": "HEAD"},
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": "payments-{{env}}",
                    },
                },
            },
        },
    }))
    .ok();
    argo.wait_app_created("e2e-argocd-edit-dev");

    let patch = json!({"spec": {"generators": [{"list": {"elements": [{"env": "dev"}, {"env": "prod"}]}}]}})
        .to_string();
    let out = c.kubectl_as(
        crate::cluster::BOB,
        &[
            "patch",
            "applicationsets.argoproj.io",
            appset,
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            &patch,
        ],
    );
    assert!(!out.success, "bob's edit into prod went through: {out}");
    assert!(
        out.stderr.contains("[prod-appset-changes-through-git]"),
        "{out}"
    );
    let record = c.guardrails.wait_audit(NAMESPACE, appset, |r| {
        r["user"] == crate::cluster::BOB.user && has_action(r, "change-generators")
    });
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert!(
        get(
            "applications.argoproj.io",
            NAMESPACE,
            "e2e-argocd-edit-prod"
        )
        .is_none()
    );
    record::record(
        "applicationset-edit-into-prod",
        "a developer's kubectl edit of an ApplicationSet's generators into prod",
        &[appset, "e2e-argocd-edit-dev"],
    );
}

/// A sync that cannot finish (its PreSync hook is a Job, and no kubelet runs Jobs here), then
/// `argocd app terminate-op`: argocd-server turns the operation's phase to Terminating as itself,
/// Guardrails recognises `terminate`, and the controller ends the operation.
#[test]
fn terminate_of_a_running_sync() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-terminate";
    let repo = argo.repository(name);
    let hook = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: e2e-presync\n  annotations:\n    argocd.argoproj.io/hook: PreSync\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: wait\n          image: registry.example.com/wait:v1\n";
    repo.commit(&[("hooked/hook.yaml", hook.to_string())], "a PreSync hook")
        .unwrap_or_else(|e| panic!("{e}"));
    repo.commit_deployment("hooked", "web-terminate", "registry.example.com/web:v1");
    c.apply_json(&repo.application(name, "hooked", "payments-dev", false));

    argo.cli(ADMIN, &["app", "sync", name, "--async"]).ok();
    argo.wait_app(name, "the sync waiting on its hook", |app| {
        app["status"]["operationState"]["phase"] == "Running"
    });
    argo.cli(BOB, &["app", "terminate-op", name]).ok();
    let app = argo.wait_app(name, "the terminated operation", |app| {
        matches!(
            app["status"]["operationState"]["phase"].as_str(),
            Some("Failed" | "Error")
        )
    });
    assert!(
        app["status"]["operationState"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("terminated")),
        "{app:#}"
    );
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "terminate")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "terminate",
        "argocd app terminate-op of a sync waiting on its PreSync hook",
        &[name],
    );
}

/// A multi-source Application (two paths of the repository) synced by its team's developer: the
/// operation carries `sources` and resolved `revisions`, and Guardrails decides a plain `sync`
/// (not an override) in dev.
#[test]
fn multi_source_sync_by_a_developer_in_dev() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-multi";
    let repo = argo.repository(name);
    repo.commit_deployment("multi-a", "web-multi-a", "registry.example.com/web:v1");
    repo.commit_deployment("multi-b", "web-multi-b", "registry.example.com/web:v1");
    let mut app = repo.application(name, "multi-a", "payments-dev", false);
    let source = app["spec"]["source"].take();
    let mut second = source.clone();
    second["path"] = json!("multi-b");
    app["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("source"));
    app["spec"]["sources"] = json!([source, second]);
    c.apply_json(&app).ok();

    argo.cli(BOB, &["app", "sync", name, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(name, "bob's multi-source sync", |app| synced(app, None));
    let operation = &app["status"]["operationState"]["operation"]["sync"];
    assert!(
        operation["sources"].is_array() || operation["revisions"].is_array(),
        "{app:#}"
    );
    assert!(get("deployments.apps", "payments-dev", "web-multi-b").is_some());
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == ARGOCD_SERVER.user && r["principal"] == BOB.email && has_action(r, "sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(
        record["actions"],
        json!(["sync"]),
        "not an override: {record:#}"
    );
    record::record(
        "multi-source-sync-dev",
        "a developer's argocd app sync of a multi-source dev Application",
        &[name],
    );
}

/// Self-heal: a payments developer's `kubectl set image` of a production Deployment Argo CD manages
/// is denied by `prod-gitops-drift` (kubectl prints Guardrails' message); a platform engineer's is
/// allowed (an incident fix); the application controller, with `selfHeal`, starts an auto-sync and
/// applies Git's state back, allowed as automation.
#[test]
fn self_heal_puts_a_hand_edited_prod_deployment_back() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-heal";
    let repo = argo.repository(name);
    let first = repo.commit_deployment("prod", "web-heal", "registry.example.com/web:v1");
    let mut app = repo.application(name, "prod", "payments-prod", true);
    app["spec"]["syncPolicy"]["automated"]["selfHeal"] = json!(true);
    c.apply_json(&app).ok();
    argo.wait_app(name, "the first auto-sync", |app| synced(app, Some(&first)));
    let set_image = |identity: Identity, image: &str| {
        c.kubectl_as(
            identity,
            &[
                "set",
                "image",
                "deployment/web-heal",
                &format!("web={image}"),
                "-n",
                "payments-prod",
            ],
        )
    };

    // The developer: denied, with the policy and what to do instead.
    let message = set_image(crate::cluster::BOB, "registry.example.com/web:by-hand").denied();
    assert!(message.contains("[prod-gitops-drift]"), "{message}");
    assert!(message.contains("change it in Git"), "{message}");
    let denied = c.guardrails.wait_audit("payments-prod", "web-heal", |r| {
        r["user"] == crate::cluster::BOB.user && has_action(r, "change-image")
    });
    assert_eq!(denied["decision"], "deny", "{denied:#}");
    assert_eq!(matched(&denied), ["prod-gitops-drift"], "{denied:#}");
    let live = get("deployments.apps", "payments-prod", "web-heal").expect("deployed");
    assert_eq!(image(&live), "registry.example.com/web:v1", "{live:#}");

    // The platform engineer: allowed, nothing matches; self-heal then puts Git's image back.
    set_image(PLATFORM, "registry.example.com/web:hand-edited").ok();
    let edit = c.guardrails.wait_audit("payments-prod", "web-heal", |r| {
        r["user"] == PLATFORM.user && has_action(r, "change-image")
    });
    assert_eq!(edit["decision"], "allow", "{edit:#}");
    assert_eq!(matched(&edit), Vec::<String>::new(), "{edit:#}");
    wait_every(
        Duration::from_secs(120),
        Duration::from_millis(500),
        "self-heal to put Git's image back",
        || {
            Ok(get("deployments.apps", "payments-prod", "web-heal")
                .filter(|d| image(d) == "registry.example.com/web:v1")
                .map(|_| ()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", argo.logs()));
    let heal = c.guardrails.wait_audit("payments-prod", "web-heal", |r| {
        r["user"] == APP_CONTROLLER.user && has_action(r, "change-image")
    });
    assert_eq!(heal["decision"], "allow", "{heal:#}");
    record::record(
        "self-heal-prod",
        "the application controller self-healing a hand-edited prod Deployment",
        &[name, "web-heal"],
    );
}

/// Argo CD creating the destination namespace itself (`CreateNamespace=true` with
/// `managedNamespaceMetadata` carrying the trust labels): the application controller's Namespace
/// CREATE sets them, Guardrails decides a `relabel` by automation and allows it.
#[test]
fn controller_created_namespace_with_trust_labels_is_allowed() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-ns";
    let namespace = "e2e-argocd-created";
    let mut app = argo.repo.application(name, "dev", namespace, false);
    app["spec"]["syncPolicy"] = json!({
        "syncOptions": ["CreateNamespace=true"],
        "managedNamespaceMetadata": {"labels": {
            "guardrails.io/team": "payments",
            "guardrails.io/environment": "dev",
        }},
    });
    c.apply_json(&app).ok();
    argo.cli(ADMIN, &["app", "sync", name, "--timeout", "120"])
        .ok();
    argo.wait_app(name, "the sync that creates the namespace", |app| {
        synced(app, None)
    });
    let created = get("namespace", "", namespace).expect("Argo CD created the namespace");
    assert_eq!(
        created["metadata"]["labels"]["guardrails.io/team"], "payments",
        "{created:#}"
    );
    let record = c.guardrails.wait_audit(namespace, namespace, |r| {
        r["kind"] == "Namespace" && r["user"] == APP_CONTROLLER.user
    });
    assert_eq!(record["actions"], json!(["relabel"]), "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "controller-creates-namespace",
        "the application controller creating a destination namespace with managedNamespaceMetadata labels",
        &[name, namespace],
    );
}

/// The policies that matched a request, by `@id`, sorted.
fn matched(record: &Value) -> Vec<String> {
    let mut policies: Vec<String> = record["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["policy"].as_str().map(str::to_string))
        .collect();
    policies.sort();
    policies.dedup();
    policies
}

fn restarted_at(deployment: &Value) -> Option<&str> {
    deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        .as_str()
}

/// `argocd app actions run <app> restart --kind Deployment --resource-name <name>`: argocd-server
/// runs the Deployment's built-in Lua action (`resource_customizations/apps/Deployment/actions/
/// restart/action.lua`: `kubectl.kubernetes.io/restartedAt` in the pod template) and merge-patches
/// the difference as itself (`server/application/application.go`, `RunResourceActionV2` then
/// `patchResource`). The chart routes the Deployment write to Guardrails, which decides a `restart`
/// by argocd-server naming nobody: allowed in dev; in prod denied by `prod-gitops-drift` for the
/// developer and the platform engineer alike (the write cannot say who asked), with Guardrails'
/// message in the CLI's output. The platform engineer's own `kubectl rollout restart` of the same
/// Deployment is allowed; the developer's is denied.
#[test]
fn resource_action_restart_is_decided_as_argocd_server() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let (prod, dev, deployment) = (
        "e2e-argocd-action-prod",
        "e2e-argocd-action-dev",
        "web-action",
    );
    let repo = argo.repository("e2e-argocd-action");
    repo.commit_deployment("prod", deployment, "registry.example.com/web:v1");
    repo.commit_deployment("dev", deployment, "registry.example.com/web:v1");
    c.apply_json(&repo.application(prod, "prod", "payments-prod", false));
    c.apply_json(&repo.application(dev, "dev", "payments-dev", false));
    for name in [prod, dev] {
        argo.cli(ADMIN, &["app", "sync", name, "--timeout", "120"])
            .ok();
        argo.wait_app(name, "the platform engineer's sync", |app| {
            synced(app, None)
        });
    }
    let restart = |person: Person, app: &str| {
        argo.cli(
            person,
            &[
                "app",
                "actions",
                "run",
                app,
                "restart",
                "--kind",
                "Deployment",
                "--resource-name",
                deployment,
            ],
        )
    };
    let restarts = |namespace: &str| -> Vec<Value> {
        c.guardrails
            .audit_for(namespace, deployment)
            .into_iter()
            .filter(|r| r["user"] == ARGOCD_SERVER.user && has_action(r, "restart"))
            .collect()
    };
    let refused = |out: &Output| {
        assert!(!out.success, "the resource action went through: {out}");
        let printed = format!("{}{}", out.stdout, out.stderr);
        assert!(printed.contains("Guardrails denied"), "{out}");
        assert!(printed.contains("[prod-gitops-drift]"), "{out}");
        assert!(printed.contains("change it in Git"), "{out}");
    };

    // The developer, on prod: argocd-server's write names nobody; the drift policy refuses it and
    // the CLI prints why.
    refused(&restart(BOB, prod));
    let live = get("deployments.apps", "payments-prod", deployment).expect("deployed");
    assert_eq!(restarted_at(&live), None, "{live:#}");
    let record = c.guardrails.wait_audit("payments-prod", deployment, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "restart")
    });
    assert_eq!(record["actions"], json!(["restart"]), "{record:#}");
    assert_eq!(record["principal"], ARGOCD_SERVER.user, "{record:#}");
    assert!(record["delegator"].is_null(), "no person named: {record:#}");
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert_eq!(matched(&record), ["prod-gitops-drift"], "{record:#}");

    // The developer, on dev: allowed, nothing matches.
    restart(BOB, dev).ok();
    let live = get("deployments.apps", "payments-dev", deployment).expect("deployed");
    assert!(restarted_at(&live).is_some(), "{live:#}");
    let record = c.guardrails.wait_audit("payments-dev", deployment, |r| {
        r["user"] == ARGOCD_SERVER.user && has_action(r, "restart")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(matched(&record), Vec::<String>::new(), "{record:#}");

    // The platform engineer, on prod through argocd-server: the same write, the same denial.
    refused(&restart(ADMIN, prod));
    let records = wait_every(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "the second restart's audit line",
        || Ok(Some(restarts("payments-prod")).filter(|r| r.len() >= 2)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for record in &records {
        assert_eq!(record["principal"], ARGOCD_SERVER.user, "{record:#}");
        assert_eq!(record["decision"], "deny", "{record:#}");
    }
    let live = get("deployments.apps", "payments-prod", deployment).expect("deployed");
    assert_eq!(restarted_at(&live), None, "{live:#}");

    // With kubectl, as themselves: the developer's restart is denied, the platform engineer's
    // (an incident) goes through.
    let kubectl_restart = |identity: Identity| {
        c.kubectl_as(
            identity,
            &[
                "rollout",
                "restart",
                &format!("deployment/{deployment}"),
                "-n",
                "payments-prod",
            ],
        )
    };
    let message = kubectl_restart(crate::cluster::BOB).denied();
    assert!(message.contains("[prod-gitops-drift]"), "{message}");
    kubectl_restart(PLATFORM).ok();
    let live = get("deployments.apps", "payments-prod", deployment).expect("deployed");
    assert!(restarted_at(&live).is_some(), "{live:#}");
    let record = c.guardrails.wait_audit("payments-prod", deployment, |r| {
        r["user"] == PLATFORM.user && has_action(r, "restart")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    assert_eq!(matched(&record), Vec::<String>::new(), "{record:#}");
    record::record(
        "resource-action-restart",
        "argocd app actions run restart on a Deployment of a prod and a dev Application, and kubectl rollout restart of the prod one",
        &[prod, dev, deployment],
    );
}

/// A Helm chart in Git: the repo server renders it with `helm template` (the e2e components'
/// Helm on its PATH) with the Application's parameters. Auto-sync of a dev Application deploys the
/// rendered Deployment (allowed, automation); a developer's sync of a prod one is denied.
#[test]
fn helm_source_renders_and_syncs() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let (dev, prod) = ("e2e-argocd-helm-dev", "e2e-argocd-helm-prod");
    let repo = argo.repository("e2e-argocd-helm");
    let template = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Values.name }}
  labels:
    app: {{ .Values.name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Values.name }}
  template:
    metadata:
      labels:
        app: {{ .Values.name }}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
";
    let commit = repo
        .commit(
            &[
                (
                    "chart/Chart.yaml",
                    "apiVersion: v2\nname: web-helm\nversion: 0.1.0\n".to_string(),
                ),
                (
                    "chart/values.yaml",
                    "name: web-helm\nimage: registry.example.com/web:helm-v1\nreplicas: 1\n"
                        .to_string(),
                ),
                ("chart/templates/deployment.yaml", template.to_string()),
            ],
            "a Helm chart",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let helm_app = |name: &str, destination: &str, auto: bool| {
        let mut app = repo.application(name, "chart", destination, auto);
        app["spec"]["source"]["helm"] = json!({
            "parameters": [{"name": "replicas", "value": "2"}],
            "valuesObject": {"name": format!("web-{name}")},
        });
        app
    };

    c.apply_json(&helm_app(dev, "payments-dev", true));
    let app = argo.wait_app(dev, "the Helm app's auto-sync", |app| {
        synced(app, Some(&commit))
    });
    assert_eq!(app["status"]["sourceType"], "Helm", "{app:#}");
    let deployment = get("deployments.apps", "payments-dev", &format!("web-{dev}"))
        .unwrap_or_else(|| panic!("not deployed: {app:#}\n{}", argo.logs()));
    assert_eq!(deployment["spec"]["replicas"], 2, "{deployment:#}");
    assert_eq!(image(&deployment), "registry.example.com/web:helm-v1");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/instance"], dev,
        "Helm's release is the Application: {deployment:#}"
    );
    let record = c.guardrails.wait_audit(NAMESPACE, dev, |r| {
        r["user"] == APP_CONTROLLER.user && has_action(r, "auto-sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");
    let record = c
        .guardrails
        .wait_audit("payments-dev", &format!("web-{dev}"), |r| {
            r["user"] == APP_CONTROLLER.user && r["operation"] == "CREATE"
        });
    assert_eq!(record["decision"], "allow", "{record:#}");

    c.apply_json(&helm_app(prod, "payments-prod", false));
    argo.wait_app(prod, "the first reconcile", |app| {
        app["status"]["sourceType"] == "Helm"
    });
    let out = argo.cli(BOB, &["app", "sync", prod, "--timeout", "120"]);
    assert!(
        !out.success,
        "bob's sync of a prod Helm app went through: {out}"
    );
    assert!(out.stderr.contains("[prod-sync-platform-only]"), "{out}");
    let record = c.guardrails.wait_audit(NAMESPACE, prod, |r| {
        r["principal"] == BOB.email && has_action(r, "sync")
    });
    assert_eq!(
        record["actions"],
        json!(["sync"]),
        "not an override: {record:#}"
    );
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert!(get("deployments.apps", "payments-prod", &format!("web-{prod}")).is_none());
    record::record(
        "helm-source",
        "a Helm chart in Git: auto-sync of a dev Application, a developer's sync of a prod one",
        &[dev, prod, &format!("web-{dev}"), &format!("web-{prod}")],
    );
}

/// `argocd app sync` with options (`--server-side`, `--apply-out-of-sync-only`, `--replace`): the
/// CLI sends them as `syncOptions` and argocd-server writes them into the operation
/// (`server/application/application.go`, `Sync`; without any, it copies the Application's
/// `spec.syncPolicy.syncOptions`). Guardrails carries them in `context.sync.syncOptions`; none is a
/// force (`Replace=true` is not `syncStrategy.*.force`), so a developer's dev sync with them is
/// allowed, their prod sync is denied by `prod-sync-platform-only` alone, and the platform
/// engineer's goes through. `Force=true` among them is not a force either: Argo CD replaces the
/// Deployment in place; only `--force` (`syncStrategy.hook.force`) with `--replace` deletes and
/// re-creates it.
#[test]
fn sync_with_options() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let (dev, prod) = ("e2e-argocd-options-dev", "e2e-argocd-options-prod");
    let repo = argo.repository("e2e-argocd-options");
    repo.commit_deployment("dev", "web-options", "registry.example.com/web:v1");
    repo.commit_deployment("prod", "web-options", "registry.example.com/web:v1");
    c.apply_json(&repo.application(dev, "dev", "payments-dev", false));
    c.apply_json(&repo.application(prod, "prod", "payments-prod", false));

    argo.cli(
        BOB,
        &[
            "app",
            "sync",
            dev,
            "--server-side",
            "--apply-out-of-sync-only",
            "--timeout",
            "120",
        ],
    )
    .ok();
    let app = argo.wait_app(dev, "bob's sync with options", |app| synced(app, None));
    let sync = &app["status"]["operationState"]["operation"]["sync"];
    assert_eq!(
        sync["syncOptions"],
        json!(["ServerSideApply=true", "ApplyOutOfSyncOnly=true"]),
        "{app:#}"
    );
    let deployment = c
        .kubectl(&[
            "get",
            "deployments.apps",
            "web-options",
            "-n",
            "payments-dev",
            "--show-managed-fields",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert!(
        deployment["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["operation"] == "Apply"),
        "applied server-side: {deployment:#}"
    );
    let record = c.guardrails.wait_audit(NAMESPACE, dev, |r| {
        r["principal"] == BOB.email && has_action(r, "sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");

    let out = argo.cli(BOB, &["app", "sync", prod, "--replace", "--timeout", "120"]);
    assert!(
        !out.success,
        "bob's replace sync of prod went through: {out}"
    );
    assert!(out.stderr.contains("[prod-sync-platform-only]"), "{out}");
    let record = c.guardrails.wait_audit(NAMESPACE, prod, |r| {
        r["principal"] == BOB.email && has_action(r, "sync")
    });
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert_eq!(
        matched(&record),
        ["prod-sync-platform-only"],
        "Replace=true is not a force: {record:#}"
    );

    argo.cli(
        ADMIN,
        &["app", "sync", prod, "--replace", "--timeout", "120"],
    )
    .ok();
    let app = argo.wait_app(prod, "the platform engineer's replace sync", |app| {
        synced(app, None)
    });
    assert_eq!(
        app["status"]["operationState"]["operation"]["sync"]["syncOptions"],
        json!(["Replace=true"]),
        "{app:#}"
    );
    assert!(get("deployments.apps", "payments-prod", "web-options").is_some());
    let record = c.guardrails.wait_audit(NAMESPACE, prod, |r| {
        r["principal"] == ADMIN.email && has_action(r, "sync")
    });
    assert_eq!(record["decision"], "allow", "{record:#}");

    // `Force=true` as a sync option forces nothing: Argo CD reads it only from a resource's own
    // `argocd.argoproj.io/sync-options` annotation. In the Application's sync options (argocd-server
    // copies them into an operation that names none), with `Replace=true`, the sync replaces the
    // Deployment in place (the same uid); the developer's sync is a plain prod sync to Guardrails.
    let uid = || {
        get("deployments.apps", "payments-prod", "web-options").expect("deployed")["metadata"]
            ["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let before = uid();
    c.kubectl_as(
        PLATFORM,
        &[
            "patch",
            "applications.argoproj.io",
            prod,
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"syncPolicy":{"syncOptions":["Replace=true","Force=true"]}}}"#,
        ],
    )
    .ok();
    let bob_syncs = || -> Vec<Value> {
        c.guardrails
            .audit_for(NAMESPACE, prod)
            .into_iter()
            .filter(|r| r["principal"] == BOB.email && has_action(r, "sync"))
            .collect()
    };
    let earlier = bob_syncs().len();
    let out = argo.cli(BOB, &["app", "sync", prod, "--timeout", "120"]);
    assert!(!out.success, "bob's sync of prod went through: {out}");
    assert!(out.stderr.contains("[prod-sync-platform-only]"), "{out}");
    let record = wait_every(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "bob's second prod sync's audit line",
        || Ok(bob_syncs().into_iter().nth(earlier)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record["decision"], "deny", "{record:#}");
    assert_eq!(
        matched(&record),
        ["prod-sync-platform-only"],
        "Force=true among the sync options is not a force: {record:#}"
    );
    argo.cli(ADMIN, &["app", "sync", prod, "--timeout", "120"])
        .ok();
    let app = argo.wait_app(prod, "the sync with Force=true among its options", |app| {
        synced(app, None)
            && app["status"]["operationState"]["operation"]["sync"]["syncOptions"]
                == json!(["Replace=true", "Force=true"])
    });
    assert_eq!(
        app["status"]["operationState"]["operation"]["sync"]["syncStrategy"]["hook"]["force"],
        Value::Null,
        "{app:#}"
    );
    assert_eq!(
        uid(),
        before,
        "replaced in place, not deleted and re-created"
    );

    // `--force` (syncStrategy.hook.force) with `--replace`: `kubectl replace --force` deletes and
    // re-creates the Deployment (a new uid), as automation.
    argo.cli(
        ADMIN,
        &[
            "app",
            "sync",
            prod,
            "--replace",
            "--force",
            "--timeout",
            "120",
        ],
    )
    .ok();
    argo.wait_app(prod, "the forced replace sync", |app| {
        synced(app, None)
            && app["status"]["operationState"]["operation"]["sync"]["syncStrategy"]["hook"]["force"]
                == true
    });
    assert_ne!(uid(), before, "deleted and re-created");
    let deleted = c
        .guardrails
        .wait_audit("payments-prod", "web-options", |r| {
            r["operation"] == "DELETE"
        });
    assert_eq!(deleted["user"], APP_CONTROLLER.user, "{deleted:#}");
    assert_eq!(deleted["decision"], "allow", "{deleted:#}");
    record::record(
        "sync-options",
        "argocd app sync --server-side --apply-out-of-sync-only of dev, --replace of prod",
        &[dev, prod, "web-options"],
    );
}

/// A loopback HTTP listener standing in for a webhook receiver: answers every request 200 and
/// hands over each request's body.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().expect("its address").to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = (&stream)
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if sender
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (address, receiver)
}

/// The notifications controller (the same multi-call binary, as its own service account): a
/// trigger on a succeeded sync, a webhook service on a loopback listener, an Application subscribed
/// by annotation. After the auto-sync it calls the webhook and records what it sent in the
/// `notified.notifications.argoproj.io` annotation (notifications-engine's
/// `pkg/controller/controller.go`, `processResource`: a merge patch of the annotations), which
/// Guardrails decides as `bookkeeping` by automation: allowed.
#[test]
fn notifications_of_a_sync_are_bookkeeping() {
    let _shared = shared();
    let c = cluster();
    let argo = argocd();
    let name = "e2e-argocd-notify";
    let (address, received) = webhook_receiver();
    c.apply_json(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-notifications-cm", "namespace": NAMESPACE},
        "data": {
            "service.webhook.e2e": format!("url: http://{address}\nheaders:\n- name: Content-Type\n  value: application/json\n"),
            "template.e2e-sync-succeeded": "webhook:\n  e2e:\n    method: POST\n    body: |\n      {\"app\": \"{{.app.metadata.name}}\", \"phase\": \"{{.app.status.operationState.phase}}\"}\n",
            "trigger.on-sync-succeeded": "- when: app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']\n  send: [e2e-sync-succeeded]\n",
        },
    }))
    .ok();
    let repo = argo.repository(name);
    repo.commit_deployment("dev", "web-notify", "registry.example.com/web:v1");
    let mut app = repo.application(name, "dev", "payments-dev", true);
    app["metadata"]["annotations"] =
        json!({"notifications.argoproj.io/subscribe.on-sync-succeeded.e2e": ""});
    c.apply_json(&app).ok();
    argo.wait_app(name, "the auto-sync", |app| synced(app, None));

    let body = received
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("no notification ({e})\n{}", argo.logs()));
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(body, json!({"app": name, "phase": "Succeeded"}));
    let app = argo.wait_app(name, "the notified annotation", |app| {
        app["metadata"]["annotations"]["notified.notifications.argoproj.io"].is_string()
    });
    let notified = &app["metadata"]["annotations"]["notified.notifications.argoproj.io"];
    assert!(
        notified
            .as_str()
            .is_some_and(|n| n.contains("on-sync-succeeded")),
        "{app:#}"
    );
    let record = c.guardrails.wait_audit(NAMESPACE, name, |r| {
        r["user"] == NOTIFICATIONS_CONTROLLER.user
    });
    assert_eq!(record["actions"], json!(["bookkeeping"]), "{record:#}");
    assert_eq!(record["decision"], "allow", "{record:#}");
    record::record(
        "notifications",
        "the notifications controller recording a sent notification on an auto-synced Application",
        &[name],
    );
}
