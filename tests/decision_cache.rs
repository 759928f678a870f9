//! The engine remembers decisions by what Cedar saw (`decide::DecisionCache`): a request is
//! answered from memory only when its Cedar inputs equal an earlier one's. What the namespace
//! watch learns changes those inputs, so it is seen at once; the cache stays bounded; a request
//! answered from memory is answered and audited as if decided. `tests/slicing.rs` checks the
//! whole fidelity corpus and its variations against an engine that remembers nothing.

mod common {
    pub mod engine;
    pub mod fixtures;
    pub mod json;
    pub mod objects;
    pub mod review;
}

use std::collections::BTreeMap;
use std::sync::Arc;

use common::engine::engine;
use common::objects::{app_to, syncing};
use common::review::Review;
use common::review::User::{PaymentsDev, StorefrontDev};
use guardrails::cluster::NamespaceLabels;
use guardrails::decide::{
    self, CacheStats, DECISION_CACHE_BYTES, DECISION_CACHE_ENTRIES, DecisionCache,
    LARGEST_REMEMBERED_BYTES,
};
use guardrails::reload::EngineSource;
use guardrails::respond;
use serde_json::{Value, json};

fn sync_of(namespace: &str, who: common::review::User) -> Vec<u8> {
    let app = app_to(namespace);
    Review::update(&app, &syncing(&app, json!({}), Value::Null))
        .by(who)
        .body()
}

fn allowed(engine: &decide::Engine, body: &[u8]) -> bool {
    let request = guardrails::admission::parse_review(body).unwrap();
    decide::decide(engine, &request).unwrap().allowed
}

fn label(namespace: &str, team: &str, environment: &str) -> NamespaceLabels {
    let labels = BTreeMap::from([
        ("guardrails.io/team".to_string(), team.to_string()),
        (
            "guardrails.io/environment".to_string(),
            environment.to_string(),
        ),
    ]);
    NamespaceLabels::from([(namespace.to_string(), labels)])
}

#[test]
fn a_namespace_relabelled_in_the_cluster_is_decided_anew() {
    let engine = engine();
    let body = sync_of("ledger", StorefrontDev);
    engine
        .live_namespaces
        .store(Arc::new(label("ledger", "storefront", "dev")));
    assert!(allowed(&engine, &body), "storefront's dev namespace");
    assert!(allowed(&engine, &body), "remembered");
    let stats = engine.decisions.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert!(stats.bytes > 0);

    // The watch sees the namespace become payments' production: the same request is now denied.
    engine
        .live_namespaces
        .store(Arc::new(label("ledger", "payments", "prod")));
    assert!(!allowed(&engine, &body), "payments' prod namespace");
    assert_eq!(engine.decisions.stats().entries, 2);
}

#[test]
fn each_person_gets_their_own_decision() {
    let engine = engine();
    // payments' prod: its developer and another team's differ in teams (both denied in prod, for
    // different reasons); in dev, only payments' developer may sync.
    let own = sync_of("payments-dev", PaymentsDev);
    let other = sync_of("payments-dev", StorefrontDev);
    for _ in 0..3 {
        assert!(allowed(&engine, &own));
        assert!(!allowed(&engine, &other));
    }
    let stats = engine.decisions.stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (2, 4, 2));
}

#[test]
fn the_cache_is_bounded() {
    let mut engine = engine();
    engine.decisions = DecisionCache::new(3);
    let mut reference = common::engine::engine();
    reference.decisions = DecisionCache::new(0);
    for round in 0..2 {
        for index in 0..10 {
            let body = sync_of(&format!("payments-{index}"), PaymentsDev);
            assert_eq!(
                allowed(&engine, &body),
                allowed(&reference, &body),
                "round {round}, namespace {index}"
            );
            assert!(engine.decisions.stats().entries <= 3);
        }
    }
    let stats = engine.decisions.stats();
    assert_eq!(stats.hits, 0, "ten distinct requests through three places");
}

#[test]
fn a_cache_of_zero_remembers_nothing() {
    let mut engine = engine();
    engine.decisions = DecisionCache::new(0);
    let body = sync_of("payments-prod", PaymentsDev);
    assert!(!allowed(&engine, &body));
    assert!(!allowed(&engine, &body));
    assert_eq!(
        engine.decisions.stats(),
        CacheStats {
            hits: 0,
            misses: 0,
            entries: 0,
            bytes: 0
        }
    );
}

#[test]
fn a_remembered_decision_is_answered_and_audited_as_the_first() {
    let engine = engine();
    let body = sync_of("payments-prod", PaymentsDev);
    let answer = |body: &[u8]| {
        let reviewed = respond::validate_review(&engine, body).unwrap();
        let response = reviewed.response;
        (
            response.allowed,
            response.result.message,
            response.audit_annotations,
            serde_json::to_value(reviewed.outcome.unwrap().matches).unwrap(),
        )
    };
    let first = answer(&body);
    let second = answer(&body);
    assert!(!first.0);
    assert!(first.1.contains("prod-sync-platform-only"), "{}", first.1);
    assert_eq!(first, second);
    assert_eq!(engine.decisions.stats().hits, 1);
}

#[test]
fn serve_sets_the_cache_size_of_every_engine_it_loads() {
    let default = EngineSource::default().load().unwrap();
    assert_eq!(default.decisions.capacity(), DECISION_CACHE_ENTRIES);
    let off = EngineSource {
        decision_cache_entries: Some(0),
        ..EngineSource::default()
    }
    .load()
    .unwrap();
    assert_eq!(off.decisions.capacity(), 0);
    let body = sync_of("payments-prod", PaymentsDev);
    assert!(!allowed(&off, &body));
    assert!(!allowed(&off, &body));
    assert_eq!(off.decisions.stats().entries, 0);
}

/// A sync of an Application carrying `count` labels of about 60 bytes each.
fn labelled_sync(count: usize, seed: usize) -> Vec<u8> {
    let mut app = app_to("payments-prod");
    let labels: serde_json::Map<String, Value> = (0..count)
        .map(|i| {
            (
                format!("example.com/label-{seed}-{i:06}"),
                json!(format!("{:040}", i)),
            )
        })
        .collect();
    app["metadata"]["labels"] = Value::Object(labels);
    Review::update(&app, &syncing(&app, json!({}), Value::Null))
        .by(PaymentsDev)
        .body()
}

#[test]
fn what_the_cache_holds_is_bounded_in_bytes() {
    let engine = engine();
    // Inputs larger than one entry may be are decided every time, never remembered.
    let huge = labelled_sync(2 * LARGEST_REMEMBERED_BYTES / 60, 0);
    assert!(!allowed(&engine, &huge));
    assert!(!allowed(&engine, &huge));
    assert_eq!(engine.decisions.stats().entries, 0);
    // Entries just under that bound: the total stays under the cache's, however many come.
    let mut most = 0;
    for seed in 0..(2 * DECISION_CACHE_BYTES / LARGEST_REMEMBERED_BYTES) {
        let large = labelled_sync(LARGEST_REMEMBERED_BYTES / 2 / 60, seed);
        assert!(!allowed(&engine, &large));
        let stats = engine.decisions.stats();
        assert!(stats.bytes <= DECISION_CACHE_BYTES, "{stats:?}");
        most = most.max(stats.entries);
    }
    assert!(most > 10, "large entries are remembered: {most}");
    assert!(most < DECISION_CACHE_ENTRIES);
}
