//! The `argocd-rbac-cm` ConfigMap, or a bare `policy.csv`, read the way Argo CD reads them.
//!
//! - Which it is: `argocd admin settings rbac can --policy-file` tries the file as a ConfigMap
//!   first and falls back to CSV (`getPolicyFromFile`); here a YAML mapping is a ConfigMap and
//!   anything else CSV.
//! - The policy: `policy.csv` first, then every other `policy.<name>.csv` key in byte order, each
//!   after a newline (`rbac.PolicyCSV`). Line numbers are kept per key.
//! - `policy.default`: the default role, checked before anything else (`rbac.enforce`).
//! - `policy.matchMode`: `regex` selects regex matching, any other value glob (`SetMatchMode`).
//! - `scopes`: a YAML list of the token claims whose values count as groups
//!   (`server.rbacPolicyLoader`); default `[groups]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::policy::{Policy, PolicyError, Source};

pub const POLICY_CSV_KEY: &str = "policy.csv";
pub const POLICY_DEFAULT_KEY: &str = "policy.default";
pub const MATCH_MODE_KEY: &str = "policy.matchMode";
pub const SCOPES_KEY: &str = "scopes";

/// How `res`, `act` and `obj` patterns match (`policy.matchMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MatchMode {
    #[default]
    Glob,
    Regex,
}

impl MatchMode {
    /// `SetMatchMode`: `regex` is regex, anything else glob.
    pub fn from_setting(value: &str) -> Self {
        if value == "regex" {
            MatchMode::Regex
        } else {
            MatchMode::Glob
        }
    }
}

/// What `argocd-rbac-cm` (or a bare CSV) configures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbacConfig {
    /// The user-defined policy (every `policy*.csv` key).
    pub policy: Policy,
    /// `policy.default`; empty for none.
    pub default_role: String,
    pub match_mode: MatchMode,
    /// `scopes`: the claims whose values are the user's groups.
    pub scopes: Vec<String>,
    /// Things Argo CD accepts silently that are probably mistakes.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RbacConfigError {
    #[error("{origin}: kind is {kind:?}, expected an argocd-rbac-cm ConfigMap or a policy.csv")]
    NotConfigMap { origin: String, kind: String },
    #[error("{origin}: data is not a map of strings: {message}")]
    Data { origin: String, message: String },
    #[error(
        "{origin}: scopes {value:?} is not a YAML list of strings (Argo CD refuses it too): {message}"
    )]
    Scopes {
        origin: String,
        value: String,
        message: String,
    },
    #[error("{origin}: invalid policy:\n{error}")]
    Policy { origin: String, error: PolicyError },
}

/// The claims Argo CD reads groups from when `scopes` is not set (`rbac.DefaultScopes`).
pub fn default_scopes() -> Vec<String> {
    vec!["groups".to_string()]
}

#[derive(Deserialize)]
struct ConfigMap {
    kind: Option<String>,
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

/// Read `text` (from `origin`, a file name for messages) as a ConfigMap if it is a YAML mapping,
/// as a `policy.csv` otherwise.
pub fn parse_rbac(text: &str, origin: &str) -> Result<RbacConfig, RbacConfigError> {
    let first = serde_yaml_ng::Deserializer::from_str(text)
        .next()
        .and_then(|document| serde_yaml_ng::Value::deserialize(document).ok());
    match first {
        Some(value @ serde_yaml_ng::Value::Mapping(_)) => config_map(value, origin),
        _ => from_csv(text, origin),
    }
}

/// A bare policy CSV: no default role, glob matching, default scopes.
pub fn from_csv(text: &str, origin: &str) -> Result<RbacConfig, RbacConfigError> {
    let policy = Policy::parse(text, Source::Rbac(origin.to_string())).map_err(|error| {
        RbacConfigError::Policy {
            origin: origin.to_string(),
            error,
        }
    })?;
    Ok(RbacConfig {
        policy,
        scopes: default_scopes(),
        ..RbacConfig::default()
    })
}

fn config_map(value: serde_yaml_ng::Value, origin: &str) -> Result<RbacConfig, RbacConfigError> {
    let map: ConfigMap =
        serde_yaml_ng::from_value(value).map_err(|error| RbacConfigError::Data {
            origin: origin.to_string(),
            message: error.to_string(),
        })?;
    if let Some(kind) = map.kind.filter(|kind| kind != "ConfigMap") {
        return Err(RbacConfigError::NotConfigMap {
            origin: origin.to_string(),
            kind,
        });
    }
    let mut config = from_data(&map.data.unwrap_or_default(), origin)?;
    if config.policy.permissions.is_empty() && config.policy.groupings.is_empty() {
        config.warnings.push(format!(
            "{origin}: read as a ConfigMap, but it has no policy.csv or policy.<name>.csv lines"
        ));
    }
    Ok(config)
}

/// The keys holding policy lines, in the order Argo CD concatenates them.
pub fn policy_keys(data: &BTreeMap<String, String>) -> Vec<&str> {
    let mut keys = Vec::new();
    if data.contains_key(POLICY_CSV_KEY) {
        keys.push(POLICY_CSV_KEY);
    }
    keys.extend(
        data.keys()
            .map(String::as_str)
            .filter(|key| key.starts_with("policy.") && key.ends_with(".csv"))
            .filter(|key| *key != POLICY_CSV_KEY),
    );
    keys
}

/// The settings in a ConfigMap's `data`.
pub fn from_data(
    data: &BTreeMap<String, String>,
    origin: &str,
) -> Result<RbacConfig, RbacConfigError> {
    let mut policy = Policy::default();
    let mut problems = Vec::new();
    for key in policy_keys(data) {
        let text = data.get(key).map(String::as_str).unwrap_or_default();
        match Policy::parse(text, Source::Rbac(key.to_string())) {
            Ok(part) => policy.extend(part),
            Err(error) => problems.extend(error.problems),
        }
    }
    if !problems.is_empty() {
        return Err(RbacConfigError::Policy {
            origin: origin.to_string(),
            error: PolicyError { problems },
        });
    }
    let mut warnings = Vec::new();
    let mode = data.get(MATCH_MODE_KEY).map(String::as_str).unwrap_or("");
    let match_mode = MatchMode::from_setting(mode);
    if !matches!(mode, "" | "glob" | "regex") {
        warnings.push(format!(
            "{origin}: {MATCH_MODE_KEY} {mode:?} is neither glob nor regex: Argo CD uses glob"
        ));
    }
    let scopes = match data.get(SCOPES_KEY).map(String::as_str) {
        None | Some("") => default_scopes(),
        Some(value) => parse_scopes(value).map_err(|message| RbacConfigError::Scopes {
            origin: origin.to_string(),
            value: value.to_string(),
            message,
        })?,
    };
    Ok(RbacConfig {
        policy,
        default_role: data.get(POLICY_DEFAULT_KEY).cloned().unwrap_or_default(),
        match_mode,
        scopes,
        warnings,
    })
}

/// `scopes` as `yaml.Unmarshal` into `[]string` reads it; `null` is an empty list (no groups).
fn parse_scopes(value: &str) -> Result<Vec<String>, String> {
    let parsed: Option<Vec<String>> =
        serde_yaml_ng::from_str(value).map_err(|error| error.to_string())?;
    Ok(parsed.unwrap_or_default())
}

#[cfg(test)]
#[path = "../unit_tests/argocd_config_map_tests.rs"]
mod tests;
