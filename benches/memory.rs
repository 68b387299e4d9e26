//! In-memory backend against its raw equivalent (tokio channels), in the same run.
//!
//! `cargo bench --bench memory`. Each group has a `switchboard` row (a
//! `Subscription` on raw messages), a `service_typed_json` row (a typed
//! `Service` handler, the API users write) and a `raw_*` row per payload size,
//! so the cost of each layer reads as a ratio.

mod common;

use std::time::{Duration, Instant};

use common::service_path::{self, TypedService};
use common::{bench_in_flight, config, payload, runtime, PAYLOADS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::{Bus, Message};
use tokio::sync::{mpsc, oneshot};

const BUFFER: usize = 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(hub: &str) -> Bus {
    switchboard::connect(&format!("memory://{hub}?buffer={BUFFER}"))
        .await
        .unwrap()
}

fn publish_to_delivery(c: &mut Criterion) {
    let rt = runtime();
    let bus = rt.block_on(connect("bench-publish"));
    let typed = std::sync::Arc::new(rt.block_on(TypedService::start(&bus, "bench.typed")));
    let mut group = c.benchmark_group("memory/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        group.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let bus = bus.clone();
                async move {
                    let mut subscription = bus.subscribe("bench.events").await.unwrap();
                    let consumer = tokio::spawn(async move {
                        for _ in 0..iters {
                            subscription.next().await.unwrap();
                        }
                    });
                    let message = Message::new(payload(size));
                    let start = Instant::now();
                    for _ in 0..iters {
                        bus.publish("bench.events", message.clone()).await.unwrap();
                    }
                    consumer.await.unwrap();
                    start.elapsed()
                }
            })
        });
        group.bench_function(BenchmarkId::new("raw_tokio_mpsc", size), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let (tx, mut rx) = mpsc::channel::<Message>(BUFFER);
                let consumer = tokio::spawn(async move {
                    for _ in 0..iters {
                        rx.recv().await.unwrap();
                    }
                });
                let message = Message::new(payload(size));
                let start = Instant::now();
                for _ in 0..iters {
                    tx.send(message.clone()).await.unwrap();
                }
                consumer.await.unwrap();
                start.elapsed()
            })
        });
        service_path::bench_events(&mut group, &rt, &bus, &typed, size);
    }
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
    let typed = std::sync::Arc::new(rt.block_on(TypedService::start(&bus, "bench.typed")));

    let mut serial = c.benchmark_group("memory/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        serial.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter(|| {
                let (bus, message) = (bus.clone(), message.clone());
                async move {
                    bus.request_with_timeout("bench.echo", message, TIMEOUT)
                        .await
                        .unwrap()
                }
            })
        });
        serial.bench_function(BenchmarkId::new("raw_tokio_mpsc_oneshot", size), |b| {
            b.to_async(&rt).iter(|| {
                let (raw, message) = (raw.clone(), message.clone());
                async move { raw_request(&raw, message).await }
            })
        });
        service_path::bench_serial(&mut serial, &rt, &bus, &typed.echo, size);
    }
    serial.finish();

    let mut concurrent = c.benchmark_group("memory/request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        bench_in_flight(&mut concurrent, "switchboard", size, &rt, {
            let (bus, message) = (bus.clone(), message.clone());
            move || {
                let (bus, message) = (bus.clone(), message.clone());
                async move {
                    bus.request_with_timeout("bench.echo", message, TIMEOUT)
                        .await
                        .unwrap();
                }
            }
        });
        bench_in_flight(&mut concurrent, "raw_tokio_mpsc_oneshot", size, &rt, {
            let (raw, message) = (raw.clone(), message.clone());
            move || {
                let (raw, message) = (raw.clone(), message.clone());
                async move {
                    raw_request(&raw, message).await;
                }
            }
        });
        service_path::bench_in_flight(&mut concurrent, &rt, &bus, &typed.echo, size);
    }
    concurrent.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish_to_delivery, request_reply
}
criterion_main!(benches);
