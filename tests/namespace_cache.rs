//! The namespace cache against a mocked Kubernetes API speaking the real list/watch wire format:
//! first list, watch events, then an API outage during which the last cache keeps serving.

mod common {
    pub mod engine;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
    pub mod wait;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::engine::engine;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::StorefrontDev;
use common::wait::eventually;
use guardrails::metrics::Metrics;
use guardrails::namespace_watch;
use guardrails::respond;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

fn namespace(name: &str, version: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "resourceVersion": version, "labels": labels}})
}

fn respond_json(
    send: tower_test::mock::SendResponse<Response<Body>>,
    status: StatusCode,
    body: Value,
) {
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

#[tokio::test]
async fn namespace_labels_are_watched_and_survive_an_api_outage() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let requests = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut watches = 0;
        while let Some((request, send)) = handle.next_request().await {
            let uri = request.uri().to_string();
            seen.lock().unwrap().push(uri.clone());
            assert_eq!(request.method(), http::Method::GET);
            assert!(uri.starts_with("/api/v1/namespaces?"), "{uri}");
            if !uri.contains("watch=true") {
                respond_json(
                    send,
                    StatusCode::OK,
                    json!({
                        "apiVersion": "v1", "kind": "NamespaceList",
                        "metadata": {"resourceVersion": "10"},
                        "items": [
                            namespace("checkout-prod", "5", json!({"guardrails.io/team": "storefront", "guardrails.io/environment": "prod"})),
                            namespace("sandbox", "6", json!({})),
                        ],
                    }),
                );
            } else if watches == 0 {
                watches += 1;
                // One watch response carrying two events, then the stream ends (as a timeout does).
                let events = [
                    json!({"type": "ADDED", "object": namespace("ledger-prod", "11", json!({"guardrails.io/team": "payments", "guardrails.io/environment": "prod"}))}),
                    json!({"type": "MODIFIED", "object": namespace("sandbox", "12", json!({"guardrails.io/environment": "dev"}))}),
                ];
                let body: Vec<u8> = events
                    .iter()
                    .flat_map(|e| {
                        let mut line = serde_json::to_vec(e).unwrap();
                        line.push(b'\n');
                        line
                    })
                    .collect();
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(body))
                        .unwrap(),
                );
            } else {
                // The API server is gone: every further call fails.
                respond_json(
                    send,
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "the server is currently unable to handle the request",
                        "reason": "ServiceUnavailable", "code": 503,
                    }),
                );
            }
        }
    });

    let engine = engine();
    let live = engine.live_namespaces.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(namespace_watch::watch_namespaces(
        client,
        live.clone(),
        ready.clone(),
        metrics.clone(),
    ));

    eventually("the first list", async || ready.load(Ordering::Acquire)).await;
    assert_eq!(
        live.load()["checkout-prod"]["guardrails.io/team"],
        "storefront"
    );
    eventually("the watch events", async || {
        live.load().contains_key("ledger-prod")
    })
    .await;
    assert_eq!(live.load()["sandbox"]["guardrails.io/environment"], "dev");

    // The outage is counted, and the cache keeps what it had.
    eventually("the outage to be counted", async || {
        metrics
            .encode()
            .unwrap()
            .contains("guardrails_namespace_cache_errors_total 1")
            || metrics
                .encode()
                .unwrap()
                .contains("guardrails_namespace_cache_errors_total 2")
    })
    .await;
    assert!(
        ready.load(Ordering::Acquire),
        "an outage after sync does not make the webhook unready"
    );
    assert!(
        metrics
            .encode()
            .unwrap()
            .contains("guardrails_namespace_cache_synced 1")
    );
    assert_eq!(live.load().len(), 3);
    let uris = requests.lock().unwrap().clone();
    assert!(
        uris.iter()
            .any(|u| u.contains("watch=true") && u.contains("resourceVersion=10")),
        "{uris:?}"
    );

    // Decisions use the live labels: ledger-prod is payments' prod only according to the cluster.
    let app = app_to("ledger-prod");
    let review = Review::update(&app, &syncing(&app, json!({}), Value::Null)).by(StorefrontDev);
    let response = respond::validate_review(&engine, &review.body())
        .unwrap()
        .response;
    assert!(!response.allowed);
    assert_eq!(
        response.audit_annotations["policies"],
        "prod-sync-platform-only=enforce,team-owns-namespace=enforce"
    );
    let app = app_to("sandbox");
    let review = Review::update(&app, &syncing(&app, json!({}), Value::Null)).by(StorefrontDev);
    assert!(
        respond::validate_review(&engine, &review.body())
            .unwrap()
            .response
            .allowed
    );
}
