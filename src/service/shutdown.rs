//! Stopping a service without losing what it holds, and saying what it did.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stopping::{StopNotice, Stopping};

/// What [`RunningService::shutdown`] did with the events it still held.
///
/// Requests in flight are always answered before shutdown returns. Events
/// the transport had already handed the service (its queue) are handled
/// within the grace period; those still queued after it are `returned` to a
/// redelivering backend (Kafka) or counted as `lost` (memory, HTTP, gRPC,
/// core NATS), each logged — never dropped unreported.
/// `completed` and `dead_lettered` count events that were waiting between
/// retries when shutdown began; `returned` also counts queued events handed
/// back; `lost`, `unacknowledged`, `expired_requests` and
/// `duplicates_skipped` count over the service's whole life.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://shutdown-doc").await?;
/// let running = switchboard::Service::new("idle", bus).start().await?;
/// let report = running.shutdown().await;
/// assert!(report.is_clean());
/// assert_eq!(report.dead_lettered, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events that were being retried and then succeeded within the grace period.
    pub completed: usize,
    /// Events given up at shutdown and sent to the dead-letter subject, with their attempt counts.
    pub dead_lettered: usize,
    /// Events handed back to a backend that redelivers them (Kafka, NATS
    /// JetStream): another instance, or this one restarted, gets them again.
    /// Includes events still queued when the grace period ended.
    pub returned: usize,
    /// Events neither handled, dead-lettered nor returned to a redelivering
    /// backend (no dead-letter subject, or the dead-letter publish failed, on
    /// a backend without redelivery; or still queued when shutdown's grace
    /// ended), over the service's life. Each is also logged as an error.
    pub lost: usize,
    /// Requests skipped over the service's life because their caller had
    /// already timed out when they arrived (backends that queue requests, such as Kafka).
    pub expired_requests: usize,
    /// Events acknowledged without running the handler over the service's
    /// life, because a route with `dedup` had handled their message id
    /// within its window (a second delivery of the same event).
    pub duplicates_skipped: usize,
    /// Replies that could not be sent over the service's life (the caller's
    /// reply address was missing, malformed or gone); each is logged with its
    /// subject, and the route went on serving.
    pub undeliverable_replies: usize,
    /// Events handled (or dead-lettered) whose acknowledgement the backend
    /// refused, over the service's life: a redelivering backend may run them
    /// again. Each is logged. Where the backend writes acknowledgements from
    /// a task of its own (RabbitMQ, Redis) or commits them (Kafka, within
    /// `delivery_timeout`), shutdown waits for that and counts those it
    /// could not write, or that were still unwritten.
    pub unacknowledged: usize,
    /// How long the shutdown took.
    pub took: Duration,
}

impl ShutdownReport {
    /// Whether nothing was lost and every handled event was acknowledged.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.unacknowledged == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shut down in {:?}: {} retried event(s) completed, {} dead-lettered, {} returned for redelivery, {} lost, {} unacknowledged; {} expired request(s) skipped, {} duplicate(s) skipped, {} reply(ies) undeliverable",
            self.took,
            self.completed,
            self.dead_lettered,
            self.returned,
            self.lost,
            self.unacknowledged,
            self.expired_requests,
            self.duplicates_skipped,
            self.undeliverable_replies
        )
    }
}

/// Tells routes to stop and collects what they did with held events.
#[derive(Clone)]
pub(crate) struct Signal {
    /// `None` while running; the deadline for retrying events once stopping.
    deadline: Arc<watch::Sender<Option<Instant>>>,
    /// What route loops look at before each message.
    stop: Arc<StopNotice>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    completed: AtomicUsize,
    dead_lettered: AtomicUsize,
    returned: AtomicUsize,
    lost: AtomicUsize,
    expired: AtomicUsize,
    duplicates: AtomicUsize,
    undeliverable: AtomicUsize,
    unacknowledged: AtomicUsize,
}

