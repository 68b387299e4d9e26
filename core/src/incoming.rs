//! A received message, with the backend-neutral means to reply, ack and nack.

use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{BoxFuture, Either};
use futures_util::FutureExt;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::wire;

/// How a backend sends the reply to one request. Implemented by adapters.
#[async_trait]
pub trait Responder: Send + 'static {
    /// Sends `reply` to the requester. Called at most once, and not after
    /// [`respond_now`](Self::respond_now) returned `Some`.
    async fn respond(self: Box<Self>, reply: Message) -> Result<()>;

    /// Sends `reply` at once where that needs no waiting (a NATS reply
    /// queued in the client's buffer), sparing the boxed future of
    /// [`respond`](Self::respond): `Some` with the outcome if it was sent or
    /// refused; `None`, the default, if nothing was sent, which leaves the
    /// reply to [`respond`](Self::respond).
    fn respond_now(&mut self, reply: &Message) -> Option<Result<()>> {
        let _ = reply;
        None
    }
}

/// How a backend acknowledges one delivery. Implemented by adapters whose
/// backend redelivers what was not acknowledged.
#[async_trait]
pub trait Acker: Send + 'static {
    /// The message was handled; do not deliver it again.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// The message was not handled; deliver it again.
    async fn nack(self: Box<Self>) -> Result<()>;

    /// Acknowledges at once where that needs no waiting (a Kafka ack is
    /// bookkeeping in memory), sparing the boxed future of [`ack`](Self::ack);
    /// `None`, the default, leaves the ack to [`ack`](Self::ack).
    fn ack_now(&mut self) -> Option<Result<()>> {
        None
    }

    /// Where the backend keeps this delivery, the same each time it is
    /// delivered again (a Kafka record's topic, partition and offset); `None` by
    /// default. Deduplication uses it for events that carry no message id.
    fn position(&self) -> Option<String> {
        None
    }
}

/// A message received from a [`Subscription`](crate::transport::Subscription).
///
/// If it is a request, answer it with [`reply`](Self::reply) or
/// [`reply_error`](Self::reply_error). On backends with acknowledgements,
/// call [`ack`](Self::ack) once it is handled (or [`nack`](Self::nack) to have
/// it redelivered); elsewhere both are no-ops, so the same code runs everywhere.
pub struct Incoming {
    subject: Arc<str>,
    message: Message,
    responder: Option<Box<dyn Responder>>,
    acker: Option<Box<dyn Acker>>,
    deadline: Option<Instant>,
}

impl Incoming {
    /// A received message (for adapters).
    #[inline]
    pub fn new(subject: Arc<str>, message: Message) -> Self {
        Incoming {
            subject,
            message,
            responder: None,
            acker: None,
            deadline: None,
        }
    }

    /// Where the backend keeps this delivery, if it says (see [`Acker::position`]).
    pub fn position(&self) -> Option<String> {
        self.acker.as_ref().and_then(|acker| acker.position())
    }

