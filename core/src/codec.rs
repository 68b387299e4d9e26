//! Codecs: how typed values become payload bytes and back.
//!
//! The built-in codecs write payloads into a 4 KiB chunk each thread keeps
//! and split each payload off it: encoding allocates nothing of its own,
//! and a payload kept long keeps its chunk (at most 4 KiB) alive. A payload
//! over 4 KiB has its buffer to itself.

use bytes::{BufMut, Bytes};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// A payload encoding. [`JsonCodec`] is the one the typed helpers use.
pub trait Codec {
    /// The `content-type` header value for payloads in this encoding.
    const CONTENT_TYPE: &'static str;

    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes>;

    /// Decodes a value; a payload that does not fit `T` is an [`Error::Codec`].
    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T>;
}

/// JSON via `serde_json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// The JSON codec's former name (one `Json` is enough: `handler::Json`
/// is the handler's JSON reply).
#[deprecated(since = "0.1.0", note = "renamed to `JsonCodec`")]
#[doc(hidden)]
pub type Json = JsonCodec;

impl Codec for JsonCodec {
    const CONTENT_TYPE: &'static str = crate::wire::names::JSON;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
        let encoded =
            crate::chunked::encode(|buffer| serde_json::to_writer(buffer.writer(), value)).map(
                |payload| match &payload[..] {
                    // `()` and `None`, e.g. an event handler's reply: no chunk held.
                    b"null" => Bytes::from_static(b"null"),
                    _ => payload,
                },
            );
        encoded.map_err(|e| Error::Codec {
            message: format!("cannot encode JSON: {e}"),
            source: Some(Box::new(e)),
        })
    }

    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
        // An empty payload is JSON `null`: a handler returning `()` replies with no bytes.
        let payload = if payload.is_empty() {
            &b"null"[..]
        } else {
            payload
        };
        serde_json::from_slice(payload).map_err(|e| Error::Codec {
            message: format!(
                "cannot decode JSON into {}: {e}",
                std::any::type_name::<T>()
            ),
            source: Some(Box::new(e)),
        })
    }
}

/// MessagePack via `rmp-serde` (feature `msgpack`): structs as maps with
/// field names, so a receiver need not share the sender's field order.
#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPackCodec;

#[cfg(feature = "msgpack")]
impl Codec for MsgPackCodec {
    const CONTENT_TYPE: &'static str = crate::wire::names::MSGPACK;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
        crate::chunked::encode(|buffer| rmp_serde::encode::write_named(&mut buffer.writer(), value))
            .map_err(|e| Error::Codec {
                message: format!("cannot encode MessagePack: {e}"),
                source: Some(Box::new(e)),
            })
    }

    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
        rmp_serde::from_slice(payload).map_err(|e| Error::Codec {
            message: format!(
                "cannot decode MessagePack into {}: {e}",
                std::any::type_name::<T>()
            ),
            source: Some(Box::new(e)),
        })
    }
}

/// CBOR (RFC 8949) via `ciborium` (feature `cbor`).
#[cfg(feature = "cbor")]
#[cfg_attr(docsrs, doc(cfg(feature = "cbor")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CborCodec;

#[cfg(feature = "cbor")]
impl Codec for CborCodec {
    const CONTENT_TYPE: &'static str = crate::wire::names::CBOR;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
        crate::chunked::encode(|buffer| ciborium::into_writer(value, buffer.writer())).map_err(
            |e| Error::Codec {
                message: format!("cannot encode CBOR: {e}"),
                source: Some(Box::new(e)),
            },
        )
    }

    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
        ciborium::from_reader(payload).map_err(|e| Error::Codec {
            message: format!(
                "cannot decode CBOR into {}: {e}",
                std::any::type_name::<T>()
            ),
            source: Some(Box::new(e)),
        })
    }
}

/// A payload encoding chosen at run time: by a route's `codec` setting when
/// sending, by the message's `content-type` when receiving. Each is compiled
/// in by its feature (`msgpack`, `cbor`, `protobuf`); JSON always is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Encoding {
    /// JSON, the default: sent without a `content-type` header.
    #[default]
    Json,
    /// MessagePack (`application/msgpack`), feature `msgpack`.
    #[serde(rename = "msgpack")]
    MsgPack,
    /// CBOR (`application/cbor`), feature `cbor`.
    Cbor,
    /// Protocol Buffers (`application/protobuf`), feature `protobuf`: prost
    /// message types, carried as `switchboard::Proto<T>` (serde values have
    /// no field numbers, so [`encode`](Self::encode) and
    /// [`decode`](Self::decode) refuse them).
    Protobuf,
}

