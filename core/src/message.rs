//! The message type every backend carries: payload bytes plus headers.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{Codec, Encoding, JsonCodec};
use crate::error::Result;
use crate::headers::Headers;
use crate::wire::names as wire;

/// A message: an opaque payload and string headers.
///
/// The payload is [`Bytes`], so cloning a message (for fan-out) does not copy it.
///
/// ```
/// use switchboard::Message;
/// let msg = Message::new("hello").with_header("tenant", "acme");
/// assert_eq!(&msg.payload[..], b"hello");
/// assert_eq!(msg.headers.get("tenant"), Some("acme"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The payload bytes, passed through untouched.
    pub payload: Bytes,
    /// The headers; see [`Headers`] for the rules and [`wire`](crate::wire) for reserved names.
    pub headers: Headers,
}

impl Message {
    /// A message with this payload and no headers.
    #[inline]
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Message {
            payload: payload.into(),
            headers: Headers::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the partition key (`sb-key`): messages with the same key keep their
    /// order on partitioned backends (Kafka). Other backends ignore it.
    pub fn with_key(self, key: impl Into<String>) -> Self {
        self.with_header(wire::KEY, key)
    }

    /// Sets an idempotency key: a publish retried with the same id is stored
    /// once on backends that de-duplicate (NATS JetStream, within its window).
    pub fn with_id(self, id: impl Into<String>) -> Self {
        self.with_header(wire::MESSAGE_ID, id)
    }

    /// Encodes `value` with codec `C`, and sets `content-type` unless `C` is
    /// the default codec (JSON): a message without `content-type` is JSON, so
    /// the common case crosses every wire without a header (on NATS that
    /// halves the cost of a typed call, see BENCHMARKS.md).
    pub fn encode<C: Codec, T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let message = Message::new(C::encode(value)?);
        Ok(match C::CONTENT_TYPE {
            wire::JSON => message,
            other => message.with_header(wire::CONTENT_TYPE, other),
        })
    }

    /// Decodes the payload with codec `C`.
    pub fn decode<C: Codec, T: DeserializeOwned>(&self) -> Result<T> {
        C::decode(&self.payload)
    }

    /// Encodes `value` in `encoding` (chosen at run time, as a route's
    /// `codec` setting does), with its `content-type` unless it is JSON.
    pub fn encode_as<T: Serialize + ?Sized>(encoding: Encoding, value: &T) -> Result<Self> {
        let message = Message::new(encoding.encode(value)?);
        Ok(match encoding {
            Encoding::Json => message,
            other => message.with_header(wire::CONTENT_TYPE, other.content_type()),
        })
    }

    /// The encoding this message's `content-type` names (JSON without one;
    /// see [`Encoding::of_headers`]).
    pub fn encoding(&self) -> Encoding {
        Encoding::of_headers(&self.headers)
    }

    /// Decodes the payload in the encoding its `content-type` names (JSON
    /// without one), as typed handlers do.
    pub fn decode_typed<T: DeserializeOwned>(&self) -> Result<T> {
        self.encoding().decode(&self.payload)
    }

    /// Serialises `value` as JSON (the default codec: no `content-type` header is added).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::encode::<JsonCodec, T>(value)
    }

    /// Deserialises the payload from JSON.
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode::<JsonCodec, T>()
    }
}

impl From<Bytes> for Message {
    fn from(payload: Bytes) -> Self {
        Message::new(payload)
    }
}

impl From<&'static str> for Message {
    fn from(payload: &'static str) -> Self {
        Message::new(payload)
    }
}

impl From<Vec<u8>> for Message {
    fn from(payload: Vec<u8>) -> Self {
        Message::new(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        item: String,
        tags: Vec<String>,
    }

    #[test]
    fn every_compiled_encoding_round_trips_and_names_its_content_type() {
        let order = Order {
            id: 7,
            item: "tea".into(),
            tags: vec!["hot".into()],
        };
        for encoding in [Encoding::Json, Encoding::MsgPack, Encoding::Cbor] {
            let message = Message::encode_as(encoding, &order);
            if !encoding.is_compiled_in() {
                let err = message.unwrap_err().to_string();
                assert!(err.contains(encoding.feature().unwrap()), "{err}");
                continue;
            }
            let message = message.unwrap();
            assert_eq!(message.encoding(), encoding);
            assert_eq!(message.decode_typed::<Order>().unwrap(), order);
        }
    }

    #[test]
    fn json_round_trip_and_errors() {
        let msg = Message::json(&vec![1, 2, 3]).unwrap();
        assert_eq!(msg.headers.get("content-type"), None, "JSON is the default");
        assert_eq!(msg.decode_json::<Vec<i32>>().unwrap(), vec![1, 2, 3]);
        let err = Message::new("{not json")
            .decode_json::<Vec<i32>>()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Codec);
    }
}
