//! RabbitMQ behaviour beyond the conformance suite: bad URLs and credentials,
//! forged reply addresses, a group's queue keeping events while the group is
//! away, header tables written by other clients, and a request whose
//! connection drops while it is handled. Needs the broker on
//! 127.0.0.1:5672 (`scripts/rabbitmq-server.sh start`); without it these
//! tests are skipped with a message, unless `CI=true`, where they fail.

use std::sync::Arc;
use std::time::Duration;

use switchboard::amqp::lapin;
use switchboard::{connect, Bus, ErrorKind, Service};
use tokio::sync::Notify;

mod support;
use support::cut_proxy::{lost_ack_is_reported, CutProxy};
use support::{answer_once_recovered, connect_or_skip, next_within, unique};

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

/// Header tables no switchboard sender could write — names with spaces or
/// non-ASCII, values with control characters, nested tables, byte arrays —
/// lose those entries and nothing else; the responder answers them and the
/// next request alike.
async fn hostile_header_tables_are_filtered_and_the_responder_serves_on() {
    let Some(bus) = broker("").await else {
        return;
    };
    let subject = unique("hostile");
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on(
            &subject,
            |_: serde_json::Value, headers: switchboard::headers::Headers| async move {
                let names: Vec<String> = headers.iter().map(|(name, _)| name.to_owned()).collect();
                Ok::<_, String>(names)
            },
        )
        .start()
        .await
        .unwrap();
    let (connection, channel) = raw().await;
    let replies = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            replies.name().clone(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    use lapin::types::{AMQPValue, ByteArray, FieldTable};
    let mut table = FieldTable::default();
    table.insert("x-kept".into(), AMQPValue::LongString("fine".into()));
    table.insert("bad name".into(), AMQPValue::LongString("v".into()));
    table.insert("naïve".into(), AMQPValue::LongString("v".into()));
    table.insert("x-control".into(), AMQPValue::LongString("a\r\nb\0".into()));
    table.insert(
        "x-nested".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    table.insert(
        "x-bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 159, 146, 150])),
    );
    table.insert(
        "x-huge".into(),
        AMQPValue::LongString("h".repeat(64 * 1024).into()),
    );
    let requests = format!("{}.requests", switchboard::amqp::DEFAULT_EXCHANGE);
    channel
        .basic_publish(
            requests.as_str().into(),
            subject.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"{}",
            lapin::BasicProperties::default()
                .with_headers(table)
                .with_reply_to(replies.name().clone())
                .with_correlation_id("hostile-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    use futures_util::StreamExt;
    let reply = tokio::time::timeout(WITHIN, consumer.next())
        .await
        .expect("the responder answered the hostile request")
        .unwrap()
        .unwrap();
    let names: Vec<String> = serde_json::from_slice(&reply.data).unwrap();
    assert!(names.iter().any(|n| n == "x-kept"), "{names:?}");
    for dropped in ["bad name", "naïve", "x-control", "x-nested", "x-bytes"] {
        assert!(
            !names.iter().any(|n| n == dropped),
            "{dropped} kept: {names:?}"
        );
    }
    let answer: Vec<String> = bus
        .request_json_with_timeout(&subject, &(), WITHIN)
        .await
        .unwrap();
    assert!(!answer.iter().any(|n| n == "x-kept"), "{answer:?}");
    connection.close(200, "done".into()).await.unwrap();
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// A message over the broker's own limit (`max_message_size`, 16 MiB on the
/// test node, below this client's `max_payload`) is refused with the
/// broker's reason; the broker closes the channel it came on and lapin
/// recovers the connection, and calls go out again within moments (meanwhile
/// they fail with a backend error, or no responders while the responder's
/// queue is declared again; never a timeout).
async fn a_message_over_the_brokers_limit_is_an_error_and_the_next_goes_out() {
    let Some(bus) = broker("?max_payload=33554432").await else {
        return;
    };
    let subject = unique("oversized");
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on(&subject, |n: u32| async move { Ok::<_, String>(n + 1) })
        .start()
        .await
        .unwrap();
    let mut events = bus.subscribe(&format!("{subject}.events")).await.unwrap();
    let huge = switchboard::Message::new(vec![b'x'; 17 * 1024 * 1024]);
    let err = bus
        .publish(&format!("{subject}.events"), huge.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let recovering = [ErrorKind::Backend, ErrorKind::NoResponders];
    let deadline = std::time::Instant::now() + WITHIN;
    while let Err(err) = bus
        .publish(
            &format!("{subject}.events"),
            switchboard::Message::new("small"),
        )
        .await
    {
        assert!(recovering.contains(&err.kind()), "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "publishing did not recover: {err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = next_within(&mut events, WITHIN).await.unwrap();
    assert_eq!(event.payload(), b"small");
    let err = bus
        .request_with_timeout(&subject, huge, WITHIN)
        .await
        .unwrap_err();
    assert_ne!(err.kind(), ErrorKind::Timeout, "{err}");
    let answer = answer_once_recovered(&bus, &subject, &recovering, WITHIN).await;
    assert_eq!(answer, 2);
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// A request whose connection drops while its handler runs fails at once
/// with a backend error (its reply address went with the connection), not
/// after its timeout; the next request is answered once lapin has
/// reconnected and declared the responder's queue again.
async fn a_request_in_flight_when_the_connection_drops_fails_at_once() {
    if broker("").await.is_none() {
        return;
    }
    let proxy = CutProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let bus = connect(&format!("amqp://{}", proxy.addr)).await.unwrap();
    let subject = unique("cut");
    let entered = Arc::new(Notify::new());
    let seen = entered.clone();
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on(&subject, move |n: u32| {
            let seen = seen.clone();
            async move {
                if n == 0 {
                    seen.notify_one();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Ok::<_, String>(n + 1)
            }
        })
        .start()
        .await
        .unwrap();
    let caller = bus.clone();
    let called = subject.clone();
    let in_flight = tokio::spawn(async move {
        caller
            .request_json_with_timeout::<_, u32>(&called, &0, Duration::from_secs(30))
            .await
    });
    tokio::time::timeout(WITHIN, entered.notified())
        .await
        .expect("the handler did not get the request");
    proxy.cut();
    let err = in_flight.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let recovering = [ErrorKind::Backend, ErrorKind::NoResponders];
    let answer = answer_once_recovered(&bus, &subject, &recovering, WITHIN).await;
    assert_eq!(answer, 2);
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// An event whose acknowledgement could not be written (its connection
/// dropped while the handler ran) is delivered again once lapin has
/// reconnected, and the shutdown report counts it as unacknowledged.
async fn an_ack_lost_with_the_connection_is_in_the_shutdown_report() {
    let Some(publisher) = broker("").await else {
        return;
    };
    let proxy = CutProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let bus = connect(&format!("amqp://{}", proxy.addr)).await.unwrap();
    lost_ack_is_reported(&publisher, &bus, &proxy, &unique("unacked"), WITHIN).await;
    bus.close().await.unwrap();
    publisher.close().await.unwrap();
}

crate::tests!(
    a_message_over_the_brokers_limit_is_an_error_and_the_next_goes_out,
    a_request_in_flight_when_the_connection_drops_fails_at_once,
    an_ack_lost_with_the_connection_is_in_the_shutdown_report,
    hostile_header_tables_are_filtered_and_the_responder_serves_on,
    bad_urls_are_refused_with_a_reason,
    refused_credentials_are_a_connect_error,
    forged_reply_addresses_do_not_stop_a_responder,
    a_group_queue_keeps_events_while_the_group_is_away,
    foreign_header_tables_read_as_text,
);
