//! A circuit breaker per destination subject: fail fast while a destination keeps failing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::layered::{Layer, Layered};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::message::Message;
use crate::transport::{GroupAddress, Reach, Recipients, Transport};

/// When a circuit opens and how it recovers (the `[resilience.circuit_breaker]` table).
///
/// Failures are the errors that say a destination is unhealthy: timeouts, no
/// responders, connection and backend errors. A handler's own error is an
/// answer, not a failure, and does not count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerPolicy {
    /// Share of failed calls (0.0–1.0) among the last `window` that opens the circuit.
    pub failure_rate: f64,
    /// Calls in the window before the rate is judged at all.
    pub minimum_calls: usize,
    /// How many recent calls per destination are remembered.
    pub window: usize,
    /// How long an open circuit fails calls before letting probes through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Successful probes in a row that close a half-open circuit.
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        CircuitBreakerPolicy {
            failure_rate: 0.5,
            minimum_calls: 10,
            window: 20,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// The state of one destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail at once with [`Error::CircuitOpen`] until the instant given.
    Open {
        /// When probes are let through again.
        until: Instant,
    },
    /// A limited number of probe calls go through; their outcome decides.
    HalfOpen {
        /// Probes currently in flight.
        probing: u32,
        /// Successful probes so far.
        succeeded: u32,
    },
}

#[derive(Debug)]
struct Circuit {
    state: CircuitState,
    /// Recent outcomes, `true` for a failure.
    recent: VecDeque<bool>,
}

/// Destinations remembered at most; closed circuits with a clean record are
/// forgotten beyond this, so unbounded subjects cannot grow memory.
const MAX_TRACKED: usize = 4096;

/// Opens a circuit per subject after repeated failures (see [`CircuitBreakerPolicy`]).
pub type CircuitBreakerLayer = Layered<CircuitBreaker>;

/// The circuits of a [`CircuitBreakerLayer`], one per destination subject
/// and kind of call: requests (the health of a subject's responders) and
/// publishes (the health of the way to its subscribers) are judged apart,
/// so responders that are away do not stop the events a broker would keep
/// for them (`fallback = "async"` publishes a command it could not deliver).
pub struct CircuitBreaker {
    policy: CircuitBreakerPolicy,
    circuits: [Mutex<HashMap<String, Circuit>>; 2],
}

/// Which circuit a call goes through.
#[derive(Debug, Clone, Copy)]
enum Destination {
    /// Requests, to a subject's responders.
    Responders = 0,
    /// Publishes, to a subject's subscribers.
    Subscribers = 1,
}

/// What a call was allowed to do.
enum Admission {
    Call,
    Probe,
}

impl Layered<CircuitBreaker> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Transport>, policy: CircuitBreakerPolicy) -> Self {
        let breaker = CircuitBreaker {
            policy,
            circuits: [Mutex::new(HashMap::new()), Mutex::new(HashMap::new())],
        };
        Layered::wrap(inner, breaker)
    }

    /// The state of the circuit for requests to `subject` (closed if never called).
    pub fn state(&self, subject: &str) -> CircuitState {
        self.layer().state(Destination::Responders, subject)
    }

    /// The state of the circuit for publishes to `subject` (closed if never called).
    pub fn publish_state(&self, subject: &str) -> CircuitState {
        self.layer().state(Destination::Subscribers, subject)
    }
}

impl CircuitBreaker {
    fn state(&self, destination: Destination, subject: &str) -> CircuitState {
        self.circuits[destination as usize]
            .lock()
            .unwrap()
            .get(subject)
            .map_or(CircuitState::Closed, |c| c.state)
    }

    fn admit(&self, destination: Destination, subject: &str) -> Result<Admission> {
        let mut circuits = self.circuits[destination as usize].lock().unwrap();
        if circuits.len() >= MAX_TRACKED && !circuits.contains_key(subject) {
            circuits.retain(|_, c| c.state != CircuitState::Closed || c.recent.contains(&true));
        }
        // Look up before inserting: the subject is copied only for a new destination.
        if !circuits.contains_key(subject) {
            let fresh = Circuit {
                state: CircuitState::Closed,
                recent: VecDeque::new(),
            };
            circuits.insert(subject.to_owned(), fresh);
        }
        let circuit = circuits.get_mut(subject).expect("inserted above");
        match circuit.state {
            CircuitState::Closed => Ok(Admission::Call),
            CircuitState::Open { until } if Instant::now() < until => Err(Error::CircuitOpen {
                subject: subject.to_owned(),
                retry_after: until - Instant::now(),
            }),
            CircuitState::Open { .. } => {
                circuit.state = CircuitState::HalfOpen {
                    probing: 1,
                    succeeded: 0,
                };
                Ok(Admission::Probe)
            }
            CircuitState::HalfOpen { probing, succeeded } => {
                if probing + succeeded >= self.policy.half_open_probes {
                    return Err(Error::CircuitOpen {
                        subject: subject.to_owned(),
                        retry_after: Duration::ZERO,
                    });
                }
                circuit.state = CircuitState::HalfOpen {
                    probing: probing + 1,
                    succeeded,
                };
                Ok(Admission::Probe)
            }
        }
    }

