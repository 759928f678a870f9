//! Everything Cedar sees of one request, gathered as plain data before any Cedar value is built.
//!
//! The entities and the context are built from a `CedarInputs` alone (nothing else of the
//! request reaches them), so two requests with equal inputs get the same decision from the same
//! engine: that is what lets `decide` remember decisions keyed on it. Pure.

use kube::core::DynamicObject;
use serde_json::Value;

use super::managed_by;
use crate::admission::Request;
use crate::config::ArgoCdConfig;
use crate::entities::Placement;
use crate::identity::{Identity, PrincipalKind};
use crate::json;
use crate::policy::PolicyStore;
use crate::recognize::{AutoSync, Recognition, Relabel, SyncOptions};
use crate::vocabulary::{Action, Kind};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CedarInputs {
    pub principal: PrincipalFacts,
    pub resource: ResourceFacts,
    /// The actions decided, each its own Cedar request over the same entities and context.
    pub actions: Vec<Action>,
    pub context: ContextFacts,
}

impl CedarInputs {
    /// About how many bytes these inputs hold (their text and a little per value): what
    /// remembering them costs.
    pub fn size_estimate(&self) -> usize {
        let texts = |items: &[String]| items.iter().map(|s| s.len() + 24).sum::<usize>();
        let principal = &self.principal;
        let resource = &self.resource;
        let context = &self.context;
        let relabel = context.relabel.as_deref().map_or(0, |r| {
            r.old_team.len() + r.new_team.len() + r.old_environment.len() + r.new_environment.len()
        });
        std::mem::size_of::<Self>()
            + principal.username.len()
            + texts(&principal.teams)
            + texts(&principal.groups)
            + resource.name.len()
            + resource.namespace.len()
            + resource
                .object_attributes
                .iter()
                .map(|(_, value)| value.len() + 40)
                .sum::<usize>()
            + resource
                .labels
                .iter()
                .map(|(key, value)| key.len() + value.len() + 48)
                .sum::<usize>()
            + placement_size(&resource.placement)
            + self.actions.len()
            + context.delegator.as_ref().map_or(0, String::len)
            + context.sub_resource.len()
            + context.sync.revision.len()
            + texts(&context.sync.sync_options)
            + relabel
    }
}

fn placement_size(placement: &Placement) -> usize {
    let text = |item: &Option<String>| item.as_ref().map_or(0, String::len);
    std::mem::size_of::<Placement>()
        + text(&placement.namespace)
        + text(&placement.team)
        + text(&placement.environment)
        + placement.previous.as_deref().map_or(0, placement_size)
        + placement
            .reach
            .iter()
            .flat_map(|reach| &reach.places)
            .map(placement_size)
            .sum::<usize>()
}

/// The principal entity: its name, teams, the groups policies name, automation, delegator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrincipalFacts {
    pub kind: PrincipalKind,
    pub username: String,
    pub teams: Vec<String>,
    /// Only the groups some policy names: Cedar reaches a group only through a literal, so the
    /// others cannot change a decision (and are not entities).
    pub groups: Vec<String>,
    pub automation: bool,
    pub is_delegator: bool,
}

/// The resource entity: what it is, where it lands, and what its object says about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceFacts {
    pub kind: Kind,
    pub name: String,
    /// The request's namespace ("" for a cluster-scoped object).
    pub namespace: String,
    /// Attributes read from the object: an Application's project and destination, the
    /// Application managing a Deployment or Rollout.
    pub object_attributes: Vec<(&'static str, String)>,
    /// The object's labels (its tags).
    pub labels: Vec<(String, String)>,
    pub placement: Placement,
}

/// The context record (the schema's `Context`), one for every action of the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContextFacts {
    pub auto_sync: AutoSync,
    pub automated: bool,
    pub cascade: bool,
    pub delegator: Option<String>,
    pub dry_run: bool,
    pub forged_initiator: bool,
    pub new_replicas: i64,
    pub old_replicas: i64,
    pub operation: &'static str,
    pub relabel: Option<Box<Relabel>>,
    pub sub_resource: String,
    pub sync: SyncOptions,
}

/// What Cedar will see of `request`, given who asks and where it lands.
pub fn gather(
    identity: &Identity,
    recognition: &Recognition,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
    policies: &PolicyStore,
) -> CedarInputs {
    CedarInputs {
        principal: PrincipalFacts {
            kind: identity.kind.clone(),
            username: identity.username.clone(),
            teams: identity.teams.clone(),
            groups: identity
                .groups
                .iter()
                .filter(|group| policies.names_group(group))
                .cloned()
                .collect(),
            automation: identity.automation,
            is_delegator: identity.is_delegator,
        },
        resource: resource_facts(recognition.kind, request, placement, argocd),
        actions: recognition.actions.clone(),
        context: ContextFacts {
            auto_sync: recognition.auto_sync,
            automated: identity.automation,
            cascade: recognition.cascade,
            delegator: identity.delegator.clone(),
            dry_run: request.dry_run,
            forged_initiator: identity.forged_initiator.is_some() || recognition.forged_automation,
            new_replicas: recognition.new_replicas.unwrap_or(-1),
            old_replicas: recognition.old_replicas.unwrap_or(-1),
            operation: crate::admission::operation_name(&request.operation),
            relabel: recognition.relabel.clone(),
            sub_resource: request.sub_resource.clone().unwrap_or_default(),
            sync: recognition.sync.clone(),
        },
    }
}

fn resource_facts(
    kind: Kind,
    request: &Request,
    placement: &Placement,
    argocd: &ArgoCdConfig,
) -> ResourceFacts {
    let object = request.object.as_ref().or(request.old_object.as_ref());
    ResourceFacts {
        kind,
        name: request.name.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        object_attributes: object_attributes(kind, request, object, argocd),
        labels: object
            .and_then(|o| o.metadata.labels.as_ref())
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        placement: placement.clone(),
    }
}

fn object_attributes(
    kind: Kind,
    request: &Request,
    object: Option<&DynamicObject>,
    argocd: &ArgoCdConfig,
) -> Vec<(&'static str, String)> {
    match kind {
        Kind::Application => {
            let spec = object.and_then(|o| json::member(Some(&o.data), "spec"));
            let destination = json::member(spec, "destination");
            let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").into();
            vec![
                ("project", text(json::member(spec, "project"))),
                (
                    "destinationNamespace",
                    text(json::member(destination, "namespace")),
                ),
                (
                    "destinationServer",
                    text(json::member(destination, "server")),
                ),
                ("destinationName", text(json::member(destination, "name"))),
            ]
        }
        Kind::ApplicationSet | Kind::AppProject | Kind::Namespace => Vec::new(),
        // Tracked before or after: a `kubectl apply` of a file without Argo CD's tracking
        // annotation removes it, and is still a change to a managed object.
        Kind::Deployment | Kind::Rollout => managed_by(request.old_object.as_ref(), argocd)
            .or_else(|| managed_by(request.object.as_ref(), argocd))
            .map(|app| ("managedBy", app))
            .into_iter()
            .collect(),
    }
}

pub(super) fn data_str<'a>(object: Option<&'a DynamicObject>, path: &str) -> &'a str {
    object
        .and_then(|o| crate::json::pointer(&o.data, path))
        .and_then(Value::as_str)
        .unwrap_or("")
}
