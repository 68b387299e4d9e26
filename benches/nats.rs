//! NATS backend against raw `async-nats`, same server, same run.
//!
//! `cargo bench --all-features --bench nats` (needs nats-server on 127.0.0.1:4222).
//! Rows: publish counted at the subscriber (with at most 4096 uncounted, so the
//! server never cuts a slow consumer off), and request/reply serial and with
//! 64 in flight, each as `switchboard` (a `Subscription` echoing raw messages),
//! `service_typed_json` (a typed `Service` handler called with `request_json`
//! / `publish_json`, the API users write) and `raw_async_nats` per payload size;
//! and `two_process_*` groups with the responder in a second process (a copy
//! of this binary), `service_typed_json` against `raw_async_nats`, with
//! event bursts consumed in that process (`two_process_events_burst`, see
//! `benches/nats/burst.rs`); and the publisher alone, `publish_json` against
//! the raw client encoding and publishing (`publish_json`, see
//! `benches/nats/publish.rs`).

#[path = "nats/burst.rs"]
mod burst;
mod common;
#[path = "nats/publish.rs"]
mod publish;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::service_path::{self, TypedService};
use common::two_process::{self, Responder};
use common::{bench_in_flight, config, payload, runtime, skip, PAYLOADS};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use switchboard::Message;
use tokio::sync::Semaphore;

const URL: &str = "nats://127.0.0.1:4222";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Core NATS drops messages for a subscriber that falls behind (slow consumer).
/// Both rows therefore keep at most this many messages published but not yet
/// counted, so what is measured is delivery, not drops.
const WINDOW: usize = 4096;

/// How long a row waits for a missing message before it gives up (and says so).
const QUIET: Duration = Duration::from_secs(2);

/// Counts `expected` messages, giving the publisher a window slot back for each.
async fn count<S: futures_util::Stream + Unpin>(
    messages: Arc<tokio::sync::Mutex<S>>,
    expected: u64,
    window: Arc<Semaphore>,
) {
    let mut messages = messages.lock().await;
    let mut received = 0;
    while received < expected {
        match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(Some(_)) => {
                received += 1;
                window.add_permits(1);
            }
            _ => break,
        }
    }
    if received < expected {
        eprintln!(
            "nats bench: {} of {expected} messages dropped",
            expected - received
        );
    }
}

/// Waits for a slot in the window before a publish; false if none came back in time.
async fn slot(window: &Semaphore) -> bool {
    match tokio::time::timeout(QUIET, window.acquire()).await {
        Ok(Ok(permit)) => {
            permit.forget();
            true
        }
        _ => false,
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
    let raw = rt
        .block_on(switchboard::nats::async_nats::connect(URL))
        .unwrap();
    let raw_subscriber = rt
        .block_on(switchboard::nats::async_nats::connect(URL))
        .unwrap();

    // Subscribed once, before any timing: a subscription is live when its
    // subscribe returns (switchboard) or after a server round trip (raw).
    let events = subject("events");
    let raw_events = subject("raw-events");
    let subscription = Arc::new(tokio::sync::Mutex::new(
        rt.block_on(subscriber.subscribe(&events)).unwrap(),
    ));
    let raw_subscription = Arc::new(tokio::sync::Mutex::new(
        rt.block_on(raw_subscriber.subscribe(raw_events.clone()))
            .unwrap(),
    ));
    rt.block_on(raw_subscriber.flush()).unwrap();
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });

    let typed = Arc::new(rt.block_on(TypedService::start(&subscriber, &subject("typed"))));

    let mut group = c.benchmark_group("nats/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        group.bench_function(BenchmarkId::new("switchboard", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (publisher, subscription, message, events) = (
                    publisher.clone(),
                    subscription.clone(),
                    message.clone(),
                    events.clone(),
                );
                async move {
                    let window = Arc::new(Semaphore::new(WINDOW));
                    let start = Instant::now();
                    let counting = tokio::spawn(count(subscription, iters, window.clone()));
                    for _ in 0..iters {
                        if !slot(&window).await {
                            break;
                        }
                        publisher.publish(&events, message.clone()).await.unwrap();
                    }
                    counting.await.unwrap();
                    start.elapsed()
                }
            })
        });
        group.bench_function(BenchmarkId::new("raw_async_nats", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, subscription, body, events) = (
                    raw.clone(),
                    raw_subscription.clone(),
                    message.payload.clone(),
                    raw_events.clone(),
                );
                async move {
                    let window = Arc::new(Semaphore::new(WINDOW));
                    let start = Instant::now();
                    let counting = tokio::spawn(count(subscription, iters, window.clone()));
                    for _ in 0..iters {
                        if !slot(&window).await {
                            break;
                        }
                        raw.publish(events.clone(), body.clone()).await.unwrap();
                    }
                    counting.await.unwrap();
                    start.elapsed()
                }
            })
        });
        service_path::bench_events(&mut group, &rt, &publisher, &typed, size);
    }
    group.finish();
    publish::bench(c, &rt, URL, &publisher);

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
        service_path::bench_serial(&mut serial, &rt, &publisher, &typed.echo, size);
    }
    serial.finish();

    let mut concurrent = c.benchmark_group("nats/request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        bench_in_flight(&mut concurrent, "switchboard", size, &rt, {
            let (bus, message, echo) = (publisher.clone(), message.clone(), echo.clone());
            move || {
                let (bus, message, echo) = (bus.clone(), message.clone(), echo.clone());
                async move {
                    bus.request_with_timeout(&echo, message, TIMEOUT)
                        .await
                        .unwrap();
                }
            }
        });
        bench_in_flight(&mut concurrent, "raw_async_nats", size, &rt, {
            let (raw, body, subject) = (raw.clone(), message.payload.clone(), raw_echo.clone());
            move || {
                let (raw, body, subject) = (raw.clone(), body.clone(), subject.clone());
                async move {
                    raw.request(subject, body).await.unwrap();
                }
            }
        });
        service_path::bench_in_flight(&mut concurrent, &rt, &publisher, &typed.echo, size);
    }
    concurrent.finish();
}

