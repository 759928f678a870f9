//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the format Policy Reporter and Kyverno's and
//! Kubewarden's dashboards read): the policy matches of decided requests, one report named
//! `guardrails` per namespace, written by `serve --policy-reports`.
//!
//! This file is the pure part: what the request path hands over (`Observation`, through a bounded
//! queue that never waits: `Reports::observe`), how observations fold into the results waiting to
//! be written (`Pending`, bounded per namespace and in total), how they merge with the report
//! already in the cluster (`merge`), and the report object (`report`). `writer.rs` is the kube I/O:
//! every interval it writes the namespaces that changed, a bounded number at a time.
//!
//! Mapping: one result per (policy, action, resource), updated in place by the newest match:
//! `policy` is the policy id, `rule` the action, `result` is `fail` for an enforced match (the
//! request was denied) and `warn` for a warn- or audit-mode match (allowed; `properties.mode` says
//! which), `message` the policy's reason, `source` `guardrails`, `resources` the object written;
//! `properties` hold the principal, their teams, the user who sent the request, the operation, the
//! declared and effective modes and the request's uid (to find its audit line). Only namespaced
//! objects are reported (a Namespace's own writes are not: no ClusterPolicyReport), and no
//! dry-run requests (they change nothing, and Argo CD's server-side diffs would churn the reports).

pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::decide::PolicyMatch;
use crate::metrics::Metrics;
use crate::respond::{MAX_ECHOED_CHARS, Reviewed};
use crate::vocabulary::{Kind, Mode};

pub const GROUP: &str = "wgpolicyk8s.io";
pub const VERSION: &str = "v1alpha2";
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
pub const PLURAL: &str = "policyreports";
/// Every namespace's report has this name.
pub const REPORT_NAME: &str = "guardrails";
/// `results[].source`, and the field manager of Guardrails' writes.
pub const SOURCE: &str = "guardrails";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// `--policy-reports-max-results`: results kept in one namespace's report (the newest).
pub const DEFAULT_MAX_RESULTS: usize = 100;
/// The largest `--policy-reports-max-results`: a result is at most about 1.5 KB (names are cut to
/// 253 characters), so a report stays well under etcd's 1.5 MB object limit.
pub const MAX_RESULTS_LIMIT: usize = 500;
/// Observations waiting for the writer task; beyond this they are dropped (counted).
pub const QUEUE_CAPACITY: usize = 1024;
/// Results waiting to be written, all namespaces together; beyond this new ones are dropped
/// (counted). With at most ~1.5 KB a result, about 30 MB at worst.
pub const MAX_PENDING_RESULTS: usize = 20_000;
/// Reports written per interval at most (each a GET and a create or update); the namespaces left
/// over wait for the next interval, oldest change first.
pub const MAX_WRITES_PER_INTERVAL: usize = 50;
/// Teams, joined, are cut to this many characters in `properties.teams`.
const MAX_TEAMS_CHARS: usize = 512;

pub use crate::metrics::policy_report_dropped as dropped;

/// `results[].result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

impl Status {
    /// What a match of this effective mode reports: denied is `fail`, allowed (warn, audit) `warn`.
    pub fn of(effective: Mode) -> Self {
        match effective {
            Mode::Enforce => Status::Fail,
            Mode::Warn | Mode::Audit => Status::Warn,
        }
    }
}

/// `results[].timestamp`: a protobuf Timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl From<jiff::Timestamp> for Timestamp {
    fn from(at: jiff::Timestamp) -> Self {
        Self {
            seconds: at.as_second(),
            nanos: at.subsec_nanosecond(),
        }
    }
}

/// `results[].resources[]`: a core ObjectReference (the fields Guardrails knows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One entry of `results`, as Guardrails writes and reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    pub policy: String,
    #[serde(default)]
    pub rule: String,
    pub result: Status,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub timestamp: Timestamp,
    #[serde(default)]
    pub resources: Vec<ObjectReference>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A result's identity: policy, rule (action), and the object's kind and name.
pub type Key = (String, String, String, String);

impl ReportResult {
    pub fn key(&self) -> Key {
        let resource = self.resources.first().cloned().unwrap_or_default();
        (
            self.policy.clone(),
            self.rule.clone(),
            resource.kind,
            resource.name,
        )
    }
}

