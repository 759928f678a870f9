//! The policy store decides each request over only the policies whose scope can match it (sliced
//! by action, principal and resource type at load, large slices indexed by the entity a scope
//! names) and leaves out of the principal's parents the groups no policy names. These tests check
//! that this changes no decision: every outcome equals the one over the whole policy set with every
//! group, for the fidelity corpus and variations of it (other users, groups, namespaces, labels),
//! with the shipped policies and with 1,000 generated ones.
//!
//! The sliced engine also remembers its decisions (`decide::DecisionCache`), shared by every
//! request of a test, and decides each request twice (the second time from memory); the whole
//! set's engine remembers nothing. So these tests also check that no request is answered with
//! the decision remembered for another.

mod common {
    pub mod fixtures;
    pub mod json;
}
#[path = "../benches/support/generate.rs"]
mod generate;

use common::fixtures::{fixture, fixtures_dir};
use common::json::set;
use guardrails::config::Config;
use guardrails::decide::{self, DecisionCache, Engine, Outcome};
use guardrails::policy::PolicyStore;
use proptest::prelude::*;
use serde_json::{Value, json};

fn corpus() -> Vec<Value> {
    let root = fixtures_dir().join("argo-writes");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|dir| std::fs::read_dir(dir.unwrap().path()).into_iter().flatten())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() > 80, "the fidelity corpus is missing");
    files
        .iter()
        .map(|path| fixture(path.strip_prefix(fixtures_dir()).unwrap().to_str().unwrap()))
        // `request-bodies.json` holds what the writers sent, not reviews.
        .filter(|review| review["kind"] == "AdmissionReview")
        .collect()
}

const USERS: &[(&str, &[&str])] = &[
    (
        "bob@example.com",
        &["payments-devs", "system:authenticated"],
    ),
    ("admin@example.com", &["system:authenticated"]),
    ("dev@t00.example.com", &["t00-devs", "system:authenticated"]),
    (
        "lead@t00.example.com",
        &["t00-leads", "t00-devs", "oidc:everyone"],
    ),
    (
        "eve@example.com",
        &["t01-devs", "t03-leads", "platform-admins", "oidc:x"],
    ),
    (
        "system:serviceaccount:t00-prod:deployer",
        &["system:serviceaccounts"],
    ),
    (
        "system:serviceaccount:t01-dev:ci",
        &["system:serviceaccounts", "t00-leads"],
    ),
    (
        "system:serviceaccount:argocd:argocd-application-controller",
        &["system:serviceaccounts"],
    ),
    (
        "system:serviceaccount:argocd:argocd-server",
        &["system:serviceaccounts"],
    ),
];

const NAMESPACES: &[&str] = &[
    "payments-prod",
    "storefront-dev",
    "t00-prod",
    "t00-staging",
    "t00-dev",
    "t01-prod",
    "nowhere",
];

const LABELS: &[(&str, &str)] = &[
    ("tier", "critical"),
    ("guardrails.io/frozen", "true"),
    ("app.kubernetes.io/name", "api"),
];

/// `review` by `user` (None: as written), landing in `namespace` (None: as written), with
/// `label` added to its objects.
fn vary(
    review: &Value,
    user: Option<usize>,
    namespace: Option<usize>,
    label: Option<usize>,
) -> Vec<u8> {
    let mut review = review.clone();
    let request = &mut review["request"];
    if let Some(user) = user {
        let (name, groups) = USERS[user];
        request["userInfo"] = json!({"username": name, "groups": groups});
    }
    let application = request["resource"]["resource"] == "applications";
    for side in ["object", "oldObject"] {
        let object = &mut request[side];
        if !object.is_object() {
            continue;
        }
        if let Some(namespace) = namespace {
            if application {
                set(
                    object,
                    "/spec/destination/namespace",
                    json!(NAMESPACES[namespace]),
                );
            } else {
                set(object, "/metadata/namespace", json!(NAMESPACES[namespace]));
            }
        }
        if let Some(label) = label {
            let (key, value) = LABELS[label];
            set(
                object,
                &format!("/metadata/labels/{}", key.replace('/', "~1")),
                json!(value),
            );
        }
    }
    if let Some(namespace) = namespace
        && !application
    {
        request["namespace"] = json!(NAMESPACES[namespace]);
    }
    serde_json::to_vec(&review).unwrap()
}

