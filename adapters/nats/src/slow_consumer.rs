//! Messages the client dropped because a subscription's queue was full (core
//! NATS "slow consumer"): counted, reported once per burst with the right
//! cause, and shown in health for a while after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long health stays `degraded` after the last drop.
const DEGRADED_FOR: Duration = Duration::from_secs(10);
/// At most one log line per this interval; it carries the count since the last.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The drop reports of one connection.
pub(super) struct SlowConsumers {
    capacity: usize,
    total: AtomicU64,
    state: Mutex<Reports>,
}

#[derive(Default)]
struct Reports {
    last_drop: Option<Instant>,
    last_report: Option<Instant>,
    unreported: u64,
}

impl SlowConsumers {
    /// Reports for subscriptions whose queues hold `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        SlowConsumers {
            capacity,
            total: AtomicU64::new(0),
            state: Mutex::new(Reports::default()),
        }
    }

    /// The client dropped a message for subscription `sid`. async-nats may
    /// also drop the report itself when its event queue is full, so counts
    /// are a lower bound.
    pub fn dropped(&self, sid: u64) {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        #[cfg(feature = "metrics")]
        metrics::counter!("switchboard_nats_client_dropped_total").increment(1);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_drop = Some(now);
        state.unreported += 1;
        if state
            .last_report
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            tracing::warn!(
                sid,
                dropped = state.unreported,
                total,
                capacity = self.capacity,
                "nats: this client dropped messages for a subscription whose handler is slower than its publishers \
                 (its queue of `subscription_capacity` messages was full, with `pending_bytes` buffered or the \
                 handler busy); core NATS does not redeliver them: use JetStream (?jetstream=STREAM) for events \
                 that must not be lost, or raise pending_bytes"
            );
            state.last_report = Some(now);
            state.unreported = 0;
        }
    }

    /// Messages dropped so far (at least).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Why health is degraded, while drops are recent.
    pub fn degraded(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let last = state.last_drop?;
        (last.elapsed() < DEGRADED_FOR).then(|| {
            format!(
                "slow consumer: the client dropped at least {} message(s) (subscription queue of {} full), the last {:.1} s ago",
                self.total(),
                self.capacity,
                last.elapsed().as_secs_f64()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_and_degrade_health() {
        let reports = SlowConsumers::new(8);
        assert!(reports.degraded().is_none());
        for _ in 0..1000 {
            reports.dropped(3);
        }
        assert_eq!(reports.total(), 1000);
        let reason = reports.degraded().unwrap();
        assert!(reason.contains("at least 1000"), "{reason}");
        // One report went out; the rest wait for the next interval.
        assert_eq!(reports.state.lock().unwrap().unreported, 999);
    }
}
