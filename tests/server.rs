//! The webhook as the API server sees it: HTTP through the router, and real HTTPS over loopback
//! with HTTP/1.1 keep-alive and HTTP/2.

mod common {
    pub mod engine;
    pub mod fixtures;
    pub mod http;
    pub mod json;
    pub mod objects;
    pub mod policies;
    pub mod review;
    pub mod tls;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::engine::engine;
use common::fixtures::fixture;
use common::json::set;
use common::objects::{app_to, syncing};
use common::policies::policies;
use common::review::Review;
use common::review::User::PaymentsDev;
use guardrails::server::limits::Limits;
use guardrails::server::tls;
use guardrails::server::{self, AppState, ServerHandle};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn state() -> AppState {
    AppState::with_audit(engine(), guardrails::audit::AuditLog::disabled())
}

async fn oneshot(request: Request<Body>) -> (StatusCode, Value) {
    let response = server::router(state()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes).to_string()));
    (status, body)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn prod_sync_by_developer() -> Review {
    let prod = app_to("payments-prod");
    Review::update(&prod, &syncing(&prod, json!({}), Value::Null))
        .by(PaymentsDev)
        .set("uid", "7d4c0e2a-1111-4c6b-9a57-000000000001")
}

#[tokio::test]
async fn validate_answers_with_the_review() {
    let (status, body) = oneshot(post("/validate", prod_sync_by_developer().body())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "7d4c0e2a-1111-4c6b-9a57-000000000001"
    );
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 403);
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_clear_message() {
    for (body, needle) in [
        ("", "not a valid AdmissionReview"),
        ("{not json", "not a valid AdmissionReview"),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#,
            "expected kind AdmissionReview",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "has no request",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}"#,
            "not a valid AdmissionReview",
        ),
        (r#"[1,2,3]"#, "not a valid AdmissionReview"),
    ] {
        let (status, response) = oneshot(post("/validate", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error = response["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{body}: {error}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let huge = vec![b' '; guardrails::admission::MAX_BODY_BYTES + 1];
    let (status, _) = oneshot(post("/validate", huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn probes_report_health_and_readiness() {
    let (status, _) = oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ready"], true);
    assert!(body["policies"].as_u64().unwrap() >= 6);

    let state = state();
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    let response = server::router(state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn wrong_method_and_unknown_path() {
    let (status, _) = oneshot(Request::get("/validate").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = oneshot(post("/nope", "{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

struct RunningServer {
    addr: SocketAddr,
    handle: ServerHandle,
    ca_pem: String,
}

async fn start_tls_server() -> RunningServer {
    start_tls_server_with(state(), Limits::default()).await
}

async fn start_tls_server_with(state: AppState, limits: Limits) -> RunningServer {
    let pair = tls::generate_dev().unwrap();
    let config =
        tls::server_config(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes(), "test").unwrap();
    let handle = ServerHandle::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = state.metrics.clone();
    let state = state.with_limits(limits.clone());
    tokio::spawn(server::serve_tls(
        listener,
        tls::ReloadableTls::new(config),
        server::router(state),
        limits,
        metrics,
        handle.clone(),
    ));
    RunningServer {
        addr,
        handle,
        ca_pem: pair.ca_pem,
    }
}

/// A client of the TLS server: HTTP/1.1 only, or HTTP/2 when offered.
fn client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    common::http::client(ca_pem, http1_only, Duration::from_secs(60))
}

async fn send(
    client: &reqwest::Client,
    addr: SocketAddr,
    review: &Review,
) -> (reqwest::Version, Value) {
    let response = client
        .post(format!("https://localhost:{}/validate", addr.port()))
        .header("content-type", "application/json")
        .body(review.body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let version = response.version();
    (version, response.json().await.unwrap())
}

fn reviews() -> Vec<(Review, bool)> {
    let dev = app_to("payments-dev");
    let base = fixture("deployments/argocd-action-testdata-deployment.yaml");
    vec![
        (prod_sync_by_developer(), false),
        (
            Review::update(&dev, &syncing(&dev, json!({}), Value::Null))
                .by(PaymentsDev)
                .set("uid", "u-dev-sync"),
            true,
        ),
        (
            Review::new("DELETE", None, Some(&fixture(
                "argocd/applications/argocd-controller-testdata-velero-status-operationState.yaml",
            )))
            .by(PaymentsDev)
            .set("uid", "u-delete"),
            false,
        ),
        (
            Review::update(
                &base,
                &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
            )
            .by(PaymentsDev)
            .set("uid", "u-scale")
            .set("dryRun", true),
            true,
        ),
    ]
}

#[tokio::test]
async fn https_http1_keep_alive_reuses_one_connection() {
    let server = start_tls_server().await;
    let client = client(&server.ca_pem, true);
    for (review, allowed) in reviews() {
        let (version, body) = send(&client, server.addr, &review).await;
        assert_eq!(version, reqwest::Version::HTTP_11);
        let response = &body["response"];
        assert_eq!(response["uid"], review.request["uid"]);
        assert_eq!(response["allowed"], allowed, "{response}");
        if !allowed {
            assert_eq!(response["status"]["code"], 403);
            assert!(
                response["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Guardrails denied")
            );
        }
    }
    assert_eq!(
        server.handle.connection_count(),
        1,
        "keep-alive should reuse the connection"
    );
    server.handle.stop();
}

#[tokio::test]
async fn https_http2_multiplexes_reviews() {
    let server = start_tls_server().await;
    let client = client(&server.ca_pem, false);
    let mut tasks = Vec::new();
    for (review, allowed) in reviews() {
        let client = client.clone();
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let (version, body) = send(&client, addr, &review).await;
            assert_eq!(version, reqwest::Version::HTTP_2);
            assert_eq!(body["response"]["uid"], review.request["uid"]);
            assert_eq!(body["response"]["allowed"], allowed);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Warnings survive the trip: a forged initiator is reported to the client.
    let dev = app_to("payments-dev");
    let forged = Review::update(
        &dev,
        &syncing(&dev, json!({}), json!({"username": "admin@example.com"})),
    )
    .by(PaymentsDev)
    .set("uid", "u-forged");
    let (_, body) = send(&client, server.addr, &forged).await;
    let warnings = body["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("was ignored"),
        "{warnings:?}"
    );
    assert_eq!(server.handle.connection_count(), 1);
    server.handle.stop();
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_tls_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(
        !reply.starts_with(b"HTTP/1.1 200"),
        "plain HTTP must not be served"
    );
    server.handle.stop();
}

/// Parse OpenMetrics text into (series with labels, value).
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_decisions_policies_and_latency() {
    let state = state();
    let dev = app_to("payments-dev");
    let reviews = [
        prod_sync_by_developer(),
        prod_sync_by_developer().set("uid", "second"),
        Review::update(&dev, &syncing(&dev, json!({}), Value::Null))
            .by(PaymentsDev)
            .set("uid", "dev"),
    ];
    for review in &reviews {
        let response = server::router(state.clone())
            .oneshot(post("/validate", review.body()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = server::router(state.clone())
        .oneshot(post("/validate", "garbage"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server::router(state.clone())
        .oneshot(post(
            "/mutate",
            Review::update(&dev, &syncing(&dev, json!({}), json!({"username": "x"})))
                .by(PaymentsDev)
                .body(),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = server::router(state)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let metrics = parse_metrics(&text);
    let get = |series: &str| {
        *metrics
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };
    assert_eq!(
        get(
            r#"guardrails_admission_requests_total{kind="Application",action="sync",decision="deny",mode="enforce"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            r#"guardrails_admission_requests_total{kind="Application",action="sync",decision="allow",mode="enforce"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"guardrails_policy_matches_total{policy="prod-sync-platform-only",action="sync",mode="enforce",declared="enforce"}"#
        ),
        2.0
    );
    assert_eq!(
        get(r#"guardrails_request_duration_seconds_count{webhook="validate"}"#),
        3.0
    );
    // The second prod sync differs only in its uid: answered from the first one's decision.
    assert_eq!(
        get(r#"guardrails_decision_cache_requests_total{result="hit"}"#),
        1.0
    );
    assert_eq!(
        get(r#"guardrails_decision_cache_requests_total{result="miss"}"#),
        2.0
    );
    assert_eq!(
        get(r#"guardrails_request_duration_seconds_count{webhook="mutate"}"#),
        1.0
    );
    assert!(
        get(r#"guardrails_request_duration_seconds_bucket{le="0.000025",webhook="validate"}"#)
            <= 3.0
    );
    assert_eq!(
        get(r#"guardrails_request_duration_seconds_bucket{le="+Inf",webhook="validate"}"#),
        3.0
    );
    assert_eq!(
        get(r#"guardrails_rejected_requests_total{webhook="validate"}"#),
        1.0
    );
    assert_eq!(get("guardrails_mutations_total"), 1.0);
    assert_eq!(get("guardrails_namespace_cache_synced"), 0.0);
}

async fn post_over_tls(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: Vec<u8>,
) -> (u16, reqwest::Version, String) {
    let response = client
        .post(format!("https://localhost:{}/validate", addr.port()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer, not a reset");
    let status = response.status().as_u16();
    let version = response.version();
    (status, version, response.text().await.unwrap())
}

#[tokio::test]
async fn oversized_bodies_get_a_readable_413_over_http1_and_http2() {
    let server = start_tls_server().await;
    for http1_only in [true, false] {
        let client = client(&server.ca_pem, http1_only);
        let huge = vec![b' '; 6 * 1024 * 1024];
        let (status, version, body) = post_over_tls(&client, server.addr, huge).await;
        assert_eq!(status, 413, "{version:?}: {body}");
        assert!(body.contains("larger than 4194304 bytes"), "{body}");
        // The connection is still good for the next request.
        let (status, _, _) =
            post_over_tls(&client, server.addr, prod_sync_by_developer().body()).await;
        assert_eq!(status, 200, "{version:?}");
    }
    server.handle.stop();
}

#[tokio::test]
async fn rejected_input_is_not_echoed_at_length() {
    // A 3 MB value where an enum is expected: serde quotes it in full.
    let mut review = prod_sync_by_developer().json();
    review["request"]["operation"] = json!("X".repeat(3_000_000));
    let response = server::router(state())
        .oneshot(post("/validate", serde_json::to_vec(&review).unwrap()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() < 1024, "{} bytes echoed back", bytes.len());
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("unknown variant"), "{text}");

    // A 100 KB username (within the userInfo limit) in a denial: named, not repeated whole.
    let user = format!("{}@example.com", "u".repeat(100_000));
    let mut review = prod_sync_by_developer().json();
    review["request"]["userInfo"]["username"] = json!(user);
    let (status, answer) = oneshot(post("/validate", serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], false);
    let size = answer.to_string().len();
    assert!(size < 8 * 1024, "a {size}-byte answer");
}

#[tokio::test]
async fn too_many_groups_or_an_oversized_user_are_refused() {
    for (pointer, value, needle) in [
        (
            "/request/userInfo/groups",
            json!((0..2000).map(|i| format!("g{i}")).collect::<Vec<_>>()),
            "userInfo.groups has 2000 entries",
        ),
        (
            "/request/userInfo/extra",
            json!({"scopes": ["s".repeat(200_000)]}),
            "userInfo is",
        ),
        ("/request/uid", json!("u".repeat(1000)), "uid is 1000 bytes"),
    ] {
        let mut review = prod_sync_by_developer().json();
        set(&mut review, pointer, value);
        let (status, body) = oneshot(post("/validate", serde_json::to_vec(&review).unwrap())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pointer}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{pointer}: {error}");
    }
}

#[tokio::test]
async fn v1beta1_reviews_are_answered_in_kind() {
    let mut review = prod_sync_by_developer().json();
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = oneshot(post("/validate", serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(body["response"]["allowed"], false);
    review["apiVersion"] = json!("admission.k8s.io/v2");
    let (status, body) = oneshot(post("/validate", serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("v1beta1"),
        "{body}"
    );
}

#[tokio::test]
async fn denial_reasons_come_in_the_same_order_every_time() {
    // Several forbids deciding the same request: Cedar reports them in hash order.
    let extra: String = ["delta", "alpha", "echo", "charlie", "bravo", "foxtrot"]
        .iter()
        .map(|name| {
            format!(
                "@id(\"zz-{name}\")\n@reason(\"{name} says no.\")\nforbid (principal, action, resource);\n"
            )
        })
        .collect();
    let dir = policies(&[("zz.cedar", &extra)]);
    let engine = guardrails::decide::Engine::new(
        guardrails::policy::PolicyStore::load_dir(dir.path()).unwrap(),
        guardrails::config::Config::embedded().unwrap(),
        None,
    );
    let state = AppState::with_audit(engine, guardrails::audit::AuditLog::disabled());
    let mut messages = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let response = server::router(state.clone())
            .oneshot(post("/validate", prod_sync_by_developer().body()))
            .await
            .unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        messages.insert(body["response"]["status"]["message"].to_string());
    }
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = messages.into_iter().next().unwrap();
    let alpha = message.find("[zz-alpha]").unwrap();
    let bravo = message.find("[zz-bravo]").unwrap();
    let foxtrot = message.find("[zz-foxtrot]").unwrap();
    assert!(alpha < bravo && bravo < foxtrot, "{message}");
}

#[tokio::test]
async fn requests_beyond_the_memory_budget_are_shed_with_retry_after() {
    let state = state().with_limits(Limits {
        memory_budget: 1024,
        ..Limits::default()
    });
    let response = server::router(state.clone())
        .oneshot(post("/validate", prod_sync_by_developer().body()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&bytes).contains("memory budget"));
    // Probes are not shed.
    let response = server::router(state.clone())
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = state.metrics.encode().unwrap();
    assert!(
        text.contains(r#"guardrails_shed_requests_total{reason="memory"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn readyz_fails_while_draining() {
    let state = state();
    state
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    let response = server::router(state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["draining"], true);
}

/// A CA, and a client certificate (clientAuth) it signed, for mutual TLS.
fn client_ca_and_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver client CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn mtls_client(server_ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn mutual_tls_rejects_clients_without_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (client_ca, client_cert, client_key) = client_ca_and_certificate();
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca).unwrap();
    let pair = tls::generate_dev().unwrap();
    let config = tls::ServingCertificate::Memory(pair.clone())
        .load(Some(&ca_file))
        .unwrap();
    let state = state();
    let handle = ServerHandle::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve_tls(
        listener,
        tls::ReloadableTls::new(config),
        server::router(state.clone()),
        Limits::default(),
        state.metrics.clone(),
        handle.clone(),
    ));
    let url = format!("https://localhost:{}/validate", addr.port());

    let anonymous = mtls_client(&pair.ca_pem, None);
    let refused = anonymous
        .post(&url)
        .body(prod_sync_by_developer().body())
        .send()
        .await;
    assert!(refused.is_err(), "served without a client certificate");

    let (other_ca, other_cert, other_key) = client_ca_and_certificate();
    assert_ne!(other_ca, client_ca);
    let stranger = mtls_client(&pair.ca_pem, Some((&other_cert, &other_key)));
    assert!(
        stranger
            .post(&url)
            .body(prod_sync_by_developer().body())
            .send()
            .await
            .is_err(),
        "served a certificate from another CA"
    );

    let apiserver = mtls_client(&pair.ca_pem, Some((&client_cert, &client_key)));
    let response = apiserver
        .post(&url)
        .header("content-type", "application/json")
        .body(prod_sync_by_developer().body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    handle.stop();
}
