//! Replay: re-decide recorded requests (audit lines written with `--audit-log-requests`) with a
//! candidate engine and report what would change.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Serialize;

use crate::audit::RecordedDecision;
use crate::authoring::report::Fact;
use crate::decide::Engine;
use crate::entities::Landing;
use crate::respond::{self, Reviewed};

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub line: usize,
    pub time: String,
    pub uid: String,
    pub user: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    /// Who the candidate decided as (the delegated person for argocd-server's syncs).
    pub principal: String,
    pub teams: Vec<String>,
    /// Where the resource lands, as the candidate places it.
    pub placement: Landing,
    pub actions: Vec<String>,
    pub was_allowed: bool,
    pub now_allowed: bool,
    /// Enforced policies now denying (for a new denial) or that denied before (for a new allow).
    pub policies: Vec<String>,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub replayed: usize,
    pub newly_denied: usize,
    pub newly_allowed: usize,
    pub unchanged: usize,
    /// Lines without a recorded request (written without --audit-log-requests, or too large).
    pub skipped: usize,
    /// Lines that are not audit records, with the reason.
    pub invalid: Vec<String>,
    /// Records cut off mid-write (a crash or a full disk), which the next writer ended with a
    /// newline: the start of a record and nothing to replay.
    pub torn: Vec<String>,
    /// Policy id -> number of requests it newly denies.
    pub denying_policies: BTreeMap<String, usize>,
    /// Policy id -> number of requests it denied before and no longer does.
    pub releasing_policies: BTreeMap<String, usize>,
    pub changes: Vec<Change>,
}

