//! How argocd-server decides a request (argo-cd v3.6.2): `rbac.Enforcer.Enforce` with the token's
//! claims, which checks the default role and then hands over to
//! `server/rbacpolicy.RBACPolicyEnforcer.EnforceClaims`:
//!
//! 1. the default role (`policy.default`) against the built-in and user policy: allowed if it is;
//! 2. if the request is about a project (`getProjectFromRequest`: the first segment of the object
//!    of `applications`, `applicationsets`, `repositories`, `clusters`, `logs` and `exec`, or the
//!    object of `projects`) and that AppProject exists, its roles' lines are added;
//! 3. a project token subject (`proj:<project>:<role>`) on a request about a project is checked
//!    alone, and only against its own project (another project's request is denied);
//! 4. otherwise the subject, then each of the user's groups (the values of the `scopes` claims),
//!    each on its own: a group is checked only if some `g` line names it as a member.
//!
//! Every check is a separate casbin enforcement that also starts with the default role. So a
//! `deny` stops only the check it is in: a deny matched for one group does not stop another
//! group, the subject or the default role from allowing (argo-cd issue #17547).

use std::collections::BTreeMap;
use std::fmt;

use super::config_map::{MatchMode, RbacConfig};
use super::model::{CompiledPolicy, Enforcer, Outcome};
use super::policy::{LineRef, Policy, PolicyError, Source};
use super::projects::Project;

/// A request to decide: who, and `resource, action, object` as Argo CD's API server enforces them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The token's subject (`federated_claims.user_id`, else `sub`); `proj:<p>:<r>` for a project
    /// token.
    pub subject: &'a str,
    /// The values of the `scopes` claims, in order.
    pub groups: &'a [String],
    pub resource: &'a str,
    pub action: &'a str,
    pub object: &'a str,
}

/// Whose permissions one check asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    DefaultRole(String),
    Subject(String),
    Group(String),
    /// The empty subject `rbac.enforce` checks last, once the claims did not allow.
    Anonymous,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::DefaultRole(role) => write!(f, "default role {role}"),
            Principal::Subject(subject) => write!(f, "subject {subject}"),
            Principal::Group(group) => write!(f, "group {group}"),
            Principal::Anonymous => f.write_str("the empty subject (checked last)"),
        }
    }
}

/// One casbin enforcement made while deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub principal: Principal,
    /// The AppProject whose roles' lines took part, if any.
    pub project: Option<String>,
    pub outcome: Outcome,
}

/// The answer, and how it was reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The `allow` line that allowed it; for a denial the first `deny` line matched (or the line
    /// whose invalid regex failed the check), if any.
    pub deciding_line: Option<LineRef>,
    pub checks: Vec<Check>,
    /// What else shaped the answer (groups skipped, a token of another project, inheritance).
    pub notes: Vec<String>,
}

impl Decision {
    fn push(&mut self, principal: Principal, project: Option<&str>, outcome: Outcome) -> bool {
        let allowed = outcome.allowed();
        self.checks.push(Check {
            principal,
            project: project.map(str::to_string),
            outcome,
        });
        if allowed {
            self.finish(true);
        }
        allowed
    }

    fn finish(&mut self, allowed: bool) {
        self.allowed = allowed;
        self.deciding_line = self.checks.iter().find_map(|check| match &check.outcome {
            Outcome::Allow(matched) if allowed => Some(matched.line.clone()),
            Outcome::Deny(matched) if !allowed => Some(matched.line.clone()),
            Outcome::Error { line, .. } if !allowed => Some(line.clone()),
            _ => None,
        });
    }

