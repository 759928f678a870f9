//! Editing JSON by pointer.

use serde_json::{Value, json};

/// Set `pointer` in `value`, creating objects on the way (`null` removes the key).
pub fn set(value: &mut Value, pointer: &str, new: Value) {
    let mut current = value;
    let segments: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = segments.split_last().unwrap();
    for segment in parents {
        if let Some(index) = current
            .is_array()
            .then(|| segment.parse::<usize>().unwrap())
        {
            current = &mut current[index];
            continue;
        }
        if !current
            .get(segment.as_str())
            .is_some_and(|v| v.is_object() || v.is_array())
        {
            current[segment.as_str()] = json!({});
        }
        current = current.get_mut(segment.as_str()).unwrap();
    }
    if let Some(list) = current.as_array_mut() {
        list[last.parse::<usize>().unwrap()] = new;
    } else if new.is_null() {
        current.as_object_mut().unwrap().remove(last.as_str());
    } else {
        current[last.as_str()] = new;
    }
}
