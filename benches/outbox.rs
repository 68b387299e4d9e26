//! Async sends with and without the outbox, and handling with and without
//! dedup, in the same run.
//!
//! `cargo bench --features outbox,http,grpc,nats --bench outbox` (the NATS
//! rows need a server on 127.0.0.1:4222 and are skipped with the reason
//! without one). `outbox/send_128B` times `Bus::send` on an async route
//! until it returns `Accepted`, while a subscriber takes the events: `plain`
//! goes straight to the transport (at most once), `outbox_serial` is one
//! sender waiting for each send to be in the SQLite file,
//! `outbox_64_in_flight` is 64 senders sharing commits.
//! `outbox/handled_128B` times events from `publish` until a typed
//! `Service` handler ran for each, on a route without and with `dedup`
//! (each event has its own message id, so every one is looked up and
//! remembered in the file).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_in_flight, config, payload, runtime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::handler::State;
use switchboard::service::RunningService;
use switchboard::{Bus, Message, Sent, Service, Settings};

const SIZE: usize = 128;
const SUBJECT: &str = "bench.outbox";

/// A bus on `url` whose `bench.>` subjects are async, with an outbox in `dir` if given.
async fn bus(url: &str, outbox: Option<&std::path::Path>) -> Bus {
    routed_bus(url, outbox, "").await
}

/// [`bus`] with `route` added to the `bench.>` route (`dedup = "10m"`).
async fn routed_bus(url: &str, outbox: Option<&std::path::Path>, route: &str) -> Bus {
    let mut toml = format!(
        "[transports.default]\nurl = \"{url}\"\n[[routes]]\nsubjects = \"bench.>\"\nstyle = \"async\"\n{route}\n"
    );
    if let Some(dir) = outbox {
        toml.push_str(&format!(
            "[outbox]\npath = \"{}\"\n",
            dir.join("outbox.db").display()
        ));
    }
    Settings::from_toml(&toml).unwrap().connect().await.unwrap()
}

/// Takes every event on `bus`'s `SUBJECT` until the bus closes.
async fn drain(bus: &Bus) {
    let mut events = bus.queue_subscribe(SUBJECT, "bench").await.unwrap();
    tokio::spawn(async move { while events.next().await.is_some() {} });
}

async fn send(bus: &Bus, message: &Message) {
    let sent: Sent<Message> = bus.send_message(SUBJECT, message.clone()).await.unwrap();
    assert!(sent.is_accepted());
}

fn sends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group(format!("outbox/send_{SIZE}B"));
    group.throughput(Throughput::Elements(1));
    let message = Message::new(payload(SIZE));
    let mut rows: Vec<(String, Bus)> = Vec::new();
    for (backend, url) in backends() {
        let plain = rt.block_on(bus(&url, None));
        rt.block_on(drain(&plain));
        rows.push((format!("{backend}_plain"), plain));
        let store = dir.path().join(backend);
        let durable = rt.block_on(bus(&url, Some(&store)));
        rt.block_on(drain(&durable));
        rows.push((format!("{backend}_outbox"), durable));
    }
    for (name, bus) in &rows {
        group.bench_function(BenchmarkId::new(format!("{name}_serial"), SIZE), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (bus, message) = (bus.clone(), message.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        send(&bus, &message).await;
                    }
                    start.elapsed()
                }
            })
        });
        let (shared, one) = (bus.clone(), message.clone());
        bench_in_flight(
            &mut group,
            &format!("{name}_64_in_flight"),
            SIZE,
            &rt,
            move || {
                let (bus, message) = (shared.clone(), one.clone());
                async move { send(&bus, &message).await }
            },
        );
    }
    group.finish();
    for (_, bus) in rows {
        rt.block_on(bus.close()).unwrap();
    }
}

/// The backends of the send rows: memory, HTTP, gRPC when compiled in, and
/// core NATS when compiled in and its server is reachable.
fn backends() -> Vec<(&'static str, String)> {
    let mut backends = vec![
        ("memory", "memory://bench-outbox".to_owned()),
        ("http", "http://127.0.0.1:0".to_owned()),
    ];
    #[cfg(feature = "grpc")]
    backends.push(("grpc", "grpc://127.0.0.1:0".to_owned()));
    #[cfg(feature = "nats")]
    {
        const NATS: &str = "127.0.0.1:4222";
        match std::net::TcpStream::connect_timeout(&NATS.parse().unwrap(), Duration::from_secs(1)) {
            Ok(_) => backends.push(("nats", format!("nats://{NATS}"))),
            Err(err) => common::skip("nats", format!("{NATS}: {err}")),
        }
    }
    backends
}

/// One 128 B event, as the typed handler takes it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Event {
    body: String,
}

async fn count(_: Event, State(handled): State<Arc<AtomicU64>>) {
    handled.fetch_add(1, Ordering::Relaxed);
}

/// A typed service counting `bench.handled` events on a bus with an outbox
/// in `dir`, its route deduplicating if `dedup`.
async fn counting_service(
    hub: &str,
    dir: &std::path::Path,
    dedup: bool,
) -> (RunningService, Arc<AtomicU64>, Bus) {
    let route = if dedup { "dedup = \"10m\"" } else { "" };
    let bus = routed_bus(hub, Some(dir), route).await;
    let handled = Arc::new(AtomicU64::new(0));
    let running = Service::new("bench", bus.clone())
        .state(handled.clone())
        .on("bench.handled", count)
        .start()
        .await
        .unwrap();
    (running, handled, bus)
}

fn handled(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group(format!("outbox/handled_{SIZE}B"));
    group.throughput(Throughput::Elements(1));
    let body = "x".repeat(SIZE - 11);
    for dedup in [false, true] {
        let hub = format!("memory://bench-handled-{dedup}");
        let store = dir.path().join(format!("handled-{dedup}"));
        let (running, handled, service_bus) = rt.block_on(counting_service(&hub, &store, dedup));
        let sender = rt.block_on(bus(&hub, None));
        let next_id = Arc::new(AtomicU64::new(0));
        let row = if dedup {
            "memory_dedup"
        } else {
            "memory_plain"
        };
        group.bench_function(BenchmarkId::new(row, SIZE), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (sender, handled, next_id) = (sender.clone(), handled.clone(), next_id.clone());
                let event = Message::json(&Event { body: body.clone() }).unwrap();
                async move {
                    let target = handled.load(Ordering::Relaxed) + iters;
                    let start = Instant::now();
                    for _ in 0..iters {
                        let id = next_id.fetch_add(1, Ordering::Relaxed).to_string();
                        sender
                            .publish("bench.handled", event.clone().with_id(id))
                            .await
                            .unwrap();
                    }
                    let until = Instant::now() + Duration::from_secs(10);
                    while handled.load(Ordering::Relaxed) < target && Instant::now() < until {
                        tokio::time::sleep(Duration::from_micros(50)).await;
                    }
                    start.elapsed()
                }
            })
        });
        rt.block_on(running.shutdown());
        rt.block_on(sender.close()).unwrap();
        rt.block_on(service_bus.close()).unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = sends, handled
}
criterion_main!(benches);
