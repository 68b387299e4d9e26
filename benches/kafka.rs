//! Kafka backend against raw `rdkafka` with the same producer settings, same run.
//!
//! `cargo bench --all-features --bench kafka` (needs the broker on
//! 127.0.0.1:9092: `scripts/kafka-broker.sh start`). Rows: publish until the
//! broker acknowledged, 64 in flight, as `switchboard` and `raw_rdkafka`; and
//! request/reply round trips through a typed responder group (no raw
//! equivalent: Kafka has no request/reply of its own); and typed events
//! published until handled (`service_typed_json`), against a raw rdkafka
//! publisher and a raw consumer in a group that decodes the same JSON and
//! stores each offset for the automatic commit, as switchboard's does
//! (`raw_rdkafka`); the same two consumers fed by the raw producer without
//! waiting for acknowledgements (`kafka/raw_publish_to_handled`, the
//! consumers alone); and the typed
//! request/reply with the responder in a second process (a copy of this binary).

mod common;
#[path = "../tests/support/raw_kafka.rs"]
mod raw_kafka;

use std::time::Duration;

use common::raw_consumer::{bench_raw_events, RawCount};
use common::service_path::{self, TypedService};
use common::two_process::{self, Responder};
use common::{bench_in_flight, config, payload, runtime, skip, PAYLOADS};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchboard::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use switchboard::kafka::rdkafka::Message as _;
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
    let raw_topic = format!("bench.raw-typed.p{}", std::process::id());
    let order = service_path::Order::of_size(128);
    // Creates the topic; the raw consumer counts this first order once it
    // has its partition, before the timed loops.
    rt.block_on(bus.publish_json(&raw_topic, &order)).unwrap();
    let raw_typed = rt.block_on(async { raw_typed_consumer(&raw_topic) });
    if !rt.block_on(raw_typed.reaches(1)) {
        eprintln!("raw bench: the raw consumer got no partition within 5 s");
    }
    let mut handled = c.benchmark_group("kafka/publish_to_handled");
    handled.throughput(Throughput::Elements(1));
    service_path::bench_events(&mut handled, &rt, &requester, &typed, 128);
    let order = serde_json::to_vec(&order).unwrap();
    bench_raw_events(&mut handled, &rt, "raw_rdkafka", 128, &raw_typed, {
        let (raw, order, topic) = (raw.clone(), order.clone(), raw_topic.clone());
        move || {
            let (raw, order, topic) = (raw.clone(), order.clone(), topic.clone());
            async move {
                let record = FutureRecord::<(), _>::to(&topic).payload(&order[..]);
                raw.send(record, TIMEOUT).await.unwrap();
            }
        }
    });
    handled.finish();

    // The consumers alone: the same raw producer feeds both, without
    // waiting for each acknowledgement, so the row measures what consuming,
    // decoding and committing cost.
    let service_topic = format!("bench.consumed.p{}", std::process::id());
    rt.block_on(bus.publish_json(&service_topic, &service_path::Order::of_size(128)))
        .unwrap();
    let (service_count, _running) = rt.block_on(typed_counting_service(&bus, &service_topic));
    if !rt.block_on(service_count.reaches(1)) {
        eprintln!("service_typed_json: the consumer got no partition within 5 s");
    }
    let mut consumed = c.benchmark_group("kafka/raw_publish_to_handled");
    consumed.throughput(Throughput::Elements(1));
    for (row, count, topic) in [
        ("service_typed_json", &service_count, &service_topic),
        ("raw_rdkafka", &raw_typed, &raw_topic),
    ] {
        bench_raw_events(&mut consumed, &rt, row, 128, count, {
            let (raw, order, topic) = (raw.clone(), order.clone(), topic.clone());
            move || {
                let sent = raw
                    .send_result(FutureRecord::<(), _>::to(&topic).payload(&order[..]))
                    .map(drop)
                    .map_err(|(err, _)| err);
                async move { sent.unwrap() }
            }
        });
    }
    consumed.finish();
}

/// A typed `Service` handler on `topic` that counts the orders it took.
async fn typed_counting_service(
    bus: &switchboard::Bus,
    topic: &str,
) -> (RawCount, switchboard::service::RunningService) {
    let count = RawCount::default();
    let counter = count.clone();
    let running = Service::new("bench-consumed", bus.clone())
        .on(topic, move |order: service_path::Order| {
            std::hint::black_box(order);
            counter.handled(1);
            async { Ok::<_, String>(()) }
        })
        .start()
        .await
        .unwrap();
    (count, running)
}

/// A raw rdkafka consumer doing what a typed handler on Kafka does: in a
/// consumer group with the settings switchboard's consumer uses, it decodes
/// the JSON order, stores its offset for the next automatic commit, and
/// counts it.
fn raw_typed_consumer(topic: &str) -> RawCount {
    let consumer: StreamConsumer =
        raw_kafka::consumer_config(&format!("bench.raw.p{}", std::process::id()))
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let count = RawCount::default();
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(message) => {
                    let body = message.payload().unwrap_or_default();
                    let _order: service_path::Order = serde_json::from_slice(body).unwrap();
                    consumer.store_offset_from_message(&message).unwrap();
                    counter.handled(1);
                }
                Err(err) => eprintln!("raw bench: kafka consumer: {err}"),
            }
        }
    });
    count
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