/// What the request path hands to the writer: one decided request with policy matches.
#[derive(Debug, Clone)]
pub struct Observation {
    pub namespace: String,
    pub resource: ObjectReference,
    pub principal: String,
    pub user: String,
    pub teams: Vec<String>,
    pub operation: &'static str,
    pub sub_resource: Option<String>,
    pub request_uid: String,
    pub matches: Vec<PolicyMatch>,
    pub at: Timestamp,
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// The observation of a decided request, if it belongs in a report: it had policy matches, it
/// is of a namespaced object with a name, and it is no dry run.
pub fn observation(reviewed: &Reviewed, at: Timestamp) -> Option<Observation> {
    let outcome = reviewed.outcome.as_ref()?;
    if outcome.matches.is_empty() {
        return None;
    }
    let request = &reviewed.request;
    if request.dry_run {
        return None;
    }
    let namespace = crate::admission::object_namespace(request)?;
    let object = request.object.as_ref().or(request.old_object.as_ref());
    let name = Some(request.name.as_str())
        .filter(|n| !n.is_empty())
        .or_else(|| object.and_then(|o| o.metadata.name.as_deref()))
        .filter(|n| !n.is_empty())?;
    let resource = &request.resource;
    let kind = Kind::from_resource(&resource.group, &resource.resource)
        .map_or_else(|| request.kind.kind.clone(), |k| k.as_str().to_string());
    let api_version = if resource.group.is_empty() {
        resource.version.clone()
    } else {
        format!("{}/{}", resource.group, resource.version)
    };
    // A subresource's body (a Scale) carries its parent's uid.
    let uid = object
        .and_then(|o| o.metadata.uid.as_deref())
        .filter(|uid| !uid.is_empty())
        .map(|uid| cut(uid, MAX_ECHOED_CHARS));
    let identity = outcome.identity.as_ref();
    let user = request.user_info.username.as_deref().unwrap_or("");
    Some(Observation {
        namespace: cut(namespace, MAX_ECHOED_CHARS),
        resource: ObjectReference {
            api_version: cut(&api_version, MAX_ECHOED_CHARS),
            kind: cut(&kind, MAX_ECHOED_CHARS),
            namespace: cut(namespace, MAX_ECHOED_CHARS),
            name: cut(name, MAX_ECHOED_CHARS),
            uid,
        },
        principal: cut(
            identity.map_or(user, |i| i.username.as_str()),
            MAX_ECHOED_CHARS,
        ),
        user: cut(user, MAX_ECHOED_CHARS),
        teams: identity.map_or_else(Vec::new, |i| i.teams.clone()),
        operation: crate::admission::operation_name(&request.operation),
        sub_resource: request
            .sub_resource
            .as_deref()
            .map(|s| cut(s, MAX_ECHOED_CHARS)),
        request_uid: cut(&request.uid, MAX_ECHOED_CHARS),
        matches: outcome.matches.clone(),
        at,
    })
}

/// The report results of one observation: one per match.
pub fn results(observation: &Observation) -> Vec<ReportResult> {
    observation
        .matches
        .iter()
        .map(|m| {
            let mut properties = BTreeMap::from([
                ("principal".to_string(), observation.principal.clone()),
                (
                    "teams".to_string(),
                    cut(&observation.teams.join(","), MAX_TEAMS_CHARS),
                ),
                ("mode".to_string(), m.effective.as_str().to_string()),
                ("declared".to_string(), m.declared.as_str().to_string()),
                ("operation".to_string(), observation.operation.to_string()),
                ("requestUid".to_string(), observation.request_uid.clone()),
            ]);
            if observation.user != observation.principal {
                properties.insert("user".to_string(), observation.user.clone());
            }
            if let Some(sub) = &observation.sub_resource {
                properties.insert("subResource".to_string(), sub.clone());
            }
            ReportResult {
                policy: m.policy.clone(),
                rule: m.action.as_str().to_string(),
                result: Status::of(m.effective),
                message: m.reason.clone(),
                source: SOURCE.to_string(),
                timestamp: observation.at,
                resources: vec![observation.resource.clone()],
                properties,
            }
        })
        .collect()
}

/// What folding one observation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// Results added or updated.
    pub kept: usize,
    /// Older results of the same namespace pushed out by the per-namespace bound.
    pub evicted: usize,
    /// New results refused because `max_pending` were already waiting.
    pub dropped: usize,
}

#[derive(Debug, Default)]
struct NamespacePending {
    /// When the oldest change waiting here arrived (a sequence number): written first.
    since: u64,
    results: BTreeMap<Key, ReportResult>,
}

/// The results waiting to be written, per namespace: one per key (the newest), at most
/// `max_results` per namespace (the newest), at most `max_pending` in all.
#[derive(Debug)]
pub struct Pending {
    max_results: usize,
    max_pending: usize,
    namespaces: HashMap<String, NamespacePending>,
    total: usize,
    sequence: u64,
}

impl Pending {
    pub fn new(max_results: usize, max_pending: usize) -> Self {
        Self {
            max_results: max_results.max(1),
            max_pending,
            namespaces: HashMap::new(),
            total: 0,
            sequence: 0,
        }
    }

    /// Namespaces with results waiting.
    pub fn namespaces(&self) -> usize {
        self.namespaces.len()
    }

    /// Results waiting, all namespaces together.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The waiting results of one namespace (for tests and logs).
    pub fn get(&self, namespace: &str) -> Vec<&ReportResult> {
        self.namespaces
            .get(namespace)
            .map(|n| n.results.values().collect())
            .unwrap_or_default()
    }

    pub fn fold(&mut self, observation: &Observation) -> Folded {
        self.add(&observation.namespace, results(observation))
    }

