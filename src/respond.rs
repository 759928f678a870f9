//! Respond: turn an outcome into the AdmissionReview response the API server expects, and the one
//! entry point (`review`) that `serve` and `eval` share.

use std::collections::HashMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use kube::core::response::StatusSummary;

use crate::admission::{self, EnvelopeError, Request};
use crate::decide::{self, Engine, Outcome, PolicyMatch};
use crate::mode::Mode;

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
}

/// Parse, decide and answer one AdmissionReview body. An envelope error is the caller's to turn
/// into HTTP 400; anything after parsing is answered inside the review.
pub fn review(engine: &Engine, body: &[u8]) -> Result<Reviewed, EnvelopeError> {
    let request = admission::parse_review(body)?;
    let (response, outcome) = match decide::decide(engine, &request) {
        Ok(outcome) => (respond(&request, &outcome), Some(outcome)),
        Err(error) => {
            // Fail closed: an internal problem never lets the request through unexamined.
            let mut response = AdmissionResponse::from(&request).deny(format!(
                "Guardrails could not evaluate this request: {error}"
            ));
            response.result.code = 500;
            response.result.status = Some(StatusSummary::Failure);
            response.result.reason = "InternalError".into();
            response
                .audit_annotations
                .insert("decision".into(), "error".into());
            (response, None)
        }
    };
    Ok(Reviewed {
        review: admission::into_review(response),
        request,
        outcome,
    })
}

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
    match request.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{kind} {}/{name}", echo(ns)),
        _ => format!("{kind} {name}"),
    }
}

fn outcome_kind(request: &Request) -> &str {
    match request.sub_resource.as_deref() {
        Some(_) => request.resource.resource.as_str(),
        None => request.kind.kind.as_str(),
    }
}

/// Build the response for a decided request.
pub fn respond(request: &Request, outcome: &Outcome) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    let mut annotations = HashMap::new();
    if let Some(resource) = &outcome.unsupported {
        annotations.insert("decision".to_string(), "unsupported".to_string());
        annotations.insert("resource".to_string(), resource.clone());
        response.audit_annotations = annotations;
        return response;
    }
    let actions: Vec<&str> = outcome
        .recognition
        .iter()
        .flat_map(|r| r.actions.iter().map(|a| a.as_str()))
        .collect();
    let principal = echo(
        outcome
            .identity
            .as_ref()
            .map(|i| i.username.as_str())
            .unwrap_or(""),
    );

    if !outcome.allowed {
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
        let message = format!(
            "Guardrails denied {} of {} by {}: {}",
            denied_actions.join(", "),
            describe_target(request),
            principal,
            denied.join(" ")
        );
        response = response.deny(message);
        response.result.code = 403;
        response.result.status = Some(StatusSummary::Failure);
        response.result.reason = "Forbidden".into();
    }

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
    if !warnings.is_empty() {
        warnings.truncate(MAX_WARNINGS);
        response.warnings = Some(
            warnings
                .into_iter()
                .map(|w| truncate(w, MAX_WARNING_CHARS))
                .collect(),
        );
    }

    let decision = if !outcome.allowed {
        "deny"
    } else if outcome.matches.iter().any(|m| m.effective == Mode::Warn) {
        "allow-warn"
    } else if outcome.matches.is_empty() {
        "allow"
    } else {
        "allow-audit"
    };
    annotations.insert("decision".into(), decision.into());
    annotations.insert("actions".into(), actions.join(","));
    annotations.insert("principal".into(), principal);
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
    response.audit_annotations = annotations;
    response
}

#[cfg(test)]
#[path = "unit_tests/respond_tests.rs"]
mod tests;
