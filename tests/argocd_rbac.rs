//! Golden cases for `guardrails::argocd`: Argo CD's RBAC decided as argocd-server v3.6.2 decides
//! it. Each group cites where its cases come from: a test function of argo-cd's
//! `util/rbac/rbac_test.go` or `server/rbacpolicy/rbacpolicy_test.go` (the same policy, query and
//! expected answer), or an argo-cd issue whose behaviour it pins down.
//!
//! Every query's answer is also checked against Argo CD's own code, in every run: the oracle
//! (`tests/fixtures/argocd-rbac/oracle/`, see SOURCES.md there) is built from argo-cd's Go module
//! like the e2e components.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use guardrails::argocd::config_map::{from_csv, parse_rbac};
use guardrails::argocd::projects::ProjectRole;
use guardrails::argocd::{
    BUILTIN_POLICY_CSV, Policy, Project, Rbac, Request, Source, builtin_policy,
};
use serde_json::{Value, json};

/// The built-in policy a case runs with.
#[derive(Clone, Copy)]
enum Builtin {
    /// argo-cd's `assets/builtin-policy.csv` (as argocd-server always has).
    Argo,
    /// None (`SetBuiltinPolicy` never called in the Go test).
    None,
    /// The Go test's own `SetBuiltinPolicy(...)`.
    Custom(&'static str),
}

/// The user policy: a `policy.csv` text, or an `argocd-rbac-cm` ConfigMap.
#[derive(Clone, Copy)]
enum User {
    Csv(&'static str),
    ConfigMap(&'static str),
}

#[derive(Clone)]
struct World {
    builtin: Builtin,
    user: User,
    default_role: &'static str,
    regex: bool,
    projects: Vec<Project>,
}

struct Query {
    subject: &'static str,
    groups: Vec<&'static str>,
    resource: &'static str,
    action: &'static str,
    object: &'static str,
    /// Check the Application's plain update/delete first (fine-grained inheritance on).
    inheritance: bool,
    allowed: bool,
}

struct Golden {
    cite: &'static str,
    world: World,
    queries: Vec<Query>,
}

fn world(builtin: Builtin, user: &'static str) -> World {
    World {
        builtin,
        user: User::Csv(user),
        default_role: "",
        regex: false,
        projects: Vec::new(),
    }
}

impl World {
    fn default_role(mut self, role: &'static str) -> Self {
        self.default_role = role;
        self
    }

    fn regex(mut self) -> Self {
        self.regex = true;
        self
    }

    fn project(mut self, project: Project) -> Self {
        self.projects.push(project);
        self
    }

    fn rbac(&self) -> Rbac {
        let builtin = match self.builtin {
            Builtin::Argo => builtin_policy().expect("the built-in policy loads"),
            Builtin::None => Policy::default(),
            Builtin::Custom(text) => Policy::parse(text, Source::Builtin).expect("valid"),
        };
        let mut config = match self.user {
            User::Csv(text) => from_csv(text, "policy.csv").expect("valid policy"),
            User::ConfigMap(yaml) => parse_rbac(yaml, "argocd-rbac-cm.yaml").expect("valid"),
        };
        if !self.default_role.is_empty() {
            config.default_role = self.default_role.to_string();
        }
        if self.regex {
            config.match_mode = guardrails::argocd::MatchMode::Regex;
        }
        Rbac::new(builtin, config, self.projects.clone()).expect("loads")
    }
}

fn project(name: &str, roles: &[(&str, &[&str], &[&str])]) -> Project {
    Project {
        name: name.to_string(),
        roles: roles
            .iter()
            .map(|(role, policies, groups)| ProjectRole {
                name: role.to_string(),
                policies: policies.iter().map(|p| p.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            })
            .collect(),
        origin: "test".to_string(),
    }
}

/// `subject` may `action` `resource` `object`: `allowed`.
fn ask(
    subject: &'static str,
    resource: &'static str,
    action: &'static str,
    object: &'static str,
    allowed: bool,
) -> Query {
    Query {
        subject,
        groups: Vec::new(),
        resource,
        action,
        object,
        inheritance: false,
        allowed,
    }
}

impl Query {
    fn groups(mut self, groups: &[&'static str]) -> Self {
        self.groups = groups.to_vec();
        self
    }

    fn inheriting(mut self) -> Self {
        self.inheritance = true;
        self
    }
}

fn golden(cite: &'static str, world: World, queries: Vec<Query>) -> Golden {
    Golden {
        cite,
        world,
        queries,
    }
}

fn check(cases: &[Golden]) {
    let mut failures = Vec::new();
    for case in cases {
        let rbac = case.world.rbac();
        for query in &case.queries {
            let groups: Vec<String> = query.groups.iter().map(|g| g.to_string()).collect();
            let request = Request {
                subject: query.subject,
                groups: &groups,
                resource: query.resource,
                action: query.action,
                object: query.object,
            };
            let decision = rbac.enforce_inheriting(&request, query.inheritance);
            if decision.allowed != query.allowed {
                failures.push(format!(
                    "{}: {} {:?} {} {} {}: expected {}, got {}\n{}",
                    case.cite,
                    query.subject,
                    query.groups,
                    query.resource,
                    query.action,
                    query.object,
                    query.allowed,
                    decision.allowed,
                    decision.explanation()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- util/rbac/rbac_test.go ----

fn builtin_policy_enforcer() -> Vec<Golden> {
    vec![
        // TestBuiltinPolicyEnforcer: "Without setting builtin policy, this should fail".
        golden(
            "rbac_test.go TestBuiltinPolicyEnforcer (no built-in policy)",
            world(Builtin::None, ""),
            vec![ask("admin", "applications", "get", "foo/bar", false)],
        ),
        golden(
            "rbac_test.go TestBuiltinPolicyEnforcer",
            world(Builtin::Argo, ""),
            vec![
                ask("admin", "applications", "get", "foo/bar", true),
                ask("admin", "applications", "delete", "foo/bar", true),
                ask("role:readonly", "applications", "get", "foo/bar", true),
                ask("role:admin", "applications", "get", "foo/bar", true),
                ask("role:admin", "applications", "delete", "foo/bar", true),
                ask("role:admin", "applications", "rollback", "foo/bar", true),
                ask("role:readonly", "applications", "create", "foo/bar", false),
                ask("role:readonly", "applications", "delete", "foo/bar", false),
                ask(
                    "role:readonly",
                    "applications",
                    "rollback",
                    "foo/bar",
                    false,
                ),
            ],
        ),
    ]
}

fn project_isolation_enforcement() -> Vec<Golden> {
    vec![golden(
        "rbac_test.go TestProjectIsolationEnforcement",
        world(
            Builtin::Custom(
                "p, role:foo-admin, *, *, foo/*, allow\np, role:bar-admin, *, *, bar/*, allow\n\
                 g, alice, role:foo-admin\ng, bob, role:bar-admin",
            ),
            "",
        ),
        vec![
            ask("bob", "applications", "delete", "bar/obj", true),
            ask("bob", "applications", "delete", "foo/obj", false),
            ask("alice", "applications", "delete", "foo/obj", true),
            ask("alice", "applications", "delete", "bar/obj", false),
        ],
    )]
}

fn project_read_only() -> Vec<Golden> {
    vec![golden(
        "rbac_test.go TestProjectReadOnly",
        world(
            Builtin::Custom(
                "p, role:foo-readonly, *, get, foo/*, allow\ng, alice, role:foo-readonly",
            ),
            "",
        ),
        vec![
            ask("alice", "applications", "get", "foo/obj", true),
            ask("alice", "applications", "delete", "bar/obj", false),
            ask("alice", "applications", "get", "bar/obj", false),
            ask("bob", "applications", "get", "foo/obj", false),
        ],
    )]
}

fn default_role() -> Vec<Golden> {
    vec![
        golden(
            "rbac_test.go TestDefaultRole (no default role)",
            world(Builtin::Argo, ""),
            vec![ask("bob", "applications", "get", "foo/bar", false)],
        ),
        golden(
            "rbac_test.go TestDefaultRole (SetDefaultRole(\"role:readonly\"))",
            world(Builtin::Argo, "").default_role("role:readonly"),
            vec![ask("bob", "applications", "get", "foo/bar", true)],
        ),
        // TestDefaultRoleWithRuntimePolicy: the built-in policy given as the runtime policy
        // instead; the default role still applies.
        golden(
            "rbac_test.go TestDefaultRoleWithRuntimePolicy",
            world(Builtin::None, BUILTIN_POLICY_CSV).default_role("role:readonly"),
            vec![ask("bob", "applications", "get", "foo/bar", true)],
        ),
    ]
}

fn url_as_object_name() -> Vec<Golden> {
    vec![golden(
        "rbac_test.go TestURLAsObjectName",
        world(
            Builtin::None,
            "p, alice, repositories, *, foo/*, allow\n\
             p, bob, repositories, *, foo/https://github.com/argoproj/argo-cd.git, allow\n\
             p, cathy, repositories, *, foo/*, allow",
        ),
        vec![
            ask(
                "alice",
                "repositories",
                "delete",
                "foo/https://github.com/argoproj/argo-cd.git",
                true,
            ),
            ask(
                "alice",
                "repositories",
                "delete",
                "foo/https://github.com/golang/go.git",
                true,
            ),
            ask(
                "bob",
                "repositories",
                "delete",
                "foo/https://github.com/argoproj/argo-cd.git",
                true,
            ),
            ask(
                "bob",
                "repositories",
                "delete",
                "foo/https://github.com/golang/go.git",
                false,
            ),
        ],
    )]
}

fn enable_disable_enforce() -> Vec<Golden> {
    vec![golden(
        "rbac_test.go TestEnableDisableEnforce (enforcement on)",
        world(
            Builtin::None,
            "p, alice, *, get, foo/obj, allow\np, mike, *, get, foo/obj, deny",
        ),
        vec![
            ask("alice", "applications", "get", "foo/obj", true),
            ask(
                "alice",
                "applications/resources",
                "delete",
                "foo/obj",
                false,
            ),
            ask("mike", "applications", "get", "foo/obj", false),
            ask("mike", "applications/resources", "delete", "foo/obj", false),
        ],
    )]
}

fn update_policy() -> Vec<Golden> {
    let alice = "p, alice, *, get, foo/obj, allow";
    let bob = "p, bob, *, get, foo/obj, allow";
    let both = |allowed_alice, allowed_bob| {
        vec![
            ask("alice", "applications", "get", "foo/obj", allowed_alice),
            ask("bob", "applications", "get", "foo/obj", allowed_bob),
        ]
    };
    vec![
        golden(
            "rbac_test.go TestUpdatePolicy (user: alice)",
            world(Builtin::None, alice),
            both(true, false),
        ),
        golden(
            "rbac_test.go TestUpdatePolicy (user: bob)",
            world(Builtin::None, bob),
            both(false, true),
        ),
        golden(
            "rbac_test.go TestUpdatePolicy (user: empty)",
            world(Builtin::None, ""),
            both(false, false),
        ),
        golden(
            "rbac_test.go TestUpdatePolicy (built-in: alice)",
            world(Builtin::Custom(alice), ""),
            both(true, false),
        ),
        golden(
            "rbac_test.go TestUpdatePolicy (built-in: bob)",
            world(Builtin::Custom(bob), ""),
            both(false, true),
        ),
    ]
}

fn no_policy() -> Vec<Golden> {
    vec![golden(
        "rbac_test.go TestNoPolicy",
        world(Builtin::None, ""),
        vec![ask("admin", "applications", "delete", "foo/bar", false)],
    )]
}

fn invalid_runtime_policy() -> Vec<Golden> {
    // TestInvalidRuntimePolicy gives EnforceRuntimePolicy a bad runtime policy: Argo CD falls
    // back to the policy without it. The runtime policy argocd-server builds is an AppProject's:
    // here a project whose role holds the same bad line.
    let bad = project("foo", &[("r", &["this, is, not, a, good, policy"], &[])]);
    vec![
        golden(
            "rbac_test.go TestInvalidRuntimePolicy (empty runtime policy)",
            world(Builtin::Argo, ""),
            vec![
                ask("admin", "applications", "update", "foo/bar", true),
                ask("role:readonly", "applications", "update", "foo/bar", false),
            ],
        ),
        golden(
            "rbac_test.go TestInvalidRuntimePolicy (bad runtime policy: falls back)",
            world(Builtin::Argo, "").project(bad),
            vec![
                ask("admin", "applications", "update", "foo/bar", true),
                ask("role:readonly", "applications", "update", "foo/bar", false),
            ],
        ),
    ]
}

fn match_modes() -> Vec<Golden> {
    let glob = r#"p, alice, clusters, get, "https://github.com/*/*.git", allow"#;
    let regex =
        r#"p, alice, clusters, get, "https://github.com/argo[a-z]{4}/argo-[a-z]+.git", allow"#;
    vec![
        golden(
            "rbac_test.go TestDefaultGlobMatchMode",
            world(Builtin::None, glob),
            vec![
                ask(
                    "alice",
                    "clusters",
                    "get",
                    "https://github.com/argoproj/argo-cd.git",
                    true,
                ),
                ask(
                    "alice",
                    "repositories",
                    "get",
                    "https://github.com/argoproj/argo-cd.git",
                    false,
                ),
            ],
        ),
        golden(
            "rbac_test.go TestGlobMatchMode",
            world(Builtin::None, glob),
            vec![
                ask(
                    "alice",
                    "clusters",
                    "get",
                    "https://github.com/argoproj/argo-cd.git",
                    true,
                ),
                ask(
                    "alice",
                    "clusters",
                    "get",
                    "https://github.com/argo-cd.git",
                    false,
                ),
            ],
        ),
        golden(
            "rbac_test.go TestRegexMatchMode",
            world(Builtin::None, regex).regex(),
            vec![
                ask(
                    "alice",
                    "clusters",
                    "get",
                    "https://github.com/argoproj/argo-cd.git",
                    true,
                ),
                ask(
                    "alice",
                    "clusters",
                    "get",
                    "https://github.com/argoproj/1argo-cd.git",
                    false,
                ),
            ],
        ),
        // TestGlobMatchFunc: globMatchFunc("arg/123", "arg/*") is true.
        golden(
            "rbac_test.go TestGlobMatchFunc",
            world(Builtin::None, "p, alice, r, a, arg/*, allow"),
            vec![ask("alice", "r", "a", "arg/123", true)],
        ),
    ]
}

// ---- server/rbacpolicy/rbacpolicy_test.go ----

/// `newFakeProj()`.
fn fake_project() -> Project {
    project(
        "my-proj",
        &[(
            "my-role",
            &[
                "p, proj:my-proj:my-role, applications, create, my-proj/*, allow",
                "p, proj:my-proj:my-role, logs, get, my-proj/*, allow",
                "p, proj:my-proj:my-role, exec, create, my-proj/*, allow",
            ],
            &["my-org:my-team"],
        )],
    )
}

fn three(subject: &'static str, groups: &[&'static str], allowed: bool) -> Vec<Query> {
    vec![
        ask(subject, "applications", "create", "my-proj/my-app", allowed).groups(groups),
        ask(subject, "logs", "get", "my-proj/my-app", allowed).groups(groups),
        ask(subject, "exec", "create", "my-proj/my-app", allowed).groups(groups),
    ]
}

fn enforce_all_policies() -> Vec<Golden> {
    let world = world(
        Builtin::Custom(
            "p, alice, applications, create, my-proj/*, allow\n\
             p, alice, logs, get, my-proj/*, allow\np, alice, exec, create, my-proj/*, allow",
        ),
        "p, bob, applications, create, my-proj/*, allow\n\
         p, bob, logs, get, my-proj/*, allow\np, bob, exec, create, my-proj/*, allow",
    )
    .project(fake_project());
    let mut queries = Vec::new();
    queries.extend(three("alice", &[], true));
    queries.extend(three("bob", &[], true));
    // {"sub": "qwertyuiop", "federated_claims": {"user_id": "bob"}}: the subject is bob.
    queries.extend(three("bob", &[], true));
    queries.extend(three("proj:my-proj:my-role", &[], true));
    // {"groups": ["my-org:my-team"]}: no subject.
    queries.extend(three("", &["my-org:my-team"], true));
    queries.extend(three("cathy", &[], false));
    vec![golden(
        "rbacpolicy_test.go TestEnforceAllPolicies",
        world,
        queries,
    )]
}

fn enforce_action_actions() -> Vec<Golden> {
    vec![golden(
        "rbacpolicy_test.go TestEnforceActionActions",
        world(
            Builtin::Custom(
                "p, alice, applications, action/*, my-proj/*, allow\n\
                 p, bob, applications, action/argoproj.io/Rollout/*, my-proj/*, allow\n\
                 p, cam, applications, action/argoproj.io/Rollout/resume, my-proj/*, allow",
            ),
            "",
        )
        .project(fake_project()),
        vec![
            ask(
                "alice",
                "applications",
                "action/argoproj.io/Rollout/resume",
                "my-proj/my-app",
                true,
            ),
            ask(
                "alice",
                "applications",
                "action/argoproj.io/NewCrd/abort",
                "my-proj/my-app",
                true,
            ),
            ask(
                "bob",
                "applications",
                "action/argoproj.io/Rollout/resume",
                "my-proj/my-app",
                true,
            ),
            ask(
                "bob",
                "applications",
                "action/argoproj.io/NewCrd/abort",
                "my-proj/my-app",
                false,
            ),
            ask(
                "cam",
                "applications",
                "action/argoproj.io/Rollout/resume",
                "my-proj/my-app",
                true,
            ),
            ask(
                "cam",
                "applications",
                "action/argoproj.io/Rollout/abort",
                "my-proj/my-app",
                false,
            ),
            ask(
                "eve",
                "applications",
                "action/argoproj.io/Rollout/resume",
                "my-proj/my-app",
                false,
            ),
        ],
    )]
}

fn invalidated_cache() -> Vec<Golden> {
    let mut queries = Vec::new();
    for subject in ["alice", "bob"] {
        queries.push(ask(
            subject,
            "applications",
            "create",
            "my-proj2/my-app",
            true,
        ));
        queries.push(ask(subject, "logs", "get", "my-proj2/my-app", true));
        queries.push(ask(subject, "exec", "create", "my-proj2/my-app", true));
        queries.extend(three(subject, &[], false));
    }
    vec![golden(
        "rbacpolicy_test.go TestInvalidatedCache (after the policy update)",
        world(
            Builtin::Custom(
                "p, alice, applications, create, my-proj2/*, allow\n\
                 p, alice, logs, get, my-proj2/*, allow\np, alice, exec, create, my-proj2/*, allow",
            ),
            "p, bob, applications, create, my-proj2/*, allow\n\
             p, bob, logs, get, my-proj2/*, allow\np, bob, exec, create, my-proj2/*, allow",
        )
        .project(fake_project()),
        queries,
    )]
}

fn project_from_request() -> Vec<Golden> {
    // Test_getProjectFromRequest: `<project>/<url>` objects of repositories and applicationsets
    // name the project, so its roles take part (and a group bound by them is evaluated).
    let proj = project(
        "my-proj",
        &[(
            "repo",
            &[
                "p, proj:my-proj:repo, repositories, create, my-proj/*, allow",
                "p, proj:my-proj:repo, applicationsets, *, my-proj/*, allow",
            ],
            &["my-org:repo-team"],
        )],
    );
    let url = "my-proj/https://github.com/argoproj/argocd-example-apps";
    vec![golden(
        "rbacpolicy_test.go Test_getProjectFromRequest (the project's roles apply)",
        world(Builtin::Argo, "").project(proj),
        vec![
            ask("u", "repositories", "create", url, true).groups(&["my-org:repo-team"]),
            ask("u", "applicationsets", "create", url, true).groups(&["my-org:repo-team"]),
            ask("u", "applicationsets", "get", url, true).groups(&["my-org:repo-team"]),
            ask("u", "applicationsets", "*", url, true).groups(&["my-org:repo-team"]),
            // Without the project in the object, the project's lines are not added.
            ask("u", "repositories", "create", "https://github.com/x", false)
                .groups(&["my-org:repo-team"]),
        ],
    )]
}

// ---- behaviours pinned by argo-cd issues and code ----

fn deny_across_groups() -> Vec<Golden> {
    // argo-cd issue #17547: each group (and the subject, and the default role) is a separate
    // enforcement, so a deny for one does not stop another from allowing.
    vec![
        golden(
            "issue #17547 (its argocd-rbac-cm)",
            world(
                Builtin::Argo,
                "g, k8s-admins, role:admin\np, role:test, projects, get, *, deny\n\
                 g, userA@example.com, role:test",
            ),
            vec![
                ask("userA@example.com", "projects", "get", "my-project", true)
                    .groups(&["k8s-admins", "userA@example.com"]),
                ask("userA@example.com", "projects", "get", "my-project", false),
                ask("u", "projects", "get", "my-project", false).groups(&["userA@example.com"]),
            ],
        ),
        golden(
            "issue #17547 (a deny on the subject, an allow from the default role)",
            world(Builtin::Argo, "p, alice, applications, get, */*, deny")
                .default_role("role:readonly"),
            vec![
                ask("alice", "applications", "get", "p/a", true),
                ask("alice", "applications", "sync", "p/a", false),
            ],
        ),
        golden(
            "model.conf effect: within one enforcement deny wins, whatever the order",
            world(
                Builtin::Argo,
                "p, role:qa, projects, get, production, deny\np, role:qa, projects, get, *, allow\n\
                 g, qa, role:qa\ng, admins, role:admin",
            ),
            vec![
                ask("u", "projects", "get", "production", false).groups(&["qa"]),
                ask("u", "projects", "get", "staging", true).groups(&["qa"]),
                ask("u", "projects", "get", "production", true).groups(&["qa", "admins"]),
            ],
        ),
    ]
}

fn unbound_groups() -> Vec<Golden> {
    // argo-cd issue #7952 (and #28729): a group's own `p` lines count only if a `g` line names
    // the group as a member.
    vec![
        golden(
            "issue #7952 (no g line: the group is never evaluated)",
            world(
                Builtin::Argo,
                "p, someorg:team, projects, get, myproject, allow",
            ),
            vec![
                ask("u", "projects", "get", "myproject", false).groups(&["someorg:team"]),
                // As SUBJECT it is checked directly, like `argocd admin settings rbac can`.
                ask("someorg:team", "projects", "get", "myproject", true),
            ],
        ),
        golden(
            "issue #7952 (with a g line)",
            world(
                Builtin::Argo,
                "g, someorg:team, role:foobar\np, someorg:team, projects, get, myproject, allow",
            ),
            vec![ask("u", "projects", "get", "myproject", true).groups(&["someorg:team"])],
        ),
    ]
}

fn docs_config_map() -> Vec<Golden> {
    // argo-cd docs/operator-manual/argocd-rbac-cm.yaml (tests/fixtures/argocd/rbac/): the
    // team-alpha line has no g line, so (issue #7952) it grants nothing at runtime.
    let yaml = include_str!("fixtures/argocd/rbac/argocd-rbac-cm.yaml");
    let world = World {
        builtin: Builtin::Argo,
        user: User::ConfigMap(yaml),
        default_role: "",
        regex: false,
        projects: Vec::new(),
    };
    vec![golden(
        "docs/operator-manual/argocd-rbac-cm.yaml",
        world,
        vec![
            ask("u", "applications", "sync", "my-project/app", false)
                .groups(&["my-org:team-alpha"]),
            ask("u", "applications", "sync", "my-project/app", true).groups(&["my-org:team-beta"]),
            ask("u", "projects", "delete", "my-project", true).groups(&["my-org:team-qa"]),
            ask(
                "u",
                "clusters",
                "delete",
                "https://kubernetes.default.svc",
                false,
            )
            .groups(&["my-org:team-qa"]),
            ask("u", "applications", "get", "any/app", true),
            ask("u", "applications", "delete", "any/app", false),
        ],
    )]
}

fn glob_and_regex() -> Vec<Golden> {
    let policy = "p, alice, applications, get, my-proj/*, allow";
    vec![
        golden(
            "util/glob: no separators, `*` crosses `/`",
            world(Builtin::None, policy),
            vec![
                ask("alice", "applications", "get", "my-proj/ns/app", true),
                ask("alice", "applications", "get", "other-my-proj/app", false),
                ask("alice", "applications", "get", "my-proj", false),
            ],
        ),
        golden(
            "casbin util.RegexMatch: unanchored, `*` repeats the `/`",
            world(Builtin::None, policy).regex(),
            vec![
                ask("alice", "applications", "get", "my-proj/ns/app", true),
                ask("alice", "applications", "get", "other-my-proj/app", true),
                ask("alice", "applications", "get", "my-proj", true),
            ],
        ),
        golden(
            "regex anchored",
            world(
                Builtin::None,
                "p, alice, ^applications$, ^(get|sync)$, ^dev/[^/]+$, allow",
            )
            .regex(),
            vec![
                ask("alice", "applications", "sync", "dev/app", true),
                ask("alice", "applications", "sync", "dev/ns/app", false),
                ask("alice", "applications", "delete", "dev/app", false),
            ],
        ),
        // argo-cd issue #13127: in regex mode the built-in `*/*` is an invalid regex; reaching it
        // fails the whole enforcement, so role:admin (and role:readonly) allow nothing there.
        golden(
            "issue #13127 (built-in roles under policy.matchMode: regex)",
            world(
                Builtin::Argo,
                "p, role:ops, applications, get, .*, allow\ng, ops, role:ops",
            )
            .regex()
            .default_role("role:readonly"),
            vec![
                ask("admin", "applications", "get", "foo/bar", false),
                ask("admin", "certificates", "get", "x", false),
                // The error fails only the checks that reach it (here the default role's): the
                // group's own check never reaches role:readonly's lines.
                ask("u", "applications", "get", "foo/bar", true).groups(&["ops"]),
                ask("u", "applications", "sync", "foo/bar", false).groups(&["ops"]),
            ],
        ),
        golden(
            "regex mode with no built-in policy",
            world(
                Builtin::None,
                "p, role:ops, applications, get, .*, allow\ng, ops, role:ops",
            )
            .regex(),
            vec![ask("u", "applications", "get", "foo/bar", true).groups(&["ops"])],
        ),
    ]
}

fn project_roles_and_tokens() -> Vec<Golden> {
    let proj = project(
        "my-proj",
        &[
            (
                "ci",
                &["p, proj:my-proj:ci, applications, sync, my-proj/*, allow"],
                &[],
            ),
            (
                "restricted",
                &["p, proj:my-proj:restricted, applications, delete, my-proj/*, deny"],
                &["devs"],
            ),
        ],
    );
    let other = project(
        "other",
        &[(
            "ci",
            &["p, proj:other:ci, applications, sync, other/*, allow"],
            &[],
        )],
    );
    vec![golden(
        "rbacpolicy.go EnforceClaims / enforceProjectToken / ProjectPoliciesString",
        world(
            Builtin::Argo,
            "g, devs, role:dev\np, role:dev, applications, *, my-proj/*, allow\n\
             p, role:dev, applications, *, other/*, allow",
        )
        .project(proj)
        .project(other),
        vec![
            ask(
                "proj:my-proj:ci",
                "applications",
                "sync",
                "my-proj/app",
                true,
            ),
            ask(
                "proj:my-proj:ci",
                "applications",
                "delete",
                "my-proj/app",
                false,
            ),
            // The generated `p, proj:<p>:<r>, projects, get, <p>, allow` line.
            ask("proj:my-proj:ci", "projects", "get", "my-proj", true),
            ask("proj:my-proj:ci", "projects", "get", "other", false),
            // A token is checked only against its own project.
            ask(
                "proj:my-proj:ci",
                "applications",
                "sync",
                "other/app",
                false,
            ),
            // A project role's deny joins the group's enforcement on that project.
            ask("u", "applications", "delete", "my-proj/app", false).groups(&["devs"]),
            ask("u", "applications", "sync", "my-proj/app", true).groups(&["devs"]),
            ask("u", "applications", "delete", "other/app", true).groups(&["devs"]),
            // A token of a project that does not exist is just a subject.
            ask("proj:gone:ci", "applications", "sync", "gone/app", false),
        ],
    )]
}

fn role_depth() -> Vec<Golden> {
    // casbin's default role manager follows at most 10 g links (maxHierarchyLevel).
    let mut lines = String::from(
        "p, r10, projects, get, *, allow\np, r11, clusters, get, *, allow\ng, user, r1\n",
    );
    for level in 1..11 {
        lines.push_str(&format!("g, r{level}, r{}\n", level + 1));
    }
    let lines: &'static str = Box::leak(lines.into_boxed_str());
    vec![golden(
        "casbin role manager maxHierarchyLevel 10",
        world(Builtin::None, lines),
        vec![
            ask("user", "projects", "get", "x", true),
            ask("user", "clusters", "get", "x", false),
        ],
    )]
}

fn fine_grained() -> Vec<Golden> {
    // server/application/application.go getAppLiveResource: v3 checks
    // update/<group>/<kind>/<ns>/<name> alone unless fine-grained inheritance is turned back on.
    let world = world(
        Builtin::Argo,
        "p, role:dev, applications, update, */*, allow\ng, devs, role:dev\n\
         p, role:res, applications, update/apps/Deployment/*, */*, allow\ng, res, role:res",
    );
    let action = "update/apps/Deployment/ns/web";
    vec![golden(
        "application.go getAppLiveResource (server.rbac.disableApplicationFineGrainedRBACInheritance)",
        world,
        vec![
            ask("u", "applications", action, "p/app", false).groups(&["devs"]),
            ask("u", "applications", action, "p/app", true)
                .groups(&["devs"])
                .inheriting(),
            ask("u", "applications", action, "p/app", true).groups(&["res"]),
            ask(
                "u",
                "applications",
                "update/apps/StatefulSet/ns/db",
                "p/app",
                false,
            )
            .groups(&["res"]),
            ask("admin", "applications", action, "p/app", true),
        ],
    )]
}

fn empty_subject() -> Vec<Golden> {
    // util/rbac/rbac.go enforce: once the claims enforcer says no, casbin is asked once more with
    // the subject "" (and the built-in and user policy). And with no p line loaded at all, casbin
    // evaluates the matcher once with every p field "", which a regex "" matches.
    vec![
        golden(
            "rbac.go enforce: a line for the empty subject applies to everyone",
            world(
                Builtin::Argo,
                "p, , applications, get, open/*, allow\ng, , role:readonly",
            ),
            vec![
                ask("bob", "applications", "get", "open/app", true),
                ask("bob", "projects", "get", "any", true),
                ask("bob", "applications", "sync", "open/app", false),
                ask("proj:my-proj:ci", "applications", "get", "open/app", true),
            ],
        ),
        golden(
            "casbin enforce with no p line, glob: \"\" matches only \"\"",
            world(Builtin::None, "g, alice, role:x"),
            vec![ask("bob", "applications", "get", "p/a", false)],
        ),
        golden(
            "casbin enforce with no p line, regex: \"\" matches anything",
            world(Builtin::None, "g, alice, role:x").regex(),
            vec![
                ask("bob", "applications", "get", "p/a", true),
                ask("alice", "clusters", "delete", "x", true),
            ],
        ),
    ]
}

macro_rules! golden_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(&super::$name());
            }
        )*

        fn all_cases() -> Vec<Golden> {
            let mut cases = Vec::new();
            $( cases.extend(super::$name()); )*
            cases
        }
    };
}

mod golden {
    use super::*;

    golden_tests!(
        builtin_policy_enforcer,
        project_isolation_enforcement,
        project_read_only,
        default_role,
        url_as_object_name,
        enable_disable_enforce,
        update_policy,
        no_policy,
        invalid_runtime_policy,
        match_modes,
        enforce_all_policies,
        enforce_action_actions,
        invalidated_cache,
        project_from_request,
        deny_across_groups,
        unbound_groups,
        docs_config_map,
        glob_and_regex,
        project_roles_and_tokens,
        role_depth,
        fine_grained,
        empty_subject,
    );

    /// The same cases, answered by Argo CD's own code: the oracle, built from argo-cd v3.6.2's Go
    /// module by `tests/fixtures/argocd-rbac/oracle/build.sh` (cached beside the e2e components),
    /// or the binary ARGOCD_RBAC_ORACLE names.
    #[test]
    fn argo_cd_agrees() {
        let oracle = match std::env::var("ARGOCD_RBAC_ORACLE") {
            Ok(oracle) => oracle,
            Err(_) => {
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/argocd-rbac/oracle/build.sh"
                );
                let built = Command::new("bash")
                    .arg(script)
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("bash runs");
                assert!(
                    built.status.success(),
                    "building the RBAC oracle failed: the test needs Go and its module proxy (README, End-to-end tests)"
                );
                String::from_utf8_lossy(&built.stdout).trim().to_string()
            }
        };
        let mut child = Command::new(oracle)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the oracle starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut failures = Vec::new();
        let mut asked = 0;
        for case in all_cases() {
            for query in &case.queries {
                // With inheritance, argocd-server asks twice: the parent action, then the given one.
                let mut actions = vec![query.action];
                if query.inheritance {
                    actions.insert(0, query.action.split('/').next().unwrap_or_default());
                }
                let mut allowed = false;
                for action in actions {
                    let line = oracle_query(&case.world, query, action).to_string();
                    writeln!(stdin, "{line}").expect("write");
                    let mut answer = String::new();
                    stdout.read_line(&mut answer).expect("read");
                    let answer: Value = serde_json::from_str(&answer).expect("JSON");
                    allowed |= answer["allowed"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("{}: the oracle answered {answer}", case.cite));
                    asked += 1;
                }
                if allowed != query.allowed {
                    failures.push(format!(
                        "{}: {} {:?} {} {} {}: expected {}, Argo CD says {allowed}",
                        case.cite,
                        query.subject,
                        query.groups,
                        query.resource,
                        query.action,
                        query.object,
                        query.allowed
                    ));
                }
            }
        }
        drop(stdin);
        let _ = child.wait();
        assert!(asked > 100);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn oracle_query(world: &World, query: &Query, action: &str) -> Value {
        let mut q = json!({
            "subject": query.subject,
            "groups": query.groups,
            "resource": query.resource,
            "action": action,
            "object": query.object,
            "defaultRole": world.default_role,
            "matchMode": if world.regex { "regex" } else { "" },
            "projects": world.projects.iter().map(|p| json!({
                "name": p.name,
                "roles": p.roles.iter().map(|r| json!({
                    "name": r.name, "policies": r.policies, "groups": r.groups,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        match world.builtin {
            Builtin::Argo => {}
            Builtin::None => q["noBuiltin"] = json!(true),
            Builtin::Custom(text) => q["builtin"] = json!(text),
        }
        match world.user {
            User::Csv(text) => q["policy"] = json!(text),
            User::ConfigMap(yaml) => {
                let cm: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
                q["configMap"] = cm["data"].clone();
                if !world.default_role.is_empty() {
                    q["configMap"]["policy.default"] = json!(world.default_role);
                }
            }
        }
        q
    }
}

// ---- the two match modes, against Go ----

/// `tests/fixtures/argocd-rbac/match-cases.json`: glob and regex patterns with the answers of
/// argo-cd v3.6.2's `util/glob.MatchWithError` (gobwas/glob v1.0.0) and Go's
/// `regexp.MatchString`, recorded by the oracle (SOURCES.md there).
#[test]
fn glob_and_regex_answer_as_go_does() {
    use guardrails::argocd::glob::Glob;
    use guardrails::argocd::regex::Regex;
    let text = include_str!("fixtures/argocd-rbac/match-cases.json");
    let cases: Vec<Value> = serde_json::from_str(text).expect("JSON");
    assert!(cases.len() > 900);
    let mut failures = Vec::new();
    for case in &cases {
        let subject = case["text"].as_str().unwrap_or_default();
        let go = match case.get("error").and_then(Value::as_str) {
            Some(error) => Err(error.to_string()),
            None => Ok(case["match"].as_bool().unwrap_or_default()),
        };
        let agrees = if let Some(pattern) = case["glob"].as_str() {
            let ours = Glob::compile(pattern)
                .map(|glob| glob.matches(subject))
                .map_err(|e| e.to_string());
            ours == go
        } else {
            // The regex crate's error messages are its own: a pattern must be refused (and
            // so deny) exactly when Go refuses it, and match exactly when Go's matches.
            let pattern = case["regex"].as_str().unwrap_or_default();
            let ours = Regex::new(pattern).map(|regex| regex.is_match(subject));
            match (&ours, &go) {
                (Ok(ours), Ok(go)) => ours == go,
                (Err(_), Err(_)) => true,
                _ => false,
            }
        };
        if !agrees {
            failures.push(format!("{case}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- the command ----

fn guardrails() -> Command {
    Command::cargo_bin("guardrails").expect("the binary")
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = guardrails().args(args).output().expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn can_prints_yes_or_no_and_exits_zero_either_way() {
    let rbac = repo("tests/fixtures/argocd/rbac/argocd-rbac-cm.yaml");
    let (ok, out, _) = run(&[
        "argocd",
        "can",
        "alice",
        "sync",
        "app",
        "my-project/guestbook",
        "--rbac",
        &rbac,
        "--groups",
        "my-org:team-beta",
    ]);
    assert!(ok);
    assert_eq!(out, "Yes\n");
    let (ok, out, _) = run(&[
        "argocd",
        "can",
        "alice",
        "sync",
        "applications",
        "my-project/guestbook",
        "--rbac",
        &rbac,
        "--groups",
        "my-org:team-alpha",
    ]);
    assert!(ok);
    assert_eq!(out, "No\n");
}

#[test]
fn explain_names_the_deciding_line_and_each_check() {
    let rbac = repo("tests/fixtures/argocd-rbac/policy.csv");
    let projects = repo("tests/fixtures/argocd-rbac/projects");
    let (ok, out, err) = run(&[
        "argocd",
        "can",
        "carol",
        "delete",
        "applications",
        "payments/api",
        "--rbac",
        &rbac,
        "--projects",
        &projects,
        "--groups",
        "payments-devs",
        "--groups",
        "unbound",
        "--explain",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "No");
    assert_eq!(
        lines[1],
        "deciding line: AppProject payments line 2: p, proj:payments:developers, applications, delete, payments/*, deny"
    );
    assert!(
        out.contains("group payments-devs (with AppProject payments's roles): denied by"),
        "{out}"
    );
    assert!(
        out.contains("note: group unbound is not evaluated"),
        "{out}"
    );

    let (ok, out, _) = run(&[
        "argocd",
        "can",
        "carol",
        "sync",
        "applications",
        "payments/api",
        "--rbac",
        &rbac,
        "--projects",
        &projects,
        "--groups",
        "payments-devs",
        "--explain",
    ]);
    assert!(ok);
    assert!(out.starts_with("Yes\ndeciding line: "), "{out}");
    assert!(
        out.contains("policy.csv line 2: p, role:developer, applications, *, */*, allow\n"),
        "{out}"
    );
    assert!(
        out.contains("policy.csv line 4: g, payments-devs, role:developer"),
        "{out}"
    );
}

#[test]
fn projects_tokens_and_default_object() {
    let rbac = repo("tests/fixtures/argocd-rbac/policy.csv");
    let projects = repo("tests/fixtures/argocd-rbac/projects/payments.yaml");
    let ask = |args: &[&str]| {
        let mut all = vec!["argocd", "can"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--rbac", &rbac, "--projects", &projects]);
        run(&all).1
    };
    assert_eq!(
        ask(&["proj:payments:ci", "sync", "applications", "payments/api"]),
        "Yes\n"
    );
    assert_eq!(
        ask(&["proj:payments:ci", "sync", "applications", "other/api"]),
        "No\n"
    );
    assert_eq!(
        ask(&["proj:payments:ci", "get", "projects", "payments"]),
        "Yes\n"
    );
    // No object for a project-scoped resource means */*, as in argocd admin settings rbac can.
    assert_eq!(ask(&["admin", "sync", "applications"]), "Yes\n");
}

#[test]
fn default_role_flag_overrides_and_clears_the_config_map() {
    let rbac = repo("tests/fixtures/argocd/rbac/argocd-rbac-cm.yaml");
    let base = [
        "argocd",
        "can",
        "nobody",
        "get",
        "applications",
        "p/a",
        "--rbac",
        &rbac,
    ];
    assert_eq!(run(&base).1, "Yes\n");
    let mut cleared = base.to_vec();
    cleared.extend_from_slice(&["--default-role", ""]);
    assert_eq!(run(&cleared).1, "No\n");
}

#[test]
fn fine_grained_inheritance_flag() {
    let rbac = repo("tests/fixtures/argocd-rbac/policy.csv");
    let base = [
        "argocd",
        "can",
        "u",
        "update/apps/Deployment/ns/web",
        "applications",
        "payments/api",
        "--rbac",
        &rbac,
        "--groups",
        "deployers",
    ];
    assert_eq!(run(&base).1, "No\n");
    let mut inheriting = base.to_vec();
    inheriting.push("--fine-grained-inheritance");
    assert_eq!(run(&inheriting).1, "Yes\n");
}

#[test]
fn bad_input_fails_with_the_line_or_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("policy.csv");
    std::fs::write(
        &bad,
        "p, role:x, applications, get, */*, allow\np, role:x, applications, get\ng, a, b, Allow\n",
    )
    .expect("write");
    let (ok, _, err) = run(&[
        "argocd",
        "can",
        "a",
        "get",
        "applications",
        "--rbac",
        bad.to_str().unwrap_or(""),
    ]);
    assert!(!ok);
    assert!(
        err.contains("policy.csv line 2: a p line has 6 fields"),
        "{err}"
    );
    assert!(
        err.contains("policy.csv line 3: a g line has 3 fields"),
        "{err}"
    );

    let rbac = repo("tests/fixtures/argocd-rbac/policy.csv");
    let (ok, _, err) = run(&["argocd", "can", "a", "get", "aplications", "--rbac", &rbac]);
    assert!(!ok);
    assert!(
        err.contains("'aplications' is not a valid resource name"),
        "{err}"
    );
    let (ok, out, _) = run(&[
        "argocd",
        "can",
        "a",
        "get",
        "aplications",
        "--rbac",
        &rbac,
        "--no-strict",
    ]);
    assert!(ok);
    assert_eq!(out, "No\n");
}

#[test]
fn a_group_given_as_subject_warns_when_no_g_line_binds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("policy.csv");
    std::fs::write(
        &csv,
        "p, some:group, logs, get, some-proj/some-app, allow\n",
    )
    .expect("write");
    let (ok, out, err) = run(&[
        "argocd",
        "can",
        "some:group",
        "get",
        "logs",
        "some-proj/some-app",
        "--rbac",
        csv.to_str().unwrap_or(""),
    ]);
    assert!(ok);
    assert_eq!(out, "Yes\n");
    assert!(err.contains("argocd-server ignores such grants"), "{err}");
}
