//! Who is asking: the principal behind a request, after Argo CD delegation. Pure.

use k8s_openapi::api::authentication::v1::UserInfo;
use serde::Serialize;

use crate::config::Config;
use crate::recognize::InitiatedBy;

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// A name in `initiatedBy.username` written by someone who may not delegate: ignored.
    pub forged_initiator: Option<String>,
    pub automation: bool,
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

fn teams_for(username: &str, groups: &[String], config: &Config) -> Vec<String> {
    let mut teams: Vec<String> = config.teams_of_user(username).to_vec();
    for group in groups {
        teams.extend_from_slice(config.teams_of_group(group));
    }
    teams.sort();
    teams.dedup();
    teams
}

/// Resolve the principal. `initiated_by` is the initiator of an operation this request starts.
pub fn identify(
    user_info: &UserInfo,
    initiated_by: Option<&InitiatedBy>,
    config: &Config,
) -> Identity {
    let caller = user_info.username.clone().unwrap_or_default();
    let caller_groups = user_info.groups.clone().unwrap_or_default();
    let claimed = initiated_by
        .and_then(|i| i.username.as_deref())
        .filter(|name| *name != caller);

    if let Some(person) = claimed
        && config.is_delegator(&caller)
    {
        return Identity {
            username: person.to_string(),
            kind: kind_of(person),
            groups: Vec::new(),
            teams: teams_for(person, &[], config),
            delegator: Some(caller.clone()),
            forged_initiator: None,
            automation: false,
            is_delegator: false,
            caller,
        };
    }
    Identity {
        kind: kind_of(&caller),
        teams: teams_for(&caller, &caller_groups, config),
        forged_initiator: claimed.map(str::to_string),
        automation: config.is_automation(&caller),
        is_delegator: config.is_delegator(&caller),
        username: caller.clone(),
        groups: caller_groups,
        delegator: None,
        caller,
    }
}

#[cfg(test)]
#[path = "unit_tests/identity_tests.rs"]
mod tests;
