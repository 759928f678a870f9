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
