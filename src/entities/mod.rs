//! Cedar entities and context for one request: only the principal, its groups and teams, the
//! resource, its namespace, team and environment. Pure apart from Cedar's own types.
//!
//! They are built as Cedar's core values, which is what `cedar_policy` turns its expressions
//! into: no expression is evaluated per request, and every entity lists all its ancestors as
//! parents (a team or environment is never itself an entity here, and a namespace's parents
//! are its resource's too), so the hierarchy is already transitively closed.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entities, Entity, EntityTypeName, EntityUid};
use cedar_policy_core::ast::{
    Eid, Entity as CoreEntity, EntityUID, PartialValue, Value as CedarValue,
};
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use kube::core::DynamicObject;
use smol_str::SmolStr;

mod context;
mod destinations;
mod inputs;

pub use context::build_context;
pub use destinations::{Destination, Destinations, glob_matches, is_pattern};
use inputs::data_str;
pub use inputs::{CedarInputs, ContextFacts, PrincipalFacts, ResourceFacts, gather};

use crate::admission::Request;
use crate::cluster::NamespaceLabels;
use crate::config::{ArgoCdConfig, Config, NamespaceConfig, TrackingMethod};
use crate::identity::PrincipalKind;
use crate::policy::PolicyStore;
use crate::vocabulary::Kind;

pub const TRACKING_ID_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("cannot build Cedar entity: {0}")]
    Entity(String),
    #[error("cannot build Cedar context: {0}")]
    Context(String),
}

struct TypeNames {
    team: EntityTypeName,
    group: EntityTypeName,
    environment: EntityTypeName,
    user: EntityTypeName,
    service_account: EntityTypeName,
    namespace: EntityTypeName,
    application: EntityTypeName,
    application_set: EntityTypeName,
    app_project: EntityTypeName,
    deployment: EntityTypeName,
    rollout: EntityTypeName,
    action: EntityTypeName,
}

// Parsed once: these literals are valid Cedar names, checked by the unit tests below.
static TYPES: LazyLock<Option<TypeNames>> = LazyLock::new(|| {
    let parse = |name: &str| EntityTypeName::from_str(name).ok();
    Some(TypeNames {
        team: parse("Team")?,
        group: parse("Group")?,
        environment: parse("Environment")?,
        user: parse("User")?,
        service_account: parse("ServiceAccount")?,
        namespace: parse("Namespace")?,
        application: parse("Application")?,
        application_set: parse("ApplicationSet")?,
        app_project: parse("AppProject")?,
        deployment: parse("Deployment")?,
        rollout: parse("Rollout")?,
        action: parse("Action")?,
    })
});

fn types() -> Result<&'static TypeNames, EntityError> {
    TYPES
        .as_ref()
        .ok_or_else(|| EntityError::Entity("built-in entity type names failed to parse".into()))
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUID {
    EntityUID::from_components(type_name.as_ref().clone(), Eid::new(id), None)
}

pub fn action_uid(action: &str) -> Result<EntityUid, EntityError> {
    Ok(uid(&types()?.action, action).into())
}

/// Live namespace labels (read with the config's `namespaceLabels` keys) override static config
/// key by key.
pub fn resolve_namespace(config: &Config, live: &NamespaceLabels, name: &str) -> NamespaceConfig {
    config.resolve_namespace(live, name)
}

/// Where the resource lands: the object's namespace, or an Application's destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub namespace: Option<String>,
    pub team: Option<String>,
    pub environment: Option<String>,
    /// Where an Application was before a request that moves it (another destination): decided
    /// as well as the new place, so leaving a team or production is a change to it too.
    pub previous: Option<Box<Placement>>,
    /// ApplicationSets and AppProjects: every place they can send Applications to.
    pub reach: Option<Reach>,
}

impl Placement {
    /// Every namespace, team and environment this placement covers: both sides of a move and
    /// everything an ApplicationSet or AppProject reaches (for the audit log and reports).
    pub fn landing(&self) -> Landing {
        let mut landing = Landing::default();
        self.gather(&mut landing);
        for list in [
            &mut landing.namespaces,
            &mut landing.teams,
            &mut landing.environments,
        ] {
            list.sort();
            list.dedup();
        }
        landing
    }

