//! `guardrails argocd`: Argo CD's own RBAC, offline. `can` answers one request the way
//! argocd-server v3.6.2 would; `explain` (its own file) puts it beside Guardrails' decision.

mod check;
mod explain;
mod generate;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::argocd::request::{default_object, resolve_resource, validate_resource_action};
use crate::argocd::{Decision, Policy, Rbac, Request, builtin_policy, parse_projects, parse_rbac};

/// Argo CD's own RBAC, offline.
#[derive(Debug, clap::Args)]
pub struct ArgocdArgs {
    #[command(subcommand)]
    command: ArgocdCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ArgocdCommand {
    Can(CanArgs),
    Explain(explain::ExplainArgs),
    Check(check::CheckArgs),
    Generate(generate::GenerateArgs),
}

/// Where Argo CD's RBAC comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct RbacSource {
    /// The argocd-rbac-cm ConfigMap (YAML) or a policy.csv.
    #[arg(long, value_name = "FILE")]
    rbac: PathBuf,
    /// AppProject manifests (YAML or JSON): a file, or a directory of *.yaml, *.yml, *.json.
    #[arg(long, value_name = "DIR|FILE")]
    projects: Option<PathBuf>,
    /// Use this default role instead of the ConfigMap's policy.default ("" for none).
    #[arg(long, value_name = "ROLE")]
    default_role: Option<String>,
    /// Leave out Argo CD's built-in policy (role:readonly, role:admin).
    #[arg(long)]
    no_builtin_policy: bool,
}

/// Whether Argo CD's RBAC allows SUBJECT (with --groups) to ACTION the RESOURCE OBJECT, as
/// argocd-server decides it: prints Yes or No and exits 0 either way.
#[derive(Debug, clap::Args)]
pub struct CanArgs {
    /// The user (the token's subject), a role, or a project token `proj:<project>:<role>`.
    subject: String,
    /// get, create, update, delete, sync, override, rollback, invoke, action/<group>/<kind>/<name>,
    /// update/<group>/<kind>/<namespace>/<name>, …
    action: String,
    /// applications, applicationsets, projects, clusters, repositories, write-repositories, logs,
    /// exec, certificates, gpgkeys, accounts, extensions (or argocd's aliases: app, proj, repo, …).
    resource: String,
    /// `<project>/<name>` (or `<project>/<namespace>/<name>`) for project-scoped resources,
    /// else the name [default for project-scoped resources: */*].
    object: Option<String>,
    #[command(flatten)]
    rbac: RbacSource,
    /// A group of the user (a value of the token's `scopes` claims); repeat for more.
    #[arg(long = "groups", value_name = "GROUP")]
    groups: Vec<String>,
    /// Also print the deciding policy line and every check made.
    #[arg(long)]
    explain: bool,
    /// For update/… and delete/… on applications, let the Application's own update/delete cover
    /// its resources (argocd-cm server.rbac.disableApplicationFineGrainedRBACInheritance: "false").
    #[arg(long)]
    fine_grained_inheritance: bool,
    /// Accept resource and action names argocd does not know.
    #[arg(long)]
    no_strict: bool,
}

pub fn run(args: ArgocdArgs) -> anyhow::Result<()> {
    match args.command {
        ArgocdCommand::Can(args) => can(args),
        ArgocdCommand::Explain(args) => explain::run(args),
        ArgocdCommand::Check(args) => check::run(args),
        ArgocdCommand::Generate(args) => generate::run(args),
    }
}

fn can(args: CanArgs) -> anyhow::Result<()> {
    let rbac = load_rbac(&args.rbac)?;
    let resource = resolve_resource(&args.resource);
    if !args.no_strict {
        validate_resource_action(resource, &args.action)
            .map_err(|message| anyhow::anyhow!("{message} (--no-strict to check it anyway)"))?;
    }
    let object = default_object(resource, args.object.as_deref());
    let request = Request {
        subject: &args.subject,
        groups: &args.groups,
        resource,
        action: &args.action,
        object: &object,
    };
    for warning in rbac.warnings() {
        eprintln!("warning: {warning}");
    }
    let decision = rbac.enforce_inheriting(&request, args.fine_grained_inheritance);
    if let Some(warning) = unbound_group_warning(&rbac, &request, &decision) {
        eprintln!("warning: {warning}");
    }
    outln!("{}", if decision.allowed { "Yes" } else { "No" });
    if args.explain {
        explain(&rbac, &request, &decision)?;
    }
    Ok(())
}

