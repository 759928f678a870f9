//! Decision: one Cedar request per recognised action against the current snapshot, combined with
//! each policy's enforcement and the global mode.

use cedar_policy::{EntityUid, Request as CedarRequest};
use cedar_policy_core::ast::{self, Effect, EntityUIDEntry};
use cedar_policy_core::authorizer::AuthorizationError;
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use serde::{Deserialize, Serialize};

use crate::admission::Request;
use crate::cluster::LiveNamespaces;
use crate::config::Config;
use crate::entities::{self, CedarInputs, EntityError, Placement};
use crate::identity::{self, Identity};
use crate::policy::{Evaluable, PolicyMeta, PolicyStore};
use crate::recognize::{self, Recognition, Recognized};
use crate::vocabulary::{Action, Mode, Verdict};

mod cache;

pub use cache::{
    CacheStats, DECISION_CACHE_BYTES, DECISION_CACHE_ENTRIES, DecisionCache,
    LARGEST_REMEMBERED_BYTES,
};

/// Everything a decision depends on, immutable once built; reloads build a new one and swap it.
#[derive(Debug)]
pub struct Engine {
    pub policies: PolicyStore,
    pub config: Config,
    /// The global mode: `--mode` if given, else `mode:` from config.
    pub mode: Mode,
    /// Namespace labels observed in the cluster (empty unless the namespace watch runs); shared
    /// with the watcher and carried over on reload.
    pub live_namespaces: LiveNamespaces,
    /// When this engine was built: the time of the last successful load, for `/readyz`.
    pub loaded_at: jiff::Timestamp,
    /// The decisions this engine has made, by what Cedar saw (see `cache`).
    pub decisions: DecisionCache,
}

impl Engine {
    pub fn new(policies: PolicyStore, config: Config, mode_override: Option<Mode>) -> Self {
        Self {
            mode: mode_override.unwrap_or(config.mode()),
            policies,
            config,
            live_namespaces: crate::cluster::empty(),
            loaded_at: jiff::Timestamp::now(),
            decisions: DecisionCache::default(),
        }
    }
}

/// Pseudo-policy id used when no permit policy matched (Cedar's default deny).
pub const NO_PERMIT: &str = "no-permit";

/// A forbid that matched one action (or a default deny), with what it would and does do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMatch {
    pub policy: String,
    pub action: Action,
    pub reason: String,
    /// The policy's own `@enforcement`: what would happen.
    pub declared: Mode,
    /// The looser of `declared` and the global mode: what does happen.
    pub effective: Mode,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub allowed: bool,
    pub recognition: Option<Recognition>,
    /// Set when the resource is not one Guardrails decides.
    pub unsupported: Option<String>,
    pub identity: Option<Identity>,
    pub matches: Vec<PolicyMatch>,
    /// Evaluation problems (each also counted as a match of the failing policy).
    pub errors: Vec<String>,
    pub mode: Mode,
    /// `auditWarnings` from the config: audit matches are shown to the client too.
    pub audit_warnings: bool,
    /// Where the resource lands (none for a resource Guardrails does not decide).
    #[serde(skip)]
    pub placement: Option<Placement>,
    /// The matches were remembered from an earlier request with the same Cedar inputs.
    #[serde(skip)]
    pub remembered: bool,
}

impl Outcome {
    /// A resource Guardrails does not decide: allowed, and said so.
    fn unsupported(resource: String, mode: Mode) -> Self {
        Outcome {
            allowed: true,
            recognition: None,
            unsupported: Some(resource),
            identity: None,
            matches: Vec::new(),
            errors: Vec::new(),
            mode,
            audit_warnings: false,
            placement: None,
            remembered: false,
        }
    }

    /// What the request is answered with.
    pub fn verdict(&self) -> Verdict {
        if self.unsupported.is_some() {
            Verdict::Unsupported
        } else if !self.allowed {
            Verdict::Deny
        } else if self.matches.iter().any(|m| m.effective == Mode::Warn) {
            Verdict::AllowWarn
        } else if self.matches.is_empty() {
            Verdict::Allow
        } else {
            Verdict::AllowAudit
        }
    }

    pub fn enforced(&self) -> impl Iterator<Item = &PolicyMatch> {
        self.matches.iter().filter(|m| m.effective == Mode::Enforce)
    }

