//! AppProject semantics: the limits Argo CD holds a team to. Each kind of limit is its own
//! action, so a policy can name what may widen: where (destinations), from where (sources),
//! as whom (destination service accounts), what (resource lists), who (roles and their
//! tokens) and when (sync windows).

use kube::core::DynamicObject;

use super::diff::{Writer, changed, data_differs, metadata_differs};
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
    // argocd-server records a role's tokens in the role and in the status.
    (
        Action::ChangeRoles,
        &["/spec/roles", "/status/jwtTokensByRole"],
    ),
    (Action::ChangeSyncWindows, &["/spec/syncWindows"]),
];

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
    if caller_is_automation {
        explained.push("/status");
    }
    let writer = Writer {
        automation: caller_is_automation,
        recognised: !actions.is_empty(),
        refresh_annotations: &[],
        refreshed: false,
        finalizer_action: false,
    };
    if data_differs(old, new, &explained) || metadata_differs(old, new, writer) {
        actions.push(Action::Update);
    }
}
