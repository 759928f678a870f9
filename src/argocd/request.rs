//! The argument forms of `argocd admin settings rbac can` (argo-cd v3.6.2,
//! `cmd/argocd/commands/admin/settings_rbac.go`): resource aliases, the strict check of resource
//! and action names, and the default object of project-scoped resources.

/// `resourceMap`: shorthand names; any other name is used as given.
pub fn resolve_resource(name: &str) -> &str {
    match name {
        "account" => "accounts",
        "app" | "apps" | "application" => "applications",
        "applicationsets" => "applicationsets",
        "cert" | "certs" | "certificate" => "certificates",
        "cluster" => "clusters",
        "extension" => "extensions",
        "gpgkey" | "key" => "gpgkeys",
        "log" | "logs" => "logs",
        "exec" => "exec",
        "proj" | "projs" | "project" => "projects",
        "repo" | "repos" | "repository" => "repositories",
        other => other,
    }
}

/// `validRBACResourcesActions`: each resource's actions, and whether the action may take a path
/// (`update/<group>/<kind>/<ns>/<name>`, `action/<group>/<kind>/<name>`).
fn actions(resource: &str) -> Option<&'static [(&'static str, bool)]> {
    const CRUD: &[(&str, bool)] = &[
        ("create", false),
        ("get", false),
        ("update", false),
        ("delete", false),
    ];
    const CRD: &[(&str, bool)] = &[("create", false), ("get", false), ("delete", false)];
    Some(match resource {
        "accounts" => &[("create", false), ("update", false)],
        "applications" => &[
            ("create", false),
            ("get", false),
            ("update", true),
            ("delete", true),
            ("action", true),
            ("override", false),
            ("sync", false),
            ("rollback", false),
        ],
        "applicationsets" | "clusters" | "projects" | "repositories" | "write-repositories" => CRUD,
        "certificates" | "gpgkeys" => CRD,
        "extensions" => &[("invoke", false)],
        "logs" => &[("get", false)],
        "exec" => &[("create", false)],
        _ => return None,
    })
}

/// `validateRBACResourceAction`: the check `--strict` (on by default) makes.
pub fn validate_resource_action(resource: &str, action: &str) -> Result<(), String> {
    let Some(valid) = actions(resource) else {
        return Err(format!("'{resource}' is not a valid resource name"));
    };
    let (name, has_path) = match action.split_once('/') {
        Some((name, _)) => (name, true),
        None => (action, false),
    };
    match valid.iter().find(|(known, _)| *known == name) {
        Some((_, allows_path)) if !has_path || *allows_path => Ok(()),
        _ => Err(format!("'{action}' is not a valid action for {resource}")),
    }
}

/// Resources whose objects are `<project>/<name>` (`rbac.ProjectScoped`), plus
/// `write-repositories`, which the command treats the same.
pub fn is_project_scoped(resource: &str) -> bool {
    matches!(
        resource,
        "applications"
            | "applicationsets"
            | "logs"
            | "exec"
            | "clusters"
            | "repositories"
            | "write-repositories"
    )
}

/// The object the command checks: for a project-scoped resource, none or `*` means `*/*`.
pub fn default_object(resource: &str, object: Option<&str>) -> String {
    let object = object.unwrap_or("");
    if is_project_scoped(resource) && (object.is_empty() || object == "*") {
        "*/*".to_string()
    } else {
        object.to_string()
    }
}

#[cfg(test)]
#[path = "../unit_tests/argocd_request_tests.rs"]
mod tests;
