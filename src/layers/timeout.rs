//! Request timeouts per subject pattern, set by configuration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::layered::{Layer, Layered};
use crate::error::{within, Result};
use crate::message::Message;
use crate::subject;
use crate::transport::Transport;

/// Gives requests on matching subjects the configured timeout, in place of
/// the one the caller passed: operators tune timeouts per subject without a
/// code change. The first matching pattern wins; other subjects keep the
/// caller's. The deadline is enforced here too, whatever the backend does.
pub type TimeoutLayer = Layered<Timeouts>;

/// The `(pattern, timeout)` rules of a [`TimeoutLayer`].
pub struct Timeouts {
    timeouts: Vec<(String, Duration)>,
}

impl Layered<Timeouts> {
    /// Wraps `inner` with `(pattern, timeout)` rules, checked in order.
    pub fn new(inner: Arc<dyn Transport>, timeouts: Vec<(String, Duration)>) -> Result<Self> {
        for (pattern, _) in &timeouts {
            subject::validate_pattern(pattern)?;
        }
        Ok(Layered::wrap(inner, Timeouts { timeouts }))
    }

    /// The timeout a request on `subject` gets when the caller asked for `requested`.
    pub fn timeout_for(&self, subject: &str, requested: Duration) -> Duration {
        self.layer().timeout_for(subject, requested)
    }
}

impl Timeouts {
    fn timeout_for(&self, subject: &str, requested: Duration) -> Duration {
        self.timeouts
            .iter()
            .find(|(pattern, _)| subject::matches(pattern, subject))
            .map_or(requested, |(_, timeout)| *timeout)
    }
}

#[async_trait]
impl Layer for Timeouts {
    async fn request(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let timeout = self.timeout_for(subject, timeout);
        within(subject, timeout, inner.request(subject, message, timeout)).await
    }
}
