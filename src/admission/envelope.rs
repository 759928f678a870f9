//! The AdmissionReview read straight from its text into kube's typed request: no `Value` tree
//! of the envelope to convert afterwards, the objects built into `DynamicObject`s as they are
//! read, and `managedFields` skipped unread.
//!
//! Field for field what kube's own `AdmissionReview<DynamicObject>` deserialisation accepts
//! (kube-core 5, `admission.rs`), without its costs: the review's flattened `TypeMeta` and the
//! object's flattened data make serde buffer the whole request, then the whole object, a second
//! time while it is parsed.

use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::core::admission::Operation;
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde_json::Value;

use super::Request;

/// The review: its type, and the request (the response a review may carry is not read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope {
    pub api_version: String,
    pub kind: String,
    /// Boxed: ~1.6 KB that would otherwise be moved with every step of the parse.
    #[serde(default)]
    pub request: Option<Box<RequestFields>>,
}

/// kube's `AdmissionRequest` fields, with the same names, defaults and types.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestFields {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default, deserialize_with = "object")]
    object: Option<DynamicObject>,
    #[serde(default, deserialize_with = "object")]
    old_object: Option<DynamicObject>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<RawExtension>,
}

impl RequestFields {
    /// The request, typed as the review's `apiVersion` and `kind` (as kube's `TryInto` does).
    pub fn into_request(self: Box<Self>, types: TypeMeta) -> Box<Request> {
        // Fields move out of the box one by one: the whole is never copied to the stack.
        Box::new(Request {
            types,
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: self.object,
            old_object: self.old_object,
            dry_run: self.dry_run,
            options: self.options,
        })
    }
}

/// `object` / `oldObject`: `null` is no object.
fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DynamicObject>, D::Error> {
    deserializer.deserialize_option(OptionalObject)
}

struct OptionalObject;

impl<'de> Visitor<'de> for OptionalObject {
    type Value = Option<DynamicObject>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(ObjectVisitor).map(Some)
    }
}

/// A Kubernetes object as `DynamicObject` would deserialise it: `apiVersion` and `kind` as its
/// type, `metadata`, and every other key as data.
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = DynamicObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DynamicObject, A::Error> {
        let mut data = serde_json::Map::new();
        let (mut api_version, mut kind, mut metadata) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => api_version = Some(map.next_value::<Value>()?),
                "kind" => kind = Some(map.next_value::<Value>()?),
                "metadata" => metadata = Some(map.next_value_seed(Metadata)?),
                _ => {
                    let value = map.next_value::<Value>()?;
                    data.insert(key, value);
                }
            }
        }
        // Like serde's flattened `Option<TypeMeta>`: `apiVersion`, then `kind`, are taken out of
        // the data until one is not a string; the type is known only if both are strings.
        let types = match (api_version, kind) {
            (Some(Value::String(api_version)), Some(Value::String(kind))) => {
                Some(TypeMeta { api_version, kind })
            }
            (Some(Value::String(_)) | None, _) => None,
            (Some(_), kind) => {
                if let Some(kind) = kind {
                    data.insert("kind".into(), kind);
                }
                None
            }
        };
        Ok(DynamicObject {
            types,
            metadata: metadata.unwrap_or_default(),
            data: Value::Object(data),
        })
    }
}

/// An object's `metadata` without its `managedFields`: nothing decides on them, the API server
/// sends them with every object, and they are often most of its metadata.
struct Metadata;

impl<'de> DeserializeSeed<'de> for Metadata {
    type Value = ObjectMeta;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ObjectMeta, D::Error> {
        ObjectMeta::deserialize(WithoutManagedFields(deserializer))
    }
}

/// A deserializer of a map that hides its `managedFields` member.
struct WithoutManagedFields<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithoutManagedFields<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Skipping(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

struct Skipping<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Skipping<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(SkippingMap(map))
    }
}

struct SkippingMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkippingMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.0.next_key::<String>()? {
            if key == "managedFields" {
                self.0.next_value::<IgnoredAny>()?;
                continue;
            }
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}
