//! What one audit line holds, written (`AuditRecord`) and read back by `replay` (`RecordedDecision`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decide::PolicyMatch;
use crate::entities::Landing;
use crate::respond::Reviewed;
use crate::vocabulary::Verdict;

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
    pub operation: &'static str,
    pub sub_resource: Option<&'a str>,
    pub actions: Vec<&'static str>,
    /// Where the resource lands: an Application's destination (both sides of a move), every
    /// place an ApplicationSet or AppProject reaches; its teams and environments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Landing>,
    pub decision: Verdict,
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

impl AuditRecord<'_> {
    /// The line, as serde_json writes the derived form (`tests/envelope_parity.rs` holds the
    /// two equal), member by member (`json::ObjectWriter`); a quoted request is JSON text
    /// already and is copied as it is.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), sonic_rs::Error> {
        let mut object = crate::json::ObjectWriter::new(out);
        object.member("time", &self.time)?;
        object.member("uid", self.uid)?;
        object.member("user", self.user)?;
        object.member("principal", self.principal)?;
        object.member("delegator", &self.delegator)?;
        object.member("groups", self.groups)?;
        object.member("teams", self.teams)?;
        object.member("kind", self.kind)?;
        object.member("resource", self.resource)?;
        object.member("namespace", self.namespace)?;
        object.member("name", self.name)?;
        object.member("operation", self.operation)?;
        object.member("subResource", &self.sub_resource)?;
        object.member("actions", &self.actions)?;
        if let Some(placement) = &self.placement {
            object.member("placement", placement)?;
        }
        object.member("decision", &self.decision)?;
        object.member("allowed", &self.allowed)?;
        object.member("enforced", &self.enforced)?;
        object.member("matches", self.matches)?;
        object.member("warnings", self.warnings)?;
        object.member("dryRun", &self.dry_run)?;
        object.member("latencyUs", &self.latency_us)?;
        if let Some(request) = self.request {
            object.raw_member("request", request);
        }
        if let Some(omitted) = &self.request_omitted {
            object.member("requestOmitted", omitted)?;
        }
        object.end();
        Ok(())
    }
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
        let response = &reviewed.response;
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
            operation: crate::admission::operation_name(&request.operation),
            sub_resource: request.sub_resource.as_deref(),
            actions: outcome
                .and_then(|o| o.recognition.as_ref())
                .map(|r| r.actions.iter().map(|a| a.as_str()).collect())
                .unwrap_or_default(),
            placement: outcome
                .and_then(|o| o.placement.as_ref())
                .map(|placement| placement.landing()),
            decision: reviewed.verdict,
            allowed: response.allowed,
            enforced: outcome.is_some_and(|o| o.enforced().next().is_some()),
            matches: outcome.map_or(&[], |o| o.matches.as_slice()),
            warnings: response.warnings.as_deref().unwrap_or(&[]),
            dry_run: request.dry_run,
            latency_us: latency.as_micros(),
            request: None,
            request_omitted: None,
        }
    }
}
