use super::*;

#[test]
fn policy_keys_are_concatenated_in_argo_cd_order() {
    // util/rbac/rbac_test.go TestPolicyCSV: policy.csv first, then the others sorted.
    let data: BTreeMap<String, String> = [
        ("UnrelatedKey", "unrelated value"),
        ("policy.B.csv", "p, b, r, a, o, allow"),
        ("policy.A.csv", "p, a, r, a, o, allow"),
        ("policy.C.csv", "p, c, r, a, o, allow"),
        ("policy.csv", "p, main, r, a, o, allow"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        policy_keys(&data),
        ["policy.csv", "policy.A.csv", "policy.B.csv", "policy.C.csv"]
    );
    let config = from_data(&data, "cm").ok().unwrap_or_default();
    let subjects: Vec<&str> = config
        .policy
        .permissions
        .iter()
        .map(|p| p.subject.as_str())
        .collect();
    assert_eq!(subjects, ["main", "a", "b", "c"]);
}

#[test]
fn a_config_map_sets_default_role_match_mode_and_scopes() {
    let yaml = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm}
data:
  policy.csv: |
    g, my-org:team, role:admin
  policy.default: role:readonly
  policy.matchMode: regex
  scopes: '[cognito:groups, email]'
"#;
    let config = parse_rbac(yaml, "cm.yaml").ok().unwrap_or_default();
    assert_eq!(config.default_role, "role:readonly");
    assert_eq!(config.match_mode, MatchMode::Regex);
    assert_eq!(config.scopes, ["cognito:groups", "email"]);
    assert_eq!(
        config.policy.groupings[0].at.source,
        Source::Rbac("policy.csv".into())
    );
}

#[test]
fn a_csv_file_is_a_policy_with_defaults() {
    let config = parse_rbac(
        "p, role:x, applications, get, */*, allow\ng, alice, role:x\n",
        "p.csv",
    )
    .ok()
    .unwrap_or_default();
    assert_eq!(config.policy.permissions.len(), 1);
    assert_eq!(config.default_role, "");
    assert_eq!(config.match_mode, MatchMode::Glob);
    assert_eq!(config.scopes, ["groups"]);
    assert_eq!(
        config.policy.permissions[0].at.source,
        Source::Rbac("p.csv".into())
    );
}

#[test]
fn unknown_match_modes_are_glob_with_a_warning() {
    let data: BTreeMap<String, String> =
        [("policy.matchMode".to_string(), "Regex".to_string())].into();
    let config = from_data(&data, "cm").ok().unwrap_or_default();
    assert_eq!(config.match_mode, MatchMode::Glob);
    assert_eq!(config.warnings.len(), 1);
}

#[test]
fn bad_scopes_and_bad_lines_are_errors() {
    let data: BTreeMap<String, String> = [("scopes".to_string(), "groups".to_string())].into();
    assert!(matches!(
        from_data(&data, "cm"),
        Err(RbacConfigError::Scopes { .. })
    ));
    let data: BTreeMap<String, String> = [
        ("policy.csv".to_string(), "p, a\n".to_string()),
        ("policy.x.csv".to_string(), "\ng, b".to_string()),
    ]
    .into();
    let Err(RbacConfigError::Policy { error, .. }) = from_data(&data, "cm") else {
        panic!("expected a policy error");
    };
    let at: Vec<String> = error
        .problems
        .iter()
        .map(|p| format!("{}:{}", p.at.source, p.at.line))
        .collect();
    assert_eq!(at, ["policy.csv:1", "policy.x.csv:2"]);
}

#[test]
fn other_kinds_are_refused() {
    let yaml = "kind: Secret\ndata: {}\n";
    assert!(matches!(
        parse_rbac(yaml, "x"),
        Err(RbacConfigError::NotConfigMap { .. })
    ));
}
