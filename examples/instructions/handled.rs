//! Counting handled events for the broker rows, and waiting for a count
//! without polling: a run's instructions then do not grow with its wall
//! time.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::service::RunningService;
use switchboard::{Bus, Service};
use tokio::sync::Notify;

use super::Order;

/// How many events a consumer handled, with a wake-up at a target count.
#[derive(Default)]
pub struct Handled {
    count: AtomicUsize,
    target: AtomicUsize,
    reached: Notify,
}

impl Handled {
    /// Counts one handled event.
    pub fn one(&self) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if count == self.target.load(Ordering::Relaxed) {
            self.reached.notify_one();
        }
    }

    /// The events handled so far.
    pub fn so_far(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `target` events were handled, or `patience` passed;
    /// whether they were.
    pub async fn reaches(&self, target: usize, patience: Duration) -> bool {
        self.target.store(target, Ordering::Relaxed);
        let deadline = Instant::now() + patience;
        while self.so_far() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // A count that passed the target before it was set never wakes
            // the waiter: look again every second.
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), self.reached.notified())
                .await;
        }
        true
    }
}

/// Publishes `count` events with `publish`, then waits until `handled`
/// counted them all (two minutes at most).
pub async fn feed<F, Fut>(
    backend: &'static str,
    count: usize,
    handled: &Handled,
    mut publish: F,
) -> switchboard::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = switchboard::Result<()>>,
{
    let start = handled.so_far();
    for _ in 0..count {
        publish().await?;
    }
    if handled
        .reaches(start + count, Duration::from_secs(120))
        .await
    {
        Ok(())
    } else {
        Err(switchboard::Error::backend(
            backend,
            format!(
                "{} of {count} events handled in 120 s",
                handled.so_far() - start
            ),
        ))
    }
}

/// A typed `Service` called `name` on `bus` whose handler decodes the
/// orders on `subject` and counts them.
pub async fn counting_service(
    bus: &Bus,
    name: &str,
    subject: &str,
) -> switchboard::Result<(RunningService, Arc<Handled>)> {
    let handled = Arc::new(Handled::default());
    let counter = handled.clone();
    let running = Service::new(name, bus.clone())
        .on(subject, move |order: Order| {
            std::hint::black_box(order);
            counter.one();
            async { Ok::<_, String>(()) }
        })
        .start()
        .await?;
    Ok((running, handled))
}
