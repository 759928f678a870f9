//! What changed between the old and the new object beyond what the recognised actions explain:
//! the rest is a plain `update`. Who wrote it matters: automation owns its status, counters and
//! annotations; the same fields written by anyone else are a visible change.

use std::borrow::Cow;
use std::collections::BTreeSet;

use kube::core::{DynamicObject, ObjectMeta};
use serde_json::Value;
use smallvec::SmallVec;

use super::object::{is_resources_finalizer, pointer};
use crate::json::{self, same};
use crate::vocabulary::Action;

pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Written by the notifications controller to remember what it sent.
pub const NOTIFIED_ANNOTATION: &str = "notified.notifications.argoproj.io";
/// Revision counters the deployment and Rollouts controllers keep on the objects they roll out.
pub const REVISION_ANNOTATIONS: [&str; 2] = [
    "deployment.kubernetes.io/revision",
    "rollout.argoproj.io/revision",
];
/// The garbage collector's own finalizers, which it removes when a foreground or orphaning
/// deletion is done (the API server adds them on DELETE, never through an update).
const GARBAGE_COLLECTOR_FINALIZERS: [&str; 2] = ["foregroundDeletion", "orphan"];

/// Does anything outside `explained` differ? Patterns are JSON pointers; `*` matches one segment.
pub fn data_differs(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    explained: &[&str],
) -> bool {
    let null = Value::Null;
    // The typed metadata is compared separately; apiVersion and kind cannot change.
    let explained: SmallVec<[&str; 12]> = ["/apiVersion", "/kind", "/metadata"]
        .iter()
        .chain(explained)
        .copied()
        .collect();
    values_differ(
        old.map_or(&null, |o| &o.data),
        new.map_or(&null, |o| &o.data),
        &explained,
    )
}

/// Does anything in `old`/`new` outside `explained` differ (absent equals empty)?
pub fn values_differ(old: &Value, new: &Value, explained: &[&str]) -> bool {
    // Every pattern's tokens in one flat list (no list per pattern to build and move), each
    // pattern a range of it.
    let mut tokens: SmallVec<[Cow<str>; 32]> = SmallVec::new();
    let mut ranges: SmallVec<[(usize, usize); 12]> = SmallVec::new();
    for pattern in explained {
        let start = tokens.len();
        tokens.extend(json::segments(pattern).map(json::unescape));
        ranges.push((start, tokens.len()));
    }
    let live: SmallVec<[&[Cow<str>]; 12]> = ranges
        .iter()
        .map(|&(start, end)| &tokens[start..end])
        .collect();
    differs_at(old, new, &live)
}

/// Does any of `paths` differ between the objects (absent equals empty)?
pub fn changed(old: Option<&DynamicObject>, new: Option<&DynamicObject>, paths: &[&str]) -> bool {
    let null = Value::Null;
    paths.iter().any(|path| {
        !same_ignoring_absent(
            pointer(old, path).unwrap_or(&null),
            pointer(new, path).unwrap_or(&null),
        )
    })
}

/// `live` holds the unmatched rest of every pattern whose prefix matches the current path, so a
/// subtree no pattern reaches is compared in one go.
fn differs_at(old: &Value, new: &Value, live: &[&[Cow<str>]]) -> bool {
    if live.iter().any(|rest| rest.is_empty()) {
        return false;
    }
    if live.is_empty() {
        return !same_ignoring_absent(old, new);
    }
    let descend = |segment: &str, x: &Value, y: &Value| {
        let reaches = |rest: &&[Cow<str>]| rest[0] == "*" || rest[0] == segment;
        // Most keys no pattern reaches: compared whole, with nothing to collect.
        if !live.iter().any(reaches) {
            return !same_ignoring_absent(x, y);
        }
        let next: SmallVec<[&[Cow<str>]; 8]> = live
            .iter()
            .filter(|rest| reaches(rest))
            .map(|rest| &rest[1..])
            .collect();
        differs_at(x, y, &next)
    };
    let empty = Value::Object(serde_json::Map::new());
    // An absent block and a new one (or the reverse): compare field by field against nothing.
    let (old, new) = match (old, new) {
        (Value::Null, Value::Object(_)) => (&empty, new),
        (Value::Object(_), Value::Null) => (old, &empty),
        _ => (old, new),
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            // Keys usually come in the same order on both sides, the new side sometimes with
            // more at its end (an operation started): pair them up without a lookup until they
            // do not.
            let mut in_step = true;
            let mut b_entries = b.iter();
            for (key, x) in a {
                let paired = match b_entries.next() {
                    Some((other, y)) if in_step && other == key => Some(y),
                    _ => {
                        in_step = false;
                        None
                    }
                };
                let y = paired.or_else(|| json::get(b, key)).unwrap_or(&Value::Null);
                if descend(key, x, y) {
                    return true;
                }
            }
            if in_step {
                // `b` began with every key of `a`, in order: the rest of it are its own.
                return b_entries.any(|(k, y)| descend(k, &Value::Null, y));
            }
            b.iter()
                .filter(|(k, _)| json::get(a, k).is_none())
                .any(|(k, y)| descend(k, &Value::Null, y))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .any(|(index, (x, y))| descend(&index.to_string(), x, y)),
        _ => !same(old, new),
    }
}

