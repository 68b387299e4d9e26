//! The JSON Schemas of a service's payload types, for its AsyncAPI document:
//! registered with [`Service::schema`](crate::Service::schema) (feature
//! `asyncapi`, through schemars), found by the Rust type name the handler
//! decodes into.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Payload schemas by Rust type name, and the definitions they refer to
/// (kept under `#/components/schemas/`).
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    by_type: BTreeMap<&'static str, Value>,
    definitions: Map<String, Value>,
}

impl Schemas {
    /// The schema registered for `rust_type`.
    pub(crate) fn payload(&self, rust_type: &str) -> Option<&Value> {
        self.by_type.get(rust_type)
    }

    /// The definitions the payload schemas refer to.
    pub(crate) fn definitions(&self) -> &Map<String, Value> {
        &self.definitions
    }

    /// Adds the schema of `T` (draft 7, as AsyncAPI's schema format; shared
    /// definitions under `#/components/schemas/`).
    #[cfg(feature = "asyncapi")]
    pub(crate) fn add<T: schemars::JsonSchema>(&mut self) {
        let mut generator = schemars::generate::SchemaSettings::draft07()
            .with(|settings| {
                settings.definitions_path = "/components/schemas".into();
                settings.meta_schema = None;
            })
            .into_generator();
        let schema = generator.subschema_for::<T>();
        for (name, definition) in generator.take_definitions(true) {
            self.definitions.insert(name, definition);
        }
        self.by_type
            .insert(std::any::type_name::<T>(), schema.to_value());
    }
}
