//! The policy store: the schema and `.cedar` files, parsed and strictly validated into an immutable
//! snapshot that the request path shares through an `Arc`.

mod diagnostics;
mod slice;
mod sources;

pub use crate::fingerprint::{sources_hash, text_hash};
pub use diagnostics::{PolicyDiagnostic, PolicyError, unknown_names};
use diagnostics::{diagnostic_at, display_id, line_of};
use slice::{Slice, referenced_groups, slice_by_action, uncovered_actions};
pub use sources::read_sources;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Effect, Entity, EntityUid, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    ValidationWarning, Validator,
};

use crate::vocabulary::Mode;

/// The schema file name inside a policy directory.
pub const SCHEMA_FILE: &str = "guardrails.cedarschema";

/// The shipped policy directory, compiled into the binary so `serve --dev` works anywhere.
pub const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    (
        SCHEMA_FILE,
        include_str!("../../policies/guardrails.cedarschema"),
    ),
    ("argocd.cedar", include_str!("../../policies/argocd.cedar")),
    (
        "default.cedar",
        include_str!("../../policies/default.cedar"),
    ),
    ("drift.cedar", include_str!("../../policies/drift.cedar")),
    (
        "ownership.cedar",
        include_str!("../../policies/ownership.cedar"),
    ),
    (
        "projects.cedar",
        include_str!("../../policies/projects.cedar"),
    ),
];

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
    /// `sha256:…` over the file names and contents this store was built from (see `sources_hash`):
    /// what `/readyz` and `check` report, and what the reloader compares with the disk.
    pub hash: String,
    /// Actions (or action, principal type and resource type combinations) that no permit policy
    /// can match, so Cedar denies them to everyone (see `uncovered_actions`). Empty for a set with
    /// the shipped `default.cedar`.
    pub default_denied: Vec<String>,
    /// For each action id, the policies whose scope can match it, per principal and resource
    /// type the schema allows (see `slice`): what a request for that action is decided on.
    slices: HashMap<String, Vec<Slice>>,
    /// Some slice is indexed by entity.
    indexed: bool,
    /// The ids of every `Group` a policy names, or `None` when they could not all be read. A
    /// principal's other groups cannot change any decision: Cedar can only reach a group
    /// through a literal (no attribute or context value holds one).
    referenced_groups: Option<HashSet<String>>,
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

    /// The policy sets to evaluate for one request (each policy in at most one of them): the
    /// policies whose scope can match `action` for this principal and resource, given each
    /// one's uid and ancestors (`principal_in`, `resource_in`: the entity itself first, then
    /// its ancestors). Every other policy's scope is false for such a request, so it can neither
    /// match nor fail, and leaving it out changes no decision. A kind the schema does not declare
    /// gets the whole set. Cedar's answers over these sets combine as over their union: denied
    /// if any set has a satisfied forbid or none has a satisfied permit.
    pub fn applicable<'a>(
        &'a self,
        action: &str,
        principal_in: &[&EntityUid],
        resource_in: &[&EntityUid],
        out: &mut Vec<&'a PolicySet>,
    ) {
        let (Some(principal), Some(resource)) = (principal_in.first(), resource_in.first()) else {
            out.push(&self.policies);
            return;
        };
        let slice = self.slices.get(action).and_then(|slices| {
            slices.iter().find(|s| {
                &s.principal == principal.type_name() && &s.resource == resource.type_name()
            })
        });
        match slice {
            Some(slice) => slice.sets(principal_in, resource_in, out),
            None => out.push(&self.policies),
        }
    }

    /// The same store without its slices and with every group kept: each request is decided
    /// over the whole set, as Cedar alone would. For the tests that compare the two, and the
    /// benchmarks.
    #[doc(hidden)]
    pub fn unsliced(mut self) -> Self {
        self.slices.clear();
        self.indexed = false;
        self.referenced_groups = None;
        self
    }

    /// Whether some slice is indexed by entity, so that `applicable` needs the principal's and the
    /// resource's ancestors (else their uids alone do).
    pub fn indexed(&self) -> bool {
        self.indexed
    }

    /// Whether any policy names `Group::"<group>"` (always true when that is not known). Groups
    /// no policy names need not be parents of the principal.
    pub fn names_group(&self, group: &str) -> bool {
        self.referenced_groups
            .as_ref()
            .is_none_or(|groups| groups.contains(group))
    }

    pub fn policies_meta(&self) -> impl Iterator<Item = &PolicyMeta> {
        self.meta.values()
    }

    /// Load every `*.cedar` file (not recursively: `tests/` is for policy tests) and the schema.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let files = read_sources(dir)?;
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
        // A file being rewritten in place is empty for a moment; loading it then would drop
        // its policies. A file meant to hold none says so with a comment.
        let empty: Vec<PolicyDiagnostic> = policy_files
            .iter()
            .copied()
            .chain(schema_text.map(|text| (SCHEMA_FILE, text)))
            .filter(|(_, text)| text.trim().is_empty())
            .map(|(name, _)| PolicyDiagnostic {
                file: format!("{origin}/{name}"),
                line: 0,
                column: 0,
                policy_id: None,
                message: "the file is empty (a file being rewritten looks like this); a file \
                          meant to hold no policies says so with a comment"
                    .into(),
            })
            .collect();
        if !empty.is_empty() {
            return Err(PolicyError::Invalid(empty));
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
        // Policies Cedar proves can never apply (by their final id): not a permit for anyone.
        let mut never_apply = std::collections::HashSet::new();
        let hash = sources_hash(
            std::iter::once((SCHEMA_FILE, schema_text)).chain(policy_files.iter().copied()),
        );
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
            let mut impossible = std::collections::HashSet::new();
            for warning in result.validation_warnings() {
                if matches!(
                    warning,
                    ValidationWarning::ImpossiblePolicy(_)
                        | ValidationWarning::InvalidActionApplication(_)
                ) {
                    impossible.insert(warning.policy_id().clone());
                }
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
                if impossible.contains(policy.id()) {
                    never_apply.insert(policy_id.clone());
                }
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
        let permits: Vec<&Policy> = policies
            .policies()
            .filter(|p| p.effect() == Effect::Permit && !never_apply.contains(p.id()))
            .collect();
        let default_denied = uncovered_actions(&schema, &permits);
        let slices = slice_by_action(&schema, &policies);
        let indexed = slices
            .values()
            .flatten()
            .any(|s| !s.by_resource.is_empty() || !s.by_principal.is_empty());
        let referenced_groups = referenced_groups(&policies);
        Ok(Self {
            schema,
            policies,
            meta,
            action_entities,
            source: origin.to_string(),
            warnings,
            hash,
            default_denied,
            slices,
            indexed,
            referenced_groups,
        })
    }
}

#[cfg(test)]
#[path = "../unit_tests/policy_tests.rs"]
mod tests;
