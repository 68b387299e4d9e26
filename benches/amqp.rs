//! RabbitMQ backend against raw `lapin` with the same channel settings, same run.
//!
//! `cargo bench --all-features --bench amqp` (needs RabbitMQ on
//! 127.0.0.1:5672: `scripts/rabbitmq-server.sh start`). Rows:
//! - `amqp/publish_confirmed_64_in_flight`: a persistent, `mandatory` publish
//!   until the broker confirmed it, 64 in flight, as `switchboard`
//!   (`Bus::publish`) and `raw_lapin` (`basic_publish` on a confirm channel);
//!   a raw consumer drains the queue.
//! - `amqp/publish_to_handled`: typed events, `publish_json` until a typed
//!   `Service` handler took each (`service_typed_json`), against a raw lapin
//!   publisher and a raw consumer that decodes the same JSON and acks each
//!   delivery (`raw_lapin`), both from a durable queue; both keep at most
//!   4,096 unhandled.
//! - `amqp/request_reply_serial` and `_64_in_flight`: `request_json` to a
//!   typed handler (RabbitMQ has no request/reply of its own to compare with).

mod common;
#[path = "../tests/support/raw_amqp.rs"]
mod raw_amqp;

use std::sync::Arc;

use common::raw_consumer::{bench_raw_events, RawCount};
use common::service_path::{self, Order, TypedService};
use common::{bench_in_flight, config, payload, runtime, skip, PAYLOADS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use switchboard::amqp::lapin::options::BasicAckOptions;
use switchboard::amqp::lapin::{self, Channel, Connection};
use switchboard::Message;

const URL: &str = "amqp://127.0.0.1:5672";

async fn raw_connection() -> Connection {
    Connection::connect(URL, lapin::ConnectionProperties::default())
        .await
        .unwrap()
}

/// What switchboard's publish sends: persistent, `mandatory`, awaited confirm.
async fn raw_publish(channel: &Channel, subject: &str, body: &[u8]) {
    assert!(raw_amqp::publish(channel, subject, body).await.unwrap());
}

fn amqp(c: &mut Criterion) {
    let rt = runtime();
    let Ok(bus) = rt.block_on(switchboard::connect(URL)) else {
        return skip("amqp", format!("{URL} is unreachable"));
    };
    let connection = rt.block_on(raw_connection());
    let publisher = rt.block_on(raw_amqp::confirm_channel(&connection)).unwrap();

    // A raw consumer drains what both rows publish.
    let topic = format!("bench.events.p{}", std::process::id());
    let drain_channel = rt.block_on(connection.create_channel()).unwrap();
    let mut drain = rt
        .block_on(raw_amqp::bound_consumer(
            &drain_channel,
            &topic,
            true,
            false,
        ))
        .unwrap();
    rt.spawn(async move { while drain.next().await.is_some() {} });

    let mut group = c.benchmark_group("amqp/publish_confirmed_64_in_flight");
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
        bench_in_flight(&mut group, "raw_lapin", size, &rt, {
            let (channel, body, topic) =
                (publisher.clone(), message.payload.clone(), topic.clone());
            move || {
                let (channel, body, topic) = (channel.clone(), body.clone(), topic.clone());
                async move { raw_publish(&channel, &topic, &body).await }
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
    let raw_typed = rt.block_on(raw_typed_consumer(&connection, &raw_subject));
    let mut handled = c.benchmark_group("amqp/publish_to_handled");
    handled.throughput(Throughput::Elements(1));
    service_path::bench_events(&mut handled, &rt, &requester, &typed, 128);
    let order = serde_json::to_vec(&Order::of_size(128)).unwrap();
    bench_raw_events(&mut handled, &rt, "raw_lapin", 128, &raw_typed, {
        let (channel, order, subject) = (publisher.clone(), order.clone(), raw_subject.clone());
        move || {
            let (channel, order, subject) = (channel.clone(), order.clone(), subject.clone());
            async move { raw_publish(&channel, &subject, &order).await }
        }
    });
    handled.finish();

    rt.block_on(requester.request_json::<_, Order>(&typed.echo, &Order::of_size(128)))
        .unwrap();
    let mut serial = c.benchmark_group("amqp/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &typed.echo, 128);
    serial.finish();
    let mut in_flight = c.benchmark_group("amqp/request_reply_64_in_flight");
    in_flight.throughput(Throughput::Elements(1));
    service_path::bench_in_flight(&mut in_flight, &rt, &requester, &typed.echo, 128);
    in_flight.finish();
}

/// A raw lapin consumer doing what a typed handler does: decode the JSON
/// order, count it, ack the delivery.
async fn raw_typed_consumer(connection: &Connection, subject: &str) -> RawCount {
    let channel = connection.create_channel().await.unwrap();
    // Durable, as the group queue the typed service reads.
    let mut consumer = raw_amqp::group_consumer(&channel, subject).await.unwrap();
    let count = RawCount::default();
    let counter = count.clone();
    tokio::spawn(async move {
        let _channel = channel;
        while let Some(Ok(delivery)) = consumer.next().await {
            let _order: Order = serde_json::from_slice(&delivery.data).unwrap();
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            counter.handled(1);
        }
    });
    count
}

criterion_group! {
    name = benches;
    config = config();
    targets = amqp
}
criterion_main!(benches);
