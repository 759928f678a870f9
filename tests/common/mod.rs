//! Shared test helpers: fixtures from `tests/fixtures` (see its SOURCES.md) and AdmissionReview
//! bodies built around them the way the API server sends them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use guardrails::config::Config;
use guardrails::decide::Engine;
use guardrails::policy::PolicyStore;
use serde_json::{Value, json};

pub const PAYMENTS_DEV: (&str, &[&str]) = (
    "bob@example.com",
    &["payments-devs", "system:authenticated"],
);
pub const STOREFRONT_DEV: (&str, &[&str]) = ("dana@example.com", &["system:authenticated"]);
pub const PLATFORM: (&str, &[&str]) = ("admin@example.com", &["system:authenticated"]);
pub const ARGOCD_SERVER: (&str, &[&str]) = (
    "system:serviceaccount:argocd:argocd-server",
    &["system:serviceaccounts", "system:serviceaccounts:argocd"],
);
pub const CONTROLLER: (&str, &[&str]) = (
    "system:serviceaccount:argocd:argocd-application-controller",
    &["system:serviceaccounts", "system:serviceaccounts:argocd"],
);

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Load a YAML or JSON fixture as JSON (the first document of a multi-document YAML file).
pub fn fixture(relative: &str) -> Value {
    fixture_docs(relative).into_iter().next().unwrap()
}

/// Every document in a fixture.
pub fn fixture_docs(relative: &str) -> Vec<Value> {
    use serde::Deserialize;
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if relative.ends_with(".json") {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Copy the shipped policy directory (schema, policies, their tests and manifests) into `dir`.
pub fn copy_policies(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(dir.join("tests/manifests")).unwrap();
    for sub in ["", "tests", "tests/manifests"] {
        for entry in std::fs::read_dir(shipped.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// A copy of the shipped policy directory with one more file (`name` relative to it).
pub fn policies_with(name: &str, contents: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_policies(dir.path());
    std::fs::write(dir.path().join(name), contents).unwrap();
    dir
}

pub fn engine() -> Engine {
    Engine::new(
        PolicyStore::embedded().unwrap(),
        Config::embedded().unwrap(),
        None,
    )
}

/// Set `pointer` in `value`, creating objects on the way (`null` removes the key).
pub fn set(value: &mut Value, pointer: &str, new: Value) {
    let mut current = value;
    let segments: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = segments.split_last().unwrap();
    for segment in parents {
        if let Some(index) = current
            .is_array()
            .then(|| segment.parse::<usize>().unwrap())
        {
            current = &mut current[index];
            continue;
        }
        if !current
            .get(segment.as_str())
            .is_some_and(|v| v.is_object() || v.is_array())
        {
            current[segment.as_str()] = json!({});
        }
        current = current.get_mut(segment.as_str()).unwrap();
    }
    if let Some(list) = current.as_array_mut() {
        list[last.parse::<usize>().unwrap()] = new;
    } else if new.is_null() {
        current.as_object_mut().unwrap().remove(last.as_str());
    } else {
        current[last.as_str()] = new;
    }
}

pub fn with(mut value: Value, changes: &[(&str, Value)]) -> Value {
    for (pointer, new) in changes {
        set(&mut value, pointer, new.clone());
    }
    value
}

/// An AdmissionReview v1 as the API server would send it.
#[derive(Clone)]
pub struct Review {
    pub request: Value,
}

impl Review {
    pub fn new(operation: &str, object: Option<&Value>, old: Option<&Value>) -> Self {
        let source = object.or(old).expect("object or oldObject");
        let api_version = source["apiVersion"].as_str().unwrap_or("v1");
        let kind = source["kind"].as_str().unwrap_or("");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = match kind {
            "Application" => "applications",
            "Rollout" => "rollouts",
            "Deployment" => "deployments",
            "Pod" => "pods",
            "Scale" => "deployments",
            other => panic!("no resource for {other}"),
        };
        let name = source["metadata"]["name"].as_str().unwrap_or("");
        let namespace = source["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        Self {
            request: json!({
                "uid": format!("uid-{operation}-{name}"),
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": resource},
                "name": name,
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "nobody", "groups": []},
                "object": object.cloned().unwrap_or(Value::Null),
                "oldObject": old.cloned().unwrap_or(Value::Null),
                "dryRun": false,
            }),
        }
    }

    pub fn create(object: &Value) -> Self {
        Self::new("CREATE", Some(object), None)
    }

    pub fn update(old: &Value, new: &Value) -> Self {
        Self::new("UPDATE", Some(new), Some(old))
    }

    pub fn delete(old: &Value) -> Self {
        Self::new("DELETE", None, Some(old))
    }

    pub fn by(mut self, (user, groups): (&str, &[&str])) -> Self {
        self.request["userInfo"] = json!({"username": user, "groups": groups});
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.request["uid"] = json!(uid);
        self
    }

    pub fn dry_run(mut self) -> Self {
        self.request["dryRun"] = json!(true);
        self
    }

    pub fn sub_resource(mut self, sub: &str) -> Self {
        self.request["subResource"] = json!(sub);
        self
    }

    pub fn json(&self) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": self.request})
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json()).unwrap()
    }
}

/// A bare `request` stanza from the fixtures, wrapped as SOURCES.md says.
pub fn wrap_request(request: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})).unwrap()
}

