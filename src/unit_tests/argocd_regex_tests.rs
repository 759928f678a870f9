use super::*;

fn matches(pattern: &str, text: &str) -> Result<bool, RegexError> {
    Regex::new(pattern).map(|regex| regex.is_match(text))
}

#[test]
fn patterns_read_as_go_reads_them() {
    // Unanchored, as regexp.MatchString.
    assert_eq!(matches("applications", "myapplications"), Ok(true));
    assert_eq!(matches("^applications$", "myapplications"), Ok(false));
    // A `{` that starts no repetition is a literal.
    assert_eq!(matches("x{", "x{"), Ok(true));
    assert_eq!(matches("a{2}", "aa"), Ok(true));
    // Go refuses what the crate would accept.
    assert!(matches("a**", "aa").is_err());
    assert!(matches("a{1001}", "a").is_err());
    assert!(matches("a{3,2}", "a").is_err());
    assert_eq!(
        matches("a*?", "aa"),
        Ok(true),
        "a lazy repetition is one operator"
    );
    // In a class, `[`, `&&`, `--` are literals; POSIX classes still work.
    assert_eq!(matches("[[a]", "["), Ok(true));
    assert_eq!(matches("[a&&b]", "&"), Ok(true));
    assert_eq!(matches("[[:digit:]]", "7"), Ok(true));
    // A repetition after a flags group repeats what came before it.
    assert_eq!(matches("^a(?i)*b$", "aaaB"), Ok(true));
    assert!(matches("(", "").is_err());
}
