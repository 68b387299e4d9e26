//! Event bursts across two processes: this process publishes a burst as
//! fast as it can, with no window, and the responder copy consumes it with
//! default settings: a typed `Service` handler fed by `publish_json`
//! (`service_typed_json`), beside a raw async-nats subscriber fed by raw
//! publishes that decodes the same order (`raw_async_nats`), and the typed
//! handler fed by raw publishes of that JSON (`raw_publish_to_service`: the
//! consumer's cost alone). A burst is timed until the consumer has handled every event; an
//! event the consumer never gets (core NATS drops for a slow consumer) is
//! counted and reported, never hidden in the time.
//!
//! `SWITCHBOARD_BENCH_BURST` sets the events per burst (default 100,000;
//! the comparison uses 1,000,000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use switchboard::nats::async_nats;
use switchboard::{Bus, Service};

use super::common::service_path::Order;

/// How long a burst may go without one more event handled before the rest
/// count as lost.
const STALLED: Duration = Duration::from_secs(1);
/// How often the publisher asks the consumer how far it got.
const POLL: Duration = Duration::from_millis(1);

/// Events per burst.
fn burst() -> u64 {
    std::env::var("SWITCHBOARD_BENCH_BURST")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100_000)
}

/// Subjects under the parent's prefix: typed events, raw events, the counts.
fn subjects(prefix: &str) -> (String, String, String) {
    (
        format!("{prefix}.burst.typed"),
        format!("{prefix}.burst.raw"),
        format!("{prefix}.burst.count"),
    )
}

/// In the responder copy: the two consumers, and a raw responder that
/// answers "typed raw" with how many events each has handled.
pub async fn consume(url: &str, prefix: &str) -> (Bus, async_nats::Client) {
    let (typed, raw, count) = subjects(prefix);
    let handled_typed = Arc::new(AtomicU64::new(0));
    let handled_raw = Arc::new(AtomicU64::new(0));
    let bus = switchboard::connect(url).await.unwrap();
    let running = Service::new("burst", bus.clone())
        .on(&typed, {
            let handled = handled_typed.clone();
            move |order: Order| {
                let handled = handled.clone();
                async move {
                    std::hint::black_box(order);
                    handled.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, String>(())
                }
            }
        })
        .start()
        .await
        .unwrap();
    // Kept for the life of the copy, which is killed when the rows are done.
    std::mem::forget(running);
    let client = async_nats::connect(url.trim_start_matches("nats://"))
        .await
        .unwrap();
    let mut events = client.subscribe(raw).await.unwrap();
    let handled = handled_raw.clone();
    tokio::spawn(async move {
        while let Some(message) = events.next().await {
            let order: Order = serde_json::from_slice(&message.payload).expect("an order");
            std::hint::black_box(order);
            handled.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut asks = client.subscribe(count).await.unwrap();
    let replier = client.clone();
    tokio::spawn(async move {
        while let Some(ask) = asks.next().await {
            let counts = format!(
                "{} {}",
                handled_typed.load(Ordering::Relaxed),
                handled_raw.load(Ordering::Relaxed)
            );
            if let Some(reply) = ask.reply {
                let _ = replier.publish(reply, counts.into()).await;
            }
        }
    });
    client.flush().await.unwrap();
    (bus, client)
}

/// Which publisher feeds which consumer.
#[derive(Clone, Copy)]
enum Row {
    /// `publish_json` → typed `Service`.
    Typed,
    /// Raw publish → raw subscriber.
    Raw,
    /// Raw publish → typed `Service`.
    RawToTyped,
}

/// How many events the consumer of `row` has handled.
async fn handled(client: &async_nats::Client, count: &str, row: Row) -> u64 {
    let answer = client.request(count.to_owned(), "".into()).await.unwrap();
    let text = std::str::from_utf8(&answer.payload).unwrap();
    let (typed, raw) = text.split_once(' ').unwrap();
    match row {
        Row::Typed | Row::RawToTyped => typed.parse().unwrap(),
        Row::Raw => raw.parse().unwrap(),
    }
}

/// Waits until `target` events are handled, or none more for [`STALLED`];
/// returns how many fell short.
async fn settle(client: &async_nats::Client, count: &str, row: Row, target: u64) -> u64 {
    let mut last = handled(client, count, row).await;
    let mut progressed = Instant::now();
    while last < target && progressed.elapsed() < STALLED {
        tokio::time::sleep(POLL).await;
        let now = handled(client, count, row).await;
        if now > last {
            (last, progressed) = (now, Instant::now());
        }
    }
    target.saturating_sub(last)
}

/// The burst rows, against the responder copy serving under `prefix`.
pub fn bench(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    url: &str,
    publisher: &Bus,
    prefix: &str,
) {
    let (typed, raw, count) = subjects(prefix);
    let client = rt
        .block_on(async_nats::connect(url.trim_start_matches("nats://")))
        .unwrap();
    let order = Order::of_size(128);
    let body: bytes::Bytes = serde_json::to_vec(&order).unwrap().into();
    let size = burst();
    let mut group = c.benchmark_group("nats/two_process_events_burst");
    group.throughput(Throughput::Elements(size)).sample_size(10);
    for row in [Row::Raw, Row::Typed, Row::RawToTyped] {
        let name = match row {
            Row::Raw => "raw_async_nats",
            Row::Typed => super::common::service_path::ROW,
            Row::RawToTyped => "raw_publish_to_service",
        };
        let (sent, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        group.bench_function(BenchmarkId::new(name, 128), |b| {
            b.to_async(rt).iter_custom(|bursts| {
                let (client, publisher, order, body) = (
                    client.clone(),
                    publisher.clone(),
                    order.clone(),
                    body.clone(),
                );
                let (typed, raw, count) = (typed.clone(), raw.clone(), count.clone());
                let (sent, lost) = (sent.clone(), lost.clone());
                async move {
                    let mut took = Duration::ZERO;
                    for _ in 0..bursts {
                        let target = handled(&client, &count, row).await + size;
                        let start = Instant::now();
                        for _ in 0..size {
                            match row {
                                Row::Typed => publisher.publish_json(&typed, &order).await.unwrap(),
                                Row::Raw => {
                                    client.publish(raw.clone(), body.clone()).await.unwrap()
                                }
                                Row::RawToTyped => {
                                    client.publish(typed.clone(), body.clone()).await.unwrap()
                                }
                            }
                        }
                        let short = settle(&client, &count, row, target).await;
                        took += start.elapsed();
                        sent.fetch_add(size, Ordering::Relaxed);
                        lost.fetch_add(short, Ordering::Relaxed);
                    }
                    took
                }
            })
        });
        let (sent, lost) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
        eprintln!(
            "nats/two_process_events_burst/{name}: {lost} of {sent} events lost in bursts of {size} ({:.2} %)",
            lost as f64 * 100.0 / sent.max(1) as f64
        );
    }
    group.finish();
}
