//! Redis Streams at 127.0.0.1:6379: the same raw `XADD`s (what a publish
//! without headers sends) feed a typed `Service` handler
//! (`redis-typed-event`) or a raw consumer group reader that decodes each
//! order and acknowledges each read's entries in one `XACK`
//! (`redis-raw-event`).

use std::sync::Arc;

use switchboard::redis::redis::{self, aio::MultiplexedConnection};

use super::handled::{self, Handled};
use super::raw_redis;
use super::{order, Order};

const URL: &str = "redis://127.0.0.1:6379";

fn error(err: impl std::fmt::Display) -> switchboard::Error {
    switchboard::Error::backend("redis", err.to_string())
}

async fn connection() -> switchboard::Result<MultiplexedConnection> {
    redis::Client::open(URL)
        .map_err(error)?
        .get_multiplexed_async_connection()
        .await
        .map_err(error)
}

fn subject(kind: &str) -> String {
    format!("instructions.redis-{kind}.p{}", std::process::id())
}

/// `XADD`s `count` orders to `subject`'s stream, each awaited, and waits
/// until they are handled; then deletes the stream.
async fn feed(subject: &str, count: usize, handled: &Handled) -> switchboard::Result<()> {
    let connection = connection().await?;
    let key = format!("switchboard:{subject}");
    let payload = serde_json::to_vec(&order()).expect("an order encodes");
    let (key, payload) = (&key, &payload);
    let fed = handled::feed("redis", count, handled, || {
        let mut connection = connection.clone();
        async move {
            raw_redis::add(&mut connection, key, payload)
                .await
                .map_err(error)
        }
    })
    .await;
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut connection.clone())
        .await;
    fed
}

pub async fn typed_events(count: usize) -> switchboard::Result<()> {
    let bus = switchboard::connect(URL).await?;
    let subject = subject("typed");
    let (running, handled) =
        handled::counting_service(&bus, "instructions-redis", subject.as_str()).await?;
    let fed = feed(&subject, count, &handled).await;
    let _ = running.shutdown().await;
    bus.close().await?;
    fed
}

pub async fn raw_events(count: usize) -> switchboard::Result<()> {
    let subject = subject("raw");
    let key = format!("switchboard:{subject}");
    let mut reader = connection().await?;
    raw_redis::create_group(&mut reader, &key)
        .await
        .map_err(error)?;
    let handled = Arc::new(Handled::default());
    let counter = handled.clone();
    let reading = tokio::spawn(raw_redis::read_group(
        reader,
        key,
        |entry| {
            let body: Vec<u8> = entry.get("payload").expect("a payload");
            let order: Order = serde_json::from_slice(&body).expect("an order");
            std::hint::black_box(order);
        },
        move |acked| (0..acked).for_each(|_| counter.one()),
    ));
    let fed = feed(&subject, count, &handled).await;
    reading.abort();
    fed
}
