//! Unit tests for `src/admission.rs` (kept apart so `src/` holds only shipped code).

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