    fn gather(&self, landing: &mut Landing) {
        landing.namespaces.extend(self.namespace.clone());
        landing.teams.extend(self.team.clone());
        landing.environments.extend(self.environment.clone());
        if let Some(previous) = &self.previous {
            previous.gather(landing);
        }
        for place in self.reach.iter().flat_map(|reach| &reach.places) {
            place.gather(landing);
        }
    }
}

/// Where a request's resource lands, flattened (see `Placement::landing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Landing {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
}

/// The places of every destination an ApplicationSet can generate or an AppProject allows,
/// before and after the change (narrowing a production project is a change to production too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Reach {
    pub places: Vec<Placement>,
    /// Every destination is written in the object (no generator from outside, no glob).
    pub known: bool,
}

fn place(
    kind: Kind,
    object: Option<&DynamicObject>,
    request_namespace: Option<&str>,
    config: &Config,
    live: &NamespaceLabels,
) -> Placement {
    let namespace = match kind {
        Kind::Application => data_str(object, "/spec/destination/namespace"),
        Kind::Deployment | Kind::Rollout => request_namespace.unwrap_or(""),
        // Placed by their reach, not one namespace (see `reach`).
        Kind::ApplicationSet | Kind::AppProject => "",
        Kind::Namespace => object
            .and_then(|o| o.metadata.name.as_deref())
            .unwrap_or(""),
    };
    let namespace = (!namespace.is_empty()).then(|| namespace.to_string());
    let resolved = match (&namespace, kind) {
        (None, _) => NamespaceConfig::default(),
        // A Namespace is placed by the labels it carries on this side of the change, not by
        // what the watcher last saw: that is what a relabel changes.
        (Some(ns), Kind::Namespace) => {
            config.resolve_namespace_labelled(ns, object.and_then(|o| o.metadata.labels.as_ref()))
        }
        (Some(ns), _) => resolve_namespace(config, live, ns),
    };
    let mut environment = resolved.environment;
    if kind == Kind::Application && environment.is_none() {
        // A namespace's own environment wins; the destination cluster is the fallback.
        let server = data_str(object, "/spec/destination/server");
        let name = data_str(object, "/spec/destination/name");
        environment = config
            .cluster_environment(server)
            .or_else(|| config.cluster_environment(name))
            .map(str::to_string);
    }
    Placement {
        namespace,
        team: resolved.team,
        environment,
        previous: None,
        reach: None,
    }
}

pub fn placement(
    kind: Kind,
    request: &Request,
    config: &Config,
    live: &NamespaceLabels,
) -> Placement {
    if matches!(kind, Kind::ApplicationSet | Kind::AppProject) {
        return Placement {
            reach: Some(destinations::reach(kind, request, config, live)),
            ..Placement::default()
        };
    }
    let namespace = request.namespace.as_deref();
    let object = request.object.as_ref().or(request.old_object.as_ref());
    let mut current = place(kind, object, namespace, config, live);
    if matches!(kind, Kind::Application | Kind::Namespace)
        && let (Some(old), Some(_)) = (request.old_object.as_ref(), request.object.as_ref())
    {
        let before = place(kind, Some(old), namespace, config, live);
        if before != current {
            current.previous = Some(Box::new(before));
        }
    }
    current
}

/// The Argo CD Application that applies this object from Git, if it is tracked. The instance
/// label counts only when Argo CD tracks by label: every Helm chart sets it on its own.
pub fn managed_by(object: Option<&DynamicObject>, argocd: &ArgoCdConfig) -> Option<String> {
    let metadata = &object?.metadata;
    if let Some(tracking) = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACKING_ID_ANNOTATION))
    {
        // "<app>:<group>/<kind>:<namespace>/<name>"; apps outside argocd's namespace are "<ns>_<app>".
        let app = tracking.split(':').next().unwrap_or("");
        if !app.is_empty() {
            return Some(app.to_string());
        }
    }
    if argocd.tracking_method != TrackingMethod::Label {
        return None;
    }
    metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(&argocd.instance_label_key))
        .filter(|v| !v.is_empty())
        .cloned()
}

fn string(value: &str) -> CedarValue {
    CedarValue::from(value)
}

fn principal_uid(principal: &PrincipalFacts) -> Result<EntityUID, EntityError> {
    let t = types()?;
    Ok(match principal.kind {
        PrincipalKind::User => uid(&t.user, &principal.username),
        PrincipalKind::ServiceAccount { .. } => uid(&t.service_account, &principal.username),
    })
}

