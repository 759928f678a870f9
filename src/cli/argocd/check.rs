//! `guardrails argocd check`: where Argo CD's RBAC and Guardrails disagree, for every team member
//! and group in the config, every Application given, and every action that ends in a cluster write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use super::{RbacSource, load_rbac};
use crate::argocd::Request;
use crate::authoring::argocd_writes::{ARGOCD_SERVER, write_for};
use crate::authoring::synth::read_manifests;
use crate::decide::Engine;
use crate::respond;

/// Compare Argo CD's RBAC with Guardrails for every person and group the config's teams name,
/// every Application in --applications and the actions sync, update and delete: what the UI
/// allows and Guardrails denies (confusing), and person-less changes to production Guardrails
/// cannot attribute (holes).
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Application manifests: a file or a folder of *.yaml, *.yml, *.json.
    #[arg(long, value_name = "DIR|FILE")]
    applications: PathBuf,
    /// The namespace Argo CD runs in.
    #[arg(long, value_name = "NAMESPACE", default_value = "argocd")]
    argocd_namespace: String,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = crate::cli::OutputFormat::Text)]
    output: crate::cli::OutputFormat,
    /// Exit non-zero on findings of this kind or worse (`hole` only holes; `confusing` both).
    #[arg(long, value_enum)]
    fail_on: Option<Severity>,
    #[command(flatten)]
    rbac: RbacSource,
    #[command(flatten)]
    policy: crate::cli::PolicyArgs,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The UI allows what Guardrails then denies: a button that fails with another system's message.
    Confusing,
    /// The UI allows a person-less change to production that Guardrails cannot attribute to
    /// anyone: Argo CD's RBAC is the only gate.
    Hole,
}

#[derive(Debug, Serialize)]
struct Finding {
    severity: Severity,
    person: String,
    groups: Vec<String>,
    application: String,
    action: String,
    /// The RBAC line that allowed it.
    rbac_line: String,
    /// What Guardrails decided, and the policies that matched.
    guardrails: String,
    policies: Vec<String>,
}

/// A person as Argo CD and Guardrails see them: a configured user with their team's groups, or an
/// unnamed member of a group (whose name argocd-server writes, without the group).
struct Person {
    name: String,
    groups: Vec<String>,
}

fn people(engine: &Engine) -> Vec<Person> {
    let mut people = Vec::new();
    for team in engine.config.file.teams.values() {
        for user in &team.users {
            people.push(Person {
                name: user.clone(),
                groups: team.groups.clone(),
            });
        }
        for group in &team.groups {
            people.push(Person {
                name: format!("member-of:{group}"),
                groups: vec![group.clone()],
            });
        }
    }
    people
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let rbac = load_rbac(&args.rbac)?;
    let engine = crate::cli::load_engine(&args.policy)?;
    let lints = lints(&args.rbac, &rbac, &engine)?;
    let apps = manifests(&args.applications)?;
    let mut findings = Vec::new();
    let mut checked = 0usize;
    let people = people(&engine);
    for app in apps.iter().filter(|a| a["kind"] == "Application") {
        let object = super::rbac_object(app, &args.argocd_namespace);
        for person in &people {
            for action in ["sync", "update", "delete"] {
                checked += 1;
                let request = Request {
                    subject: &person.name,
                    groups: &person.groups,
                    resource: "applications",
                    action,
                    object: &object,
                };
                let argo = rbac.enforce(&request);
                if !argo.allowed {
                    continue;
                }
                if let Some(finding) = compare(&engine, app, person, action, &argo)? {
                    findings.push(finding);
                }
            }
        }
    }
    report(&findings, &lints, checked, args.output, &engine)?;
    if let Some(threshold) = args.fail_on
        && let Some(worst) = findings.iter().map(|f| f.severity).max()
        && worst >= threshold
    {
        bail!("{} finding(s) (--fail-on {threshold:?})", findings.len());
    }
    Ok(())
}

