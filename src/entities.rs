//! Cedar entities and context for one request: only the principal, its groups and teams, the
//! resource, its namespace, team and environment. Pure apart from Cedar's own types.

use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::Value;

use crate::admission::Request;
use crate::cluster::NamespaceLabels;
use crate::config::{ArgoCdConfig, Config, NamespaceConfig, TrackingMethod};
use crate::identity::{Identity, PrincipalKind};
use crate::policy::PolicyStore;
use crate::recognize::{Kind, Recognition};

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

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

pub fn action_uid(action: &str) -> Result<EntityUid, EntityError> {
    Ok(uid(&types()?.action, action))
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
    };
    let namespace = (!namespace.is_empty()).then(|| namespace.to_string());
    let resolved = namespace
        .as_deref()
        .map(|ns| resolve_namespace(config, live, ns))
        .unwrap_or_default();
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
    }
}

pub fn placement(
    kind: Kind,
    request: &Request,
    config: &Config,
    live: &NamespaceLabels,
) -> Placement {
    let namespace = request.namespace.as_deref();
    let object = request.object.as_ref().or(request.old_object.as_ref());
    let mut current = place(kind, object, namespace, config, live);
    if kind == Kind::Application
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

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_string())
}

fn principal_uid(identity: &Identity) -> Result<EntityUid, EntityError> {
    let t = types()?;
    Ok(match identity.kind {
        PrincipalKind::User => uid(&t.user, &identity.username),
        PrincipalKind::ServiceAccount { .. } => uid(&t.service_account, &identity.username),
    })
}

pub fn resource_uid(kind: Kind, request: &Request) -> Result<EntityUid, EntityError> {
    let t = types()?;
    let type_name = match kind {
        Kind::Application => &t.application,
        Kind::Deployment => &t.deployment,
        Kind::Rollout => &t.rollout,
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
    let Subjects {
        principal,
        resource,
        mut entities,
    } = build_subjects(identity, recognition, request, placement, argocd, policies)?;
    for action in &recognition.actions {
        let entity = policies.action_entity(action.as_str()).ok_or_else(|| {
            EntityError::Entity(format!(
                "action {:?} is not declared in the schema",
                action.as_str()
            ))
        })?;
        entities.push(entity.clone());
    }
    let entities =
        Entities::from_entities(entities, None).map_err(|e| EntityError::Entity(e.to_string()))?;
    Ok(RequestEntities {
        principal,
        resource,
        entities,
    })
}

pub fn build_subjects(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
    policies: &PolicyStore,
) -> Result<Subjects, EntityError> {
    let t = types()?;
    let entity_error = |e: &dyn std::fmt::Display| EntityError::Entity(e.to_string());
    let mut entities = Vec::with_capacity(3);

    // Teams are direct parents of the principal (resolved from groups and users in config), so
    // neither Group nor Team entities need to be materialised: `in` only follows parent edges.
    // Groups no policy names are left out: Cedar reaches a group only through a literal.
    let principal_parents = identity.teams.iter().map(|team| uid(&t.team, team)).chain(
        identity
            .groups
            .iter()
            .filter(|group| policies.names_group(group))
            .map(|group| uid(&t.group, group)),
    );
    let principal = principal_uid(identity)?;
    let (name, namespace) = match &identity.kind {
        PrincipalKind::ServiceAccount { namespace, name } => (name.as_str(), Some(namespace)),
        PrincipalKind::User => (identity.username.as_str(), None),
    };
    let mut principal_attrs = vec![
        ("name".to_string(), string(name)),
        (
            "automation".to_string(),
            RestrictedExpression::new_bool(identity.automation),
        ),
        (
            "delegator".to_string(),
            RestrictedExpression::new_bool(identity.is_delegator),
        ),
    ];
    if let Some(namespace) = namespace {
        principal_attrs.push(("namespace".to_string(), string(namespace)));
    }
    entities.push(
        Entity::new_with_tags(principal.clone(), principal_attrs, principal_parents, [])
            .map_err(|e| entity_error(&e))?,
    );

    let (placement_attrs, mut resource_parents) = placed_in(placement, &mut entities)?;
    let mut placement_attrs = placement_attrs;
    if let Some(previous) = &placement.previous {
        // The resource sits in its old place too: leaving prod or a team is decided there.
        let (previous_attrs, previous_parents) = placed_in(previous, &mut entities)?;
        placement_attrs.push((
            "previousNamespace".to_string(),
            string(previous.namespace.as_deref().unwrap_or("")),
        ));
        for (name, value) in previous_attrs {
            if name == "team" || name == "environment" {
                let previous_name = format!("previous{}{}", name[..1].to_uppercase(), &name[1..]);
                placement_attrs.push((previous_name, value));
            }
        }
        for parent in previous_parents {
            if !resource_parents.contains(&parent) {
                resource_parents.push(parent);
            }
        }
    }

    let object = request.object.as_ref().or(request.old_object.as_ref());
    let mut attrs = placement_attrs;
    attrs.push(("name".to_string(), string(&request.name)));
    attrs.push((
        "namespace".to_string(),
        string(request.namespace.as_deref().unwrap_or("")),
    ));
    match recognition.kind {
        Kind::Application => {
            for (attr, path) in [
                ("project", "/spec/project"),
                ("destinationNamespace", "/spec/destination/namespace"),
                ("destinationServer", "/spec/destination/server"),
                ("destinationName", "/spec/destination/name"),
            ] {
                attrs.push((attr.to_string(), string(data_str(object, path))));
            }
        }
        Kind::Deployment | Kind::Rollout => {
            // Tracked before or after: a `kubectl apply` of a file without Argo CD's tracking
            // annotation removes it, and is still a change to a managed object.
            let tracked = managed_by(request.old_object.as_ref(), argocd)
                .or_else(|| managed_by(request.object.as_ref(), argocd));
            if let Some(app) = tracked {
                attrs.push(("managedBy".to_string(), string(&app)));
            }
        }
    }
    let tags = object
        .and_then(|o| o.metadata.labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), string(v)));
    let resource = resource_uid(recognition.kind, request)?;
    entities.push(
        Entity::new_with_tags(resource.clone(), attrs, resource_parents, tags)
            .map_err(|e| entity_error(&e))?,
    );

    Ok(Subjects {
        principal,
        resource,
        entities,
    })
}

