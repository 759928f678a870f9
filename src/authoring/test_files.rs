//! Policy test files (`policies/tests/*.yaml`): requests with expected decisions, run against a
//! policy directory by `guardrails test`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::authoring::synth::Synthetic;
use crate::decide::Engine;
use crate::respond;

#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: String,
        // Not a `source`: the message already says it (no repeat under `{:#}`).
        cause: std::io::Error,
    },
    #[error("invalid test file {path}: {message}")]
    Parse { path: String, message: String },
}

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestFile {
    /// Optional configuration for these cases, relative to the test file.
    pub config: Option<PathBuf>,
    pub cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestCase {
    pub name: String,
    /// An AdmissionReview file (relative to the test file) ...
    pub review: Option<PathBuf>,
    /// ... or a manifest: a path, or the object inline.
    pub object: Option<Manifest>,
    /// The object before the change (UPDATE; or the deleted object for DELETE).
    pub old_object: Option<Manifest>,
    /// A JSON merge patch (RFC 7386) applied to `oldObject` to get the new object.
    pub patch: Option<Value>,
    pub operation: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub delegated_by: Option<String>,
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    pub expect: Expectation,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Manifest {
    Path(PathBuf),
    Inline(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    pub allowed: bool,
    /// Every matching policy id (any mode), in any order. Omit to not check.
    pub policies: Option<Vec<String>>,
    /// The recognised actions, in any order. Omit to not check.
    pub actions: Option<Vec<String>>,
    /// Substrings each expected among the response warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The response carries no warnings at all (e.g. no forged-initiator warning).
    #[serde(default)]
    pub no_warnings: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub failures: Vec<String>,
    /// The policies that matched the case's request (any mode), sorted.
    pub policies: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn load_manifest(base: &Path, manifest: &Manifest) -> Result<Value, String> {
    match manifest {
        Manifest::Inline(value) => Ok(value.clone()),
        Manifest::Path(path) => {
            crate::authoring::synth::read_manifest(&base.join(path)).map_err(|e| format!("{e:#}"))
        }
    }
}

pub fn load(path: &Path) -> Result<TestFile, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|cause| TestFileError::Read {
        path: path.display().to_string(),
        cause,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|e| TestFileError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The review body a case describes.
fn case_body(base: &Path, case: &TestCase, index: usize) -> Result<Vec<u8>, String> {
    if let Some(review) = &case.review {
        let path = base.join(review);
        return std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let old_object = case
        .old_object
        .as_ref()
        .map(|m| load_manifest(base, m))
        .transpose()?;
    let mut object = case
        .object
        .as_ref()
        .map(|m| load_manifest(base, m))
        .transpose()?;
    if let Some(patch) = &case.patch {
        let mut patched = old_object
            .clone()
            .ok_or("`patch` needs `oldObject` to apply to")?;
        json_patch::merge(&mut patched, patch);
        object = Some(patched);
    }
    let operation = case.operation.clone().unwrap_or_else(|| {
        match (&object, &old_object) {
            (Some(_), Some(_)) => "UPDATE",
            (None, Some(_)) => "DELETE",
            _ => "CREATE",
        }
        .to_string()
    });
    let synthetic = Synthetic {
        object,
        old_object,
        operation,
        user: case.user.clone().unwrap_or_else(|| "anonymous".into()),
        groups: case.groups.clone(),
        sub_resource: case.sub_resource.clone(),
        delegated_by: case.delegated_by.clone(),
        dry_run: case.dry_run,
        uid: format!("policy-test-{index}"),
    };
    let review = synthetic.admission_review().map_err(|e| e.to_string())?;
    serde_json::to_vec(&review).map_err(|e| e.to_string())
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

/// Run the cases of one file whose name contains `filter` (all without one) against `engine`.
pub fn run_file(
    engine: &Engine,
    path: &Path,
    file: &TestFile,
    filter: Option<&str>,
) -> Vec<CaseResult> {
    let base = path.parent().unwrap_or(Path::new("."));
    let display = path.display().to_string();
    file.cases
        .iter()
        .enumerate()
        .filter(|(_, case)| filter.is_none_or(|pattern| case.name.contains(pattern)))
        .map(|(index, case)| {
            let (failures, policies) = run_case(engine, base, case, index);
            CaseResult {
                file: display.clone(),
                name: case.name.clone(),
                failures,
                policies,
            }
        })
        .collect()
}

/// The case's failures, and the policies its request matched.
fn run_case(
    engine: &Engine,
    base: &Path,
    case: &TestCase,
    index: usize,
) -> (Vec<String>, Vec<String>) {
    let body = match case_body(base, case, index) {
        Ok(body) => body,
        Err(error) => {
            return (
                vec![format!("cannot build the request: {error}")],
                Vec::new(),
            );
        }
    };
    let reviewed = match respond::validate_review(engine, &body) {
        Ok(reviewed) => reviewed,
        Err(error) => return (vec![format!("invalid request: {error}")], Vec::new()),
    };
    let matched = sorted(
        reviewed
            .outcome
            .as_ref()
            .map(|o| o.matches.iter().map(|m| m.policy.clone()).collect())
            .unwrap_or_default(),
    );
    (check_expectation(&case.expect, &reviewed), matched)
}

/// What differs between `expect` and the answer.
fn check_expectation(expect: &Expectation, reviewed: &respond::Reviewed) -> Vec<String> {
    let mut failures = Vec::new();
    let response = &reviewed.response;
    if response.allowed != expect.allowed {
        failures.push(format!(
            "expected {}, got {}{}",
            if expect.allowed { "allowed" } else { "denied" },
            if response.allowed {
                "allowed"
            } else {
                "denied"
            },
            if response.allowed {
                String::new()
            } else {
                format!(": {}", response.result.message)
            }
        ));
    }
    let outcome = reviewed.outcome.as_ref();
    if let Some(expected) = &expect.policies {
        let got = sorted(
            outcome
                .map(|o| o.matches.iter().map(|m| m.policy.clone()).collect())
                .unwrap_or_default(),
        );
        let want = sorted(expected.clone());
        if got != want {
            failures.push(format!("expected policies {want:?}, got {got:?}"));
        }
    }
    if let Some(expected) = &expect.actions {
        let got = sorted(
            outcome
                .and_then(|o| o.recognition.as_ref())
                .map(|r| r.actions.iter().map(|a| a.as_str().to_string()).collect())
                .unwrap_or_default(),
        );
        let want = sorted(expected.clone());
        if got != want {
            failures.push(format!("expected actions {want:?}, got {got:?}"));
        }
    }
    let warnings = response.warnings.as_deref().unwrap_or(&[]);
    if expect.no_warnings && !warnings.is_empty() {
        failures.push(format!("expected no warnings, got {warnings:?}"));
    }
    for expected in &expect.warnings {
        if !warnings.iter().any(|w| w.contains(expected.as_str())) {
            failures.push(format!(
                "expected a warning containing {expected:?}, got {warnings:?}"
            ));
        }
    }
    failures
}

/// All `*.yaml`/`*.yml` files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, TestFileError> {
    let read_error = |cause| TestFileError::Read {
        path: dir.display().to_string(),
        cause,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
