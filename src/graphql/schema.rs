//! The GraphQL schema the route table describes: a field per exposed subject,
//! built at run time (async-graphql's dynamic schema).

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Scalar, Schema,
    Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::{ErrorExtensions, Value};
use futures_util::StreamExt;

use crate::bus::{Bus, Sent};
use crate::error::{Error, Result};
use crate::settings::{GraphqlExposure, GraphqlSettings, Settings};
use crate::subject;

use super::typed::{Shapes, Types};

/// The scalar every payload travels as: any JSON value.
const JSON: &str = "JSON";
/// The type a subscription streams.
const EVENT: &str = "Event";

/// One exposed subject: the field that carries it and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedField {
    /// The GraphQL field name (the subject with `.` and `-` turned into `_`).
    pub name: String,
    /// The subject (or, for a subscription, the pattern) it carries.
    pub subject: String,
    /// Query, mutation or subscription.
    pub exposure: GraphqlExposure,
}

/// The fields `settings.routes` exposes, checked: concrete subjects for
/// queries and mutations, no two fields with one name.
pub fn exposed_fields(settings: &Settings) -> Result<Vec<ExposedField>> {
    let mut fields: Vec<ExposedField> = Vec::new();
    for route in &settings.routes {
        let Some(exposure) = route.graphql else {
            continue;
        };
        let subject = route.subjects.as_str();
        let problem = |why: String| Error::config(format!("graphql route `{subject}`: {why}"));
        match exposure {
            GraphqlExposure::Subscription => subject::validate_pattern(subject)
                .map_err(|err| problem(err.to_string()))?,
            _ if subject::is_pattern(subject) => {
                return Err(problem(
                    "a query or mutation needs one subject, not a pattern (patterns can be subscriptions)"
                        .into(),
                ))
            }
            _ => subject::validate(subject).map_err(|err| problem(err.to_string()))?,
        }
        let name = field_name(subject);
        if let Some(twin) = fields
            .iter()
            .find(|f| f.name == name && f.exposure == exposure)
        {
            return Err(problem(format!(
                "its field name `{name}` is already taken by `{}`",
                twin.subject
            )));
        }
        fields.push(ExposedField {
            name,
            subject: subject.to_owned(),
            exposure,
        });
    }
    Ok(fields)
}

/// `orders.place` → `orders_place`, `*`/`>` → `any`/`all`: a valid GraphQL name.
fn field_name(subject: &str) -> String {
    let name: String = subject
        .split('.')
        .map(|token| match token {
            "*" => "any".to_owned(),
            ">" => "all".to_owned(),
            token => token.replace('-', "_"),
        })
        .collect::<Vec<_>>()
        .join("_");
    match name.starts_with(|c: char| c.is_ascii_digit()) {
        true => format!("_{name}"),
        false => name,
    }
}

/// Builds the schema: `Query` (always, with `subjects` listing what is
/// exposed), `Mutation` and `Subscription` when a route asks for them; the
/// subjects `types` names get typed fields, the others `JSON`.
pub fn build(
    bus: Bus,
    fields: &[ExposedField],
    limits: &GraphqlSettings,
    types: &Types,
) -> Result<Schema> {
    for subject in types.subjects() {
        let exposed = fields.iter().find(|f| f.subject == subject);
        let fits = match exposed.map(|f| f.exposure) {
            Some(GraphqlExposure::Subscription) => types.event_payload(subject).is_some(),
            Some(_) => types.call_types(subject).is_some(),
            None => false,
        };
        if !fits {
            return Err(Error::config(format!(
                "graphql: `{subject}` has types but no route exposes it that way (`call` types need graphql = \"query\" or \"mutation\", `events` types graphql = \"subscription\")"
            )));
        }
    }
    let (typed, shapes) = types.schema_types()?;
    let listed: Vec<Value> = fields
        .iter()
        .map(|f| Value::from(format!("{:?} {} ({})", f.exposure, f.name, f.subject)))
        .collect();
    let mut query = Object::new("Query").field(
        Field::new(
            "subjects",
            TypeRef::named_nn_list_nn(TypeRef::STRING),
            move |_| {
                let listed = listed.clone();
                FieldFuture::new(async move { Ok(Some(Value::List(listed))) })
            },
        )
        .description("What this gateway exposes: kind, field and subject."),
    );
    let mut mutation = Object::new("Mutation");
    let mut subscription = Subscription::new("Subscription");
    let (mut mutations, mut subscriptions) = (0, 0);
    let mut event_objects = Vec::new();
    for field in fields {
        match field.exposure {
            GraphqlExposure::Query => query = query.field(call_field(&bus, field, types, &shapes)),
            GraphqlExposure::Mutation => {
                mutation = mutation.field(call_field(&bus, field, types, &shapes));
                mutations += 1;
            }
            GraphqlExposure::Subscription => {
                let payload = types.event_payload(&field.subject);
                if let Some(payload) = &payload {
                    event_objects.push(event_type(
                        &event_type_name(&field.name),
                        Some((payload.clone(), shapes.clone())),
                    ));
                }
                subscription = subscription.field(events_field(&bus, field, payload.is_some()));
                subscriptions += 1;
            }
        }
    }
    let mut builder = Schema::build(
        "Query",
        (mutations > 0).then_some("Mutation"),
        (subscriptions > 0).then_some("Subscription"),
    )
    .register(Scalar::new(JSON).description("Any JSON value."))
    .register(event_type(EVENT, None))
    .register(query)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
    for object in event_objects {
        builder = builder.register(object);
    }
    for ty in typed {
        builder = ty.register(builder, &shapes);
    }
    if mutations > 0 {
        builder = builder.register(mutation);
    }
    if subscriptions > 0 {
        builder = builder.register(subscription);
    }
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder
        .finish()
        .map_err(|err| Error::config(format!("graphql schema: {err}")))
}

