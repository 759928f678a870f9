//! Respond: turn an outcome into the AdmissionReview response the API server expects, and the one
//! entry point (`review`) that `serve` and `eval` share.

use std::collections::HashMap;

use kube::core::admission::AdmissionResponse;
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

/// A decided request: the response to send back and what was decided (for logs and metrics).
#[derive(Debug)]
pub struct Reviewed {
    pub response: AdmissionResponse,
    pub request: Box<Request>,
    pub outcome: Option<Outcome>,
    /// What the review answers; `Error` when there is no outcome or the answer was refused.
    pub verdict: Verdict,
}

/// Parse, decide and answer one AdmissionReview body. An envelope error is the caller's to turn
/// into HTTP 400; anything after parsing is answered inside the review.
pub fn validate_review(engine: &Engine, body: &[u8]) -> Result<Reviewed, EnvelopeError> {
    admission::check_counts(&admission::count_for_limits(body))?;
    validate_counted(engine, body)
}

/// `validate_review` for a body whose JSON counts the caller has already checked (the server
/// counts a body once it has arrived, for the memory estimate): not counted twice.
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
        response,
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
    let mut response = AdmissionResponse::from(request);
    refuse(&mut response, refusal, message);
    response
        .audit_annotations
        .insert(DECISION_ANNOTATION.into(), verdict.as_str().into());
    response
}

/// Turn `response` into a refusal (kube's `deny` would copy the message).
fn refuse(response: &mut AdmissionResponse, refusal: Refusal, message: String) {
    response.allowed = false;
    response.result.message = message;
    response.result.code = refusal.code();
    response.result.status = Some(StatusSummary::Failure);
    response.result.reason = refusal.reason().into();
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
    reviewed.response = response;
    reviewed.verdict = Verdict::Error;
}

impl Reviewed {
    /// The review to send back, in the request's apiVersion.
    pub fn answer(&self) -> admission::Answer<'_> {
        admission::Answer::new(&self.response)
    }

    pub fn allowed(&self) -> bool {
        self.response.allowed
    }
}

/// The audit annotation that carries the verdict's wire name.
pub const DECISION_ANNOTATION: &str = "decision";

/// Has `text` at most `limit` characters? (At most `limit` bytes is enough: no count needed.)
fn fits(text: &str, limit: usize) -> bool {
    text.len() <= limit || text.chars().count() <= limit
}

/// Append `text`, cut to `limit` characters with `…` when longer.
fn push_cut(out: &mut String, text: &str, limit: usize) {
    if fits(text, limit) {
        out.push_str(text);
        return;
    }
    out.extend(text.chars().take(limit.saturating_sub(1)));
    out.push('…');
}

fn truncate(text: String, limit: usize) -> String {
    if fits(&text, limit) {
        return text;
    }
    let mut cut = String::with_capacity(limit + 3);
    push_cut(&mut cut, &text, limit);
    cut
}

/// Append `text` as echoed from a request: cut to `MAX_ECHOED_CHARS`.
fn push_echoed(out: &mut String, text: &str) {
    push_cut(out, text, MAX_ECHOED_CHARS);
}

fn echo(text: &str) -> String {
    let mut echoed = String::with_capacity(text.len().min(MAX_ECHOED_CHARS + 2));
    push_echoed(&mut echoed, text);
    echoed
}

/// "Application argocd/nginx", appended to `out`.
fn push_target(out: &mut String, request: &Request) {
    push_echoed(out, outcome_kind(request));
    out.push(' ');
    if let Some(ns) = admission::object_namespace(request) {
        push_echoed(out, ns);
        out.push('/');
    }
    push_echoed(out, &request.name);
}

fn outcome_kind(request: &Request) -> &str {
    match request.sub_resource.as_deref() {
        Some(_) => request.resource.resource.as_str(),
        None => request.kind.kind.as_str(),
    }
}

