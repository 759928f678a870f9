use super::*;
use crate::argocd::config_map::from_csv;

fn rbac(policy: &str) -> Rbac {
    let config = from_csv(policy, "policy.csv").ok().unwrap_or_default();
    Rbac::new(Policy::default(), config, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn request<'a>(subject: &'a str, groups: &'a [String], object: &'a str) -> Request<'a> {
    Request {
        subject,
        groups,
        resource: "applications",
        action: "get",
        object,
    }
}

#[test]
fn project_subjects_have_exactly_three_parts() {
    assert_eq!(project_subject("proj:p:r"), Some(("p", "r")));
    assert_eq!(project_subject("proj:p"), None);
    assert_eq!(project_subject("proj:p:r:x"), None);
    assert_eq!(project_subject("role:p:r"), None);
}

#[test]
fn fine_grained_parents_are_update_and_delete_of_applications() {
    assert_eq!(
        fine_grained_parent("applications", "update/apps/Deployment/ns/x"),
        Some("update")
    );
    assert_eq!(
        fine_grained_parent("applications", "delete/*"),
        Some("delete")
    );
    assert_eq!(fine_grained_parent("applications", "action/x"), None);
    assert_eq!(fine_grained_parent("applications", "update"), None);
    assert_eq!(fine_grained_parent("projects", "update/x"), None);
}

#[test]
fn the_decision_names_its_line_and_explains_each_check() {
    let rbac = rbac("p, role:dev, applications, get, dev/*, allow\ng, my-org:devs, role:dev");
    let groups = ["unbound".to_string(), "my-org:devs".to_string()];
    let decision = rbac.enforce(&request("alice", &groups, "dev/app"));
    assert!(decision.allowed);
    assert_eq!(decision.deciding_line.as_ref().map(|l| l.line), Some(1));
    let text = decision.explanation();
    assert!(text.contains("subject alice: no line matches"), "{text}");
    assert!(
        text.contains("group my-org:devs: allowed by policy.csv line 1"),
        "{text}"
    );
    assert!(
        text.contains("through policy.csv line 2: g, my-org:devs, role:dev"),
        "{text}"
    );
    assert!(text.contains("group unbound is not evaluated"), "{text}");
}

#[test]
fn a_denial_names_the_first_deny_line() {
    let rbac = rbac("p, alice, applications, get, */*, deny");
    let decision = rbac.enforce(&request("alice", &[], "p/a"));
    assert!(!decision.allowed);
    assert_eq!(decision.deciding_line.as_ref().map(|l| l.line), Some(1));
    let decision = rbac.enforce(&request("bob", &[], "p/a"));
    assert_eq!(decision.deciding_line, None);
}
