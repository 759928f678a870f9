//! Reading policy text into a validated set: each policy renamed to its `@id`, its
//! annotations read (`@reason`, `@enforcement`), every problem kept with file, line and column.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Effect, Entity, Policy, PolicyId, PolicySet, Schema, ValidationMode, ValidationWarning,
    Validator,
};

use super::diagnostics::{PolicyDiagnostic, PolicyError, diagnostic_at, display_id, line_column};
use super::{PolicyMeta, SCHEMA_FILE};
use crate::vocabulary::Mode;

/// A file being rewritten in place is empty for a moment; loading it then would drop its
/// policies. A file meant to hold none says so with a comment.
pub(super) fn refuse_empty_files(
    origin: &str,
    policy_files: &[(&str, &str)],
    schema_text: Option<&str>,
) -> Result<(), PolicyError> {
    let empty: Vec<PolicyDiagnostic> = policy_files
        .iter()
        .copied()
        .chain(schema_text.map(|text| (SCHEMA_FILE, text)))
        .filter(|(_, text)| text.trim().is_empty())
        .map(|(name, _)| {
            PolicyDiagnostic::whole_file(
                format!("{origin}/{name}"),
                "the file is empty (a file being rewritten looks like this); a file \
                 meant to hold no policies says so with a comment"
                    .into(),
            )
        })
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::Invalid(empty))
    }
}

