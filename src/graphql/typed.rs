//! Typed fields: the GraphQL types of handlers' Rust types (deriving
//! async-graphql's `InputObject`, `SimpleObject`, `Enum`), turned into the
//! gateway's dynamic schema.
//!
//! Inputs are parsed by the type's own derived parser and sent as its serde
//! JSON, so the handler receives exactly what it deserializes. Results are the
//! handler's JSON reply read through the result type's shape: a GraphQL field
//! or enum item matches the JSON key or string that is equal to it ignoring
//! case and underscores, so serde's `snake_case`/`PascalCase` defaults and
//! async-graphql's `camelCase`/`SCREAMING_SNAKE_CASE` defaults agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    TypeRef,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{InputType, OutputType, Value};
use serde::Serialize;

use crate::error::{Error, Result};

/// Parses a GraphQL input into the JSON a handler reads.
type ParseInput =
    Arc<dyn Fn(Option<Value>) -> std::result::Result<serde_json::Value, String> + Send + Sync>;

/// The Rust types of exposed subjects, for typed GraphQL fields; a subject
/// without types here is exposed with the `JSON` scalar.
///
/// ```
/// use async_graphql::{InputObject, SimpleObject};
/// use serde::{Deserialize, Serialize};
/// use switchboard::graphql::Types;
///
/// #[derive(InputObject, Serialize)]
/// struct PlaceOrder { item: String, quantity: u32 }
///
/// #[derive(SimpleObject, Deserialize)]
/// struct Receipt { order_id: u64 }
///
/// // `orders_place(input: PlaceOrder!): Receipt!` instead of JSON → JSON.
/// let types = Types::new().call::<PlaceOrder, Receipt>("orders.place");
/// ```
#[derive(Clone, Default)]
pub struct Types {
    registry: Arc<std::sync::Mutex<Registry>>,
    calls: BTreeMap<String, CallTypes>,
    events: BTreeMap<String, String>,
}

/// A typed query or mutation: its input type, parser and result type.
#[derive(Clone)]
pub(super) struct CallTypes {
    pub input: TypeRef,
    pub parse: ParseInput,
    pub output: TypeRef,
}

impl std::fmt::Debug for Types {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Types")
            .field("calls", &self.calls.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .finish()
    }
}

impl Types {
    /// No typed subjects yet.
    pub fn new() -> Self {
        Types::default()
    }

    /// Types the query or mutation of `subject`: its input is `Req` (an
    /// `InputObject` or any input type; sent as its serde JSON) and its result
    /// `Resp` (a `SimpleObject`, enum, scalar or list of them).
    pub fn call<Req, Resp>(mut self, subject: &str) -> Self
    where
        Req: InputType + Serialize,
        Resp: OutputType,
    {
        let (input, output) = {
            let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            (
                Req::create_type_info(&mut registry),
                Resp::create_type_info(&mut registry),
            )
        };
        let parse: ParseInput = Arc::new(|value| {
            let parsed = Req::parse(value)
                .map_err(|err| err.into_server_error(Default::default()).message)?;
            serde_json::to_value(&parsed).map_err(|err| err.to_string())
        });
        self.calls.insert(
            subject.to_owned(),
            CallTypes {
                input: type_ref(&input),
                parse,
                output: type_ref(&output),
            },
        );
        self
    }

    /// Types the payload of the events a subscription on `pattern` streams.
    pub fn events<T: OutputType>(mut self, pattern: &str) -> Self {
        let payload = {
            let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            T::create_type_info(&mut registry)
        };
        self.events.insert(pattern.to_owned(), payload);
        self
    }

    pub(super) fn call_types(&self, subject: &str) -> Option<&CallTypes> {
        self.calls.get(subject)
    }

    pub(super) fn event_payload(&self, pattern: &str) -> Option<TypeRef> {
        self.events.get(pattern).map(|ty| type_ref(ty))
    }

