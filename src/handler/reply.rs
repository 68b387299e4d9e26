//! What a handler returns, and how it becomes a reply.

use std::any::TypeId;
use std::convert::Infallible;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;

use crate::codec::Encoding;
use crate::error::{Error, ErrorKind, Origin};
use crate::message::Message;

/// A handler's error: a message for people and an optional machine-readable
/// code the caller can match on ([`Error::code`]).
///
/// Handlers may return `Err` of any type that converts into a `Rejection`:
/// `String`, `&str`, [`Error`], `std::io::Error`, `serde_json::Error`,
/// `Box<dyn std::error::Error + Send + Sync>`, or your own type with a
/// `From` impl.
///
/// ```
/// use switchboard::handler::Rejection;
///
/// let rejection = Rejection::new("only 2 left").with_code("out_of_stock");
/// assert_eq!(rejection.code(), Some("out_of_stock"));
/// assert_eq!(rejection.to_string(), "only 2 left");
///
/// // A refusal retrying cannot change: an event is dead-lettered at once.
/// let refusal = Rejection::new("over the limit").with_code("quantity_over_limit").permanent();
/// assert!(refusal.is_permanent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    message: String,
    code: Option<String>,
    undecodable: bool,
    permanent: bool,
    panicked: bool,
    origin: Option<Origin>,
}

impl Rejection {
    /// A rejection with this message and no code.
    pub fn new(message: impl Into<String>) -> Self {
        Rejection {
            message: message.into(),
            code: None,
            undecodable: false,
            permanent: false,
            panicked: false,
            origin: None,
        }
    }

    /// Marks the refusal final: an event is not retried but dead-lettered at
    /// once (`sb-dead-letter-cause: final`), or, without a dead-letter
    /// subject, acknowledged and counted as lost. A request gets the error
    /// reply as always. Codes listed in [`EventPolicy::final_codes`](crate::service::EventPolicy::final_codes)
    /// are final without this.
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// Whether the handler marked the refusal final ([`permanent`](Self::permanent)).
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// Sets the machine-readable code (printable ASCII; other characters become `?`).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The code, if one was set.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Who refused first, when this rejection passes on a refusal the handler
    /// got from a call of its own (`?` on an [`Error::Remote`] that named it).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Whether the payload could not be decoded (retrying cannot help).
    pub fn is_undecodable(&self) -> bool {
        self.undecodable
    }

    /// Whether the handler panicked (the message says with what); a request
    /// gets an error reply and an event is retried, as for any refusal.
    pub fn is_panic(&self) -> bool {
        self.panicked
    }

    /// The rejection for a handler that panicked with `panic`'s message.
    pub(crate) fn panicked(message: &str) -> Self {
        Rejection {
            panicked: true,
            ..Rejection::new(format!("handler panicked: {message}"))
        }
    }