/// The schema, and each action as an entity whose parents are all its groups.
pub(super) fn schema(text: &str) -> Result<(Schema, HashMap<String, Entity>), PolicyError> {
    let schema = match Schema::from_cedarschema_str(text) {
        Ok((schema, _warnings)) => schema,
        Err(error) => {
            return Err(PolicyError::Invalid(vec![diagnostic_at(
                SCHEMA_FILE,
                text,
                &error,
                None,
            )]));
        }
    };
    let actions = schema.action_entities().map_err(|error| {
        PolicyError::Invalid(vec![PolicyDiagnostic::whole_file(
            SCHEMA_FILE.into(),
            format!("invalid action hierarchy: {error}"),
        )])
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
    Ok((schema, action_entities))
}

/// The annotations Guardrails reads.
const ANNOTATIONS: [&str; 3] = ["id", "reason", "enforcement"];
const MODES: [&str; 3] = ["audit", "warn", "enforce"];

/// The closest of `known` to `word` (case aside): up to two edits away, or one the start of
/// the other (`warning` for `warn`).
pub(super) fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    known
        .iter()
        .map(|candidate| {
            let prefix = word.len().min(candidate.len()) >= 3
                && (word.starts_with(candidate) || candidate.starts_with(word.as_str()));
            let distance = if prefix {
                1
            } else {
                strsim::damerau_levenshtein(&word, candidate)
            };
            (distance, *candidate)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Where each policy of `text` starts (byte offset), by Cedar's per-parse id ("policy0"…).
fn policy_starts(text: &str) -> HashMap<String, usize> {
    let Ok((texts, _)) =
        cedar_policy_core::parser::parse_policyset_and_also_return_policy_text(text)
    else {
        return HashMap::new();
    };
    texts
        .into_iter()
        .filter_map(|(id, policy_text)| {
            let offset = (policy_text?.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            (offset <= text.len()).then(|| (id.to_string(), offset))
        })
        .collect()
}

/// What a successful load produced.
pub(super) struct Loaded {
    pub policies: PolicySet,
    pub meta: HashMap<PolicyId, PolicyMeta>,
    pub warnings: Vec<PolicyDiagnostic>,
    /// Policies Cedar proves can never apply (by their final id): not a permit for anyone.
    pub never_apply: HashSet<PolicyId>,
}

/// Policy files added one at a time, validated against the schema.
pub(super) struct Loader {
    validator: Validator,
    diagnostics: Vec<PolicyDiagnostic>,
    loaded: Loaded,
    /// Each final id and where it was first defined.
    seen_ids: HashMap<String, (String, usize)>,
}

impl Loader {
    pub(super) fn new(schema: &Schema) -> Self {
        Self {
            validator: Validator::new(schema.clone()),
            diagnostics: Vec::new(),
            loaded: Loaded {
                policies: PolicySet::new(),
                meta: HashMap::new(),
                warnings: Vec::new(),
                never_apply: HashSet::new(),
            },
            seen_ids: HashMap::new(),
        }
    }

    pub(super) fn add_file(&mut self, file: &str, text: &str) {
        let parsed = match PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.diagnostics
                    .push(diagnostic_at(file, text, &error, None));
                return;
            }
        };
        let result = self.validator.validate(&parsed, ValidationMode::Strict);
        for error in result.validation_errors() {
            let id = display_id(&parsed, error.policy_id(), file);
            self.diagnostics
                .push(diagnostic_at(file, text, error, Some(id)));
        }
        let mut impossible = HashSet::new();
        for warning in result.validation_warnings() {
            if matches!(
                warning,
                ValidationWarning::ImpossiblePolicy(_)
                    | ValidationWarning::InvalidActionApplication(_)
            ) {
                impossible.insert(warning.policy_id().clone());
            }
            let id = display_id(&parsed, warning.policy_id(), file);
            self.loaded
                .warnings
                .push(diagnostic_at(file, text, warning, Some(id)));
        }
        let starts = policy_starts(text);
        for (index, policy) in parsed.policies().enumerate() {
            let start = starts.get(&policy.id().to_string()).copied().unwrap_or(0);
            self.check_annotations(file, text, start, policy);
            let impossible = impossible.contains(policy.id());
            self.add_policy(file, text, (index, start), policy, impossible);
        }
    }

    /// Cedar numbers policies per parse ("policy0"…): each is renamed to something stable and
    /// unique across files, the @id or file#N.
    fn add_policy(
        &mut self,
        file: &str,
        text: &str,
        (index, start): (usize, usize),
        policy: &Policy,
        impossible: bool,
    ) {
        let (id, line, named) = self.name(file, text, (index, start), policy);
        let mut warnings = Vec::new();
        // An invalid value is an error (`check_annotations`); the set is not loaded.
        let enforcement = policy
            .annotation("enforcement")
            .and_then(|value| value.parse::<Mode>().ok())
            .unwrap_or(Mode::Enforce);
        let forbid = policy.effect() == Effect::Forbid;
        if forbid && policy.annotation("reason").is_none() {
            warnings.push("forbid without @reason: denied users will not be told why".to_string());
        }
        let at = |policy_id: &str, message: String| PolicyDiagnostic {
            file: file.to_string(),
            line,
            column: 1,
            policy_id: Some(policy_id.to_string()),
            message,
        };
        let named = named.into_iter().map(|(id, message)| at(&id, message));
        let annotated = warnings.into_iter().map(|message| at(&id, message));
        let warnings: Vec<PolicyDiagnostic> = named.chain(annotated).collect();
        self.loaded.warnings.extend(warnings);
        self.seen_ids.insert(id.clone(), (file.to_string(), line));
        let policy_id = PolicyId::new(&id);
        if impossible {
            self.loaded.never_apply.insert(policy_id.clone());
        }
        if let Err(error) = self.loaded.policies.add(policy.new_id(policy_id.clone())) {
            self.diagnostics.push(at(&id, error.to_string()));
            return;
        }
        self.loaded.meta.insert(
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

    /// The policy's final id, the line of its `@id`, and what to warn about its name (each with
    /// the id it was found under): a generated one (no `@id`), or a duplicate renamed
    /// `id#file:line`.
    fn name(
        &self,
        file: &str,
        text: &str,
        (index, start): (usize, usize),
        policy: &Policy,
    ) -> (String, usize, Vec<(String, String)>) {
        let declared_id = policy.annotation("id").filter(|id| !id.is_empty());
        // The line of its @id, else where the policy starts.
        let line = declared_id
            .and_then(|id| text[start..].find(&format!("@id(\"{id}\")")))
            .map_or_else(
                || line_column(text, start).0,
                |offset| line_column(text, start + offset).0,
            );
        let mut warnings = Vec::new();
        let id = match declared_id {
            Some(id) => id.to_string(),
            None => {
                let id = format!("{file}#{index}");
                warnings.push((
                    id.clone(),
                    "no @id: messages, metrics and tests will use this generated name".to_string(),
                ));
                id
            }
        };
        let Some((other_file, other_line)) = self.seen_ids.get(&id) else {
            return (id, line, warnings);
        };
        let renamed = format!("{id}#{file}:{line}");
        warnings.push((
            id.clone(),
            format!(
                "duplicate @id (first defined at {other_file}:{other_line}); this one is named {renamed:?}"
            ),
        ));
        (renamed, line, warnings)
    }

    /// Annotations are read like code: a name Guardrails does not know, or an `@enforcement`
    /// it cannot read, is an error (a typo must not turn an audit rollout into enforcement).
    fn check_annotations(&mut self, file: &str, text: &str, start: usize, policy: &Policy) {
        for (key, value) in policy.annotations() {
            let message = if !ANNOTATIONS.contains(&key) {
                let hint = did_you_mean(key, &ANNOTATIONS)
                    .map(|known| format!("; did you mean @{known}?"))
                    .unwrap_or_default();
                format!(
                    "unknown annotation @{key} (Guardrails reads @id, @reason and @enforcement){hint}"
                )
            } else if key == "enforcement"
                && let Err(message) = value.parse::<Mode>()
            {
                let hint = did_you_mean(value, &MODES)
                    .map(|known| format!("; did you mean \"{known}\"?"))
                    .unwrap_or_default();
                format!("@enforcement: {message}{hint}")
            } else {
                continue;
            };
            let (line, column) = match text[start..].find(&format!("@{key}")) {
                Some(offset) => line_column(text, start + offset),
                None => line_column(text, start),
            };
            self.diagnostics.push(PolicyDiagnostic {
                file: file.to_string(),
                line,
                column,
                policy_id: policy.annotation("id").map(str::to_string),
                message,
            });
        }
    }

    pub(super) fn finish(self) -> Result<Loaded, PolicyError> {
        if self.diagnostics.is_empty() {
            Ok(self.loaded)
        } else {
            Err(PolicyError::Invalid(self.diagnostics))
        }
    }
}
