//! The policy store: the schema and `.cedar` files, parsed and strictly validated into an immutable
//! snapshot that the request path shares through an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect, Entity, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use crate::mode::Mode;

/// The schema file name inside a policy directory.
pub const SCHEMA_FILE: &str = "guardrails.cedarschema";

/// The shipped policy directory, compiled into the binary so `serve --dev` works anywhere.
pub const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    (
        SCHEMA_FILE,
        include_str!("../policies/guardrails.cedarschema"),
    ),
    ("argocd.cedar", include_str!("../policies/argocd.cedar")),
    ("default.cedar", include_str!("../policies/default.cedar")),
    ("drift.cedar", include_str!("../policies/drift.cedar")),
    (
        "ownership.cedar",
        include_str!("../policies/ownership.cedar"),
    ),
];

/// One problem in one file, located for a person to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub policy_id: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(id) = &self.policy_id {
            write!(f, "policy {id}: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policies from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<PolicyDiagnostic>),
}

fn render_diagnostics(diagnostics: &[PolicyDiagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    format!(
        "{} policy error(s):\n  {}",
        diagnostics.len(),
        lines.join("\n  ")
    )
}

/// What Guardrails knows about one loaded policy beyond Cedar's AST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMeta {
    /// The `@id` annotation, or `file.cedar#N` when there is none.
    pub id: String,
    pub reason: Option<String>,
    pub enforcement: Mode,
    pub forbid: bool,
    pub file: String,
    pub line: usize,
}

/// Parsed, validated policies plus the schema-derived pieces every request reuses.
pub struct PolicyStore {
    pub schema: Schema,
    pub policies: PolicySet,
    meta: HashMap<PolicyId, PolicyMeta>,
    /// Each action as an entity whose parents are *all* its groups (transitively), keyed by
    /// action id. A request adds only the actions it decides, so Cedar's transitive closure over
    /// the per-request entities stays a handful of nodes.
    action_entities: HashMap<String, Entity>,
    /// Where the policies came from, for logs and `/readyz`.
    pub source: String,
    /// Problems that do not stop loading (see `guardrails check --deny-warnings`).
    pub warnings: Vec<PolicyDiagnostic>,
}

impl fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyStore")
            .field("source", &self.source)
            .field("policies", &self.meta.len())
            .finish()
    }
}

impl PolicyStore {
    pub fn meta(&self, id: &PolicyId) -> Option<&PolicyMeta> {
        self.meta.get(id)
    }

    pub fn action_entity(&self, action: &str) -> Option<&Entity> {
        self.action_entities.get(action)
    }

    pub fn policy_count(&self) -> usize {
        self.meta.len()
    }

    pub fn policies_meta(&self) -> impl Iterator<Item = &PolicyMeta> {
        self.meta.values()
    }

