//! Resilience layers: wrappers that are themselves a [`Transport`], so they
//! compose around any backend and the conformance suite runs through them.
//! Each is a [`Layer`] (what it changes about requests and publishes) inside
//! a [`Layered`] transport (which passes everything else on).
//!
//! From the outside in: [`ConcurrencyLimitLayer`] (bulkhead),
//! [`TimeoutLayer`] (per-subject timeouts), [`RetryLayer`] (backoff, safe
//! errors only), [`CircuitBreakerLayer`] (per destination), then the backend.
//! [`Resilience`] builds the stack from configuration; handlers get their
//! bulkhead from [`Service::concurrency`](crate::Service::concurrency) and
//! their dead-letter handling from [`EventPolicy`](crate::service::EventPolicy).

mod circuit_breaker;
mod concurrency_limit;
mod layered;
mod retry;
mod timeout;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreakerPolicy, CircuitState,
};
pub use concurrency_limit::{Bulkhead, ConcurrencyLimitLayer};
pub use layered::{Layer, Layered};
pub use retry::{RetryLayer, RetryPolicy};
pub use timeout::{TimeoutLayer, Timeouts};

use crate::error::{Error, Result};
use crate::subject;
use crate::transport::Transport;

/// Which layers to put around every transport, and how (the `[resilience]` settings table).
///
/// A layer is on when its table is present; an empty table takes the
/// documented defaults:
///
/// ```toml
/// [resilience.timeouts]        # the most specific matching pattern wins
/// "payments.*" = "800ms"
/// "reports.>" = "30s"
///
/// [resilience.retry]           # attempts = 3, min_delay = "20ms", max_delay = "1s",
///                              # jitter = true, remote_errors = false, publish = true
///
/// [resilience.circuit_breaker] # failure_rate = 0.5, minimum_calls = 10, window = 20,
///                              # open_for = "5s", half_open_probes = 3
///
/// [resilience.concurrency]     # outgoing = 1024, max_wait = "5s", handlers = 256
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resilience {
    /// Request timeout per subject pattern, overriding the caller's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts: BTreeMap<String, String>,
    /// Retries with backoff; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker per destination subject; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Bulkheads for outgoing calls and for handlers; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyLimits>,
}

/// Bounds on work in flight (the `[resilience.concurrency]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyLimits {
    /// Requests and publishes in flight at once through one transport.
    pub outgoing: usize,
    /// How long a publish waits for a slot before failing with `Overloaded`
    /// (a request waits up to its timeout).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Messages each route of a [`Service`](crate::Service) handles at once.
    pub handlers: usize,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        ConcurrencyLimits {
            outgoing: 1024,
            max_wait: Duration::from_secs(5),
            handlers: crate::limits::DEFAULT_CONCURRENCY,
        }
    }
}

impl Resilience {
    /// Every layer on, with its defaults.
    pub fn all() -> Self {
        Resilience {
            timeouts: BTreeMap::new(),
            retry: Some(RetryPolicy::default()),
            circuit_breaker: Some(CircuitBreakerPolicy::default()),
            concurrency: Some(ConcurrencyLimits::default()),
        }
    }

    /// The timeout rules, most specific first; errors name the key.
    pub fn timeout_rules(&self) -> Result<Vec<(String, Duration)>> {
        let mut rules = Vec::with_capacity(self.timeouts.len());
        for (pattern, timeout) in &self.timeouts {
            let key = format!("resilience.timeouts.\"{pattern}\"");
            subject::validate_pattern(pattern)
                .map_err(|err| Error::config(format!("key `{key}`: {err}")))?;
            rules.push((
                pattern.clone(),
                crate::options::parse_duration(&key, timeout)?,
            ));
        }
        // Literal subjects before patterns, longer patterns before shorter ones.
        rules.sort_by_key(|(pattern, _)| {
            (
                subject::is_pattern(pattern),
                std::cmp::Reverse(pattern.split('.').count()),
            )
        });
        Ok(rules)
    }

    /// Checks every value, naming the key of the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.timeout_rules()?;
        if let Some(breaker) = &self.circuit_breaker {
            if !(0.0..=1.0).contains(&breaker.failure_rate) || breaker.failure_rate == 0.0 {
                return Err(Error::config(
                    "key `resilience.circuit_breaker.failure_rate`: expected a share above 0 and at most 1",
                ));
            }
        }
        if let Some(retry) = &self.retry {
            if retry.attempts == 0 {
                return Err(Error::config(
                    "key `resilience.retry.attempts`: expected at least 1 (1 means no retries)",
                ));
            }
        }
        Ok(())
    }

    /// Wraps `transport` in the configured layers.
    pub fn wrap(&self, transport: Arc<dyn Transport>) -> Result<Arc<dyn Transport>> {
        self.validate()?;
        let mut layered = transport;
        if let Some(policy) = &self.circuit_breaker {
            layered = Arc::new(CircuitBreakerLayer::new(layered, policy.clone()));
        }
        if let Some(policy) = &self.retry {
            layered = Arc::new(RetryLayer::new(layered, policy.clone()));
        }
        let timeouts = self.timeout_rules()?;
        if !timeouts.is_empty() {
            layered = Arc::new(TimeoutLayer::new(layered, timeouts)?);
        }
        if let Some(limits) = &self.concurrency {
            layered = Arc::new(ConcurrencyLimitLayer::new(
                layered,
                limits.outgoing,
                limits.max_wait,
            ));
        }
        Ok(layered)
    }
}
