//! AppProject semantics: the limits Argo CD holds a team to. Each kind of limit is its own
//! action, so a policy can name what may widen: where (destinations), from where (sources),
//! as whom (destination service accounts), what (resource lists), who (roles), when (sync
//! windows). Minting or revoking a role's tokens is its own action: a token acts only through
//! argocd-server, whose requests Guardrails decides as the token's own subject.

use kube::core::DynamicObject;
use serde_json::Value;

use super::diff::{changed, update_unless_explained, values_differ};
use super::object::pointer;
use super::{Action, Recognition};

/// Each action and the fields it covers.
const LIMITS: &[(Action, &[&str])] = &[
    (
        Action::ChangeDestinations,
        &[
            "/spec/destinations",
            "/spec/permitOnlyProjectScopedClusters",
        ],
    ),
    (
        Action::ChangeSources,
        &[
            "/spec/sourceRepos",
            "/spec/sourceNamespaces",
            "/spec/signatureKeys",
        ],
    ),
    (
        Action::ChangeIdentities,
        &["/spec/destinationServiceAccounts"],
    ),
    (
        Action::ChangeResources,
        &[
            "/spec/clusterResourceWhitelist",
            "/spec/clusterResourceBlacklist",
            "/spec/namespaceResourceWhitelist",
            "/spec/namespaceResourceBlacklist",
        ],
    ),
    (Action::ChangeSyncWindows, &["/spec/syncWindows"]),
];

const ROLES: &str = "/spec/roles";
/// argocd-server records a role's tokens in the role and here.
const TOKENS_BY_ROLE: &str = "/status/jwtTokensByRole";

pub fn recognize_update(
    recognition: &mut Recognition,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    caller_is_automation: bool,
) {
    let actions = &mut recognition.actions;
    let mut explained: Vec<&str> = Vec::new();
    for (action, paths) in LIMITS {
        if changed(old, new, paths) {
            actions.push(*action);
        }
        explained.extend_from_slice(paths);
    }
    let null = Value::Null;
    let roles = |o| pointer(o, ROLES).unwrap_or(&null);
    let tokens = |o| -> Vec<Value> {
        roles(o)
            .as_array()
            .into_iter()
            .flatten()
            .map(|role| role.get("jwtTokens").cloned().unwrap_or(Value::Null))
            .collect()
    };
    let roles_changed = values_differ(roles(old), roles(new), &["/*/jwtTokens"]);
    if roles_changed {
        actions.push(Action::ChangeRoles);
    }
    if (!roles_changed && tokens(old) != tokens(new)) || changed(old, new, &[TOKENS_BY_ROLE]) {
        actions.push(Action::ChangeTokens);
    }
    explained.extend([ROLES, TOKENS_BY_ROLE]);
    if caller_is_automation {
        explained.push("/status");
    }
    update_unless_explained(actions, old, new, &explained, caller_is_automation);
}
