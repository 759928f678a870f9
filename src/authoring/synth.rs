//! Synthetic AdmissionReviews from manifests, as the API server would build them: for
//! `guardrails eval -f` (a kubectl-style dry run) and policy test files.

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SynthError {
    #[error("a {0} request needs {1}")]
    Missing(&'static str, &'static str),
    #[error("unknown operation {0:?}: expected CREATE, UPDATE or DELETE")]
    Operation(String),
    #[error("the manifest has no {0}")]
    Field(&'static str),
    #[error("unsupported subresource {0:?}: expected scale or status")]
    SubResource(String),
}

/// What a person would type: the manifests, who they are, and how they ask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synthetic {
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub operation: String,
    pub user: String,
    pub groups: Vec<String>,
    pub sub_resource: Option<String>,
    /// The delegator (e.g. argocd-server) that sends the request on the user's behalf.
    pub delegated_by: Option<String>,
    pub dry_run: bool,
    pub uid: String,
}

/// (group, version, plural resource) for a manifest's apiVersion and kind.
pub fn resource_of(api_version: &str, kind: &str) -> (String, String, String) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Application" => "applications".to_string(),
        "Rollout" => "rollouts".to_string(),
        "Deployment" => "deployments".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    (group.to_string(), version.to_string(), plural)
}

fn as_scale(manifest: &Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": manifest.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": manifest.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
        },
        "spec": {"replicas": manifest.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
    })
}

/// What a manifest names: its apiVersion and kind, and where it lives.
struct Target {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
}

impl Target {
    fn of(manifest: &Value) -> Result<Self, SynthError> {
        let field = |pointer: &str, name: &'static str| {
            manifest
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(SynthError::Field(name))
        };
        let kind = field("/kind", "kind")?;
        let name = field("/metadata/name", "metadata.name")?;
        // The API server puts a Namespace's own name in the request's `namespace`, for every
        // operation (kubernetes/kubernetes#95012).
        let namespace =
            if kind == "Namespace" && manifest.pointer("/apiVersion") == Some(&json!("v1")) {
                name.clone()
            } else {
                field("/metadata/namespace", "").unwrap_or_else(|_| "default".into())
            };
        Ok(Self {
            api_version: field("/apiVersion", "apiVersion")?,
            kind,
            name,
            namespace,
        })
    }
}

impl Synthetic {
    /// Build the AdmissionReview v1 JSON.
    pub fn admission_review(&self) -> Result<Value, SynthError> {
        let operation = self.operation.to_uppercase();
        let (object, old_object) = self.objects(&operation)?;
        let source = object
            .as_ref()
            .or(old_object.as_ref())
            .ok_or(SynthError::Field("object"))?;
        let target = Target::of(source)?;
        let (group, version, resource) = resource_of(&target.api_version, &target.kind);
        let mut request_kind = json!({"group": group, "version": version, "kind": target.kind});

        let (mut object, mut old_object) = (object, old_object);
        match self.sub_resource.as_deref() {
            None | Some("") | Some("status") => {}
            Some("scale") => {
                object = object.as_ref().map(as_scale);
                old_object = old_object.as_ref().map(as_scale);
                request_kind = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            }
            Some(other) => return Err(SynthError::SubResource(other.to_string())),
        }

        let (username, groups) = self.sender(object.as_mut());
        let mut request = json!({
            "uid": self.uid,
            "kind": request_kind,
            "resource": {"group": group, "version": version, "resource": resource},
            "name": target.name,
            "namespace": target.namespace,
            "operation": operation,
            "userInfo": {"username": username, "groups": groups},
            "object": object.unwrap_or(Value::Null),
            "oldObject": old_object.unwrap_or(Value::Null),
            "dryRun": self.dry_run,
        });
        if let Some(sub) = self.sub_resource.as_deref().filter(|s| !s.is_empty()) {
            request["subResource"] = json!(sub);
        }
        Ok(
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
        )
    }

    /// The object and old object a request with `operation` carries.
    fn objects(&self, operation: &str) -> Result<(Option<Value>, Option<Value>), SynthError> {
        Ok(match operation {
            "CREATE" => (
                Some(
                    self.object
                        .clone()
                        .ok_or(SynthError::Missing("CREATE", "an object"))?,
                ),
                None,
            ),
            "UPDATE" => (
                Some(
                    self.object
                        .clone()
                        .ok_or(SynthError::Missing("UPDATE", "an object"))?,
                ),
                Some(
                    self.old_object
                        .clone()
                        .ok_or(SynthError::Missing("UPDATE", "an old object"))?,
                ),
            ),
            "DELETE" => (
                None,
                Some(
                    self.old_object
                        .clone()
                        .or_else(|| self.object.clone())
                        .ok_or(SynthError::Missing("DELETE", "an object"))?,
                ),
            ),
            other => return Err(SynthError::Operation(other.to_string())),
        })
    }

    /// The user name and groups the API server would report: the person's, or the delegator's
    /// when one sends the request (the person then named in the operation it starts).
    fn sender(&self, object: Option<&mut Value>) -> (String, Vec<String>) {
        let mut username = self.user.clone();
        let mut groups = self.groups.clone();
        if let Some(delegator) = &self.delegated_by {
            // The delegator sends the request; the person travels in the operation it starts.
            if let Some(operation) = object.and_then(|o| o.get_mut("operation"))
                && operation.is_object()
            {
                operation["initiatedBy"] = json!({"username": self.user});
            }
            username = delegator.clone();
            groups = vec!["system:serviceaccounts".to_string()];
        }
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".to_string());
        }
        (username, groups)
    }
}

#[cfg(test)]
#[path = "../unit_tests/synth_tests.rs"]
mod tests;

/// Read a YAML or JSON manifest (the first document of a multi-document file).
pub fn read_manifest(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    read_manifests(path)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} holds no manifest", path.display()))
}

/// Every document of a YAML or JSON file (`---`-separated), empty documents left out; a
/// `List`'s items stand for themselves.
pub fn read_manifests(path: &std::path::Path) -> anyhow::Result<Vec<serde_json::Value>> {
    use anyhow::Context;
    use serde::Deserialize;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    let mut manifests = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = serde_json::Value::deserialize(document).with_context(|| {
            format!(
                "{} (document {}) is not valid YAML or JSON",
                path.display(),
                index + 1
            )
        })?;
        match value.get("items").and_then(serde_json::Value::as_array) {
            Some(items)
                if value
                    .get("kind")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                manifests.extend(items.iter().cloned())
            }
            _ if value.is_null() => {}
            _ => manifests.push(value),
        }
    }
    Ok(manifests)
}
