//! A subscription: a queue bound to the exchange by the subject's pattern,
//! consumed on a channel of its own with manual acknowledgements.
//!
//! Without a group the queue is the subscriber's alone
//! (`EXCHANGE.subscriber.RANDOM`, exclusive, deleted with its channel). A group's queue is named after the
//! exchange, the group and the pattern, so the group's members share it and
//! it keeps events while all of them are away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_core::Stream;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};

use super::acks::AckQueue;
use super::channels::Publisher;
use super::convert;
use super::settings::AmqpSettings;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::{Acker, Incoming, Responder};
use switchboard_core::message::Message;
use switchboard_core::subject;
use switchboard_core::subscription::Subscription;

/// The queue a group's members share for `pattern`.
pub(crate) fn group_queue(exchange: &str, group: &str, pattern: &str) -> String {
    format!("{exchange}.{group}.{pattern}")
}

/// Declares and binds the subscription's queues and starts consuming them.
pub(crate) async fn subscribe(
    connection: Arc<Connection>,
    replies: Arc<Publisher>,
    settings: &AmqpSettings,
    pattern: &str,
    group: Option<&str>,
) -> Result<Subscription> {
    // While lapin reconnects, subscribing waits for it (up to 5 s).
    super::channels::settled(&connection).await;
    let channel = connection.create_channel().await.map_err(convert::error)?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await
        .map_err(convert::error)?;
    let key = convert::binding_key(pattern);
    let events = settings.exchange.as_str();
    let requests = settings.requests_exchange();
    // Without a group the deliveries are not acknowledged (at most once).
    let acknowledged = group.is_some();
    let consumers = match group {
        None => {
            // One queue of its own for both; unacknowledged (at most once).
            // Named here, not by the broker: lapin's recovery declares it
            // again by name, which RabbitMQ refuses for `amq.gen-*` names.
            let name = format!("{events}.subscriber.{:016x}", fastrand::u64(..));
            let queue = declare(&channel, &name, exclusive(), FieldTable::default()).await?;
            bind(&channel, &queue, events, &key).await?;
            bind(&channel, &queue, &requests, &key).await?;
            vec![consume(&channel, queue, true).await?]
        }
        Some(group) => {
            // Events wait in the group's queue while the group is away;
            // requests go to a queue that lives only while a member is
            // there, so with none a request fails at once (no responders).
            let name = group_queue(events, group, pattern);
            if name.len() + ".requests".len() > 255 {
                return Err(Error::config(format!(
                    "the queue of group `{group}` for `{pattern}` would be named with {} bytes; RabbitMQ allows 255",
                    name.len() + ".requests".len()
                )));
            }
            let mut arguments = FieldTable::default();
            if let Some(ttl) = settings.message_ttl {
                arguments.insert(
                    "x-message-ttl".into(),
                    AMQPValue::LongUInt(ttl.as_millis() as u32),
                );
            }
            let held = QueueDeclareOptions {
                durable: settings.durable,
                auto_delete: settings.auto_delete,
                ..QueueDeclareOptions::default()
            };
            let event_queue = declare(&channel, &name, held, arguments).await?;
            bind(&channel, &event_queue, events, &key).await?;
            let live = QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let request_queue = declare(
                &channel,
                &format!("{name}.requests"),
                live,
                FieldTable::default(),
            )
            .await?;
            bind(&channel, &request_queue, &requests, &key).await?;
            vec![
                consume(&channel, event_queue, false).await?,
                consume(&channel, request_queue, false).await?,
            ]
        }
    };
    let tags: Vec<ShortString> = consumers.iter().map(|consumer| consumer.tag()).collect();
    let pattern_owned: Arc<str> = pattern.into();
    let acks = AckQueue::start();
    let queue = acks.clone();
    let deliveries = futures_util::stream::select_all(consumers).filter_map(move |delivery| {
        let pattern = pattern_owned.clone();
        let replies = replies.clone();
        let acks = queue.clone();
        async move {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::warn!(error = %err, "amqp: a subscription's consumer failed");
                    return None;
                }
            };
            incoming(delivery, &pattern, replies, acknowledged, acks).await
        }
    });
    let stream = OwnedChannel {
        connection,
        channel: channel.clone(),
        acks,
        inner: Box::pin(deliveries),
    };
    let stop_channel = channel;
    let settling = stream.acks.clone();
    Ok(Subscription::new(pattern, group.map(str::to_owned), stream)
        .with_settle(move || async move { settling.not_written(ACKS_WRITTEN_WITHIN).await })
        .with_stop(move || {
            // The broker stops delivering; what it delivered stays readable.
            tokio::spawn(async move {
                for tag in tags {
                    let _ = stop_channel
                        .basic_cancel(tag, BasicCancelOptions::default())
                        .await;
                }
            });
        }))
}