/// A query or mutation: `field(input: JSON): JSON`, or typed by `types`,
/// sent as the route decides.
fn call_field(bus: &Bus, field: &ExposedField, types: &Types, shapes: &Arc<Shapes>) -> Field {
    let bus = bus.clone();
    let subject: Arc<str> = field.subject.as_str().into();
    let exposure = field.exposure;
    let typed = types.call_types(&field.subject).cloned();
    let doc = match (exposure, typed.is_some()) {
        (GraphqlExposure::Query, _) => format!("Requests `{subject}` (in either style); the reply."),
        (_, false) => format!(
            "Sends to `{subject}` in the style its route decides: the reply (sync), or {{\"accepted\": true}} (async)."
        ),
        (_, true) => format!(
            "Sends to `{subject}` in the style its route decides: the reply (sync), or null once accepted (async)."
        ),
    };
    let (input_type, output_type) = match &typed {
        Some(typed) => (
            typed.input.clone(),
            match (exposure, &typed.output) {
                // An async route's mutation has no reply: the result may be null.
                (GraphqlExposure::Mutation, TypeRef::NonNull(inner)) => (**inner).clone(),
                (_, output) => output.clone(),
            },
        ),
        None => (TypeRef::named(JSON), TypeRef::named(JSON)),
    };
    let shapes = shapes.clone();
    Field::new(
        &field.name,
        output_type.clone(),
        move |ctx: ResolverContext| {
            let (bus, subject, typed, shapes, output_type) = (
                bus.clone(),
                subject.clone(),
                typed.clone(),
                shapes.clone(),
                output_type.clone(),
            );
            FieldFuture::new(async move {
                let given = ctx.args.get("input").map(|input| input.as_value().clone());
                let input = match (&typed, given) {
                    (Some(typed), given) => {
                        (typed.parse)(given).map_err(async_graphql::Error::new)?
                    }
                    (None, Some(given)) => given.into_json()?,
                    (None, None) => serde_json::Value::Null,
                };
                // A query asks for an answer: always a request, whatever the
                // route's style (as the shop's reports are). A mutation goes as
                // the route table decides.
                let sent = match exposure {
                    GraphqlExposure::Query => {
                        bus.request_json(&subject, &input).await.map(Sent::Replied)
                    }
                    _ => bus.send::<_, serde_json::Value>(&subject, &input).await,
                };
                match (sent.map_err(graphql_error)?, typed.is_some()) {
                    (Sent::Replied(reply), true) => shapes.field_value(reply, &output_type),
                    (Sent::Replied(reply), false) => {
                        Ok(Some(FieldValue::value(Value::from_json(reply)?)))
                    }
                    (Sent::Accepted | Sent::Deferred(_), true) => Ok(None),
                    (Sent::Accepted, false) => Ok(Some(FieldValue::value(Value::from_json(
                        serde_json::json!({ "accepted": true }),
                    )?))),
                    // A sync mutation whose responder is away, published instead.
                    (Sent::Deferred(deferred), false) => Ok(Some(FieldValue::value(
                        Value::from_json(serde_json::json!({
                            "accepted": true,
                            "deferred": deferred.id,
                            "outcomes": deferred.outcomes,
                        }))?,
                    ))),
                }
            })
        },
    )
    .argument(InputValue::new("input", input_type))
    .description(doc)
}

