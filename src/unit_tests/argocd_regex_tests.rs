use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    Regex::new(pattern)
        .map(|regex| regex.is_match(text))
        .unwrap_or_else(|error| panic!("{pattern}: {error}"))
}

fn refused(pattern: &str) -> String {
    match Regex::new(pattern) {
        Ok(_) => panic!("{pattern} compiled"),
        Err(error) => error.0,
    }
}

#[test]
fn matching_is_unanchored_unless_anchored() {
    assert!(matches("applications", "myapplications"));
    assert!(!matches("^applications$", "myapplications"));
    assert!(matches("^applications$", "applications"));
    assert!(matches("", "anything"));
    assert!(matches("update/*", "update"));
}

#[test]
fn argo_cd_test_regex_match_mode_pattern() {
    // util/rbac/rbac_test.go TestRegexMatchMode.
    let pattern = "https://github.com/argo[a-z]{4}/argo-[a-z]+.git";
    assert!(matches(pattern, "https://github.com/argoproj/argo-cd.git"));
    assert!(!matches(
        pattern,
        "https://github.com/argoproj/1argo-cd.git"
    ));
}

#[test]
fn repetitions_classes_and_groups() {
    assert!(matches("^(dev|staging)/.+$", "staging/app"));
    assert!(!matches("^(dev|staging)/.+$", "prod/app"));
    assert!(matches("^a{2,3}$", "aaa"));
    assert!(!matches("^a{2,3}$", "aaaa"));
    assert!(matches("^a{2,}$", "aaaaa"));
    assert!(matches("^[^/]+$", "abc"));
    assert!(!matches("^[^/]+$", "a/c"));
    assert!(matches("^\\d+\\.\\d+$", "1.25"));
    assert!(matches("^[[:alpha:]]+$", "abc"));
    assert!(matches("^x{$", "x{"));
    assert!(matches("^a*?b$", "aab"));
    assert!(matches("(?i)^PROD$", "prod"));
    assert!(matches("^(?i:a)b$", "Ab"));
    assert!(!matches("^(?i:a)b$", "AB"));
    assert!(matches("\\bapp\\b", "my app here"));
    assert!(!matches("\\bapp\\b", "myapphere"));
    assert!(matches("^\\Qa.b\\E$", "a.b"));
    assert!(!matches("^\\Qa.b\\E$", "axb"));
    assert!(matches("^(?P<proj>[a-z]+)/\\w+$", "dev/app_1"));
}

#[test]
fn dot_stops_at_newlines_and_dollar_only_at_the_end() {
    assert!(!matches("^a.b$", "a\nb"));
    assert!(matches("(?s)^a.b$", "a\nb"));
    assert!(!matches("a$", "a\n"));
    assert!(matches("(?m)a$", "a\nb"));
}

#[test]
fn go_refuses_what_argo_cd_users_try_from_globs() {
    assert_eq!(
        refused("*/*"),
        "missing argument to repetition operator: `*`"
    );
    assert_eq!(refused("a**"), "invalid nested repetition operator: `**`");
    assert_eq!(
        refused("(*)"),
        "missing argument to repetition operator: `*`"
    );
    assert_eq!(
        refused("a|*"),
        "missing argument to repetition operator: `*`"
    );
    assert!(refused("a{1001}").starts_with("invalid repeat count"));
    assert!(refused("(a{100}){100}").starts_with("invalid repeat count"));
    assert!(refused("(ab").starts_with("missing closing )"));
    assert!(refused("ab)").starts_with("unexpected )"));
    assert!(refused("[ab").starts_with("missing closing ]"));
    assert!(refused("[z-a]").starts_with("invalid character class range"));
    assert!(refused("\\q").starts_with("invalid escape sequence"));
    assert!(refused("\\1").starts_with("invalid escape sequence"));
    assert!(refused("(?=a)").starts_with("invalid or unsupported Perl syntax"));
    assert_eq!(
        refused("a\\"),
        "trailing backslash at end of expression: ``"
    );
    assert!(refused("\\pL").contains("not supported by guardrails"));
}

#[test]
fn empty_loops_terminate() {
    assert!(matches("^(a*)*$", "aaa"));
    assert!(matches("^(a|)+b$", "aab"));
    assert!(!matches("^(a*)*$", "aab"));
}