    /// The checks in order, one per line, then the notes.
    pub fn explanation(&self) -> String {
        let mut lines = Vec::new();
        for check in &self.checks {
            let with = match &check.project {
                Some(project) => format!(" (with AppProject {project}'s roles)"),
                None => String::new(),
            };
            let what = match &check.outcome {
                Outcome::Allow(matched) => format!("allowed by {}{}", matched.line, via(matched)),
                Outcome::Deny(matched) => format!("denied by {}{}", matched.line, via(matched)),
                Outcome::NoMatch => "no line matches".to_string(),
                Outcome::AllowWithoutLines { .. } => "allowed: no p line is loaded, and casbin \
                    then matches every request field against an empty pattern"
                    .to_string(),
                Outcome::Error { line, message } => {
                    format!("denied: {line}: {message} (casbin fails the whole check)")
                }
            };
            lines.push(format!("{}{with}: {what}", check.principal));
        }
        lines.extend(self.notes.iter().map(|note| format!("note: {note}")));
        lines.join("\n")
    }
}

fn via(matched: &super::model::Matched) -> String {
    if matched.via.is_empty() {
        return String::new();
    }
    let steps: Vec<String> = matched.via.iter().map(ToString::to_string).collect();
    format!(", through {}", steps.join(" and "))
}

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("the built-in policy does not load:\n{0}")]
    Builtin(PolicyError),
    #[error("AppProject {name} is defined twice: in {first} and in {second}")]
    DuplicateProject {
        name: String,
        first: String,
        second: String,
    },
}

struct LoadedProject {
    project: Project,
    /// `None` when Argo CD would fail to load the project's lines and fall back to the policy
    /// without them (`tryGetCasbinEnforcer`).
    policy: Option<CompiledPolicy>,
}

/// Everything argocd-server's RBAC decides with.
pub struct Rbac {
    builtin: CompiledPolicy,
    user: CompiledPolicy,
    default_role: String,
    match_mode: MatchMode,
    scopes: Vec<String>,
    projects: BTreeMap<String, LoadedProject>,
    warnings: Vec<String>,
}

impl Rbac {
    /// `builtin` is normally `super::builtin_policy()`; `Policy::default()` for none.
    pub fn new(
        builtin: Policy,
        config: RbacConfig,
        projects: Vec<Project>,
    ) -> Result<Self, RbacError> {
        let mode = config.match_mode;
        let mut warnings = config.warnings;
        warnings.extend(builtin.warnings.iter().cloned());
        warnings.extend(config.policy.warnings.iter().cloned());
        let builtin = CompiledPolicy::new(builtin, mode);
        let user = CompiledPolicy::new(config.policy, mode);
        // One line for the built-in policy: in regex mode most of its patterns fail alike.
        let builtin_problems = builtin.pattern_warnings().len();
        if builtin_problems > 0 {
            warnings.push(format!(
                "{builtin_problems} patterns of the built-in policy (`*`, `*/*`) do not compile in \
                 regex mode: every check that reaches one is denied, so role:readonly and \
                 role:admin allow nothing (argo-cd issue #13127)"
            ));
        }
        warnings.extend(user.pattern_warnings());
        let mut loaded: BTreeMap<String, LoadedProject> = BTreeMap::new();
        for project in projects {
            if let Some(existing) = loaded.get(&project.name) {
                return Err(RbacError::DuplicateProject {
                    name: project.name.clone(),
                    first: existing.project.origin.clone(),
                    second: project.origin.clone(),
                });
            }
            let text = project.policies_string();
            let policy = match Policy::parse_lenient(&text, Source::Project(project.name.clone())) {
                Ok(policy) => {
                    warnings.extend(policy.warnings.iter().cloned());
                    let compiled = CompiledPolicy::new(policy, mode);
                    warnings.extend(compiled.pattern_warnings());
                    Some(compiled)
                }
                Err(error) => {
                    warnings.push(format!(
                        "AppProject {} ({}): its roles' policy does not load, so Argo CD \
                             ignores all of it:\n{error}",
                        project.name, project.origin
                    ));
                    None
                }
            };
            loaded.insert(project.name.clone(), LoadedProject { project, policy });
        }
        Ok(Rbac {
            builtin,
            user,
            default_role: config.default_role,
            match_mode: mode,
            scopes: config.scopes,
            projects: loaded,
            warnings,
        })
    }

