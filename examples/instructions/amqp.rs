//! RabbitMQ at 127.0.0.1:5672: the same raw lapin publishes (persistent,
//! `mandatory`, each confirm awaited, as switchboard publishes) feed a typed
//! `Service` handler (`amqp-typed-event`) or a raw lapin consumer on a
//! durable queue (prefetch 256) that decodes each order and acks each
//! delivery (`amqp-raw-event`). Counts include lapin's own threads.

use std::sync::Arc;

use futures_util::StreamExt;
use switchboard::amqp::lapin::options::{BasicAckOptions, QueueDeleteOptions};
use switchboard::amqp::lapin::{self, Connection};
use switchboard::amqp::DEFAULT_EXCHANGE;

use super::handled::{self, Handled};
use super::raw_amqp;
use super::{order, Order};

const URL: &str = "amqp://127.0.0.1:5672";
const SERVICE: &str = "instructions-amqp";

fn error(err: impl std::fmt::Display) -> switchboard::Error {
    switchboard::Error::backend("amqp", err.to_string())
}

async fn connection() -> switchboard::Result<Connection> {
    Connection::connect(URL, lapin::ConnectionProperties::default())
        .await
        .map_err(error)
}

fn subject(kind: &str) -> String {
    format!("instructions.amqp-{kind}.p{}", std::process::id())
}

/// Publishes `count` orders to `subject` as switchboard does, each confirm
/// awaited, and waits until they are handled.
async fn feed(
    connection: &Connection,
    subject: &str,
    count: usize,
    handled: &Handled,
) -> switchboard::Result<()> {
    let channel = raw_amqp::confirm_channel(connection).await.map_err(error)?;
    let payload = serde_json::to_vec(&order()).expect("an order encodes");
    let (channel, payload) = (&channel, &payload);
    handled::feed("amqp", count, handled, || async move {
        match raw_amqp::publish(channel, subject, payload).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(error("the broker refused a publish")),
            Err(err) => Err(error(err)),
        }
    })
    .await
}

/// Deletes `queue`: a group's queue is durable and would outlive the run.
async fn delete(connection: &Connection, queue: &str) {
    if let Ok(channel) = connection.create_channel().await {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
}

pub async fn typed_events(count: usize) -> switchboard::Result<()> {
    let bus = switchboard::connect(URL).await?;
    let subject = subject("typed");
    let (running, handled) = handled::counting_service(&bus, SERVICE, subject.as_str()).await?;
    let raw = connection().await?;
    let fed = feed(&raw, &subject, count, &handled).await;
    let _ = running.shutdown().await;
    bus.close().await?;
    // The service's group queue, as the adapter names it.
    delete(&raw, &format!("{DEFAULT_EXCHANGE}.{SERVICE}.{subject}")).await;
    fed
}

pub async fn raw_events(count: usize) -> switchboard::Result<()> {
    let subject = subject("raw");
    let connection = connection().await?;
    let channel = connection.create_channel().await.map_err(error)?;
    let mut consumer = raw_amqp::group_consumer(&channel, &subject)
        .await
        .map_err(error)?;
    let handled = Arc::new(Handled::default());
    let counter = handled.clone();
    let consuming = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let order: Order = serde_json::from_slice(&delivery.data).expect("an order");
            std::hint::black_box(order);
            if delivery.ack(BasicAckOptions::default()).await.is_err() {
                return;
            }
            counter.one();
        }
    });
    let fed = feed(&connection, &subject, count, &handled).await;
    consuming.abort();
    // Its queue goes with its consumer (auto-delete).
    drop(channel);
    fed
}