/// The responder copy of the two-process rows: a typed service and a raw
/// async-nats echo under the parent's prefix.
fn nats_responder(prefix: String) {
    runtime().block_on(async {
        let bus = switchboard::connect(URL).await.unwrap();
        let _typed = TypedService::start(&bus, &prefix).await;
        let _burst = burst::consume(URL, &prefix).await;
        let raw = switchboard::nats::async_nats::connect(URL).await.unwrap();
        let mut requests = raw.subscribe(format!("{prefix}.raw")).await.unwrap();
        raw.flush().await.unwrap();
        let replier = raw.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = replier.publish(reply, request.payload).await;
                }
            }
        });
        two_process::ready("");
        two_process::serve_until_killed().await;
    });
}

/// Requester here, responder in another process: raw async-nats against the
/// typed `Service` path, 128 B.
fn nats_two_process(c: &mut Criterion) {
    let rt = runtime();
    let Ok(requester) = rt.block_on(switchboard::connect(URL)) else {
        return skip("nats", format!("{URL} is unreachable"));
    };
    let raw = rt
        .block_on(switchboard::nats::async_nats::connect(URL))
        .unwrap();
    let prefix = subject("two-process");
    let _responder = Responder::start(&prefix);
    let (echo, raw_echo) = (service_path::echo_subject(&prefix), format!("{prefix}.raw"));
    let body = payload(126);

    let mut serial = c.benchmark_group("nats/two_process_request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &echo, 128);
    serial.bench_function(BenchmarkId::new("raw_async_nats", 128), |b| {
        b.to_async(&rt).iter(|| {
            let (raw, body, subject) = (raw.clone(), body.clone(), raw_echo.clone());
            async move { raw.request(subject, body).await.unwrap() }
        })
    });
    serial.finish();

    let mut concurrent = c.benchmark_group("nats/two_process_request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    service_path::bench_in_flight(&mut concurrent, &rt, &requester, &echo, 128);
    bench_in_flight(&mut concurrent, "raw_async_nats", 128, &rt, {
        let (raw, body, subject) = (raw.clone(), body.clone(), raw_echo.clone());
        move || {
            let (raw, body, subject) = (raw.clone(), body.clone(), subject.clone());
            async move {
                raw.request(subject, body).await.unwrap();
            }
        }
    });
    concurrent.finish();

    burst::bench(c, &rt, URL, &requester, &prefix);
}

criterion_group! {
    name = benches;
    config = config();
    targets = nats, nats_two_process
}

fn main() {
    if let Some(prefix) = two_process::responder_prefix() {
        return nats_responder(prefix);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
