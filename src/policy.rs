//! The policy store: the schema and `.cedar` files, parsed and strictly validated into an immutable
//! snapshot that the request path shares through an `Arc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Effect, Entity, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, ResourceConstraint, Schema, ValidationMode, ValidationWarning, Validator,
};
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
    ("projects.cedar", include_str!("../policies/projects.cedar")),
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
    /// Some action can be denied to everyone because no permit policy can match it (Cedar denies
    /// whatever no permit allows): usually a removed `default.cedar`.
    #[error(
        "no permit policy can match {} (Cedar denies what no permit allows, so these are denied to \
         everyone, Argo CD's own writes included): {}. Restore a permit such as the shipped \
         default.cedar `permit (principal, action, resource);`, or, if denying by default is \
         deliberate, pass --allow-default-deny or set `allowDefaultDeny: true` in the config",
        if .0.len() == 1 { "this action" } else { "these actions" },
        .0.join(", ")
    )]
    DefaultDeny(Vec<String>),
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

/// Slices with more policies than this are indexed by the entity their scope names.
const INDEX_ABOVE: usize = 16;

/// The policies of one request kind (action, principal type, resource type) whose scope can
/// match it. In a large slice, a policy whose condition requires the resource's team
/// (`required_team`), else whose scope is `resource in E` or `resource == E` (or, failing that,
/// the same of `principal`) is filed under that team or `E`: it can only match a request whose
/// resource (principal) is `E` or has `E` among its ancestors.
struct Slice {
    principal: EntityTypeName,
    resource: EntityTypeName,
    /// Policies filed under no entity.
    general: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
    by_principal: HashMap<EntityUid, PolicySet>,
}

impl Slice {
    fn sets<'a>(
        &'a self,
        principal_in: &[&EntityUid],
        resource_in: &[&EntityUid],
        out: &mut Vec<&'a PolicySet>,
    ) {
        out.push(&self.general);
        out.extend(resource_in.iter().filter_map(|e| self.by_resource.get(*e)));
        out.extend(
            principal_in
                .iter()
                .filter_map(|e| self.by_principal.get(*e)),
        );
    }
}

/// The entity a policy's scope names: its resource's, else its principal's.
#[derive(Clone)]
enum Anchor {
    Resource(EntityUid),
    Principal(EntityUid),
    None,
}

fn anchor(policy: &Policy) -> Anchor {
    if let Some(team) = required_team(policy) {
        return Anchor::Resource(team);
    }
    match policy.resource_constraint() {
        ResourceConstraint::In(e) | ResourceConstraint::Eq(e) | ResourceConstraint::IsIn(_, e) => {
            return Anchor::Resource(e);
        }
        ResourceConstraint::Any | ResourceConstraint::Is(_) => {}
    }
    match policy.principal_constraint() {
        PrincipalConstraint::In(e)
        | PrincipalConstraint::Eq(e)
        | PrincipalConstraint::IsIn(_, e) => Anchor::Principal(e),
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => Anchor::None,
    }
}

/// The team a policy's condition requires of the resource: its first clause is `when { resource
/// has team && resource.team == Team::"x" && … }`. Such a policy is false, without an error,
/// unless the resource's `team` is `Team::"x"`; and a resource's team is always among its
/// parents (`entities::placed_in`), so it can be filed under `Team::"x"` like a `resource in`
/// scope. Per-team rules often share one scope (`resource in Environment::"prod"`) and differ
/// only here.
fn required_team(policy: &Policy) -> Option<EntityUid> {
    use serde_json::{Value, json};
    fn conjuncts<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
        match expr.get("&&") {
            Some(and) => {
                if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                    conjuncts(left, out);
                    conjuncts(right, out);
                }
            }
            None => out.push(expr),
        }
    }
    let est = policy.to_json().ok()?;
    let first = est.get("conditions")?.as_array()?.first()?;
    if first.get("kind")? != "when" {
        return None;
    }
    let mut all = Vec::new();
    conjuncts(first.get("body")?, &mut all);
    let [guard, equality, ..] = all.as_slice() else {
        return None;
    };
    let resource = json!({"Var": "resource"});
    let has = guard.get("has")?;
    if has.get("left")? != &resource || has.get("attr")? != "team" {
        return None;
    }
    let equality = equality.get("==")?;
    let team_attr = json!({".": {"left": resource, "attr": "team"}});
    let literal = match (equality.get("left")?, equality.get("right")?) {
        (left, right) if left == &team_attr => right,
        (left, right) if right == &team_attr => left,
        _ => return None,
    };
    let entity = literal.get("Value")?.get("__entity")?;
    if entity.get("type")? != "Team" {
        return None;
    }
    let id = entity.get("id")?.as_str()?;
    Some(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Team").ok()?,
        cedar_policy::EntityId::new(id),
    ))
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
        let slices = slice(&schema, &policies);
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

