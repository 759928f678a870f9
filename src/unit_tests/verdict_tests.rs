use super::*;

#[test]
fn wire_names_are_the_serialised_names_and_distinct() {
    let mut seen = std::collections::HashSet::new();
    for verdict in Verdict::ALL {
        let serialised = serde_json::to_value(verdict).unwrap_or_default();
        assert_eq!(serialised, verdict.as_str(), "{verdict:?}");
        assert!(seen.insert(verdict.as_str()), "{verdict:?} repeats a name");
    }
    assert_eq!(
        seen,
        [
            "allow",
            "allow-warn",
            "allow-audit",
            "deny",
            "unsupported",
            "error"
        ]
        .into()
    );
}
