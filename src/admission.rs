//! The AdmissionReview envelope: parse a body once into kube's typed request, and answer in kind.
//!
//! Parsing is bounded: the body size is checked by the server before it gets here, and this
//! module bounds the JSON shape (how many values, how deep, how large `userInfo` is) so that no
//! single request can make the process allocate much more than the body itself.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};

/// Default largest request body (`serve --max-body-bytes`). The API server caps a stored object
/// at ~1.5 MiB (etcd) and a request at 3 MiB; a review carries the object and the old object.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most JSON values (array elements, object members and containers) in one body. A 3 MiB
/// review of real objects holds ~220k; each value costs ~100-200 bytes once parsed, so this
/// bounds one parse to tens of MiB whatever the body looks like.
pub const MAX_JSON_VALUES: usize = 500_000;

/// Deepest JSON nesting: serde_json's own recursion limit, which rejects deeper bodies.
pub const MAX_JSON_DEPTH: usize = 128;

/// Most groups in `userInfo.groups`: each becomes a Cedar parent entity of the principal.
pub const MAX_GROUPS: usize = 1024;

/// Largest `userInfo` (username, uid, groups and extra, counted in bytes of text).
pub const MAX_USER_INFO_BYTES: usize = 128 * 1024;

/// Longest request uid (the API server sends a 36-character UUID); it is echoed in the answer.
pub const MAX_UID_BYTES: usize = 256;

/// Rejected input is quoted at most this long in error messages and logs.
pub const MAX_QUOTED_CHARS: usize = 200;

/// Both versions the API server can send; the answer is always in the request's version.
pub const ACCEPTED_API_VERSIONS: &[&str] = &["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

pub type Request = AdmissionRequest<DynamicObject>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("request body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    #[error(
        "unsupported AdmissionReview apiVersion {0:?}: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1"
    )]
    UnsupportedVersion(String),
    #[error("expected kind AdmissionReview, got {0:?}")]
    WrongKind(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has an empty uid")]
    MissingUid,
    /// The body is well-formed but larger or more complex than a review the API server sends.
    #[error("AdmissionReview exceeds a limit: {0}")]
    TooComplex(String),
}

impl EnvelopeError {
    /// A short, stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedVersion(_) => "version",
            Self::WrongKind(_) => "kind",
            Self::MissingRequest => "no-request",
            Self::MissingUid => "no-uid",
            Self::TooComplex(_) => "limit",
        }
    }
}

/// `text` cut to `limit` characters, with an ellipsis and the original length when cut, so a
/// rejected value is never echoed back at length.
pub fn quote_limited(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

/// Count the JSON values in `body` without parsing it: one per container, plus one per
/// element or member (commas). Strings are skipped, escapes included. Linear, no allocation.
pub fn count_json_values(body: &[u8]) -> usize {
    let (mut in_string, mut escaped, mut count) = (false, false, 1usize);
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Parse an HTTP body into the typed request, keeping the review's apiVersion for the answer.
pub fn parse_review(body: &[u8]) -> Result<Request, EnvelopeError> {
    let values = count_json_values(body);
    if values > MAX_JSON_VALUES {
        return Err(EnvelopeError::TooComplex(format!(
            "{values} JSON values, at most {MAX_JSON_VALUES} are accepted"
        )));
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|error| EnvelopeError::Malformed(describe(&error)))?;
    if review.types.kind != "AdmissionReview" {
        return Err(EnvelopeError::WrongKind(quote_limited(
            &review.types.kind,
            MAX_QUOTED_CHARS,
        )));
    }
    if !ACCEPTED_API_VERSIONS.contains(&review.types.api_version.as_str()) {
        return Err(EnvelopeError::UnsupportedVersion(quote_limited(
            &review.types.api_version,
            MAX_QUOTED_CHARS,
        )));
    }
    let request: Request = review
        .try_into()
        .map_err(|_| EnvelopeError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(EnvelopeError::MissingUid);
    }
    check_shape(&request)?;
    Ok(request)
}

/// serde_json quotes an offending value in full: cut it, and keep where it was.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&position) {
        Some(message) => format!("{}{position}", quote_limited(message, MAX_QUOTED_CHARS)),
        None => quote_limited(&text, MAX_QUOTED_CHARS),
    }
}

/// Bounds on the parts of a request that are copied into Cedar entities, logs and answers.
fn check_shape(request: &Request) -> Result<(), EnvelopeError> {
    let too_complex = |what: String| Err(EnvelopeError::TooComplex(what));
    if request.uid.len() > MAX_UID_BYTES {
        return too_complex(format!(
            "uid is {} bytes, at most {MAX_UID_BYTES} are accepted",
            request.uid.len()
        ));
    }
    let user = &request.user_info;
    let groups = user.groups.as_deref().unwrap_or_default();
    if groups.len() > MAX_GROUPS {
        return too_complex(format!(
            "userInfo.groups has {} entries, at most {MAX_GROUPS} are accepted",
            groups.len()
        ));
    }
    let extra: usize = user.extra.as_ref().map_or(0, |extra| {
        extra
            .iter()
            .map(|(key, values)| key.len() + values.iter().map(String::len).sum::<usize>())
            .sum()
    });
    let bytes = user.username.as_deref().map_or(0, str::len)
        + user.uid.as_deref().map_or(0, str::len)
        + groups.iter().map(String::len).sum::<usize>()
        + extra;
    if bytes > MAX_USER_INFO_BYTES {
        return too_complex(format!(
            "userInfo is {bytes} bytes, at most {MAX_USER_INFO_BYTES} are accepted"
        ));
    }
    Ok(())
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