    /// Replace `policy.default` (empty for none).
    pub fn set_default_role(&mut self, role: &str) {
        self.default_role = role.to_string();
    }

    pub fn default_role(&self) -> &str {
        &self.default_role
    }

    pub fn match_mode(&self) -> MatchMode {
        self.match_mode
    }

    /// The claims whose values are the user's groups.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// What loaded but will not work as it probably should.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `getProjectFromRequest`, among the loaded projects.
    fn project_for(&self, resource: &str, object: &str) -> Option<&LoadedProject> {
        let name = match resource {
            "applicationsets" | "applications" | "repositories" | "clusters" | "logs" | "exec" => {
                let mut segments = object.split('/');
                let first = segments.next()?;
                segments.next()?;
                first
            }
            "projects" => object,
            _ => return None,
        };
        self.projects.get(name)
    }

    /// Whether some `g` line of the built-in or user policy names `name` as its member.
    pub fn binds(&self, name: &str) -> bool {
        Enforcer::new(vec![&self.builtin, &self.user]).binds(name)
    }

    /// Whether the built-in and user policy allow `request.subject` itself, the default role
    /// aside (`hasDirectGrant` in `argocd admin settings rbac can`).
    pub fn grants_directly(&self, request: &Request) -> bool {
        Enforcer::new(vec![&self.builtin, &self.user])
            .enforce(
                request.subject,
                request.resource,
                request.action,
                request.object,
            )
            .allowed()
    }

    /// argocd-server's decision for a token with this subject and these groups.
    pub fn enforce(&self, request: &Request) -> Decision {
        let mut decision = self.enforce_claims(request);
        if decision.allowed {
            return decision;
        }
        // rbac.enforce, once the claims enforcer said no: casbin again with the subject "" and
        // the built-in and user policy. Only lines for the empty subject (or a policy without
        // any p line) can allow here.
        let base = Enforcer::new(vec![&self.builtin, &self.user]);
        let outcome = base.enforce("", request.resource, request.action, request.object);
        if outcome == Outcome::NoMatch {
            return decision;
        }
        if !decision.push(Principal::Anonymous, None, outcome) {
            decision.finish(false);
        }
        decision
    }

    /// The default role, then `RBACPolicyEnforcer.EnforceClaims`.
    fn enforce_claims(&self, request: &Request) -> Decision {
        let Request {
            subject,
            groups: _,
            resource,
            action,
            object,
        } = *request;
        let mut decision = Decision::default();
        let base = Enforcer::new(vec![&self.builtin, &self.user]);
        let default_role = (!self.default_role.is_empty()).then_some(self.default_role.as_str());
        // rbac.enforce: the default role first, without any project's lines.
        if let Some(role) = default_role {
            let outcome = base.enforce(role, resource, action, object);
            if decision.push(Principal::DefaultRole(role.to_string()), None, outcome) {
                return decision;
            }
        }
        let project = self.project_for(resource, object);
        let with_project: Option<(&str, Enforcer)> = project.and_then(|loaded| {
            let name = loaded.project.name.as_str();
            if loaded.policy.is_none() {
                decision.notes.push(format!(
                    "AppProject {name}'s roles do not load: Argo CD decides without them"
                ));
            }
            loaded
                .policy
                .as_ref()
                .map(|policy| (name, Enforcer::new(vec![&self.builtin, &self.user, policy])))
        });
        let (enforcer, project_name) = match &with_project {
            Some((name, enforcer)) => (enforcer, Some(*name)),
            None => (&base, None),
        };
        // Each check below is a casbin enforcement of its own, which checks the default role
        // again; with a project's lines added, that may answer differently.
        let default_again = |decision: &mut Decision| -> bool {
            match (default_role, project_name) {
                (Some(role), Some(_)) => decision.push(
                    Principal::DefaultRole(role.to_string()),
                    project_name,
                    enforcer.enforce(role, resource, action, object),
                ),
                _ => false,
            }
        };
        if let (Some(loaded), Some((token_project, _))) = (project, project_subject(subject)) {
            // enforceProjectToken.
            if token_project != loaded.project.name {
                decision.notes.push(format!(
                    "{subject} is a token of AppProject {token_project}, and the request is \
                     about AppProject {}: Argo CD denies it without a policy check",
                    loaded.project.name
                ));
                decision.finish(false);
                return decision;
            }
            if default_again(&mut decision) {
                return decision;
            }
            let outcome = enforcer.enforce(subject, resource, action, object);
            if !decision.push(
                Principal::Subject(subject.to_string()),
                project_name,
                outcome,
            ) {
                decision.finish(false);
            }
            return decision;
        }
        if default_again(&mut decision) {
            return decision;
        }
        let outcome = enforcer.enforce(subject, resource, action, object);
        if decision.push(
            Principal::Subject(subject.to_string()),
            project_name,
            outcome,
        ) {
            return decision;
        }
        if !enforce_groups(enforcer, request, project_name, &mut decision) {
            decision.finish(false);
        }
        decision
    }

