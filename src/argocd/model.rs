//! One casbin enforcement with Argo CD's model (`assets/model.conf`):
//!
//! ```text
//! m = g(r.sub, p.sub) && globOrRegexMatch(r.res, p.res) && globOrRegexMatch(r.act, p.act)
//!     && globOrRegexMatch(r.obj, p.obj)
//! e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
//! ```
//!
//! as casbin v2.135.0 evaluates it (`enforcer.go`, `effector/default_effector.go`): the `p` lines
//! in load order; a matching `deny` ends the evaluation (denied), a matching `allow` is noted and
//! the evaluation goes on, looking for a deny. `g(a, b)` holds when `a == b` or `b` is reachable
//! from `a` through `g` lines in at most 10 steps (the default role manager's
//! `maxHierarchyLevel`). The terms are evaluated left to right and stop at the first false one,
//! so a pattern is only tried when the terms before it hold: that matters in regex mode, where
//! an invalid pattern reached makes the whole enforcement fail (casbin recovers the panic of
//! `regexp.MustCompile` and returns an error, which Argo CD takes as "denied").

use std::collections::{HashMap, HashSet};

use super::config_map::MatchMode;
use super::glob::{Glob, GlobError};
use super::policy::{Effect, LineRef, Policy};
use super::regex::{Regex, RegexError};

/// casbin's default role manager follows at most this many `g` links.
pub const MAX_HIERARCHY_LEVEL: usize = 10;

/// A `res`, `act` or `obj` pattern, compiled once for the match mode.
#[derive(Debug, Clone)]
enum Pattern {
    Glob(Result<Glob, GlobError>),
    Regex(Result<Regex, RegexError>),
}

impl Pattern {
    fn new(text: &str, mode: MatchMode) -> Self {
        match mode {
            MatchMode::Glob => Pattern::Glob(Glob::compile(text)),
            MatchMode::Regex => Pattern::Regex(Regex::new(text)),
        }
    }

    /// `globMatchFunc` logs an invalid glob and answers false; `RegexMatch` panics.
    fn matches(&self, text: &str) -> Result<bool, String> {
        match self {
            Pattern::Glob(Ok(glob)) => Ok(glob.matches(text)),
            Pattern::Glob(Err(_)) => Ok(false),
            Pattern::Regex(Ok(regex)) => Ok(regex.is_match(text)),
            Pattern::Regex(Err(error)) => Err(error.to_string()),
        }
    }

    fn problem(&self) -> Option<String> {
        match self {
            Pattern::Glob(Err(error)) => Some(error.to_string()),
            Pattern::Regex(Err(error)) => Some(error.to_string()),
            _ => None,
        }
    }
}

/// A policy with its patterns compiled.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub policy: Policy,
    mode: MatchMode,
    /// `[res, act, obj]` for each of `policy.permissions`.
    patterns: Vec<[Pattern; 3]>,
}

impl CompiledPolicy {
    pub fn new(policy: Policy, mode: MatchMode) -> Self {
        let patterns = policy
            .permissions
            .iter()
            .map(|p| {
                [
                    Pattern::new(&p.resource, mode),
                    Pattern::new(&p.action, mode),
                    Pattern::new(&p.object, mode),
                ]
            })
            .collect();
        CompiledPolicy {
            policy,
            mode,
            patterns,
        }
    }

    /// The patterns that do not compile, and what Argo CD makes of them.
    pub fn pattern_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (permission, patterns) in self.policy.permissions.iter().zip(&self.patterns) {
            for pattern in patterns {
                if let Some(problem) = pattern.problem() {
                    let consequence = match pattern {
                        Pattern::Glob(_) => "the pattern never matches",
                        Pattern::Regex(_) => {
                            "any request that reaches this line is denied, whatever else allows it"
                        }
                    };
                    warnings.push(format!("{}: {problem}: {consequence}", permission.at));
                }
            }
        }
        warnings
    }
}

/// A `p` line that matched, and the `g` lines leading from the checked subject to its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub line: LineRef,
    pub via: Vec<LineRef>,
}

/// The answer of one enforcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Some `allow` matched and no `deny`: the first `allow`.
    Allow(Matched),
    /// A `deny` matched: the first one.
    Deny(Matched),
    /// Nothing matched.
    NoMatch,
    /// An invalid regex was reached at this line: denied.
    Error { line: LineRef, message: String },
    /// No `p` line is loaded at all: casbin then evaluates the matcher once with every `p` field
    /// empty, and it held (`g(sub, "")`, and a regex `""` matches anything).
    AllowWithoutLines { via: Vec<LineRef> },
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        matches!(self, Outcome::Allow(_) | Outcome::AllowWithoutLines { .. })
    }
}