/// Structural equality where an absent (null) value equals an empty object or list.
pub fn same_ignoring_absent(a: &Value, b: &Value) -> bool {
    if same(a, b) {
        return true;
    }
    match (a, b) {
        // Field by field, so `{"role": {}}` equals `{}` (argocd-server adds empty entries).
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .map(|(k, v)| (v, json::get(y, k).unwrap_or(&Value::Null)))
            .chain(
                y.iter()
                    .filter(|(k, _)| json::get(x, k).is_none())
                    .map(|(_, v)| (&Value::Null, v)),
            )
            .all(|(v, w)| same_ignoring_absent(v, w)),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_ignoring_absent(v, w))
        }
        _ => is_empty(a) && is_empty(b),
    }
}

/// Absent, `null`, `""`, `{}` (or one holding only empties) and `[]`: what Go's `omitempty`
/// leaves out, so Argo CD's own full writes (which spell out empty structs) equal the object
/// they rewrite. `false` is not empty: some flags are pointers whose absence means true.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(l) => l.is_empty(),
        _ => false,
    }
}

/// Who wrote a change and what else it was recognised as: decides which metadata changes
/// need no action of their own.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub automation: bool,
    /// Some other action was recognised: kubectl's last-applied record of it is part of it.
    pub recognised: bool,
    /// Annotations a recognised `refresh` covers (added or changed by anyone; removed by
    /// automation once it has refreshed).
    pub refresh_annotations: &'a [&'a str],
    pub refreshed: bool,
    /// The kind has `remove-finalizer` for the resources finalizer (Applications): its removal is
    /// never a plain update. Elsewhere only automation removes it unnamed.
    pub finalizer_action: bool,
    /// A recognised `delete` explains the resources finalizer added ahead of it (argocd-server's
    /// cascading delete).
    pub cascade_armed: bool,
}

/// `update` when the data beyond `explained`, or metadata beyond what the writer explains,
/// changed: for kinds with no refresh annotations or finalizer action of their own.
pub fn update_unless_explained(
    actions: &mut Vec<Action>,
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    explained: &[&str],
    automation: bool,
) {
    let writer = Writer {
        automation,
        recognised: !actions.is_empty(),
        refresh_annotations: &[],
        refreshed: false,
        finalizer_action: false,
        cascade_armed: false,
    };
    if data_differs(old, new, explained) || metadata_differs(old, new, writer) {
        actions.push(Action::Update);
    }
}

/// Metadata changed beyond what `writer` explains: labels, owners, annotations and finalizers.
/// The API server's own fields (resourceVersion, generation, managedFields…) never count.
pub fn metadata_differs(
    old: Option<&DynamicObject>,
    new: Option<&DynamicObject>,
    writer: Writer,
) -> bool {
    let (Some(old), Some(new)) = (old, new) else {
        return false;
    };
    let (a, b) = (&old.metadata, &new.metadata);
    a.labels != b.labels
        || annotations_differ(a, b, writer)
        || finalizers_differ(a, b, writer)
        || a.owner_references != b.owner_references
}

fn annotations_differ(a: &ObjectMeta, b: &ObjectMeta, writer: Writer) -> bool {
    let empty = Default::default();
    let (before, after) = (
        a.annotations.as_ref().unwrap_or(&empty),
        b.annotations.as_ref().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .any(|key| {
            let key = key.as_str();
            let removed = !after.contains_key(key);
            let explained = if writer.refresh_annotations.contains(&key) {
                writer.refreshed || (removed && writer.automation)
            } else if key == LAST_APPLIED_ANNOTATION {
                writer.automation || writer.recognised
            } else {
                (key == NOTIFIED_ANNOTATION || REVISION_ANNOTATIONS.contains(&key))
                    && writer.automation
            };
            !explained
        })
}

/// The resources finalizer's removal is `remove-finalizer` (or the controller's own, while
/// deleting); adding it or changing its form is automation's or a change. The garbage
/// collector's finalizers are removed only by automation.
fn finalizers_differ(a: &ObjectMeta, b: &ObjectMeta, writer: Writer) -> bool {
    let (before, after): (BTreeSet<&String>, BTreeSet<&String>) = (
        a.finalizers.iter().flatten().collect(),
        b.finalizers.iter().flatten().collect(),
    );
    let removed = before.difference(&after).any(|f| {
        let explained = if is_resources_finalizer(f) {
            writer.finalizer_action || writer.automation
        } else {
            writer.automation && GARBAGE_COLLECTOR_FINALIZERS.contains(&f.as_str())
        };
        !explained
    });
    let added = after
        .difference(&before)
        .any(|f| !((writer.automation || writer.cascade_armed) && is_resources_finalizer(f)));
    removed || added
}

#[cfg(test)]
#[path = "../unit_tests/diff_tests.rs"]
mod tests;
