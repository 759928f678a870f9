//! Where an ApplicationSet or AppProject can send Applications, read from the object alone.
//! An ApplicationSet's destinations are its template's, rendered with the parameters of every
//! generator whose elements are written in the object (list, and matrix/merge of those); an
//! AppProject's are its `destinations` patterns. What the object cannot show (git, cluster, SCM,
//! pull-request or plugin generators feeding a templated destination, a `templatePatch`, a glob)
//! makes the set not `known`, so a policy can fail safe.

use serde_json::{Map, Value};

use crate::json;

/// One destination as written (rendered for an ApplicationSet, a pattern for an AppProject).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination {
    pub server: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub list: Vec<Destination>,
    /// Every destination the object can produce is in `list`.
    pub known: bool,
}

impl Default for Destinations {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            known: true,
        }
    }
}

impl Destinations {
    fn add(&mut self, destination: Destination) {
        if !self.list.contains(&destination) {
            self.list.push(destination);
        }
    }

    /// Both sides of a change: what it could reach before and after.
    pub fn merge(&mut self, other: Destinations) {
        self.known &= other.known;
        for destination in other.list {
            self.add(destination);
        }
    }
}

/// A pattern Argo CD matches with globs (`*`, `?`, `[…]`) or negates (`!`).
pub fn is_pattern(value: &str) -> bool {
    value.starts_with('!') || value.contains(['*', '?', '['])
}

/// `*` and `?` globs; a `[…]` class is taken to match anything (a superset, never fewer).
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    if pattern.contains('[') {
        return true;
    }
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((star_p, star_v)) = star {
            pi = star_p + 1;
            vi = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn field(value: Option<&Value>, key: &str) -> String {
    value
        .and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn destination_of(value: Option<&Value>) -> Destination {
    Destination {
        server: field(value, "server"),
        name: field(value, "name"),
        namespace: field(value, "namespace"),
    }
}

/// An AppProject's destinations. Negated entries (`!ns`) only take away: left out.
pub fn of_appproject(data: &Value) -> Destinations {
    let mut out = Destinations::default();
    for entry in json::pointer(data, "/spec/destinations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let destination = destination_of(Some(entry));
        if [
            &destination.server,
            &destination.name,
            &destination.namespace,
        ]
        .iter()
        .any(|v| v.starts_with('!'))
        {
            continue;
        }
        if [
            &destination.server,
            &destination.name,
            &destination.namespace,
        ]
        .iter()
        .any(|v| is_pattern(v))
        {
            out.known = false;
        }
        out.add(destination);
    }
    out
}

/// An ApplicationSet's destinations.
pub fn of_applicationset(data: &Value) -> Destinations {
    let mut out = Destinations::default();
    let patched = json::pointer(data, "/spec/templatePatch")
        .and_then(Value::as_str)
        .is_some_and(|patch| !patch.trim().is_empty());
    if patched {
        // A templatePatch is a template of its own: it may set any destination.
        out.known = false;
    }
    let base = json::pointer(data, "/spec/template/spec/destination");
    for generator in json::pointer(data, "/spec/generators")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let destination = with_override(destination_of(base), generator);
        if !has_placeholder(&destination) {
            out.add(destination);
            continue;
        }
        match parameters(generator) {
            Some(sets) => {
                for params in sets {
                    match render_destination(&destination, &params) {
                        Some(rendered) => out.add(rendered),
                        None => out.known = false,
                    }
                }
            }
            None => out.known = false,
        }
    }
    out
}

/// A generator's own `template` overrides the ApplicationSet's, field by field.
fn with_override(mut destination: Destination, generator: &Value) -> Destination {
    let own = generator
        .as_object()
        .into_iter()
        .flatten()
        .find_map(|(_, body)| json::pointer(body, "/template/spec/destination"));
    let own = destination_of(own);
    for (field, value) in [
        (&mut destination.server, own.server),
        (&mut destination.name, own.name),
        (&mut destination.namespace, own.namespace),
    ] {
        if !value.is_empty() {
            *field = value;
        }
    }
    destination
}

fn has_placeholder(destination: &Destination) -> bool {
    [
        &destination.server,
        &destination.name,
        &destination.namespace,
    ]
    .iter()
    .any(|v| v.contains("{{"))
}

type Params = Map<String, Value>;

/// The parameter sets a generator produces, when the object holds them all.
fn parameters(generator: &Value) -> Option<Vec<Params>> {
    if let Some(list) = generator.get("list") {
        let templated = list
            .get("elementsYaml")
            .and_then(Value::as_str)
            .is_some_and(|y| !y.trim().is_empty());
        if templated {
            return None;
        }
        return list
            .get("elements")
            .and_then(Value::as_array)
            .map_or(Some(Vec::new()), |elements| {
                elements.iter().map(|e| e.as_object().cloned()).collect()
            });
    }
    if let Some(matrix) = generator.get("matrix") {
        let mut product = vec![Params::new()];
        for child in matrix.get("generators").and_then(Value::as_array)? {
            let sets = parameters(child)?;
            product = product
                .iter()
                .flat_map(|left| {
                    sets.iter().map(move |right| {
                        let mut both = left.clone();
                        both.extend(right.clone());
                        both
                    })
                })
                .collect();
        }
        return Some(product);
    }
    if let Some(merge) = generator.get("merge") {
        let keys: Vec<&str> = merge
            .get("mergeKeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut children = merge.get("generators").and_then(Value::as_array)?.iter();
        let mut merged = parameters(children.next()?)?;
        for child in children {
            let sets = parameters(child)?;
            for base in &mut merged {
                for other in &sets {
                    if keys.iter().all(|k| base.get(*k) == other.get(*k)) {
                        base.extend(other.clone());
                    }
                }
            }
        }
        return Some(merged);
    }
    // git, clusters, scmProvider, pullRequest, plugin, clusterDecisionResource: outside the object.
    None
}

fn render_destination(destination: &Destination, params: &Params) -> Option<Destination> {
    Some(Destination {
        server: render(&destination.server, params)?,
        name: render(&destination.name, params)?,
        namespace: render(&destination.namespace, params)?,
    })
}

/// Substitute `{{.key}}` (Go templates) or `{{key}}` (fasttemplate), nested keys with dots.
/// Anything else (functions, pipelines, a missing key) cannot be known: `None`.
fn render(template: &str, params: &Params) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let expression = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-');
        let key = expression.trim().trim_start_matches('.');
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return None;
        }
        out.push_str(&scalar(lookup(params, key)?)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// A flat key first (fasttemplate's `path.basename`), then a nested path.
fn lookup<'a>(params: &'a Params, key: &str) -> Option<&'a Value> {
    if let Some(value) = params.get(key) {
        return Some(value);
    }
    let mut parts = key.split('.');
    let mut value = params.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "../unit_tests/destinations_tests.rs"]
mod tests;
