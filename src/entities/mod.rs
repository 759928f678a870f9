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
use serde_json::Value;
use smol_str::SmolStr;

mod context;
mod destinations;

pub use context::build_context;
pub use destinations::{Destination, Destinations, glob_matches, is_pattern};

use crate::admission::Request;
use crate::cluster::NamespaceLabels;
use crate::config::{ArgoCdConfig, Config, NamespaceConfig, TrackingMethod};
use crate::identity::{Identity, PrincipalKind};
use crate::policy::PolicyStore;
use crate::recognize::Recognition;
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    pub places: Vec<Placement>,
    /// Every destination is written in the object (no generator from outside, no glob).
    pub known: bool,
}

fn data_str<'a>(object: Option<&'a DynamicObject>, path: &str) -> &'a str {
    object
        .and_then(|o| crate::json::pointer(&o.data, path))
        .and_then(Value::as_str)
        .unwrap_or("")
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

fn principal_uid(identity: &Identity) -> Result<EntityUID, EntityError> {
    let t = types()?;
    Ok(match identity.kind {
        PrincipalKind::User => uid(&t.user, &identity.username),
        PrincipalKind::ServiceAccount { .. } => uid(&t.service_account, &identity.username),
    })
}

fn core_resource_uid(kind: Kind, request: &Request) -> Result<EntityUID, EntityError> {
    let t = types()?;
    let type_name = match kind {
        Kind::Application => &t.application,
        Kind::ApplicationSet => &t.application_set,
        Kind::AppProject => &t.app_project,
        Kind::Deployment => &t.deployment,
        Kind::Rollout => &t.rollout,
        // Cluster-scoped, and the same entity other resources sit in.
        Kind::Namespace => return Ok(uid(&t.namespace, &request.name)),
    };
    let id = format!(
        "{}/{}",
        request.namespace.as_deref().unwrap_or(""),
        request.name
    );
    Ok(uid(type_name, &id))
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

pub fn build_entities(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
    policies: &PolicyStore,
) -> Result<RequestEntities, EntityError> {
    let (principal, resource, mut entities) =
        core_subjects(identity, recognition, request, placement, argocd, policies)?;
    for action in &recognition.actions {
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
pub fn build_subjects(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
    policies: &PolicyStore,
) -> Result<Subjects, EntityError> {
    let (principal, resource, entities) =
        core_subjects(identity, recognition, request, placement, argocd, policies)?;
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
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
    policies: &PolicyStore,
) -> Result<(EntityUID, EntityUID, Vec<CoreEntity>), EntityError> {
    let mut entities = Vec::with_capacity(3 + recognition.actions.len());
    let principal = principal_uid(identity)?;
    entities.push(principal_entity(identity, principal.clone(), policies)?);

    let (mut attrs, mut resource_parents) = placement_attributes(placement, &mut entities)?;
    push_object_attributes(&mut attrs, recognition.kind, request, argocd);
    let object = request.object.as_ref().or(request.old_object.as_ref());
    let resource = core_resource_uid(recognition.kind, request)?;
    if recognition.kind == Kind::Namespace {
        // The namespace is the resource itself, not a place it sits in.
        entities.retain(|e| e.uid() != &resource);
        resource_parents.remove(&resource);
        attrs.retain(|(name, _)| name != "previousNamespace");
    }
    entities.push(entity(
        resource.clone(),
        attrs,
        resource_parents,
        label_tags(object),
    ));
    Ok((principal, resource, entities))
}

/// The principal entity: its teams and the groups policies name as parents, and its name,
/// teams, automation, delegator and (for a service account) namespace as attributes.
fn principal_entity(
    identity: &Identity,
    principal: EntityUID,
    policies: &PolicyStore,
) -> Result<CoreEntity, EntityError> {
    let t = types()?;
    // Teams are direct parents of the principal (resolved from groups and users in config), so
    // neither Group nor Team entities need to be materialised: `in` only follows parent edges.
    // Groups no policy names are left out: Cedar reaches a group only through a literal.
    let parents = identity
        .teams
        .iter()
        .map(|team| uid(&t.team, team))
        .chain(
            identity
                .groups
                .iter()
                .filter(|group| policies.names_group(group))
                .map(|group| uid(&t.group, group)),
        )
        .collect();
    let (name, namespace) = match &identity.kind {
        PrincipalKind::ServiceAccount { namespace, name } => (name.as_str(), Some(namespace)),
        PrincipalKind::User => (identity.username.as_str(), None),
    };
    let teams = CedarValue::set(
        identity
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
            CedarValue::from(identity.automation).into(),
        ),
        (
            "delegator".into(),
            CedarValue::from(identity.is_delegator).into(),
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

/// The resource's attributes read from the request and its object: name and namespace, an
/// Application's project and destination, the Application managing a Deployment or Rollout.
fn push_object_attributes(
    attrs: &mut Attributes,
    kind: Kind,
    request: &Request,
    argocd: &ArgoCdConfig,
) {
    let object = request.object.as_ref().or(request.old_object.as_ref());
    attrs.push(("name".into(), string(&request.name).into()));
    if kind != Kind::Namespace {
        attrs.push((
            "namespace".into(),
            string(request.namespace.as_deref().unwrap_or("")).into(),
        ));
    }
    match kind {
        Kind::Application => {
            for (attr, path) in [
                ("project", "/spec/project"),
                ("destinationNamespace", "/spec/destination/namespace"),
                ("destinationServer", "/spec/destination/server"),
                ("destinationName", "/spec/destination/name"),
            ] {
                attrs.push((attr.into(), string(data_str(object, path)).into()));
            }
        }
        Kind::ApplicationSet | Kind::AppProject | Kind::Namespace => {}
        Kind::Deployment | Kind::Rollout => {
            // Tracked before or after: a `kubectl apply` of a file without Argo CD's tracking
            // annotation removes it, and is still a change to a managed object.
            let tracked = managed_by(request.old_object.as_ref(), argocd)
                .or_else(|| managed_by(request.object.as_ref(), argocd));
            if let Some(app) = tracked {
                attrs.push(("managedBy".into(), string(&app).into()));
            }
        }
    }
}

/// The object's labels, as the resource's tags.
fn label_tags(object: Option<&DynamicObject>) -> Attributes {
    object
        .and_then(|o| o.metadata.labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| (SmolStr::from(k.as_str()), string(v).into()))
        .collect()
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
