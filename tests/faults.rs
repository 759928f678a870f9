//! Faults an SRE tries before putting Guardrails in front of every deploy with
//! `failurePolicy: Fail`, each against the binary over real sockets and bounded in time: files
//! rewritten in place during a reload, floods of silent connections on both ports, certificates
//! rotated by symlink swaps (twice), expired certificates.

mod common {
    pub mod fixtures;
    pub mod http;
    pub mod json;
    pub mod metrics;
    pub mod objects;
    pub mod policies;
    pub mod process;
    pub mod review;
    pub mod serve;
    pub mod tls;
    pub mod wait;
}

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::client;
use common::metrics::metric_sum;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::PaymentsDev;
use common::serve::{Guardrails, Serve};
use common::tls::tls_client_config;
use common::wait::eventually;
use guardrails::server::tls::{self, PemPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// The chart's webhook timeout is 5 s: an answer later than this is a failed write.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(4);

/// A developer's sync of a prod Application: denied by the shipped policies.
fn prod_sync() -> Vec<u8> {
    let app = app_to("payments-prod");
    let sync = syncing(
        &app,
        json!({"revision": "HEAD"}),
        json!({"username": PaymentsDev.name()}),
    );
    Review::update(&app, &sync).by(PaymentsDev).body()
}

fn allowed(answer: &Value) -> bool {
    answer["response"]["allowed"].as_bool().unwrap()
}

/// `guardrails serve ARGS` with a probe port, `--dev` when `dev_ca` is given; its log in `dir`.
fn start(dir: &Path, dev_ca: Option<&Path>, args: &[&str]) -> Guardrails {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("guardrails"));
    command.arg("serve").args(args).env("RUST_LOG", "info");
    Guardrails::start(Serve {
        command,
        probes: true,
        dev_ca,
        log: Some(&dir.join("guardrails.log")),
    })
}

/// What these tests ask of a running server.
trait Served {
    /// GET `path` on the probe port within `within`: status and body.
    async fn probe(&self, path: &str, within: Duration) -> (u16, String);
    async fn readyz(&self) -> (u16, Value);
    /// The sum of every series of `name` on `/metrics`.
    async fn metric(&self, name: &str) -> f64;
}

impl Served for Guardrails {
    async fn probe(&self, path: &str, within: Duration) -> (u16, String) {
        let probes = self.probes.expect("a probe port");
        let response = client("", true, within)
            .get(format!("http://127.0.0.1:{probes}{path}"))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path} not answered within {within:?}: {error}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn readyz(&self) -> (u16, Value) {
        let (status, body) = self.probe("/readyz", Duration::from_secs(5)).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.probe("/metrics", Duration::from_secs(5)).await;
        metric_sum(&text, name)
    }
}

