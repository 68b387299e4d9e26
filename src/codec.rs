//! Codecs: how typed values become payload bytes and back.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// A payload encoding. [`Json`] is the one the typed helpers use.
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
pub struct Json;

impl Codec for Json {
    const CONTENT_TYPE: &'static str = crate::wire::JSON;

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