/// The files `load_dir` reads from `dir`, by name: the schema and every `*.cedar` file (symlinks
/// followed, as in a mounted ConfigMap; subdirectories and dangling links skipped).
pub fn read_sources(dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
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
    Ok(files)
}

/// `sha256:<hex>` over (name, contents) pairs in name order, so the same files hash the same
/// whether they come from a directory or the binary.
pub fn sources_hash<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = sources.into_iter().collect();
    sorted.sort_unstable();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, text) in sorted {
        // Lengths keep ("ab", "c") and ("a", "bc") apart.
        context.update(&(name.len() as u64).to_le_bytes());
        context.update(name.as_bytes());
        context.update(&(text.len() as u64).to_le_bytes());
        context.update(text.as_bytes());
    }
    hex_digest(context.finish())
}

/// `sha256:<hex>` of one text (the config file).
pub fn text_hash(text: &str) -> String {
    hex_digest(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

pub(crate) fn hex_digest(digest: ring::digest::Digest) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The request kinds (principal type, action, resource type, from the schema's `appliesTo`) that
/// no permit policy can match, grouped by action: `sync`, or `scale (ServiceAccount on Rollout)`
/// when only some kinds of one action are left out.
///
/// What counts as "can match": the policy is a `permit`, Cedar's validator does not prove it can
/// never apply, its action scope includes the action (`action`, `==`, or `in` the action or one
/// of its groups), and its principal and resource scopes admit the type (`is`/`==` name a type;
/// `in` admits any type that can be a member). `when`/`unless` conditions are not analysed: a
/// conditional permit counts, since it says who may.
fn uncovered_actions(schema: &Schema, permits: &[&Policy]) -> Vec<String> {
    let Some(scopes) = Scopes::new(schema) else {
        return Vec::new();
    };
    let mut missing: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for env in schema.request_envs() {
        let action = env.action();
        let name = action.id().unescaped().to_string();
        let entry = missing.entry(name).or_default();
        entry.0 += 1;
        let chain = scopes.groups_of(action);
        let covered = permits
            .iter()
            .any(|policy| scopes.can_match(policy, &chain, env.principal(), env.resource()));
        if !covered {
            entry
                .1
                .push(format!("{} on {}", env.principal(), env.resource()));
        }
    }
    missing
        .into_iter()
        .filter(|(_, (_, left_out))| !left_out.is_empty())
        .map(|(action, (kinds, mut left_out))| {
            if left_out.len() == kinds {
                action
            } else {
                left_out.sort();
                format!("{action} ({})", left_out.join(", "))
            }
        })
        .collect()
}

/// What a policy's scope can match, from the schema alone (`when`/`unless` are not looked at).
/// Exact for the requests Guardrails builds: an action's entity has every group it is in as a
/// parent, and principals and resources only have parents of the types the schema declares.
struct Scopes<'a> {
    schema: &'a Schema,
    actions: cedar_policy::Entities,
}

impl<'a> Scopes<'a> {
    fn new(schema: &'a Schema) -> Option<Self> {
        Some(Self {
            schema,
            actions: schema.action_entities().ok()?,
        })
    }

    /// The action and every group it is in.
    fn groups_of(&self, action: &EntityUid) -> Vec<EntityUid> {
        let mut all = vec![action.clone()];
        if let Some(ancestors) = self.actions.ancestors(action) {
            all.extend(ancestors.cloned());
        }
        all
    }

    /// Can an entity of type `actual` satisfy `is required` and `in member_of`?
    fn type_admits(
        &self,
        required: Option<&EntityTypeName>,
        member_of: Option<&EntityUid>,
        actual: &EntityTypeName,
    ) -> bool {
        if required.is_some_and(|t| t != actual) {
            return false;
        }
        match member_of {
            None => true,
            Some(parent) => {
                parent.type_name() == actual
                    || self
                        .schema
                        .ancestors(actual)
                        .is_some_and(|mut a| a.any(|t| t == parent.type_name()))
            }
        }
    }

    /// Can `policy`'s scope match a request for the first action of `action_and_groups` (then
    /// its groups), by a principal of type `principal`, on a resource of type `resource`?
    fn can_match(
        &self,
        policy: &Policy,
        action_and_groups: &[EntityUid],
        principal: &EntityTypeName,
        resource: &EntityTypeName,
    ) -> bool {
        let action = match policy.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(action) => action_and_groups.first() == Some(&action),
            ActionConstraint::In(list) => list.iter().any(|a| action_and_groups.contains(a)),
        };
        let principal = match policy.principal_constraint() {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::In(parent) => self.type_admits(None, Some(&parent), principal),
            PrincipalConstraint::Eq(entity) => entity.type_name() == principal,
            PrincipalConstraint::Is(t) => &t == principal,
            PrincipalConstraint::IsIn(t, parent) => {
                self.type_admits(Some(&t), Some(&parent), principal)
            }
        };
        let resource = match policy.resource_constraint() {
            ResourceConstraint::Any => true,
            ResourceConstraint::In(parent) => self.type_admits(None, Some(&parent), resource),
            ResourceConstraint::Eq(entity) => entity.type_name() == resource,
            ResourceConstraint::Is(t) => &t == resource,
            ResourceConstraint::IsIn(t, parent) => {
                self.type_admits(Some(&t), Some(&parent), resource)
            }
        };
        action && principal && resource
    }
}

/// The policy set cut once per request kind the schema declares (action, principal type,
/// resource type): each slice holds the policies whose scope can match that
/// kind. A Cedar request then evaluates only those; the rest have a false scope for it.
fn slice(schema: &Schema, policies: &PolicySet) -> HashMap<String, Vec<Slice>> {
    let mut slices: HashMap<String, Vec<Slice>> = HashMap::new();
    let Some(scopes) = Scopes::new(schema) else {
        return slices;
    };
    // Once per policy, not per request kind it can match: `required_team` reads its JSON form.
    let anchors: HashMap<&PolicyId, Anchor> = policies
        .policies()
        .map(|policy| (policy.id(), anchor(policy)))
        .collect();
    for env in schema.request_envs() {
        let chain = scopes.groups_of(env.action());
        let matching: Vec<&Policy> = policies
            .policies()
            .filter(|policy| scopes.can_match(policy, &chain, env.principal(), env.resource()))
            .collect();
        let mut slice = Slice {
            principal: env.principal().clone(),
            resource: env.resource().clone(),
            general: PolicySet::new(),
            by_resource: HashMap::new(),
            by_principal: HashMap::new(),
        };
        let index = matching.len() > INDEX_ABOVE;
        for policy in matching {
            let set = match anchors.get(policy.id()).cloned().unwrap_or(Anchor::None) {
                Anchor::Resource(e) if index => slice.by_resource.entry(e).or_default(),
                Anchor::Principal(e) if index => slice.by_principal.entry(e).or_default(),
                _ => &mut slice.general,
            };
            // Adding a policy of `policies` under its own id cannot fail; if it did, the slice
            // would miss a policy, so this kind gets the whole set instead.
            if set.add(policy.clone()).is_err() {
                slice.general = policies.clone();
                slice.by_resource.clear();
                slice.by_principal.clear();
                break;
            }
        }
        slices
            .entry(env.action().id().unescaped().to_string())
            .or_default()
            .push(slice);
    }
    slices
}

/// Every `Group::"…"` id the policies name, read from their JSON form; `None` if a policy has
/// none (then no group may be left out).
fn referenced_groups(policies: &PolicySet) -> Option<HashSet<String>> {
    fn walk(value: &serde_json::Value, found: &mut HashSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(serde_json::Value::as_str) == Some("Group")
                    && let Some(id) = map.get("id").and_then(serde_json::Value::as_str)
                {
                    found.insert(id.to_string());
                }
                map.values().for_each(|v| walk(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = HashSet::new();
    for policy in policies.policies() {
        walk(&policy.to_json().ok()?, &mut found);
    }
    // A template's slots could be linked to any group.
    if policies.templates().next().is_some() {
        return None;
    }
    Some(found)
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
