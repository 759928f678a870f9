//! The kinds Guardrails decides.

use serde::Serialize;

/// The kinds Guardrails decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    Application,
    ApplicationSet,
    AppProject,
    Deployment,
    Rollout,
    /// Only its trust labels and its deletion (see `recognize::namespace`).
    Namespace,
}

impl Kind {
    /// The Cedar entity type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Application => "Application",
            Kind::ApplicationSet => "ApplicationSet",
            Kind::AppProject => "AppProject",
            Kind::Deployment => "Deployment",
            Kind::Rollout => "Rollout",
            Kind::Namespace => "Namespace",
        }
    }

    /// Identified by the *resource* (not the kind) so `deployments/scale` with a Scale body counts.
    pub fn from_resource(group: &str, resource: &str) -> Option<Self> {
        match (group, resource) {
            ("argoproj.io", "applications") => Some(Kind::Application),
            ("argoproj.io", "applicationsets") => Some(Kind::ApplicationSet),
            ("argoproj.io", "appprojects") => Some(Kind::AppProject),
            ("argoproj.io", "rollouts") => Some(Kind::Rollout),
            ("apps", "deployments") => Some(Kind::Deployment),
            ("", "namespaces") => Some(Kind::Namespace),
            _ => None,
        }
    }
}