    /// `enforce`, for an update or delete of one of an Application's resources
    /// (`update/<group>/<kind>/<namespace>/<name>`, `delete/…`) as `getAppLiveResource` makes
    /// it: with `inheritance` (argocd-cm `server.rbac.disableApplicationFineGrainedRBACInheritance:
    /// "false"`) the plain `update`/`delete` on the Application is checked first and, when it
    /// allows, covers its resources; without it (v3's default) only the fine-grained action counts.
    pub fn enforce_inheriting(&self, request: &Request, inheritance: bool) -> Decision {
        let parent = fine_grained_parent(request.resource, request.action);
        let Some(parent) = parent.filter(|_| inheritance) else {
            return self.enforce(request);
        };
        let mut inherited = self.enforce(&Request {
            action: parent,
            ..*request
        });
        if inherited.allowed {
            inherited.notes.push(format!(
                "{parent} on the Application allows it: with fine-grained inheritance its \
                 resources inherit {parent}"
            ));
            return inherited;
        }
        let mut decision = self.enforce(request);
        let mut checks = inherited.checks;
        checks.append(&mut decision.checks);
        decision.checks = checks;
        decision.notes.insert(
            0,
            format!("{parent} on the Application was checked first (fine-grained inheritance)"),
        );
        decision
    }
}

/// `update` for `update/<…>` (and `delete` for `delete/<…>`) on applications.
pub fn fine_grained_parent<'a>(resource: &str, action: &'a str) -> Option<&'a str> {
    if resource != "applications" {
        return None;
    }
    let (parent, _) = action.split_once('/')?;
    matches!(parent, "update" | "delete").then_some(parent)
}

/// `GetProjectRoleFromSubject`: `proj:<project>:<role>`, exactly three `:`-separated parts.
pub fn project_subject(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("proj"), Some(project), Some(role), None) => Some((project, role)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "../unit_tests/argocd_enforce_tests.rs"]
mod tests;

/// Each of the request's groups that a `g` line binds, alone (`EnforceClaims`); true when one
/// allowed. A group no `g` line names is never checked (argo-cd#7952).
fn enforce_groups(
    enforcer: &Enforcer,
    request: &Request,
    project: Option<&str>,
    decision: &mut Decision,
) -> bool {
    for group in request.groups {
        if !enforcer.binds(group) {
            decision.notes.push(format!(
                "group {group} is not evaluated: no g line names it as a member, and Argo CD \
                 checks a group only then (argo-cd issue #7952)"
            ));
            continue;
        }
        let outcome = enforcer.enforce(group, request.resource, request.action, request.object);
        if decision.push(Principal::Group(group.clone()), project, outcome) {
            return true;
        }
    }
    false
}
