//! The `switchboard` rows of the mesh backends (HTTP, gRPC): raw `Message`s
//! published to a counting `Subscription`, and requests to a `Subscription`
//! that echoes them — the same rows on every wire, beside its raw client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use switchboard::{Bus, Message};
use tokio::sync::{mpsc, Mutex};

/// The row name.
const ROW: &str = "switchboard";
/// Events go here, counted at the responder.
const EVENTS: &str = "bench.events";
/// Requests go here, echoed by the responder.
const ECHO: &str = "bench.echo";
const TIMEOUT: Duration = Duration::from_secs(5);

/// The responder's counting subscriber and echo.
pub struct RawPath {
    counted: Arc<Mutex<mpsc::UnboundedReceiver<()>>>,
}

impl RawPath {
    /// Subscribes `responder` to the events (counted) and the echo subject.
    pub fn start(runtime: &tokio::runtime::Runtime, responder: &Bus) -> Self {
        let mut events = runtime.block_on(responder.subscribe(EVENTS)).unwrap();
        let mut echo = runtime.block_on(responder.subscribe(ECHO)).unwrap();
        // Unbounded like the raw side's channel: the bench drains after publishing.
        let (counted_tx, counted_rx) = mpsc::unbounded_channel::<()>();
        runtime.spawn(async move {
            while events.next().await.is_some() {
                let _ = counted_tx.send(());
            }
        });
        runtime.spawn(async move {
            while let Some(mut incoming) = echo.next().await {
                let reply = incoming.take_message();
                let _ = incoming.reply(reply).await;
            }
        });
        RawPath {
            counted: Arc::new(Mutex::new(counted_rx)),
        }
    }

    /// `iters` publishes, timed until the last is counted at the subscriber.
    pub fn bench_publish(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        runtime: &tokio::runtime::Runtime,
        requester: &Bus,
        size: usize,
    ) {
        let message = Message::new(super::payload(size));
        group.bench_function(BenchmarkId::new(ROW, size), |b| {
            b.to_async(runtime).iter_custom(|iters| {
                let (bus, message, counted) =
                    (requester.clone(), message.clone(), self.counted.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        bus.publish(EVENTS, message.clone()).await.unwrap();
                    }
                    let mut counted = counted.lock().await;
                    for _ in 0..iters {
                        counted.recv().await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
    }

    /// One request at a time to the echo.
    pub fn bench_serial(
        group: &mut BenchmarkGroup<'_, WallTime>,
        runtime: &tokio::runtime::Runtime,
        requester: &Bus,
        size: usize,
    ) {
        let message = Message::new(super::payload(size));
        group.bench_function(BenchmarkId::new(ROW, size), |b| {
            b.to_async(runtime).iter(|| {
                let (bus, message) = (requester.clone(), message.clone());
                async move {
                    bus.request_with_timeout(ECHO, message, TIMEOUT)
                        .await
                        .unwrap()
                }
            })
        });
    }

    /// Requests to the echo with [`super::IN_FLIGHT`] outstanding.
    pub fn bench_in_flight(
        group: &mut BenchmarkGroup<'_, WallTime>,
        runtime: &tokio::runtime::Runtime,
        requester: &Bus,
        size: usize,
    ) {
        let (bus, message) = (requester.clone(), Message::new(super::payload(size)));
        super::bench_in_flight(group, ROW, size, runtime, move || {
            let (bus, message) = (bus.clone(), message.clone());
            async move {
                bus.request_with_timeout(ECHO, message, TIMEOUT)
                    .await
                    .unwrap();
            }
        });
    }
}
