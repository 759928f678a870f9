use super::*;
use crate::argocd::policy::Source;

fn compiled(text: &str, mode: MatchMode) -> CompiledPolicy {
    let policy = Policy::parse(text, Source::Rbac("policy.csv".into())).unwrap_or_default();
    CompiledPolicy::new(policy, mode)
}

#[test]
fn deny_wins_within_one_enforcement_whatever_the_order() {
    let policy = compiled(
        "p, role:qa, projects, get, *, allow\np, role:qa, projects, get, production, deny\ng, bob, role:qa",
        MatchMode::Glob,
    );
    let enforcer = Enforcer::new(vec![&policy]);
    assert!(matches!(
        enforcer.enforce("bob", "projects", "get", "production"),
        Outcome::Deny(_)
    ));
    assert!(
        enforcer
            .enforce("bob", "projects", "get", "staging")
            .allowed()
    );
}

#[test]
fn roles_are_followed_ten_links_deep_and_no_further() {
    let mut lines = vec![
        "p, r10, projects, get, *, allow".to_string(),
        "p, r11, clusters, get, *, allow".to_string(),
    ];
    lines.push("g, user, r1".to_string());
    for level in 1..11 {
        lines.push(format!("g, r{level}, r{}", level + 1));
    }
    let policy = compiled(&lines.join("\n"), MatchMode::Glob);
    let enforcer = Enforcer::new(vec![&policy]);
    let Outcome::Allow(matched) = enforcer.enforce("user", "projects", "get", "x") else {
        panic!("r10 is ten links from user");
    };
    assert_eq!(matched.via.len(), 10);
    assert_eq!(
        enforcer.enforce("user", "clusters", "get", "x"),
        Outcome::NoMatch
    );
}

#[test]
fn an_invalid_regex_fails_the_enforcement_only_when_reached() {
    let policy = compiled(
        "p, alice, applications, get, .*, allow\np, bob, applications, get, */*, allow\np, alice, applications, get, */*, allow",
        MatchMode::Regex,
    );
    let enforcer = Enforcer::new(vec![&policy]);
    assert!(matches!(
        enforcer.enforce("alice", "applications", "get", "p/a"),
        Outcome::Error { .. }
    ));
    assert!(enforcer.enforce("carol", "applications", "get", "p/a") == Outcome::NoMatch);
    assert_eq!(policy.pattern_warnings().len(), 2);
}

#[test]
fn an_invalid_glob_never_matches() {
    let policy = compiled("p, alice, applications, get, {p/a, allow", MatchMode::Glob);
    let enforcer = Enforcer::new(vec![&policy]);
    assert_eq!(
        enforcer.enforce("alice", "applications", "get", "{p/a"),
        Outcome::NoMatch
    );
    assert_eq!(policy.pattern_warnings().len(), 1);
}
