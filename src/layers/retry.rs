//! Retries with exponential backoff and jitter, only where a retry is safe.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::layered::{Layer, Layered};
use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;
use crate::transport::{Reach, Transport};
use crate::wire;

/// When and how often to retry (the `[resilience.retry]` settings table).
///
/// A request is retried only when it cannot have reached a handler:
/// [`Error::NoResponders`] and [`Error::Connect`]. A timeout is never
/// retried (the handler may be running, and the caller's time is spent). A
/// handler's error is retried only with `remote_errors = true`. A publish is
/// retried only with `publish = true` and only after [`Error::Connect`], which
/// backends report when the event was not handed over. All retries of a
/// request share the caller's timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries in all, the first included (`1` turns retrying off).
    pub attempts: u32,
    /// Pause before the first retry (`20ms`); doubles each time.
    #[serde(with = "humantime_serde")]
    pub min_delay: Duration,
    /// Longest pause between tries.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Randomise pauses so that callers do not retry in lockstep.
    pub jitter: bool,
    /// Also retry requests whose handler returned an error.
    pub remote_errors: bool,
    /// Also retry publishes that failed with a connection error.
    pub publish: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            jitter: true,
            remote_errors: false,
            publish: true,
        }
    }
}

/// Retries failed calls as its [`RetryPolicy`] allows.
pub type RetryLayer = Layered<RetryPolicy>;

impl Layered<RetryPolicy> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Transport>, policy: RetryPolicy) -> Self {
        Layered::wrap(inner, policy)
    }
}

impl RetryPolicy {
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        if self.jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }

    fn request_may_retry(&self, subject: &str, outcome: &Result<Message>) -> bool {
        match outcome {
            Err(err) => matches!(err.kind(), ErrorKind::NoResponders | ErrorKind::Connect),
            Ok(reply) => {
                self.remote_errors
                    && wire::error_from_reply(subject, reply)
                        .is_some_and(|err| err.kind() == ErrorKind::Remote)
            }
        }
    }
}

#[async_trait]
impl Layer for RetryPolicy {
    async fn request(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let deadline = Instant::now() + timeout;
        let mut pauses = self.backoff();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout {
                    subject: subject.to_owned(),
                    timeout,
                });
            }
            let outcome = inner.request(subject, message.clone(), remaining).await;
            if !self.request_may_retry(subject, &outcome) {
                return outcome;
            }
            match pauses.next() {
                Some(pause) if Instant::now() + pause < deadline => {
                    tracing::debug!(%subject, ?pause, "retrying request");
                    tokio::time::sleep(pause).await;
                }
                _ => return outcome,
            }
        }
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
        let mut pauses = self.backoff();
        loop {
            let outcome = inner.publish_reaching(subject, message.clone()).await;
            let retry =
                self.publish && matches!(&outcome, Err(err) if err.kind() == ErrorKind::Connect);
            match (retry, pauses.next()) {
                (true, Some(pause)) => {
                    tracing::debug!(%subject, ?pause, "retrying publish");
                    tokio::time::sleep(pause).await;
                }
                _ => return outcome,
            }
        }
    }
}
