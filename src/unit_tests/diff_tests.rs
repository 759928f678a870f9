//! Unit tests for `src/recognize/diff.rs` (kept apart so `src/` holds only shipped code).

use serde_json::json;

use super::*;

#[test]
fn a_member_added_after_the_shared_ones_is_a_change_unless_explained() {
    let old = json!({"spec": {"a": 1}, "status": {"s": 1}});
    let added =
        json!({"spec": {"a": 1}, "status": {"s": 1}, "operation": {"sync": {"prune": true}}});
    assert!(values_differ(&old, &added, &["/status"]));
    assert!(!values_differ(&old, &added, &["/operation"]));
    assert!(!values_differ(&old, &added, &["/*"]));
    // Absent equals empty: an empty block added says nothing.
    let empty = json!({"spec": {"a": 1}, "status": {"s": 1}, "operation": {}});
    assert!(!values_differ(&old, &empty, &[]));
    // Added deeper, after the shared members of a block.
    let deeper = json!({"spec": {"a": 1, "b": 2}, "status": {"s": 1}});
    assert!(values_differ(&old, &deeper, &["/status"]));
    assert!(!values_differ(&old, &deeper, &["/spec/b"]));
}

#[test]
fn members_out_of_order_are_looked_up() {
    let old = json!({"a": 1, "b": {"x": 1}, "c": 3});
    let reordered = json!({"c": 3, "a": 1, "b": {"x": 1}});
    assert!(!values_differ(&old, &reordered, &[]));
    let reordered_and_added = json!({"c": 3, "a": 1, "d": 4, "b": {"x": 1}});
    assert!(values_differ(&old, &reordered_and_added, &[]));
    assert!(!values_differ(&old, &reordered_and_added, &["/d"]));
    let removed = json!({"c": 3, "b": {"x": 1}});
    assert!(values_differ(&old, &removed, &["/d"]));
    assert!(!values_differ(&old, &removed, &["/a"]));
}

#[test]
fn a_member_removed_from_the_end_is_a_change() {
    let old = json!({"a": 1, "b": 2});
    let new = json!({"a": 1});
    assert!(values_differ(&old, &new, &[]));
    assert!(!values_differ(&old, &new, &["/b"]));
}