type Attributes = Vec<(String, RestrictedExpression)>;

/// The `team`/`environment` attributes of a placement and the resource's parents there (team,
/// environment, namespace), adding the namespace entity to `entities`.
fn placed_in(
    placement: &Placement,
    entities: &mut Vec<Entity>,
) -> Result<(Attributes, Vec<EntityUid>), EntityError> {
    let t = types()?;
    let team = placement.team.as_deref().map(|team| uid(&t.team, team));
    let environment = placement
        .environment
        .as_deref()
        .map(|env| uid(&t.environment, env));
    let mut attrs = Vec::new();
    if let Some(team) = &team {
        attrs.push((
            "team".to_string(),
            RestrictedExpression::new_entity_uid(team.clone()),
        ));
    }
    if let Some(environment) = &environment {
        attrs.push((
            "environment".to_string(),
            RestrictedExpression::new_entity_uid(environment.clone()),
        ));
    }
    let mut parents: Vec<EntityUid> = team.iter().chain(environment.iter()).cloned().collect();
    if let Some(namespace) = &placement.namespace {
        let namespace_uid = uid(&t.namespace, namespace);
        let mut namespace_attrs = attrs.clone();
        namespace_attrs.push(("name".to_string(), string(namespace)));
        // A move between clusters keeps the namespace: one entity is enough.
        if entities.iter().all(|e| e.uid() != namespace_uid) {
            entities.push(
                Entity::new_with_tags(
                    namespace_uid.clone(),
                    namespace_attrs,
                    parents.iter().cloned(),
                    [],
                )
                .map_err(|e| EntityError::Entity(e.to_string()))?,
            );
        }
        parents.push(namespace_uid);
    }
    Ok((attrs, parents))
}

pub fn build_context(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
) -> Result<Context, EntityError> {
    let context_error = |e: &dyn std::fmt::Display| EntityError::Context(e.to_string());
    let sync = &recognition.sync;
    let sync_record = RestrictedExpression::new_record([
        (
            "prune".to_string(),
            RestrictedExpression::new_bool(sync.prune),
        ),
        (
            "force".to_string(),
            RestrictedExpression::new_bool(sync.force),
        ),
        (
            "dryRun".to_string(),
            RestrictedExpression::new_bool(sync.dry_run),
        ),
        (
            "selective".to_string(),
            RestrictedExpression::new_bool(sync.selective),
        ),
        (
            "override".to_string(),
            RestrictedExpression::new_bool(sync.is_override()),
        ),
        (
            "localManifests".to_string(),
            RestrictedExpression::new_bool(sync.local_manifests),
        ),
        ("revision".to_string(), string(&sync.revision)),
        (
            "syncOptions".to_string(),
            RestrictedExpression::new_set(sync.sync_options.iter().map(|o| string(o))),
        ),
    ])
    .map_err(|e| context_error(&e))?;
    let auto = recognition.auto_sync;
    let auto_record = RestrictedExpression::new_record([
        (
            "enabled".to_string(),
            RestrictedExpression::new_bool(auto.enabled),
        ),
        (
            "prune".to_string(),
            RestrictedExpression::new_bool(auto.prune),
        ),
        (
            "selfHeal".to_string(),
            RestrictedExpression::new_bool(auto.self_heal),
        ),
    ])
    .map_err(|e| context_error(&e))?;
    // As kube serialises it.
    let operation = match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    };
    Context::from_pairs([
        ("operation".to_string(), string(operation)),
        (
            "dryRun".to_string(),
            RestrictedExpression::new_bool(request.dry_run),
        ),
        (
            "subResource".to_string(),
            string(request.sub_resource.as_deref().unwrap_or("")),
        ),
        (
            "delegated".to_string(),
            RestrictedExpression::new_bool(identity.delegator.is_some()),
        ),
        (
            "delegator".to_string(),
            string(identity.delegator.as_deref().unwrap_or("")),
        ),
        (
            "forgedInitiator".to_string(),
            RestrictedExpression::new_bool(
                identity.forged_initiator.is_some() || recognition.forged_automation,
            ),
        ),
        (
            "automated".to_string(),
            RestrictedExpression::new_bool(identity.automation),
        ),
        ("sync".to_string(), sync_record),
        ("autoSync".to_string(), auto_record),
        (
            "cascade".to_string(),
            RestrictedExpression::new_bool(recognition.cascade),
        ),
        (
            "oldReplicas".to_string(),
            RestrictedExpression::new_long(recognition.old_replicas.unwrap_or(-1)),
        ),
        (
            "newReplicas".to_string(),
            RestrictedExpression::new_long(recognition.new_replicas.unwrap_or(-1)),
        ),
    ])
    .map_err(|e| context_error(&e))
}

#[cfg(test)]
#[path = "unit_tests/entities_tests.rs"]
mod tests;
