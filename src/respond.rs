//! Respond: turn an outcome into the AdmissionReview response the API server expects, and the one
//! entry point (`review`) that `serve` and `eval` share.

use std::collections::HashMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use kube::core::response::StatusSummary;

use crate::admission::{self, EnvelopeError, Request};
use crate::decide::{self, Engine, Outcome, PolicyMatch};
use crate::vocabulary::{Mode, Verdict};

/// Kubernetes truncates warnings over 256 characters and discourages many of them.
pub const MAX_WARNING_CHARS: usize = 256;
pub const MAX_WARNINGS: usize = 10;
/// Names and usernames from the request are echoed in messages and audit annotations at most
/// this long (a Kubernetes name has at most 253): a hostile request must not come back whole.
pub const MAX_ECHOED_CHARS: usize = 253;

/// A decided request: the review to send back and what was decided (for logs and metrics).
#[derive(Debug)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub request: Request,
    pub outcome: Option<Outcome>,
    /// What the review answers; `Error` when there is no outcome or the answer was refused.
    pub verdict: Verdict,
}

/// Parse, decide and answer one AdmissionReview body. An envelope error is the caller's to turn
/// into HTTP 400; anything after parsing is answered inside the review.
pub fn validate_review(engine: &Engine, body: &[u8]) -> Result<Reviewed, EnvelopeError> {
    admission::check_counts(&admission::count_json(body))?;
    validate_counted(engine, body)
}

/// `validate_review` for a body whose JSON counts the caller has already checked (the server
/// counts a body as it arrives): counting again would cost as much as a tenth of the parse.
pub fn validate_counted(engine: &Engine, body: &[u8]) -> Result<Reviewed, EnvelopeError> {
    let request = admission::parse_checked(body)?;
    let (response, outcome) = match decide::decide(engine, &request) {
        Ok(outcome) => (respond(&request, &outcome), Some(outcome)),
        // Fail closed: an internal problem never lets the request through unexamined.
        Err(error) => (
            deny(
                &request,
                Refusal::Internal,
                format!("Guardrails could not evaluate this request: {error}"),
                Verdict::Error,
            ),
            None,
        ),
    };
    Ok(Reviewed {
        review: admission::into_review(response),
        verdict: outcome.as_ref().map_or(Verdict::Error, Outcome::verdict),
        request,
        outcome,
    })
}

/// Why a request is refused: the status code and reason the API server shows with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A policy (or Cedar's default deny) forbids it.
    Forbidden,
    /// Guardrails could not evaluate it.
    Internal,
    /// Guardrails cannot keep its audit record (`audit-log-on-loss: fail`).
    AuditUnavailable,
}

impl Refusal {
    fn code(self) -> u16 {
        match self {
            Refusal::Forbidden => 403,
            Refusal::Internal => 500,
            Refusal::AuditUnavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Forbidden => "Forbidden",
            Refusal::Internal => "InternalError",
            Refusal::AuditUnavailable => "ServiceUnavailable",
        }
    }
}

/// Every denial Guardrails sends is built here.
fn deny(
    request: &Request,
    refusal: Refusal,
    message: String,
    verdict: Verdict,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request).deny(message);
    response.result.code = refusal.code();
    response.result.status = Some(StatusSummary::Failure);
    response.result.reason = refusal.reason().into();
    response
        .audit_annotations
        .insert(DECISION_ANNOTATION.into(), verdict.as_str().into());
    response
}

/// The answer under `audit-log-on-loss: fail` when the record cannot be kept: no change is
/// admitted unrecorded, whatever the webhook's failurePolicy.
pub fn refuse_unrecorded(reviewed: &mut Reviewed) {
    let mut response = deny(
        &reviewed.request,
        Refusal::AuditUnavailable,
        "Guardrails cannot write its audit log (audit-log-on-loss: fail), so it refuses changes until it can; see /readyz".into(),
        Verdict::Error,
    );
    response
        .audit_annotations
        .insert("audit".into(), "unavailable".into());
    reviewed.review = admission::into_review(response);
    reviewed.verdict = Verdict::Error;
}

/// The audit annotation that carries the verdict's wire name.
pub const DECISION_ANNOTATION: &str = "decision";

