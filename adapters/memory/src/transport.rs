//! `MemoryTransport`: one connection to an in-process hub.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;

use switchboard_core::capabilities::{Capabilities, Support};
use switchboard_core::drain::DrainGate;
use switchboard_core::error::Result;
use switchboard_core::local::{LocalRouter, Targets};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{GroupAddress, Publishing, Reach, Recipients, Transport};

/// Default number of messages buffered per subscription before publishers wait.
pub const DEFAULT_BUFFER: usize = 1024;

/// Default largest payload, in bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// Settings of a memory connection (the `memory://` URL options).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// Messages buffered per subscription; when full, publishers wait (backpressure).
    pub buffer: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            buffer: DEFAULT_BUFFER,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A connection to the in-process hub of its name.
///
/// Connections to the same hub name (`memory://` is the unnamed default) see
/// each other's messages; different names are isolated from each other.
pub struct MemoryTransport {
    router: LocalRouter,
    id: u64,
    gate: DrainGate,
    buffer: usize,
    capabilities: Capabilities,
}

impl MemoryTransport {
    /// Connects to the hub called `name` with default settings.
    pub fn new(name: &str) -> Self {
        Self::with_options(name, MemoryOptions::default())
    }

    /// Connects to the hub called `name`.
    pub fn with_options(name: &str, options: MemoryOptions) -> Self {
        let router = LocalRouter::named(name);
        let id = router.next_id();
        let mut capabilities = Capabilities::full("memory", options.max_payload);
        capabilities.acknowledgements = Support::No(
            "in-process delivery is at-most-once: nothing is stored, so there is nothing to redeliver",
        );
        MemoryTransport {
            router,
            id,
            gate: DrainGate::new(),
            buffer: options.buffer.max(1),
            capabilities,
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        self.router
            .request(subject, message, timeout, Targets::All)
            .await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_reaching(subject, message).await.map(|_| ())
    }

    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        let _in_flight = self.gate.enter()?;
        Ok(reach(
            self.router.publish(subject, message, Targets::All).await,
        ))
    }

    /// Delivered here when every subscriber's buffer has room (the usual
    /// case): the router's future is boxed once, not wrapped in
    /// `publish_reaching`'s; one that waits for room is awaited.
    fn publish_eager<'a>(&'a self, subject: &'a str, message: Message) -> Publishing<'a> {
        let in_flight = match self.gate.enter() {
            Ok(in_flight) => in_flight,
            Err(err) => return Publishing::Done(Err(err)),
        };
        let mut publish = Box::pin(self.router.publish(subject, message, Targets::All));
        if let Some(delivered) = publish.as_mut().now_or_never() {
            return Publishing::Done(Ok(reach(delivered)));
        }
        Publishing::Waiting(Box::pin(async move {
            let _in_flight = in_flight;
            Ok(reach(publish.await))
        }))
    }

    fn live_groups(&self, subject: &str) -> Option<Vec<GroupAddress>> {
        Some(self.router.live_groups(subject))
    }

    async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        let _in_flight = self.gate.enter()?;
        let targets = Targets::Only { plain, groups };
        Ok(self.router.publish_to(subject, message, targets).await)
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        Ok(self.router.subscribe(self.id, subject, group, self.buffer))
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            // Ends this connection's subscription streams once their buffers are read.
            self.router.remove_owner(self.id);
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(&self) -> switchboard_core::health::Health {
        if self.gate.is_closed() {
            switchboard_core::health::Health::Closed
        } else {
            switchboard_core::health::Health::Connected
        }
    }
}

/// What a publish delivered to `delivered` subscribers reached.
fn reach(delivered: usize) -> Reach {
    match delivered {
        0 => Reach::Nobody,
        _ => Reach::Taken,
    }
}
