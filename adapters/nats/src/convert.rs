//! Mapping between switchboard messages and NATS messages and errors.

use std::future::Future;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;

use switchboard_core::error::{Error, Result};
use switchboard_core::headers::Headers;
use switchboard_core::incoming::{Incoming, Responder};
use switchboard_core::message::Message;

/// The backend name used in errors.
pub(super) const BACKEND: &str = "nats";

/// Headers as NATS headers; `None` when there are none, so plain `PUB` is used.
pub(super) fn to_header_map(headers: &Headers) -> Option<HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        map.insert(name, value);
    }
    Some(map)
}

/// NATS headers as switchboard headers (names lower-cased, last value wins);
/// a header outside the portable rules (non-ASCII value, odd name) is left out.
pub(super) fn from_header_map(map: Option<HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map {
        for (name, values) in map.iter() {
            if let Some(value) = values.last() {
                headers.insert_received(AsRef::<str>::as_ref(name), value.as_str());
            }
        }
    }
    headers
}

/// A received core NATS message under `subject` (the caller shares one
/// across messages on the same subject); requests get a responder that
/// publishes to the reply inbox.
pub(super) fn incoming(
    subject: Arc<str>,
    message: async_nats::Message,
    client: &Arc<async_nats::Client>,
) -> Incoming {
    let reply = message.reply;
    let received = Message {
        payload: message.payload,
        headers: from_header_map(message.headers),
    };
    let incoming = Incoming::new(subject, received);
    match reply {
        Some(reply) => incoming.with_responder(Box::new(NatsResponder {
            client: client.clone(),
            reply,
        })),
        None => incoming,
    }
}

struct NatsResponder {
    client: Arc<async_nats::Client>,
    reply: async_nats::Subject,
}

#[async_trait]
impl Responder for NatsResponder {
    async fn respond(self: Box<Self>, reply: Message) -> Result<()> {
        publish_core(&self.client, self.reply, &reply.headers, reply.payload).await
    }

    /// The reply queued in the client's buffer at the first poll, as most
    /// are; one that would wait for room is dropped unsent (async-nats sends
    /// nothing from a `send` dropped before it completes) and made again by
    /// `respond`.
    fn respond_now(&mut self, reply: &Message) -> Option<Result<()>> {
        let attempt = std::pin::pin!(publish_core(
            &self.client,
            self.reply.clone(),
            &reply.headers,
            reply.payload.clone(),
        ));
        attempt.now_or_never()
    }
}

/// Publishes on core NATS (no acknowledgement beyond the client's buffer).
/// Not an `async fn`, which would hold the subject and message beside the
/// client's future they are moved into.
pub(super) fn publish_core<'a>(
    client: &'a async_nats::Client,
    subject: async_nats::Subject,
    headers: &Headers,
    payload: Bytes,
) -> impl Future<Output = Result<()>> + 'a {
    let size = payload.len();
    let published = match to_header_map(headers) {
        Some(headers) => Either::Left(client.publish_with_headers(subject, headers, payload)),
        None => Either::Right(client.publish(subject, payload)),
    };
    published.map(move |published| {
        published.map_err(|err| publish_error(err, size, client.server_info().max_payload))
    })
}

/// A core publish error as a switchboard error; `size` and `limit` describe the payload.
pub(super) fn publish_error(err: async_nats::PublishError, size: usize, limit: usize) -> Error {
    match err.kind() {
        // The server's limit covers headers too, so this can trip just under `limit`.
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
            Error::PayloadTooLarge { size, limit }
        }
        async_nats::client::PublishErrorKind::Send => Error::Closed,
        _ => Error::backend(BACKEND, err),
    }
}

/// A request error as a switchboard error.
pub(super) fn request_error(
    err: async_nats::RequestError,
    subject: &str,
    timeout: std::time::Duration,
    (size, limit): (usize, usize),
) -> Error {
    use async_nats::RequestErrorKind;
    match err.kind() {
        RequestErrorKind::TimedOut => Error::Timeout {
            subject: subject.to_owned(),
            timeout,
        },
        RequestErrorKind::NoResponders => Error::NoResponders {
            subject: subject.to_owned(),
        },
        RequestErrorKind::MaxPayloadExceeded => Error::PayloadTooLarge { size, limit },
        _ => Error::backend(BACKEND, err),
    }
}
