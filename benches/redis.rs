//! Redis Streams backend against the raw `redis` client, same run.
//!
//! `cargo bench --all-features --bench redis` (needs Redis on
//! 127.0.0.1:6379: `scripts/redis-server.sh start`). Rows:
//! - `redis/publish_64_in_flight`: an event added to its stream, 64 in
//!   flight, as `switchboard` (`Bus::publish`) and `raw_redis` (`XADD` of
//!   the same `payload` field on one multiplexed connection).
//! - `redis/publish_to_handled`: typed events, `publish_json` until a typed
//!   `Service` handler took each (`service_typed_json`), against a raw
//!   `XADD` publisher and a raw consumer group reader that decodes the same
//!   JSON and acknowledges each read's entries in one `XACK`
//!   (`raw_redis`); both keep at most 4,096 unhandled.
//! - `redis/request_reply_serial` and `_64_in_flight`: `request_json` to a
//!   typed handler (Redis has no request/reply of its own to compare with).

mod common;
#[path = "../tests/support/raw_redis.rs"]
mod raw_redis;

use std::sync::Arc;

use common::raw_consumer::{bench_raw_events, RawCount};
use common::service_path::{self, Order, TypedService};
use common::{bench_in_flight, config, payload, runtime, skip, PAYLOADS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchboard::redis::redis::{self, aio::MultiplexedConnection};
use switchboard::Message;

const URL: &str = "redis://127.0.0.1:6379";

async fn raw_connection() -> MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What switchboard's publish sends for a message without headers.
async fn raw_add(connection: &mut MultiplexedConnection, subject: &str, body: &[u8]) {
    raw_redis::add(connection, &format!("switchboard:{subject}"), body)
        .await
        .unwrap();
}

fn redis_bench(c: &mut Criterion) {
    let rt = runtime();
    let Ok(bus) = rt.block_on(switchboard::connect(URL)) else {
        return skip("redis", format!("{URL} is unreachable"));
    };
    let connection = rt.block_on(raw_connection());

    // Nobody reads these streams; they are trimmed after the run.
    let topic = format!("bench.events.p{}", std::process::id());
    let mut group = c.benchmark_group("redis/publish_64_in_flight");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        bench_in_flight(&mut group, "switchboard", size, &rt, {
            let (bus, message, topic) = (bus.clone(), message.clone(), topic.clone());
            move || {
                let (bus, message, topic) = (bus.clone(), message.clone(), topic.clone());
                async move { bus.publish(&topic, message).await.unwrap() }
            }
        });
        bench_in_flight(&mut group, "raw_redis", size, &rt, {
            let (connection, body, topic) =
                (connection.clone(), message.payload.clone(), topic.clone());
            move || {
                let (mut connection, body, topic) =
                    (connection.clone(), body.clone(), topic.clone());
                async move { raw_add(&mut connection, &topic, &body).await }
            }
        });
    }
    group.finish();

    // Typed events: the Service path and its raw equivalent.
    let typed = Arc::new(rt.block_on(TypedService::start(
        &bus,
        &format!("bench.typed.p{}", std::process::id()),
    )));
    let requester = rt.block_on(switchboard::connect(URL)).unwrap();
    let raw_subject = format!("bench.raw-typed.p{}", std::process::id());
    let raw_typed = rt.block_on(raw_typed_reader(&raw_subject));
    let mut handled = c.benchmark_group("redis/publish_to_handled");
    handled.throughput(Throughput::Elements(1));
    service_path::bench_events(&mut handled, &rt, &requester, &typed, 128);
    let order = serde_json::to_vec(&Order::of_size(128)).unwrap();
    bench_raw_events(&mut handled, &rt, "raw_redis", 128, &raw_typed, {
        let (connection, order, subject) = (connection.clone(), order.clone(), raw_subject.clone());
        move || {
            let (mut connection, order, subject) =
                (connection.clone(), order.clone(), subject.clone());
            async move { raw_add(&mut connection, &subject, &order).await }
        }
    });
    handled.finish();

    rt.block_on(requester.request_json::<_, Order>(&typed.echo, &Order::of_size(128)))
        .unwrap();
    let mut serial = c.benchmark_group("redis/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &typed.echo, 128);
    serial.finish();
    let mut in_flight = c.benchmark_group("redis/request_reply_64_in_flight");
    in_flight.throughput(Throughput::Elements(1));
    service_path::bench_in_flight(&mut in_flight, &rt, &requester, &typed.echo, 128);
    in_flight.finish();

    // The streams this run filled.
    rt.block_on(async {
        let mut connection = raw_connection().await;
        for subject in [&topic, &raw_subject] {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(format!("switchboard:{subject}"))
                .query_async(&mut connection)
                .await;
        }
    });
}

/// A raw consumer group reader doing what a typed handler does: decode the
/// JSON order and count it; each read's entries acknowledged in one `XACK`.
async fn raw_typed_reader(subject: &str) -> RawCount {
    let key = format!("switchboard:{subject}");
    let mut reader = raw_connection().await;
    // The group may be left from an earlier run of the same process id.
    let _ = raw_redis::create_group(&mut reader, &key).await;
    let count = RawCount::default();
    let counter = count.clone();
    tokio::spawn(raw_redis::read_group(
        reader,
        key,
        |entry| {
            let body: Vec<u8> = entry.get("payload").unwrap();
            let _order: Order = serde_json::from_slice(&body).unwrap();
        },
        move |acked| counter.handled(acked),
    ));
    count
}

criterion_group! {
    name = benches;
    config = config();
    targets = redis_bench
}
criterion_main!(benches);