/// POST `body` to `/validate`: the AdmissionReview answered.
async fn validate(client: &reqwest::Client, served: &Guardrails, body: Vec<u8>) -> Value {
    let response = client
        .post(format!("https://localhost:{}/validate", served.port))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("/validate answered in time");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The moment the reloader last started to compare the disk with what is loaded.
async fn last_checked(served: &Guardrails) -> jiff::Timestamp {
    let (_, ready) = served.readyz().await;
    ready["reload"]["lastChecked"]
        .as_str()
        .expect("checked at start-up")
        .parse()
        .unwrap()
}

/// Return once the reloader has compared the disk with what is loaded from start to end at
/// `due` or later. A check records when it starts; once two have started at `due` or later, the
/// first of them has ended. Each is brought on by touching `config` (its time only: nothing to
/// load).
async fn checked_since(served: &Guardrails, config: &Path, due: jiff::Timestamp) {
    let mut started = 0;
    while started < 2 {
        let before = last_checked(served).await;
        std::fs::File::options()
            .append(true)
            .open(config)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        let mut now = before;
        eventually("a check of the touched config", async || {
            now = last_checked(served).await;
            now != before
        })
        .await;
        if now >= due {
            started += 1;
        }
    }
}

// --- reloads never serve a transient state ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_serves_a_file_caught_mid_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = common::policies::policies(&[]);
    let policies = policy_dir.path();
    let config = dir.path().join("guardrails.yaml");
    let full_config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/guardrails.yaml"),
    )
    .unwrap();
    std::fs::write(&config, &full_config).unwrap();
    let ca = dir.path().join("ca.pem");
    let served = start(
        dir.path(),
        Some(&ca),
        &[
            "--policies",
            policies.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--reload-settle",
            "1500ms",
        ],
    );
    let client = client(
        &std::fs::read_to_string(&ca).unwrap(),
        true,
        WEBHOOK_TIMEOUT,
    );
    assert!(!allowed(&validate(&client, &served, prod_sync()).await));
    let (_, ready) = served.readyz().await;
    let loaded = ready["loaded"].clone();

    // `render > guardrails.yaml`: empty for a moment. Refused; the last good config stays.
    std::fs::write(&config, "").unwrap();
    eventually("the empty config refused", async || {
        let (status, ready) = served.readyz().await;
        assert_eq!(status, 200, "a refused reload keeps the pod ready");
        ready["reload"]["lastError"]
            .as_str()
            .is_some_and(|error| error.contains("empty"))
    })
    .await;
    assert!(!allowed(&validate(&client, &served, prod_sync()).await));

    // Then written halfway: teams, no namespaces yet. Valid, but it takes namespaces away, so
    // it waits; the rest of the file arrives within the settle interval.
    let half = &full_config[..full_config.find("namespaces:").unwrap()];
    std::fs::write(&config, half).unwrap();
    let mut held_since = None;
    eventually("the half-written config held", async || {
        let (_, ready) = served.readyz().await;
        let held = &ready["reload"]["held"];
        held_since = held["since"].as_str().map(str::to_string);
        held["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("namespaces"))
    })
    .await;
    let held_since: jiff::Timestamp = held_since.unwrap().parse().unwrap();
    assert!(!allowed(&validate(&client, &served, prod_sync()).await));
    std::fs::write(&config, &full_config).unwrap();
    eventually("the hold released", async || {
        served.readyz().await.1["reload"]["held"].is_null()
    })
    .await;
    // Had it stayed held, the half-written file would be loaded by a check once it has been on
    // disk for the settle interval: after such a check the full config is still what is loaded.
    checked_since(
        &served,
        &config,
        held_since + jiff::SignedDuration::from_millis(1500),
    )
    .await;
    let (_, ready) = served.readyz().await;
    assert_eq!(ready["loaded"]["config"], loaded["config"], "{ready}");
    assert!(!allowed(&validate(&client, &served, prod_sync()).await));
    assert!(served.metric("guardrails_policy_reloads_held_total").await >= 1.0);

    // A policy file truncated in place: refused, named.
    let argocd = policies.join("argocd.cedar");
    let argocd_text = std::fs::read_to_string(&argocd).unwrap();
    std::fs::write(&argocd, "").unwrap();
    eventually("the empty policy file refused", async || {
        served.readyz().await.1["reload"]["lastError"]
            .as_str()
            .is_some_and(|error| error.contains("argocd.cedar") && error.contains("empty"))
    })
    .await;
    assert!(!allowed(&validate(&client, &served, prod_sync()).await));
    std::fs::write(&argocd, &argocd_text).unwrap();

    // A change that takes something away and stays is loaded once it has settled.
    std::fs::remove_file(policies.join("drift.cedar")).unwrap();
    let before = ready["policies"].as_u64().unwrap();
    eventually("the smaller set loaded after settling", async || {
        let (_, ready) = served.readyz().await;
        ready["policies"].as_u64().unwrap() < before && ready["reload"]["held"].is_null()
    })
    .await;
    assert_eq!(
        served.readyz().await.1["loaded"]["config"],
        loaded["config"]
    );
}

// --- floods of silent connections ---

/// Room for thousands of sockets in this process and the server it starts (a CI machine's soft
/// limit may be 1,024).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
}

