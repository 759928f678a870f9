//! Errors and diagnostics with file, line and column, and names policies use that the config does not know.

use std::fmt;
use std::path::PathBuf;

use cedar_policy::{PolicyId, PolicySet};
use miette::Diagnostic;

use super::PolicyStore;

/// One problem in one file, located for a person to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub policy_id: Option<String>,
    pub message: String,
}

impl PolicyDiagnostic {
    /// A problem with a file as a whole (missing, empty, unreadable): no line or column.
    pub fn whole_file(file: String, message: String) -> Self {
        Self {
            file,
            line: 0,
            column: 0,
            policy_id: None,
            message,
        }
    }
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(id) = &self.policy_id {
            write!(f, "policy {id}: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policies from {path}: {cause}")]
    Read {
        path: PathBuf,
        // Not a `source`: the message already says it (no repeat under `{:#}`).
        cause: std::io::Error,
    },
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<PolicyDiagnostic>),
    /// Some action can be denied to everyone because no permit policy can match it (Cedar denies
    /// whatever no permit allows): usually a removed `default.cedar`.
    #[error(
        "no permit policy can match {} (Cedar denies what no permit allows, so these are denied to \
         everyone, Argo CD's own writes included): {}. Restore a permit such as the shipped \
         default.cedar `permit (principal, action, resource);`, or, if denying by default is \
         deliberate, pass --allow-default-deny or set `allowDefaultDeny: true` in the config",
        if .0.len() == 1 { "this action" } else { "these actions" },
        .0.join(", ")
    )]
    DefaultDeny(Vec<String>),
}

pub(super) fn render_diagnostics(diagnostics: &[PolicyDiagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    format!(
        "{} policy error(s):\n  {}",
        diagnostics.len(),
        lines.join("\n  ")
    )
}

/// `Team::"x"` and `Environment::"x"` literals in policies that the config never defines: usually
/// a typo that makes a policy silently never match.
pub fn unknown_names(store: &PolicyStore, config: &crate::config::Config) -> Vec<String> {
    let file = &config.file;
    let environments: std::collections::BTreeSet<&str> = file
        .namespaces
        .values()
        .filter_map(|n| n.environment.as_deref())
        .chain(file.clusters.values().map(String::as_str))
        .collect();
    let mut found = Vec::new();
    for (id, meta) in &store.meta {
        let Some(policy) = store.policies.policy(id) else {
            continue;
        };
        let text = policy.to_string();
        for (entity_type, known) in [
            (
                "Team",
                file.teams.keys().map(String::as_str).collect::<Vec<_>>(),
            ),
            ("Environment", environments.iter().copied().collect()),
        ] {
            let marker = format!("{entity_type}::\"");
            for (start, _) in text.match_indices(&marker) {
                let rest = &text[start + marker.len()..];
                let name = rest.split('"').next().unwrap_or("");
                if known.contains(&name) {
                    continue;
                }
                // In an `unless`, a name that never matches exempts nobody: the policy then
                // applies to everyone else it matches, which is worse than never matching.
                let clause = ["when", "unless"]
                    .into_iter()
                    .filter_map(|keyword| {
                        text[..start]
                            .rfind(&format!("{keyword} {{"))
                            .map(|at| (at, keyword))
                    })
                    .max()
                    .map(|(_, keyword)| keyword);
                let effect = if clause == Some("unless") {
                    "so this `unless` exempts no one by it: the policy applies to everyone it matches"
                } else {
                    "so this never matches it"
                };
                let hint = super::load::did_you_mean(name, &known)
                    .map(|close| format!(" (did you mean {entity_type}::\"{close}\"?)"))
                    .unwrap_or_default();
                found.push(format!(
                    "{}:{}: policy {}: {entity_type}::\"{name}\" is not defined in the config, {effect}{hint}",
                    meta.file, meta.line, meta.id
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

pub(super) fn display_id(set: &PolicySet, id: &PolicyId, file: &str) -> String {
    set.policy(id)
        .and_then(|policy| policy.annotation("id"))
        .map(str::to_string)
        // Cedar's per-parse id ("policy3") as the name the loader gives it (`file#3`).
        .unwrap_or_else(|| {
            let id = id.to_string();
            match id.strip_prefix("policy") {
                Some(index) if index.chars().all(|c| c.is_ascii_digit()) => {
                    format!("{file}#{index}")
                }
                _ => format!("{file} {id}"),
            }
        })
}

/// Turn a Cedar diagnostic into file:line:column using its first labelled span.
/// Where `text` (the file `file`) fails to parse as Cedar policies, if it does.
pub fn parse_error(file: &str, text: &str) -> Option<PolicyDiagnostic> {
    use std::str::FromStr;
    PolicySet::from_str(text)
        .err()
        .map(|error| diagnostic_at(file, text, &error, None))
}

pub(super) fn diagnostic_at(
    file: &str,
    text: &str,
    error: &dyn Diagnostic,
    policy_id: Option<String>,
) -> PolicyDiagnostic {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((0, 0), |offset| line_column(text, offset));
    let mut message = error.to_string();
    // Cedar names the policy by its per-parse id; the diagnostic names it already.
    if policy_id.is_some()
        && let Some(rest) = message.strip_prefix("for policy `")
        && let Some((_, after)) = rest.split_once("`, ")
    {
        message = after.to_string();
    }
    if let Some(help) = error.help() {
        message.push_str(&format!(" (hint: {help})"));
    }
    PolicyDiagnostic {
        file: file.to_string(),
        line,
        column,
        policy_id,
        message,
    }
}

pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let prefix = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = prefix.matches('\n').count() + 1;
    let column = prefix
        .rfind('\n')
        .map_or(prefix.len(), |nl| prefix.len() - nl - 1)
        + 1;
    (line, column)
}
