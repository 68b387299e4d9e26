//! NATS backend against raw `async-nats`, same server, same run.
//!
//! `cargo bench --all-features --bench nats` (needs nats-server on 127.0.0.1:4222).
//! Rows: publish counted at the subscriber, and request/reply serial and with
//! 64 in flight, each as `switchboard` and `raw_async_nats` per payload size.

mod common;

use std::time::{Duration, Instant};

use common::{config, payload, run_in_flight, runtime, skip, PAYLOADS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use switchboard::Message;

const URL: &str = "nats://127.0.0.1:4222";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Core NATS drops messages for a subscriber that falls behind (slow consumer),
/// so counting stops after this long without a message instead of waiting forever.
const QUIET: Duration = Duration::from_secs(2);

/// Receives up to `expected` messages; reports how many never came.
async fn count<S: futures_util::Stream + Unpin>(mut messages: S, expected: u64) {
    let mut received = 0;
    while received < expected {
        match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    if received < expected {
        eprintln!(
            "nats bench: {} of {expected} messages dropped (slow consumer)",
            expected - received
        );
    }
}

fn subject(name: &str) -> String {
    format!("bench.{name}.p{}", std::process::id())
}

fn nats(c: &mut Criterion) {
    let rt = runtime();
    let Ok(publisher) = rt.block_on(switchboard::connect(URL)) else {
        return skip("nats", format!("{URL} is unreachable"));
    };
    let subscriber = rt.block_on(switchboard::connect(URL)).unwrap();
    let raw = rt.block_on(async_nats::connect(URL)).unwrap();
    let raw_subscriber = rt.block_on(async_nats::connect(URL)).unwrap();

    let mut group = c.benchmark_group("nats/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        let events = subject("events");
        group.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (publisher, subscriber, message, events) = (
                    publisher.clone(),
                    subscriber.clone(),
                    message.clone(),
                    events.clone(),
                );
                async move {
                    let subscription = subscriber.subscribe(&events).await.unwrap();
                    let start = Instant::now();
                    let counting = tokio::spawn(count(subscription, iters));
                    for _ in 0..iters {
                        publisher.publish(&events, message.clone()).await.unwrap();
                    }
                    counting.await.unwrap();
                    start.elapsed()
                }
            })
        });
        group.bench_function(BenchmarkId::new("raw_async_nats", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, raw_subscriber, body, events) = (
                    raw.clone(),
                    raw_subscriber.clone(),
                    message.payload.clone(),
                    events.clone(),
                );
                async move {
                    let subscription = raw_subscriber.subscribe(events.clone()).await.unwrap();
                    raw_subscriber.flush().await.unwrap();
                    let start = Instant::now();
                    let counting = tokio::spawn(count(subscription, iters));
                    for _ in 0..iters {
                        raw.publish(events.clone(), body.clone()).await.unwrap();
                    }
                    counting.await.unwrap();
                    start.elapsed()
                }
            })
        });
    }
    group.finish();

    // Responders: a switchboard one and a raw one, both echoing.
    let echo = subject("echo");
    let raw_echo = subject("raw-echo");
    let mut subscription = rt.block_on(subscriber.subscribe(&echo)).unwrap();
    rt.spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            let reply = incoming.take_message();
            let _ = incoming.reply(reply).await;
        }
    });
    let mut raw_requests = rt
        .block_on(raw_subscriber.subscribe(raw_echo.clone()))
        .unwrap();
    let raw_replier = raw_subscriber.clone();
    rt.spawn(async move {
        while let Some(request) = raw_requests.next().await {
            if let Some(reply) = request.reply {
                let _ = raw_replier.publish(reply, request.payload).await;
            }
        }
    });
    rt.block_on(raw_subscriber.flush()).unwrap();

    let mut serial = c.benchmark_group("nats/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        serial.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter(|| {
                let (bus, message, echo) = (publisher.clone(), message.clone(), echo.clone());
                async move {
                    bus.request_with_timeout(&echo, message, TIMEOUT)
                        .await
                        .unwrap()
                }
            })
        });
        serial.bench_function(BenchmarkId::new("raw_async_nats", size), |b| {
            b.to_async(&rt).iter(|| {
                let (raw, body, subject) = (raw.clone(), message.payload.clone(), raw_echo.clone());
                async move { raw.request(subject, body).await.unwrap() }
            })
        });
    }
    serial.finish();

    let mut concurrent = c.benchmark_group("nats/request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        concurrent.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (bus, message, echo) = (publisher.clone(), message.clone(), echo.clone());
                async move {
                    let start = Instant::now();
                    run_in_flight(iters, move || {
                        let (bus, message, echo) = (bus.clone(), message.clone(), echo.clone());
                        async move {
                            bus.request_with_timeout(&echo, message, TIMEOUT)
                                .await
                                .unwrap();
                        }
                    })
                    .await;
                    start.elapsed()
                }
            })
        });
        concurrent.bench_function(BenchmarkId::new("raw_async_nats", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, body, subject) = (raw.clone(), message.payload.clone(), raw_echo.clone());
                async move {
                    let start = Instant::now();
                    run_in_flight(iters, move || {
                        let (raw, body, subject) = (raw.clone(), body.clone(), subject.clone());
                        async move {
                            raw.request(subject, body).await.unwrap();
                        }
                    })
                    .await;
                    start.elapsed()
                }
            })
        });
    }
    concurrent.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = nats
}
criterion_main!(benches);
