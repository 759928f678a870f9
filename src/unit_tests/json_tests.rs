//! Unit and property tests for `src/json.rs`: the same answers as serde_json's `pointer` and `==`.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn sample() -> Value {
    json!({
        "a": {"b": [10, {"c~d": 1, "e/f": 2}], "": {"x": true}},
        "list": [0, 1, 2],
        "0": "zero",
    })
}

#[test]
fn pointer_matches_serde_json() {
    let value = sample();
    for path in [
        "",
        "/",
        "/a",
        "/a/b",
        "/a/b/0",
        "/a/b/1/c~0d",
        "/a/b/1/e~1f",
        "/a/b/01",
        "/a/b/+1",
        "/a/b/-1",
        "/a/b/2",
        "/a//x",
        "/a/",
        "/list/00",
        "/list/0",
        "/0",
        "a",
        "/missing/x",
        "/a/b/1/c~d",
        "/a/b/1/e~01f",
        "/list/18446744073709551616",
    ] {
        assert_eq!(pointer(&value, path), value.pointer(path), "{path:?}");
    }
}

#[test]
fn segments_split_as_str_split_does() {
    for path in [
        "/spec/syncPolicy",
        "spec",
        "/",
        "",
        "//a",
        "/a//b/",
        "/metadata/annotations/argocd.argoproj.io~1refresh",
        "/é/ü",
    ] {
        let expected: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        assert_eq!(segments(path).collect::<Vec<_>>(), expected, "{path:?}");
    }
}

#[test]
fn same_matches_equality_in_and_out_of_key_order() {
    let a = json!({"x": 1, "y": {"p": [1, 2], "q": null}, "z": "s"});
    let reordered = json!({"z": "s", "y": {"q": null, "p": [1, 2]}, "x": 1});
    let different = json!({"x": 1, "y": {"p": [1, 3], "q": null}, "z": "s"});
    let renamed = json!({"x": 1, "y": {"p": [1, 2], "r": null}, "z": "s"});
    assert!(same(&a, &reordered));
    assert!(!same(&a, &different));
    assert!(!same(&a, &renamed));
    assert!(
        !same(&json!(1), &json!(1.0)),
        "as serde_json: 1 and 1.0 differ"
    );
    assert!(same_opt(None, None));
    assert!(!same_opt(Some(&a), None));
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..4).prop_map(Value::from),
        "[ab~/0]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[ab~/0]{0,2}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// The same entries in another order (recursively), so `same` has to leave its fast path.
fn shuffled(value: &Value, seed: usize) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map
                .iter()
                .map(|(k, v)| (k.clone(), shuffled(v, seed)))
                .collect();
            if !entries.is_empty() {
                let len = entries.len();
                entries.rotate_left(seed % len);
            }
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| shuffled(v, seed)).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn same_is_equality(a in value(), b in value(), seed in 0usize..4) {
        prop_assert_eq!(same(&a, &b), a == b);
        let c = shuffled(&a, seed);
        prop_assert_eq!(same(&a, &c), a == c);
        prop_assert_eq!(same(&c, &b), c == b);
    }

    #[test]
    fn pointer_is_serde_pointer(value in value(), path in "(/[ab~/01+]{0,3}){0,4}") {
        prop_assert_eq!(pointer(&value, &path), value.pointer(&path));
    }
}