fn truncate(text: String, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text;
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn echo(text: &str) -> String {
    truncate(text.to_string(), MAX_ECHOED_CHARS)
}

fn describe_target(request: &Request) -> String {
    let kind = echo(outcome_kind(request));
    let name = echo(&request.name);
    match admission::object_namespace(request) {
        Some(ns) => format!("{kind} {}/{name}", echo(ns)),
        None => format!("{kind} {name}"),
    }
}

fn outcome_kind(request: &Request) -> &str {
    match request.sub_resource.as_deref() {
        Some(_) => request.resource.resource.as_str(),
        None => request.kind.kind.as_str(),
    }
}

fn principal(outcome: &Outcome) -> String {
    echo(
        outcome
            .identity
            .as_ref()
            .map(|i| i.username.as_str())
            .unwrap_or(""),
    )
}

/// Build the response for a decided request.
pub fn respond(request: &Request, outcome: &Outcome) -> AdmissionResponse {
    let verdict = outcome.verdict();
    if let Some(resource) = &outcome.unsupported {
        let mut response = AdmissionResponse::from(request);
        response.audit_annotations = HashMap::from([
            (
                DECISION_ANNOTATION.to_string(),
                verdict.as_str().to_string(),
            ),
            ("resource".to_string(), resource.clone()),
        ]);
        return response;
    }
    let mut response = if outcome.allowed {
        AdmissionResponse::from(request)
    } else {
        deny(
            request,
            Refusal::Forbidden,
            denial_message(request, outcome),
            verdict,
        )
    };
    let warnings = warnings(outcome);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.audit_annotations = annotations(outcome, verdict);
    response
}

/// "Guardrails denied sync of Application argocd/payments by alice: [policy] reason …"
fn denial_message(request: &Request, outcome: &Outcome) -> String {
    let mut denied: Vec<String> = Vec::new();
    let mut denied_actions: Vec<&str> = Vec::new();
    for m in outcome.enforced() {
        if !denied_actions.contains(&m.action.as_str()) {
            denied_actions.push(m.action.as_str());
        }
        let line = format!("[{}] {}", m.policy, m.reason);
        if !denied.contains(&line) {
            denied.push(line);
        }
    }
    format!(
        "Guardrails denied {} of {} by {}: {}",
        denied_actions.join(", "),
        describe_target(request),
        principal(outcome),
        denied.join(" ")
    )
}

/// What the client is told besides the verdict: ignored claims, and warn/audit matches.
fn warnings(outcome: &Outcome) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    if let Some(identity) = &outcome.identity
        && let Some(forged) = &identity.forged_initiator
    {
        warnings.push(format!(
            "Guardrails: operation.initiatedBy.username {forged:?} was ignored; only a configured delegator may act for someone else, so this was decided as {}",
            identity.username
        ));
    }
    if outcome
        .recognition
        .as_ref()
        .is_some_and(|r| r.forged_automation)
    {
        warnings.push(
            "Guardrails: operation.initiatedBy.automated was ignored; only an automation identity may start an auto-sync"
                .to_string(),
        );
    }
    for m in outcome.warned() {
        let warning = format!(
            "Guardrails{} [{}] {}: {}",
            if m.effective == Mode::Audit {
                " (audit)"
            } else {
                ""
            },
            m.policy,
            m.action.as_str(),
            m.reason
        );
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    warnings.truncate(MAX_WARNINGS);
    warnings
        .into_iter()
        .map(|w| truncate(w, MAX_WARNING_CHARS))
        .collect()
}

/// The audit annotations the API server's own audit log keeps with the request.
fn annotations(outcome: &Outcome, verdict: Verdict) -> HashMap<String, String> {
    let actions: Vec<&str> = outcome
        .recognition
        .iter()
        .flat_map(|r| r.actions.iter().map(|a| a.as_str()))
        .collect();
    // At most seven: sized once rather than grown (and rehashed) twice.
    let mut annotations = HashMap::with_capacity(7);
    annotations.insert(DECISION_ANNOTATION.into(), verdict.as_str().into());
    annotations.insert("actions".into(), actions.join(","));
    annotations.insert("principal".into(), principal(outcome));
    annotations.insert("mode".into(), outcome.mode.as_str().into());
    if let Some(delegator) = outcome.identity.as_ref().and_then(|i| i.delegator.as_ref()) {
        annotations.insert("delegator".into(), echo(delegator));
    }
    if !outcome.matches.is_empty() {
        // `id=mode` pairs, sorted and deduplicated (one policy may match several actions).
        let listed = |mode: fn(&PolicyMatch) -> Mode| {
            let mut pairs: Vec<String> = outcome
                .matches
                .iter()
                .map(|m| format!("{}={}", m.policy, mode(m)))
                .collect();
            pairs.sort();
            pairs.dedup();
            pairs.join(",")
        };
        annotations.insert("policies".into(), listed(|m| m.effective));
        // What each policy would have done on its own, so audit-mode rollouts show their effect.
        annotations.insert("declared".into(), listed(|m| m.declared));
    }
    annotations
}

#[cfg(test)]
#[path = "unit_tests/respond_tests.rs"]
mod tests;