    pub(crate) fn undecodable(err: Error) -> Self {
        let message = match err {
            // The reply's status already says it is a codec error.
            Error::Codec { message, .. } => message,
            other => other.to_string(),
        };
        Rejection {
            message,
            code: None,
            undecodable: true,
            permanent: false,
            panicked: false,
            origin: None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Rejection::new(message)
    }
}

impl From<&str> for Rejection {
    fn from(message: &str) -> Self {
        Rejection::new(message)
    }
}

impl From<Error> for Rejection {
    /// A switchboard error from a call the handler made: its message, and its
    /// kind as the code, so a caller upstream can tell a timeout from a refusal.
    /// A refusal passed on keeps its code and who refused first.
    fn from(err: Error) -> Self {
        match err {
            Error::Remote {
                code,
                message,
                origin,
                ..
            } => Rejection {
                message,
                code,
                undecodable: false,
                permanent: false,
                panicked: false,
                origin: origin.map(|origin| *origin),
            },
            _ => Rejection::new(err.to_string()).with_code(err.kind().as_str()),
        }
    }
}

impl From<std::io::Error> for Rejection {
    fn from(err: std::io::Error) -> Self {
        Rejection::new(err.to_string())
    }
}

impl From<serde_json::Error> for Rejection {
    fn from(err: serde_json::Error) -> Self {
        Rejection::new(err.to_string()).with_code(ErrorKind::Codec.as_str())
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for Rejection {
    fn from(err: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Rejection::new(err.to_string())
    }
}

impl From<Infallible> for Rejection {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// What a handler's return value turns into: a reply message, or a [`Rejection`].
///
/// | returned | reply |
/// |---|---|
/// | `()` | empty success reply |
/// | `Result<T, E>` where `T: Serialize`, `E: Into<Rejection>` | `T` as JSON, or the error |
/// | `Json<T>` | `T` as JSON |
/// | `Proto<M>`, `Result<Proto<M>, E>` | the prost message as Protocol Buffers (feature `protobuf`) |
/// | [`Message`] | that message, as is |
/// | `Result<Message, E>` | use [`Raw`] for a raw reply that can fail |
///
/// For events the reply is discarded; only success or failure counts.
pub trait IntoReply: Sized {
    /// Turns the value into a reply.
    fn into_reply(self) -> Result<Message, Rejection>;

    /// Turns the value into a reply in `encoding`, the request's (see
    /// [`Message::encoding`]): typed values are encoded in it, a ready
    /// [`Message`] is sent as it is.
    fn into_reply_as(self, encoding: Encoding) -> Result<Message, Rejection> {
        let _ = encoding;
        self.into_reply()
    }

    /// The Rust type a successful reply's payload encodes, where there is
    /// one (`Result<T, E>` and `Json<T>`: `T`), for generated documents.
    fn reply_type() -> Option<&'static str> {
        None
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Result<Message, Rejection> {
        Ok(Message::new(bytes::Bytes::new()))
    }
}

impl IntoReply for Message {
    fn into_reply(self) -> Result<Message, Rejection> {
        Ok(self)
    }
}

/// A value returned as its JSON encoding (for handlers that cannot fail).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Result<Message, Rejection> {
        Message::json(&self.0).map_err(Rejection::from)
    }

    fn into_reply_as(self, encoding: Encoding) -> Result<Message, Rejection> {
        Message::encode_as(encoding, &self.0).map_err(Rejection::from)
    }

    fn reply_type() -> Option<&'static str> {
        Some(std::any::type_name::<T>())
    }
}

/// A raw [`Message`] reply inside a `Result`: `Ok(Raw(message))`.
#[derive(Debug, Clone, Default)]
pub struct Raw(pub Message);

impl<T: Serialize + 'static, E: Into<Rejection>> IntoReply for Result<T, E> {
    fn into_reply(self) -> Result<Message, Rejection> {
        self.into_reply_as(Encoding::Json)
    }

    fn into_reply_as(self, encoding: Encoding) -> Result<Message, Rejection> {
        match self {
            // An event handler's `Ok(())`: JSON's `null`, as the encoder
            // writes it, without running it (the type test is resolved when
            // this is compiled).
            Ok(_) if encoding == Encoding::Json && TypeId::of::<T>() == TypeId::of::<()>() => {
                Ok(Message::new(Bytes::from_static(b"null")))
            }
            Ok(value) => Message::encode_as(encoding, &value).map_err(Rejection::from),
            Err(err) => Err(err.into()),
        }
    }

    fn reply_type() -> Option<&'static str> {
        Some(std::any::type_name::<T>())
    }
}

impl<E: Into<Rejection>> IntoReply for Result<Raw, E> {
    fn into_reply(self) -> Result<Message, Rejection> {
        self.map(|raw| raw.0).map_err(Into::into)
    }
}

#[cfg(feature = "protobuf")]
impl<M: prost::Message> IntoReply for crate::payload::Proto<M> {
    fn into_reply(self) -> Result<Message, Rejection> {
        Ok(self.to_message())
    }

    fn reply_type() -> Option<&'static str> {
        Some(std::any::type_name::<M>())
    }
}

#[cfg(feature = "protobuf")]
impl<M: prost::Message, E: Into<Rejection>> IntoReply for Result<crate::payload::Proto<M>, E> {
    fn into_reply(self) -> Result<Message, Rejection> {
        self.map(|proto| proto.to_message()).map_err(Into::into)
    }

    fn reply_type() -> Option<&'static str> {
        Some(std::any::type_name::<M>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_result_replies_what_the_encoder_writes() {
        let reply = Ok::<(), String>(()).into_reply_as(Encoding::Json).unwrap();
        assert_eq!(reply.payload, Message::json(&()).unwrap().payload);
        assert_eq!(&reply.payload[..], b"null");
        assert!(reply.headers.is_empty());
        let refused = Err::<(), _>("no")
            .into_reply_as(Encoding::Json)
            .unwrap_err();
        assert_eq!(refused.message(), "no");
    }
}