    fn record(&self, destination: Destination, subject: &str, admission: Admission, failed: bool) {
        let mut circuits = self.circuits[destination as usize].lock().unwrap();
        let Some(circuit) = circuits.get_mut(subject) else {
            return;
        };
        let open = CircuitState::Open {
            until: Instant::now() + self.policy.open_for,
        };
        match (admission, circuit.state) {
            (Admission::Probe, CircuitState::HalfOpen { probing, succeeded }) => {
                if failed {
                    tracing::warn!(%subject, "circuit probe failed; open again");
                    circuit.state = open;
                } else if succeeded + 1 >= self.policy.half_open_probes {
                    tracing::info!(%subject, "circuit closed");
                    circuit.state = CircuitState::Closed;
                    circuit.recent.clear();
                } else {
                    circuit.state = CircuitState::HalfOpen {
                        probing: probing.saturating_sub(1),
                        succeeded: succeeded + 1,
                    };
                }
            }
            (Admission::Call, CircuitState::Closed) => {
                circuit.recent.push_back(failed);
                while circuit.recent.len() > self.policy.window.max(1) {
                    circuit.recent.pop_front();
                }
                let calls = circuit.recent.len();
                let failures = circuit.recent.iter().filter(|f| **f).count();
                if calls >= self.policy.minimum_calls.max(1)
                    && failures as f64 >= self.policy.failure_rate * calls as f64
                {
                    tracing::warn!(%subject, failures, calls, "circuit opened");
                    circuit.state = open;
                }
            }
            // The state moved on while this call was in flight; its outcome is stale.
            _ => {}
        }
    }

    async fn guarded<T>(
        &self,
        destination: Destination,
        subject: &str,
        call: impl std::future::Future<Output = Result<T>>,
        failed: impl FnOnce(&Result<T>) -> bool,
    ) -> Result<T> {
        let mut pending = Pending {
            layer: self,
            destination,
            subject,
            admission: Some(self.admit(destination, subject)?),
        };
        let outcome = call.await;
        let is_failure = failed(&outcome);
        if let Some(admission) = pending.admission.take() {
            self.record(destination, subject, admission, is_failure);
        }
        outcome
    }
}

/// Settles a probe whose caller gave up before it finished: a half-open
/// circuit must not wait forever for its outcome.
struct Pending<'a> {
    layer: &'a CircuitBreaker,
    destination: Destination,
    subject: &'a str,
    admission: Option<Admission>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(Admission::Probe) = self.admission.take() {
            self.layer
                .record(self.destination, self.subject, Admission::Probe, true);
        }
    }
}

fn unhealthy(err: &Error) -> bool {
    err.is_retryable()
}

#[async_trait]
impl Layer for CircuitBreaker {
    async fn request(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        self.guarded(
            Destination::Responders,
            subject,
            inner.request(subject, message, timeout),
            |outcome| outcome.as_ref().err().is_some_and(unhealthy),
        )
        .await
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
        let publish = inner.publish_reaching(subject, message);
        self.guarded(Destination::Subscribers, subject, publish, |outcome| {
            outcome.as_ref().err().is_some_and(unhealthy)
        })
        .await
    }

    async fn publish_to(
        &self,
        inner: &dyn Transport,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        let publish = inner.publish_to(subject, message, plain, groups);
        self.guarded(Destination::Subscribers, subject, publish, |outcome| {
            outcome.as_ref().err().is_some_and(unhealthy)
        })
        .await
    }

    fn health(&self, inner: &dyn Transport) -> Health {
        let inner = inner.health();
        if inner != Health::Connected {
            return inner;
        }
        let mut open: Vec<String> = Vec::new();
        for circuits in &self.circuits {
            let circuits = circuits.lock().unwrap();
            open.extend(
                circuits
                    .iter()
                    .filter(|(_, c)| c.state != CircuitState::Closed)
                    .map(|(subject, _)| subject.clone()),
            );
        }
        if open.is_empty() {
            return Health::Connected;
        }
        open.sort_unstable();
        open.dedup();
        Health::Degraded(format!("circuit open for {}", open.join(", ")))
    }
}
