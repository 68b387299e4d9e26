//! What a service does with an event whose handler keeps failing.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The dead-letter subject used unless configured; `{service}` is replaced by the service name.
pub const DEFAULT_DEAD_LETTER: &str = "dead-letter.{service}";

/// How long shutdown lets retrying events finish unless configured.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Retries and dead-lettering for failed events (the `[events]` settings table).
///
/// ```toml
/// [events]
/// max_attempts = 5                     # handler runs per event, retries included
/// dead_letter = "dead-letter.{service}" # "" turns dead-lettering off
/// shutdown_grace = "10s"               # how long shutdown lets retrying events finish
/// final_codes = ["quantity_over_limit"] # rejection codes retrying cannot change
/// ```
///
/// A handler's refusal is final — the event is dead-lettered at its first
/// failure, with `sb-dead-letter-cause: final` — when the handler marks it
/// [`permanent`](crate::handler::Rejection::permanent) or its code is in
/// `final_codes`, as for a payload that does not decode.
///
/// On [`RunningService::shutdown`](crate::service::RunningService::shutdown),
/// an event waiting between retries keeps being retried until
/// `shutdown_grace` has passed; then it is dead-lettered with its attempt
/// count (or nacked, without a dead-letter subject), never dropped unreported.
///
/// With dead-lettering off, an event still failing after `max_attempts` is
/// nacked: backends with redelivery (Kafka, NATS JetStream) deliver it again,
/// the others drop it with an error log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventPolicy {
    /// How many times the handler runs for one event before it is given up on (at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub max_attempts: u32,
    /// Where given-up events go; `{service}` is replaced by the service name.
    #[serde(deserialize_with = "empty_is_none")]
    pub dead_letter: Option<String>,
    /// How long [`shutdown`](crate::service::RunningService::shutdown) lets
    /// events that are being retried finish before dead-lettering them.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Rejection codes that are final: an event refused with one is not
    /// retried but dead-lettered at once.
    pub final_codes: Vec<String>,
}

impl Default for EventPolicy {
    fn default() -> Self {
        EventPolicy {
            max_attempts: 5,
            dead_letter: Some(DEFAULT_DEAD_LETTER.to_owned()),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            final_codes: Vec::new(),
        }
    }
}

impl EventPolicy {
    /// The policy with `max_attempts` handler runs per event.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The policy sending given-up events to `subject` (`{service}` is replaced).
    pub fn dead_letter(mut self, subject: impl Into<String>) -> Self {
        self.dead_letter = Some(subject.into());
        self
    }

    /// The policy giving retrying events `grace` to finish when the service shuts down.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The policy treating rejections with any of `codes` as final (no retries).
    pub fn final_codes<I, S>(mut self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.final_codes = codes.into_iter().map(Into::into).collect();
        self
    }

    /// The policy that nacks given-up events instead of dead-lettering them.
    pub fn without_dead_letter(mut self) -> Self {
        self.dead_letter = None;
        self
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("max_attempts must be at least 1"));
    }
    Ok(value)
}

fn empty_is_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    Ok(Some(value).filter(|v| !v.trim().is_empty()))
}