/// The policies of one casbin enforcer: built-in, user-defined and (for a request about a
/// project) the project's, in that order.
pub struct Enforcer<'a> {
    parts: Vec<&'a CompiledPolicy>,
    mode: MatchMode,
    /// member -> (role, the `g` line), in load order.
    roles: HashMap<&'a str, Vec<(&'a str, &'a LineRef)>>,
}

impl<'a> Enforcer<'a> {
    pub fn new(parts: Vec<&'a CompiledPolicy>) -> Self {
        let mut roles: HashMap<&str, Vec<(&str, &LineRef)>> = HashMap::new();
        for part in &parts {
            for grouping in &part.policy.groupings {
                roles
                    .entry(grouping.member.as_str())
                    .or_default()
                    .push((grouping.role.as_str(), &grouping.at));
            }
        }
        let mode = parts.first().map(|part| part.mode).unwrap_or_default();
        Enforcer { parts, mode, roles }
    }

    /// Whether some `g` line names `name` as its member (`GetGroupingPolicy`'s first column):
    /// Argo CD evaluates a user's group only then.
    pub fn binds(&self, name: &str) -> bool {
        self.roles.contains_key(name)
    }

    /// `g(from, to)`, with the `g` lines followed (empty when `from == to`).
    pub fn link(&self, from: &str, to: &str) -> Option<Vec<LineRef>> {
        if from == to {
            return Some(Vec::new());
        }
        // Breadth first, level by level, as casbin's hasLinkHelper; remember how each name was
        // reached to report the path.
        let mut reached: HashMap<&str, (&str, &LineRef)> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([from]);
        let mut frontier = vec![from];
        for _ in 0..MAX_HIERARCHY_LEVEL {
            let mut next = Vec::new();
            for name in frontier {
                for (role, line) in self.roles.get(name).into_iter().flatten() {
                    if seen.insert(role) {
                        reached.insert(role, (name, line));
                        next.push(*role);
                    }
                }
            }
            if seen.contains(to) {
                let mut path = Vec::new();
                let mut at = to;
                while let Some((parent, line)) = reached.get(at) {
                    path.push((*line).clone());
                    at = parent;
                }
                path.reverse();
                return Some(path);
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        None
    }

    /// `casbin.Enforce(subject, resource, action, object)`.
    pub fn enforce(&self, subject: &str, resource: &str, action: &str, object: &str) -> Outcome {
        if self
            .parts
            .iter()
            .all(|part| part.policy.permissions.is_empty())
        {
            return self.enforce_without_lines(subject, resource, action, object);
        }
        let mut first_allow: Option<Matched> = None;
        for part in &self.parts {
            for (permission, [res, act, obj]) in part.policy.permissions.iter().zip(&part.patterns)
            {
                let Some(via) = self.link(subject, &permission.subject) else {
                    continue;
                };
                let mut holds = true;
                for (pattern, text) in [(res, resource), (act, action), (obj, object)] {
                    match pattern.matches(text) {
                        Ok(true) => {}
                        Ok(false) => {
                            holds = false;
                            break;
                        }
                        Err(message) => {
                            return Outcome::Error {
                                line: permission.at.clone(),
                                message,
                            };
                        }
                    }
                }
                if !holds {
                    continue;
                }
                let matched = Matched {
                    line: permission.at.clone(),
                    via,
                };
                match permission.effect {
                    Effect::Deny => return Outcome::Deny(matched),
                    Effect::Allow if first_allow.is_none() => first_allow = Some(matched),
                    Effect::Allow | Effect::Other(_) => {}
                }
            }
        }
        first_allow.map_or(Outcome::NoMatch, Outcome::Allow)
    }

    /// casbin's enforce with an empty `p` section: the matcher once, every `p` field "".
    fn enforce_without_lines(
        &self,
        subject: &str,
        resource: &str,
        action: &str,
        object: &str,
    ) -> Outcome {
        let Some(via) = self.link(subject, "") else {
            return Outcome::NoMatch;
        };
        let empty = Pattern::new("", self.mode);
        let all = [resource, action, object]
            .iter()
            .all(|text| empty.matches(text).unwrap_or(false));
        if all {
            Outcome::AllowWithoutLines { via }
        } else {
            Outcome::NoMatch
        }
    }
}

#[cfg(test)]
#[path = "../unit_tests/argocd_model_tests.rs"]
mod tests;