/// Every manifest in `path`: the file, or the *.yaml, *.yml and *.json files directly in it.
fn manifests(path: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    if !path.is_dir() {
        return read_manifests(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|file| {
            file.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        all.extend(read_manifests(&file)?);
    }
    Ok(all)
}

/// Guardrails on what argocd-server writes for an action Argo CD allowed; a finding when they
/// disagree or when a person-less change to production passes unattributed.
fn compare(
    engine: &Engine,
    app: &Value,
    person: &Person,
    action: &str,
    argo: &crate::argocd::Decision,
) -> anyhow::Result<Option<Finding>> {
    let write = write_for(action, app, &person.name, None, None).map_err(|m| anyhow::anyhow!(m))?;
    let body = serde_json::to_vec(&write.admission_review()?)?;
    let reviewed = respond::validate_review(engine, &body)?;
    let outcome = reviewed.outcome.as_ref();
    let allowed = reviewed.allowed();
    let principal = outcome
        .and_then(|o| o.identity.as_ref())
        .map_or("", |i| i.username.as_str());
    let prod = outcome
        .and_then(|o| o.placement.as_ref())
        .is_some_and(|p| p.landing().environments.iter().any(|e| e == "prod"));
    let severity = if !allowed {
        Severity::Confusing
    } else if principal == ARGOCD_SERVER && prod {
        Severity::Hole
    } else {
        return Ok(None);
    };
    Ok(Some(Finding {
        severity,
        person: person.name.clone(),
        groups: person.groups.clone(),
        application: app
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        action: action.to_string(),
        rbac_line: argo
            .deciding_line
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        guardrails: reviewed.verdict.to_string(),
        policies: {
            let mut ids: Vec<String> = outcome
                .map(|o| o.matches.iter().map(|m| m.policy.clone()).collect())
                .unwrap_or_default();
            ids.sort();
            ids.dedup();
            ids
        },
    }))
}

fn report(
    findings: &[Finding],
    lints: &[String],
    checked: usize,
    output: crate::cli::OutputFormat,
    engine: &Engine,
) -> anyhow::Result<()> {
    if output == crate::cli::OutputFormat::Json {
        let report = serde_json::json!({
            "checked": checked,
            "findings": findings,
            "lints": lints,
            "policies": engine.policies.source,
            "policyHash": engine.policies.hash,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut grouped: BTreeMap<(Severity, &str, &str), Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        grouped
            .entry((
                finding.severity,
                finding.action.as_str(),
                finding.rbac_line.as_str(),
            ))
            .or_default()
            .push(finding);
    }
    outln!(
        "{checked} (person, Application, action) checked, {} finding(s)",
        findings.len()
    );
    for ((severity, action, line), group) in grouped.iter().rev() {
        let what = match severity {
            Severity::Hole => {
                "HOLE: the UI allows a person-less change to production that Guardrails decides as argocd-server"
            }
            Severity::Confusing => "CONFUSING: the UI allows what Guardrails denies",
        };
        outln!(
            "{what} — {action} ({} case(s)), allowed by {line}",
            group.len()
        );
        for finding in group.iter().take(5) {
            outln!(
                "  {} on {}: Guardrails {} {}",
                finding.person,
                finding.application,
                finding.guardrails,
                finding.policies.join(", ")
            );
        }
        if group.len() > 5 {
            outln!("  … and {} more", group.len() - 5);
        }
    }
    for lint in lints {
        outln!("LINT: {lint}");
    }
    outln!("{}", crate::cli::policy_set_line(&engine.policies));
    Ok(())
}

/// What the RBAC files hold that is probably a mistake, whoever the people are.
fn lints(
    source: &RbacSource,
    rbac: &crate::argocd::Rbac,
    engine: &Engine,
) -> anyhow::Result<Vec<String>> {
    let origin = source.rbac.display().to_string();
    let text =
        std::fs::read_to_string(&source.rbac).with_context(|| format!("cannot read {origin}"))?;
    let config = crate::argocd::parse_rbac(&text, &origin)?;
    let policy = &config.policy;
    let config_groups: Vec<&str> = engine
        .config
        .file
        .teams
        .values()
        .flat_map(|team| team.groups.iter().map(String::as_str))
        .collect();
    let bound = |name: &str| policy.groupings.iter().any(|g| g.member == name);
    let mut lints = Vec::new();
    for permission in &policy.permissions {
        let subject = permission.subject.as_str();
        let special = subject.starts_with("role:") || subject.starts_with("proj:");
        let group = config_groups.contains(&subject) || (subject.contains(':') && !special);
        if group && !bound(subject) {
            lints.push(format!(
                "{}: a `p` line for the group {subject} with no `g, {subject}, role:…` line: \
                 argocd-server never evaluates it for the group's members (argo-cd#7952)",
                permission.at
            ));
        }
        let held_by_groups = !special && group
            || policy.groupings.iter().any(|g| {
                g.role == subject
                    && (config_groups.contains(&g.member.as_str()) || g.member.contains(':'))
            });
        if permission.effect == crate::argocd::Effect::Deny && held_by_groups {
            lints.push(format!(
                "{}: a deny held through a group does not stop an allow another of the person's \
                 groups gives: argocd-server checks each group alone (argo-cd#17547)",
                permission.at
            ));
        }
    }
    if !rbac.default_role().is_empty() {
        for action in ["sync", "update", "delete"] {
            let request = Request {
                subject: "",
                groups: &[],
                resource: "applications",
                action,
                object: "*/*",
            };
            if rbac.enforce(&request).allowed {
                lints.push(format!(
                    "policy.default ({}) allows `{action}` on Applications to everyone who signs in",
                    rbac.default_role()
                ));
            }
        }
    }
    Ok(lints)
}
