//! AppProject roles as policy lines: `AppProject.ProjectPoliciesString` in argo-cd's
//! `pkg/apis/application/v1alpha1/app_project_types.go`. For each role, in order:
//!
//! ```text
//! p, proj:<project>:<role>, projects, get, <project>, allow
//! <each of spec.roles[].policies, verbatim>
//! g, <each of spec.roles[].groups>, proj:<project>:<role>
//! ```
//!
//! joined with `\n`. Argo CD adds these lines to the built-in and user policy only for a request
//! about that project (`server/rbacpolicy`).

use serde::Deserialize;
use serde_json::Value;

/// An AppProject's name and roles: all that RBAC reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub roles: Vec<ProjectRole>,
    /// Where it was read from, for messages.
    pub origin: String,
}

/// `spec.roles[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectRole {
    pub name: String,
    pub policies: Vec<String>,
    pub groups: Vec<String>,
}

impl Project {
    /// The policy text Argo CD generates for this project's roles.
    pub fn policies_string(&self) -> String {
        let mut lines = Vec::new();
        for role in &self.roles {
            lines.push(format!(
                "p, proj:{}:{}, projects, get, {}, allow",
                self.name, role.name, self.name
            ));
            lines.extend(role.policies.iter().cloned());
            for group in &role.groups {
                lines.push(format!("g, {group}, proj:{}:{}", self.name, role.name));
            }
        }
        lines.join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{origin}: not YAML or JSON: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: AppProject {name}: {message}")]
    Invalid {
        origin: String,
        name: String,
        message: String,
    },
}

/// The AppProjects in a YAML or JSON text: single manifests, `---`-separated documents, or a
/// `List` (as `kubectl get appprojects -o yaml` prints). Other kinds are skipped.
pub fn parse_projects(text: &str, origin: &str) -> Result<Vec<Project>, ProjectError> {
    let mut projects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|error| ProjectError::Parse {
            origin: origin.to_string(),
            message: error.to_string(),
        })?;
        collect(&value, origin, &mut projects)?;
    }
    Ok(projects)
}

fn collect(value: &Value, origin: &str, out: &mut Vec<Project>) -> Result<(), ProjectError> {
    match value.get("kind").and_then(Value::as_str) {
        Some("AppProject") => out.push(project(value, origin)?),
        Some("List" | "AppProjectList") => {
            for item in value
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect(item, origin, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn project(value: &Value, origin: &str) -> Result<Project, ProjectError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |message: String| ProjectError::Invalid {
        origin: origin.to_string(),
        name: if name.is_empty() {
            "(unnamed)".to_string()
        } else {
            name.clone()
        },
        message,
    };
    if name.is_empty() {
        return Err(invalid("metadata.name is missing".into()));
    }
    let mut roles = Vec::new();
    let listed = match value.pointer("/spec/roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(invalid("spec.roles is not a list".into())),
    };
    for (index, role) in listed.iter().enumerate() {
        let field = |key: &str| -> Result<Vec<String>, ProjectError> {
            match role.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_string).ok_or_else(|| {
                            invalid(format!("spec.roles[{index}].{key} holds a non-string"))
                        })
                    })
                    .collect(),
                Some(_) => Err(invalid(format!("spec.roles[{index}].{key} is not a list"))),
            }
        };
        let Some(role_name) = role.get("name").and_then(Value::as_str) else {
            return Err(invalid(format!("spec.roles[{index}].name is missing")));
        };
        roles.push(ProjectRole {
            name: role_name.to_string(),
            policies: field("policies")?,
            groups: field("groups")?,
        });
    }
    Ok(Project {
        name,
        roles,
        origin: origin.to_string(),
    })
}

#[cfg(test)]
#[path = "../unit_tests/argocd_projects_tests.rs"]
mod tests;
