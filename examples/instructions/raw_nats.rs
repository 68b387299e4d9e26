//! The raw async-nats client doing what the NATS rows do, for the ratio.

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
        let payload: bytes::Bytes = serde_json::to_vec(&order).expect("an order encodes").into();
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
            let reply: bytes::Bytes = serde_json::to_vec(&order).expect("an order encodes").into();
            if let Some(reply_to) = message.reply {
                let _ = replies.publish(reply_to, reply).await;
            }
        }
    });
    let order = order();
    for _ in 0..count {
        let payload: bytes::Bytes = serde_json::to_vec(&order).expect("an order encodes").into();
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
        let payload: bytes::Bytes = serde_json::to_vec(&order).expect("an order encodes").into();
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
