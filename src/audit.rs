//! The audit record: one JSON line per decided request, on stdout (logs go to stderr) or a file,
//! so the stream can be collected, searched and, with the request recorded, replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decide::PolicyMatch;
use crate::respond::Reviewed;

/// Requests larger than this are not copied into the audit log (the record says so instead).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: String,
    pub uid: &'a str,
    pub user: &'a str,
    pub principal: &'a str,
    pub delegator: Option<&'a str>,
    pub groups: &'a [String],
    pub teams: &'a [String],
    pub kind: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub operation: String,
    pub sub_resource: Option<&'a str>,
    pub actions: Vec<&'static str>,
    /// `allow`, `allow-warn`, `allow-audit`, `deny`, `unsupported` or `error`.
    pub decision: &'a str,
    pub allowed: bool,
    /// Whether an enforced policy decided (i.e. the request was denied by a policy).
    pub enforced: bool,
    pub matches: &'a [PolicyMatch],
    pub warnings: &'a [String],
    pub dry_run: bool,
    pub latency_us: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_omitted: Option<String>,
}

/// The fields `replay` reads back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedDecision {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub operation: String,
    pub allowed: bool,
    #[serde(default)]
    pub matches: Vec<PolicyMatch>,
    pub request: Option<Box<RawValue>>,
}

impl<'a> AuditRecord<'a> {
    pub fn new(reviewed: &'a Reviewed, latency: Duration) -> Self {
        let request = &reviewed.request;
        let outcome = reviewed.outcome.as_ref();
        let identity = outcome.and_then(|o| o.identity.as_ref());
        let response = reviewed.review.response.as_ref();
        Self {
            time: jiff::Timestamp::now().to_string(),
            uid: &request.uid,
            user: request.user_info.username.as_deref().unwrap_or(""),
            principal: identity.map_or("", |i| i.username.as_str()),
            delegator: identity.and_then(|i| i.delegator.as_deref()),
            groups: request.user_info.groups.as_deref().unwrap_or(&[]),
            teams: identity.map_or(&[], |i| i.teams.as_slice()),
            kind: &request.kind.kind,
            resource: &request.resource.resource,
            namespace: request.namespace.as_deref().unwrap_or(""),
            name: &request.name,
            operation: format!("{:?}", request.operation).to_uppercase(),
            sub_resource: request.sub_resource.as_deref(),
            actions: outcome
                .and_then(|o| o.recognition.as_ref())
                .map(|r| r.actions.iter().map(|a| a.as_str()).collect())
                .unwrap_or_default(),
            decision: response
                .and_then(|r| r.audit_annotations.get("decision"))
                .map_or("", String::as_str),
            allowed: response.is_some_and(|r| r.allowed),
            enforced: outcome.is_some_and(|o| o.enforced().next().is_some()),
            matches: outcome.map_or(&[], |o| o.matches.as_slice()),
            warnings: response.and_then(|r| r.warnings.as_deref()).unwrap_or(&[]),
            dry_run: request.dry_run,
            latency_us: latency.as_micros(),
            request: None,
            request_omitted: None,
        }
    }
}

enum Destination {
    Discard,
    Stdout,
    File(Mutex<File>),
}

/// Where audit lines go, and whether they carry the request for `replay`.
pub struct AuditLog {
    destination: Destination,
    include_requests: bool,
    max_request_bytes: usize,
}

impl AuditLog {
    pub fn stdout(include_requests: bool, max_request_bytes: usize) -> Self {
        Self {
            destination: Destination::Stdout,
            include_requests,
            max_request_bytes,
        }
    }

    /// Record nothing (embedding and tests).
    pub fn disabled() -> Self {
        Self {
            destination: Destination::Discard,
            include_requests: false,
            max_request_bytes: 0,
        }
    }

    /// Append to `path` (created if missing).
    pub fn file(
        path: &Path,
        include_requests: bool,
        max_request_bytes: usize,
    ) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            destination: Destination::File(Mutex::new(file)),
            include_requests,
            max_request_bytes,
        })
    }

    /// Record one decided request; `body` is the request as received.
    pub fn record(&self, reviewed: &Reviewed, body: &[u8], latency: Duration) {
        if matches!(self.destination, Destination::Discard) {
            return;
        }
        let mut record = AuditRecord::new(reviewed, latency);
        let raw;
        if self.include_requests {
            if body.len() > self.max_request_bytes {
                record.request_omitted = Some(format!(
                    "request of {} bytes exceeds the {} byte limit",
                    body.len(),
                    self.max_request_bytes
                ));
            } else {
                raw = std::str::from_utf8(body)
                    .ok()
                    .and_then(|text| RawValue::from_string(text.to_string()).ok());
                match &raw {
                    Some(value) => record.request = Some(value),
                    None => record.request_omitted = Some("request is not valid JSON text".into()),
                }
            }
        }
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "cannot serialise audit record");
                return;
            }
        };
        line.push(b'\n');
        let written = match &self.destination {
            Destination::Discard => Ok(()),
            Destination::Stdout => std::io::stdout().lock().write_all(&line),
            Destination::File(file) => match file.lock() {
                Ok(mut file) => file.write_all(&line),
                Err(_) => Err(std::io::Error::other("audit log lock poisoned")),
            },
        };
        if let Err(error) = written {
            tracing::error!(%error, "cannot write audit record");
        }
    }
}
