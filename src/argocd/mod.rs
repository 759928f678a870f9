//! Argo CD's own RBAC, offline: which `p`/`g` policy lines allow a user (and their groups) an
//! Argo CD API request, decided as argocd-server v3.6.2 decides it. Pure: it takes text and
//! returns values; the CLI (`guardrails argocd`) reads the files.
//!
//! - `policy`: policy lines as `util/rbac` loads them (Go CSV, `p`/`g`, line numbers).
//! - `config_map`: the `argocd-rbac-cm` ConfigMap (`policy.csv`, `policy.<name>.csv`,
//!   `policy.default`, `policy.matchMode`, `scopes`) or a bare CSV.
//! - `projects`: AppProject roles as the policy lines Argo CD generates from them.
//! - `glob`, `regex`: the two match modes of `res`, `act` and `obj`.
//! - `model`: one casbin enforcement with Argo CD's model (role graph, allow/deny effect).
//! - `enforce`: argocd-server's order: default role, project token, subject, then groups.
//! - `request`: the argument forms of `argocd admin settings rbac can`.

pub mod config_map;
pub mod enforce;
pub mod glob;
pub mod model;
pub mod policy;
pub mod projects;
pub mod regex;
pub mod request;

pub use config_map::{MatchMode, RbacConfig, parse_rbac};
pub use enforce::{Check, Decision, Principal, Rbac, RbacError, Request};
pub use model::Outcome;
pub use policy::{Effect, LineRef, Policy, PolicyError, Source};
pub use projects::{Project, parse_projects};

/// Argo CD's built-in policy (roles `role:readonly` and `role:admin`, and `admin` in
/// `role:admin`), byte for byte argo-cd v3.6.2's `assets/builtin-policy.csv`; argocd-server
/// always loads it before the user policy.
pub const BUILTIN_POLICY_CSV: &str = include_str!("builtin-policy.csv");

/// The built-in policy, parsed.
pub fn builtin_policy() -> Result<Policy, PolicyError> {
    Policy::parse(BUILTIN_POLICY_CSV, Source::Builtin)
}