    /// Matches the client is told about: warn mode, and audit mode when `auditWarnings` is on.
    pub fn warned(&self) -> impl Iterator<Item = &PolicyMatch> {
        self.matches.iter().filter(|m| {
            m.effective == Mode::Warn || (m.effective == Mode::Audit && self.audit_warnings)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Entities(#[from] EntityError),
}

/// What the pure front of the request path makes of a request.
struct Understood {
    recognition: Recognition,
    identity: Identity,
    placement: Placement,
    /// Everything Cedar will see of it.
    inputs: CedarInputs,
}

/// The pure front of the request path: what is asked, by whom, landing where, and what Cedar
/// will see of it. `Err` names a resource Guardrails does not decide.
fn understand(engine: &Engine, request: &Request) -> Result<Understood, String> {
    let recognition = match recognize::recognize(request, &engine.config) {
        Recognized::Known(recognition) => recognition,
        Recognized::Unsupported { resource } => return Err(resource),
    };
    let live = engine.live_namespaces.load();
    let identity = identity::identify(
        &request.user_info,
        recognition.initiated_by.as_ref(),
        &engine.config,
        &live,
    );
    let placement = entities::placement(recognition.kind, request, &engine.config, &live);
    let inputs = entities::gather(
        &identity,
        &recognition,
        request,
        &placement,
        &engine.config.file.argocd,
        &engine.policies,
    );
    Ok(Understood {
        recognition,
        identity,
        placement,
        inputs,
    })
}

/// Decide one parsed request. Pure given the engine: its cache only remembers what Cedar said.
pub fn decide(engine: &Engine, request: &Request) -> Result<Outcome, DecideError> {
    let Understood {
        recognition,
        identity,
        placement,
        inputs,
    } = match understand(engine, request) {
        Ok(understood) => understood,
        Err(resource) => return Ok(Outcome::unsupported(resource, engine.mode)),
    };
    let (Found { matches, errors }, remembered) = match engine.decisions.get(&inputs) {
        Some(found) => (found, true),
        None => {
            let found = evaluate_inputs(engine, &inputs)?;
            engine.decisions.insert(inputs, found.clone());
            (found, false)
        }
    };
    let allowed = !matches.iter().any(|m| m.effective == Mode::Enforce);
    Ok(Outcome {
        allowed,
        recognition: Some(recognition),
        unsupported: None,
        identity: Some(identity),
        matches,
        errors,
        mode: engine.mode,
        audit_warnings: engine.config.file.audit_warnings,
        placement: Some(placement),
        remembered,
    })
}

/// Cedar over every action of `inputs`: the policies that matched and the evaluation errors,
/// sorted.
fn evaluate_inputs(engine: &Engine, inputs: &CedarInputs) -> Result<Found, DecideError> {
    let built = entities::build_entities(inputs, &engine.policies)?;
    let context = entities::build_context(&inputs.context);

    // The principal and the resource, each followed by its ancestors: what the policy store
    // uses to pick the policies whose scope can match (the ancestors only if it indexes by them).
    let indexed = engine.policies.indexed();
    let with_ancestors = |uid| {
        std::iter::once(uid)
            .chain(
                built
                    .entities
                    .ancestors(uid)
                    .filter(|_| indexed)
                    .into_iter()
                    .flatten(),
            )
            .collect::<Vec<&EntityUid>>()
    };
    let principal_in = with_ancestors(&built.principal);
    let resource_in = with_ancestors(&built.resource);

    let mut found = Found::default();
    let mut sets = Vec::new();
    let principal = EntityUIDEntry::known(built.principal.as_ref().clone(), None);
    let resource = EntityUIDEntry::known(built.resource.as_ref().clone(), None);
    for &action in &inputs.actions {
        let action_uid = entities::action_uid(action.as_str())?;
        // The context shape is fixed by `entities::build_context` and checked against the schema
        // for every action in tests (`check_conformance`); validating it per request would cost
        // ~15%.
        let cedar_request = ast::Request::new_unchecked(
            principal.clone(),
            EntityUIDEntry::known(action_uid.as_ref().clone(), None),
            resource.clone(),
            Some(context.clone()),
        );
        // Only the policies whose scope can match (see `PolicyStore::applicable`), possibly in
        // several sets.
        sets.clear();
        engine
            .policies
            .applicable(action.as_str(), &principal_in, &resource_in, &mut sets);
        found.authorize(engine, action, cedar_request, &sets, &built.entities);
    }
    // Cedar reports the policies that decided in hash order: sort, so identical requests get
    // identical reasons, audit records and warnings.
    found
        .matches
        .sort_by(|a, b| (&a.policy, a.action.as_str()).cmp(&(&b.policy, b.action.as_str())));
    found.errors.sort();
    Ok(found)
}

/// What the policies said about a request's actions so far.
#[derive(Debug, Clone, Default)]
struct Found {
    matches: Vec<PolicyMatch>,
    errors: Vec<String>,
}

impl Found {
    /// About how many bytes this holds (for the decision cache's bound).
    fn size_estimate(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .matches
                .iter()
                .map(|m| std::mem::size_of::<PolicyMatch>() + m.policy.len() + m.reason.len())
                .sum::<usize>()
            + self.errors.iter().map(|e| e.len() + 24).sum::<usize>()
    }

    /// Cedar over the union of `sets` for one action: a deny if any set has a satisfied forbid
    /// (its reasons) or no set has a satisfied permit (Cedar's default deny, `NO_PERMIT`).
    ///
    /// Each policy is evaluated by Cedar's own evaluator, and combined as Cedar's authorizer
    /// does (a satisfied forbid denies; else a satisfied permit allows; a policy that fails to
    /// evaluate is skipped): the authorizer itself would also build a partial response with
    /// every policy's id and annotations, a fifth of a small decision.
    fn authorize(
        &mut self,
        engine: &Engine,
        action: Action,
        cedar_request: ast::Request,
        sets: &[&[Evaluable]],
        entities: &cedar_policy::Entities,
    ) {
        let evaluator = Evaluator::new(
            cedar_request,
            entities.as_ref(),
            Extensions::all_available(),
        );
        let mut permitted = false;
        let mut forbidden = Vec::new();
        for Evaluable { policy, condition } in sets.iter().copied().flatten() {
            match evaluate(&evaluator, policy, condition) {
                Ok(true) => match policy.effect() {
                    Effect::Permit => permitted = true,
                    Effect::Forbid => forbidden.push(policy.id()),
                },
                Ok(false) => {}
                Err(error) => {
                    let error = cedar_policy::AuthorizationError::from(
                        AuthorizationError::PolicyEvaluationError {
                            id: policy.id().clone(),
                            error,
                        },
                    );
                    self.errors.push(format!("{action:?}: {error}"));
                    // A forbid that fails to evaluate must not fail open: it counts as matching.
                    let cedar_policy::AuthorizationError::PolicyEvaluationError(evaluation) =
                        &error;
                    if let Some(meta) = engine
                        .policies
                        .meta(evaluation.policy_id())
                        .filter(|m| m.forbid)
                    {
                        let reason = format!(
                            "{} (the policy failed to evaluate: {error})",
                            meta.reason.as_deref().unwrap_or("")
                        );
                        self.matched(meta, action, reason, engine.mode);
                    }
                }
            }
        }
        if forbidden.is_empty() && permitted {
            return;
        }
        let mut any = false;
        for meta in forbidden.into_iter().filter_map(|id| {
            engine
                .policies
                .meta(&cedar_policy::PolicyId::new(id.as_ref()))
        }) {
            any = true;
            let reason = meta.reason.clone().unwrap_or_default();
            self.matched(meta, action, reason, engine.mode);
        }
        if !any && !self.matches.iter().any(|m| m.action == action) {
            self.matches.push(PolicyMatch {
                policy: NO_PERMIT.into(),
                action,
                reason: "no permit policy allows this action".into(),
                declared: Mode::Enforce,
                effective: Mode::Enforce.effective(engine.mode),
            });
        }
    }

    /// Policy `meta` matched `action`: what it declares, and what it does under `global`.
    fn matched(&mut self, meta: &PolicyMeta, action: Action, reason: String, global: Mode) {
        self.matches.push(PolicyMatch {
            policy: meta.id.clone(),
            action,
            reason,
            declared: meta.enforcement,
            effective: meta.enforcement.effective(global),
        });
    }
}

/// `evaluator.evaluate(policy)` with the policy's condition built once (`condition` is
/// `policy.condition()`). A condition that is not a boolean (which validation rules out) is left
/// to `evaluate`, for Cedar's own error.
#[expect(
    clippy::result_large_err,
    reason = "Cedar's own error type, as its `Evaluator::evaluate` returns it; errors are rare"
)]
fn evaluate(
    evaluator: &Evaluator<'_>,
    policy: &ast::Policy,
    condition: &ast::Expr,
) -> Result<bool, cedar_policy_core::evaluator::EvaluationError> {
    let value = evaluator.interpret(condition, policy.env())?;
    match value.value_kind() {
        ast::ValueKind::Lit(ast::Literal::Bool(satisfied)) => Ok(*satisfied),
        _ => evaluator.evaluate(policy),
    }
}

/// Check that what `decide` builds for `request` conforms to the schema: entity attributes and
/// types, the context record, and each action's principal and resource types. `decide` skips
/// these checks for speed; tests run this over every recognised action.
pub fn check_conformance(engine: &Engine, request: &Request) -> Result<(), String> {
    let Ok(Understood { inputs, .. }) = understand(engine, request) else {
        return Ok(());
    };
    let subjects = entities::build_subjects(&inputs).map_err(|e| e.to_string())?;
    cedar_policy::Entities::from_entities(subjects.entities, Some(&engine.policies.schema))
        .map_err(|e| format!("entities: {e}"))?;
    let context = cedar_policy::Context::from(entities::build_context(&inputs.context));
    for action in &inputs.actions {
        let action_uid = entities::action_uid(action.as_str()).map_err(|e| e.to_string())?;
        CedarRequest::new(
            subjects.principal.clone(),
            action_uid,
            subjects.resource.clone(),
            context.clone(),
            Some(&engine.policies.schema),
        )
        .map_err(|e| format!("{}: {e}", action.as_str()))?;
    }
    Ok(())
}
