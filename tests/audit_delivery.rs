//! Audit records and logs never hold up a decision: a stalled or failing destination loses
//! records, each one counted and shown on `/readyz`; `--audit-log-on-loss=fail` refuses instead;
//! the file follows rotation and SIGHUP (which never kills); `/metrics` labels stay a closed set.

mod common {
    pub mod engine;
    pub mod fixtures;
    pub mod http;
    pub mod json;
    pub mod objects;
    pub mod process;
    pub mod review;
    pub mod serve;
    pub mod tls;
    pub mod wait;
}

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::engine::engine;
use common::http::client;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::PaymentsDev;
use common::serve::{Guardrails, Serve};
use common::wait::eventually;
use guardrails::audit::{AuditLog, AuditOptions, AuditSink, LossPolicy, LossReason};
use guardrails::server::{self, AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Generous: the machine is shared and noisy; a stalled writer would block for ever.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

fn review(i: usize) -> Vec<u8> {
    let prod = app_to("payments-prod");
    Review::update(&prod, &syncing(&prod, json!({}), Value::Null))
        .by(PaymentsDev)
        .set("uid", format!("uid-{i}"))
        .body()
}

/// Send through the router; the answer must come within `ANSWER_WITHIN`.
async fn call(state: &AppState, request: Request<Body>) -> (u16, Vec<u8>) {
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_WITHIN, async {
        let response = server::router(state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    })
    .await;
    // The timeout cannot fire while a handler blocks its thread, hence the clock too.
    assert!(
        started.elapsed() < ANSWER_WITHIN,
        "answered in {:?}",
        started.elapsed()
    );
    answer.expect("answered in time")
}

async fn validate(state: &AppState, body: Vec<u8>) -> Value {
    let (status, body) = call(
        state,
        Request::post("/validate").body(Body::from(body)).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

async fn get(state: &AppState, path: &str) -> (u16, String) {
    let (status, body) = call(state, Request::get(path).body(Body::empty()).unwrap()).await;
    (status, String::from_utf8(body).unwrap())
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}

fn options(on_loss: LossPolicy, buffer_bytes: usize) -> AuditOptions {
    AuditOptions {
        include_requests: true,
        max_request_bytes: 1 << 20,
        on_loss,
        buffer_bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_never_stalls_decisions_and_every_loss_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that opens the FIFO (so the writer can) but reads nothing until released.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::open(fifo).unwrap();
            // Bounded, so that a test that fails (decisions stuck behind the writer) ends.
            let _ = released.recv_timeout(Duration::from_secs(30));
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            text
        })
    };
    let audit = AuditLog::to_file(&fifo, options(LossPolicy::Drop, 32 * 1024)).unwrap();
    let counters = audit.counters().clone();
    let state = AppState::with_audit(engine(), audit);

    const SENT: usize = 200;
    for i in 0..SENT {
        let answer = validate(&state, review(i)).await;
        assert_eq!(answer["response"]["allowed"], false, "decided as usual");
    }
    assert_eq!(get(&state, "/healthz").await.0, 200);
    let (status, readyz) = get(&state, "/readyz").await;
    assert_eq!(
        status, 200,
        "a failing audit log does not make the pod unready"
    );
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    let audit = &readyz["audit"];
    assert_eq!(audit["healthy"], false, "{audit}");
    assert_eq!(audit["onLoss"], "drop");
    let dropped = audit["droppedBufferFull"].as_u64().unwrap();
    assert!(dropped > 0, "{audit}");
    assert!(audit["lastError"].as_str().unwrap().contains("buffer_full"));
    let (_, metrics) = get(&state, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"guardrails_audit_records_dropped_total{reason="buffer_full"}"#
        ),
        dropped as f64
    );
    assert!(metric(&metrics, "guardrails_audit_buffered_bytes") <= (32 * 1024) as f64);

    // Unstall: everything not counted as lost arrives, in whole lines.
    release.send(()).unwrap();
    drop(state);
    let text = reader.join().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a whole record per line"))
        .collect();
    assert_eq!(lines.len() as u64 + dropped, SENT as u64);
    assert_eq!(counters.written.get(), lines.len() as u64);
    assert_eq!(counters.dropped(LossReason::WriteError), 0);
    assert_eq!(counters.buffered_records.get(), 0);
}

