//! `Bus`: the handle a service holds; validates input once for every backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::observe::{observe, Operation};
use crate::subject;
use crate::subscription::Subscription;
use crate::trace_context;
use crate::transport::Transport;
use crate::wire;

/// The request timeout used when none is configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle to a [`Transport`], returned by [`connect`](crate::connect).
///
/// Every call checks its input at this boundary (subject syntax, headers,
/// payload size against the backend's limit), so every backend rejects the same
/// bad input with the same [`Error`]. Replies that carry an error status come
/// back as `Err`, never as a success.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://").await?;
/// let mut sub = bus.subscribe("greetings").await?;
/// bus.publish("greetings", "hello".into()).await?;
/// let incoming = sub.next().await.expect("delivered");
/// assert_eq!(incoming.payload(), b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    transport: Arc<dyn Transport>,
    default_timeout: Duration,
}

impl Bus {
    /// Wraps a transport.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Bus {
            transport,
            default_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Sets the timeout used by [`request`](Self::request) and [`request_json`](Self::request_json).
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The timeout used when a call does not give one.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// The underlying transport, for wrapping in layers.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> &Capabilities {
        self.transport.capabilities()
    }

    /// The address this service's own server listens on (HTTP backend); `None` elsewhere.
    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.transport.local_address()
    }

    /// Whether the transport is connected, degraded (reconnecting, circuits
    /// open) or closed, for a service's health endpoint.
    pub fn health(&self) -> crate::Health {
        self.transport.health()
    }

    /// The backend's name (`memory`, `http`, `nats`, `kafka`).
    pub fn backend(&self) -> &'static str {
        self.capabilities().backend
    }

    /// Sends a request and waits for its reply, up to the default timeout.
    pub async fn request(&self, subject: &str, message: Message) -> Result<Message> {
        self.request_with_timeout(subject, message, self.default_timeout)
            .await
    }

    /// Sends a request and waits up to `timeout` for its reply.
    ///
    /// Fails with [`Error::Timeout`], [`Error::NoResponders`] (where the backend
    /// can tell), or [`Error::Remote`] carrying the handler's message.
    pub async fn request_with_timeout(
        &self,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        subject::validate(subject)?;
        self.check_outgoing(&message)?;
        if timeout.is_zero() {
            return Err(Error::config("request timeout must be greater than zero"));
        }
        let mut message = message;
        let trace = trace_context::propagate(&mut message.headers);
        let call = async {
            let reply = self.transport.request(subject, message, timeout).await?;
            match wire::error_from_reply(subject, &reply) {
                Some(err) => Err(err),
                None => Ok(reply),
            }
        };
        observe(
            Operation::Request,
            subject,
            self.backend(),
            trace.as_ref(),
            call,
        )
        .await
    }

    /// Publishes an event to every subscriber of `subject`.
    pub async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        subject::validate(subject)?;
        self.check_outgoing(&message)?;
        let mut message = message;
        let trace = trace_context::propagate(&mut message.headers);
        let call = self.transport.publish(subject, message);
        observe(
            Operation::Publish,
            subject,
            self.backend(),
            trace.as_ref(),
            call,
        )
        .await
    }

    /// Subscribes to a subject or wildcard pattern; every subscriber gets every message.
    pub async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        self.check_pattern(subject)?;
        self.transport.subscribe(subject, None).await
    }

    /// Subscribes as a member of queue group `group`: each message goes to one member.
    pub async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription> {
        self.check_pattern(subject)?;
        subject::validate_group(group)?;
        if let Some(reason) = self.capabilities().queue_groups.reason() {
            return Err(Error::Unsupported {
                backend: self.backend(),
                what: format!("queue groups ({reason})"),
            });
        }
        self.transport.subscribe(subject, Some(group)).await
    }

    /// Sends `request` as JSON and decodes the JSON reply, with the default timeout.
    pub async fn request_json<Req, Resp>(&self, subject: &str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.request_json_with_timeout(subject, request, self.default_timeout)
            .await
    }

    /// Sends `request` as JSON and decodes the JSON reply, waiting up to `timeout`.
    pub async fn request_json_with_timeout<Req, Resp>(
        &self,
        subject: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let reply = self
            .request_with_timeout(subject, Message::json(request)?, timeout)
            .await?;
        reply.decode_json()
    }

    /// Publishes `event` as JSON.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        event: &T,
    ) -> Result<()> {
        self.publish(subject, Message::json(event)?).await
    }

    /// Drains in-flight work and closes the transport; later calls fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.transport.close().await
    }

    fn check_outgoing(&self, message: &Message) -> Result<()> {
        message.headers.validate_outgoing()?;
        let limit = self.capabilities().max_payload;
        if message.payload.len() > limit {
            return Err(Error::PayloadTooLarge {
                size: message.payload.len(),
                limit,
            });
        }
        Ok(())
    }

    fn check_pattern(&self, pattern: &str) -> Result<()> {
        subject::validate_pattern(pattern)?;
        if subject::is_pattern(pattern) {
            if let Some(reason) = self.capabilities().wildcards.reason() {
                return Err(Error::Unsupported {
                    backend: self.backend(),
                    what: format!("wildcard subscriptions ({reason})"),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.backend())
            .field("default_timeout", &self.default_timeout)
            .finish()
    }
}
