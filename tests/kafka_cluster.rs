//! A three-broker Apache Kafka cluster (KRaft) whose partition leader is
//! SIGKILLed mid-stream and restarted later: with replication 3,
//! `min.insync.replicas=2` and `acks=all` (librdkafka's default), every
//! accepted event reaches the consumer group, duplicates are counted, and
//! requests are answered again within a measured bound.

mod support;

use std::time::{Duration, Instant};

use support::clusters::KafkaCluster;
use switchboard::{ErrorKind, Message, Service};

/// How long a fresh cluster may take to elect its controller and leaders.
const READY_WITHIN: Duration = Duration::from_secs(90);

async fn no_accepted_event_is_lost_when_a_broker_dies() {
    const COUNT: u32 = 300;
    let Some(cluster) = KafkaCluster::start() else {
        return;
    };
    let url = cluster.url("");
    let publisher = support::connect_when_ready(&url, READY_WITHIN).await;
    let subscriber = support::connect_when_ready(&url, READY_WITHIN).await;
    let subject = "cluster.events";
    // Create the topic (replicated 3 ways) and join the group before the stream starts.
    publisher
        .publish(subject, Message::new("warm-up"))
        .await
        .unwrap();
    let mut sub = subscriber
        .queue_subscribe(subject, "cluster-group")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(60)).await
    });

    let leader = cluster.leader_of(subject);
    let started = Instant::now();
    // The partition leader dies a third of the way in and comes back 5 s later.
    let outage = move |mut cluster: KafkaCluster| {
        cluster.brokers[leader].stop();
        std::thread::sleep(Duration::from_secs(5));
        cluster.brokers[leader].restart();
        cluster
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect];
    let (cluster, killed_at, failed_attempts) = support::publish_through_outage(
        cluster,
        outage,
        &publisher,
        subject,
        COUNT,
        Duration::from_millis(5),
        &expected,
    )
    .await;
    let published_in = started.elapsed();
    let (seen, deliveries) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "Kafka cluster (3 brokers, replication 3, min.insync.replicas=2): {} of {COUNT} accepted \
         events consumed; the partition leader (broker {}) was killed at event {killed_at} and \
         restarted 5 s later ({} delivered twice; {failed_attempts} publish attempts failed and \
         were retried; publishing took {published_in:?})",
        seen.len(),
        leader + 1,
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
    // Close the clients while the brokers still run, so they leave cleanly.
    publisher.close().await.unwrap();
    subscriber.close().await.unwrap();
    drop(cluster);
}

async fn requests_are_answered_again_after_a_broker_dies() {
    const COUNT: u32 = 60;
    let Some(mut cluster) = KafkaCluster::start() else {
        return;
    };
    let url = cluster.url("");
    let responder = support::connect_when_ready(&url, READY_WITHIN).await;
    let caller = support::connect_when_ready(&url, READY_WITHIN).await;
    let running = Service::new("cluster-echo", responder.clone())
        .on("cluster.echo", |n: u32| async move { Ok::<_, String>(n) })
        .start()
        .await
        .unwrap();
    // Warm up: the first call creates the reply topic.
    let _: u32 = caller
        .request_json_with_timeout("cluster.echo", &0, Duration::from_secs(20))
        .await
        .unwrap();
    let leader = cluster.leader_of("cluster.echo");
    let (mut answered, mut errors) = (0u32, Vec::new());
    let mut killed_at = None;
    let mut recovered_after = None;
    for n in 0..COUNT {
        if n == COUNT / 3 {
            cluster.brokers[leader].stop();
            killed_at = Some(Instant::now());
        }
        let outcome = caller
            .request_json_with_timeout::<_, u32>("cluster.echo", &n, Duration::from_secs(5))
            .await;
        match outcome {
            Ok(reply) => {
                assert_eq!(reply, n);
                answered += 1;
                if let (Some(killed), None, false) = (killed_at, recovered_after, errors.is_empty())
                {
                    recovered_after = Some(killed.elapsed());
                }
            }
            Err(err) => {
                assert!(
                    [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect]
                        .contains(&err.kind()),
                    "unclear error while a broker died: {err:?}"
                );
                errors.push((n, err.kind()));
            }
        }
    }
    println!(
        "Kafka cluster (3 brokers, request/reply): {answered} of {COUNT} answered; {} failed \
         after the request topic's leader (broker {}) was killed at call {}: {errors:?}; \
         answered again {recovered_after:?} after the kill",
        errors.len(),
        leader + 1,
        COUNT / 3
    );
    let last_error = errors.last().map_or(0, |(n, _)| *n);
    assert!(
        last_error < COUNT - 10,
        "calls were still failing near the end: {errors:?}"
    );
    assert!(running.shutdown().await.is_clean());
    caller.close().await.unwrap();
    responder.close().await.unwrap();
    drop(cluster);
}

crate::tests!(
    no_accepted_event_is_lost_when_a_broker_dies,
    requests_are_answered_again_after_a_broker_dies,
);
