//! The audit record: one JSON line per decided request on stdout (logs go to stderr), so the
//! stream can be collected, searched and later replayed.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::decide::PolicyMatch;
use crate::respond::Reviewed;

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
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub operation: String,
    pub sub_resource: Option<&'a str>,
    pub actions: Vec<&'static str>,
    pub allowed: bool,
    pub matches: &'a [PolicyMatch],
    pub warnings: &'a [String],
    pub dry_run: bool,
    pub latency_us: u128,
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
            resource: &request.resource.resource,
            namespace: request.namespace.as_deref().unwrap_or(""),
            name: &request.name,
            operation: format!("{:?}", request.operation).to_uppercase(),
            sub_resource: request.sub_resource.as_deref(),
            actions: outcome
                .and_then(|o| o.recognition.as_ref())
                .map(|r| r.actions.iter().map(|a| a.as_str()).collect())
                .unwrap_or_default(),
            allowed: response.is_some_and(|r| r.allowed),
            matches: outcome.map_or(&[], |o| o.matches.as_slice()),
            warnings: response.and_then(|r| r.warnings.as_deref()).unwrap_or(&[]),
            dry_run: request.dry_run,
            latency_us: latency.as_micros(),
        }
    }
}

/// Emit the audit line for a decided request.
pub fn record(reviewed: &Reviewed, latency: Duration) {
    let record = AuditRecord::new(reviewed, latency);
    let line = match serde_json::to_vec(&record) {
        Ok(line) => line,
        Err(error) => {
            tracing::error!(%error, "cannot serialise audit record");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(&line).and_then(|()| out.write_all(b"\n")) {
        tracing::error!(%error, "cannot write audit record");
    }
}
