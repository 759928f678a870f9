//! Who would be denied: audit records (or replayed changes) grouped by team, person, namespace,
//! environment, policy and action. The step between an audit-mode rollout and enforcing it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::decide::PolicyMatch;
use crate::entities::Landing;
use crate::vocabulary::Mode;

/// What a row is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Team,
    Person,
    Namespace,
    Environment,
    Policy,
    Action,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::Person => "person",
            GroupBy::Namespace => "namespace",
            GroupBy::Environment => "environment",
            GroupBy::Policy => "policy",
            GroupBy::Action => "action",
        }
    }
}

/// One would-be denial of one request by one policy for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub uid: String,
    /// `kind namespace/name`.
    pub object: String,
    /// The person (for a delegated request, the person argocd-server acted for).
    pub person: String,
    /// The person's teams, joined; `-` for none.
    pub team: String,
    pub namespace: String,
    pub environment: String,
    pub policy: String,
    pub action: String,
    /// The request was actually denied (an enforced match), not only would be.
    pub denied: bool,
}

impl Fact {
    fn key(&self, by: GroupBy) -> &str {
        match by {
            GroupBy::Team => &self.team,
            GroupBy::Person => &self.person,
            GroupBy::Namespace => &self.namespace,
            GroupBy::Environment => &self.environment,
            GroupBy::Policy => &self.policy,
            GroupBy::Action => &self.action,
        }
    }
}

/// One group: its key values (in `by` order) and what it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub key: BTreeMap<&'static str, String>,
    #[serde(skip)]
    key_order: Vec<String>,
    /// Distinct requests.
    pub requests: usize,
    /// Of those, requests that were actually denied.
    pub denied: usize,
    /// Distinct objects.
    pub objects: usize,
}

/// Group `facts` by `by`, largest groups first.
pub fn group(facts: &[Fact], by: &[GroupBy]) -> Vec<Row> {
    type Sets<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, BTreeSet<&'a str>);
    let mut groups: BTreeMap<Vec<&str>, Sets> = BTreeMap::new();
    for fact in facts {
        let key: Vec<&str> = by.iter().map(|b| fact.key(*b)).collect();
        let (requests, denied, objects) = groups.entry(key).or_default();
        requests.insert(&fact.uid);
        if fact.denied {
            denied.insert(&fact.uid);
        }
        objects.insert(&fact.object);
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, (requests, denied, objects))| Row {
            key: by
                .iter()
                .zip(&key)
                .map(|(b, value)| (b.as_str(), value.to_string()))
                .collect(),
            key_order: key.iter().map(|value| value.to_string()).collect(),
            requests: requests.len(),
            denied: denied.len(),
            objects: objects.len(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.key_order.cmp(&b.key_order))
    });
    rows
}

/// An aligned text table.
pub fn render_text(rows: &[Row], by: &[GroupBy]) -> String {
    let mut table: Vec<Vec<String>> = vec![header(by)];
    table.extend(rows.iter().map(cells));
    let widths: Vec<usize> = (0..table[0].len())
        .map(|column| {
            table
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A Markdown table (for a pull-request comment).
pub fn render_markdown(rows: &[Row], by: &[GroupBy]) -> String {
    let header = header(by);
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let cells: Vec<String> = cells(row).iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn header(by: &[GroupBy]) -> Vec<String> {
    by.iter()
        .map(|b| b.as_str().to_uppercase())
        .chain(["REQUESTS", "DENIED", "OBJECTS"].map(String::from))
        .collect()
}

fn cells(row: &Row) -> Vec<String> {
    row.key_order
        .iter()
        .cloned()
        .chain([row.requests, row.denied, row.objects].map(|n| n.to_string()))
        .collect()
}

/// The fields of an audit record a report reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLine {
    #[serde(default)]
    time: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default = "allowed_by_default")]
    allowed: bool,
    #[serde(default)]
    matches: Vec<PolicyMatch>,
    placement: Option<Landing>,
}

fn allowed_by_default() -> bool {
    true
}

/// Which audit records a report reads, and what counts as a would-be denial.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
    /// Count every match as if enforced, `@enforcement("audit")` policies included; otherwise
    /// a match counts when its policy declares `enforce` (whatever the global mode did).
    pub as_enforced: bool,
}

