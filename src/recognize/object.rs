//! Reading an admitted object: JSON pointers into its data, its annotations and finalizers.
//! Absent and `null` read the same, as the API server treats them.

use kube::core::DynamicObject;
use serde_json::Value;

use crate::json;

pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

pub fn pointer<'a>(object: Option<&'a DynamicObject>, path: &str) -> Option<&'a Value> {
    object
        .and_then(|o| json::pointer(&o.data, path))
        .filter(|v| !v.is_null())
}

pub fn bool_at(object: Option<&DynamicObject>, path: &str) -> bool {
    pointer(object, path).and_then(Value::as_bool) == Some(true)
}

pub fn str_at<'a>(object: Option<&'a DynamicObject>, path: &str) -> Option<&'a str> {
    pointer(object, path).and_then(Value::as_str)
}

pub fn annotation<'a>(object: Option<&'a DynamicObject>, key: &str) -> Option<&'a str> {
    object
        .and_then(|o| o.metadata.annotations.as_ref())
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Was `key` added or given a new value (not removed)?
pub fn annotation_set(old: Option<&DynamicObject>, new: Option<&DynamicObject>, key: &str) -> bool {
    let value = annotation(new, key);
    value.is_some() && value != annotation(old, key)
}

pub fn finalizers(object: Option<&DynamicObject>) -> &[String] {
    object
        .and_then(|o| o.metadata.finalizers.as_deref())
        .unwrap_or(&[])
}

/// `resources-finalizer.argocd.argoproj.io` and its `/foreground`, `/background` forms.
pub fn is_resources_finalizer(name: &str) -> bool {
    name == RESOURCES_FINALIZER
        || name
            .strip_prefix(RESOURCES_FINALIZER)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub fn has_resources_finalizer(object: Option<&DynamicObject>) -> bool {
    finalizers(object).iter().any(|f| is_resources_finalizer(f))
}

pub fn is_deleting(object: Option<&DynamicObject>) -> bool {
    object.is_some_and(|o| o.metadata.deletion_timestamp.is_some())
}

pub fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn non_empty_array(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}
