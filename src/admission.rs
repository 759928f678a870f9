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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"x","namespace":"n","operation":"DELETE","userInfo":{"username":"a"},"object":null,"oldObject":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}}}"#;

    #[test]
    fn parses_a_delete_with_null_object() {
        let request = parse_review(MINIMAL.as_bytes()).unwrap();
        assert_eq!(request.uid, "u1");
        assert!(request.object.is_none());
        assert!(request.old_object.is_some());
        assert_eq!(request.types.api_version, "admission.k8s.io/v1");
    }

    #[test]
    fn rejects_garbage_and_wrong_envelopes() {
        assert!(matches!(
            parse_review(b"not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            parse_review(br#"{"apiVersion":"v1","kind":"Pod"}"#),
            Err(EnvelopeError::WrongKind(_))
        ));
        assert!(matches!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#),
            Err(EnvelopeError::UnsupportedVersion(_))
        ));
        assert_eq!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).err(),
            Some(EnvelopeError::MissingRequest)
        );
        let no_uid = MINIMAL.replace(r#""uid":"u1""#, r#""uid":"""#);
        assert_eq!(
            parse_review(no_uid.as_bytes()).err(),
            Some(EnvelopeError::MissingUid)
        );
    }
}
