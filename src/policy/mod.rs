//! The policy store: the schema and `.cedar` files, parsed and strictly validated into an immutable
//! snapshot that the request path shares through an `Arc`.

mod diagnostics;
mod load;
mod slice;
mod sources;

pub use crate::fingerprint::{sources_hash, text_hash};
pub use diagnostics::{PolicyDiagnostic, PolicyError, parse_error, unknown_names};
use slice::{Slice, referenced_groups, slice_by_action, uncovered_actions};
pub use sources::read_sources;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use cedar_policy::{Effect, Entity, EntityUid, Policy, PolicyId, PolicySet, Schema};
use cedar_policy_core::ast;

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
        "namespaces.cedar",
        include_str!("../../policies/namespaces.cedar"),
    ),
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

/// A policy as the decision evaluates it: Cedar's own form, with the expression Cedar evaluates
/// for it built once (`Policy::condition` builds it anew on every call: the scope constraints
/// and conditions joined with `&&`, a tenth of a small policy's evaluation).
#[derive(Debug, Clone)]
pub struct Evaluable {
    pub policy: ast::Policy,
    pub condition: ast::Expr,
}

impl Evaluable {
    pub fn new(policy: ast::Policy) -> Self {
        Self {
            condition: policy.condition(),
            policy,
        }
    }
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
    /// Every policy in Cedar's own form: what a request kind without a slice is decided on.
    whole: Vec<Evaluable>,
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
        out: &mut Vec<&'a [Evaluable]>,
    ) {
        let (Some(principal), Some(resource)) = (principal_in.first(), resource_in.first()) else {
            out.push(&self.whole);
            return;
        };
        let slice = self.slices.get(action).and_then(|slices| {
            slices.iter().find(|s| {
                &s.principal == principal.type_name() && &s.resource == resource.type_name()
            })
        });
        match slice {
            Some(slice) => slice.sets(principal_in, resource_in, out),
            None => out.push(&self.whole),
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
        load::refuse_empty_files(origin, &policy_files, schema_text)?;
        let Some(schema_text) = schema_text else {
            return Err(PolicyError::Invalid(vec![PolicyDiagnostic::whole_file(
                format!("{origin}/{SCHEMA_FILE}"),
                "the schema file is missing".into(),
            )]));
        };
        let (schema, action_entities) = load::schema(schema_text)?;
        let hash = sources_hash(
            std::iter::once((SCHEMA_FILE, schema_text)).chain(policy_files.iter().copied()),
        );
        let mut loader = load::Loader::new(&schema);
        for (file, text) in policy_files {
            loader.add_file(file, text);
        }
        let load::Loaded {
            policies,
            meta,
            warnings,
            never_apply,
        } = loader.finish()?;
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
        let whole = AsRef::<ast::PolicySet>::as_ref(&policies)
            .policies()
            .cloned()
            .map(Evaluable::new)
            .collect();
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
            whole,
            indexed,
            referenced_groups,
        })
    }
}

#[cfg(test)]
#[path = "../unit_tests/policy_tests.rs"]
mod tests;