fn core_resource_uid(resource: &ResourceFacts) -> Result<EntityUID, EntityError> {
    let t = types()?;
    let type_name = match resource.kind {
        Kind::Application => &t.application,
        Kind::ApplicationSet => &t.application_set,
        Kind::AppProject => &t.app_project,
        Kind::Deployment => &t.deployment,
        Kind::Rollout => &t.rollout,
        // Cluster-scoped, and the same entity other resources sit in.
        Kind::Namespace => return Ok(uid(&t.namespace, &resource.name)),
    };
    Ok(uid(
        type_name,
        &format!("{}/{}", resource.namespace, resource.name),
    ))
}

/// The entities a request needs: principal, resource, namespace, and the actions decided.
pub struct RequestEntities {
    pub principal: EntityUid,
    pub resource: EntityUid,
    pub entities: Entities,
}

/// The principal, the resource and its namespace (everything but actions), as Cedar entities.
pub struct Subjects {
    pub principal: EntityUid,
    pub resource: EntityUid,
    pub entities: Vec<Entity>,
}

/// The entities Cedar decides `inputs` over: principal, resource, namespaces, and the actions.
pub fn build_entities(
    inputs: &CedarInputs,
    policies: &PolicyStore,
) -> Result<RequestEntities, EntityError> {
    let (principal, resource, mut entities) = core_subjects(inputs)?;
    for action in &inputs.actions {
        let entity = policies.action_entity(action.as_str()).ok_or_else(|| {
            EntityError::Entity(format!(
                "action {:?} is not declared in the schema",
                action.as_str()
            ))
        })?;
        // The schema's action entities list all their ancestors (see `PolicyStore`).
        entities.push(entity.as_ref().clone());
    }
    let entities = CoreEntities::from_entities(
        entities,
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::none(),
    )
    .map_err(|e| EntityError::Entity(e.to_string()))?;
    Ok(RequestEntities {
        principal: principal.into(),
        resource: resource.into(),
        entities: entities.into(),
    })
}

/// What `build_entities` builds but the actions, as `cedar_policy` entities (for checking them
/// against the schema).
pub fn build_subjects(inputs: &CedarInputs) -> Result<Subjects, EntityError> {
    let (principal, resource, entities) = core_subjects(inputs)?;
    Ok(Subjects {
        principal: principal.into(),
        resource: resource.into(),
        entities: entities.into_iter().map(Entity::from).collect(),
    })
}

type Attributes = Vec<(SmolStr, PartialValue)>;

fn entity(
    uid: EntityUID,
    attrs: Attributes,
    parents: HashSet<EntityUID>,
    tags: Attributes,
) -> CoreEntity {
    CoreEntity::new_with_attr_partial_value(uid, attrs, HashSet::new(), parents, tags)
}

fn core_subjects(
    inputs: &CedarInputs,
) -> Result<(EntityUID, EntityUID, Vec<CoreEntity>), EntityError> {
    let mut entities = Vec::with_capacity(3 + inputs.actions.len());
    let principal = principal_uid(&inputs.principal)?;
    entities.push(principal_entity(&inputs.principal, principal.clone())?);

    let facts = &inputs.resource;
    let (mut attrs, mut resource_parents) = placement_attributes(&facts.placement, &mut entities)?;
    attrs.push(("name".into(), string(&facts.name).into()));
    if facts.kind != Kind::Namespace {
        attrs.push(("namespace".into(), string(&facts.namespace).into()));
    }
    for (name, value) in &facts.object_attributes {
        attrs.push((SmolStr::new_static(name), string(value).into()));
    }
    let resource = core_resource_uid(facts)?;
    if facts.kind == Kind::Namespace {
        // The namespace is the resource itself, not a place it sits in.
        entities.retain(|e| e.uid() != &resource);
        resource_parents.remove(&resource);
        attrs.retain(|(name, _)| name != "previousNamespace");
    }
    let tags = facts
        .labels
        .iter()
        .map(|(key, value)| (SmolStr::from(key.as_str()), string(value).into()))
        .collect();
    entities.push(entity(resource.clone(), attrs, resource_parents, tags));
    Ok((principal, resource, entities))
}

