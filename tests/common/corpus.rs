//! The fidelity corpus (`tests/fixtures/argo-writes/`) and its expectations (`cases.yaml`), read
//! by `tests/fidelity.rs` and the e2e suite.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo-writes")
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub review: PathBuf,
    pub expect: Expect,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expect {
    pub allowed: bool,
    pub actions: Vec<String>,
    pub policies: Vec<String>,
    #[serde(default)]
    pub no_warnings: bool,
}

pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("cases.yaml")).expect("cases.yaml");
    serde_yaml_ng::from_str::<Cases>(&text)
        .expect("cases.yaml parses")
        .cases
}