    /// Add results to a namespace's waiting ones: a result replaces an older one of the same key.
    pub fn add(&mut self, namespace: &str, results: Vec<ReportResult>) -> Folded {
        let mut folded = Folded::default();
        self.sequence += 1;
        let sequence = self.sequence;
        let max_results = self.max_results;
        let pending = self
            .namespaces
            .entry(namespace.to_string())
            .or_insert_with(|| NamespacePending {
                since: sequence,
                results: BTreeMap::new(),
            });
        for result in results {
            let key = result.key();
            if let Some(existing) = pending.results.get_mut(&key) {
                if result.timestamp >= existing.timestamp {
                    *existing = result;
                }
                folded.kept += 1;
                continue;
            }
            if self.total >= self.max_pending {
                folded.dropped += 1;
                continue;
            }
            pending.results.insert(key, result);
            self.total += 1;
            folded.kept += 1;
            if pending.results.len() > max_results
                && let Some(oldest) = oldest_key(&pending.results)
            {
                pending.results.remove(&oldest);
                self.total -= 1;
                folded.evicted += 1;
            }
        }
        if pending.results.is_empty() {
            self.namespaces.remove(namespace);
        }
        folded
    }

    /// Take up to `limit` namespaces' results to write, the longest waiting first.
    pub fn take(&mut self, limit: usize) -> Vec<(String, Vec<ReportResult>)> {
        let mut order: Vec<(u64, String)> = self
            .namespaces
            .iter()
            .map(|(name, pending)| (pending.since, name.clone()))
            .collect();
        order.sort();
        order
            .into_iter()
            .take(limit)
            .filter_map(|(_, name)| {
                let pending = self.namespaces.remove(&name)?;
                self.total -= pending.results.len();
                Some((name, pending.results.into_values().collect()))
            })
            .collect()
    }
}

/// The key of the oldest result (ties: the smallest key).
fn oldest_key(results: &BTreeMap<Key, ReportResult>) -> Option<Key> {
    results
        .iter()
        .min_by(|a, b| a.1.timestamp.cmp(&b.1.timestamp).then(a.0.cmp(b.0)))
        .map(|(key, _)| key.clone())
}

/// The results of a report read from the cluster that Guardrails can read back (others, e.g.
/// written by hand in a shape it does not know, are dropped on the next write).
pub fn existing_results(report: &Value) -> Vec<ReportResult> {
    report["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A namespace's report results: what the cluster has and what waits, one per key (the newer
/// wins; on a tie, the waiting one), the newest `max_results`, in key order.
pub fn merge(
    existing: Vec<ReportResult>,
    pending: Vec<ReportResult>,
    max_results: usize,
) -> Vec<ReportResult> {
    let mut merged: BTreeMap<Key, ReportResult> = BTreeMap::new();
    for (from_pending, result) in existing
        .into_iter()
        .map(|r| (false, r))
        .chain(pending.into_iter().map(|r| (true, r)))
    {
        let key = result.key();
        match merged.get(&key) {
            Some(kept)
                if kept.timestamp > result.timestamp
                    || (kept.timestamp == result.timestamp && !from_pending) => {}
            _ => {
                merged.insert(key, result);
            }
        }
    }
    if merged.len() > max_results {
        let mut by_age: Vec<(Timestamp, Key)> = merged
            .iter()
            .map(|(key, r)| (r.timestamp, key.clone()))
            .collect();
        by_age.sort();
        let excess = merged.len() - max_results;
        for (_, key) in by_age.into_iter().take(excess) {
            merged.remove(&key);
        }
    }
    merged.into_values().collect()
}

/// `summary`: the results counted by `result`.
pub fn summary(results: &[ReportResult]) -> Value {
    let count = |status| results.iter().filter(|r| r.result == status).count();
    json!({
        "pass": count(Status::Pass),
        "fail": count(Status::Fail),
        "warn": count(Status::Warn),
        "error": count(Status::Error),
        "skip": count(Status::Skip),
    })
}

/// The PolicyReport object of one namespace (`resource_version` for an update).
pub fn report(namespace: &str, results: &[ReportResult], resource_version: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": REPORT_NAME,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: SOURCE},
    });
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = json!(version);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "results": results,
        "summary": summary(results),
    })
}

/// The request path's handle: hands observations to the writer task without ever waiting.
#[derive(Clone)]
pub struct Reports {
    sender: mpsc::Sender<Observation>,
    metrics: Arc<Metrics>,
}

impl Reports {
    /// A handle and the receiving end for `writer::run`.
    pub fn channel(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Observation>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Self { sender, metrics }, receiver)
    }

    /// Hand a decided request over if it belongs in a report; when the queue is full it is
    /// dropped and counted (one count per result).
    pub fn observe(&self, reviewed: &Reviewed) {
        let Some(observation) = observation(reviewed, jiff::Timestamp::now().into()) else {
            return;
        };
        let results = observation.matches.len() as u64;
        if self.sender.try_send(observation).is_err() {
            self.metrics
                .policy_reports
                .record_dropped(dropped::QUEUE_FULL, results);
        }
    }
}

#[cfg(test)]
#[path = "../unit_tests/policy_reports_tests.rs"]
mod tests;
