//! Static configuration: teams, namespace ownership, cluster environments, trusted identities.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::FastHash;
use crate::vocabulary::Mode;

/// The configuration shipped with the binary (`config/guardrails.yaml`).
pub const EMBEDDED_CONFIG: &str = include_str!("../config/guardrails.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {cause}")]
    Read {
        path: String,
        // Not a `source`: the message already says it (no repeat under `{:#}`).
        cause: std::io::Error,
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

/// `namespaceLabels`: which Namespace label keys carry the team and the environment.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceLabelKeys {
    #[serde(default = "default_team_label")]
    pub team: String,
    #[serde(default = "default_environment_label")]
    pub environment: String,
    /// Which wins for a namespace both the config and its labels name.
    #[serde(default)]
    pub precedence: LabelPrecedence,
}

/// `namespaceLabels.precedence`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LabelPrecedence {
    /// A label overrides the config's entry key by key (team, environment).
    #[default]
    Labels,
    /// The config is authoritative: labels only place namespaces the config does not name.
    Config,
}

fn default_team_label() -> String {
    "guardrails.io/team".to_string()
}

fn default_environment_label() -> String {
    "guardrails.io/environment".to_string()
}

impl Default for NamespaceLabelKeys {
    fn default() -> Self {
        Self {
            team: default_team_label(),
            environment: default_environment_label(),
            precedence: LabelPrecedence::default(),
        }
    }
}

/// How Argo CD marks the objects it applies (Argo CD's `application.resourceTrackingMethod`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum TrackingMethod {
    /// `argocd.argoproj.io/tracking-id` only (Argo CD 3.x's default).
    #[default]
    #[serde(rename = "annotation")]
    Annotation,
    /// The instance label only (Argo CD 2.x's default).
    #[serde(rename = "label")]
    Label,
    /// The annotation tracks; the label is informational.
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
}

/// What Guardrails must know of the Argo CD installation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoCdConfig {
    #[serde(default)]
    pub tracking_method: TrackingMethod,
    /// Argo CD's `application.instanceLabelKey`: read as tracking only with `trackingMethod: label`,
    /// because every Helm chart sets `app.kubernetes.io/instance` on its own.
    #[serde(default = "default_instance_label_key")]
    pub instance_label_key: String,
}

fn default_instance_label_key() -> String {
    "app.kubernetes.io/instance".to_string()
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        Self {
            tracking_method: TrackingMethod::default(),
            instance_label_key: default_instance_label_key(),
        }
    }
}

/// Kubernetes' own controllers that write Deployments (the HPA through `/scale`, the garbage
/// collector and namespace controller deleting, the deployment controller's annotations): automation
/// in every cluster, so no config has to name them. `system:kube-controller-manager` is the identity
/// when the controller manager runs without `--use-service-account-credentials`.
pub const BUILT_IN_AUTOMATION: &[&str] = &[
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
];

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
    pub namespace_labels: NamespaceLabelKeys,
    #[serde(default)]
    pub delegators: Vec<String>,
    #[serde(default)]
    pub automation: Vec<String>,
    /// Also show audit-mode matches to the client as warnings (off: audit is silent).
    #[serde(default)]
    pub audit_warnings: bool,
    #[serde(default)]
    pub mutation: MutationConfig,
    #[serde(default)]
    pub argocd: ArgoCdConfig,
    /// Accept a policy set in which some action has no permit for anyone (see
    /// README.md#guardrails-check); without it such a set is refused at start-up and on reload.
    #[serde(default)]
    pub allow_default_deny: bool,
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
    /// `sha256:…` of the YAML text this came from (empty when built from a `ConfigFile`).
    pub hash: String,
    // Looked up several times per request with names from the request: foldhash, not SipHash
    // (what is in them comes from this file, not from requests).
    group_teams: HashMap<String, Vec<String>, FastHash>,
    user_teams: HashMap<String, Vec<String>, FastHash>,
    delegators: HashSet<String, FastHash>,
    automation: HashSet<String, FastHash>,
}

