//! The contract every backend implements ([`Transport`]), what it hands out
//! ([`Subscription`], [`Incoming`]), what a publish reached, queue groups,
//! and an adapter's connect entry point ([`ConnectFn`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::capabilities::{Capabilities, Support};
pub use crate::endpoint::Endpoint;
use crate::error::Result;
pub use crate::health::Health;
pub use crate::incoming::{Acker, Incoming, Responder};
use crate::message::Message;
pub use crate::subscription::Subscription;

/// Whether a published event reached anyone, from [`Transport::publish_reaching`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reach {
    /// A live subscriber took it, or a broker that keeps events for its
    /// consumers (Kafka, a JetStream stream) stored it.
    Taken,
    /// No subscriber was there to take it: the event went nowhere.
    Nobody,
    /// The backend cannot tell (core NATS drops an event nobody listens to
    /// without saying so).
    Unknown,
}

/// A publish started by [`Transport::publish_eager`]: finished at once, or
/// the rest of it to await.
pub enum Publishing<'a> {
    /// The backend took (or refused) the event without waiting.
    Done(Result<Reach>),
    /// The publish waits (for room in a client's buffer, for a broker's
    /// acknowledgement): awaiting this finishes it.
    Waiting(Pin<Box<dyn Future<Output = Result<Reach>> + Send + 'a>>),
}

impl std::fmt::Debug for Publishing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Publishing::Done(result) => f.debug_tuple("Done").field(result).finish(),
            Publishing::Waiting(_) => f.write_str("Waiting(..)"),
        }
    }
}

/// A queue group as a delivery addresses it: the subject or pattern it
/// subscribed to, and its name (a `Service`'s name).
pub type GroupAddress = (String, String);

/// Who took an event sent with [`Transport::publish_to`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recipients {
    /// Whether a plain (group-less) subscriber took it.
    pub plain: bool,
    /// The queue groups one of whose members took it.
    pub groups: Vec<GroupAddress>,
}

impl Recipients {
    /// Who took it: `plain` subscribers or not, and these `groups`.
    pub fn new(plain: bool, groups: Vec<GroupAddress>) -> Self {
        Recipients { plain, groups }
    }
}

/// A connection to a messaging backend, offering both communication styles.
///
/// Adapters implement this trait; services use it through `Bus`,
/// which validates subjects, headers and payload sizes once for every backend
/// and turns error replies into [`Error`](crate::Error)s. An implementation may
/// therefore assume its inputs are valid.
///
/// The trait is object safe: `connect` returns it as
/// `Arc<dyn Transport>` inside a `Bus`. A wrapper that is itself a `Transport`
/// (a timeout, retry or metrics layer) composes the same way.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends a request and waits up to `timeout` for exactly one reply.
    ///
    /// The reply is returned as received, including error replies (those with
    /// an `sb-status` header); `Bus` turns those into errors.
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message>;

    /// Publishes an event to every subscriber (one member per queue group).
    ///
    /// Returns once the backend has accepted the event; what "accepted" means
    /// per backend is documented in its adapter docs.
    async fn publish(&self, subject: &str, message: Message) -> Result<()>;

    /// Publishes like [`publish`](Self::publish) and says whether anyone
    /// took the event. The default publishes and answers [`Reach::Unknown`];
    /// a backend that knows its subscribers answers [`Reach::Nobody`] for an
    /// event that went nowhere, so the bus counts it and, where the route
    /// says `on_no_subscriber = "error"`, fails the send. A wrapper forwards it.
    /// A backend whose capabilities claim
    /// [`absent_groups`](Capabilities::absent_groups) without keeping events
    /// itself must answer `Nobody`: an outbox removes what was `Unknown`, and
    /// the conformance case `outbox_delivers_to_a_group_away_and_back` fails.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        self.publish(subject, message)
            .await
            .map(|()| Reach::Unknown)
    }

    /// Starts [`publish_reaching`](Self::publish_reaching) and finishes it
    /// here if the backend takes the event without waiting, as a client that
    /// queues it in its own buffer mostly does; the caller awaits only a
    /// publish that waits. The default boxes `publish_reaching`'s future. A
    /// backend overrides it to spare that box and its wrapping on its usual
    /// path, and must then publish exactly as `publish_reaching` does. A
    /// wrapper (a layer) keeps the default, so its own `publish_reaching`
    /// runs.
    fn publish_eager<'a>(&'a self, subject: &'a str, message: Message) -> Publishing<'a> {
        Publishing::Waiting(self.publish_reaching(subject, message))
    }

    /// The queue groups subscribed now, anywhere this transport sees, whose
    /// pattern matches `subject`; `None` when the backend cannot tell (the
    /// default). With [`publish_to`](Self::publish_to), an outbox uses it to
    /// remember groups and hold events for one that is away. A wrapper
    /// forwards it.
    fn live_groups(&self, subject: &str) -> Option<Vec<GroupAddress>> {
        let _ = subject;
        None
    }

    /// Delivers an event to the plain subscribers of `subject` if `plain`,
    /// and to one member of each of `groups` (no other group), and says who
    /// took it. The default refuses with [`Error::Unsupported`](crate::Error::Unsupported);
    /// a backend that answers [`live_groups`](Self::live_groups) implements
    /// it. A wrapper forwards it.
    async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        let _ = (subject, message, plain, groups);
        Err(crate::error::Error::Unsupported {
            backend: self.capabilities().backend,
            what: "publishing to chosen queue groups".into(),
        })
    }

    /// Subscribes to a subject or pattern, optionally as a member of a queue group.
    ///
    /// Returns only once the subscription is live.
    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription>;

    /// Drains in-flight work, flushes, and then refuses new calls with
    /// [`Error::Closed`](crate::Error::Closed). Calling it again is a no-op.
    async fn close(&self) -> Result<()>;

    /// What this backend can do.
    fn capabilities(&self) -> &Capabilities;

    /// The address this transport serves on, for backends where every service
    /// runs its own server (HTTP); `None` elsewhere.
    fn local_address(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Whether an event on `subject_or_pattern` that is nacked (or never
    /// acknowledged) comes back. The default says what the capabilities
    /// say for every subject; a transport that stores only some subjects
    /// (NATS with a JetStream stream) answers per subject, and a wrapper
    /// forwards the question.
    fn redelivers(&self, subject_or_pattern: &str) -> bool {
        let _ = subject_or_pattern;
        self.capabilities().acknowledgements.is_supported()
    }

    /// Whether the transport is connected, degraded or closed. The default
    /// says connected; adapters and layers that know more override it.
    fn health(&self) -> Health {
        Health::Connected
    }

    /// Takes the document describing a service that runs on this transport
    /// (its AsyncAPI JSON, from a `Service` that started; `None` once it
    /// stopped), for backends that serve it (HTTP, at `GET /_switchboard/asyncapi/SERVICE`).
    /// The default ignores it; a wrapper forwards it.
    fn describe_service(&self, service: &str, document: Option<bytes::Bytes>) {
        let _ = (service, document);
    }
}

/// The future an adapter's connect function returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Transport>>> + Send>>;

/// An adapter's entry point: the parsed URL, its host list and its options
/// (already stripped of the core options such as `request_timeout`).
pub type ConnectFn = fn(Endpoint) -> ConnectFuture;
