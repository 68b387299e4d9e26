//! A bulkhead for outgoing calls: a bounded number in flight, the rest wait or fail.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::layered::{Layer, Layered};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::transport::{GroupAddress, Reach, Recipients, Transport};

/// Lets at most `limit` requests and publishes run at once through this
/// transport. A call that finds it full waits for a slot: a request for as
/// long as its timeout, a publish up to `max_wait`; then it fails with
/// [`Error::Overloaded`], so a slow backend cannot pile up unbounded work.
pub type ConcurrencyLimitLayer = Layered<Bulkhead>;

/// The slots of a [`ConcurrencyLimitLayer`].
pub struct Bulkhead {
    slots: Semaphore,
    limit: usize,
    max_wait: Duration,
}

impl Layered<Bulkhead> {
    /// Wraps `inner` with `limit` slots (at least 1).
    pub fn new(inner: Arc<dyn Transport>, limit: usize, max_wait: Duration) -> Self {
        let limit = limit.max(1);
        let bulkhead = Bulkhead {
            slots: Semaphore::new(limit),
            limit,
            max_wait,
        };
        Layered::wrap(inner, bulkhead)
    }

    /// Calls in flight right now.
    pub fn in_flight(&self) -> usize {
        let bulkhead = self.layer();
        bulkhead.limit - bulkhead.slots.available_permits()
    }
}

impl Bulkhead {
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
impl Layer for Bulkhead {
    async fn request(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let started = tokio::time::Instant::now();
        let _slot = self.slot(subject, timeout).await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(Error::Overloaded {
                subject: subject.to_owned(),
                limit: self.limit,
            });
        }
        inner.request(subject, message, remaining).await
    }

    async fn publish(&self, inner: &dyn Transport, subject: &str, message: Message) -> Result<()> {
        self.publish_reaching(inner, subject, message)
            .await
            .map(|_| ())
    }

    async fn publish_reaching(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
    ) -> Result<Reach> {
        let _slot = self.slot(subject, self.max_wait).await?;
        inner.publish_reaching(subject, message).await
    }

    async fn publish_to(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        let _slot = self.slot(subject, self.max_wait).await?;
        inner.publish_to(subject, message, plain, groups).await
    }
}