/// What happened to an event that was held when shutdown began.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HeldOutcome {
    Completed,
    DeadLettered,
    Returned,
    Lost,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Signal {
            deadline: Arc::new(watch::Sender::new(None)),
            stop: Arc::default(),
            counts: Arc::default(),
        }
    }

    /// A receiver that changes when shutdown begins.
    pub(crate) fn watch(&self) -> watch::Receiver<Option<Instant>> {
        self.deadline.subscribe()
    }

    /// Completes once shutdown has begun, for a route's loop: cheaper to
    /// poll per message than [`watch`](Self::watch).
    pub(crate) fn stopping(&self) -> Stopping {
        self.stop.stopping()
    }

    /// The deadline for held events, once shutdown has begun.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        *self.deadline.borrow()
    }

    pub(crate) fn record(&self, outcome: HeldOutcome) {
        let counter = match outcome {
            HeldOutcome::Completed => &self.counts.completed,
            HeldOutcome::DeadLettered => &self.counts.dead_lettered,
            HeldOutcome::Returned => &self.counts.returned,
            HeldOutcome::Lost => &self.counts.lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_expired(&self) {
        self.counts.expired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_duplicate(&self) {
        self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_unacknowledged(&self, events: usize) {
        self.counts
            .unacknowledged
            .fetch_add(events, Ordering::Relaxed);
    }

    pub(crate) fn count_undeliverable(&self) {
        self.counts.undeliverable.fetch_add(1, Ordering::Relaxed);
    }

    fn begin(&self, grace: Duration) {
        self.deadline.send_replace(Some(Instant::now() + grace));
        // After the deadline is set: a loop that stops reads it next.
        self.stop.begin();
    }

    fn report(&self, took: Duration) -> ShutdownReport {
        ShutdownReport {
            completed: self.counts.completed.load(Ordering::Relaxed),
            dead_lettered: self.counts.dead_lettered.load(Ordering::Relaxed),
            returned: self.counts.returned.load(Ordering::Relaxed),
            lost: self.counts.lost.load(Ordering::Relaxed),
            expired_requests: self.counts.expired.load(Ordering::Relaxed),
            duplicates_skipped: self.counts.duplicates.load(Ordering::Relaxed),
            undeliverable_replies: self.counts.undeliverable.load(Ordering::Relaxed),
            unacknowledged: self.counts.unacknowledged.load(Ordering::Relaxed),
            took,
        }
    }
}

/// A started [`Service`](crate::Service). Dropping it stops the routes
/// abruptly; call [`shutdown`](Self::shutdown) to lose nothing.
pub struct RunningService {
    name: String,
    signal: Signal,
    routes: JoinSet<()>,
    grace: Duration,
    /// The transports told this service's document, told again when it stops.
    described: Vec<Arc<dyn crate::transport::Transport>>,
}

impl RunningService {
    pub(crate) fn new(
        name: String,
        signal: Signal,
        routes: JoinSet<()>,
        grace: Duration,
        described: Vec<Arc<dyn crate::transport::Transport>>,
    ) -> Self {
        RunningService {
            name,
            signal,
            routes,
            grace,
            described,
        }
    }

    /// Stops taking new messages, answers requests in flight, handles the
    /// events already queued for it and lets events that are being retried
    /// finish, both within the policy's
    /// [`shutdown_grace`](crate::service::EventPolicy::shutdown_grace); then
    /// dead-letters the retrying ones and returns or counts the queued ones
    /// left; returns what it did. On Kafka the offsets of everything handled
    /// or dead-lettered are committed before the consumer leaves its group,
    /// so a restarted service does not run them again.
    pub async fn shutdown(self) -> ShutdownReport {
        let grace = self.grace;
        self.shutdown_within(grace).await
    }

    /// [`shutdown`](Self::shutdown) with `grace` instead of the policy's.
    pub async fn shutdown_within(mut self, grace: Duration) -> ShutdownReport {
        let started = Instant::now();
        for transport in &self.described {
            transport.describe_service(&self.name, None);
        }
        self.signal.begin(grace);
        self.wait_for_routes().await;
        let report = self.signal.report(started.elapsed());
        match report.is_clean() {
            true => tracing::debug!(service = %self.name, %report, "service stopped"),
            false => {
                tracing::error!(service = %self.name, %report, "service stopped with events lost or left unacknowledged")
            }
        }
        report
    }

    /// Waits until every route has ended (for example because the transport was closed).
    pub(crate) async fn wait_for_routes(&mut self) {
        while self.routes.join_next().await.is_some() {}
    }
}

impl fmt::Debug for RunningService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
