//! Who is asking: the principal behind a request, after Argo CD delegation. Pure.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::authentication::v1::UserInfo;
use serde::Serialize;

use crate::config::Config;
use crate::recognize::InitiatedBy;

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum PrincipalKind {
    User,
    ServiceAccount { namespace: String, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The principal's user name: the caller, or the person a trusted delegator acts for.
    pub username: String,
    pub kind: PrincipalKind,
    /// The principal's groups (empty for a delegated person: Argo CD does not pass them on).
    pub groups: Vec<String>,
    pub teams: Vec<String>,
    /// The authenticated caller (differs from `username` when delegated).
    pub caller: String,
    /// Set when the principal came from a trusted delegator's `initiatedBy.username`.
    pub delegator: Option<String>,
    /// A service account's team, from the owner of its namespace (already in `teams`).
    pub namespace_team: Option<String>,
    /// A name in `initiatedBy.username` written by someone who may not delegate: ignored.
    pub forged_initiator: Option<String>,
    pub automation: bool,
    /// The caller is a delegator writing *without* a delegated person (e.g. `argocd app set`).
    pub is_delegator: bool,
}

fn kind_of(username: &str) -> PrincipalKind {
    match username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => PrincipalKind::ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        None => PrincipalKind::User,
    }
}

fn teams_for(
    username: &str,
    groups: &[String],
    namespace_team: Option<&str>,
    config: &Config,
) -> Vec<String> {
    let mut teams: Vec<String> = config.teams_of_user(username).to_vec();
    for group in groups {
        teams.extend_from_slice(config.teams_of_group(group));
    }
    teams.extend(namespace_team.map(str::to_string));
    teams.sort();
    teams.dedup();
    teams
}

/// The team owning a service account's namespace: whoever may create Pods there may use it.
fn namespace_team(
    kind: &PrincipalKind,
    config: &Config,
    live: &HashMap<String, BTreeMap<String, String>>,
) -> Option<String> {
    match kind {
        PrincipalKind::ServiceAccount { namespace, .. } => {
            config.resolve_namespace(live, namespace).team
        }
        PrincipalKind::User => None,
    }
}

/// Resolve the principal. `initiated_by` is the initiator of an operation this request starts;
/// `live` holds the namespace labels seen in the cluster (service accounts join their
/// namespace's team).
pub fn identify(
    user_info: &UserInfo,
    initiated_by: Option<&InitiatedBy>,
    config: &Config,
    live: &HashMap<String, BTreeMap<String, String>>,
) -> Identity {
    let caller = user_info.username.clone().unwrap_or_default();
    let caller_groups = user_info.groups.clone().unwrap_or_default();
    let claimed = initiated_by
        .and_then(|i| i.username.as_deref())
        .filter(|name| *name != caller);

    let is_delegator = config.is_delegator(&caller);
    if let Some(person) = claimed
        && is_delegator
    {
        let kind = kind_of(person);
        let namespace_team = namespace_team(&kind, config, live);
        return Identity {
            username: person.to_string(),
            teams: teams_for(person, &[], namespace_team.as_deref(), config),
            kind,
            groups: Vec::new(),
            delegator: Some(caller.clone()),
            namespace_team,
            forged_initiator: None,
            automation: false,
            is_delegator: false,
            caller,
        };
    }
    let kind = kind_of(&caller);
    let automation = config.is_automation(&caller);
    // A delegator acting without a person joins no team: its writes are decided as its own
    // (`principal.delegator`), never with a team's exemptions.
    let (teams, namespace_team) = if is_delegator {
        (Vec::new(), None)
    } else {
        let namespace_team = namespace_team(&kind, config, live);
        (
            teams_for(&caller, &caller_groups, namespace_team.as_deref(), config),
            namespace_team,
        )
    };
    Identity {
        kind,
        teams,
        namespace_team,
        // Automation names itself there (the ApplicationSet controller's progressive sync
        // writes `applicationset-controller`): informational, not a forgery.
        forged_initiator: claimed.filter(|_| !automation).map(str::to_string),
        automation,
        is_delegator,
        username: caller.clone(),
        groups: caller_groups,
        delegator: None,
        caller,
    }
}

#[cfg(test)]
#[path = "unit_tests/identity_tests.rs"]
mod tests;