/// A queue only this subscriber reads, deleted with it.
fn exclusive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    }
}

async fn declare(
    channel: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> Result<ShortString> {
    let declared = channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map_err(convert::error)?;
    Ok(declared.name().clone())
}

async fn bind(channel: &Channel, queue: &ShortString, exchange: &str, key: &str) -> Result<()> {
    channel
        .queue_bind(
            queue.clone(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(convert::error)
}

async fn consume(channel: &Channel, queue: ShortString, no_ack: bool) -> Result<lapin::Consumer> {
    channel
        .basic_consume(
            queue,
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(convert::error)
}

/// A delivery as an incoming message: a request (it names a reply address
/// and a correlation id) is acknowledged at once and answered there; an
/// event is acknowledged by its handler.
async fn incoming(
    delivery: Delivery,
    pattern: &str,
    replies: Arc<Publisher>,
    acknowledged: bool,
    acks: AckQueue,
) -> Option<Incoming> {
    let subject = delivery.routing_key.as_str().to_owned();
    if !subject::matches(pattern, &subject) {
        // `#` also matches the pattern's prefix alone, which `>` does not.
        if acknowledged {
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
        return None;
    }
    let properties = &delivery.properties;
    let request = match (properties.reply_to(), properties.correlation_id()) {
        (Some(reply_to), Some(id)) => Some((reply_to.clone(), id.clone())),
        _ => None,
    };
    let message = convert::message(delivery.data, &delivery.properties);
    let incoming = Incoming::new(subject.into(), message);
    match request {
        Some((reply_to, correlation_id)) => {
            // A request is answered once; it is not redelivered.
            if acknowledged {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Some(incoming.with_responder(Box::new(Reply {
                channel: replies,
                reply_to,
                correlation_id,
            })))
        }
        None if acknowledged => Some(incoming.with_acker(Box::new(Ack {
            acker: delivery.acker,
            queue: acks,
        }))),
        // Acking a delivery the broker did not ask an ack for would close the channel.
        None => Some(incoming),
    }
}

/// Answers one request at its reply address, through the default exchange.
struct Reply {
    channel: Arc<Publisher>,
    reply_to: ShortString,
    correlation_id: ShortString,
}

#[async_trait]
impl Responder for Reply {
    async fn respond(self: Box<Self>, reply: Message) -> Result<()> {
        let properties =
            convert::properties(&reply.headers).with_correlation_id(self.correlation_id);
        // A reply address that names no queue is dropped by the broker: the
        // responder goes on serving.
        let channel = self.channel.channel().await?;
        let sent = channel
            .basic_publish(
                "".into(),
                self.reply_to,
                BasicPublishOptions::default(),
                &reply.payload,
                properties,
            )
            .await;
        if let Err(err) = sent {
            self.channel.failed(&channel).await;
            return Err(convert::error(err));
        }
        Ok(())
    }
}

/// How long a closing subscription waits for its acknowledgements to be written.
const ACKS_WRITTEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Acknowledges one event delivery.
struct Ack {
    acker: lapin::Acker,
    queue: AckQueue,
}

#[async_trait]
impl Acker for Ack {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(convert::error)
    }

    /// Handed to the subscription's acknowledgement task ([`AckQueue`]):
    /// the handling does not wait until the frame is written, and the
    /// channel closes only after it is.
    fn ack_now(&mut self) -> Option<Result<()>> {
        self.queue.push(self.acker.clone()).ok().map(Ok)
    }

    async fn nack(self: Box<Self>) -> Result<()> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map(|_| ())
            .map_err(convert::error)
    }
}

/// The deliveries of a subscription's channel; dropping it closes the
/// channel, which requeues what was not acknowledged and deletes a queue
/// that was the subscriber's alone. It keeps the connection open after the
/// transport was dropped, and closes it when it is the last to hold it.
struct OwnedChannel {
    connection: Arc<Connection>,
    channel: Channel,
    /// Acknowledgements to write before the channel closes.
    acks: AckQueue,
    inner: Pin<Box<dyn Stream<Item = Incoming> + Send>>,
}

impl Stream for OwnedChannel {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for OwnedChannel {
    fn drop(&mut self) {
        let channel = self.channel.clone();
        let connection = self.connection.clone();
        let acks = self.acks.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                acks.written(ACKS_WRITTEN_WITHIN).await;
                let _ = channel.close(200, "unsubscribed".into()).await;
                // The transport and every other subscription are gone.
                if Arc::strong_count(&connection) == 1 {
                    let _ = connection.close(200, "dropped".into()).await;
                }
            });
        }
    }
}
