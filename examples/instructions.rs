//! One path users call, run N times, for counting its instructions under
//! callgrind: the runs of N and 3N messages differ by 2N messages' cost, so
//! start-up and set-up cancel out. `scripts/check-instructions.py` runs it
//! and holds the counts to `benches/instructions.baseline` (CI fails at +5 %).
//!
//! ```text
//! cargo build --release --all-features --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions memory-typed-request 1000
//! ```
//!
//! Rows: `memory-typed-request` (`request_json` to a typed `Service`
//! handler and its reply), `memory-typed-event` (`publish_json` until a typed
//! handler ran), `memory-publish-json` (`publish_json`, nobody subscribed),
//! `nats-typed-event`, `nats-typed-request` and `nats-publish-json` (the
//! same on core NATS at 127.0.0.1:4222, requester and responder on one
//! connection), and beside them the raw async-nats client doing the same
//! work: `nats-raw-event` (encode the order, publish it, receive it on a
//! subscription, decode it), `nats-raw-request` (encode, request, decode and
//! encode at a responder, reply, decode) and `nats-raw-publish` (publish the
//! JSON);
//! `http-typed-request` and `grpc-typed-request` are `request_json` from one
//! bus to a typed `Service` on another, over loopback; `kafka-typed-event`
//! and `kafka-raw-event` feed the same raw rdkafka producer's records to a
//! typed `Service` handler or to a raw consumer (Kafka at 127.0.0.1:9092).
//! One thread (a current-thread runtime), so the count does not depend on
//! how two workers happened to share the work; the Kafka rows also count
//! librdkafka's own threads.

use std::sync::atomic::Ordering;

use switchboard::Bus;

#[path = "../tests/support/typed_paths.rs"]
mod typed_paths;

#[cfg(feature = "kafka")]
#[path = "../tests/support/raw_kafka.rs"]
mod raw_kafka;

use typed_paths::{order, typed_service, Order};

