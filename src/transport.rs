//! The contract every backend implements ([`Transport`]), what it hands out
//! ([`Subscription`], [`Incoming`]), and how a backend is found by URL scheme
//! ([`register`] for backends written in other crates).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::message::Message;

/// A connection to a messaging backend, offering both communication styles.
///
/// Adapters implement this trait; services use it through [`Bus`](crate::Bus),
/// which validates subjects, headers and payload sizes once for every backend
/// and turns error replies into [`Error`](crate::Error)s. An implementation may
/// therefore assume its inputs are valid.
///
/// The trait is object safe: [`connect`](crate::connect) returns it as
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

    /// Whether the transport is connected, degraded or closed. The default
    /// says connected; adapters and layers that know more override it.
    fn health(&self) -> Health {
        Health::Connected
    }
}

pub use crate::capabilities::{Capabilities, Support};
pub use crate::connect::{
    backends, enabled_backends, register, BackendInfo, ConnectFn, ConnectFuture, Endpoint,
};
pub use crate::health::Health;
pub use crate::incoming::{Acker, Incoming, Responder};
pub use crate::subscription::Subscription;