/// The base Application used by the table tests: a real one, pointed at `namespace`.
pub fn app_to(namespace: &str) -> Value {
    with(
        fixture("argocd/applications/gitops-operator-nginx-app-any-namespace.yaml"),
        &[
            ("/metadata/namespace", json!("argocd")),
            ("/spec/destination/namespace", json!(namespace)),
            ("/spec/syncPolicy", Value::Null),
            (
                "/status",
                json!({"history": [
                    {"id": 1, "revision": "1111111111111111111111111111111111111111"},
                    {"id": 2, "revision": "2222222222222222222222222222222222222222"}
                ]}),
            ),
        ],
    )
}

/// `app` with a sync operation started, optionally claiming an initiator.
pub fn syncing(app: &Value, sync: Value, initiated_by: Value) -> Value {
    with(
        app.clone(),
        &[(
            "/operation",
            json!({"sync": sync, "initiatedBy": initiated_by}),
        )],
    )
}

/// Run a command that must succeed and return its stdout.
pub trait SucceedsExt {
    fn succeeds(&mut self) -> Vec<u8>;
}

impl SucceedsExt for assert_cmd::Command {
    fn succeeds(&mut self) -> Vec<u8> {
        self.assert().success().get_output().stdout.clone()
    }
}

/// Trust anchors from the CA certificates in `ca_pem` (PEM, one or more).
pub fn tls_roots(ca_pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A TLS client (ring, TLS 1.2/1.3, no client certificate) that trusts the CAs in `ca_pem`; no
/// ALPN protocol set.
pub fn tls_client_config(ca_pem: &str) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(tls_roots(ca_pem))
    .with_no_client_auth()
}

/// The fidelity corpus (`tests/fixtures/argo-writes/`) and its expectations (`cases.yaml`), read
/// by `tests/fidelity.rs` and the e2e suite.
pub mod process;

pub mod corpus {
    use std::path::PathBuf;

    use serde::Deserialize;

    pub fn dir() -> PathBuf {
        super::fixtures_dir().join("argo-writes")
    }

    #[derive(Deserialize)]
    struct Cases {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    pub struct Case {
        pub name: String,
        pub review: PathBuf,
        pub expect: Expect,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Expect {
        pub allowed: bool,
        pub actions: Vec<String>,
        pub policies: Vec<String>,
        #[serde(default)]
        pub no_warnings: bool,
    }

    pub fn cases() -> Vec<Case> {
        let text = std::fs::read_to_string(dir().join("cases.yaml")).expect("cases.yaml");
        serde_yaml_ng::from_str::<Cases>(&text)
            .expect("cases.yaml parses")
            .cases
    }
}
