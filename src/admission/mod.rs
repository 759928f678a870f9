//! The AdmissionReview envelope: parse a body once into kube's typed request, and answer in kind.
//!
//! Parsing is bounded: the body size is checked by the server before it gets here, and this
//! module bounds the JSON shape (how many values, how deep, how large `userInfo` is) so that no
//! single request can make the process allocate much more than the body itself.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};

mod envelope;

/// Default largest request body (`serve --max-body-bytes`). The API server caps a stored object
/// at ~1.5 MiB (etcd) and a request at 3 MiB; a review carries the object and the old object.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most JSON values (containers, array elements and object members) in one body. A dense
/// 3 MiB review of real objects (an Application listing 10,000 resources, old and new) holds
/// ~180k.
pub const MAX_JSON_VALUES: usize = 300_000;

/// Most JSON objects in one body; the same 3 MiB review holds ~40k. Each costs ~600 bytes once
/// parsed, far more than its text, so objects are bounded on their own.
pub const MAX_JSON_OBJECTS: usize = 60_000;

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

/// The namespace the object lives in, if any. The API server puts a Namespace's own name in
/// `namespace` (kubernetes/kubernetes#95012); a Namespace does not live in itself.
pub fn object_namespace(request: &Request) -> Option<&str> {
    let is_namespace =
        request.resource.group.is_empty() && request.resource.resource == "namespaces";
    request
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty() && !is_namespace)
}

/// The operation as the API server writes it (`CREATE`, `UPDATE`, …).
pub fn operation_name(operation: &kube::core::admission::Operation) -> &'static str {
    use kube::core::admission::Operation;
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

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

/// What a body holds, counted without parsing it: what the limits bound and the memory
/// estimate is made of. Linear, no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCounts {
    /// Containers, array elements and object members (one per `{`, `[` and `,`, plus one).
    pub values: usize,
    pub objects: usize,
    /// Object members (one per `:`).
    pub members: usize,
}

/// The longest body counted by `bound_json`: it cannot hold more `{`, `[`, `,` or `:` bytes
/// than the limits allow values and objects, so its bounds never refuse what its exact counts
/// would admit.
pub const BOUNDED_BODY_BYTES: usize = MAX_JSON_OBJECTS;
const _: () =
    assert!(BOUNDED_BODY_BYTES <= MAX_JSON_OBJECTS && BOUNDED_BODY_BYTES < MAX_JSON_VALUES);

/// The counts the limits are checked on and the memory estimate is made of: for a body of
/// at most `BOUNDED_BODY_BYTES`, upper bounds (`bound_json`, a tenth of the cost); for a
/// larger one, exact (`count_json`), so that strings holding JSON text are not charged.
pub fn count_for_limits(body: &[u8]) -> JsonCounts {
    if body.len() <= BOUNDED_BODY_BYTES {
        bound_json(body)
    } else {
        count_json(body)
    }
}

/// Upper bounds of `count_json`, counted without telling strings apart: every `{`, `[`, `,`
/// and `:` byte, wherever it is. No branch on the bytes, so it runs a vector at a time.
pub fn bound_json(body: &[u8]) -> JsonCounts {
    let mut counts = JsonCounts {
        values: 1,
        ..JsonCounts::default()
    };
    // Per-block counts fit a byte, which is what lets the loop run 16 or 32 bytes at once.
    for block in body.chunks(u8::MAX as usize) {
        let (mut objects, mut others, mut members) = (0u8, 0u8, 0u8);
        for &byte in block {
            objects += u8::from(byte == b'{');
            others += u8::from(byte == b'[') + u8::from(byte == b',');
            members += u8::from(byte == b':');
        }
        counts.objects += usize::from(objects);
        counts.values += usize::from(objects) + usize::from(others);
        counts.members += usize::from(members);
    }
    counts
}

