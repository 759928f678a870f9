//! Unit tests for `src/respond.rs` (kept apart so `src/` holds only shipped code).

use super::*;

#[test]
fn long_warnings_are_truncated_to_the_kubernetes_limit() {
    let long = "x".repeat(400);
    let cut = truncate(long, MAX_WARNING_CHARS);
    assert_eq!(cut.chars().count(), MAX_WARNING_CHARS);
    assert!(cut.ends_with('…'));
    assert_eq!(truncate("short".into(), MAX_WARNING_CHARS), "short");
}

fn policy_match(policy: &str, action: crate::vocabulary::Action, declared: Mode) -> PolicyMatch {
    PolicyMatch {
        policy: policy.into(),
        action,
        reason: "because".into(),
        declared,
        effective: Mode::Enforce,
    }
}

#[test]
fn policy_annotations_are_ordered_as_their_text_and_deduplicated() {
    use crate::vocabulary::Action;
    // Sorted by id, as decide leaves them; as text `prod-x=…` comes before `prod=…`.
    let matches = [
        policy_match("prod", Action::Sync, Mode::Audit),
        policy_match("prod", Action::Override, Mode::Audit),
        policy_match("prod-x", Action::Sync, Mode::Warn),
        policy_match("prod0", Action::Sync, Mode::Enforce),
    ];
    assert_eq!(
        policy_modes(&matches, |m| m.declared),
        "prod-x=warn,prod0=enforce,prod=audit"
    );
    assert_eq!(
        policy_modes(&matches, |m| m.effective),
        "prod-x=enforce,prod0=enforce,prod=enforce"
    );
    assert_eq!(policy_modes(&[], |m| m.effective), "");
}

#[test]
fn echoed_names_are_cut_by_characters_not_bytes() {
    let short = "é".repeat(MAX_ECHOED_CHARS);
    assert_eq!(echo(&short), short, "253 two-byte characters fit");
    let long = "é".repeat(MAX_ECHOED_CHARS + 1);
    let cut = echo(&long);
    assert_eq!(cut.chars().count(), MAX_ECHOED_CHARS);
    assert!(cut.ends_with('…'));
}
