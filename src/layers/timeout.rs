//! Request timeouts per subject pattern, set by configuration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::{within, Result};
use crate::health::Health;
use crate::message::Message;
use crate::subject;
use crate::subscription::Subscription;
use crate::transport::{GroupAddress, Reach, Recipients, Transport};

/// Gives requests on matching subjects the configured timeout, in place of
/// the one the caller passed: operators tune timeouts per subject without a
/// code change. The first matching pattern wins; other subjects keep the
/// caller's. The deadline is enforced here too, whatever the backend does.
pub struct TimeoutLayer {
    inner: Arc<dyn Transport>,
    timeouts: Vec<(String, Duration)>,
}

impl TimeoutLayer {
    /// Wraps `inner` with `(pattern, timeout)` rules, checked in order.
    pub fn new(inner: Arc<dyn Transport>, timeouts: Vec<(String, Duration)>) -> Result<Self> {
        for (pattern, _) in &timeouts {
            subject::validate_pattern(pattern)?;
        }
        Ok(TimeoutLayer { inner, timeouts })
    }

    /// The timeout a request on `subject` gets when the caller asked for `requested`.
    pub fn timeout_for(&self, subject: &str, requested: Duration) -> Duration {
        self.timeouts
            .iter()
            .find(|(pattern, _)| subject::matches(pattern, subject))
            .map_or(requested, |(_, timeout)| *timeout)
    }
}

#[async_trait]
impl Transport for TimeoutLayer {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let timeout = self.timeout_for(subject, timeout);
        within(
            subject,
            timeout,
            self.inner.request(subject, message, timeout),
        )
        .await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.inner.publish(subject, message).await
    }

    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
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
