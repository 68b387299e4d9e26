//! Async sends with and without the outbox, in the same run.
//!
//! `cargo bench --features outbox,http --bench outbox`. Each row times
//! `Bus::send` on an async route until it returns `Accepted`, while a
//! subscriber takes the events: `plain` goes straight to the transport (at
//! most once), `outbox_serial` is one sender waiting for each send to be in
//! the SQLite file, `outbox_64_in_flight` is 64 senders sharing commits.

mod common;

use std::time::Instant;

use common::{bench_in_flight, config, payload, runtime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::{Bus, Message, Sent, Settings};

const SIZE: usize = 128;
const SUBJECT: &str = "bench.outbox";

/// A bus on `url` whose `bench.>` subjects are async, with an outbox in `dir` if given.
async fn bus(url: &str, outbox: Option<&std::path::Path>) -> Bus {
    let mut toml = format!(
        "[transports.default]\nurl = \"{url}\"\n[[routes]]\nsubjects = \"bench.>\"\nstyle = \"async\"\n"
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
    let mut rows: Vec<(&str, Bus)> = Vec::new();
    for (backend, url) in [
        ("memory", "memory://bench-outbox".to_owned()),
        ("http", "http://127.0.0.1:0".to_owned()),
    ] {
        let plain = rt.block_on(bus(&url, None));
        rt.block_on(drain(&plain));
        rows.push((
            if backend == "memory" {
                "memory_plain"
            } else {
                "http_plain"
            },
            plain,
        ));
        let store = dir.path().join(backend);
        let durable = rt.block_on(bus(&url, Some(&store)));
        rt.block_on(drain(&durable));
        rows.push((
            if backend == "memory" {
                "memory_outbox"
            } else {
                "http_outbox"
            },
            durable,
        ));
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

criterion_group! {
    name = benches;
    config = config();
    targets = sends
}
criterion_main!(benches);
