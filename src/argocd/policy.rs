//! Policy lines as Argo CD loads them (`util/rbac/rbac.go`, `argocdAdapter.LoadPolicy` and
//! `loadPolicyLine`): the text is split on `\n`, each line trimmed; empty lines and lines starting
//! with `#` are skipped; the rest is read with Go's `encoding/csv` (`TrimLeadingSpace`, so quotes
//! work and a field keeps its trailing spaces). A `p` line has 6 fields, a `g` line 3; any other
//! first field but `r`, `e` and `m` (which the model accepts and never reads) is refused.
//!
//! Stricter than Argo CD: an effect other than `allow` or `deny` is an error here, with its line;
//! casbin loads such a line and it never takes effect. In AppProject roles (see
//! `Policy::parse_lenient`) it is a warning instead, and the line is kept as never matching.

use std::fmt;

/// Where a policy line comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// argo-cd's `assets/builtin-policy.csv`.
    Builtin,
    /// A key of `argocd-rbac-cm` (`policy.csv`, `policy.<name>.csv`) or a CSV file.
    Rbac(String),
    /// The policy Argo CD generates from an AppProject's roles (`ProjectPoliciesString`).
    Project(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin-policy.csv"),
            Source::Rbac(name) => f.write_str(name),
            Source::Project(name) => write!(f, "AppProject {name}"),
        }
    }
}

/// One line of a policy: its source, 1-based line number and text (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub source: Source,
    pub line: usize,
    pub text: String,
}

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.source, self.line, self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
    /// Any other value (only kept from AppProject roles): casbin's "indeterminate", never
    /// allowing or denying.
    Other(String),
}

/// `p, subject, resource, action, object, effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub subject: String,
    pub resource: String,
    pub action: String,
    pub object: String,
    pub effect: Effect,
    pub at: LineRef,
}

/// `g, member, role`: `member` has every permission of `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub member: String,
    pub role: String,
    pub at: LineRef,
}

/// The lines of one or more sources, in load order (the order casbin evaluates them in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub groupings: Vec<Grouping>,
    /// `r`, `e` and `m` lines: accepted by Argo CD's loader, never used.
    pub ignored: Vec<LineRef>,
    /// Effects other than `allow`/`deny` kept by `parse_lenient`.
    pub warnings: Vec<String>,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Go's `encoding/csv` refuses the line.
    Csv(&'static str),
    /// The first field is empty.
    NoType,
    /// A `p` line without 6 fields or a `g` line without 3.
    FieldCount {
        kind: &'static str,
        expected: usize,
        found: usize,
    },
    /// The first field is not `p` or `g` (nor `r`, `e`, `m`).
    UnknownType(String),
    /// Not `allow` or `deny`: refused here, though Argo CD loads it.
    UnknownEffect(String),
}

impl Problem {
    /// Whether Argo CD itself refuses the policy for it (then the whole policy fails to load).
    pub fn refused_by_argocd(&self) -> bool {
        !matches!(self, Problem::UnknownEffect(_))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Csv(message) => write!(f, "not a CSV line: {message}"),
            Problem::NoType => f.write_str("the first field (p or g) is empty"),
            Problem::FieldCount {
                kind,
                expected,
                found,
            } => write!(
                f,
                "a {kind} line has {expected} fields ({}), this one has {found}",
                if *kind == "p" {
                    "p, subject, resource, action, object, effect"
                } else {
                    "g, member, role"
                }
            ),
            Problem::UnknownType(kind) => {
                write!(f, "unknown line type {kind:?}: expected p or g")
            }
            Problem::UnknownEffect(effect) => write!(
                f,
                "unknown effect {effect:?}: expected allow or deny (Argo CD would load the line \
                 and it would never take effect)"
            ),
        }
    }
}

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub at: LineRef,
    pub problem: Problem,
}

/// Every bad line of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<LineProblem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{} line {}: {}: {}",
                problem.at.source, problem.at.line, problem.problem, problem.at.text
            )?;
        }
        Ok(())
    }
}

impl Policy {
    /// Parse a policy; any bad line (an unknown effect included) is an error.
    pub fn parse(text: &str, source: Source) -> Result<Policy, PolicyError> {
        Self::parse_with(text, source, true)
    }

    /// Parse a policy, keeping a line with an unknown effect as never matching (with a warning),
    /// as Argo CD does: for AppProject roles, whose lines the API server checks but a manifest
    /// applied with kubectl may still carry.
    pub fn parse_lenient(text: &str, source: Source) -> Result<Policy, PolicyError> {
        Self::parse_with(text, source, false)
    }

