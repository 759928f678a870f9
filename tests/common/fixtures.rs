//! Fixtures from `tests/fixtures` (see its SOURCES.md), read as JSON.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Load a YAML or JSON fixture as JSON (the first document of a multi-document YAML file).
pub fn fixture(relative: &str) -> Value {
    fixture_docs(relative).into_iter().next().unwrap()
}

/// Every document in a fixture.
pub fn fixture_docs(relative: &str) -> Vec<Value> {
    use serde::Deserialize;
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if relative.ends_with(".json") {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}
