//! The per-action slices a request is decided on, the team index, and actions no permit covers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};
use cedar_policy_core::ast;

use super::Evaluable;

/// Slices with more policies than this are indexed by the entity their scope names.
pub(super) const INDEX_ABOVE: usize = 16;

/// The policies of one request kind (action, principal type, resource type) whose scope can
/// match it. In a large slice, a policy whose condition requires the resource's team
/// (`required_team`), else whose scope is `resource in E` or `resource == E` (or, failing that,
/// the same of `principal`) is filed under that team or `E`: it can only match a request whose
/// resource (principal) is `E` or has `E` among its ancestors.
pub(super) struct Slice {
    pub(super) principal: EntityTypeName,
    pub(super) resource: EntityTypeName,
    /// Policies filed under no entity.
    pub(super) general: Vec<Evaluable>,
    pub(super) by_resource: HashMap<EntityUid, Vec<Evaluable>>,
    pub(super) by_principal: HashMap<EntityUid, Vec<Evaluable>>,
}

impl Slice {
    pub(super) fn sets<'a>(
        &'a self,
        principal_in: &[&EntityUid],
        resource_in: &[&EntityUid],
        out: &mut Vec<&'a [Evaluable]>,
    ) {
        out.push(&self.general);
        out.extend(
            resource_in
                .iter()
                .filter_map(|e| self.by_resource.get(*e).map(Vec::as_slice)),
        );
        out.extend(
            principal_in
                .iter()
                .filter_map(|e| self.by_principal.get(*e).map(Vec::as_slice)),
        );
    }
}

/// The entity a policy's scope names: its resource's, else its principal's.
#[derive(Clone)]
pub(super) enum Anchor {
    Resource(EntityUid),
    Principal(EntityUid),
    None,
}

pub(super) fn anchor(policy: &Policy) -> Anchor {
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
pub(super) fn required_team(policy: &Policy) -> Option<EntityUid> {
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

/// The request kinds (principal type, action, resource type, from the schema's `appliesTo`) that
/// no permit policy can match, grouped by action: `sync`, or `scale (ServiceAccount on Rollout)`
/// when only some kinds of one action are left out.
///
/// What counts as "can match": the policy is a `permit`, Cedar's validator does not prove it can
/// never apply, its action scope includes the action (`action`, `==`, or `in` the action or one
/// of its groups), and its principal and resource scopes admit the type (`is`/`==` name a type;
/// `in` admits any type that can be a member). `when`/`unless` conditions are not analysed: a
/// conditional permit counts, since it says who may.
pub(super) fn uncovered_actions(schema: &Schema, permits: &[&Policy]) -> Vec<String> {
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
pub(super) struct Scopes<'a> {
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
pub(super) fn slice_by_action(
    schema: &Schema,
    policies: &PolicySet,
) -> HashMap<String, Vec<Slice>> {
    let mut slices: HashMap<String, Vec<Slice>> = HashMap::new();
    let Some(scopes) = Scopes::new(schema) else {
        return slices;
    };
    // Once per policy, not per request kind it can match: `required_team` reads its JSON form.
    let anchors: HashMap<&PolicyId, Anchor> = policies
        .policies()
        .map(|policy| (policy.id(), anchor(policy)))
        .collect();
    let unscoped: HashMap<&PolicyId, Evaluable> = policies
        .policies()
        .map(|policy| {
            let unscoped = without_action_scope(policy.as_ref());
            (policy.id(), Evaluable::new(unscoped))
        })
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
            general: Vec::new(),
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
            if let Some(policy) = unscoped.get(policy.id()) {
                set.push(policy.clone());
            }
        }
        slices
            .entry(env.action().id().unescaped().to_string())
            .or_default()
            .push(slice);
    }
    slices
}

/// `policy` with `action` for its action scope. A slice holds only policies whose action scope
/// matches its action (`Scopes::can_match` is exact there), so Cedar need not test it again: a
/// scope `action in [a, b, c]` builds that set and looks each member up on every evaluation,
/// a fifth of a small policy's cost. The condition and annotations are shared with the policy,
/// not copied. A template link is kept as it is.
fn without_action_scope(policy: &ast::Policy) -> ast::Policy {
    if !policy.is_static() || policy.action_constraint() == &ast::ActionConstraint::any() {
        return policy.clone();
    }
    let template = ast::Template::new_shared(
        policy.id().clone(),
        policy.loc().cloned(),
        policy.annotations_arc().clone(),
        policy.effect(),
        policy.principal_constraint(),
        ast::ActionConstraint::any(),
        policy.resource_constraint(),
        policy.non_scope_constraints_arc().cloned(),
    );
    match ast::StaticPolicy::try_from(template) {
        Ok(unscoped) => unscoped.into(),
        Err(_) => policy.clone(),
    }
}

/// Every `Group::"…"` id the policies name, read from their JSON form; `None` if a policy has
/// none (then no group may be left out).
pub(super) fn referenced_groups(policies: &PolicySet) -> Option<HashSet<String>> {
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
