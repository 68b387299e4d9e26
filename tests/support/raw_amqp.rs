//! The raw lapin client doing what switchboard's RabbitMQ backend does, for
//! the comparisons in the benches, the allocation test and the instruction
//! counter: a confirmed publish, and a consumer on a durable queue.

use switchboard::amqp::lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use switchboard::amqp::lapin::types::FieldTable;
use switchboard::amqp::lapin::{self, BasicProperties, Channel, Connection};
use switchboard::amqp::DEFAULT_EXCHANGE;

/// A confirm-mode channel, as switchboard publishes on.
pub async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// What switchboard's publish sends: persistent, `mandatory`, its confirm
/// awaited; whether the broker confirmed it.
pub async fn publish(channel: &Channel, subject: &str, body: &[u8]) -> lapin::Result<bool> {
    let confirm = channel
        .basic_publish(
            DEFAULT_EXCHANGE.into(),
            subject.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    Ok(confirm.is_ack())
}

/// A queue `name` bound to `subject` on the events exchange, consumed on
/// `channel` with `no_ack` as given. `durable` makes it a durable queue like
/// a group's (the broker then confirms a persistent message once it is on
/// disk), deleted once its last consumer goes; otherwise it is the
/// consumer's own (exclusive, named by the broker).
pub async fn bound_consumer(
    channel: &Channel,
    subject: &str,
    no_ack: bool,
    durable: bool,
) -> lapin::Result<lapin::Consumer> {
    let (name, options) = match durable {
        false => (
            String::new(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
        ),
        true => (
            format!("{subject}.raw"),
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
        ),
    };
    let queue = channel
        .queue_declare(name.as_str().into(), options, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            DEFAULT_EXCHANGE.into(),
            subject.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// A durable group-like consumer as [`bound_consumer`] makes, with prefetch 256.
pub async fn group_consumer(channel: &Channel, subject: &str) -> lapin::Result<lapin::Consumer> {
    channel.basic_qos(256, BasicQosOptions::default()).await?;
    bound_consumer(channel, subject, false, true).await
}
