//! Where an ApplicationSet or AppProject can send Applications, read from the object alone.
//! An ApplicationSet's destinations are its template's, rendered with the parameters of every
//! generator whose elements are written in the object (list, and matrix/merge of those); an
//! AppProject's are its `destinations` patterns. What the object cannot show (git, cluster, SCM,
//! pull-request or plugin generators feeding a templated destination, a `templatePatch`, a glob)
//! makes the set not `known`, so a policy can fail safe. `reach` turns the destinations into places
//! (namespace, team, environment) and `reach_attributes` into the entity's attributes.

use serde_json::{Map, Value};

use std::collections::HashSet;

use cedar_policy_core::ast::{Entity as CoreEntity, EntityUID, Value as CedarValue};

use super::{
    Attributes, EntityError, Placement, Reach, placed_in, resolve_namespace, string, types, uid,
};
use crate::admission::Request;
use crate::cluster::NamespaceLabels;
use crate::config::Config;
use crate::json;
use crate::vocabulary::Kind;

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

/// The places one destination stands for: a namespace pattern stands for every namespace the
/// config or the cluster knows that it matches; an environment comes from the namespace, else
/// from every configured cluster the destination's server or name (pattern) matches.
fn places_of(destination: &Destination, config: &Config, live: &NamespaceLabels) -> Vec<Placement> {
    let namespaces: Vec<Option<String>> = if destination.namespace.is_empty() {
        vec![None]
    } else if is_pattern(&destination.namespace) {
        let mut known: Vec<&String> = config.file.namespaces.keys().chain(live.keys()).collect();
        known.sort();
        known.dedup();
        let matched: Vec<Option<String>> = known
            .into_iter()
            .filter(|ns| glob_matches(&destination.namespace, ns))
            .map(|ns| Some(ns.clone()))
            .collect();
        if matched.is_empty() {
            vec![None]
        } else {
            matched
        }
    } else {
        vec![Some(destination.namespace.clone())]
    };
    let cluster_environments: Vec<String> = {
        let mut found: Vec<String> = config
            .file
            .clusters
            .iter()
            .filter(|(cluster, _)| {
                [&destination.server, &destination.name].iter().any(|d| {
                    !d.is_empty() && (d == cluster || (is_pattern(d) && glob_matches(d, cluster)))
                })
            })
            .map(|(_, environment)| environment.clone())
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let mut places = Vec::new();
    for namespace in namespaces {
        let resolved = namespace
            .as_deref()
            .map(|ns| resolve_namespace(config, live, ns))
            .unwrap_or_default();
        let environments: Vec<Option<String>> = match resolved.environment {
            Some(environment) => vec![Some(environment)],
            None if cluster_environments.is_empty() => vec![None],
            None => cluster_environments.iter().cloned().map(Some).collect(),
        };
        for environment in environments {
            places.push(Placement {
                namespace: namespace.clone(),
                team: resolved.team.clone(),
                environment,
                previous: None,
                reach: None,
            });
        }
    }
    places
}

pub fn reach(kind: Kind, request: &Request, config: &Config, live: &NamespaceLabels) -> Reach {
    let mut destinations = Destinations::default();
    for object in [request.old_object.as_ref(), request.object.as_ref()]
        .into_iter()
        .flatten()
    {
        destinations.merge(match kind {
            Kind::AppProject => of_appproject(&object.data),
            _ => of_applicationset(&object.data),
        });
    }
    let mut places: Vec<Placement> = Vec::new();
    for destination in &destinations.list {
        for place in places_of(destination, config, live) {
            if !places.contains(&place) {
                places.push(place);
            }
        }
    }
    Reach {
        places,
        known: destinations.known,
    }
}

/// An ApplicationSet's or AppProject's reach as attributes (`destinationsKnown`,
/// `destinationNamespaces`, `teams`, `environments`), its places' namespaces as entities and
/// every place's team, environment and namespace as parents.
pub(super) fn reach_attributes(
    reach: &Reach,
    entities: &mut Vec<CoreEntity>,
    parents: &mut HashSet<EntityUID>,
) -> Result<Attributes, EntityError> {
    let t = types()?;
    let (mut namespaces, mut teams, mut environments) = (Vec::new(), Vec::new(), Vec::new());
    for place in &reach.places {
        let (_, place_parents) = placed_in(place, entities)?;
        parents.extend(place_parents);
        namespaces.extend(place.namespace.iter().map(|ns| string(ns)));
        teams.extend(
            place
                .team
                .iter()
                .map(|team| CedarValue::from(uid(&t.team, team))),
        );
        environments.extend(
            place
                .environment
                .iter()
                .map(|env| CedarValue::from(uid(&t.environment, env))),
        );
    }
    Ok(vec![
        (
            "destinationsKnown".into(),
            CedarValue::from(reach.known).into(),
        ),
        (
            "destinationNamespaces".into(),
            CedarValue::set(namespaces, None).into(),
        ),
        ("teams".into(), CedarValue::set(teams, None).into()),
        (
            "environments".into(),
            CedarValue::set(environments, None).into(),
        ),
    ])
}

#[cfg(test)]
#[path = "../unit_tests/destinations_tests.rs"]
mod tests;
