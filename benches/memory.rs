//! In-memory backend against its raw equivalent (tokio channels), in the same run.
//!
//! `cargo bench --bench memory`. Each group has a `switchboard` and a `raw`
//! function, so the cost of the abstraction reads as a ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::{Bus, Message};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const PAYLOAD: usize = 128;
const BUFFER: usize = 1024;
const IN_FLIGHT: u64 = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn payload() -> Bytes {
    Bytes::from(vec![7u8; PAYLOAD])
}

async fn connect(runtime_hub: &str) -> Bus {
    switchboard::connect(&format!("memory://{runtime_hub}?buffer={BUFFER}"))
        .await
        .unwrap()
}

fn publish_to_delivery(c: &mut Criterion) {
    let rt = runtime();
    let bus = rt.block_on(connect("bench-publish"));
    let mut group = c.benchmark_group("memory/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("switchboard", PAYLOAD), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = bus.clone();
            async move {
                let mut subscription = bus.subscribe("bench.events").await.unwrap();
                let consumer = tokio::spawn(async move {
                    for _ in 0..iters {
                        subscription.next().await.unwrap();
                    }
                });
                let message = Message::new(payload());
                let start = Instant::now();
                for _ in 0..iters {
                    bus.publish("bench.events", message.clone()).await.unwrap();
                }
                consumer.await.unwrap();
                start.elapsed()
            }
        })
    });
    group.bench_function(BenchmarkId::new("raw_tokio_mpsc", PAYLOAD), |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let (tx, mut rx) = mpsc::channel::<Message>(BUFFER);
            let consumer = tokio::spawn(async move {
                for _ in 0..iters {
                    rx.recv().await.unwrap();
                }
            });
            let message = Message::new(payload());
            let start = Instant::now();
            for _ in 0..iters {
                tx.send(message.clone()).await.unwrap();
            }
            consumer.await.unwrap();
            start.elapsed()
        })
    });
    group.finish();
}

type RawRequest = (Message, oneshot::Sender<Message>);

fn raw_responder() -> mpsc::Sender<RawRequest> {
    let (tx, mut rx) = mpsc::channel::<RawRequest>(BUFFER);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(request);
        }
    });
    tx
}

async fn raw_request(server: &mpsc::Sender<RawRequest>, message: Message) -> Message {
    let (tx, rx) = oneshot::channel();
    server.send((message, tx)).await.unwrap();
    rx.await.unwrap()
}

fn request_reply(c: &mut Criterion) {
    let rt = runtime();
    let bus = rt.block_on(connect("bench-request"));
    let mut subscription = rt.block_on(bus.subscribe("bench.echo")).unwrap();
    rt.spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            let reply = incoming.take_message();
            incoming.reply(reply).await.unwrap();
        }
    });
    let raw = rt.block_on(async { raw_responder() });
    let timeout = Duration::from_secs(5);

    let mut group = c.benchmark_group("memory/request_reply_serial");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("switchboard", PAYLOAD), |b| {
        let message = Message::new(payload());
        b.to_async(&rt).iter(|| {
            let (bus, message) = (bus.clone(), message.clone());
            async move {
                bus.request_with_timeout("bench.echo", message, timeout)
                    .await
                    .unwrap()
            }
        })
    });
    group.bench_function(BenchmarkId::new("raw_tokio_mpsc_oneshot", PAYLOAD), |b| {
        let message = Message::new(payload());
        b.to_async(&rt).iter(|| {
            let (raw, message) = (raw.clone(), message.clone());
            async move { raw_request(&raw, message).await }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("memory/request_reply_64_in_flight");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("switchboard", PAYLOAD), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = bus.clone();
            async move {
                let start = Instant::now();
                run_in_flight(iters, move || {
                    let bus = bus.clone();
                    async move {
                        bus.request_with_timeout("bench.echo", Message::new(payload()), timeout)
                            .await
                            .unwrap();
                    }
                })
                .await;
                start.elapsed()
            }
        })
    });
    group.bench_function(BenchmarkId::new("raw_tokio_mpsc_oneshot", PAYLOAD), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let raw = raw.clone();
            async move {
                let start = Instant::now();
                run_in_flight(iters, move || {
                    let raw = raw.clone();
                    async move {
                        raw_request(&raw, Message::new(payload())).await;
                    }
                })
                .await;
                start.elapsed()
            }
        })
    });
    group.finish();
}

/// Runs `iters` calls with up to [`IN_FLIGHT`] outstanding at once.
async fn run_in_flight<F, Fut>(iters: u64, call: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish_to_delivery, request_reply
}
criterion_main!(benches);