#[tokio::main(flavor = "current_thread")]
async fn main() -> switchboard::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(row), Some(count)) = (args.next(), args.next()) else {
        eprintln!("usage: instructions ROW COUNT");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    match row.as_str() {
        "memory-typed-request" => {
            typed_requests(&switchboard::connect("memory://i").await?, count).await
        }
        "memory-typed-event" => {
            typed_events(&switchboard::connect("memory://i").await?, count).await
        }
        "memory-publish-json" => {
            publish_json(&switchboard::connect("memory://i").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-typed-event" => {
            typed_events(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-typed-request" => {
            typed_requests(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-publish-json" => {
            publish_json(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "http")]
        "http-typed-request" => across_loopback("http", count).await,
        #[cfg(feature = "grpc")]
        "grpc-typed-request" => across_loopback("grpc", count).await,
        #[cfg(feature = "nats")]
        "nats-raw-event" => raw_nats::events(count).await,
        #[cfg(feature = "nats")]
        "nats-raw-publish" => raw_nats::publish(count).await,
        #[cfg(feature = "nats")]
        "nats-raw-request" => raw_nats::requests(count).await,
        #[cfg(feature = "kafka")]
        "kafka-typed-event" => kafka_rows::typed_events(count).await,
        #[cfg(feature = "kafka")]
        "kafka-raw-event" => kafka_rows::raw_events(count).await,
        other => {
            eprintln!("unknown row `{other}`");
            std::process::exit(2);
        }
    }
}

async fn typed_requests(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let (running, _) = typed_service(bus, "instructions").await?;
    let order = order();
    for _ in 0..count {
        let echoed: Order = bus.request_json("instructions.echo", &order).await?;
        std::hint::black_box(echoed);
    }
    let _ = running.shutdown().await;
    bus.close().await
}

/// `request_json` from one bus to a typed `Service` on another bus of
/// `scheme` (`http` or `grpc`), listening on 127.0.0.1.
#[cfg(any(feature = "http", feature = "grpc"))]
async fn across_loopback(scheme: &str, count: usize) -> switchboard::Result<()> {
    let responder = switchboard::connect(&format!("{scheme}://127.0.0.1:0")).await?;
    let (running, _) = typed_service(&responder, "instructions").await?;
    let address = responder
        .local_address()
        .expect("a listening backend has an address");
    let caller = switchboard::connect(&format!(
        "{scheme}://127.0.0.1:0?peers={scheme}://{address}"
    ))
    .await?;
    let order = order();
    for _ in 0..count {
        let echoed: Order = caller.request_json("instructions.echo", &order).await?;
        std::hint::black_box(echoed);
    }
    let _ = running.shutdown().await;
    caller.close().await?;
    responder.close().await
}

async fn typed_events(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let (running, handled) = typed_service(bus, "instructions").await?;
    let order = order();
    for _ in 0..count {
        bus.publish_json("instructions.placed", &order).await?;
    }
    while handled.load(Ordering::Relaxed) < count {
        tokio::task::yield_now().await;
    }
    let _ = running.shutdown().await;
    bus.close().await
}

async fn publish_json(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let order = order();
    for _ in 0..count {
        bus.publish_json("instructions.nobody", &order).await?;
    }
    bus.close().await
}

/// The raw async-nats client doing what the NATS rows do, for the ratio.
#[cfg(feature = "nats")]
mod raw_nats {
    use futures_util::StreamExt;
    use switchboard::nats::async_nats;

    use super::{order, Order};

    async fn client() -> switchboard::Result<async_nats::Client> {
        async_nats::connect("127.0.0.1:4222")
            .await
            .map_err(|e| switchboard::Error::backend("nats", e))
    }

    /// A client and its subscription to `subject`, known to the server.
    async fn subscribed(
        subject: &'static str,
    ) -> switchboard::Result<(async_nats::Client, async_nats::Subscriber)> {
        let client = client().await?;
        let subscription = client
            .subscribe(subject)
            .await
            .map_err(|e| switchboard::Error::backend("nats", e))?;
        client
            .flush()
            .await
            .map_err(|e| switchboard::Error::backend("nats", e))?;
        Ok((client, subscription))
    }

    pub async fn events(count: usize) -> switchboard::Result<()> {
        let (client, mut subscription) = subscribed("instructions.raw").await?;
        let consumer = tokio::spawn(async move {
            for _ in 0..count {
                let Some(message) = subscription.next().await else {
                    break;
                };
                let order: Order = serde_json::from_slice(&message.payload).expect("an order");
                std::hint::black_box(order);
            }
        });
        let order = order();
        for _ in 0..count {
            // Encoded per event, as `publish_json` does.
            let payload: bytes::Bytes =
                serde_json::to_vec(&order).expect("an order encodes").into();
            client
                .publish("instructions.raw", payload)
                .await
                .map_err(|e| switchboard::Error::backend("nats", e))?;
        }
        consumer
            .await
            .map_err(|e| switchboard::Error::backend("nats", e))?;
        Ok(())
    }

    pub async fn requests(count: usize) -> switchboard::Result<()> {
        let (client, mut subscription) = subscribed("instructions.raw-echo").await?;
        let replies = client.clone();
        let responder = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let order: Order = serde_json::from_slice(&message.payload).expect("an order");
                let reply: bytes::Bytes =
                    serde_json::to_vec(&order).expect("an order encodes").into();
                if let Some(reply_to) = message.reply {
                    let _ = replies.publish(reply_to, reply).await;
                }
            }
        });
        let order = order();
        for _ in 0..count {
            let payload: bytes::Bytes =
                serde_json::to_vec(&order).expect("an order encodes").into();
            let answer = client
                .request("instructions.raw-echo", payload)
                .await
                .map_err(|e| switchboard::Error::backend("nats", e))?;
            let echoed: Order = serde_json::from_slice(&answer.payload).expect("an order");
            std::hint::black_box(echoed);
        }
        responder.abort();
        Ok(())
    }

    pub async fn publish(count: usize) -> switchboard::Result<()> {
        let client = client().await?;
        let order = order();
        for _ in 0..count {
            // Encoded per message, as `publish_json` does.
            let payload: bytes::Bytes =
                serde_json::to_vec(&order).expect("an order encodes").into();
            client
                .publish("instructions.nobody", payload)
                .await
                .map_err(|e| switchboard::Error::backend("nats", e))?;
        }
        client
            .flush()
            .await
            .map_err(|e| switchboard::Error::backend("nats", e))
    }
}

