//! The publisher alone: `publish_json` of a typed order against the raw
//! client encoding the same order with serde_json and publishing it, both
//! on connections of their own to the same server, nobody subscribed (the
//! server drops what no one listens to). Each row publishes as fast as its
//! client takes the messages; the client's writer drains them to the
//! socket meanwhile, so a long run measures the rate the publisher keeps up.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchboard::nats::async_nats;
use switchboard::Bus;

use super::common::service_path::Order;

/// The `publish_json` row and the raw row beside it, at 128 bytes.
pub fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str, publisher: &Bus) {
    let client = rt
        .block_on(async_nats::connect(url.trim_start_matches("nats://")))
        .unwrap();
    let order = Order::of_size(128);
    let subject = format!("bench.unheard.p{}", std::process::id());
    let mut group = c.benchmark_group("nats/publish_json");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw_async_nats", 128), |b| {
        b.to_async(rt).iter_custom(|events| {
            let (client, order, subject) = (client.clone(), order.clone(), subject.clone());
            async move {
                let start = Instant::now();
                for _ in 0..events {
                    let body = serde_json::to_vec(&order).unwrap();
                    client.publish(subject.clone(), body.into()).await.unwrap();
                }
                let took = start.elapsed();
                // What is queued drains before the next sample's clock starts.
                tokio::time::sleep(Duration::from_millis(20)).await;
                took
            }
        })
    });
    group.bench_function(BenchmarkId::new("switchboard_publish_json", 128), |b| {
        b.to_async(rt).iter_custom(|events| {
            let (publisher, order, subject) = (publisher.clone(), order.clone(), subject.clone());
            async move {
                let start = Instant::now();
                for _ in 0..events {
                    publisher.publish_json(&subject, &order).await.unwrap();
                }
                let took = start.elapsed();
                // What is queued drains before the next sample's clock starts.
                tokio::time::sleep(Duration::from_millis(20)).await;
                took
            }
        })
    });
    group.finish();
}
