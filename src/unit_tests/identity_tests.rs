//! Unit tests for `src/identity.rs` (kept apart so `src/` holds only shipped code).

use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: Some(name.into()),
        groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        ..Default::default()
    }
}

fn no_labels() -> HashMap<String, BTreeMap<String, String>> {
    HashMap::new()
}

fn initiated(name: &str) -> InitiatedBy {
    InitiatedBy {
        username: Some(name.into()),
        automated: false,
    }
}

#[test]
fn groups_map_to_teams() {
    let config = Config::embedded().unwrap();
    let identity = identify(
        &user("bob", &["payments-devs", "system:authenticated"]),
        None,
        &config,
        &no_labels(),
    );
    assert_eq!(identity.teams, ["payments"]);
    assert_eq!(identity.kind, PrincipalKind::User);
    assert!(!identity.automation);
}

#[test]
fn users_listed_directly_join_their_team() {
    let config = Config::embedded().unwrap();
    let identity = identify(&user("dana@example.com", &[]), None, &config, &no_labels());
    assert_eq!(identity.teams, ["storefront"]);
}

#[test]
fn service_accounts_are_recognised() {
    let config = Config::embedded().unwrap();
    let identity = identify(
        &user(
            "system:serviceaccount:argocd:argocd-application-controller",
            &[],
        ),
        None,
        &config,
        &no_labels(),
    );
    assert!(identity.automation);
    assert_eq!(
        identity.kind,
        PrincipalKind::ServiceAccount {
            namespace: "argocd".into(),
            name: "argocd-application-controller".into()
        }
    );
}

#[test]
fn delegator_acts_for_the_initiator() {
    let config = Config::embedded().unwrap();
    let server = user(
        "system:serviceaccount:argocd:argocd-server",
        &["system:serviceaccounts"],
    );
    let identity = identify(
        &server,
        Some(&initiated("admin@example.com")),
        &config,
        &no_labels(),
    );
    assert_eq!(identity.username, "admin@example.com");
    assert_eq!(identity.teams, ["platform"]);
    assert_eq!(
        identity.delegator.as_deref(),
        Some("system:serviceaccount:argocd:argocd-server")
    );
    assert!(identity.forged_initiator.is_none());
}

#[test]
fn initiator_from_anyone_else_is_a_forgery() {
    let config = Config::embedded().unwrap();
    let identity = identify(
        &user("bob", &["payments-devs"]),
        Some(&initiated("admin@example.com")),
        &config,
        &no_labels(),
    );
    assert_eq!(identity.username, "bob");
    assert_eq!(identity.teams, ["payments"]);
    assert_eq!(
        identity.forged_initiator.as_deref(),
        Some("admin@example.com")
    );
    assert!(identity.delegator.is_none());
}

#[test]
fn initiator_naming_the_caller_is_not_a_forgery() {
    let config = Config::embedded().unwrap();
    let identity = identify(
        &user("bob", &[]),
        Some(&initiated("bob")),
        &config,
        &no_labels(),
    );
    assert!(identity.forged_initiator.is_none());
}

#[test]
fn service_accounts_join_the_team_owning_their_namespace() {
    let config = Config::embedded().unwrap();
    // payments-prod belongs to payments in the example config: e.g. Argo CD's sync impersonation
    // service account for that destination.
    let identity = identify(
        &user("system:serviceaccount:payments-prod:argocd-sync", &[]),
        None,
        &config,
        &no_labels(),
    );
    assert_eq!(identity.teams, ["payments"]);
    assert_eq!(identity.namespace_team.as_deref(), Some("payments"));
    // Live labels win over static config.
    let live = HashMap::from([(
        "payments-prod".to_string(),
        BTreeMap::from([("guardrails.io/team".to_string(), "storefront".to_string())]),
    )]);
    let identity = identify(
        &user("system:serviceaccount:payments-prod:argocd-sync", &[]),
        None,
        &config,
        &live,
    );
    assert_eq!(identity.teams, ["storefront"]);
}

#[test]
fn a_delegator_without_a_person_joins_no_team() {
    let config = Config::embedded().unwrap();
    // argocd-server's namespace (argocd) is owned by platform in the example config.
    let identity = identify(
        &user(
            "system:serviceaccount:argocd:argocd-server",
            &["system:serviceaccounts", "system:serviceaccounts:argocd"],
        ),
        None,
        &config,
        &no_labels(),
    );
    assert!(identity.teams.is_empty(), "{:?}", identity.teams);
    assert!(identity.is_delegator);
    assert!(identity.delegator.is_none());
}

#[test]
fn kubernetes_controllers_are_automation_without_config() {
    let config = Config::from_yaml("{}", "empty").unwrap();
    for name in [
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
        "system:kube-controller-manager",
    ] {
        assert!(
            identify(&user(name, &[]), None, &config, &no_labels()).automation,
            "{name}"
        );
    }
    assert!(
        !identify(
            &user("system:serviceaccount:kube-system:default", &[]),
            None,
            &config,
            &no_labels()
        )
        .automation
    );
}

#[test]
fn automation_naming_itself_as_initiator_is_not_a_forgery() {
    let config = Config::embedded().unwrap();
    // ApplicationSet progressive sync writes initiatedBy.username "applicationset-controller".
    let identity = identify(
        &user(
            "system:serviceaccount:argocd:argocd-applicationset-controller",
            &[],
        ),
        Some(&InitiatedBy {
            username: Some("applicationset-controller".into()),
            automated: true,
        }),
        &config,
        &no_labels(),
    );
    assert!(identity.forged_initiator.is_none());
    assert!(identity.automation);
}