    /// Load every `*.cedar` file (not recursively: `tests/` is for policy tests) and the schema.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let read_error = |source| PolicyError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.is_file() && (name.ends_with(".cedar") || name == SCHEMA_FILE) {
                let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                    path: path.clone(),
                    source,
                })?;
                files.insert(name.to_string(), text);
            }
        }
        Self::from_sources(
            files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            &dir.display().to_string(),
        )
    }

    pub fn embedded() -> Result<Self, PolicyError> {
        Self::from_sources(EMBEDDED_POLICIES.iter().copied(), "(embedded policies/)")
    }

    /// Build a store from (file name, contents) pairs: one schema file and any number of policy files.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
        origin: &str,
    ) -> Result<Self, PolicyError> {
        let mut schema_text = None;
        let mut policy_files = Vec::new();
        for (name, text) in sources {
            if name == SCHEMA_FILE {
                schema_text = Some(text);
            } else {
                policy_files.push((name, text));
            }
        }
        let Some(schema_text) = schema_text else {
            return Err(PolicyError::Invalid(vec![PolicyDiagnostic {
                file: format!("{origin}/{SCHEMA_FILE}"),
                line: 0,
                column: 0,
                policy_id: None,
                message: "the schema file is missing".into(),
            }]));
        };
        let schema = match Schema::from_cedarschema_str(schema_text) {
            Ok((schema, _warnings)) => schema,
            Err(error) => {
                return Err(PolicyError::Invalid(vec![diagnostic_at(
                    SCHEMA_FILE,
                    schema_text,
                    &error,
                    None,
                )]));
            }
        };
        let actions = schema.action_entities().map_err(|error| {
            PolicyError::Invalid(vec![PolicyDiagnostic {
                file: SCHEMA_FILE.into(),
                line: 0,
                column: 0,
                policy_id: None,
                message: format!("invalid action hierarchy: {error}"),
            }])
        })?;
        let action_entities = actions
            .iter()
            .map(|action| {
                let uid = action.uid();
                let ancestors = actions
                    .ancestors(&uid)
                    .map(|a| a.cloned().collect())
                    .unwrap_or_default();
                (
                    uid.id().unescaped().to_string(),
                    Entity::new_no_attrs(uid, ancestors),
                )
            })
            .collect();
        let validator = Validator::new(schema.clone());

        let mut diagnostics = Vec::new();
        let mut warnings = Vec::new();
        let mut policies = PolicySet::new();
        let mut meta = HashMap::new();
        let mut seen_ids: HashMap<String, (String, usize)> = HashMap::new();
        for (file, text) in policy_files {
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(error) => {
                    diagnostics.push(diagnostic_at(file, text, &error, None));
                    continue;
                }
            };
            let result = validator.validate(&parsed, ValidationMode::Strict);
            for error in result.validation_errors() {
                let id = display_id(&parsed, error.policy_id(), file);
                diagnostics.push(diagnostic_at(file, text, error, Some(id)));
            }
            for warning in result.validation_warnings() {
                let id = display_id(&parsed, warning.policy_id(), file);
                warnings.push(diagnostic_at(file, text, warning, Some(id)));
            }
            // Cedar numbers policies per parse ("policy0"…); rename them to something stable and
            // unique across files: the @id, or file#N.
            for (index, policy) in parsed.policies().enumerate() {
                let declared_id = policy.annotation("id").filter(|id| !id.is_empty());
                let line = declared_id
                    .and_then(|id| line_of(text, &format!("@id(\"{id}\")")))
                    .unwrap_or(0);
                let mut warn = |id: &str, message: String| {
                    warnings.push(PolicyDiagnostic {
                        file: file.to_string(),
                        line,
                        column: 1,
                        policy_id: Some(id.to_string()),
                        message,
                    })
                };
                let mut id = match declared_id {
                    Some(id) => id.to_string(),
                    None => {
                        let id = format!("{file}#{index}");
                        warn(
                            &id,
                            "no @id: messages, metrics and tests will use this generated name"
                                .into(),
                        );
                        id
                    }
                };
                if let Some((other_file, other_line)) = seen_ids.get(&id) {
                    let renamed = format!("{id}#{file}:{line}");
                    warn(
                        &id,
                        format!(
                            "duplicate @id (first defined at {other_file}:{other_line}); this one is named {renamed:?}"
                        ),
                    );
                    id = renamed;
                }
                let enforcement = match policy.annotation("enforcement") {
                    None => Mode::Enforce,
                    Some(value) => value.parse::<Mode>().unwrap_or_else(|message| {
                        // The strictest reading of an unclear instruction is the safe one.
                        warn(&id, format!("@enforcement: {message}; treated as enforce"));
                        Mode::Enforce
                    }),
                };
                let forbid = policy.effect() == Effect::Forbid;
                if forbid && policy.annotation("reason").is_none() {
                    warn(
                        &id,
                        "forbid without @reason: denied users will not be told why".into(),
                    );
                }
                seen_ids.insert(id.clone(), (file.to_string(), line));
                let policy_id = PolicyId::new(&id);
                if let Err(error) = policies.add(policy.new_id(policy_id.clone())) {
                    diagnostics.push(PolicyDiagnostic {
                        file: file.to_string(),
                        line,
                        column: 1,
                        policy_id: Some(id.clone()),
                        message: error.to_string(),
                    });
                    continue;
                }
                meta.insert(
                    policy_id,
                    PolicyMeta {
                        reason: policy.annotation("reason").map(str::to_string),
                        enforcement,
                        forbid,
                        file: file.to_string(),
                        line,
                        id,
                    },
                );
            }
        }
        if !diagnostics.is_empty() {
            return Err(PolicyError::Invalid(diagnostics));
        }
        Ok(Self {
            schema,
            policies,
            meta,
            action_entities,
            source: origin.to_string(),
            warnings,
        })
    }
}

/// `Team::"x"` and `Environment::"x"` literals in policies that the config never defines: usually
/// a typo that makes a policy silently never match.
pub fn unknown_names(store: &PolicyStore, config: &crate::config::Config) -> Vec<String> {
    let file = &config.file;
    let environments: std::collections::BTreeSet<&str> = file
        .namespaces
        .values()
        .filter_map(|n| n.environment.as_deref())
        .chain(file.clusters.values().map(String::as_str))
        .collect();
    let mut found = Vec::new();
    for (id, meta) in &store.meta {
        let Some(policy) = store.policies.policy(id) else {
            continue;
        };
        let text = policy.to_string();
        for (entity_type, known) in [
            (
                "Team",
                file.teams.keys().map(String::as_str).collect::<Vec<_>>(),
            ),
            ("Environment", environments.iter().copied().collect()),
        ] {
            let marker = format!("{entity_type}::\"");
            for (start, _) in text.match_indices(&marker) {
                let rest = &text[start + marker.len()..];
                let name = rest.split('"').next().unwrap_or("");
                if !known.contains(&name) {
                    found.push(format!(
                        "{}:{}: policy {}: {entity_type}::\"{name}\" is not defined in the config, so this never matches it",
                        meta.file, meta.line, meta.id
                    ));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn display_id(set: &PolicySet, id: &PolicyId, file: &str) -> String {
    set.policy(id)
        .and_then(|policy| policy.annotation("id"))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{file} {id}"))
}

/// Turn a Cedar diagnostic into file:line:column using its first labelled span.
fn diagnostic_at(
    file: &str,
    text: &str,
    error: &dyn Diagnostic,
    policy_id: Option<String>,
) -> PolicyDiagnostic {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((0, 0), |offset| line_column(text, offset));
    let mut message = error.to_string();
    if let Some(help) = error.help() {
        message.push_str(&format!(" (hint: {help})"));
    }
    PolicyDiagnostic {
        file: file.to_string(),
        line,
        column,
        policy_id,
        message,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let prefix = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = prefix.matches('\n').count() + 1;
    let column = prefix
        .rfind('\n')
        .map_or(prefix.len(), |nl| prefix.len() - nl - 1)
        + 1;
    (line, column)
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|offset| line_column(text, offset).0)
}

#[cfg(test)]
#[path = "unit_tests/policy_tests.rs"]
mod tests;