/// What a report read.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    /// Audit records in the time range.
    pub records: usize,
    /// Of those, requests with a would-be denial.
    pub would_deny: usize,
    /// Of those, requests actually denied.
    pub denied: usize,
    /// Lines that are not audit records, with the reason.
    pub invalid: Vec<String>,
    /// Earliest and latest record time read.
    pub first: Option<String>,
    pub last: Option<String>,
    #[serde(skip)]
    pub facts: Vec<Fact>,
}

/// Read an audit log (JSON lines) into would-be denials.
pub fn read_audit_log(log: impl BufRead, options: &ReportOptions) -> Reading {
    let mut reading = Reading::default();
    for (index, line) in log.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                reading.invalid.push(format!("line {}: {error}", index + 1));
                break;
            }
        };
        if line.trim().is_empty() || !line.trim_start().starts_with('{') {
            // Not a record (a log line or banner mixed into stdout): skipped without a word.
            continue;
        }
        let record: AuditLine = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(error) => {
                reading.invalid.push(format!("line {}: {error}", index + 1));
                continue;
            }
        };
        if !in_range(&record.time, options) {
            continue;
        }
        reading.records += 1;
        if reading.first.is_none() {
            reading.first = Some(record.time.clone());
        }
        reading.last = Some(record.time.clone());
        let before = reading.facts.len();
        facts_of(&record, options.as_enforced, &mut reading.facts);
        if reading.facts.len() > before {
            reading.would_deny += 1;
            reading.denied += usize::from(!record.allowed);
        }
    }
    reading
}

fn in_range(time: &str, options: &ReportOptions) -> bool {
    if options.since.is_none() && options.until.is_none() {
        return true;
    }
    let Ok(time) = time.parse::<jiff::Timestamp>() else {
        return false;
    };
    options.since.is_none_or(|since| time >= since)
        && options.until.is_none_or(|until| time < until)
}

fn joined(values: &[String], fallback: &str) -> String {
    if values.is_empty() {
        fallback.to_string()
    } else {
        values.join(",")
    }
}

fn facts_of(record: &AuditLine, as_enforced: bool, facts: &mut Vec<Fact>) {
    let landing = record.placement.clone().unwrap_or_default();
    let namespace = if landing.namespaces.is_empty() {
        joined(std::slice::from_ref(&record.namespace), "-")
    } else {
        joined(&landing.namespaces, "-")
    };
    let person = if record.principal.is_empty() {
        &record.user
    } else {
        &record.principal
    };
    let object = format!("{} {}/{}", record.kind, record.namespace, record.name);
    for m in &record.matches {
        if !as_enforced && m.declared != Mode::Enforce {
            continue;
        }
        facts.push(Fact {
            uid: record.uid.clone(),
            object: object.clone(),
            person: person.clone(),
            team: joined(&record.teams, "-"),
            namespace: namespace.clone(),
            environment: joined(&landing.environments, "-"),
            policy: m.policy.clone(),
            action: m.action.as_str().to_string(),
            denied: !record.allowed,
        });
    }
}

/// `24h`, `7d`, `30m`, `90s` before `now`, or an RFC 3339 time.
pub fn parse_time(value: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    if let Ok(time) = value.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    let invalid = || format!("{value:?} is neither an RFC 3339 time nor a span such as 24h or 7d");
    let unit = value.chars().last().ok_or_else(invalid)?;
    let number: i64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| invalid())?;
    let seconds = match unit {
        's' => number,
        'm' => number.saturating_mul(60),
        'h' => number.saturating_mul(3600),
        'd' => number.saturating_mul(86_400),
        _ => return Err(invalid()),
    };
    now.checked_sub(jiff::SignedDuration::from_secs(seconds))
        .map_err(|_| invalid())
}

#[cfg(test)]
#[path = "../unit_tests/report_tests.rs"]
mod tests;
