//! Unit tests for `src/entities/destinations.rs`: which destinations an ApplicationSet or
//! AppProject can reach, read from the object alone.

use serde_json::json;

use super::*;

fn namespaces(destinations: &Destinations) -> Vec<&str> {
    destinations
        .list
        .iter()
        .map(|d| d.namespace.as_str())
        .collect()
}

fn appset(generators: serde_json::Value, namespace: &str) -> serde_json::Value {
    json!({"spec": {
        "goTemplate": true,
        "generators": generators,
        "template": {"metadata": {"name": "x"}, "spec": {
            "project": "payments",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}}}}})
}

#[test]
fn list_elements_render_the_template_destination() {
    let found = of_applicationset(&appset(
        json!([{"list": {"elements": [{"env": "dev"}, {"env": "prod"}]}}]),
        "payments-{{.env}}",
    ));
    assert!(found.known);
    assert_eq!(namespaces(&found), ["payments-dev", "payments-prod"]);
    // fasttemplate (goTemplate false) spells placeholders without the dot.
    let found = of_applicationset(&appset(
        json!([{"list": {"elements": [{"env": "prod"}]}}]),
        "payments-{{ env }}",
    ));
    assert_eq!(namespaces(&found), ["payments-prod"]);
}

#[test]
fn a_literal_destination_is_known_whatever_generates_the_parameters() {
    let found = of_applicationset(&appset(
        json!([{"git": {"repoURL": "https://git.example.com/x", "directories": [{"path": "*"}]}}]),
        "payments-prod",
    ));
    assert!(found.known);
    assert_eq!(namespaces(&found), ["payments-prod"]);
}

#[test]
fn parameters_from_outside_the_object_make_the_destinations_unknown() {
    for generator in [
        json!({"git": {"repoURL": "https://git.example.com/x", "directories": [{"path": "*"}]}}),
        json!({"clusters": {}}),
        json!({"scmProvider": {"github": {"organization": "x"}}}),
        json!({"pullRequest": {"github": {"owner": "x", "repo": "y"}}}),
        json!({"plugin": {"configMapRef": {"name": "p"}}}),
        json!({"list": {"elementsYaml": "{{ .things | toJson }}"}}),
    ] {
        let found = of_applicationset(&appset(json!([generator]), "payments-{{.env}}"));
        assert!(!found.known, "{generator}");
    }
    // A function in the placeholder cannot be evaluated here.
    let found = of_applicationset(&appset(
        json!([{"list": {"elements": [{"env": "prod"}]}}]),
        "payments-{{ .env | lower }}",
    ));
    assert!(!found.known);
    // A missing key is not rendered as anything.
    let found = of_applicationset(&appset(
        json!([{"list": {"elements": [{"stage": "prod"}]}}]),
        "payments-{{.env}}",
    ));
    assert!(!found.known);
}

#[test]
fn a_template_patch_may_set_any_destination() {
    let mut object = appset(
        json!([{"list": {"elements": [{"env": "dev"}]}}]),
        "payments-{{.env}}",
    );
    object["spec"]["templatePatch"] =
        json!("spec:\n  destination:\n    namespace: payments-prod\n");
    let found = of_applicationset(&object);
    assert!(!found.known);
    assert_eq!(namespaces(&found), ["payments-dev"]);
}

#[test]
fn matrix_and_merge_of_lists_are_followed() {
    let found = of_applicationset(&appset(
        json!([{"matrix": {"generators": [
            {"list": {"elements": [{"team": "payments"}, {"team": "storefront"}]}},
            {"list": {"elements": [{"env": "dev"}, {"env": "prod"}]}},
        ]}}]),
        "{{.team}}-{{.env}}",
    ));
    assert!(found.known);
    assert_eq!(
        namespaces(&found),
        [
            "payments-dev",
            "payments-prod",
            "storefront-dev",
            "storefront-prod"
        ]
    );
    let found = of_applicationset(&appset(
        json!([{"merge": {"mergeKeys": ["app"], "generators": [
            {"list": {"elements": [{"app": "api", "env": "dev"}, {"app": "web", "env": "dev"}]}},
            {"list": {"elements": [{"app": "api", "env": "prod"}]}},
        ]}}]),
        "payments-{{.env}}",
    ));
    assert!(found.known);
    assert_eq!(namespaces(&found), ["payments-prod", "payments-dev"]);
    // A matrix with a git child cannot be enumerated.
    let found = of_applicationset(&appset(
        json!([{"matrix": {"generators": [
            {"git": {"repoURL": "https://git.example.com/x"}},
            {"list": {"elements": [{"env": "dev"}]}},
        ]}}]),
        "payments-{{.env}}",
    ));
    assert!(!found.known);
}

#[test]
fn a_generator_template_overrides_the_destination() {
    let found = of_applicationset(&appset(
        json!([{"list": {
            "elements": [{"env": "dev"}],
            "template": {"metadata": {}, "spec": {"destination": {"namespace": "payments-prod"}, "project": ""}},
        }}]),
        "payments-{{.env}}",
    ));
    assert_eq!(namespaces(&found), ["payments-prod"]);
    // Argo CD's own writes spell out an empty generator template: no override.
    let found = of_applicationset(&appset(
        json!([{"list": {
            "elements": [{"env": "dev"}],
            "template": {"metadata": {}, "spec": {"destination": {}, "project": ""}},
        }}]),
        "payments-{{.env}}",
    ));
    assert_eq!(namespaces(&found), ["payments-dev"]);
}

#[test]
fn project_destinations_are_patterns() {
    let project = json!({"spec": {"destinations": [
        {"server": "https://kubernetes.default.svc", "namespace": "payments-dev"},
        {"server": "https://kubernetes.default.svc", "namespace": "!payments-prod"},
    ]}});
    let found = of_appproject(&project);
    assert!(found.known, "a negation only takes away");
    assert_eq!(namespaces(&found), ["payments-dev"]);
    let project = json!({"spec": {"destinations": [{"server": "*", "namespace": "payments-*"}]}});
    let found = of_appproject(&project);
    assert!(!found.known);
    assert_eq!(namespaces(&found), ["payments-*"]);
}

#[test]
fn globs_match_as_argo_cd_patterns_do() {
    assert!(glob_matches("*", "payments-prod"));
    assert!(glob_matches("payments-*", "payments-prod"));
    assert!(!glob_matches("payments-*", "storefront-prod"));
    assert!(glob_matches("*-prod", "storefront-prod"));
    assert!(!glob_matches("*-prod", "storefront-dev"));
    assert!(glob_matches("pay?ents-dev", "payments-dev"));
    assert!(
        glob_matches("[ps]*", "anything"),
        "a class is read as matching anything"
    );
    assert!(glob_matches("", "") && !glob_matches("", "x"));
}