/// Kafka at 127.0.0.1:9092: the same raw producer feeds a typed `Service`
/// handler (`kafka-typed-event`) or a raw rdkafka consumer in a group that
/// decodes the order and stores its offset for the next automatic commit
/// (`kafka-raw-event`), so the rows differ only in the consumer. Counts
/// include librdkafka's own threads.
#[cfg(feature = "kafka")]
mod kafka_rows {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use switchboard::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
    use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    use switchboard::kafka::rdkafka::ClientConfig;
    use switchboard::kafka::rdkafka::Message as _;
    use switchboard::Service;

    use super::{order, Order};

    const BROKER: &str = "127.0.0.1:9092";

    fn producer() -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", BROKER)
            .set("socket.nagle.disable", "true")
            .set("linger.ms", "0")
            .create()
            .expect("a producer")
    }

    /// Publishes the first order to `topic`, which creates it.
    fn create(topic: &str) -> switchboard::Result<()> {
        let producer = producer();
        let payload = serde_json::to_vec(&order()).expect("an order encodes");
        let record = FutureRecord::<(), _>::to(topic).payload(&payload[..]);
        producer
            .send_result(record)
            .map(drop)
            .map_err(|(e, _)| switchboard::Error::backend("kafka", e))?;
        producer
            .flush(Duration::from_secs(30))
            .map_err(|e| switchboard::Error::backend("kafka", e))
    }

    /// Waits until `handled` counts an order (the consumer has its
    /// partition), then publishes `count` more and waits for them.
    async fn feed(topic: &str, count: usize, handled: &AtomicUsize) -> switchboard::Result<()> {
        let producer = producer();
        let payload = serde_json::to_vec(&order()).expect("an order encodes");
        let send = |producer: &FutureProducer| {
            let record = FutureRecord::<(), _>::to(topic).payload(&payload[..]);
            producer.send_result(record).map(drop).map_err(|(e, _)| e)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next_warm_up = Instant::now() + Duration::from_secs(5);
        while handled.load(Ordering::Relaxed) == 0 {
            if Instant::now() > deadline {
                return Err(switchboard::Error::backend("kafka", "no partition in 60 s"));
            }
            if Instant::now() >= next_warm_up {
                send(&producer).map_err(|e| switchboard::Error::backend("kafka", e))?;
                next_warm_up = Instant::now() + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Warm-ups still on their way are counted before the timed records.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = handled.load(Ordering::Relaxed);
        for _ in 0..count {
            send(&producer).map_err(|e| switchboard::Error::backend("kafka", e))?;
        }
        producer
            .flush(Duration::from_secs(30))
            .map_err(|e| switchboard::Error::backend("kafka", e))?;
        while handled.load(Ordering::Relaxed) < start + count {
            if Instant::now() > deadline + Duration::from_secs(60) {
                return Err(switchboard::Error::backend("kafka", "records missing"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    fn topic(kind: &str) -> String {
        format!("instructions.kafka-{kind}.p{}", std::process::id())
    }

    pub async fn typed_events(count: usize) -> switchboard::Result<()> {
        let bus = switchboard::connect(&format!("kafka://{BROKER}")).await?;
        let topic = topic("typed");
        create(&topic)?;
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let running = Service::new("instructions-kafka", bus.clone())
            .on(topic.as_str(), move |order: Order| {
                std::hint::black_box(order);
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, String>(()) }
            })
            .start()
            .await?;
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
                .map_err(|e| switchboard::Error::backend("kafka", e))?;
        consumer
            .subscribe(&[topic.as_str()])
            .map_err(|e| switchboard::Error::backend("kafka", e))?;
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let consuming = tokio::spawn(async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    continue;
                };
                let order: Order = serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("an order");
                std::hint::black_box(order);
                let _ = consumer.store_offset_from_message(&message);
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let fed = feed(&topic, count, &handled).await;
        consuming.abort();
        fed
    }
}
