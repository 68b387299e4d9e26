//! Codecs: how typed values become payload bytes and back.

use bytes::Bytes;
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
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::Codec {
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
