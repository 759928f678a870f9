//! Recognition and decision on well-formed reviews with arbitrary objects: the first byte picks
//! the resource, operation and subresource; the rest, split at the first 0xFF byte, is the new
//! and the old object as JSON. Never a panic, and every request gets a decision.
#![no_main]

use std::sync::OnceLock;

use guardrails::decide::Engine;
use guardrails::reload::EngineSource;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // The embedded policies and config: every field at its default.
        EngineSource::default()
            .load()
            .expect("the embedded policies and config load")
    })
}

const RESOURCES: [(&str, &str, &str); 4] = [
    ("argoproj.io", "applications", "Application"),
    ("argoproj.io", "rollouts", "Rollout"),
    ("apps", "deployments", "Deployment"),
    ("", "pods", "Pod"),
];
const OPERATIONS: [&str; 3] = ["CREATE", "UPDATE", "DELETE"];
const SUBRESOURCES: [Option<&str>; 3] = [None, Some("scale"), Some("status")];

fn object(bytes: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(mut map)) => {
            // The API server always sends well-formed metadata; keep the rest arbitrary.
            map.insert(
                "metadata".into(),
                json!({"name": "fuzz", "namespace": "payments-prod"}),
            );
            Value::Object(map)
        }
        _ => Value::Null,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (new, old) = match rest.iter().position(|&b| b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let (group, resource, kind) = RESOURCES[usize::from(selector) % 4];
    let operation = OPERATIONS[usize::from(selector / 4) % 3];
    let sub_resource = SUBRESOURCES[usize::from(selector / 12) % 3];
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "subResource": sub_resource,
            "name": "fuzz",
            "namespace": "payments-prod",
            "operation": operation,
            "userInfo": {"username": "dev@example.com", "groups": ["payments-devs"]},
            "object": object(new),
            "oldObject": object(old),
            "dryRun": false,
        }
    });
    let body = serde_json::to_vec(&review).expect("serialises");
    let Ok(request) = guardrails::admission::parse_review(&body) else {
        return;
    };
    let _ = guardrails::recognize::recognize(&request, &engine().config);
    let reviewed =
        guardrails::respond::validate_review(engine(), &body).expect("a parsed review is answered");
    assert!(reviewed.review.response.is_some());
});
