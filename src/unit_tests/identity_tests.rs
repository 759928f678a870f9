//! Unit tests for `src/identity.rs` (kept apart so `src/` holds only shipped code).

use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: Some(name.into()),
        groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        ..Default::default()
    }
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
    );
    assert_eq!(identity.teams, ["payments"]);
    assert_eq!(identity.kind, PrincipalKind::User);
    assert!(!identity.automation);
}

#[test]
fn users_listed_directly_join_their_team() {
    let config = Config::embedded().unwrap();
    let identity = identify(&user("dana@example.com", &[]), None, &config);
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
    let identity = identify(&server, Some(&initiated("admin@example.com")), &config);
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
    let identity = identify(&user("bob", &[]), Some(&initiated("bob")), &config);
    assert!(identity.forged_initiator.is_none());
}