#[tokio::test]
async fn a_full_disk_is_counted_and_shown_on_readyz() {
    let state = AppState::with_audit(
        engine(),
        AuditLog::to_file(Path::new("/dev/full"), options(LossPolicy::Drop, 1 << 20)).unwrap(),
    );
    for i in 0..20 {
        let answer = validate(&state, review(i)).await;
        assert_eq!(
            answer["response"]["status"]["code"], 403,
            "decided as usual"
        );
    }
    assert!(state.audit.flush(Duration::from_secs(10)));
    let (status, readyz) = get(&state, "/readyz").await;
    assert_eq!(status, 200);
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    let audit = &readyz["audit"];
    assert_eq!(audit["droppedWriteError"], 20, "{audit}");
    assert_eq!(audit["written"], 0);
    assert_eq!(audit["healthy"], false);
    assert!(
        audit["lastError"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{audit}"
    );
    let (_, metrics) = get(&state, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"guardrails_audit_records_dropped_total{reason="write_error"}"#
        ),
        20.0
    );
}

/// A disk that is full until `space` is set.
#[derive(Clone, Default)]
struct Disk {
    space: Arc<Mutex<bool>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AuditSink for Disk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !*self.space.lock().unwrap() {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
}

#[tokio::test]
async fn with_on_loss_fail_nothing_is_admitted_unrecorded_until_the_log_recovers() {
    let disk = Disk::default();
    let audit = AuditLog::with_sink(
        "test",
        Box::new(disk.clone()),
        options(LossPolicy::Fail, 1 << 20),
    );
    let state = AppState::with_audit(engine(), audit);
    let allowed_sync = || {
        let dev = app_to("payments-dev");
        Review::update(&dev, &syncing(&dev, json!({}), Value::Null))
            .by(PaymentsDev)
            .set("uid", "allowed")
            .body()
    };
    // The failure is found by the first write; that request was already answered.
    let first = validate(&state, allowed_sync()).await;
    assert_eq!(first["response"]["allowed"], true);
    assert!(state.audit.flush(Duration::from_secs(10)));
    let refused = validate(&state, allowed_sync()).await;
    assert_eq!(refused["response"]["allowed"], false, "{refused}");
    assert_eq!(refused["response"]["status"]["code"], 503);
    assert_eq!(refused["response"]["uid"], "allowed");
    assert!(
        refused["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("audit log")
    );
    assert!(state.audit.flush(Duration::from_secs(10)));
    // Space again: the next record written clears the failure; later requests are decided.
    *disk.space.lock().unwrap() = true;
    let refused_but_recorded = validate(&state, allowed_sync()).await;
    assert_eq!(refused_but_recorded["response"]["allowed"], false);
    assert!(state.audit.flush(Duration::from_secs(10)));
    let decided = validate(&state, allowed_sync()).await;
    assert_eq!(decided["response"]["allowed"], true, "{decided}");
    assert!(state.audit.flush(Duration::from_secs(10)));
    let text = String::from_utf8(disk.written.lock().unwrap().clone()).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["decision"], "error",
        "the record says what was answered"
    );
    assert_eq!(records[0]["allowed"], false);
    assert_eq!(records[1]["decision"], "allow");
    let counters = state.audit.counters();
    assert_eq!(counters.dropped(LossReason::WriteError), 2);
    let (_, metrics) = get(&state, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"guardrails_admission_requests_total{kind="Application",action="sync",decision="error",mode="enforce"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn metrics_stay_bounded_whatever_kinds_and_resources_clients_send() {
    let state = AppState::with_audit(engine(), AuditLog::disabled());
    let prod = app_to("payments-prod");
    let template = Review::update(&prod, &syncing(&prod, json!({}), Value::Null))
        .by(PaymentsDev)
        .json();
    for i in 0..2000 {
        let mut review = template.clone();
        review["request"]["uid"] = json!(format!("junk-{i}"));
        review["request"]["kind"]["kind"] = json!(format!("Junk{i}{}", "x".repeat(100)));
        if i % 2 == 0 {
            review["request"]["resource"]["resource"] = json!(format!("junk{i}s"));
            review["request"]["requestKind"] =
                json!({"group": "x", "version": "v1", "kind": format!("J{i}")});
        }
        validate(&state, serde_json::to_vec(&review).unwrap()).await;
    }
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(!metrics.contains("Junk"), "a request's kind became a label");
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("guardrails_admission_requests_total"))
        .count();
    assert!(series <= 4, "{series} series:\n{metrics}");
    assert!(
        metrics.contains(r#"kind="other",action="",decision="unsupported""#),
        "{metrics}"
    );
    assert!(
        metrics.len() < 16 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
}

// --- the binary: stdout and stderr that nobody reads, SIGHUP, rotation ---

struct Served {
    guardrails: Guardrails,
    ca: String,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

/// `guardrails serve --dev` with a probe port and `args`, stdout and stderr piped (and not read
/// unless a test does).
fn serve(dir: &Path, args: &[&str]) -> Served {
    let ca = dir.join("ca.pem");
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("guardrails"));
    command
        .arg("serve")
        .args(args)
        // Plenty of log lines for a stderr nobody reads.
        .env("RUST_LOG", "debug");
    let mut guardrails = Guardrails::start(Serve {
        command,
        probes: true,
        dev_ca: Some(&ca),
        log: None,
    });
    // stdout carries the audit records alone (the --dev banner goes to stderr, with the logs).
    let stdout = BufReader::new(guardrails.child.stdout.take().unwrap());
    Served {
        guardrails,
        ca: std::fs::read_to_string(&ca).unwrap(),
        stdout: Some(stdout),
    }
}

impl Served {
    async fn validate(&self, client: &reqwest::Client, i: usize) {
        let response = client
            .post(format!(
                "https://localhost:{}/validate",
                self.guardrails.port
            ))
            .header("content-type", "application/json")
            .body(review(i))
            .send()
            .await
            .expect("answered in time");
        assert_eq!(response.status(), 200);
    }

    async fn probe(&self, path: &str) -> String {
        let probes = self.guardrails.probes.unwrap();
        let response = client(&self.ca, true, ANSWER_WITHIN)
            .get(format!("http://127.0.0.1:{probes}{path}"))
            .send()
            .await
            .expect("probe answered in time");
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.guardrails.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn alive(&mut self) -> bool {
        self.guardrails.child.try_wait().unwrap().is_none()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_nobody_reads_stall_nothing_and_sighup_never_kills() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(
        dir.path(),
        &["--audit-log-requests", "--audit-log-buffer-bytes", "65536"],
    );
    served.signal("HUP");
    let client = client(&served.ca, true, ANSWER_WITHIN);
    const SENT: usize = 300;
    for i in 0..SENT {
        served.validate(&client, i).await;
    }
    served.probe("/healthz").await;
    served.signal("HUP");
    let readyz: Value = serde_json::from_str(&served.probe("/readyz").await).unwrap();
    assert_eq!(readyz["audit"]["destination"], "stdout");
    let metrics = served.probe("/metrics").await;
    let dropped = metric(
        &metrics,
        r#"guardrails_audit_records_dropped_total{reason="buffer_full"}"#,
    );
    assert!(dropped > 0.0, "{metrics}");
    assert!(served.alive(), "SIGHUP killed the server");

    // Read what was kept, then stop the server: every record is either a whole line or counted.
    let mut stdout = served.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    served.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.alive() {
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = reader.join().unwrap();
    let records = text
        .lines()
        .inspect(|line| {
            serde_json::from_str::<Value>(line).expect("whole lines only");
        })
        .count();
    assert_eq!(records as f64 + dropped, SENT as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_file_follows_rotation_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut served = serve(dir.path(), &["--audit-log", log.to_str().unwrap()]);
    let client = client(&served.ca, true, ANSWER_WITHIN);
    let lines = |path: &Path| -> usize {
        std::fs::read_to_string(path).map_or(0, |text| {
            text.lines()
                .inspect(|line| {
                    serde_json::from_str::<Value>(line).unwrap();
                })
                .count()
        })
    };
    for i in 0..3 {
        served.validate(&client, i).await;
    }
    eventually("3 records", async || lines(&log) == 3).await;

    // logrotate's create mode: rename, then SIGHUP.
    let first = dir.path().join("audit.jsonl.1");
    std::fs::rename(&log, &first).unwrap();
    served.signal("HUP");
    eventually("reopened", async || log.exists()).await;
    for i in 3..6 {
        served.validate(&client, i).await;
    }
    eventually("3 records in the new file", async || lines(&log) == 3).await;
    assert_eq!(lines(&first), 3);
    assert!(served.alive(), "SIGHUP killed the server");

    // Renamed without a signal: noticed within about a second, no record lost.
    let second = dir.path().join("audit.jsonl.2");
    std::fs::rename(&log, &second).unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < deadline, "rotation never noticed");
        served.validate(&client, 100 + sent).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    served.validate(&client, 999).await;
    eventually("every record in one file or the other", async || {
        lines(&second) + lines(&log) == 3 + sent + 1
    })
    .await;

    // Deleted: a new file is created.
    std::fs::remove_file(&log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&log) == 0 {
        assert!(Instant::now() < deadline, "deletion never noticed");
        served.validate(&client, 1000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = served.probe("/metrics").await;
    assert!(
        metric(&metrics, "guardrails_audit_reopens_total") >= 3.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_starts_on_a_fresh_line_after_a_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    // What a process killed mid-write (or out of disk) leaves: a whole record, then half of one.
    let whole = r#"{"time":"2026-12-04T00:00:00Z","uid":"before","allowed":true}"#;
    let torn = r#"{"time":"2026-12-04T00:00:01Z","uid":"torn","all"#;
    std::fs::write(&log, format!("{whole}\n{torn}")).unwrap();
    let served = serve(
        dir.path(),
        &["--audit-log", log.to_str().unwrap(), "--audit-log-requests"],
    );
    let client = client(&served.ca, true, ANSWER_WITHIN);
    for i in 0..2 {
        served.validate(&client, i).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= 4 {
            break lines;
        }
        assert!(Instant::now() < deadline, "records never written: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines[0], whole);
    assert_eq!(lines[1], torn, "the fragment stays alone on its line");
    for line in &lines[2..] {
        let record: Value = serde_json::from_str(line).expect("every new record is whole");
        assert!(record["request"].is_object(), "{line}");
    }
    let metrics = served.probe("/metrics").await;
    assert_eq!(
        metric(&metrics, "guardrails_audit_torn_tails_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "guardrails_audit_records_written_total"),
        2.0
    );
    drop(served);

    let report = Command::new(assert_cmd::cargo::cargo_bin("guardrails"))
        .args(["replay", "--output", "json", "--log", log.to_str().unwrap()])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["replayed"], 2, "{report}");
    assert_eq!(report["torn"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["torn"][0].as_str().unwrap().starts_with("line 2:"));
    // The whole record without a request is skipped, not invalid.
    assert_eq!(report["invalid"].as_array().unwrap().len(), 0, "{report}");
}
