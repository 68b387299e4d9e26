//! A backend written outside switchboard: `counting://NAME`, an in-process
//! transport that counts what passes through it. It delegates delivery to the
//! in-memory backend, so the example stays short; a real adapter implements
//! the same trait over its own client.
//!
//! It is written against `switchboard-core`, the same surface the backends
//! under `adapters/` are built on (`switchboard::transport` re-exports it);
//! only `register`, which puts the scheme in `switchboard`'s table, needs the
//! `switchboard` crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard::transport::BackendInfo;
use switchboard_core::transport::{
    Capabilities, ConnectFuture, Endpoint, GroupAddress, Reach, Recipients, Subscription, Transport,
};
use switchboard_core::{Message, Result};

/// Messages sent through every `counting://` transport in this process.
pub static SENT: AtomicU64 = AtomicU64::new(0);

struct Counting {
    inner: Arc<dyn Transport>,
}

#[async_trait]
impl Transport for Counting {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        SENT.fetch_add(1, Ordering::Relaxed);
        self.inner.request(subject, message, timeout).await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        SENT.fetch_add(1, Ordering::Relaxed);
        self.inner.publish(subject, message).await
    }

    // Saying whether anyone took an event is what lets an outbox hold events
    // for a group that is away (`Capabilities::absent_groups`).
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        SENT.fetch_add(1, Ordering::Relaxed);
        self.inner.publish_reaching(subject, message).await
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
        SENT.fetch_add(1, Ordering::Relaxed);
        self.inner.publish_to(subject, message, plain, groups).await
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
}

fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        endpoint.options.finish("counting", &[])?;
        let name = endpoint.url.host_str().unwrap_or("counting").to_owned();
        let inner = switchboard::connect(&format!("memory://counting-{name}")).await?;
        Ok(Arc::new(Counting {
            inner: inner.transport().clone(),
        }) as Arc<dyn Transport>)
    })
}

/// Registers the `counting` scheme; after this `switchboard::connect("counting://x")` finds it.
pub fn register() -> Result<()> {
    switchboard::transport::register(BackendInfo::new("counting", &["counting"], connect))
}