impl Encoding {
    /// The encoding a received message's `content-type` header names: none
    /// (or any type this crate has no codec for, such as `text/plain`) is
    /// JSON, as it always was; MessagePack and CBOR by their media types,
    /// whether or not their feature is compiled in (decoding then says which
    /// feature is missing). `Message::encoding` asks the same of a message.
    pub fn of_headers(headers: &crate::headers::Headers) -> Encoding {
        match headers.get(crate::wire::names::CONTENT_TYPE) {
            None => Encoding::Json,
            Some(value) => Encoding::from_content_type(value),
        }
    }

    /// The encoding of a `content-type` value (parameters such as
    /// `; charset=utf-8` are ignored); JSON for any other type.
    pub fn from_content_type(value: &str) -> Encoding {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/msgpack")
            || media.eq_ignore_ascii_case("application/x-msgpack")
            || media.eq_ignore_ascii_case("application/vnd.msgpack")
        {
            Encoding::MsgPack
        } else if media.eq_ignore_ascii_case("application/cbor") {
            Encoding::Cbor
        } else if media.eq_ignore_ascii_case("application/protobuf")
            || media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/vnd.google.protobuf")
        {
            Encoding::Protobuf
        } else {
            Encoding::Json
        }
    }

    /// The `content-type` this encoding is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => crate::wire::names::JSON,
            Encoding::MsgPack => crate::wire::names::MSGPACK,
            Encoding::Cbor => crate::wire::names::CBOR,
            Encoding::Protobuf => crate::wire::names::PROTOBUF,
        }
    }

    /// Whether this build can encode and decode it.
    pub fn is_compiled_in(self) -> bool {
        match self {
            Encoding::Json => true,
            Encoding::MsgPack => cfg!(feature = "msgpack"),
            Encoding::Cbor => cfg!(feature = "cbor"),
            Encoding::Protobuf => cfg!(feature = "protobuf"),
        }
    }

    /// The Cargo feature that compiles it in (`None` for JSON).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Encoding::Json => None,
            Encoding::MsgPack => Some("msgpack"),
            Encoding::Cbor => Some("cbor"),
            Encoding::Protobuf => Some("protobuf"),
        }
    }

    /// Encodes `value`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes> {
        match self {
            Encoding::Json => JsonCodec::encode(value),
            #[cfg(feature = "msgpack")]
            Encoding::MsgPack => MsgPackCodec::encode(value),
            #[cfg(feature = "cbor")]
            Encoding::Cbor => CborCodec::encode(value),
            #[cfg(feature = "protobuf")]
            Encoding::Protobuf => Err(Encoding::not_serde("send `switchboard::Proto(value)`")),
            #[allow(unreachable_patterns)]
            missing => Err(missing.not_compiled_in()),
        }
    }

    /// Decodes `payload` into `T`.
    pub fn decode<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T> {
        match self {
            Encoding::Json => JsonCodec::decode(payload),
            #[cfg(feature = "msgpack")]
            Encoding::MsgPack => MsgPackCodec::decode(payload),
            #[cfg(feature = "cbor")]
            Encoding::Cbor => CborCodec::decode(payload),
            #[cfg(feature = "protobuf")]
            Encoding::Protobuf => Err(Encoding::not_serde(&format!(
                "decode it as `switchboard::Proto<M>` where M is the prost message, not as {}",
                std::any::type_name::<T>()
            ))),
            #[allow(unreachable_patterns)]
            missing => Err(missing.not_compiled_in()),
        }
    }

    #[cfg(feature = "protobuf")]
    fn not_serde(what_to_do: &str) -> Error {
        Error::Codec {
            message: format!(
                "Protobuf payloads are prost messages, not serde values: {what_to_do}"
            ),
            source: None,
        }
    }

    #[allow(dead_code)] // Unused when every codec is compiled in.
    fn not_compiled_in(self) -> Error {
        Error::Codec {
            message: format!(
                "the payload is {}, and this build of switchboard has no codec for it: enable its `{}` feature",
                self.content_type(),
                self.feature().unwrap_or("json")
            ),
            source: None,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Json => "json",
            Encoding::MsgPack => "msgpack",
            Encoding::Cbor => "cbor",
            Encoding::Protobuf => "protobuf",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        item: String,
    }

    #[test]
    fn content_types_are_read_leniently() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Encoding::Json
        );
        assert_eq!(Encoding::from_content_type("text/plain"), Encoding::Json);
        assert_eq!(
            Encoding::from_content_type("Application/X-MsgPack"),
            Encoding::MsgPack
        );
        assert_eq!(
            Encoding::from_content_type("application/cbor"),
            Encoding::Cbor
        );
    }

    #[test]
    fn a_payload_that_does_not_fit_is_a_codec_error() {
        for encoding in [Encoding::MsgPack, Encoding::Cbor] {
            let err = encoding.decode::<Order>(b"\xff\x00garbage").unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Codec, "{err}");
        }
    }
}
