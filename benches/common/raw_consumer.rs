//! What a raw client's consumer row shares with the typed one: a count of
//! the events it handled, the window that keeps at most [`WINDOW`] of them
//! unhandled, and the timed loop that publishes until every one was handled.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use tokio::sync::{Notify, Semaphore};

use super::service_path::WINDOW;

/// Events a raw consumer handled, shared between it and the timed loop.
#[derive(Clone)]
pub struct RawCount {
    handled: Arc<AtomicU64>,
    progress: Arc<Notify>,
    window: Arc<Semaphore>,
}

impl Default for RawCount {
    fn default() -> Self {
        RawCount {
            handled: Arc::default(),
            progress: Arc::default(),
            window: Arc::new(Semaphore::new(WINDOW)),
        }
    }
}

impl RawCount {
    /// Counts `events` handled and lets as many more be published.
    pub fn handled(&self, events: usize) {
        self.handled.fetch_add(events as u64, Ordering::Relaxed);
        self.window.add_permits(events);
        self.progress.notify_one();
    }

    /// Events handled so far.
    pub fn so_far(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Waits until `target` events were handled; `false` after 5 s without progress.
    pub async fn reaches(&self, target: u64) -> bool {
        while self.so_far() < target {
            let wait = self.progress.notified();
            if self.so_far() >= target {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// Benches `row`: `publish` (the raw client's publisher) until `count` saw
/// each event handled, with at most [`WINDOW`] unhandled.
pub fn bench_raw_events<P, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    row: &str,
    size: usize,
    count: &RawCount,
    publish: P,
) where
    P: Fn() -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    group.bench_function(BenchmarkId::new(row, size), |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let (count, publish) = (count.clone(), publish.clone());
            async move {
                let target = count.so_far() + iters;
                let start = Instant::now();
                for _ in 0..iters {
                    count.window.acquire().await.unwrap().forget();
                    publish().await;
                }
                if !count.reaches(target).await {
                    eprintln!("raw bench: events were not all handled within 5 s");
                }
                start.elapsed()
            }
        })
    });
}
