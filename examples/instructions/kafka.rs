//! Kafka at 127.0.0.1:9092: the same raw producer feeds a typed `Service`
//! handler (`kafka-typed-event`) or a raw rdkafka consumer in a group that
//! decodes the order and stores its offset for the next automatic commit
//! (`kafka-raw-event`), so the rows differ only in the consumer. Counts
//! include librdkafka's own threads.

use std::sync::Arc;
use std::time::Duration;

use switchboard::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use switchboard::kafka::rdkafka::ClientConfig;
use switchboard::kafka::rdkafka::Message as _;

use super::handled::{self, Handled};
use super::{order, Order};

const BROKER: &str = "127.0.0.1:9092";

fn error(err: impl std::fmt::Display) -> switchboard::Error {
    switchboard::Error::backend("kafka", err.to_string())
}

fn producer() -> switchboard::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("socket.nagle.disable", "true")
        .set("linger.ms", "0")
        .create()
        .map_err(error)
}

/// Publishes one order to `topic` without waiting for the broker.
fn send(producer: &FutureProducer, topic: &str, payload: &[u8]) -> switchboard::Result<()> {
    let record = FutureRecord::<(), _>::to(topic).payload(payload);
    producer
        .send_result(record)
        .map(drop)
        .map_err(|(err, _)| error(err))
}

/// Publishes the first order to `topic`, which creates it; the consumer
/// counts it once it has its partition, before the counted records.
fn create(topic: &str) -> switchboard::Result<()> {
    let producer = producer()?;
    let payload = serde_json::to_vec(&order()).expect("an order encodes");
    send(&producer, topic, &payload)?;
    producer.flush(Duration::from_secs(30)).map_err(error)
}

/// Waits until the consumer has its partition (it counted the first
/// order), then publishes `count` more and waits until they are handled.
async fn feed(topic: &str, count: usize, handled: &Handled) -> switchboard::Result<()> {
    if !handled.reaches(1, Duration::from_secs(60)).await {
        return Err(error("the consumer got no partition in 60 s"));
    }
    let producer = producer()?;
    let payload = serde_json::to_vec(&order()).expect("an order encodes");
    handled::feed("kafka", count, handled, || {
        let sent = send(&producer, topic, &payload);
        async move { sent }
    })
    .await?;
    producer.flush(Duration::from_secs(30)).map_err(error)
}

fn topic(kind: &str) -> String {
    format!("instructions.kafka-{kind}.p{}", std::process::id())
}

pub async fn typed_events(count: usize) -> switchboard::Result<()> {
    let bus = switchboard::connect(&format!("kafka://{BROKER}")).await?;
    let topic = topic("typed");
    create(&topic)?;
    let (running, handled) =
        handled::counting_service(&bus, "instructions-kafka", topic.as_str()).await?;
    feed(&topic, count, &handled).await?;
    let _ = running.shutdown().await;
    bus.close().await
}

pub async fn raw_events(count: usize) -> switchboard::Result<()> {
    let topic = topic("raw");
    create(&topic)?;
    let consumer: StreamConsumer =
        super::raw_kafka::consumer_config(&format!("instructions.raw.p{}", std::process::id()))
            .create()
            .map_err(error)?;
    consumer.subscribe(&[topic.as_str()]).map_err(error)?;
    let handled = Arc::new(Handled::default());
    let counter = handled.clone();
    let consuming = tokio::spawn(async move {
        loop {
            let Ok(message) = consumer.recv().await else {
                continue;
            };
            let order: Order =
                serde_json::from_slice(message.payload().unwrap_or_default()).expect("an order");
            std::hint::black_box(order);
            let _ = consumer.store_offset_from_message(&message);
            counter.one();
        }
    });
    let fed = feed(&topic, count, &handled).await;
    consuming.abort();
    fed
}