impl Config {
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        // An empty config is valid YAML for "no teams, no namespaces": every prod policy would
        // stop matching. It is also what a file being rewritten looks like for a moment.
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                message: "the file is empty (a file being rewritten looks like this); a config \
                          meant to set nothing is `{}`"
                    .into(),
            });
        }
        let file: ConfigFile =
            serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Parse {
                origin: origin.to_string(),
                message: error.to_string(),
            })?;
        let mut config = Self::from_file(file, origin)?;
        config.hash = crate::fingerprint::text_hash(text);
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.display().to_string(),
            cause,
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
        for (team, members) in &file.teams {
            if let Some(delegator) = members.users.iter().find(|u| file.delegators.contains(u)) {
                return Err(invalid(format!(
                    "teams.{team}.users lists the delegator {delegator:?}: a delegator writing without a \
                     person would carry that team's exemptions; decide its own writes with \
                     `principal.delegator` instead"
                )));
            }
        }
        if file.argocd.instance_label_key.is_empty() {
            return Err(invalid("argocd.instanceLabelKey must not be empty".into()));
        }
        if file.namespace_labels.team.is_empty() || file.namespace_labels.environment.is_empty() {
            return Err(invalid("namespaceLabels keys must not be empty".into()));
        }
        let mut group_teams: HashMap<String, Vec<String>, FastHash> = HashMap::default();
        let mut user_teams: HashMap<String, Vec<String>, FastHash> = HashMap::default();
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
            hash: String::new(),
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

    /// Configured `automation`, or one of Kubernetes' own controllers.
    pub fn is_automation(&self, username: &str) -> bool {
        self.automation.contains(username) || BUILT_IN_AUTOMATION.contains(&username)
    }

    /// A namespace's owner and environment: static config, overridden key by key by the live
    /// labels (read with `namespaceLabels` keys).
    pub fn resolve_namespace(
        &self,
        live: &HashMap<String, BTreeMap<String, String>>,
        name: &str,
    ) -> NamespaceConfig {
        self.resolve_namespace_labelled(name, live.get(name))
    }

    /// The team and environment of namespace `name` whose labels are `labels` (`None`: not
    /// known), as `namespaceLabels.precedence` says.
    pub fn resolve_namespace_labelled(
        &self,
        name: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> NamespaceConfig {
        let configured = self.namespace(name);
        let keys = &self.file.namespace_labels;
        let labels = match (labels, configured, keys.precedence) {
            (Some(labels), _, LabelPrecedence::Labels) | (Some(labels), None, _) => labels,
            _ => return configured.cloned().unwrap_or_default(),
        };
        let configured = configured.cloned().unwrap_or_default();
        let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
        NamespaceConfig {
            team: label(&keys.team).or(configured.team),
            environment: label(&keys.environment).or(configured.environment),
        }
    }

    /// Where the config's `namespaces:` and the labels of the same Namespaces disagree, one line
    /// each, saying which one Guardrails follows (`namespaceLabels.precedence`).
    pub fn label_disagreements(
        &self,
        live: &HashMap<String, BTreeMap<String, String>>,
    ) -> Vec<String> {
        let keys = &self.file.namespace_labels;
        let winner = match keys.precedence {
            LabelPrecedence::Labels => "the label wins (namespaceLabels.precedence: labels)",
            LabelPrecedence::Config => "the config wins (namespaceLabels.precedence: config)",
        };
        let mut found = Vec::new();
        for (name, entry) in &self.file.namespaces {
            let Some(labels) = live.get(name) else {
                continue;
            };
            for (what, configured, key) in [
                ("team", &entry.team, &keys.team),
                ("environment", &entry.environment, &keys.environment),
            ] {
                let labelled = labels.get(key).filter(|v| !v.is_empty());
                if let (Some(configured), Some(labelled)) = (configured, labelled)
                    && configured != labelled
                {
                    found.push(format!(
                        "namespace {name}: the config says {what} {configured:?}, its label {key} says {labelled:?}; {winner}"
                    ));
                }
            }
        }
        found
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