    fn parse_with(text: &str, source: Source, strict: bool) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        let mut problems = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = LineRef {
                source: source.clone(),
                line: index + 1,
                text: line.to_string(),
            };
            match parse_line(line) {
                Ok(Line::Permission([subject, resource, action, object, effect])) => {
                    let effect = match effect.as_str() {
                        "allow" => Effect::Allow,
                        "deny" => Effect::Deny,
                        other if strict => {
                            problems.push(LineProblem {
                                at,
                                problem: Problem::UnknownEffect(other.to_string()),
                            });
                            continue;
                        }
                        other => {
                            policy.warnings.push(format!(
                                "{at}: unknown effect {other:?}: the line never takes effect"
                            ));
                            Effect::Other(other.to_string())
                        }
                    };
                    policy.permissions.push(Permission {
                        subject,
                        resource,
                        action,
                        object,
                        effect,
                        at,
                    });
                }
                Ok(Line::Grouping(member, role)) => {
                    policy.groupings.push(Grouping { member, role, at })
                }
                Ok(Line::Ignored) => policy.ignored.push(at),
                Err(problem) => problems.push(LineProblem { at, problem }),
            }
        }
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError { problems })
        }
    }

    /// This policy's lines followed by `other`'s.
    pub fn extend(&mut self, other: Policy) {
        self.permissions.extend(other.permissions);
        self.groupings.extend(other.groupings);
        self.ignored.extend(other.ignored);
        self.warnings.extend(other.warnings);
    }
}

enum Line {
    /// The five fields after `p`.
    Permission([String; 5]),
    Grouping(String, String),
    Ignored,
}

/// `loadPolicyLine` for a trimmed, non-empty, non-comment line.
fn parse_line(line: &str) -> Result<Line, Problem> {
    let mut fields = split_csv(line)?;
    let kind = fields.first().cloned().unwrap_or_default();
    match kind.as_str() {
        "" => Err(Problem::NoType),
        "g" if fields.len() != 3 => Err(Problem::FieldCount {
            kind: "g",
            expected: 3,
            found: fields.len(),
        }),
        "p" => {
            let found = fields.len();
            let fields: [String; 5] =
                fields
                    .split_off(1)
                    .try_into()
                    .map_err(|_| Problem::FieldCount {
                        kind: "p",
                        expected: 6,
                        found,
                    })?;
            Ok(Line::Permission(fields))
        }
        "g" => {
            let role = fields.pop().unwrap_or_default();
            let member = fields.pop().unwrap_or_default();
            Ok(Line::Grouping(member, role))
        }
        // The model's other sections: casbin's loader files the line away unused.
        "r" | "e" | "m" => Ok(Line::Ignored),
        _ => Err(Problem::UnknownType(kind)),
    }
}

/// One record of Go's `encoding/csv` reader with `TrimLeadingSpace` over a single line (Argo CD
/// reads each line on its own, so a quoted field cannot span lines).
pub(crate) fn split_csv(line: &str) -> Result<Vec<String>, Problem> {
    let mut fields = Vec::new();
    let mut rest = line;
    'field: loop {
        rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut inner = quoted;
            loop {
                let Some(end) = inner.find('"') else {
                    return Err(Problem::Csv("extraneous or missing \" in quoted-field"));
                };
                value.push_str(&inner[..end]);
                inner = &inner[end + 1..];
                match inner.chars().next() {
                    Some('"') => {
                        value.push('"');
                        inner = &inner[1..];
                    }
                    Some(',') => {
                        fields.push(value);
                        rest = &inner[1..];
                        continue 'field;
                    }
                    None => {
                        fields.push(value);
                        break 'field;
                    }
                    Some(_) => {
                        return Err(Problem::Csv("extraneous or missing \" in quoted-field"));
                    }
                }
            }
        }
        let (field, more) = match rest.find(',') {
            Some(comma) => (&rest[..comma], Some(&rest[comma + 1..])),
            None => (rest, None),
        };
        if field.contains('"') {
            return Err(Problem::Csv("bare \" in non-quoted-field"));
        }
        fields.push(field.to_string());
        match more {
            Some(more) => rest = more,
            None => break,
        }
    }
    Ok(fields)
}

#[cfg(test)]
#[path = "../unit_tests/argocd_policy_tests.rs"]
mod tests;