/// The exact counts: strings skipped, escapes included.
pub fn count_json(body: &[u8]) -> JsonCounts {
    let mut counts = JsonCounts {
        values: 1,
        ..JsonCounts::default()
    };
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // Most of a body is inside strings: jump to where one can end or escape.
                at += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[at..]) {
                        None => return counts,
                        Some(offset) if body[at + offset] == b'\\' => at += offset + 2,
                        Some(offset) => {
                            at += offset;
                            break;
                        }
                    }
                    if at >= body.len() {
                        return counts;
                    }
                }
            }
            b',' | b'[' => counts.values += 1,
            b'{' => {
                counts.values += 1;
                counts.objects += 1;
            }
            b':' => counts.members += 1,
            _ => {}
        }
        at += 1;
    }
    counts
}

/// Refuse a body holding more than the limits allow.
pub fn check_counts(counts: &JsonCounts) -> Result<(), EnvelopeError> {
    if counts.values > MAX_JSON_VALUES {
        return Err(EnvelopeError::TooComplex(format!(
            "{} JSON values, at most {MAX_JSON_VALUES} are accepted",
            counts.values
        )));
    }
    if counts.objects > MAX_JSON_OBJECTS {
        return Err(EnvelopeError::TooComplex(format!(
            "{} JSON objects, at most {MAX_JSON_OBJECTS} are accepted",
            counts.objects
        )));
    }
    Ok(())
}

/// Parse an HTTP body into the typed request, keeping the review's apiVersion for the answer.
pub fn parse_review(body: &[u8]) -> Result<Box<Request>, EnvelopeError> {
    check_counts(&count_for_limits(body))?;
    parse_checked(body)
}

/// `parse_review` for a body whose counts the caller has already checked. Boxed: the request
/// is ~1.6 KB, moved into the decided request and its answer.
pub fn parse_checked(body: &[u8]) -> Result<Box<Request>, EnvelopeError> {
    // Checked as UTF-8 once, whole (JSON is UTF-8): parsing from text then skips checking each
    // string on its own, a tenth of the parse.
    let text = std::str::from_utf8(body).map_err(|error| {
        EnvelopeError::Malformed(format!(
            "the body is not UTF-8 (invalid byte at offset {})",
            error.valid_up_to()
        ))
    })?;
    let review: envelope::Envelope =
        serde_json::from_str(text).map_err(|error| EnvelopeError::Malformed(describe(&error)))?;
    if review.kind != "AdmissionReview" {
        return Err(EnvelopeError::WrongKind(quote_limited(
            &review.kind,
            MAX_QUOTED_CHARS,
        )));
    }
    if !ACCEPTED_API_VERSIONS.contains(&review.api_version.as_str()) {
        return Err(EnvelopeError::UnsupportedVersion(quote_limited(
            &review.api_version,
            MAX_QUOTED_CHARS,
        )));
    }
    let request = review
        .request
        .ok_or(EnvelopeError::MissingRequest)?
        .into_request(TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        });
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

/// A response wrapped in a review of the request's own apiVersion: what kube's
/// `AdmissionReview` writes, borrowed (kube's holds the request's slot too, ~1.7 KB moved
/// with every answer, and writes its type through a map).
#[derive(Debug, serde::Serialize)]
pub struct Answer<'a> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'a str,
    pub kind: &'a str,
    pub response: &'a AdmissionResponse,
}

impl<'a> Answer<'a> {
    pub fn new(response: &'a AdmissionResponse) -> Self {
        // A response built without a request (none is parsed yet) answers in v1.
        if response.types.api_version.is_empty() {
            return Self {
                api_version: "admission.k8s.io/v1",
                kind: "AdmissionReview",
                response,
            };
        }
        Self {
            api_version: &response.types.api_version,
            kind: &response.types.kind,
            response,
        }
    }
}

/// `Answer` as kube's owned review, with the same type: what the answer is checked against.
pub fn into_review(response: AdmissionResponse) -> AdmissionReview<DynamicObject> {
    let answer = Answer::new(&response);
    let types = TypeMeta {
        api_version: answer.api_version.into(),
        kind: answer.kind.into(),
    };
    AdmissionReview {
        types,
        request: None,
        response: Some(response),
    }
}

#[cfg(test)]
#[path = "../unit_tests/admission_tests.rs"]
mod tests;
