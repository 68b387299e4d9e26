//! Kafka backend against raw `rdkafka` with the same producer settings, same run.
//!
//! `cargo bench --all-features --bench kafka` (needs the broker on
//! 127.0.0.1:9092: `scripts/kafka-broker.sh start`). Rows: publish until the
//! broker acknowledged, 64 in flight, as `switchboard` and `raw_rdkafka`; and
//! request/reply round trips through a typed responder group (no raw
//! equivalent: Kafka has no request/reply of its own); and typed events
//! published until handled (`service_typed_json`); and the typed
//! request/reply with the responder in a second process (a copy of this binary).

mod common;

use std::time::Duration;

use common::service_path::{self, TypedService};
use common::two_process::{self, Responder};
use common::{bench_in_flight, config, payload, runtime, skip, PAYLOADS};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use switchboard::{Message, Service};

const URL: &str = "kafka://127.0.0.1:9092";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The producer settings switchboard uses, for the raw baseline.
fn raw_producer() -> FutureProducer {
    switchboard::kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("socket.nagle.disable", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

fn kafka(c: &mut Criterion) {
    let rt = runtime();
    let Ok(bus) = rt.block_on(switchboard::connect(URL)) else {
        return skip("kafka", format!("{URL} is unreachable"));
    };
    let topic = format!("bench.events.p{}", std::process::id());
    // Creates the topic once, outside the timed loops.
    rt.block_on(bus.publish(&topic, Message::new("warm-up")))
        .unwrap();
    let raw = raw_producer();

    let mut group = c.benchmark_group("kafka/publish_acked_64_in_flight");
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
        bench_in_flight(&mut group, "raw_rdkafka", size, &rt, {
            let (raw, body, topic) = (raw.clone(), message.payload.clone(), topic.clone());
            move || {
                let (raw, body, topic) = (raw.clone(), body.clone(), topic.clone());
                async move {
                    let record = FutureRecord::to(&topic).key("bench").payload(&body[..]);
                    raw.send(record, TIMEOUT).await.unwrap();
                }
            }
        });
    }
    group.finish();

    let echo = format!("bench.echo.p{}", std::process::id());
    let running = rt
        .block_on(
            Service::new("bench-echo", bus.clone())
                .on(&echo, |text: String| async move { Ok::<_, String>(text) })
                .start(),
        )
        .unwrap();
    let requester = rt.block_on(switchboard::connect(URL)).unwrap();
    rt.block_on(requester.request_json::<_, String>(&echo, "warm-up"))
        .unwrap();
    let mut serial = c.benchmark_group("kafka/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    serial.bench_function(BenchmarkId::new("switchboard", 128), |b| {
        let text = "x".repeat(126);
        b.to_async(&rt).iter(|| {
            let (requester, echo, text) = (requester.clone(), echo.clone(), text.clone());
            async move {
                requester
                    .request_json_with_timeout::<_, String>(&echo, &text, TIMEOUT)
                    .await
                    .unwrap()
            }
        })
    });
    serial.finish();
    rt.block_on(running.shutdown());

    // Typed events through a consumer group, handled and committed.
    let typed = std::sync::Arc::new(rt.block_on(TypedService::start(
        &bus,
        &format!("bench.typed.p{}", std::process::id()),
    )));
    let mut handled = c.benchmark_group("kafka/publish_to_handled");
    handled.throughput(Throughput::Elements(1));
    service_path::bench_events(&mut handled, &rt, &requester, &typed, 128);
    handled.finish();
}

/// The responder copy of the two-process row: the typed service.
fn kafka_responder(prefix: String) {
    runtime().block_on(async {
        let bus = switchboard::connect(URL).await.unwrap();
        let _typed = TypedService::start(&bus, &prefix).await;
        two_process::ready("");
        two_process::serve_until_killed().await;
    });
}

/// Requester here, typed responder in another process, 128 B.
fn kafka_two_process(c: &mut Criterion) {
    let rt = runtime();
    let Ok(requester) = rt.block_on(switchboard::connect(URL)) else {
        return skip("kafka", format!("{URL} is unreachable"));
    };
    let prefix = format!("bench.remote.p{}", std::process::id());
    let _responder = Responder::start(&prefix);
    let echo = service_path::echo_subject(&prefix);
    // The responder's group gets its partitions before the first timed call.
    rt.block_on(
        requester.request_json_with_timeout::<_, service_path::Order>(
            &echo,
            &service_path::Order::of_size(128),
            Duration::from_secs(60),
        ),
    )
    .unwrap();
    let mut serial = c.benchmark_group("kafka/two_process_request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &echo, 128);
    serial.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = kafka, kafka_two_process
}

fn main() {
    if let Some(prefix) = two_process::responder_prefix() {
        return kafka_responder(prefix);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
