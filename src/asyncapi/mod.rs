//! AsyncAPI 3.0 documents generated from the running configuration: which
//! subjects are requests with replies and which are events is the route
//! table's decision, so the document follows the configuration — flipping a
//! route's style in the TOML changes the document and nothing else.
//!
//! [`Service::asyncapi`](crate::Service::asyncapi) describes what a service
//! receives: one channel per handler with its address on its backend (NATS
//! subject, Kafka topic, HTTP path, gRPC method), a `receive` operation, and
//! for a sync route a `reply`; message payloads carry the JSON Schema of the
//! handler's Rust types where the service registered them
//! ([`Service::schema`](crate::Service::schema), feature `asyncapi`), and
//! say which type has none otherwise. [`Bus::asyncapi`](crate::Bus::asyncapi)
//! describes the route table alone (what a caller sends), and
//! `switchboard asyncapi --config FILE` prints it for a settings file.

mod schemas;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

pub use schemas::Schemas;

/// One subject a document describes, and what goes over it.
pub(crate) struct Channel<'a> {
    /// The subject or pattern.
    pub subject: &'a str,
    /// `true`: request/reply; `false`: events.
    pub sync: bool,
    /// The name of the transport under `[transports]`.
    pub transport: &'a str,
    /// The backend (`nats`, `kafka`, `http`, …).
    pub backend: &'static str,
    /// The payload's `content-type`.
    pub content_type: &'static str,
    /// The Rust type of the payload, when known.
    pub payload: Option<&'a str>,
    /// The Rust type of the reply, when known.
    pub reply: Option<&'a str>,
}

/// A transport a document names as a server.
pub(crate) struct Server<'a> {
    pub name: &'a str,
    pub backend: &'static str,
    /// Where it is reached, without credentials; `None` when unknown.
    pub url: Option<&'a str>,
}

/// Whose point of view a document takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A service: it receives what is sent to its channels.
    Receiver,
    /// A caller: it sends.
    Sender,
}

/// The document for `title`'s channels.
pub(crate) fn document(
    title: &str,
    side: Side,
    servers: &[Server<'_>],
    channels: &[Channel<'_>],
    schemas: &Schemas,
) -> Value {
    let mut server_map = Map::new();
    for server in servers {
        server_map.insert(key(server.name), server_object(server));
    }
    let mut channel_map = Map::new();
    let mut operation_map = Map::new();
    let mut message_map = Map::new();
    for channel in channels {
        let id = key(channel.subject);
        let request = message(
            &mut message_map,
            channel.payload,
            channel.content_type,
            schemas,
        );
        channel_map.insert(
            id.clone(),
            json!({
                "address": address(channel),
                "title": channel.subject,
                "description": describe(channel),
                "servers": [{ "$ref": format!("#/servers/{}", key(channel.transport)) }],
                "messages": { "request": { "$ref": format!("#/components/messages/{request}") } },
            }),
        );
        let action = match side {
            Side::Receiver => "receive",
            Side::Sender => "send",
        };
        let mut operation = json!({
            "action": action,
            "channel": { "$ref": format!("#/channels/{id}") },
            "messages": [{ "$ref": format!("#/channels/{id}/messages/request") }],
            "summary": if channel.sync {
                format!("request/reply on `{}`", channel.subject)
            } else {
                format!("events on `{}`", channel.subject)
            },
        });
        if channel.sync {
            let reply = message(
                &mut message_map,
                channel.reply,
                channel.content_type,
                schemas,
            );
            let reply_id = format!("{id}.reply");
            channel_map.insert(
                reply_id.clone(),
                json!({
                    "address": null,
                    "description": "The reply goes back to the caller's own reply address.",
                    "messages": { "reply": { "$ref": format!("#/components/messages/{reply}") } },
                }),
            );
            operation["reply"] = json!({
                "channel": { "$ref": format!("#/channels/{reply_id}") },
                "messages": [{ "$ref": format!("#/channels/{reply_id}/messages/reply") }],
            });
        }
        operation_map.insert(id, operation);
    }
    let mut components = Map::new();
    components.insert("messages".into(), Value::Object(message_map));
    let definitions = schemas.definitions();
    if !definitions.is_empty() {
        components.insert("schemas".into(), Value::Object(definitions.clone()));
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated by switchboard from the route table: a sync route is an operation with a reply, an async route an event.",
        },
        "defaultContentType": "application/json",
        "servers": server_map,
        "channels": channel_map,
        "operations": operation_map,
        "components": components,
    })
}

