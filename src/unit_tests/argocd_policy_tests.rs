use super::*;

fn source() -> Source {
    Source::Rbac("policy.csv".into())
}

#[test]
fn csv_reads_quotes_and_keeps_trailing_spaces() {
    assert_eq!(
        split_csv(r#"p, "role,admin", projects, delete, *, allow"#),
        Ok(vec!["p", "role,admin", "projects", "delete", "*", "allow"]
            .into_iter()
            .map(String::from)
            .collect())
    );
    assert_eq!(
        split_csv(r#"p, "a ""b""" , x"#),
        Err(Problem::Csv("extraneous or missing \" in quoted-field"))
    );
    assert_eq!(
        split_csv(r#"p, a"b, c"#),
        Err(Problem::Csv("bare \" in non-quoted-field"))
    );
    assert_eq!(
        split_csv(r#"p, "abc"#),
        Err(Problem::Csv("extraneous or missing \" in quoted-field"))
    );
    assert_eq!(
        split_csv("g, alice , role:x"),
        Ok(vec!["g".to_string(), "alice ".into(), "role:x".into()])
    );
    assert_eq!(split_csv("p,"), Ok(vec!["p".to_string(), String::new()]));
}

#[test]
fn validate_policy_cases_from_argo_cd() {
    // util/rbac/rbac_test.go TestValidatePolicy.
    for good in [
        "p, role:admin, projects, delete, *, allow",
        "",
        "#",
        r#"p, "role,admin", projects, delete, *, allow"#,
        " p, role:admin, projects, delete, *, allow ",
    ] {
        assert!(Policy::parse(good, source()).is_ok(), "{good}");
    }
    for bad in ["this, is, not, a, good, policy", "this\ttoo"] {
        assert!(Policy::parse(bad, source()).is_err(), "{bad}");
    }
}

#[test]
fn load_policy_line_cases_from_argo_cd() {
    // util/rbac/rbac_test.go TestLoadPolicyLine.
    for good in [
        "p, role:Myrole, applications, *, myproj/*, allow",
        "g, your-github-org:your-team, role:org-admin",
        "",
        "# Some comment",
    ] {
        assert!(Policy::parse(good, source()).is_ok(), "{good}");
    }
    for bad in [
        "p",
        "Some comment",
        "agh, foo, bar",
        "p, role:Myrole, applications, *, myproj/* allow",
        ", role:Myrole, applications, *, myproj/*, allow",
    ] {
        assert!(Policy::parse(bad, source()).is_err(), "{bad}");
    }
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "p, a, b, c, d, allow\np, a, b, c, allow\n\nq, x, y\np, a, b, c, d, Allow\ng, a";
    let error = Policy::parse(text, source()).err().map(|e| e.problems);
    let problems = error.unwrap_or_default();
    let lines: Vec<usize> = problems.iter().map(|p| p.at.line).collect();
    assert_eq!(lines, [2, 4, 5, 6]);
    assert_eq!(
        problems[0].problem,
        Problem::FieldCount {
            kind: "p",
            expected: 6,
            found: 5
        }
    );
    assert_eq!(problems[1].problem, Problem::UnknownType("q".into()));
    assert_eq!(problems[2].problem, Problem::UnknownEffect("Allow".into()));
    assert!(!problems[2].problem.refused_by_argocd());
    let shown = PolicyError { problems }.to_string();
    assert!(
        shown.starts_with("policy.csv line 2: a p line has 6 fields"),
        "{shown}"
    );
}

#[test]
fn model_sections_other_than_p_and_g_load_and_are_ignored() {
    let policy = Policy::parse("r, x\ne, whatever, you, like\nm, y", source());
    assert_eq!(policy.map(|p| p.ignored.len()), Ok(3));
}

#[test]
fn lenient_parsing_keeps_unknown_effects_as_never_matching() {
    let policy = Policy::parse_lenient("p, a, b, c, d, Allow", Source::Project("p".into()));
    let policy = policy.unwrap_or_default();
    assert_eq!(policy.permissions[0].effect, Effect::Other("Allow".into()));
    assert_eq!(policy.warnings.len(), 1);
}

#[test]
fn lines_keep_their_source_and_number() {
    let policy = Policy::parse("# c\n\n  g, alice, role:x  \n", source()).unwrap_or_default();
    let at = &policy.groupings[0].at;
    assert_eq!(at.to_string(), "policy.csv line 3: g, alice, role:x");
}