/// The principal entity: its teams and the groups policies name as parents, and its name,
/// teams, automation, delegator and (for a service account) namespace as attributes.
fn principal_entity(
    facts: &PrincipalFacts,
    principal: EntityUID,
) -> Result<CoreEntity, EntityError> {
    let t = types()?;
    // Teams are direct parents of the principal (resolved from groups and users in config), so
    // neither Group nor Team entities need to be materialised: `in` only follows parent edges.
    let parents = facts
        .teams
        .iter()
        .map(|team| uid(&t.team, team))
        .chain(facts.groups.iter().map(|group| uid(&t.group, group)))
        .collect();
    let (name, namespace) = match &facts.kind {
        PrincipalKind::ServiceAccount { namespace, name } => (name.as_str(), Some(namespace)),
        PrincipalKind::User => (facts.username.as_str(), None),
    };
    let teams = CedarValue::set(
        facts
            .teams
            .iter()
            .map(|team| CedarValue::from(uid(&t.team, team))),
        None,
    );
    let mut attrs: Attributes = vec![
        ("name".into(), string(name).into()),
        ("teams".into(), teams.into()),
        (
            "automation".into(),
            CedarValue::from(facts.automation).into(),
        ),
        (
            "delegator".into(),
            CedarValue::from(facts.is_delegator).into(),
        ),
    ];
    if let Some(namespace) = namespace {
        attrs.push(("namespace".into(), string(namespace).into()));
    }
    Ok(entity(principal, attrs, parents, Vec::new()))
}

/// The resource's attributes and parents from where it is placed: its place, the place a move
/// leaves (the `previous…` attributes) and an ApplicationSet's or AppProject's reach, adding
/// the namespace entities to `entities`.
fn placement_attributes(
    placement: &Placement,
    entities: &mut Vec<CoreEntity>,
) -> Result<(Attributes, HashSet<EntityUID>), EntityError> {
    let (mut attrs, mut parents) = placed_in(placement, entities)?;
    if let Some(previous) = &placement.previous {
        // The resource sits in its old place too: leaving prod or a team is decided there.
        let (previous_attrs, previous_parents) = placed_in(previous, entities)?;
        attrs.push((
            "previousNamespace".into(),
            string(previous.namespace.as_deref().unwrap_or("")).into(),
        ));
        for (name, value) in previous_attrs {
            let previous_name = match name.as_str() {
                "team" => "previousTeam",
                "environment" => "previousEnvironment",
                _ => continue,
            };
            attrs.push((previous_name.into(), value));
        }
        parents.extend(previous_parents);
    }
    if let Some(reach) = &placement.reach {
        attrs.extend(destinations::reach_attributes(
            reach,
            entities,
            &mut parents,
        )?);
    }
    Ok((attrs, parents))
}

/// The `team`/`environment` attributes of a placement and the resource's parents there (team,
/// environment, namespace), adding the namespace entity (its parents: team and environment)
/// to `entities`. The `team` attribute is always a parent too: the policy store files a policy
/// requiring `resource.team == Team::"x"` under `Team::"x"` (`policy::required_team`).
fn placed_in(
    placement: &Placement,
    entities: &mut Vec<CoreEntity>,
) -> Result<(Attributes, HashSet<EntityUID>), EntityError> {
    let t = types()?;
    let team = placement.team.as_deref().map(|team| uid(&t.team, team));
    let environment = placement
        .environment
        .as_deref()
        .map(|env| uid(&t.environment, env));
    let mut attrs: Attributes = Vec::new();
    if let Some(team) = &team {
        attrs.push(("team".into(), CedarValue::from(team.clone()).into()));
    }
    if let Some(environment) = &environment {
        attrs.push((
            "environment".into(),
            CedarValue::from(environment.clone()).into(),
        ));
    }
    let mut parents: HashSet<EntityUID> = team.into_iter().chain(environment).collect();
    if let Some(namespace) = &placement.namespace {
        let namespace_uid = uid(&t.namespace, namespace);
        let mut namespace_attrs = attrs.clone();
        namespace_attrs.push(("name".into(), string(namespace).into()));
        // A move between clusters keeps the namespace: one entity is enough.
        if entities.iter().all(|e| e.uid() != &namespace_uid) {
            entities.push(entity(
                namespace_uid.clone(),
                namespace_attrs,
                parents.clone(),
                Vec::new(),
            ));
        }
        parents.insert(namespace_uid);
    }
    Ok((attrs, parents))
}

#[cfg(test)]
#[path = "../unit_tests/entities_tests.rs"]
mod tests;
