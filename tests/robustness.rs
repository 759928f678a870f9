//! Whatever the API server (or an attacker with network access) sends, the webhook answers: a
//! decision with the request's uid, or an envelope error. Never a panic.

mod common {
    pub mod engine;
    pub mod review;
}

use common::engine::engine;
use common::review::Review;
use common::review::User::{ArgocdServer, Controller, PaymentsDev, Platform};
use guardrails::respond;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

static ENGINE: LazyLock<guardrails::decide::Engine> = LazyLock::new(engine);

/// JSON trees built from the keys the recognisers look at, so random input reaches them.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "spec",
        "status",
        "operation",
        "sync",
        "initiatedBy",
        "username",
        "automated",
        "revision",
        "revisions",
        "prune",
        "syncStrategy",
        "apply",
        "hook",
        "force",
        "resources",
        "manifests",
        "history",
        "operationState",
        "phase",
        "syncPolicy",
        "enabled",
        "selfHeal",
        "destination",
        "namespace",
        "server",
        "name",
        "source",
        "sources",
        "targetRevision",
        "repoURL",
        "replicas",
        "paused",
        "template",
        "containers",
        "image",
        "restartAt",
        "pauseConditions",
        "currentStepIndex",
        "promoteFull",
        "abort",
        "metadata",
        "annotations",
        "labels",
        "finalizers",
        "0",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9:/._-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|pairs| Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn object_from(kind: &str, data: Value, seed: u8) -> Value {
    let mut object = match data {
        Value::Object(map) => Value::Object(map),
        other => json!({"spec": other}),
    };
    object["apiVersion"] = json!(if kind == "Deployment" {
        "apps/v1"
    } else {
        "argoproj.io/v1alpha1"
    });
    object["kind"] = json!(kind);
    // The API server always sends well-formed metadata; vary the parts recognisers read.
    object["metadata"] = json!({"name": "x", "namespace": "payments-prod"});
    if seed.is_multiple_of(2) {
        object["metadata"]["finalizers"] =
            json!(["resources-finalizer.argocd.argoproj.io/foreground"]);
    }
    if seed.is_multiple_of(3) {
        object["metadata"]["annotations"] = json!({"argocd.argoproj.io/refresh": "hard", "argocd.argoproj.io/tracking-id": "a:apps/Deployment:ns/x"});
    }
    if seed.is_multiple_of(5) {
        object["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    }
    object
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_object_pair_gets_an_answer(
        kind in prop::sample::select(vec!["Application", "Deployment", "Rollout"]),
        operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        old in arbitrary_json(),
        new in arbitrary_json(),
        user in prop::sample::select(vec![PaymentsDev, Platform, ArgocdServer, Controller]),
        sub in prop::sample::select(vec!["", "scale", "status"]),
        old_seed in any::<u8>(),
        new_seed in any::<u8>(),
    ) {
        let (old, new) = (object_from(kind, old, old_seed), object_from(kind, new, new_seed));
        // Both objects whatever the operation: what a confused or hostile client may send.
        let mut review = Review::update(&old, &new).set("operation", operation).by(user);
        if !sub.is_empty() {
            review = review.set("subResource", sub);
        }
        let reviewed = respond::validate_review(&ENGINE, &review.body()).expect("a well-formed envelope");
        let response = &reviewed.response;
        prop_assert_eq!(&response.uid, review.request["uid"].as_str().unwrap());
        prop_assert!(response.allowed || response.result.code == 403, "{:?}", response.result);
        prop_assert_eq!(guardrails::decide::check_conformance(&ENGINE, &reviewed.request), Ok(()));
        let outcome = reviewed.outcome.expect("decided");
        prop_assert!(!outcome.recognition.expect("recognised").actions.is_empty());
    }

    #[test]
    fn arbitrary_bytes_get_an_envelope_error_or_an_answer_to_their_uid(
        (body, made) in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512).prop_map(|bytes| (bytes, Made::Random)),
            edited_review(),
        ],
    ) {
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let request = parsed.as_ref().map(|review| &review["request"]).filter(|r| r.is_object());
        match (respond::validate_review(&ENGINE, &body), request) {
            (Ok(reviewed), Some(request)) => {
                let response = &reviewed.response;
                prop_assert_eq!(Some(response.uid.as_str()), request["uid"].as_str());
            }
            (Ok(_), None) => prop_assert!(
                false,
                "answered what is not a JSON object with a request: {:?}",
                String::from_utf8_lossy(&body)
            ),
            (Err(error), _) => prop_assert!(
                made != Made::Whole,
                "a whole review refused: {}",
                error
            ),
        }
    }
}

/// How a body under test was made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Made {
    Random,
    /// A well-formed review: it must be answered.
    Whole,
    /// A well-formed review cut short: never JSON.
    Cut,
    /// A well-formed review with one byte changed: JSON or not, a request or not.
    Changed,
}

/// A well-formed review body, whole, cut short or with one byte changed.
fn edited_review() -> impl Strategy<Value = (Vec<u8>, Made)> {
    let app = object_from("Application", json!({"project": "default"}), 0);
    let body = Review::update(&app, &app).by(PaymentsDev).body();
    let whole = body.clone();
    prop_oneof![
        Just((whole, Made::Whole)),
        any::<prop::sample::Index>().prop_map({
            let body = body.clone();
            move |at| (body[..at.index(body.len())].to_vec(), Made::Cut)
        }),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(move |(at, byte)| {
            let mut changed = body.clone();
            changed[at.index(body.len())] = byte;
            (changed, Made::Changed)
        }),
    ]
}

/// How often `character` occurs in the keys and strings of `value` (serde_json writes none of
/// `{[,:` as an escape, so this is also its count inside the body's strings).
fn characters_in_strings(value: &Value, character: char) -> usize {
    let in_text = |text: &str| text.matches(character).count();
    match value {
        Value::String(text) => in_text(text),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| in_text(key) + characters_in_strings(value, character))
            .sum(),
        Value::Array(items) => items
            .iter()
            .map(|item| characters_in_strings(item, character))
            .sum(),
        _ => 0,
    }
}

fn objects_and_members(value: &Value) -> (usize, usize) {
    match value {
        Value::Object(map) => map
            .values()
            .map(objects_and_members)
            .fold((1, map.len()), |(objects, members), (o, m)| {
                (objects + o, members + m)
            }),
        Value::Array(items) => items
            .iter()
            .map(objects_and_members)
            .fold((0, 0), |(objects, members), (o, m)| {
                (objects + o, members + m)
            }),
        _ => (0, 0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The counts the limits and the memory estimate use match the parsed tree, whatever the
    /// strings hold; the vector-wide bounds exceed them by exactly the `{`, `[`, `,` and `:`
    /// written inside strings.
    #[test]
    fn json_counts_match_the_parsed_tree(
        value in arbitrary_json(),
        noise in "[a-z,:{}\\[\\]\"\\\\]{0,12}",
    ) {
        let value = json!({"data": value, "noise": noise});
        let body = serde_json::to_vec(&value).unwrap();
        let counts = guardrails::admission::count_json(&body);
        let (objects, members) = objects_and_members(&value);
        prop_assert_eq!((counts.objects, counts.members), (objects, members));
        let bounds = guardrails::admission::bound_json(&body);
        let quoted = |byte: char| characters_in_strings(&value, byte);
        prop_assert_eq!(bounds.objects, counts.objects + quoted('{'));
        prop_assert_eq!(bounds.members, counts.members + quoted(':'));
        prop_assert_eq!(
            bounds.values,
            counts.values + quoted('{') + quoted('[') + quoted(',')
        );
    }
}
