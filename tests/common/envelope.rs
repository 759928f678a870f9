//! AdmissionReview envelopes around bare requests.

use serde_json::{Value, json};

/// A bare `request` stanza from the fixtures, wrapped as SOURCES.md says.
pub fn wrap_request(request: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})).unwrap()
}
