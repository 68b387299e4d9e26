//! RabbitMQ behaviour beyond the conformance suite: bad URLs and credentials,
//! forged reply addresses, a group's queue keeping events while the group is
//! away, and header tables written by other clients. Needs the broker on
//! 127.0.0.1:5672 (`scripts/rabbitmq-server.sh start`); without it these
//! tests are skipped with a message, unless `CI=true`, where they fail.

use std::time::Duration;

use switchboard::amqp::lapin;
use switchboard::{connect, Bus, ErrorKind, Service};

mod support;
use support::{connect_or_skip, next_within, unique};

const BROKER: &str = "amqp://127.0.0.1:5672";
const WITHIN: Duration = Duration::from_secs(10);

async fn broker(options: &str) -> Option<Bus> {
    connect_or_skip(&format!("{BROKER}{options}")).await
}

/// A raw lapin connection and channel on the test broker.
async fn raw() -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A misspelt option is refused with the right name suggested; a malformed
/// value and a second host with the reason.
async fn bad_urls_are_refused_with_a_reason() {
    for (url, expected) in [
        ("amqp://127.0.0.1:5672?prefech=8", "prefetch"),
        ("amqp://127.0.0.1:5672?message_ttl=soon", "message_ttl"),
        ("amqp://a:5672,b:5672", "one broker"),
        ("amqp://127.0.0.1:5672?exchange=amq.direct", "exchange"),
    ] {
        let err = connect(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{url}: {err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
}

/// A broker that refuses the credentials is a connect error that does not
/// show the password.
async fn refused_credentials_are_a_connect_error() {
    let Some(reachable) = broker("").await else {
        return;
    };
    reachable.close().await.unwrap();
    let err = connect("amqp://guest:not-the-password@127.0.0.1:5672")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

/// Requests whose reply address names no queue (or is empty) are dropped by
/// the broker; the responder goes on answering real requests.
async fn forged_reply_addresses_do_not_stop_a_responder() {
    let Some(bus) = broker("").await else {
        return;
    };
    let subject = unique("forged");
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on_ordered(&subject, |n: u32| async move { Ok::<_, String>(n + 1) })
        .start()
        .await
        .unwrap();
    let (connection, channel) = raw().await;
    let requests = format!("{}.requests", switchboard::amqp::DEFAULT_EXCHANGE);
    for reply_to in ["no-such-queue", "", "amq.rabbitmq.reply-to.forged"] {
        channel
            .basic_publish(
                requests.as_str().into(),
                subject.as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                b"7",
                lapin::BasicProperties::default()
                    .with_reply_to(reply_to.into())
                    .with_correlation_id("forged".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let answer: u32 = bus
        .request_json_with_timeout(&subject, &41, WITHIN)
        .await
        .unwrap();
    assert_eq!(answer, 42);
    connection.close(200, "done".into()).await.unwrap();
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// A group's queue keeps the events published while every member is away,
/// and the group gets all of them, once each, when a member is back.
async fn a_group_queue_keeps_events_while_the_group_is_away() {
    let Some(publisher) = broker("").await else {
        return;
    };
    let subject = unique("away");
    let member = broker("").await.unwrap();
    let first = member.queue_subscribe(&subject, "billing").await.unwrap();
    drop(first);
    for n in 0..50u32 {
        publisher.publish_json(&subject, &n).await.unwrap();
    }
    let mut back = member.queue_subscribe(&subject, "billing").await.unwrap();
    let mut seen = Vec::new();
    while let Some(mut incoming) = next_within(&mut back, Duration::from_secs(2)).await {
        seen.push(incoming.decode_json::<u32>().unwrap());
        incoming.ack().await.unwrap();
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "lost or repeated events");
    publisher.close().await.unwrap();
    member.close().await.unwrap();
}

/// Headers another client writes as numbers or booleans read as their text;
/// the AMQP `content-type` property reads as `content-type`.
async fn foreign_header_tables_read_as_text() {
    let Some(bus) = broker("").await else {
        return;
    };
    let subject = unique("foreign");
    let mut subscription = bus.subscribe(&subject).await.unwrap();
    let (connection, channel) = raw().await;
    let mut table = lapin::types::FieldTable::default();
    table.insert("x-count".into(), lapin::types::AMQPValue::LongInt(7));
    table.insert("x-flag".into(), lapin::types::AMQPValue::Boolean(true));
    table.insert(
        "x-name".into(),
        lapin::types::AMQPValue::LongString("ada".into()),
    );
    channel
        .basic_publish(
            switchboard::amqp::DEFAULT_EXCHANGE.into(),
            subject.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"{}",
            lapin::BasicProperties::default()
                .with_headers(table)
                .with_content_type("application/json".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let incoming = next_within(&mut subscription, WITHIN).await.unwrap();
    let headers = incoming.headers();
    assert_eq!(headers.get("x-count"), Some("7"));
    assert_eq!(headers.get("x-flag"), Some("true"));
    assert_eq!(headers.get("x-name"), Some("ada"));
    assert_eq!(headers.get("content-type"), Some("application/json"));
    connection.close(200, "done".into()).await.unwrap();
    bus.close().await.unwrap();
}

crate::tests!(
    bad_urls_are_refused_with_a_reason,
    refused_credentials_are_a_connect_error,
    forged_reply_addresses_do_not_stop_a_responder,
    a_group_queue_keeps_events_while_the_group_is_away,
    foreign_header_tables_read_as_text,
);
