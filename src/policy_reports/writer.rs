//! The PolicyReport writer task: kube I/O above the decision, like `namespace_watch`. It folds
//! what the request path hands over into `Pending`, and every interval writes the reports of up to
//! `max_writes` namespaces that changed: it reads the namespace's report, merges the waiting
//! results into it (so several replicas, and a restarted process, add to one report instead of
//! overwriting each other) and creates it or updates it at the version it read (a conflict is
//! retried at the next interval). Failures are counted and logged (throttled) and the results wait
//! for the next interval; nothing here can block or change a decision.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::{
    API_VERSION, GROUP, KIND, MANAGED_BY_LABEL, MAX_PENDING_RESULTS, MAX_WRITES_PER_INTERVAL,
    Observation, PLURAL, Pending, REPORT_NAME, ReportResult, SOURCE, VERSION, dropped,
    existing_results, merge, report,
};
use crate::metrics::Metrics;

/// One report's read and write together get at most this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// While writes keep failing, the failure is logged at most this often (every one is counted).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// How often the reports that changed are written.
    pub interval: Duration,
    /// Results kept in one namespace's report.
    pub max_results: usize,
    /// Reports written per interval at most.
    pub max_writes: usize,
}

impl WriterOptions {
    pub fn new(interval: Duration, max_results: usize) -> Self {
        Self {
            interval,
            max_results,
            max_writes: MAX_WRITES_PER_INTERVAL,
        }
    }
}

pub fn api_resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// Run until every sender is gone (then write what waits, once).
pub async fn run(
    client: Client,
    mut receiver: mpsc::Receiver<Observation>,
    options: WriterOptions,
    metrics: Arc<Metrics>,
) {
    let mut pending = Pending::new(options.max_results, MAX_PENDING_RESULTS);
    let mut health = Health::default();
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            received = receiver.recv() => match received {
                Some(observation) => fold(&mut pending, &observation, &metrics),
                None => {
                    write_round(&client, &mut pending, &options, &metrics, &mut health).await;
                    return;
                }
            },
            _ = ticker.tick() => {
                while let Ok(observation) = receiver.try_recv() {
                    fold(&mut pending, &observation, &metrics);
                }
                write_round(&client, &mut pending, &options, &metrics, &mut health).await;
            }
        }
        metrics
            .policy_reports
            .pending_namespaces
            .set(pending.namespaces() as i64);
    }
}

fn fold(pending: &mut Pending, observation: &Observation, metrics: &Metrics) {
    let folded = pending.fold(observation);
    count_losses(metrics, folded);
}

fn count_losses(metrics: &Metrics, folded: super::Folded) {
    let reports = &metrics.policy_reports;
    reports.record_dropped(dropped::EVICTED, folded.evicted as u64);
    reports.record_dropped(dropped::PENDING_FULL, folded.dropped as u64);
}

/// Write up to `max_writes` namespaces' reports. A failure other than a conflict ends the round
/// (the API server is likely down or Guardrails may not write): what was not written waits.
async fn write_round(
    client: &Client,
    pending: &mut Pending,
    options: &WriterOptions,
    metrics: &Metrics,
    health: &mut Health,
) {
    let mut batch = pending.take(options.max_writes).into_iter();
    while let Some((namespace, results)) = batch.next() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &api_resource());
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            write_report(&api, &namespace, results.clone(), options.max_results),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure::Error(format!(
                "no answer within {} s",
                WRITE_TIMEOUT.as_secs()
            )))
        });
        match written {
            Ok(()) => {
                metrics.policy_reports.record_write("written");
                health.written();
                tracing::debug!(%namespace, "PolicyReport written");
            }
            Err(Failure::Conflict) => {
                metrics.policy_reports.record_write("conflict");
                count_losses(metrics, pending.add(&namespace, results));
            }
            Err(Failure::NamespaceGone) => {
                // Deleted (or being deleted) since the request: nothing to report into.
                tracing::debug!(%namespace, "namespace gone; its PolicyReport results are dropped");
                metrics
                    .policy_reports
                    .record_dropped(dropped::NAMESPACE_GONE, results.len() as u64);
            }
            Err(Failure::Error(error)) => {
                metrics.policy_reports.record_write("error");
                health.failed(&namespace, &error);
                count_losses(metrics, pending.add(&namespace, results));
                for (namespace, results) in batch.by_ref() {
                    count_losses(metrics, pending.add(&namespace, results));
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Another writer changed (or created) the report since it was read.
    Conflict,
    /// The namespace does not exist (any more), or is being deleted.
    NamespaceGone,
    Error(String),
}

impl From<kube::Error> for Failure {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.is_conflict() || status.is_already_exists() => {
                Failure::Conflict
            }
            kube::Error::Api(status) if namespace_gone(status) => Failure::NamespaceGone,
            _ => Failure::Error(error.to_string()),
        }
    }
}

/// The API server's refusal to create in a namespace that does not exist (NamespaceLifecycle:
/// `namespaces "x" not found`) or is being deleted (the `NamespaceTerminating` cause). A missing CRD
/// is a 404 too, but not of `namespaces`.
fn namespace_gone(status: &kube::core::Status) -> bool {
    let Some(details) = &status.details else {
        return false;
    };
    (status.is_not_found() && details.kind == "namespaces")
        || (status.is_forbidden()
            && details
                .causes
                .iter()
                .any(|cause| cause.reason == "NamespaceTerminating"))
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Failure::Error(error.to_string())
    }
}

/// Read the namespace's report, merge `results` into it and write it back at that version (or
/// create it). Labels and annotations others put on it are kept.
async fn write_report(
    api: &Api<DynamicObject>,
    namespace: &str,
    results: Vec<ReportResult>,
    max_results: usize,
) -> Result<(), Failure> {
    let params = PostParams {
        dry_run: false,
        field_manager: Some(SOURCE.into()),
    };
    match api.get_opt(REPORT_NAME).await? {
        None => {
            let merged = merge(Vec::new(), results, max_results);
            let object: DynamicObject = serde_json::from_value(report(namespace, &merged, None))?;
            api.create(&params, &object).await?;
        }
        Some(existing) => {
            let value = serde_json::to_value(&existing)?;
            let merged = merge(existing_results(&value), results, max_results);
            let mut object: DynamicObject = serde_json::from_value(report(
                namespace,
                &merged,
                existing.metadata.resource_version.as_deref(),
            ))?;
            let mut labels = existing.metadata.labels.clone().unwrap_or_default();
            labels.insert(MANAGED_BY_LABEL.into(), SOURCE.into());
            object.metadata.labels = Some(labels);
            object.metadata.annotations = existing.metadata.annotations.clone();
            api.replace(REPORT_NAME, &params, &object).await?;
        }
    }
    Ok(())
}

/// Whether writes are failing, for logging a failure once and then at most every
/// `FAILURE_LOG_INTERVAL`, and the recovery.
#[derive(Default)]
struct Health {
    failing: bool,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Health {
    fn failed(&mut self, namespace: &str, error: &str) {
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= FAILURE_LOG_INTERVAL);
        if !self.failing || due {
            tracing::warn!(
                %namespace,
                %error,
                failures = self.unlogged,
                "cannot write PolicyReports (wgpolicyk8s.io/v1alpha2: is the CRD installed, and may Guardrails' service account get, create and update policyreports?); the results wait for the next interval, decisions are unaffected"
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
        self.failing = true;
    }

    fn written(&mut self) {
        if self.failing {
            tracing::info!("PolicyReports are written again");
        }
        self.failing = false;
    }
}