fn username(outcome: &Outcome) -> &str {
    outcome
        .identity
        .as_ref()
        .map(|i| i.username.as_str())
        .unwrap_or("")
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
    let mut response = AdmissionResponse::from(request);
    if !outcome.allowed {
        // As `deny` builds it, but the annotations are all set below.
        refuse(
            &mut response,
            Refusal::Forbidden,
            denial_message(request, outcome),
        );
    }
    let warnings = warnings(outcome);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.audit_annotations = annotations(outcome, verdict);
    response
}

/// "Guardrails denied sync of Application argocd/nginx by alice: [policy] reason …"
fn denial_message(request: &Request, outcome: &Outcome) -> String {
    let mut actions: Vec<&str> = Vec::with_capacity(2);
    let mut lines: Vec<(&str, &str)> = Vec::with_capacity(outcome.matches.len());
    for m in outcome.enforced() {
        if !actions.contains(&m.action.as_str()) {
            actions.push(m.action.as_str());
        }
        if !lines.contains(&(m.policy.as_str(), m.reason.as_str())) {
            lines.push((m.policy.as_str(), m.reason.as_str()));
        }
    }
    let reasons: usize = lines.iter().map(|(p, r)| p.len() + r.len() + 4).sum();
    let mut message = String::with_capacity(96 + request.name.len() + reasons);
    message.push_str("Guardrails denied ");
    for (i, action) in actions.iter().enumerate() {
        if i > 0 {
            message.push_str(", ");
        }
        message.push_str(action);
    }
    message.push_str(" of ");
    push_target(&mut message, request);
    message.push_str(" by ");
    push_echoed(&mut message, username(outcome));
    message.push(':');
    for (policy, reason) in lines {
        message.push_str(" [");
        message.push_str(policy);
        message.push_str("] ");
        message.push_str(reason);
    }
    message
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
    let mut actions = String::new();
    for (i, action) in outcome
        .recognition
        .iter()
        .flat_map(|r| r.actions.iter())
        .enumerate()
    {
        if i > 0 {
            actions.push(',');
        }
        actions.push_str(action.as_str());
    }
    // At most seven: sized once rather than grown (and rehashed) twice.
    let mut annotations = HashMap::with_capacity(7);
    annotations.insert(DECISION_ANNOTATION.into(), verdict.as_str().into());
    annotations.insert("actions".into(), actions);
    annotations.insert("principal".into(), echo(username(outcome)));
    annotations.insert("mode".into(), outcome.mode.as_str().into());
    if let Some(delegator) = outcome.identity.as_ref().and_then(|i| i.delegator.as_ref()) {
        annotations.insert("delegator".into(), echo(delegator));
    }
    if !outcome.matches.is_empty() {
        annotations.insert(
            "policies".into(),
            policy_modes(&outcome.matches, |m| m.effective),
        );
        // What each policy would have done on its own, so audit-mode rollouts show their effect.
        annotations.insert(
            "declared".into(),
            policy_modes(&outcome.matches, |m| m.declared),
        );
    }
    annotations
}

/// `id=mode` pairs in text order, deduplicated (one policy may match several actions), joined
/// by commas.
fn policy_modes(matches: &[PolicyMatch], mode: fn(&PolicyMatch) -> Mode) -> String {
    let mut pairs: Vec<(&str, &str)> = matches
        .iter()
        .map(|m| (m.policy.as_str(), mode(m).as_str()))
        .collect();
    // Ordered as the texts `id=mode` are (`prod-x=…` before `prod=…`), without writing them.
    fn text<'a>((policy, mode): &(&'a str, &'a str)) -> impl Iterator<Item = u8> + 'a {
        policy
            .bytes()
            .chain(std::iter::once(b'='))
            .chain(mode.bytes())
    }
    pairs.sort_by(|a, b| text(a).cmp(text(b)));
    pairs.dedup();
    let mut listed = String::with_capacity(pairs.iter().map(|(p, m)| p.len() + m.len() + 2).sum());
    for (i, (policy, mode)) in pairs.iter().enumerate() {
        if i > 0 {
            listed.push(',');
        }
        listed.push_str(policy);
        listed.push('=');
        listed.push_str(mode);
    }
    listed
}

#[cfg(test)]
#[path = "unit_tests/respond_tests.rs"]
mod tests;
