//! Namespaces: Guardrails decides only what changes its own inputs. A Namespace's team and
//! environment labels (the config's `namespaceLabels` keys) decide who owns it and whether it is
//! production for every later decision, so setting, changing or removing them is `relabel`; and
//! deleting a namespace deletes everything in it, so a delete is `delete`. Any other change to a
//! Namespace names no action and is allowed without a policy.

use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::Serialize;

use super::Recognition;
use crate::admission::Request;
use crate::config::Config;
use crate::vocabulary::Action;

/// The trust labels' values before and after a request ("" when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relabel {
    pub old_team: String,
    pub new_team: String,
    pub old_environment: String,
    pub new_environment: String,
}

impl Relabel {
    /// No labels on either side: the context of every other kind.
    pub const EMPTY: Relabel = Relabel {
        old_team: String::new(),
        new_team: String::new(),
        old_environment: String::new(),
        new_environment: String::new(),
    };
}

fn label(object: Option<&DynamicObject>, key: &str) -> Option<String> {
    object?.metadata.labels.as_ref()?.get(key).cloned()
}

/// The actions of a Namespace write, and the trust labels on both sides of it.
pub(super) fn recognize(recognition: &mut Recognition, request: &Request, config: &Config) {
    // `namespaces/status` and `namespaces/finalize` are the namespace controller's, and cannot
    // change labels.
    if request.sub_resource.is_some() {
        return;
    }
    let keys = &config.file.namespace_labels;
    let (old, new) = (request.old_object.as_ref(), request.object.as_ref());
    let before = (label(old, &keys.team), label(old, &keys.environment));
    let after = match request.operation {
        Operation::Delete => before.clone(),
        _ => (label(new, &keys.team), label(new, &keys.environment)),
    };
    match request.operation {
        Operation::Delete => {
            recognition.actions.push(Action::Delete);
            recognition.cascade = true;
        }
        // A label key present with an empty value is still a label someone set.
        Operation::Create | Operation::Update if before != after => {
            recognition.actions.push(Action::Relabel);
        }
        _ => {}
    }
    recognition.relabel = Some(Box::new(Relabel {
        old_team: before.0.unwrap_or_default(),
        old_environment: before.1.unwrap_or_default(),
        new_team: after.0.unwrap_or_default(),
        new_environment: after.1.unwrap_or_default(),
    }));
}
