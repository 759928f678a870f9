//! Namespaces as a decided kind: only the trust labels (`namespaceLabels`) and deletion are
//! actions; the Namespace entity and the `relabel` context conform to the schema; the placement
//! follows the labels on each side of the change and `namespaceLabels.precedence`.

use guardrails::authoring::synth::{Synthetic, read_manifest};
use guardrails::config::Config;
use guardrails::decide::{self, Engine};
use guardrails::policy::PolicyStore;
use guardrails::recognize::{Recognized, Relabel, recognize};
use guardrails::vocabulary::{Action, Verdict};
use serde_json::{Value, json};

fn manifest(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/tests/manifests")
        .join(name);
    read_manifest(&path).unwrap_or_else(|error| panic!("{error:#}"))
}

fn engine_with(config: Config) -> Engine {
    Engine::new(
        PolicyStore::embedded().expect("shipped policies"),
        config,
        None,
    )
}

fn engine() -> Engine {
    engine_with(Config::embedded().expect("embedded config"))
}

fn request(
    operation: &str,
    old: Option<Value>,
    new: Option<Value>,
    user: &str,
    groups: &[&str],
) -> guardrails::admission::Request {
    let review = Synthetic {
        object: new,
        old_object: old,
        operation: operation.into(),
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        uid: "namespaces-test".into(),
        ..Synthetic::default()
    }
    .admission_review()
    .expect("a review");
    let body = serde_json::to_vec(&review).expect("serialises");
    *guardrails::admission::parse_review(&body).expect("parses")
}

fn with_label(mut namespace: Value, key: &str, value: Option<&str>) -> Value {
    let labels = &mut namespace["metadata"]["labels"];
    match value {
        Some(value) => labels[key] = json!(value),
        None => {
            if let Some(map) = labels.as_object_mut() {
                map.remove(key);
            }
        }
    }
    namespace
}

fn recognised(engine: &Engine, request: &guardrails::admission::Request) -> (Vec<Action>, Relabel) {
    match recognize(request, &engine.config) {
        Recognized::Known(recognition) => (
            recognition.actions,
            recognition.relabel.map(|r| *r).unwrap_or_default(),
        ),
        Recognized::Unsupported { resource } => panic!("{resource} not recognised"),
    }
}

#[test]
fn only_trust_labels_and_deletion_are_actions() {
    let engine = engine();
    let prod = manifest("namespace-payments-prod.yaml");
    let bob = ("bob@example.com", &["payments-devs"][..]);

    let relabel = request(
        "UPDATE",
        Some(prod.clone()),
        Some(with_label(
            prod.clone(),
            "guardrails.io/environment",
            Some("dev"),
        )),
        bob.0,
        bob.1,
    );
    let (actions, relabelled) = recognised(&engine, &relabel);
    assert_eq!(actions, [Action::Relabel]);
    assert_eq!(
        relabelled,
        Relabel {
            old_team: "payments".into(),
            new_team: "payments".into(),
            old_environment: "prod".into(),
            new_environment: "dev".into(),
        }
    );

    let removed = request(
        "UPDATE",
        Some(prod.clone()),
        Some(with_label(prod.clone(), "guardrails.io/team", None)),
        bob.0,
        bob.1,
    );
    let (actions, relabelled) = recognised(&engine, &removed);
    assert_eq!(actions, [Action::Relabel]);
    assert_eq!(
        (relabelled.old_team.as_str(), relabelled.new_team.as_str()),
        ("payments", "")
    );

    let other_label = request(
        "UPDATE",
        Some(prod.clone()),
        Some(with_label(prod.clone(), "cost-center", Some("4711"))),
        bob.0,
        bob.1,
    );
    assert_eq!(recognised(&engine, &other_label).0, []);

    let deleted = request("DELETE", Some(prod.clone()), None, bob.0, bob.1);
    let (actions, relabelled) = recognised(&engine, &deleted);
    assert_eq!(actions, [Action::Delete]);
    // A delete changes no label: both sides are what it had.
    assert_eq!(relabelled.old_environment, "prod");
    assert_eq!(relabelled.new_environment, "prod");

    // Another key set in the config is the trust label then.
    let mut config = Config::embedded().expect("config");
    config.file.namespace_labels.environment = "example.com/stage".into();
    let renamed_keys = engine_with(config);
    assert_eq!(recognised(&renamed_keys, &relabel).0, []);
}

#[test]
fn namespace_requests_conform_to_the_schema_and_are_decided() {
    let engine = engine();
    let prod = manifest("namespace-payments-prod.yaml");
    let checkout = manifest("namespace-checkout-dev.yaml");
    let requests = [
        request(
            "CREATE",
            None,
            Some(checkout.clone()),
            "bob@example.com",
            &["payments-devs"],
        ),
        request(
            "UPDATE",
            Some(prod.clone()),
            Some(with_label(
                prod.clone(),
                "guardrails.io/team",
                Some("storefront"),
            )),
            "dana@example.com",
            &["storefront-devs"],
        ),
        request("DELETE", Some(prod.clone()), None, "admin@example.com", &[]),
        request(
            "UPDATE",
            Some(checkout.clone()),
            Some(with_label(checkout.clone(), "cost-center", Some("1"))),
            "bob@example.com",
            &[],
        ),
    ];
    for request in &requests {
        assert_eq!(
            decide::check_conformance(&engine, request),
            Ok(()),
            "{request:?}"
        );
    }
    let verdicts: Vec<Verdict> = requests
        .iter()
        .map(|r| decide::decide(&engine, r).expect("decided").verdict())
        .collect();
    assert_eq!(
        verdicts,
        [Verdict::Deny, Verdict::Deny, Verdict::Allow, Verdict::Allow]
    );
}

#[test]
fn a_relabel_is_placed_on_both_sides() {
    // dana (storefront) moving checkout-dev from payments to storefront: the namespace is in
    // payments before the change, so the ownership policy sees her leave payments' namespace.
    let engine = engine();
    let checkout = manifest("namespace-checkout-dev.yaml");
    let moved = request(
        "UPDATE",
        Some(checkout.clone()),
        Some(with_label(
            checkout,
            "guardrails.io/team",
            Some("storefront"),
        )),
        "dana@example.com",
        &["storefront-devs"],
    );
    let outcome = decide::decide(&engine, &moved).expect("decided");
    let mut policies: Vec<&str> = outcome.matches.iter().map(|m| m.policy.as_str()).collect();
    policies.sort();
    assert_eq!(
        policies,
        [
            "namespace-trust-labels-platform-only",
            "team-owns-namespace"
        ]
    );
}

#[test]
fn precedence_config_keeps_named_namespaces_as_configured() {
    let labelled_dev = manifest("namespace-payments-prod-labelled-dev.yaml");
    let delete = request(
        "DELETE",
        Some(labelled_dev),
        None,
        "bob@example.com",
        &["payments-devs"],
    );

    let labels_first = engine();
    assert_eq!(
        decide::decide(&labels_first, &delete)
            .expect("decided")
            .verdict(),
        Verdict::Allow,
        "by default the label (dev) wins"
    );

    let mut config = Config::embedded().expect("config");
    config.file.namespace_labels.precedence = guardrails::config::LabelPrecedence::Config;
    let config_first = engine_with(config);
    let outcome = decide::decide(&config_first, &delete).expect("decided");
    assert_eq!(outcome.verdict(), Verdict::Deny, "the config (prod) wins");
    assert_eq!(
        outcome.matches[0].policy,
        "prod-namespace-delete-platform-only"
    );
}