pub(super) fn load_rbac(args: &RbacSource) -> anyhow::Result<Rbac> {
    let origin = args.rbac.display().to_string();
    let text =
        std::fs::read_to_string(&args.rbac).with_context(|| format!("cannot read {origin}"))?;
    let config = parse_rbac(&text, &origin)?;
    let builtin = if args.no_builtin_policy {
        Policy::default()
    } else {
        builtin_policy()?
    };
    let mut projects = Vec::new();
    if let Some(path) = &args.projects {
        for file in project_files(path)? {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {origin}"))?;
            projects.extend(parse_projects(&text, &origin)?);
        }
    }
    let mut rbac = Rbac::new(builtin, config, projects)?;
    if let Some(role) = &args.default_role {
        rbac.set_default_role(role);
    }
    Ok(rbac)
}

/// `path` itself, or the YAML and JSON files directly in it, by name.
fn project_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let file = entry
            .with_context(|| format!("cannot read {}", path.display()))?
            .path();
        let wanted = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if wanted && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        bail!("{} holds no *.yaml, *.yml or *.json file", path.display());
    }
    files.sort();
    Ok(files)
}

/// `warnIfUnenforcedGroupGrant`: SUBJECT looks like an SSO group and is granted directly, but no
/// `g` line binds it, so argocd-server would never evaluate it for a member of the group.
fn unbound_group_warning(rbac: &Rbac, request: &Request, decision: &Decision) -> Option<String> {
    let subject = request.subject;
    let looks_like_group = subject.contains(':')
        && !subject.starts_with("role:")
        && crate::argocd::enforce::project_subject(subject).is_none();
    (decision.allowed
        && looks_like_group
        && rbac.grants_directly(request)
        && !rbac.binds(subject))
    .then(|| {
        format!(
            "{subject} looks like a group with a grant of its own but no `g, {subject}, role:…` \
             line: argocd-server ignores such grants for the group's members. To check a member, \
             give the user as SUBJECT and --groups {subject}"
        )
    })
}

fn explain(rbac: &Rbac, request: &Request, decision: &Decision) -> anyhow::Result<()> {
    match &decision.deciding_line {
        Some(line) => outln!("deciding line: {line}"),
        None if decision.allowed => outln!("deciding line: none"),
        None => outln!("deciding line: none (no policy line allows it)"),
    }
    outln!(
        "request: {}, {}, {}, {}{}",
        request.subject,
        request.resource,
        request.action,
        request.object,
        if request.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups: {})", request.groups.join(", "))
        }
    );
    let mode = match rbac.match_mode() {
        crate::argocd::MatchMode::Glob => "glob",
        crate::argocd::MatchMode::Regex => "regex",
    };
    outln!(
        "match mode: {mode}; default role: {}; groups come from the claims: {}",
        if rbac.default_role().is_empty() {
            "none"
        } else {
            rbac.default_role()
        },
        rbac.scopes().join(", ")
    );
    for line in decision.explanation().lines() {
        outln!("{line}");
    }
    Ok(())
}

/// `<project>/<name>`, or `<project>/<namespace>/<name>` outside Argo CD's namespace.
pub(super) fn rbac_object(app: &Value, argocd_namespace: &str) -> String {
    let field = |pointer: &str| app.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let project = match field("/spec/project") {
        "" => "default",
        project => project,
    };
    let (name, namespace) = (field("/metadata/name"), field("/metadata/namespace"));
    if namespace.is_empty() || namespace == argocd_namespace {
        format!("{project}/{name}")
    } else {
        format!("{project}/{namespace}/{name}")
    }
}
