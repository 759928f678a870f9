//! A generated but realistic policy set for benchmarks: `teams` teams, each with 20 rules over
//! actions, environments, namespaces, labels (tags) and context, plus a config that defines
//! every team, group and namespace they name. Used by `benches/decide.rs` (the policy-count
//! curve) and `examples/bench_inputs.rs` (files for `guardrails serve` in
//! `scripts/bench-floor.sh`).
#![allow(dead_code)]

/// Rules per team.
pub const RULES_PER_TEAM: usize = 20;

/// Team `index`'s name: `t00`, `t01`, … (`t0000`… past 100 teams, so names stay sortable).
pub fn team(index: usize, teams: usize) -> String {
    if teams <= 100 {
        format!("t{index:02}")
    } else {
        format!("t{index:04}")
    }
}

/// The 20 rules of one team, in Cedar. Scopes mix what slicing can narrow (one action, one
/// resource type, one namespace) with what it cannot (`in Environment::"prod"` plus a `when` on
/// the team, `action in Action::"write"`).
pub fn team_rules(t: &str) -> [String; RULES_PER_TEAM] {
    [
        format!(
            r#"@id("{t}-prod-deploy-leads")
@reason("Deploying {t}'s production Applications by hand is for its leads.")
forbid (principal, action in [Action::"sync", Action::"rollback", Action::"override"], resource in Namespace::"{t}-prod")
unless {{ principal in Group::"{t}-leads" || principal.automation || context.sync.dryRun }};"#
        ),
        format!(
            r#"@id("{t}-staging-no-force")
@reason("Force-syncing {t}'s staging is for the team itself.")
forbid (principal, action == Action::"sync", resource in Namespace::"{t}-staging")
when {{ context.sync.force && !(principal in Team::"{t}") }};"#
        ),
        format!(
            r#"@id("{t}-prod-replicas")
@reason("{t}'s production workloads run 2 to 50 replicas.")
forbid (principal, action == Action::"scale", resource in Namespace::"{t}-prod")
when {{ context.newReplicas > 50 || (context.newReplicas >= 0 && context.newReplicas < 2) }}
unless {{ principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-critical-delete")
@reason("Critical Deployments of {t} are deleted by its leads.")
forbid (principal, action == Action::"delete", resource is Deployment in Namespace::"{t}-prod")
when {{ resource.hasTag("tier") && resource.getTag("tier") == "critical" }}
unless {{ principal in Group::"{t}-leads" || principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-images")
@reason("Images of {t}'s production workloads are changed by {t}.")
forbid (principal, action == Action::"change-image", resource in Environment::"prod")
when {{ resource has team && resource.team == Team::"{t}" && !(principal in Team::"{t}") && !principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-restart")
@enforcement("warn")
@reason("Restarting {t}'s production workloads: tell #{t}.")
forbid (principal, action == Action::"restart", resource in Namespace::"{t}-prod")
unless {{ principal in Team::"{t}" || principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-autosync-prune")
@reason("Auto-sync with prune on {t}'s production Applications is for its leads.")
forbid (principal, action == Action::"enable-auto-sync", resource is Application in Namespace::"{t}-prod")
when {{ context.autoSync.prune }}
unless {{ principal in Group::"{t}-leads" || principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-rollout-pause")
@reason("Pausing or resuming {t}'s production Rollouts is for {t}.")
forbid (principal, action in [Action::"pause", Action::"resume"], resource is Rollout in Namespace::"{t}-prod")
unless {{ principal in Team::"{t}" || principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-promote-full")
@reason("Skipping {t}'s canary steps in production is for its leads.")
forbid (principal, action == Action::"promote-full", resource is Rollout in Namespace::"{t}-prod")
unless {{ principal in Group::"{t}-leads" || principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-frozen")
@reason("This {t} workload is labelled frozen.")
forbid (principal, action == Action::"update", resource in Namespace::"{t}-prod")
when {{ resource.hasTag("guardrails.io/frozen") && resource.getTag("guardrails.io/frozen") == "true" }}
unless {{ principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-dev-cascade-delete")
@reason("Deleting {t}'s dev Applications with their resources is for {t}.")
forbid (principal, action == Action::"delete", resource is Application in Namespace::"{t}-dev")
when {{ context.cascade && !(principal in Team::"{t}") }};"#
        ),
        format!(
            r#"@id("{t}-leave-prod")
@reason("Moving an Application out of {t}-prod is for {t}'s leads.")
forbid (principal, action == Action::"retarget", resource is Application)
when {{ resource has previousNamespace && resource.previousNamespace == "{t}-prod" && !(principal in Group::"{t}-leads") }};"#
        ),
        format!(
            r#"@id("{t}-hotfix-audit")
@enforcement("audit")
@reason("Hotfix revision synced into {t}-prod.")
forbid (principal, action == Action::"sync", resource in Namespace::"{t}-prod")
when {{ context.sync.revision like "hotfix-*" }};"#
        ),
        format!(
            r#"@id("{t}-prod-replace")
@reason("Replace=true recreates {t}'s production resources; ask its leads.")
forbid (principal, action in [Action::"sync", Action::"override"], resource in Namespace::"{t}-prod")
when {{ context.sync.syncOptions.contains("Replace=true") }}
unless {{ principal in Group::"{t}-leads" }};"#
        ),
        format!(
            r#"@id("{t}-prod-labelled")
@reason("{t}'s production Deployments carry app.kubernetes.io/name.")
forbid (principal, action == Action::"create", resource is Deployment in Namespace::"{t}-prod")
when {{ !resource.hasTag("app.kubernetes.io/name") }}
unless {{ principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-staging-local")
@reason("Local manifests into {t}'s staging are for {t}.")
forbid (principal, action == Action::"override", resource in Environment::"staging")
when {{ resource has team && resource.team == Team::"{t}" && context.sync.localManifests && !(principal in Team::"{t}") }};"#
        ),
        format!(
            r#"@id("{t}-prod-abort-delegated")
@reason("Aborting {t}'s production Rollouts through Argo CD is for {t}.")
forbid (principal, action == Action::"abort", resource is Rollout in Namespace::"{t}-prod")
when {{ context.delegated && !(principal in Team::"{t}") }};"#
        ),
        format!(
            r#"@id("{t}-dev-deploy")
@reason("{t} deploys its dev namespace.")
permit (principal in Team::"{t}", action in Action::"deploy", resource in Namespace::"{t}-dev");"#
        ),
        format!(
            r#"@id("{t}-prod-foreign-sa")
@reason("Service accounts from outside {t}-prod do not write there.")
forbid (principal is ServiceAccount, action in Action::"write", resource in Namespace::"{t}-prod")
when {{ principal.namespace != "{t}-prod" && !principal.automation }};"#
        ),
        format!(
            r#"@id("{t}-prod-disable-autosync")
@enforcement("warn")
@reason("Turning off auto-sync of {t}'s production Applications: tell #{t}.")
forbid (principal, action == Action::"disable-auto-sync", resource in Namespace::"{t}-prod")
unless {{ principal in Team::"{t}" || principal.automation }};"#
        ),
    ]
}

/// `count` generated policies (whole teams first, the last team cut short), one `.cedar` text.
pub fn policies(count: usize) -> String {
    let teams = count.div_ceil(RULES_PER_TEAM);
    let mut out = String::new();
    let mut left = count;
    for index in 0..teams {
        let name = team(index, teams);
        for rule in team_rules(&name).into_iter().take(left) {
            out.push_str(&rule);
            out.push_str("\n\n");
            left -= 1;
        }
    }
    out
}

/// The example config (`config/guardrails.yaml`) plus the generated teams: group `<t>-devs`,
/// leads group `<t>-leads`, one named developer `dev@<t>.example.com`, and namespaces
/// `<t>-dev`, `<t>-staging` and `<t>-prod` in the matching environments.
pub fn config(count: usize) -> String {
    let teams = count.div_ceil(RULES_PER_TEAM);
    let mut team_lines = String::new();
    let mut namespace_lines = String::new();
    for index in 0..teams {
        let t = team(index, teams);
        team_lines.push_str(&format!(
            "  {t}:\n    groups: [{t}-devs, {t}-leads]\n    users: [dev@{t}.example.com]\n"
        ));
        for env in ["dev", "staging", "prod"] {
            namespace_lines.push_str(&format!(
                "  {t}-{env}: {{ team: {t}, environment: {env} }}\n"
            ));
        }
    }
    let example = include_str!("../../config/guardrails.yaml");
    example
        .replacen("\nteams:\n", &format!("\nteams:\n{team_lines}"), 1)
        .replacen(
            "\nnamespaces:\n",
            &format!("\nnamespaces:\n{namespace_lines}"),
            1,
        )
}

/// The generated policies as a policy directory's sources: the shipped schema and policies
/// plus `generated.cedar`.
pub fn sources(count: usize) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = guardrails::policy::EMBEDDED_POLICIES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    if count > 0 {
        files.push(("generated.cedar".into(), policies(count)));
    }
    files
}