    /// Every typed subject, for the check that each is exposed.
    pub(super) fn subjects(&self) -> impl Iterator<Item = &str> {
        self.calls
            .keys()
            .chain(self.events.keys())
            .map(String::as_str)
    }

    /// The dynamic types to register, and the shapes results are read with.
    pub(super) fn schema_types(&self) -> Result<(Vec<SchemaType>, Arc<Shapes>)> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut types = Vec::new();
        let mut shapes = Shapes::default();
        for (name, meta) in &registry.types {
            if BUILT_IN_SCALARS.contains(&name.as_str()) {
                continue;
            }
            match meta {
                MetaType::Scalar { description, .. } => {
                    let mut scalar = Scalar::new(name);
                    if let Some(text) = description {
                        scalar = scalar.description(text);
                    }
                    types.push(SchemaType::Scalar(scalar));
                    shapes.kinds.insert(name.clone(), Kind::Scalar);
                }
                MetaType::Enum {
                    description,
                    enum_values,
                    ..
                } => {
                    let mut item_names: Vec<String> = enum_values.keys().cloned().collect();
                    item_names.sort();
                    let mut r#enum = Enum::new(name).items(item_names.iter().map(String::as_str));
                    if let Some(text) = description {
                        r#enum = r#enum.description(text);
                    }
                    types.push(SchemaType::Enum(r#enum));
                    shapes.kinds.insert(name.clone(), Kind::Enum(item_names));
                }
                MetaType::InputObject {
                    description,
                    input_fields,
                    ..
                } => {
                    let mut object = InputObject::new(name);
                    for field in input_fields.values() {
                        let mut value = InputValue::new(&field.name, type_ref(&field.ty));
                        if let Some(text) = &field.description {
                            value = value.description(text);
                        }
                        object = object.field(value);
                    }
                    if let Some(text) = description {
                        object = object.description(text);
                    }
                    types.push(SchemaType::InputObject(object));
                    shapes.kinds.insert(name.clone(), Kind::Input);
                }
                MetaType::Object {
                    description,
                    fields,
                    ..
                } => {
                    let fields: Vec<(String, String, Option<String>)> = fields
                        .values()
                        .filter(|field| !field.name.starts_with("__"))
                        .map(|field| {
                            (field.name.clone(), field.ty.clone(), field.description.clone())
                        })
                        .collect();
                    shapes.kinds.insert(name.clone(), Kind::Object);
                    types.push(SchemaType::Object {
                        name: name.clone(),
                        description: description.clone(),
                        fields,
                    });
                }
                MetaType::Interface { .. } | MetaType::Union { .. } => {
                    return Err(Error::config(format!(
                        "graphql: the type `{name}` is an interface or union, which typed fields do not support; expose that subject with JSON"
                    )))
                }
            }
        }
        Ok((types, Arc::new(shapes)))
    }
}

/// GraphQL's own scalars: the dynamic schema has them already.
const BUILT_IN_SCALARS: &[&str] = &["String", "Int", "Float", "Boolean", "ID"];

/// One dynamic type to register; objects are built once the shapes are known.
pub(super) enum SchemaType {
    Scalar(Scalar),
    Enum(Enum),
    InputObject(InputObject),
    Object {
        name: String,
        description: Option<String>,
        fields: Vec<(String, String, Option<String>)>,
    },
}

impl SchemaType {
    /// Registers the type, resolving an object's fields from its JSON through `shapes`.
    pub fn register(
        self,
        builder: async_graphql::dynamic::SchemaBuilder,
        shapes: &Arc<Shapes>,
    ) -> async_graphql::dynamic::SchemaBuilder {
        match self {
            SchemaType::Scalar(scalar) => builder.register(scalar),
            SchemaType::Enum(r#enum) => builder.register(r#enum),
            SchemaType::InputObject(object) => builder.register(object),
            SchemaType::Object {
                name,
                description,
                fields,
            } => {
                let mut object = Object::new(&name);
                if let Some(text) = description {
                    object = object.description(text);
                }
                for (field_name, ty, description) in fields {
                    let shapes = shapes.clone();
                    let ty = type_ref(&ty);
                    let key = loose(&field_name);
                    let mut field =
                        Field::new(&field_name, ty.clone(), move |ctx: ResolverContext| {
                            let (shapes, ty, key) = (shapes.clone(), ty.clone(), key.clone());
                            FieldFuture::new(async move {
                                let parent =
                                    ctx.parent_value.try_downcast_ref::<serde_json::Value>()?;
                                let child = parent
                                    .as_object()
                                    .and_then(|map| map.iter().find(|(k, _)| loose(k) == key))
                                    .map(|(_, v)| v.clone())
                                    .unwrap_or(serde_json::Value::Null);
                                shapes.field_value(child, &ty)
                            })
                        });
                    if let Some(text) = description {
                        field = field.description(text);
                    }
                    object = object.field(field);
                }
                builder.register(object)
            }
        }
    }
}

/// What each registered type is, for reading a JSON result as it.
#[derive(Default)]
pub(super) struct Shapes {
    kinds: HashMap<String, Kind>,
}

enum Kind {
    Scalar,
    Enum(Vec<String>),
    Input,
    Object,
}

impl Shapes {
    /// `json` as a value of type `ty`: objects resolve their fields from it,
    /// enums match an item, scalars pass as they are, `null` is null.
    pub fn field_value(
        &self,
        json: serde_json::Value,
        ty: &TypeRef,
    ) -> async_graphql::Result<Option<FieldValue<'static>>> {
        if json.is_null() {
            return Ok(None);
        }
        match ty {
            TypeRef::NonNull(inner) => self.field_value(json, inner),
            TypeRef::List(inner) => {
                let serde_json::Value::Array(items) = json else {
                    return Err(async_graphql::Error::new(format!(
                        "the reply has {json} where a list was expected"
                    )));
                };
                let values = items
                    .into_iter()
                    .map(|item| Ok(self.field_value(item, inner)?.unwrap_or(FieldValue::NULL)))
                    .collect::<async_graphql::Result<Vec<_>>>()?;
                Ok(Some(FieldValue::list(values)))
            }
            TypeRef::Named(name) => match self.kinds.get(name.as_ref()) {
                Some(Kind::Object) => Ok(Some(FieldValue::owned_any(json))),
                Some(Kind::Enum(items)) => {
                    let text = json.as_str().unwrap_or_default();
                    let item = items
                        .iter()
                        .find(|item| loose(item) == loose(text))
                        .ok_or_else(|| {
                            async_graphql::Error::new(format!(
                                "the reply's `{json}` is not an item of the enum `{name}`"
                            ))
                        })?;
                    Ok(Some(FieldValue::value(Value::Enum(
                        async_graphql::Name::new(item),
                    ))))
                }
                Some(Kind::Scalar) | Some(Kind::Input) | None => {
                    Ok(Some(FieldValue::value(Value::from_json(json)?)))
                }
            },
        }
    }
}

/// A name compared ignoring case and underscores (`total_cents` = `totalCents`, `OnHold` = `ON_HOLD`).
fn loose(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A type as async-graphql writes it (`[Item!]!`) as a `TypeRef`.
fn type_ref(ty: &str) -> TypeRef {
    if let Some(inner) = ty.strip_suffix('!') {
        return TypeRef::NonNull(Box::new(type_ref(inner)));
    }
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return TypeRef::List(Box::new(type_ref(inner)));
    }
    TypeRef::named(ty.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_refs_and_loose_names() {
        assert_eq!(type_ref("[Item!]!").to_string(), "[Item!]!");
        assert_eq!(type_ref("Int").to_string(), "Int");
        assert_eq!(loose("total_cents"), loose("totalCents"));
        assert_eq!(loose("OnHold"), loose("ON_HOLD"));
        assert_ne!(loose("on_hold"), loose("onhold2"));
    }
}
