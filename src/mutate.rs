//! Mutation: keep Argo CD's record of who started an operation honest, and optionally stamp the
//! owning team label on create. Pure: (request, config, live namespaces) -> JSON patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, Operation};
use serde_json::{Value, json};

use crate::admission::{self, EnvelopeError, Request};
use crate::cluster::NamespaceLabels;
use crate::config::Config;
use crate::entities;
use crate::vocabulary::Kind;

fn pointer(segments: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(segments.iter().copied())
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(path),
        value,
    })
}

fn replace(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: pointer(path),
        value,
    })
}

/// The patch for `request`; empty when nothing needs to change (so re-invocation is a no-op).
pub fn mutations(
    request: &Request,
    config: &Config,
    live: &NamespaceLabels,
) -> Vec<PatchOperation> {
    let Some(kind) = Kind::from_resource(&request.resource.group, &request.resource.resource)
    else {
        return Vec::new();
    };
    if request.sub_resource.is_some() {
        return Vec::new();
    }
    let Some(object) = request.object.as_ref() else {
        return Vec::new();
    };
    let mut operations = Vec::new();
    if kind == Kind::Application {
        operations.extend(attribute_operation(request, object, config));
    }
    if config.file.mutation.stamp_team_label && request.operation == Operation::Create {
        operations.extend(team_label(kind, request, object, config, live));
    }
    operations
}

/// An Application operation this request writes names its caller in `initiatedBy`, and only
/// automation keeps `automated: true`. A delegator's write is left as it is: it names the person
/// it acts for.
fn attribute_operation(
    request: &Request,
    object: &DynamicObject,
    config: &Config,
) -> Vec<PatchOperation> {
    let caller = request.user_info.username.as_deref().unwrap_or("");
    let Some(operation) = object.data.get("operation").filter(|o| o.is_object()) else {
        return Vec::new();
    };
    let old_operation = request
        .old_object
        .as_ref()
        .and_then(|o| o.data.get("operation"))
        .filter(|o| !o.is_null());
    // Only an operation this request writes is attributed to its caller.
    if config.is_delegator(caller) || old_operation == Some(operation) {
        return Vec::new();
    }
    let initiated = operation.get("initiatedBy");
    let claimed = initiated
        .and_then(|i| i.get("username"))
        .and_then(Value::as_str);
    let automated = initiated
        .and_then(|i| i.get("automated"))
        .and_then(Value::as_bool)
        == Some(true);
    if automated && config.is_automation(caller) {
        return Vec::new();
    }
    let mut operations = Vec::new();
    if initiated.filter(|i| i.is_object()).is_none() {
        operations.push(add(
            &["operation", "initiatedBy"],
            json!({"username": caller}),
        ));
        return operations;
    }
    if claimed != Some(caller) {
        let path = ["operation", "initiatedBy", "username"];
        operations.push(if claimed.is_some() {
            replace(&path, json!(caller))
        } else {
            add(&path, json!(caller))
        });
    }
    if automated {
        // Only automation may claim an automated sync.
        operations.push(replace(
            &["operation", "initiatedBy", "automated"],
            json!(false),
        ));
    }
    operations
}

/// The owning team's label, on a created object that has none.
fn team_label(
    kind: Kind,
    request: &Request,
    object: &DynamicObject,
    config: &Config,
    live: &NamespaceLabels,
) -> Option<PatchOperation> {
    let placement = entities::placement(kind, request, config, live);
    let key = config.file.namespace_labels.team.as_str();
    let labels = object.metadata.labels.as_ref();
    let team = placement.team?;
    if labels.and_then(|l| l.get(key)).is_some() {
        return None;
    }
    Some(match labels {
        Some(_) => add(&["metadata", "labels", key], json!(team)),
        None => add(&["metadata", "labels"], json!({ key: team })),
    })
}

/// Parse and answer a `/mutate` review: always allowed (deciding is `/validate`'s job). The
/// patch is base64 text, as the AdmissionReview API documents (kube's type would write it as an
/// array of numbers).
pub fn mutate_review(
    config: &Config,
    live: &NamespaceLabels,
    body: &[u8],
) -> Result<(Value, usize), EnvelopeError> {
    let request = admission::parse_review(body)?;
    let operations = mutations(&request, config, live);
    let count = operations.len();
    let mut response = AdmissionResponse::from(&*request);
    if !operations.is_empty() {
        response = match response.clone().with_patch(Patch(operations)) {
            Ok(patched) => patched,
            Err(error) => {
                tracing::error!(%error, "cannot serialise the JSON patch; answering without one");
                response
            }
        };
    }
    let patch = response.patch.take();
    let mut review = serde_json::to_value(admission::Answer::new(&response))
        .map_err(|e| EnvelopeError::Malformed(format!("cannot serialise the response: {e}")))?;
    if let Some(patch) = patch
        && let Some(answer) = review.get_mut("response")
    {
        use base64::Engine as _;
        answer["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    Ok((review, count))
}