/// `n` TCP connections to `port` that never send a byte.
fn silent(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_lock_out_neither_the_webhook_nor_the_probes() {
    raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let served = start(dir.path(), Some(&ca), &["--max-connections", "64"]);
    let client = client(
        &std::fs::read_to_string(&ca).unwrap(),
        true,
        WEBHOOK_TIMEOUT,
    );
    let probes = served.probes.unwrap();
    // Far more silent connections than the cap on each port (the probe port takes 32).
    let mut flood = silent(served.port, 1000);
    flood.extend(silent(probes, 300));
    assert!(flood.len() >= 1200, "only {} connected", flood.len());
    for round in 0..3 {
        let started = Instant::now();
        let answer = validate(&client, &served, prod_sync()).await;
        assert!(!allowed(&answer), "round {round}");
        let (status, _) = served.probe("/healthz", Duration::from_secs(1)).await;
        assert_eq!(status, 200, "round {round}");
        // An attacker reconnecting: a fresh wave before the next request.
        flood.extend(silent(served.port, 300));
        flood.extend(silent(probes, 100));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    assert!(
        served
            .metric("guardrails_connections_closed_total{reason=\"pressure-handshake\"}")
            .await
            + served
                .metric("guardrails_connections_closed_total{reason=\"pressure-silent\"}")
                .await
            >= 100.0,
        "silent connections were not the ones closed to make room"
    );
    drop(flood);
}

// --- certificates ---

/// A kubelet Secret volume: `..<revision>/` holding the pair, `..data` pointing at it, and
/// `tls.crt`, `tls.key` pointing through `..data`. Swapping `..data` replaces both at once.
fn project(dir: &Path, revision: &str, pair: &PemPair) {
    let target = dir.join(format!("..{revision}"));
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(target.join("tls.key"), &pair.key_pem).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(format!("..{revision}"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn leaf(pair: &PemPair) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()
}

/// The certificate the server presents, to a client trusting the CAs of `pairs`.
async fn served_certificate(port: u16, pairs: &[&PemPair]) -> CertificateDer<'static> {
    let cas: String = pairs.iter().map(|pair| pair.ca_pem.as_str()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(&cas)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio::time::timeout(
        WEBHOOK_TIMEOUT,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// A self-signed certificate for localhost valid only between the two dates (year, month, day).
fn dated(from: (i32, u8, u8), until: (i32, u8, u8)) -> PemPair {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: cert.pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_follow_every_symlink_swap_and_expired_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let expired = dated((2020, 1, 1), (2021, 1, 1));
    let future = dated((2999, 1, 1), (3000, 1, 1));
    let files = [
        "--tls-cert",
        certs.join("tls.crt").to_str().unwrap().to_string().leak(),
        "--tls-key",
        certs.join("tls.key").to_str().unwrap().to_string().leak(),
    ];

    // At start-up: an expired or not yet valid certificate is a clear error.
    for (pair, words) in [(&expired, "expired"), (&future, "not valid yet")] {
        project(&certs, words.split(' ').next().unwrap(), pair);
        let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("guardrails"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(files)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{stderr}");
    }

    // Valid for about a day: within the readiness margin given, so /readyz fails until a
    // certificate that lasts is loaded.
    let first = tls::generate_valid_for(&["localhost".into()], "first", 1).unwrap();
    project(&certs, "first", &first);
    let mut args = files.to_vec();
    args.extend(["--unready-before-expiry", "2880m", "--reload-interval", "0"]);
    let served = start(dir.path(), None, &args);
    assert_eq!(
        served_certificate(served.port, &[&first]).await,
        leaf(&first)
    );
    let (status, ready) = served.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["certificate"]["expiring"], true);

    // Two rotations by symlink swap, each old revision deleted (the second was never seen).
    let second = tls::generate_dev().unwrap();
    let third = tls::generate_dev().unwrap();
    for (revision, pair) in [("second", &second), ("third", &third)] {
        project(&certs, revision, pair);
        eventually(revision, async || {
            served_certificate(served.port, &[&first, &second, &third]).await == leaf(pair)
        })
        .await;
    }
    let (status, ready) = served.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["certificate"]["expiring"], false);
    let expiry = served
        .metric("guardrails_tls_certificate_expiry_timestamp_seconds")
        .await;
    assert!(expiry > jiff::Timestamp::now().as_second() as f64 + 300.0 * 86400.0);

    // An expired pair swapped in is refused; the valid one stays in use.
    project(&certs, "expired", &expired);
    eventually("the expired pair refused", async || {
        served.readyz().await.1["certificate"]["lastError"]
            .as_str()
            .is_some_and(|error| error.contains("expired"))
    })
    .await;
    assert_eq!(
        served_certificate(served.port, &[&first, &second, &third]).await,
        leaf(&third)
    );
    assert_eq!(served.readyz().await.0, 200);
}
