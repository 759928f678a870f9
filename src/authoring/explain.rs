//! A decision explained for a person: what was recognised, who asked, which policies matched and
//! in which mode, and the outcome.

use std::fmt::Write;

use kube::core::admission::AdmissionResponse;

use crate::admission::Request;
use crate::decide::Outcome;
use crate::identity::{Identity, PrincipalKind};
use crate::respond::Reviewed;

pub fn explain(reviewed: &Reviewed) -> String {
    let mut out = String::new();
    write_request(&mut out, &reviewed.request);
    let Some(outcome) = &reviewed.outcome else {
        let _ = writeln!(
            out,
            "decision:   error (the request could not be evaluated)"
        );
        return out;
    };
    if let Some(resource) = &outcome.unsupported {
        let _ = writeln!(
            out,
            "decision:   allowed: {resource} is not a resource Guardrails decides"
        );
        return out;
    }
    if let Some(identity) = &outcome.identity {
        write_principal(&mut out, identity);
    }
    if let Some(recognition) = &outcome.recognition {
        let actions: Vec<&str> = recognition.actions.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(out, "actions:    {}", actions.join(", "));
    }
    write_policies(&mut out, outcome);
    write_decision(&mut out, &reviewed.response);
    out
}

/// The `request:` line: operation, kind, target and subresource.
fn write_request(out: &mut String, request: &Request) {
    let target = match crate::admission::object_namespace(request) {
        Some(ns) => format!("{ns}/{}", request.name),
        None => request.name.clone(),
    };
    let operation = crate::admission::operation_name(&request.operation);
    let sub = request
        .sub_resource
        .as_deref()
        .map(|s| format!(" (subresource {s})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "request:    {operation} {} {target}{sub}",
        request.kind.kind
    );
}

/// The `principal:` line, and a note on an `initiatedBy` that was ignored.
fn write_principal(out: &mut String, identity: &Identity) {
    let kind = match identity.kind {
        PrincipalKind::User => "User",
        PrincipalKind::ServiceAccount { .. } => "ServiceAccount",
    };
    let teams = if identity.teams.is_empty() {
        "none".to_string()
    } else {
        identity.teams.join(", ")
    };
    let _ = write!(
        out,
        "principal:  {kind} {} (teams: {teams})",
        identity.username
    );
    if let Some(delegator) = &identity.delegator {
        let _ = write!(out, ", delegated by {delegator}");
    }
    if identity.automation {
        let _ = write!(out, ", automation");
    }
    let _ = writeln!(out);
    if let Some(forged) = &identity.forged_initiator {
        let _ = writeln!(
            out,
            "            initiatedBy.username {forged:?} ignored (not sent by a delegator)"
        );
    }
}

/// The `mode:` line and the policies that matched, each with its effective and declared mode.
fn write_policies(out: &mut String, outcome: &Outcome) {
    let _ = writeln!(out, "mode:       {}", outcome.mode);
    if outcome.matches.is_empty() {
        let _ = writeln!(out, "policies:   no forbid matched");
        return;
    }
    let _ = writeln!(out, "policies:");
    for m in &outcome.matches {
        let _ = writeln!(
            out,
            "  - {} on {}: {} (declared {}): {}",
            m.policy,
            m.action.as_str(),
            m.effective,
            m.declared,
            m.reason
        );
    }
}

/// The `decision:` line and the warnings the client is shown.
fn write_decision(out: &mut String, response: &AdmissionResponse) {
    if response.allowed {
        let _ = writeln!(out, "decision:   ALLOWED");
    } else {
        let _ = writeln!(
            out,
            "decision:   DENIED ({}): {}",
            response.result.code, response.result.message
        );
    }
    for warning in response.warnings.as_deref().unwrap_or(&[]) {
        let _ = writeln!(out, "warning:    {warning}");
    }
}
