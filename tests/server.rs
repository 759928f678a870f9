//! The webhook as the API server sees it: HTTP through the router, and real HTTPS over loopback
//! with HTTP/1.1 keep-alive and HTTP/2.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use guardrails::limits::Limits;
use guardrails::server::{self, AppState, ServerHandle};
use guardrails::tls;
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
        .by(PAYMENTS_DEV)
        .uid("7d4c0e2a-1111-4c6b-9a57-000000000001")
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

fn client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = if http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let builder = reqwest::Client::builder().tls_backend_preconfigured(config);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
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
                .by(PAYMENTS_DEV)
                .uid("u-dev-sync"),
            true,
        ),
        (
            Review::delete(&fixture(
                "argocd/applications/argocd-controller-testdata-velero-status-operationState.yaml",
            ))
            .by(PAYMENTS_DEV)
            .uid("u-delete"),
            false,
        ),
        (
            Review::update(
                &base,
                &fixture("deployments/argocd-action-testdata-deployment-scaled.yaml"),
            )
            .by(PAYMENTS_DEV)
            .uid("u-scale")
            .dry_run(),
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
    .by(PAYMENTS_DEV)
    .uid("u-forged");
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
        prod_sync_by_developer().uid("second"),
        Review::update(&dev, &syncing(&dev, json!({}), Value::Null))
            .by(PAYMENTS_DEV)
            .uid("dev"),
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
                .by(PAYMENTS_DEV)
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
            r#"guardrails_policy_matches_total{policy="prod-sync-platform-only",action="sync",mode="enforce"}"#
        ),
        2.0
    );
    assert_eq!(
        get(r#"guardrails_request_duration_seconds_count{webhook="validate"}"#),
        3.0
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
