//! The RabbitMQ broker killed (SIGKILL) and restarted mid-stream: publishes
//! during the outage fail clearly or succeed after the client reconnects,
//! and every accepted event reaches the consumer group, the durable queue
//! and persistent messages having kept what the broker confirmed. Runs a
//! private RabbitMQ node with its data in its own directory
//! (`tests/support/rabbitmq.rs`). A transport closed while the broker is
//! down stays closed when the broker comes back.

mod support;

use std::time::Duration;

use support::rabbitmq::PrivateRabbit;
use switchboard::{connect, ErrorKind};

const OUTAGE: Duration = Duration::from_millis(500);

fn url(node: &PrivateRabbit) -> String {
    format!(
        "amqp://127.0.0.1:{}?connect_timeout=5s&publish_timeout=3s",
        node.port
    )
}

async fn no_accepted_event_is_lost_across_a_broker_restart() {
    const COUNT: u32 = 300;
    let Some(broker) = PrivateRabbit::start(|_| String::new()) else {
        return;
    };
    let url = url(&broker);
    let publisher = connect(&url).await.unwrap();
    let subscriber = connect(&url).await.unwrap();
    let subject = "fault.durable";
    let mut sub = subscriber
        .queue_subscribe(subject, "fault-group")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(60)).await
    });
    let outage = |broker: PrivateRabbit| {
        broker.kill();
        std::thread::sleep(OUTAGE);
        broker.launch();
        broker
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect];
    let (_broker, began, failed_attempts) = support::publish_through_outage(
        broker,
        outage,
        &publisher,
        subject,
        COUNT,
        Duration::from_millis(5),
        &expected,
    )
    .await;
    let (seen, deliveries) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "RabbitMQ (durable queue, persistent messages): {} of {COUNT} accepted events consumed \
         across a SIGKILL and {OUTAGE:?} outage at event {began} ({} delivered twice, \
         at-least-once; {failed_attempts} publish attempts failed and were retried)",
        seen.len(),
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
    let _ = publisher.close().await;
    let _ = subscriber.close().await;
}

/// A transport closed while its broker is down: lapin goes on reconnecting
/// it, and a consumer it declared again would take a share of its group's
/// events and hold them unacknowledged. Once the broker is back, events
/// published one by one for 10 s must all reach the group's other member.
async fn a_transport_closed_during_an_outage_stays_closed() {
    const COUNT: u32 = 100;
    let Some(broker) = PrivateRabbit::start(|_| String::new()) else {
        return;
    };
    let url = url(&broker);
    let subject = "fault.closed";
    let closed = connect(&url).await.unwrap();
    let held = closed
        .queue_subscribe(subject, "closed-group")
        .await
        .unwrap();
    broker.kill();
    support::degraded_within(&closed, Duration::from_secs(30)).await;
    closed.close().await.unwrap();
    broker.launch();

    let other = connect(&url).await.unwrap();
    let mut sub = other
        .queue_subscribe(subject, "closed-group")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(20)).await
    });
    for seq in 0..COUNT {
        other
            .publish(subject, switchboard::Message::new(seq.to_string()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (seen, _) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "RabbitMQ, a transport closed during an outage: {} of {COUNT} events reached the group's other member",
        seen.len()
    );
    assert!(
        missing.is_empty(),
        "the closed transport's consumer took these: {missing:?}"
    );
    drop(held);
    other.close().await.unwrap();
}

crate::tests!(
    no_accepted_event_is_lost_across_a_broker_restart,
    a_transport_closed_during_an_outage_stays_closed,
);
