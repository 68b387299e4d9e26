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
/// exposed), `Mutation` and `Subscription` when a route asks for them.
pub fn build(bus: Bus, fields: &[ExposedField], limits: &GraphqlSettings) -> Result<Schema> {
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
    for field in fields {
        match field.exposure {
            GraphqlExposure::Query => query = query.field(call_field(&bus, field)),
            GraphqlExposure::Mutation => {
                mutation = mutation.field(call_field(&bus, field));
                mutations += 1;
            }
            GraphqlExposure::Subscription => {
                subscription = subscription.field(events_field(&bus, field));
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
    .register(event_type())
    .register(query)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
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

/// A query or mutation: `field(input: JSON): JSON`, sent as the route decides.
fn call_field(bus: &Bus, field: &ExposedField) -> Field {
    let bus = bus.clone();
    let subject: Arc<str> = field.subject.as_str().into();
    let exposure = field.exposure;
    let doc = match exposure {
        GraphqlExposure::Query => format!("Requests `{subject}` (in either style); the reply."),
        _ => format!(
            "Sends to `{subject}` in the style its route decides: the reply (sync), or {{\"accepted\": true}} (async)."
        ),
    };
    Field::new(
        &field.name,
        TypeRef::named(JSON),
        move |ctx: ResolverContext| {
            let (bus, subject) = (bus.clone(), subject.clone());
            FieldFuture::new(async move {
                let input = match ctx.args.get("input") {
                    Some(input) => input.as_value().clone().into_json()?,
                    None => serde_json::Value::Null,
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
                match sent.map_err(graphql_error)? {
                    Sent::Replied(reply) => Ok(Some(Value::from_json(reply)?)),
                    Sent::Accepted => Ok(Some(Value::from_json(
                        serde_json::json!({ "accepted": true }),
                    )?)),
                }
            })
        },
    )
    .argument(InputValue::new("input", TypeRef::named(JSON)))
    .description(doc)
}

/// One event as a subscription streams it.
struct Event {
    subject: String,
    payload: serde_json::Value,
    headers: serde_json::Value,
}

fn event_type() -> Object {
    let field = |name: &str, ty: TypeRef, read: fn(&Event) -> Value| {
        Field::new(name, ty, move |ctx: ResolverContext| {
            FieldFuture::new(async move {
                let event = ctx.parent_value.try_downcast_ref::<Event>()?;
                Ok(Some(read(event)))
            })
        })
    };
    Object::new(EVENT)
        .description("An event received on a subscribed subject.")
        .field(field("subject", TypeRef::named_nn(TypeRef::STRING), |e| {
            Value::from(e.subject.clone())
        }))
        .field(
            field("payload", TypeRef::named(JSON), |e| {
                Value::from_json(e.payload.clone()).unwrap_or(Value::Null)
            })
            .description("The payload as JSON; a payload that is not JSON comes as a string."),
        )
        .field(field("headers", TypeRef::named_nn(JSON), |e| {
            Value::from_json(e.headers.clone()).unwrap_or(Value::Null)
        }))
}

/// A subscription: every event on the subject or pattern, from subscribe on.
fn events_field(bus: &Bus, field: &ExposedField) -> SubscriptionField {
    let bus = bus.clone();
    let pattern: Arc<str> = field.subject.as_str().into();
    let doc = format!("Events published on `{pattern}` from the moment of subscribing.");
    SubscriptionField::new(&field.name, TypeRef::named_nn(EVENT), move |_| {
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
/// (`timeout`, `no_responders`, `remote`, …) and whether a retry may succeed
/// in `extensions`.
pub fn graphql_error(err: Error) -> async_graphql::Error {
    let (kind, retryable) = (err.kind().as_str(), err.is_retryable());
    async_graphql::Error::new(err.to_string()).extend_with(move |_, extensions| {
        extensions.set("kind", kind);
        extensions.set("retryable", retryable);
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
    }
}
