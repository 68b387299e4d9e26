//! What every layer shares: a transport wrapped by a [`Layer`], whose calls
//! go through the layer while everything else (subscriptions, capabilities,
//! groups, close) goes to the wrapped transport as it is. A layer writes
//! only what it changes, as with tower's split between a layer and the
//! service it wraps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::health::Health;
use crate::message::Message;
use crate::subscription::Subscription;
use crate::transport::{GroupAddress, Reach, Recipients, Transport};

/// What a layer does to the calls that go through it. Every method passes
/// the call to `inner` unchanged unless the layer overrides it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use switchboard::layers::{Layer, Layered};
/// use switchboard::transport::Transport;
/// use switchboard::Message;
///
/// /// Counts the requests that go through it.
/// #[derive(Default)]
/// struct Counting(AtomicU64);
///
/// #[async_trait::async_trait]
/// impl Layer for Counting {
///     async fn request(
///         &self,
///         inner: &dyn Transport,
///         subject: &str,
///         message: Message,
///         timeout: Duration,
///     ) -> switchboard::Result<Message> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         inner.request(subject, message, timeout).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://layer-doc").await?;
/// let counted = Layered::wrap(bus.transport().clone(), Counting::default());
/// let _ = counted.request("nobody.here", Message::new("x"), Duration::from_millis(10)).await;
/// assert_eq!(counted.layer().0.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// A request on its way to `inner`.
    async fn request(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        inner.request(subject, message, timeout).await
    }

    /// An event on its way to `inner`.
    async fn publish(&self, inner: &dyn Transport, subject: &str, message: Message) -> Result<()> {
        inner.publish(subject, message).await
    }

    /// An event on its way to `inner`, saying whom it reached.
    async fn publish_reaching(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
    ) -> Result<Reach> {
        inner.publish_reaching(subject, message).await
    }

    /// An event on its way to `inner`'s plain subscribers and chosen groups.
    async fn publish_to(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        inner.publish_to(subject, message, plain, groups).await
    }

    /// The wrapped transport's health, as this layer sees it.
    fn health(&self, inner: &dyn Transport) -> Health {
        inner.health()
    }
}

/// A transport wrapped in a [`Layer`]: itself a [`Transport`], so layers
/// compose around any backend.
pub struct Layered<L> {
    layer: L,
    inner: Arc<dyn Transport>,
}

impl<L: Layer> Layered<L> {
    /// `inner` with `layer` around it.
    pub fn wrap(inner: Arc<dyn Transport>, layer: L) -> Self {
        Layered { layer, inner }
    }

    /// The layer, for what it reports about itself.
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

#[async_trait]
impl<L: Layer> Transport for Layered<L> {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        self.layer
            .request(&*self.inner, subject, message, timeout)
            .await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.layer.publish(&*self.inner, subject, message).await
    }

    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        self.layer
            .publish_reaching(&*self.inner, subject, message)
            .await
    }

    fn live_groups(&self, subject: &str) -> Option<Vec<GroupAddress>> {
        self.inner.live_groups(subject)
    }

    async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        self.layer
            .publish_to(&*self.inner, subject, message, plain, groups)
            .await
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        self.inner.subscribe(subject, group).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_address()
    }

    fn redelivers(&self, subject_or_pattern: &str) -> bool {
        self.inner.redelivers(subject_or_pattern)
    }

    fn health(&self) -> Health {
        self.layer.health(&*self.inner)
    }

    fn describe_service(&self, service: &str, document: Option<bytes::Bytes>) {
        self.inner.describe_service(service, document);
    }
}
