use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    Glob::compile(pattern)
        .map(|glob| glob.matches(text))
        .unwrap_or_else(|error| panic!("{pattern}: {error}"))
}

fn refused(pattern: &str) -> String {
    match Glob::compile(pattern) {
        Ok(_) => panic!("{pattern} compiled"),
        Err(error) => error.reason,
    }
}

#[test]
fn star_crosses_slashes_without_separators() {
    assert!(matches("proj/*", "proj/ns/app"));
    assert!(matches("*", ""));
    assert!(matches("*/*", "a/b/c"));
    assert!(!matches("*/*", "ab"));
    assert!(matches("**", "a/b"));
    assert!(matches("arg/*", "arg/123"));
}

#[test]
fn literals_match_whole_strings_only() {
    assert!(matches("applications", "applications"));
    assert!(!matches("applications", "myapplications"));
    assert!(!matches("applications", "applications2"));
    assert!(matches("", ""));
    assert!(!matches("", "a"));
}

#[test]
fn single_sets_and_ranges_take_one_character() {
    assert!(matches("?at", "cat"));
    assert!(!matches("?at", "at"));
    assert!(matches("?", "é"));
    assert!(matches("[abc]at", "bat"));
    assert!(!matches("[!abc]at", "bat"));
    assert!(matches("[!abc]at", "fat"));
    assert!(matches("[a-c]at", "cat"));
    assert!(!matches("[!a-c]at", "cat"));
    // Only `[lo-hi]` is a range: a longer class lists its characters, `-` included.
    assert!(matches("[ab-c]", "-"));
    assert!(!matches("[ab-c]", "b-c"));
    assert!(matches("[\\]]", "]"));
    assert!(matches("[-a]", "-"));
}

#[test]
fn alternatives_nest_and_may_be_empty() {
    assert!(matches("{cat,bat,[fr]at}", "rat"));
    assert!(!matches("{cat,bat,[fr]at}", "zat"));
    assert!(matches("a{b,{c,d}e}f", "adef"));
    assert!(matches("{,x}y", "y"));
    assert!(matches("{a,}{a,}a", "a"));
    assert!(matches("x{}y", "xy"));
    // Outside braces `,` and `}` are plain characters.
    assert!(matches("a,b}", "a,b}"));
}

#[test]
fn overlapping_prefix_and_suffix_need_the_whole_length() {
    // gobwas v0.2.3 matched this (gobwas/glob#61); v1.0.0, which argo-cd v3.6.2 uses, does not.
    assert!(!matches("start*art", "start"));
    assert!(matches("start*art", "startart"));
}

#[test]
fn escapes_make_specials_literal() {
    assert!(matches("\\*", "*"));
    assert!(!matches("\\*", "x"));
    assert!(matches("a\\{b", "a{b"));
}

#[test]
fn malformed_patterns_are_refused_as_gobwas_refuses_them() {
    assert_eq!(refused("{a,b"), "unclosed `{`");
    assert_eq!(refused("[]"), "could not parse range");
    assert_eq!(refused("[!]"), "could not parse range");
    assert_eq!(refused("[abc"), "unexpected end of input");
    assert_eq!(refused("[z-a]"), "range hi character is less than lo");
    assert_eq!(refused("[a-b"), "unexpected end of input");
    assert_eq!(refused("[a-bc]"), "expected close range character");
    assert_eq!(refused("abc\\"), "trailing backslash");
    let error = Glob::compile("{a,b").err();
    assert_eq!(
        error.map(|e| e.to_string()).as_deref(),
        Some("glob: syntax error at 4: unclosed `{`")
    );
}
