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
        thread_local! {
            /// Where payloads are written before they are copied out at their
            /// exact size: one allocation per payload instead of two (a
            /// `Vec` with spare capacity becomes `Bytes` through another box).
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        /// Payloads up to this size are copied out of the scratch buffer;
        /// larger ones take it over (a copy would cost more than the box).
        const COPY_UP_TO: usize = 16 * 1024;
        let encoded = SCRATCH.with(|scratch| {
            let Ok(mut buffer) = scratch.try_borrow_mut() else {
                // A `Serialize` impl that encodes while being encoded.
                return serde_json::to_vec(value).map(Bytes::from);
            };
            buffer.clear();
            serde_json::to_writer(&mut *buffer, value)?;
            Ok(if buffer.as_slice() == b"null" {
                // `()` and `None`, e.g. an event handler's reply: no allocation.
                Bytes::from_static(b"null")
            } else if buffer.len() <= COPY_UP_TO {
                Bytes::copy_from_slice(&buffer)
            } else {
                Bytes::from(std::mem::take(&mut *buffer))
            })
        });
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