/// `orders_settled` → `OrdersSettledEvent`: the event type of a typed subscription.
fn event_type_name(field: &str) -> String {
    let mut name: String = field
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    name.push_str(EVENT);
    name
}

/// One event as a subscription streams it.
struct Event {
    subject: String,
    payload: serde_json::Value,
    headers: serde_json::Value,
}

/// The type a subscription streams: `Event` (payload `JSON`), or a subject's
/// own with the payload typed.
fn event_type(name: &str, typed: Option<(TypeRef, Arc<Shapes>)>) -> Object {
    let field = |name: &str, ty: TypeRef, read: fn(&Event) -> Value| {
        Field::new(name, ty, move |ctx: ResolverContext| {
            FieldFuture::new(async move {
                let event = ctx.parent_value.try_downcast_ref::<Event>()?;
                Ok(Some(read(event)))
            })
        })
    };
    let payload = match typed {
        None => field("payload", TypeRef::named(JSON), |e| {
            Value::from_json(e.payload.clone()).unwrap_or(Value::Null)
        })
        .description("The payload as JSON; a payload that is not JSON comes as a string."),
        Some((payload, shapes)) => Field::new("payload", payload.clone(), move |ctx| {
            let (payload, shapes) = (payload.clone(), shapes.clone());
            FieldFuture::new(async move {
                let event = ctx.parent_value.try_downcast_ref::<Event>()?;
                shapes.field_value(event.payload.clone(), &payload)
            })
        })
        .description("The payload, read as its type."),
    };
    Object::new(name)
        .description("An event received on a subscribed subject.")
        .field(field("subject", TypeRef::named_nn(TypeRef::STRING), |e| {
            Value::from(e.subject.clone())
        }))
        .field(payload)
        .field(field("headers", TypeRef::named_nn(JSON), |e| {
            Value::from_json(e.headers.clone()).unwrap_or(Value::Null)
        }))
}

/// A subscription: every event on the subject or pattern, from subscribe on.
fn events_field(bus: &Bus, field: &ExposedField, typed: bool) -> SubscriptionField {
    let bus = bus.clone();
    let pattern: Arc<str> = field.subject.as_str().into();
    let doc = format!("Events published on `{pattern}` from the moment of subscribing.");
    let event = match typed {
        true => event_type_name(&field.name),
        false => EVENT.to_owned(),
    };
    SubscriptionField::new(&field.name, TypeRef::named_nn(event), move |_| {
        let (bus, pattern) = (bus.clone(), pattern.clone());
        SubscriptionFieldFuture::new(async move {
            let subscription = bus.subscribe(&pattern).await.map_err(graphql_error)?;
            Ok(subscription.map(|incoming| {
                let payload = serde_json::from_slice(incoming.payload()).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(incoming.payload()).into())
                });
                let headers = incoming
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.to_owned(), serde_json::Value::from(value)))
                    .collect::<serde_json::Map<_, _>>();
                Ok::<_, async_graphql::Error>(FieldValue::owned_any(Event {
                    subject: incoming.subject().to_owned(),
                    payload,
                    headers: serde_json::Value::Object(headers),
                }))
            }))
        })
    })
    .description(doc)
}

/// A switchboard error as a GraphQL error: the message, with the error kind
/// (`timeout`, `no_responders`, `remote`, …), whether a retry may succeed,
/// the handler's rejection code when it gave one, and who refused
/// (`service`, `subject`: the handler that refused first), in `extensions`.
pub fn graphql_error(err: Error) -> async_graphql::Error {
    let (kind, retryable) = (err.kind().as_str(), err.is_retryable());
    let code = err.code().map(str::to_owned);
    let origin = err.origin().cloned();
    async_graphql::Error::new(err.to_string()).extend_with(move |_, extensions| {
        extensions.set("kind", kind);
        extensions.set("retryable", retryable);
        if let Some(code) = &code {
            extensions.set("code", code.as_str());
        }
        if let Some(origin) = &origin {
            extensions.set("service", origin.service.as_str());
            extensions.set("subject", origin.subject.as_str());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_graphql_names() {
        assert_eq!(field_name("orders.place"), "orders_place");
        assert_eq!(field_name("shop-1.stock.*"), "shop_1_stock_any");
        assert_eq!(field_name("orders.>"), "orders_all");
        assert_eq!(field_name("1st.step"), "_1st_step");
        assert_eq!(event_type_name("orders_settled"), "OrdersSettledEvent");
    }
}