/// What must not change: the decision, every match and every evaluation error.
fn summary(outcome: &Outcome) -> (bool, Vec<String>, Vec<String>) {
    let mut matches: Vec<String> = outcome
        .matches
        .iter()
        .map(|m| serde_json::to_string(m).unwrap())
        .collect();
    matches.sort();
    let mut errors = outcome.errors.clone();
    errors.sort();
    (outcome.allowed, matches, errors)
}

/// Decide `body` both ways, the fast way twice (the second time remembered); the reference
/// outcome.
fn assert_same(sliced: &Engine, whole: &Engine, body: &[u8]) -> Outcome {
    let request = guardrails::admission::parse_review(body).unwrap();
    let reference = decide::decide(whole, &request).unwrap();
    for _ in 0..2 {
        let fast = decide::decide(sliced, &request).unwrap();
        assert_eq!(
            summary(&fast),
            summary(&reference),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    reference
}

fn engines(generated: usize) -> (Engine, Engine) {
    let sources = generate::sources(generated);
    let store = || {
        PolicyStore::from_sources(
            sources.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            "test",
        )
        .unwrap()
    };
    let config = || Config::from_yaml(&generate::config(generated.max(20)), "test").unwrap();
    let mut whole = Engine::new(store().unsliced(), config(), None);
    whole.decisions = DecisionCache::new(0);
    (Engine::new(store(), config(), None), whole)
}

#[test]
fn shipped_policies_decide_the_corpus_as_the_whole_set_does() {
    let (sliced, whole) = engines(0);
    for review in corpus() {
        for user in std::iter::once(None).chain((0..USERS.len()).map(Some)) {
            assert_same(&sliced, &whole, &vary(&review, user, None, None));
        }
    }
    // Every decision was remembered once and answered from memory at least once.
    let stats = sliced.decisions.stats();
    assert!(stats.entries > 80, "{stats:?}");
    assert!(stats.hits >= stats.misses, "{stats:?}");
    assert_eq!(whole.decisions.stats().entries, 0);
}

#[test]
fn generated_policies_decide_the_corpus_as_the_whole_set_does() {
    let (sliced, whole) = engines(1000);
    let mut generated_matches = 0;
    for (index, review) in corpus().iter().enumerate() {
        // Each review as written, and by other users in other namespaces with other labels.
        assert_same(&sliced, &whole, &vary(review, None, None, None));
        // Every user, in a generated team's production and staging namespaces.
        for user in 0..USERS.len() {
            for namespace in [2, 3] {
                let body = vary(
                    review,
                    Some(user),
                    Some(namespace),
                    Some((index + user) % 3),
                );
                let outcome = assert_same(&sliced, &whole, &body);
                generated_matches += outcome
                    .matches
                    .iter()
                    .filter(|m| m.policy.starts_with("t0"))
                    .count();
            }
        }
    }
    // The variations reach the generated teams' rules, not only the shipped ones.
    assert!(
        generated_matches > 20,
        "{generated_matches} generated matches"
    );
}

#[test]
fn unnamed_groups_are_left_out_and_named_ones_kept() {
    let (sliced, _) = engines(20);
    let policies = &sliced.policies;
    assert!(policies.names_group("t00-leads"), "named by t00's rules");
    assert!(!policies.names_group("system:authenticated"));
    let whole = PolicyStore::embedded().unwrap().unsliced();
    assert!(
        whole.names_group("system:authenticated"),
        "unsliced keeps all"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn variations_decide_as_the_whole_set_does(
        review in 0usize..1000,
        user in proptest::option::of(0..USERS.len()),
        namespace in proptest::option::of(0..NAMESPACES.len()),
        label in proptest::option::of(0..LABELS.len()),
        generated in prop_oneof![Just(0usize), Just(1000usize)],
    ) {
        thread_local! {
            static CORPUS: Vec<Value> = corpus();
            static SHIPPED: (Engine, Engine) = engines(0);
            static GENERATED: (Engine, Engine) = engines(1000);
        }
        let body = CORPUS.with(|c| vary(&c[review % c.len()], user, namespace, label));
        let check = |(sliced, whole): &(Engine, Engine)| {
            assert_same(sliced, whole, &body);
        };
        if generated == 0 {
            SHIPPED.with(check);
        } else {
            GENERATED.with(check);
        }
    }
}
