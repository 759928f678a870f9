//! Static configuration: teams, namespace ownership, cluster environments, trusted identities.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::mode::Mode;

/// The configuration shipped with the binary (`config/guardrails.yaml`).
pub const EMBEDDED_CONFIG: &str = include_str!("../config/guardrails.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamConfig {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceConfig {
    pub team: Option<String>,
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceLabels {
    #[serde(default = "default_team_label")]
    pub team: String,
    #[serde(default = "default_environment_label")]
    pub environment: String,
}

fn default_team_label() -> String {
    "guardrails.io/team".to_string()
}

fn default_environment_label() -> String {
    "guardrails.io/environment".to_string()
}

impl Default for NamespaceLabels {
    fn default() -> Self {
        Self {
            team: default_team_label(),
            environment: default_environment_label(),
        }
    }
}

/// The file format, as written by people. See README.md#configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub teams: BTreeMap<String, TeamConfig>,
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    #[serde(default)]
    pub clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub namespace_labels: NamespaceLabels,
    #[serde(default)]
    pub delegators: Vec<String>,
    #[serde(default)]
    pub automation: Vec<String>,
    /// Also show audit-mode matches to the client as warnings (off: audit is silent).
    #[serde(default)]
    pub audit_warnings: bool,
    #[serde(default)]
    pub mutation: MutationConfig,
}

/// What `/mutate` may change besides keeping `initiatedBy` honest.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MutationConfig {
    /// On CREATE, add the owning team's label (`namespaceLabels.team`) when it is missing.
    #[serde(default)]
    pub stamp_team_label: bool,
}

/// The configuration with the lookups the request path needs precomputed.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub file: ConfigFile,
    group_teams: HashMap<String, Vec<String>>,
    user_teams: HashMap<String, Vec<String>>,
    delegators: HashSet<String>,
    automation: HashSet<String>,
}

impl Config {
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile =
            serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Parse {
                origin: origin.to_string(),
                message: error.to_string(),
            })?;
        Self::from_file(file, origin)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_yaml(EMBEDDED_CONFIG, "(embedded config/guardrails.yaml)")
    }

    pub fn from_file(file: ConfigFile, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        for (namespace, entry) in &file.namespaces {
            if let Some(team) = &entry.team
                && !file.teams.contains_key(team)
            {
                return Err(invalid(format!(
                    "namespaces.{namespace}.team names team {team:?}, which is not defined under teams"
                )));
            }
            if entry.environment.as_deref() == Some("") {
                return Err(invalid(format!(
                    "namespaces.{namespace}.environment is empty"
                )));
            }
        }
        for (cluster, environment) in &file.clusters {
            if environment.is_empty() {
                return Err(invalid(format!("clusters.{cluster} is empty")));
            }
        }
        if file.namespace_labels.team.is_empty() || file.namespace_labels.environment.is_empty() {
            return Err(invalid("namespaceLabels keys must not be empty".into()));
        }
        let mut group_teams: HashMap<String, Vec<String>> = HashMap::new();
        let mut user_teams: HashMap<String, Vec<String>> = HashMap::new();
        for (team, members) in &file.teams {
            for group in &members.groups {
                group_teams
                    .entry(group.clone())
                    .or_default()
                    .push(team.clone());
            }
            for user in &members.users {
                user_teams
                    .entry(user.clone())
                    .or_default()
                    .push(team.clone());
            }
        }
        Ok(Self {
            delegators: file.delegators.iter().cloned().collect(),
            automation: file.automation.iter().cloned().collect(),
            group_teams,
            user_teams,
            file,
        })
    }

    pub fn mode(&self) -> Mode {
        self.file.mode
    }

    pub fn teams_of_group(&self, group: &str) -> &[String] {
        self.group_teams.get(group).map_or(&[], Vec::as_slice)
    }

    pub fn teams_of_user(&self, user: &str) -> &[String] {
        self.user_teams.get(user).map_or(&[], Vec::as_slice)
    }

    pub fn is_delegator(&self, username: &str) -> bool {
        self.delegators.contains(username)
    }

    pub fn is_automation(&self, username: &str) -> bool {
        self.automation.contains(username)
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceConfig> {
        self.file.namespaces.get(name)
    }

    pub fn cluster_environment(&self, server_or_name: &str) -> Option<&str> {
        self.file.clusters.get(server_or_name).map(String::as_str)
    }
}

#[cfg(test)]
#[path = "unit_tests/config_tests.rs"]
mod tests;
