//! The AdmissionReview envelope: parse a body once into kube's typed request, and answer in kind.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};

/// Request bodies above this are refused before parsing (the API server caps objects at ~3 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

const ACCEPTED_API_VERSIONS: &[&str] = &["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

pub type Request = AdmissionRequest<DynamicObject>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("request body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    #[error(
        "unsupported AdmissionReview apiVersion {0:?}: expected admission.k8s.io/v1 (set admissionReviewVersions: [v1])"
    )]
    UnsupportedVersion(String),
    #[error("expected kind AdmissionReview, got {0:?}")]
    WrongKind(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has an empty uid")]
    MissingUid,
}

/// Parse an HTTP body into the typed request, keeping the review's apiVersion for the answer.
pub fn parse_review(body: &[u8]) -> Result<Request, EnvelopeError> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|error| EnvelopeError::Malformed(error.to_string()))?;
    if review.types.kind != "AdmissionReview" {
        return Err(EnvelopeError::WrongKind(review.types.kind));
    }
    if !ACCEPTED_API_VERSIONS.contains(&review.types.api_version.as_str()) {
        return Err(EnvelopeError::UnsupportedVersion(review.types.api_version));
    }
    let request: Request = review
        .try_into()
        .map_err(|_| EnvelopeError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(EnvelopeError::MissingUid);
    }
    Ok(request)
}

/// Wrap a response in a review of the request's own apiVersion.
pub fn into_review(response: AdmissionResponse) -> AdmissionReview<DynamicObject> {
    let mut review = response.into_review();
    if review.types.api_version.is_empty() {
        review.types = TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        };
    }
    review
}

#[cfg(test)]
#[path = "unit_tests/admission_tests.rs"]
mod tests;
