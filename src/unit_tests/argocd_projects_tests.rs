use super::*;

const PROJECT: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: my-proj
  namespace: argocd
spec:
  roles:
  - name: my-role
    policies:
    - p, proj:my-proj:my-role, applications, create, my-proj/*, allow
    groups:
    - my-org:my-team
  - name: ci
"#;

#[test]
fn roles_become_the_lines_argo_cd_generates() {
    let projects = parse_projects(PROJECT, "p.yaml").ok().unwrap_or_default();
    assert_eq!(projects.len(), 1);
    assert_eq!(
        projects[0].policies_string(),
        "p, proj:my-proj:my-role, projects, get, my-proj, allow\n\
         p, proj:my-proj:my-role, applications, create, my-proj/*, allow\n\
         g, my-org:my-team, proj:my-proj:my-role\n\
         p, proj:my-proj:ci, projects, get, my-proj, allow"
    );
}

#[test]
fn lists_and_several_documents_are_read_and_other_kinds_skipped() {
    let text = format!(
        "kind: ConfigMap\nmetadata: {{name: x}}\n---\n{PROJECT}\n---\nkind: List\nitems:\n- kind: AppProject\n  metadata: {{name: other}}\n"
    );
    let projects = parse_projects(&text, "p.yaml").ok().unwrap_or_default();
    let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["my-proj", "other"]);
}

#[test]
fn malformed_projects_are_errors() {
    assert!(parse_projects("kind: AppProject\nmetadata: {}\n", "p.yaml").is_err());
    assert!(
        parse_projects(
            "kind: AppProject\nmetadata: {name: a}\nspec: {roles: [{name: r, policies: p}]}\n",
            "p.yaml"
        )
        .is_err()
    );
    assert!(parse_projects("kind: AppProject\n  bad: [", "p.yaml").is_err());
}
