//! A bulkhead for outgoing calls: a bounded number in flight, the rest wait or fail.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::message::Message;
use crate::subscription::Subscription;
use crate::transport::{GroupAddress, Reach, Recipients, Transport};

/// Lets at most `limit` requests and publishes run at once through this
/// transport. A call that finds it full waits for a slot: a request for as
/// long as its timeout, a publish up to `max_wait`; then it fails with
/// [`Error::Overloaded`], so a slow backend cannot pile up unbounded work.
pub struct ConcurrencyLimitLayer {
    inner: Arc<dyn Transport>,
    slots: Arc<Semaphore>,
    limit: usize,
    max_wait: Duration,
}

impl ConcurrencyLimitLayer {
    /// Wraps `inner` with `limit` slots (at least 1).
    pub fn new(inner: Arc<dyn Transport>, limit: usize, max_wait: Duration) -> Self {
        let limit = limit.max(1);
        ConcurrencyLimitLayer {
            inner,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            max_wait,
        }
    }

    /// Calls in flight right now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    async fn slot(
        &self,
        subject: &str,
        wait: Duration,
    ) -> Result<tokio::sync::SemaphorePermit<'_>> {
        let overloaded = || Error::Overloaded {
            subject: subject.to_owned(),
            limit: self.limit,
        };
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded()),
        }
    }
}

#[async_trait]
impl Transport for ConcurrencyLimitLayer {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let started = tokio::time::Instant::now();
        let _slot = self.slot(subject, timeout).await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(Error::Overloaded {
                subject: subject.to_owned(),
                limit: self.limit,
            });
        }
        self.inner.request(subject, message, remaining).await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_reaching(subject, message).await.map(|_| ())
    }

    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        let _slot = self.slot(subject, self.max_wait).await?;
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
        let _slot = self.slot(subject, self.max_wait).await?;
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

    fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_address()
    }

    fn redelivers(&self, subject_or_pattern: &str) -> bool {
        self.inner.redelivers(subject_or_pattern)
    }

    fn health(&self) -> Health {
        self.inner.health()
    }
}
