//! JSON reads on the request path that allocate nothing and hash no more than they must: what
//! recognition and entity building use instead of `Value::pointer` (which copies every segment
//! of the path) and `==` on objects (serde_json here keeps key order in an `IndexMap`, whose
//! equality hashes every key of one side to look it up in the other). Same results as
//! serde_json's own, checked against them in the unit and property tests.
//!
//! And one write: `write_answer`, what the answer and the audit line are serialised with.

use std::borrow::Cow;

use serde_json::Value;

/// `value.pointer(path)`: RFC 6901, `~1` and `~0` unescaped, array indices without sign or
/// leading zero.
pub fn pointer<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    let rest = path.strip_prefix('/')?;
    let mut target = value;
    for token in tokens(rest) {
        target = if has_escape(token) {
            step(target, &unescape(token))?
        } else {
            step(target, token)?
        };
    }
    Some(target)
}

fn has_escape(token: &str) -> bool {
    token.bytes().any(|b| b == b'~')
}

/// `value`'s member `key`, absent when `value` is not an object or the member is `null`: one
/// step of a pointer, for reading several fields of one block without walking to it each time.
pub fn member<'a>(value: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    value
        .and_then(Value::as_object)
        .and_then(|map| get(map, key))
        .filter(|v| !v.is_null())
}

/// Objects with at most this many members are searched in order rather than by hash: comparing
/// a few short keys is cheaper than SipHash (serde_json's `IndexMap` here), and Kubernetes
/// objects are mostly small maps.
const SCAN_AT_MOST: usize = 16;

/// `map.get(key)`, without hashing the key when the map is small.
pub fn get<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= SCAN_AT_MOST {
        map.iter()
            .find_map(|(name, value)| (name.as_str() == key).then_some(value))
    } else {
        map.get(key)
    }
}

/// The reference tokens of a JSON pointer (after its leading `/`s), still escaped.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    tokens(path.trim_start_matches('/'))
}

/// `rest` split at every `/`. By hand: `str::split('/')` goes through a general searcher (memchr
/// and UTF-8 bookkeeping), a visible share of a decision for tokens a few bytes long.
fn tokens(rest: &str) -> Tokens<'_> {
    Tokens(Some(rest))
}

struct Tokens<'a>(Option<&'a str>);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0?;
        match rest.bytes().position(|b| b == b'/') {
            Some(end) => {
                self.0 = rest.get(end + 1..);
                rest.get(..end)
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

/// One reference token of a JSON pointer, unescaped (`~1` is `/`, then `~0` is `~`).
pub fn unescape(token: &str) -> Cow<'_, str> {
    if has_escape(token) {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

fn step<'a>(target: &'a Value, token: &str) -> Option<&'a Value> {
    match target {
        Value::Object(map) => get(map, token),
        Value::Array(list) => index(token).and_then(|i| list.get(i)),
        _ => None,
    }
}

/// serde_json's array index rule: digits only, no leading `+` or `0` (but `0` itself).
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// `a == b`. Objects are walked in step while both list the same keys in the same order (the
/// usual case: old and new object from the same API server), and looked up only past the first
/// difference.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return false;
            }
            for (position, ((key, left), (other_key, right))) in x.iter().zip(y).enumerate() {
                if key != other_key {
                    // Out of step: the rest by lookup, as `==` does.
                    return x
                        .iter()
                        .skip(position)
                        .all(|(k, v)| get(y, k).is_some_and(|w| same(v, w)));
                }
                if !same(left, right) {
                    return false;
                }
            }
            true
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

/// `a == b` for optional values.
pub fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Serialise `value` onto `out` as serde_json would, with sonic-rs: it escapes strings many
/// bytes at a time where serde_json looks at each byte, and escaping the reasons, messages and
/// names of an answer and its audit line was a tenth of a small request. Same bytes as
/// serde_json for plain data (`tests/envelope_parity.rs` compares every answer and audit record
/// of the fixtures). Not for serde_json's `RawValue`, which only serde_json writes verbatim,
/// nor its `Value` (its numbers are not among what the parity test compares): keep those to
/// serde_json.
pub fn write_answer<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), sonic_rs::Error> {
    sonic_rs::to_writer(out, value)
}

/// A JSON object written member by member: each name as it is (a field name, plain ASCII),
/// each value by `write_answer`. serde's derived form sends every name through the writer's
/// escaper, ~100 instructions each.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    pub fn member<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), sonic_rs::Error> {
        self.name(name);
        write_answer(self.out, value)
    }

    /// A member whose value is JSON text already (serde_json's `RawValue`), copied as it is.
    pub fn raw_member(&mut self, name: &'static str, json: &serde_json::value::RawValue) {
        self.name(name);
        self.out.extend_from_slice(json.get().as_bytes());
    }

    fn name(&mut self, name: &'static str) {
        debug_assert!(
            name.bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\'),
            "{name:?} would need escaping"
        );
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
#[path = "unit_tests/json_tests.rs"]
mod tests;
