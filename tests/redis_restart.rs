//! The Redis server killed (SIGKILL) and restarted mid-stream: publishes
//! during the outage fail clearly or succeed after the client reconnects,
//! and every accepted event reaches the consumer group, the append-only
//! file (synced on every write) having kept what the server acknowledged.
//! Runs a private Redis with its data in its own directory
//! (`tests/support/redis.rs`).

mod support;

use std::time::Duration;

use support::redis::PrivateRedis;
use switchboard::{connect, ErrorKind};

const OUTAGE: Duration = Duration::from_millis(500);

async fn no_accepted_event_is_lost_across_a_server_restart() {
    const COUNT: u32 = 300;
    let Some(server) = PrivateRedis::start(|_| Vec::new()) else {
        return;
    };
    let url = format!(
        "redis://127.0.0.1:{}?connect_timeout=2s&command_timeout=2s",
        server.port
    );
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
    let outage = |server: PrivateRedis| {
        server.kill();
        std::thread::sleep(OUTAGE);
        server.launch();
        server
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect];
    let (_server, began, failed_attempts) = support::publish_through_outage(
        server,
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
        "Redis Streams (append-only file, fsync always): {} of {COUNT} accepted events consumed \
         across a SIGKILL and {OUTAGE:?} outage at event {began} ({} delivered twice, \
         at-least-once; {failed_attempts} publish attempts failed and were retried)",
        seen.len(),
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
    let _ = publisher.close().await;
    let _ = subscriber.close().await;
}

crate::tests!(no_accepted_event_is_lost_across_a_server_restart,);
