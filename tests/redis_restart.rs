//! The Redis server killed (SIGKILL) and restarted mid-stream: publishes
//! during the outage fail clearly or succeed after the client reconnects,
//! and every accepted event reaches the consumer group, the append-only
//! file (synced on every write) having kept what the server acknowledged.
//! Health follows the server: degraded with the cause while it is down,
//! connected again once it answers. Runs a private Redis with its data in
//! its own directory (`tests/support/redis.rs`).

mod support;

use std::time::Duration;

use support::redis::PrivateRedis;
use switchboard::transport::Health;
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

async fn health_follows_the_server_down_and_up() {
    let Some(server) = PrivateRedis::start(|_| Vec::new()) else {
        return;
    };
    let url = format!(
        "redis://127.0.0.1:{}?connect_timeout=2s&command_timeout=2s",
        server.port
    );
    let bus = connect(&url).await.unwrap();
    let subject = "fault.health";
    // Its reader sends a blocking read every 200 ms: an outage shows there.
    let mut sub = bus.queue_subscribe(subject, "health-group").await.unwrap();
    assert_eq!(bus.health(), Health::Connected);

    server.kill();
    let down = support::degraded_within(&bus, Duration::from_secs(10)).await;
    assert!(down.contains("redis server not answering"), "{down}");
    // Within the command timeout (2 s), not after the connection's
    // reconnecting gives up; the bound here only keeps a hang from holding the run.
    let refused = tokio::time::timeout(Duration::from_secs(20), bus.publish_json(subject, &1u32))
        .await
        .expect("a publish while the server is down fails instead of waiting for it")
        .unwrap_err();
    assert!(
        [ErrorKind::Timeout, ErrorKind::Backend].contains(&refused.kind()),
        "{refused}"
    );
    assert!(
        matches!(bus.health(), Health::Degraded(_)),
        "a failed publish leaves health degraded"
    );

    server.launch();
    support::connected_within(&bus, Duration::from_secs(30)).await;
    bus.publish_json(subject, &2u32).await.unwrap();
    let got = support::next_within(&mut sub, Duration::from_secs(10))
        .await
        .expect("the event published after the restart arrives");
    assert_eq!(got.decode_json::<u32>().unwrap(), 2);
    println!(
        "Redis health: `degraded: {down}` while the server was down (a publish then: {refused}), `connected` once it was back"
    );
    bus.close().await.unwrap();
    assert_eq!(bus.health(), Health::Closed);
}

crate::tests!(
    no_accepted_event_is_lost_across_a_server_restart,
    health_follows_the_server_down_and_up,
);