fn server_object(server: &Server<'_>) -> Value {
    let parsed = server.url.and_then(|url| url::Url::parse(url).ok());
    let host = parsed
        .as_ref()
        .and_then(|url| {
            let host = url.host_str()?;
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_else(|| match server.backend {
            "memory" => "in-process".to_owned(),
            _ => "unknown".to_owned(),
        });
    let mut object = json!({
        "host": host,
        "protocol": protocol(server.backend),
        "description": format!("switchboard transport `{}` ({})", server.name, server.backend),
    });
    if let Some(path) = parsed
        .as_ref()
        .map(url::Url::path)
        .filter(|path| !path.is_empty() && *path != "/")
    {
        object["pathname"] = json!(path);
    }
    object
}

/// The protocol name AsyncAPI uses for a backend.
fn protocol(backend: &str) -> &str {
    match backend {
        "http" => "http",
        "grpc" => "grpc",
        "nats" => "nats",
        "kafka" => "kafka",
        other => other,
    }
}

/// Where a channel is on its backend.
fn address(channel: &Channel<'_>) -> String {
    match (channel.backend, channel.sync) {
        ("http", true) => format!("/requests/{}", channel.subject),
        ("http", false) => format!("/events/{}", channel.subject),
        ("grpc", true) => "/switchboard.v1.Switchboard/Request".to_owned(),
        ("grpc", false) => "/switchboard.v1.Switchboard/Publish".to_owned(),
        // NATS subjects and Kafka topics are the subject itself; in-process too.
        _ => channel.subject.to_owned(),
    }
}

fn describe(channel: &Channel<'_>) -> String {
    let style = if channel.sync {
        "sync: request/reply"
    } else {
        "async: events"
    };
    let place = match channel.backend {
        "nats" => "the NATS subject",
        "kafka" => "the Kafka topic",
        "http" => "the HTTP path (POST)",
        "grpc" => "the gRPC method; the subject travels in the envelope's `subject` field",
        _ => "the subject",
    };
    format!(
        "`{}` ({style}) on transport `{}`; the address is {place}.",
        channel.subject, channel.transport
    )
}

/// Adds the message for `rust_type` (once) and returns its id.
fn message(
    messages: &mut Map<String, Value>,
    rust_type: Option<&str>,
    content_type: &str,
    schemas: &Schemas,
) -> String {
    let Some(rust_type) = rust_type else {
        let id = format!("Any.{}", content_key(content_type));
        messages.entry(id.clone()).or_insert_with(|| {
            json!({
                "name": "Any",
                "contentType": content_type,
                "summary": "Any payload: the route table does not say which type is sent.",
                "payload": {},
            })
        });
        return id;
    };
    let id = format!(
        "{}.{}",
        key(short_name(rust_type)),
        content_key(content_type)
    );
    if messages.contains_key(&id) {
        return id;
    }
    let object = match schemas.payload(rust_type) {
        Some(schema) => json!({
            "name": short_name(rust_type),
            "title": rust_type,
            "contentType": content_type,
            "payload": schema,
        }),
        None => json!({
            "name": short_name(rust_type),
            "title": rust_type,
            "contentType": content_type,
            "summary": format!("No schema: the service registered none for `{rust_type}` (`Service::schema::<T>()`, feature `asyncapi`)."),
            "payload": {},
        }),
    };
    messages.insert(id.clone(), object);
    id
}

fn content_key(content_type: &str) -> &str {
    content_type.rsplit('/').next().unwrap_or(content_type)
}

/// The last path segment of a Rust type name, generics kept (`Vec<Order>`).
fn short_name(rust_type: &str) -> &str {
    let generic = rust_type.find('<').unwrap_or(rust_type.len());
    let start = rust_type[..generic].rfind("::").map_or(0, |at| at + 2);
    &rust_type[start..]
}

/// A component key: AsyncAPI allows letters, digits, `.`, `-` and `_`.
fn key(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
}

/// Servers named by `channels`, each once, with its URL where known.
pub(crate) fn servers_of<'a>(
    channels: &[Channel<'a>],
    url_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<Server<'a>> {
    let mut servers: BTreeMap<&str, Server<'a>> = BTreeMap::new();
    for channel in channels {
        servers.entry(channel.transport).or_insert_with(|| Server {
            name: channel.transport,
            backend: channel.backend,
            url: url_of(channel.transport),
        });
    }
    servers.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_keys_are_allowed_characters() {
        assert_eq!(short_name("my_app::orders::GetOrder"), "GetOrder");
        assert_eq!(short_name("alloc::vec::Vec<my::Order>"), "Vec<my::Order>");
        assert_eq!(key("orders.*"), "orders._");
        assert_eq!(key("events.>"), "events._");
        assert_eq!(key("Vec<my::Order>"), "Vec_my__Order_");
    }
}
