//! AdmissionReview bodies built the way the API server sends them, by the users of the example
//! config.

use serde_json::{Value, json};

/// Who makes a request: the people and service accounts of the shipped example config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// bob, in team `payments` by group (and by name, for requests argocd-server makes for him).
    PaymentsDev,
    /// dana, in team `storefront` by name only.
    StorefrontDev,
    /// A platform engineer, in team `platform` by name.
    Platform,
    /// argocd-server, which acts for the users of the Argo CD UI and CLI.
    ArgocdServer,
    /// The Argo CD application controller.
    Controller,
}

/// Each user's name and groups as the API server sends them. A table, not a `match`: every
/// variant is constructed here, so a test binary that never names some user compiles this
/// module without dead code.
const USERS: &[(User, &str, &[&str])] = &[
    (
        User::PaymentsDev,
        "bob@example.com",
        &["payments-devs", "system:authenticated"],
    ),
    (
        User::StorefrontDev,
        "dana@example.com",
        &["system:authenticated"],
    ),
    (
        User::Platform,
        "admin@example.com",
        &["system:authenticated"],
    ),
    (
        User::ArgocdServer,
        "system:serviceaccount:argocd:argocd-server",
        &["system:serviceaccounts", "system:serviceaccounts:argocd"],
    ),
    (
        User::Controller,
        "system:serviceaccount:argocd:argocd-application-controller",
        &["system:serviceaccounts", "system:serviceaccounts:argocd"],
    ),
];

impl User {
    /// The user name the API server sends.
    pub fn name(self) -> &'static str {
        self.entry().0
    }

    /// The groups the API server sends.
    pub fn groups(self) -> &'static [&'static str] {
        self.entry().1
    }

    fn entry(self) -> (&'static str, &'static [&'static str]) {
        let (_, name, groups) = USERS
            .iter()
            .find(|(known, _, _)| *known == self)
            .expect("every user is in the table");
        (name, groups)
    }
}

/// Who makes a request: a [`User`], or anyone as `(name, groups)`.
pub trait Requester {
    fn identity(&self) -> (&str, &[&str]);
}

impl Requester for User {
    fn identity(&self) -> (&str, &[&str]) {
        (self.name(), self.groups())
    }
}

impl Requester for (&str, &[&str]) {
    fn identity(&self) -> (&str, &[&str]) {
        (self.0, self.1)
    }
}

impl<const N: usize> Requester for (&str, &[&str; N]) {
    fn identity(&self) -> (&str, &[&str]) {
        (self.0, self.1)
    }
}

/// An AdmissionReview v1 as the API server would send it.
#[derive(Clone)]
pub struct Review {
    pub request: Value,
}

impl Review {
    /// `operation` (CREATE, UPDATE, DELETE, CONNECT) of `object` (none for DELETE), which was
    /// `old` (none for CREATE), by nobody in particular.
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

    pub fn update(old: &Value, new: &Value) -> Self {
        Self::new("UPDATE", Some(new), Some(old))
    }

    /// Made by `who`.
    pub fn by(self, who: impl Requester) -> Self {
        let (name, groups) = who.identity();
        self.set("userInfo", json!({"username": name, "groups": groups}))
    }

    /// Set a field of the request (`uid`, `dryRun`, `subResource`, …).
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.request[field] = value.into();
        self
    }

    pub fn json(&self) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": self.request})
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json()).unwrap()
    }
}
