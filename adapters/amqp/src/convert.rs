//! Mapping between switchboard messages and AMQP: subjects as routing keys,
//! headers as the header table, `content-type` as the AMQP property.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;

use switchboard_core::error::Error;
use switchboard_core::headers::Headers;
use switchboard_core::message::Message;
use switchboard_core::wire;

/// The backend name used in errors and capabilities.
pub(crate) const BACKEND: &str = "amqp";

/// A subject or pattern as a topic exchange binding key: `*` is AMQP's `*`
/// and `>` (one or more tokens) AMQP's `#` (zero or more; a delivery that
/// `>` would not match is filtered out on receipt, see [`switchboard_core::subject::matches`]).
pub(crate) fn binding_key(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|token| if token == ">" { "#" } else { token })
        .collect::<Vec<_>>()
        .join(".")
}

/// The properties of an outgoing message: its headers as the header table,
/// `content-type` as the AMQP property.
pub(crate) fn properties(headers: &Headers) -> BasicProperties {
    let mut table = FieldTable::default();
    let mut properties = BasicProperties::default();
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case(wire::CONTENT_TYPE) {
            properties = properties.with_content_type(ShortString::from(value));
        } else {
            table.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
        }
    }
    properties.with_headers(table)
}

/// The message in a delivery: its header table (values that are text,
/// numbers or booleans; a header that is not a portable name with a
/// printable-ASCII value is left out) and `content-type`.
pub(crate) fn message(payload: Vec<u8>, properties: &BasicProperties) -> Message {
    let mut headers = Headers::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let text = match value {
                AMQPValue::LongString(text) => {
                    String::from_utf8_lossy(text.as_bytes()).into_owned()
                }
                AMQPValue::ShortString(text) => text.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::ShortShortInt(n) => n.to_string(),
                AMQPValue::ShortShortUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                _ => continue,
            };
            headers.insert_received(name.as_str(), &text);
        }
    }
    if let Some(content_type) = properties.content_type() {
        headers.insert_received(wire::CONTENT_TYPE, content_type.as_str());
    }
    Message {
        payload: payload.into(),
        headers,
    }
}

/// A lapin error as a switchboard error.
pub(crate) fn error(err: lapin::Error) -> Error {
    Error::backend(BACKEND, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_binding_keys() {
        assert_eq!(binding_key("orders.placed"), "orders.placed");
        assert_eq!(binding_key("orders.*"), "orders.*");
        assert_eq!(binding_key("orders.>"), "orders.#");
        assert_eq!(binding_key(">"), "#");
    }

    #[test]
    fn headers_and_content_type_round_trip() {
        let mut headers = Headers::new();
        headers.insert("x-tenant", "acme");
        headers.insert(wire::CONTENT_TYPE, "application/cbor");
        let properties = properties(&headers);
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some("application/cbor")
        );
        let back = message(b"x".to_vec(), &properties);
        assert_eq!(back.headers.get("x-tenant"), Some("acme"));
        assert_eq!(
            back.headers.get(wire::CONTENT_TYPE),
            Some("application/cbor")
        );
    }
}
