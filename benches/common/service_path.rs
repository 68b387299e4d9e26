//! The path users call: a typed `Service` handler answering `request_json`,
//! and a typed handler taking `publish_json` events. Each backend's bench adds
//! these rows (`service_typed_json`) to the same groups as its raw-client and
//! `Subscription` rows, so the three compare in one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use serde::{Deserialize, Serialize};
use switchboard::{Bus, Service};
use tokio::sync::{Notify, Semaphore};

/// The row name of the Service path in every group.
pub const ROW: &str = "service_typed_json";

/// Events published but not yet handled, at most: keeps core NATS from
/// dropping for a slow consumer, so delivery is measured, not drops.
pub const WINDOW: usize = 4096;

/// A typed message of about `size` bytes on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub note: String,
}

impl Order {
    /// An order whose JSON is about `size` bytes.
    pub fn of_size(size: usize) -> Self {
        Order {
            id: 42,
            note: "x".repeat(size.saturating_sub(20)),
        }
    }
}

/// A running typed service: `{prefix}.echo` answers with the order,
/// `{prefix}.placed` counts handled events.
pub struct TypedService {
    pub echo: String,
    pub placed: String,
    handled: Arc<AtomicU64>,
    progress: Arc<Notify>,
    window: Arc<Semaphore>,
    _running: switchboard::service::RunningService,
}

impl TypedService {
    /// Starts the service on `responder`.
    pub async fn start(responder: &Bus, prefix: &str) -> Self {
        let (echo, placed) = (echo_subject(prefix), format!("{prefix}.placed"));
        let handled = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let window = Arc::new(Semaphore::new(WINDOW));
        let running = Service::new("bench", responder.clone())
            .on(&echo, |order: Order| async move { Ok::<_, String>(order) })
            .on(&placed, {
                let (handled, progress, window) =
                    (handled.clone(), progress.clone(), window.clone());
                move |_order: Order| {
                    let (handled, progress, window) =
                        (handled.clone(), progress.clone(), window.clone());
                    async move {
                        handled.fetch_add(1, Ordering::Relaxed);
                        window.add_permits(1);
                        progress.notify_one();
                        Ok::<_, String>(())
                    }
                }
            })
            .start()
            .await
            .unwrap();
        TypedService {
            echo,
            placed,
            handled,
            progress,
            window,
            _running: running,
        }
    }

    async fn handled_reaches(&self, target: u64) -> bool {
        loop {
            if self.handled.load(Ordering::Relaxed) >= target {
                return true;
            }
            let wait = self.progress.notified();
            if self.handled.load(Ordering::Relaxed) >= target {
                return true;
            }
            if tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

/// The subject a typed service started under `prefix` answers on.
pub fn echo_subject(prefix: &str) -> String {
    format!("{prefix}.echo")
}

/// Serial typed request/reply: `caller.request_json` → the service's handler on `echo`.
pub fn bench_serial(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    caller: &Bus,
    echo: &str,
    size: usize,
) {
    let order = Order::of_size(size);
    group.bench_function(BenchmarkId::new(ROW, size), |b| {
        b.to_async(runtime).iter(|| {
            let (caller, echo, order) = (caller.clone(), echo.to_owned(), order.clone());
            async move {
                let _: Order = caller.request_json(&echo, &order).await.unwrap();
            }
        })
    });
}

/// Typed request/reply with 64 calls outstanding.
pub fn bench_in_flight(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    caller: &Bus,
    echo: &str,
    size: usize,
) {
    let order = Order::of_size(size);
    let (caller, echo) = (caller.clone(), echo.to_owned());
    super::bench_in_flight(group, ROW, size, runtime, move || {
        let (caller, echo, order) = (caller.clone(), echo.clone(), order.clone());
        async move {
            let _: Order = caller.request_json(&echo, &order).await.unwrap();
        }
    });
}

/// `publish_json` → handled by the typed handler, timed until the last one is handled.
pub fn bench_events(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    caller: &Bus,
    service: &Arc<TypedService>,
    size: usize,
) {
    let order = Order::of_size(size);
    group.bench_function(BenchmarkId::new(ROW, size), |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let (caller, service, order) = (caller.clone(), service.clone(), order.clone());
            async move {
                let target = service.handled.load(Ordering::Relaxed) + iters;
                let start = Instant::now();
                for _ in 0..iters {
                    match tokio::time::timeout(Duration::from_secs(5), service.window.acquire())
                        .await
                    {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => break,
                    }
                    caller.publish_json(&service.placed, &order).await.unwrap();
                }
                if !service.handled_reaches(target).await {
                    eprintln!("service bench: events were not all handled within 5 s");
                }
                start.elapsed()
            }
        })
    });
}
