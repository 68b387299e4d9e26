//! What the benches share: payload sizes, the runtime, quick mode and in-flight loops.
#![allow(dead_code)]

pub mod raw_consumer;
pub mod raw_path;
pub mod service_path;
pub mod two_process;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;

/// Payload sizes every backend is measured with.
pub const PAYLOADS: [usize; 4] = [16, 128, 1024, 8192];

/// Requests kept in flight for the concurrent request/reply rows.
pub const IN_FLIGHT: u64 = 64;

/// A 2-worker multi-thread runtime, like a small service.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A payload of `size` bytes, built once outside the timed loops.
pub fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

/// `SWITCHBOARD_BENCH_QUICK=1` shortens every measurement, for smoke runs.
pub fn quick() -> bool {
    std::env::var("SWITCHBOARD_BENCH_QUICK").is_ok_and(|v| v == "1" || v == "true")
}

/// Criterion settings that keep a full run of every backend under ten minutes.
pub fn config() -> Criterion {
    let (warm_up, measure, samples) = if quick() {
        (Duration::from_millis(200), Duration::from_millis(500), 10)
    } else {
        (Duration::from_millis(500), Duration::from_secs(2), 15)
    };
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
}

/// Runs `iters` calls of `call` with up to [`IN_FLIGHT`] outstanding at once.
pub async fn run_in_flight<F, Fut>(iters: u64, call: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..IN_FLIGHT {
        let share = iters / IN_FLIGHT + u64::from(worker < iters % IN_FLIGHT);
        let call = call.clone();
        workers.spawn(async move {
            for _ in 0..share {
                call().await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Says why a backend's benches are skipped (its server is not reachable).
pub fn skip(backend: &str, why: impl std::fmt::Display) {
    eprintln!("skipping the {backend} benches: {why}");
}

/// Adds a row to `group` that runs `call` with [`IN_FLIGHT`] calls outstanding
/// and reports time per call.
pub fn bench_in_flight<F, Fut>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    size: usize,
    runtime: &tokio::runtime::Runtime,
    call: F,
) where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    group.bench_function(criterion::BenchmarkId::new(name, size), |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let call = call.clone();
            async move {
                let start = std::time::Instant::now();
                run_in_flight(iters, call).await;
                start.elapsed()
            }
        })
    });
}

/// Two HTTP services on loopback ports: a responder, and a requester that
/// knows it as a peer.
#[cfg(feature = "http")]
pub async fn http_pair() -> (switchboard::Bus, switchboard::Bus) {
    let responder = switchboard::connect("http://127.0.0.1:0").await.unwrap();
    let peer = format!("http://{}", responder.local_address().unwrap());
    let requester = switchboard::connect(&format!("http://127.0.0.1:0?peers={peer}"))
        .await
        .unwrap();
    (responder, requester)
}
