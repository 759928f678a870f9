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