/// The policies that deny: the enforced matches, or with `as_enforced` every match.
fn denying_ids(matches: &[crate::decide::PolicyMatch], as_enforced: bool) -> Vec<String> {
    let mut ids: Vec<String> = matches
        .iter()
        .filter(|m| as_enforced || m.effective == crate::vocabulary::Mode::Enforce)
        .map(|m| m.policy.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Re-decide every recorded request in `log` with `engine`. With `as_enforced`, a request
/// counts as denied (before and after) when any policy matched it, whatever its mode.
pub fn replay(engine: &Engine, log: impl BufRead, as_enforced: bool) -> Report {
    let mut report = Report::default();
    for (index, line) in log.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                report.invalid.push(format!("line {number}: {error}"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(record) = parse_record(&mut report, number, &line) {
            replay_record(engine, &mut report, number, record, as_enforced);
        }
    }
    report
}

/// The audit record on line `number`; a torn or invalid line goes into the report instead.
fn parse_record(report: &mut Report, number: usize, line: &str) -> Option<RecordedDecision> {
    match serde_json::from_str(line) {
        Ok(record) => Some(record),
        Err(error) if error.is_eof() && line.trim_start().starts_with('{') => {
            report.torn.push(format!(
                "line {number}: a record cut off after {} bytes (the process writing it stopped mid-write)",
                line.len()
            ));
            None
        }
        Err(error) => {
            report
                .invalid
                .push(format!("line {number}: not an audit record: {error}"));
            None
        }
    }
}

/// Re-decide one record's request and count the outcome: skipped, invalid, unchanged or a change.
fn replay_record(
    engine: &Engine,
    report: &mut Report,
    number: usize,
    record: RecordedDecision,
    as_enforced: bool,
) {
    let Some(request) = &record.request else {
        report.skipped += 1;
        return;
    };
    let reviewed = match respond::validate_review(engine, request.get().as_bytes()) {
        Ok(reviewed) => reviewed,
        Err(error) => {
            report.invalid.push(format!(
                "line {number}: recorded request is invalid: {error}"
            ));
            return;
        }
    };
    report.replayed += 1;
    let now_matches = reviewed
        .outcome
        .as_ref()
        .map_or(&[][..], |o| o.matches.as_slice());
    let (was_allowed, now_allowed) = if as_enforced {
        (record.matches.is_empty(), now_matches.is_empty())
    } else {
        (record.allowed, reviewed.allowed())
    };
    if now_allowed == was_allowed {
        report.unchanged += 1;
        return;
    }
    let policies = if now_allowed {
        report.newly_allowed += 1;
        denying_ids(&record.matches, as_enforced)
    } else {
        report.newly_denied += 1;
        denying_ids(now_matches, as_enforced)
    };
    let tally = if now_allowed {
        &mut report.releasing_policies
    } else {
        &mut report.denying_policies
    };
    for id in &policies {
        *tally.entry(id.clone()).or_default() += 1;
    }
    let mut change = change(number, record, &reviewed, now_allowed, policies);
    change.was_allowed = was_allowed;
    report.changes.push(change);
}

/// The report's entry for a request whose answer changed.
fn change(
    number: usize,
    record: RecordedDecision,
    reviewed: &Reviewed,
    now_allowed: bool,
    policies: Vec<String>,
) -> Change {
    Change {
        line: number,
        time: record.time,
        uid: record.uid,
        user: record.user,
        kind: record.kind,
        namespace: record.namespace,
        name: record.name,
        operation: record.operation,
        principal: reviewed
            .outcome
            .as_ref()
            .and_then(|o| o.identity.as_ref())
            .map(|i| i.username.clone())
            .unwrap_or_default(),
        teams: reviewed
            .outcome
            .as_ref()
            .and_then(|o| o.identity.as_ref())
            .map(|i| i.teams.clone())
            .unwrap_or_default(),
        placement: reviewed
            .outcome
            .as_ref()
            .and_then(|o| o.placement.as_ref())
            .map(|p| p.landing())
            .unwrap_or_default(),
        actions: reviewed
            .outcome
            .as_ref()
            .and_then(|o| o.recognition.as_ref())
            .map(|r| r.actions.iter().map(|a| a.as_str().to_string()).collect())
            .unwrap_or_default(),
        was_allowed: record.allowed,
        now_allowed,
        policies,
        message: reviewed.response.result.message.clone(),
    }
}

/// The report for a person.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "replayed {} requests: {} newly denied, {} newly allowed, {} unchanged ({} without a recorded request, {} invalid lines, {} torn records)\n",
        report.replayed,
        report.newly_denied,
        report.newly_allowed,
        report.unchanged,
        report.skipped,
        report.invalid.len(),
        report.torn.len()
    );
    for (title, tally) in [
        ("newly denying", &report.denying_policies),
        ("no longer denying", &report.releasing_policies),
    ] {
        if !tally.is_empty() {
            let items: Vec<String> = tally.iter().map(|(id, n)| format!("{id} ({n})")).collect();
            out.push_str(&format!("policies {title}: {}\n", items.join(", ")));
        }
    }
    for change in &report.changes {
        out.push_str(&format!(
            "{} line {} {} {} {} {} {}/{} [{}] by {}: {}\n",
            if change.now_allowed {
                "ALLOWED"
            } else {
                "DENIED "
            },
            change.line,
            change.time,
            change.user,
            change.operation,
            change.kind,
            change.namespace,
            change.name,
            change.actions.join(","),
            if change.policies.is_empty() {
                "-".to_string()
            } else {
                change.policies.join(",")
            },
            if change.now_allowed {
                "was denied"
            } else {
                change.message.as_str()
            },
        ));
    }
    for invalid in &report.invalid {
        out.push_str(&format!("invalid: {invalid}\n"));
    }
    for torn in &report.torn {
        out.push_str(&format!("torn: {torn}\n"));
    }
    out
}

/// The newly denied requests as facts to group (one per denying policy).
pub fn new_denials(report: &Report) -> Vec<Fact> {
    let mut facts = Vec::new();
    for change in report.changes.iter().filter(|c| !c.now_allowed) {
        let joined = |values: &[String]| {
            if values.is_empty() {
                "-".to_string()
            } else {
                values.join(",")
            }
        };
        for policy in &change.policies {
            facts.push(Fact {
                uid: change.uid.clone(),
                object: format!("{} {}/{}", change.kind, change.namespace, change.name),
                person: if change.principal.is_empty() {
                    change.user.clone()
                } else {
                    change.principal.clone()
                },
                team: joined(&change.teams),
                namespace: joined(&change.placement.namespaces),
                environment: joined(&change.placement.environments),
                policy: policy.clone(),
                action: joined(&change.actions),
                denied: true,
            });
        }
    }
    facts
}
