//! A three-broker Apache Kafka cluster (KRaft) with one broker killed
//! mid-stream and never brought back: with replication 3 and
//! `min.insync.replicas=2`, every accepted event reaches the consumer group,
//! and requests keep being answered.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::kafka_broker::{self, Node};
use support::{next_within, PrivateProcess};
use switchboard::{connect, Bus, ErrorKind, Message, Service};

struct Cluster {
    brokers: Vec<PrivateProcess>,
}

impl Cluster {
    fn start() -> Option<Self> {
        let lib = kafka_broker::lib_dir()?;
        let controllers: Vec<(u32, u16)> = (1..=3).map(|id| (id, support::free_port())).collect();
        // Launch all three first: a broker only listens once the controllers have a quorum.
        let brokers: Vec<PrivateProcess> = controllers
            .iter()
            .map(|&(id, controller_port)| {
                let node = Node {
                    id,
                    controller_port,
                    voters: controllers.clone(),
                    replication: 3,
                };
                let lib = lib.clone();
                PrivateProcess::launch("kafka", move |port, dir| {
                    kafka_broker::command(&lib, &node, port, dir)
                })
            })
            .collect();
        for broker in &brokers {
            broker.wait_until_listening();
        }
        Some(Cluster { brokers })
    }

    fn url(&self, options: &str) -> String {
        let hosts = self
            .brokers
            .iter()
            .map(|broker| format!("127.0.0.1:{}", broker.port()))
            .collect::<Vec<_>>()
            .join(",");
        format!("kafka://{hosts}?replication=3&connect_timeout=5s&delivery_timeout=20s{options}")
    }
}

/// Connects once the cluster answers metadata requests.
async fn connect_when_ready(url: &str) -> Bus {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match connect(url).await {
            Ok(bus) => return bus,
            Err(err) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {err}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("the cluster never became ready: {err}"),
        }
    }
}

async fn no_accepted_event_is_lost_when_a_broker_dies() {
    const COUNT: u32 = 300;
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url("");
    let publisher = connect_when_ready(&url).await;
    let subscriber = connect_when_ready(&url).await;
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
        let mut seen = BTreeSet::new();
        let mut deliveries = 0u32;
        while let Some(mut incoming) = next_within(&mut sub, Duration::from_secs(60)).await {
            if let Ok(seq) = std::str::from_utf8(incoming.payload())
                .unwrap()
                .parse::<u32>()
            {
                deliveries += 1;
                seen.insert(seq);
            }
            incoming.ack().await.unwrap();
            if seen.len() as u32 == COUNT {
                break;
            }
        }
        (seen, deliveries)
    });

    let mut failed_attempts = 0u32;
    let started = Instant::now();
    for seq in 0..COUNT {
        if seq == COUNT / 3 {
            // Broker loss: broker 1 dies and stays dead.
            cluster.brokers[0].stop();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(err) = publisher
            .publish(subject, Message::new(seq.to_string()))
            .await
        {
            assert!(
                [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect].contains(&err.kind()),
                "unclear error while a broker died: {err:?}"
            );
            assert!(
                Instant::now() < deadline,
                "publishing never recovered: {err}"
            );
            failed_attempts += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let published_in = started.elapsed();
    let (seen, deliveries) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "Kafka cluster (3 brokers, replication 3, min.insync.replicas=2): {} of {COUNT} accepted \
         events consumed after broker 1 was killed at event {} ({} delivered twice; \
         {failed_attempts} publish attempts failed and were retried; publishing took {published_in:?})",
        seen.len(),
        COUNT / 3,
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
}

async fn requests_are_answered_again_after_a_broker_dies() {
    const COUNT: u32 = 60;
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url("");
    let responder = connect_when_ready(&url).await;
    let caller = connect_when_ready(&url).await;
    let running = Service::new("cluster-echo", responder.clone())
        .on("cluster.echo", |n: u32| async move { Ok::<_, String>(n) })
        .start()
        .await
        .unwrap();
    let (mut answered, mut errors) = (0u32, Vec::new());
    for n in 0..COUNT {
        if n == COUNT / 3 {
            cluster.brokers[0].stop();
        }
        match caller
            .request_json_with_timeout::<_, u32>("cluster.echo", &n, Duration::from_secs(5))
            .await
        {
            Ok(reply) => {
                assert_eq!(reply, n);
                answered += 1;
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
         after broker 1 was killed at call {}: {errors:?}",
        errors.len(),
        COUNT / 3
    );
    let last_error = errors.last().map_or(0, |(n, _)| *n);
    assert!(
        last_error < COUNT - 10,
        "calls were still failing near the end: {errors:?}"
    );
    assert!(running.shutdown().await.is_clean());
}

crate::tests!(
    no_accepted_event_is_lost_when_a_broker_dies,
    requests_are_answered_again_after_a_broker_dies,
);