    /// Sets when the requester stops waiting (for adapters whose backend can
    /// hold a request past its caller's timeout, such as Kafka).
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// When the requester stops waiting for the reply, where the backend tells.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the requester has already given up: a `Service`
    /// does not run its handler for such a request (the caller got
    /// [`Error::Timeout`] and may have retried), and counts it.
    pub fn is_expired(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Marks it as a request that `responder` answers (for adapters).
    pub fn with_responder(mut self, responder: Box<dyn Responder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Attaches the backend's acknowledgement (for adapters).
    pub fn with_acker(mut self, acker: Box<dyn Acker>) -> Self {
        self.acker = Some(acker);
        self
    }

    /// The concrete subject it was sent to (useful with wildcard subscriptions).
    #[inline]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject, shared rather than copied.
    #[inline]
    pub fn shared_subject(&self) -> Arc<str> {
        self.subject.clone()
    }

    /// The message.
    #[inline]
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The payload bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// The headers.
    #[inline]
    pub fn headers(&self) -> &crate::headers::Headers {
        &self.message.headers
    }

    /// Takes the message out, leaving an empty one (reply and ack still work).
    #[inline]
    pub fn take_message(&mut self) -> Message {
        std::mem::take(&mut self.message)
    }

    /// Deserialises the payload from JSON.
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T> {
        self.message.decode_json()
    }

    /// Whether the sender waits for a reply, and no reply has been sent yet.
    #[inline]
    pub fn expects_reply(&self) -> bool {
        self.responder.is_some()
    }

    /// Sends the reply to this request.
    ///
    /// Fails with [`Error::Usage`] if the message is not a request or was
    /// already answered, and with [`Error::InvalidHeader`] for bad headers.
    pub async fn reply(&mut self, reply: Message) -> Result<()> {
        reply.headers.validate_outgoing()?;
        self.send_reply(reply).await
    }

    /// Replies with `value` encoded as JSON.
    pub async fn reply_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.reply(Message::json(value)?).await
    }

    /// Replies with a handler error: the requester gets [`Error::Remote`] carrying `message`.
    pub async fn reply_error(&mut self, message: impl fmt::Display) -> Result<()> {
        self.send_reply(wire::error_reply(
            wire::STATUS_HANDLER_ERROR,
            message.to_string(),
        ))
        .await
    }

    /// Replies with the wire form of `err` (see [`wire::status_for`]), so the
    /// requester gets the same kind of error.
    pub async fn reply_with(&mut self, err: &Error) -> Result<()> {
        self.send_reply(wire::error_reply_for(err)).await
    }

    /// Sends a reply without the header checks, for replies the crate built itself.
    pub async fn send_reply(&mut self, reply: Message) -> Result<()> {
        match self.responder.take() {
            Some(mut responder) => match responder.respond_now(&reply) {
                Some(sent) => sent,
                None => responder.respond(reply).await,
            },
            None => Err(Error::usage(format!(
                "message on `{}` is not a request or was already answered",
                self.subject
            ))),
        }
    }

    /// Acknowledges the message (no-op where the backend has no
    /// acknowledgements). An acknowledgement that needs no waiting
    /// ([`Acker::ack_now`]) is made by this call, and the future returned is
    /// ready; any other is made when the future is awaited.
    #[inline]
    pub fn ack(&mut self) -> Acking {
        let Some(mut acker) = self.acker.take() else {
            return Acking(Either::Left(std::future::ready(Ok(()))));
        };
        // An acknowledgement that needs no waiting is made here: the
        // future returned is ready, and nothing is boxed for it.
        match acker.ack_now() {
            Some(acked) => Acking(Either::Left(std::future::ready(acked))),
            None => Acking(Either::Right(acker.ack())),
        }
    }

    /// Asks for redelivery (no-op where the backend has no acknowledgements).
    pub async fn nack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.nack().await,
            None => Ok(()),
        }
    }
}

/// The acknowledgement [`Incoming::ack`] began: ready at once where the
/// backend has no acknowledgements or [`Acker::ack_now`] answered, else the
/// backend's own future.
#[must_use = "an acknowledgement that waits is made only when awaited"]
pub struct Acking(Either<Ready<Result<()>>, BoxFuture<'static, Result<()>>>);

impl Future for Acking {
    type Output = Result<()>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.poll_unpin(cx)
    }
}

impl fmt::Debug for Acking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            Either::Left(_) => "ready",
            Either::Right(_) => "waiting",
        };
        f.debug_tuple("Acking").field(&state).finish()
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("subject", &self.subject)
            .field("message", &self.message)
            .field("expects_reply", &self.responder.is_some())
            .field("has_ack", &self.acker.is_some())
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Mutex;

    /// Records which way a reply went; `now` says whether it can send at once.
    struct Recording {
        now: bool,
        sent: Arc<Mutex<Vec<(&'static str, Bytes)>>>,
    }

    #[async_trait]
    impl Responder for Recording {
        async fn respond(self: Box<Self>, reply: Message) -> Result<()> {
            self.sent.lock().unwrap().push(("respond", reply.payload));
            Ok(())
        }

        fn respond_now(&mut self, reply: &Message) -> Option<Result<()>> {
            if !self.now {
                return None;
            }
            self.sent
                .lock()
                .unwrap()
                .push(("respond_now", reply.payload.clone()));
            Some(Ok(()))
        }
    }

    async fn reply_through(now: bool) -> Vec<(&'static str, Bytes)> {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let responder = Recording {
            now,
            sent: sent.clone(),
        };
        let mut incoming = Incoming::new("orders.get".into(), Message::new(Bytes::new()))
            .with_responder(Box::new(responder));
        incoming
            .send_reply(Message::new(Bytes::from_static(b"42")))
            .await
            .unwrap();
        let again = incoming.send_reply(Message::new(Bytes::new())).await;
        assert!(again.is_err(), "a second reply is refused");
        let sent = sent.lock().unwrap().clone();
        sent
    }

    #[tokio::test]
    async fn a_reply_sent_at_once_skips_respond() {
        let sent = reply_through(true).await;
        assert_eq!(sent, vec![("respond_now", Bytes::from_static(b"42"))]);
    }

    #[tokio::test]
    async fn a_reply_not_sent_at_once_goes_through_respond() {
        let sent = reply_through(false).await;
        assert_eq!(sent, vec![("respond", Bytes::from_static(b"42"))]);
    }
}
