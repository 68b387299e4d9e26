//! The Kafka-protocol broker restarted mid-stream: publishes during the outage
//! fail clearly or succeed after reconnecting, and every accepted event reaches
//! the consumer group; health says the brokers are down while they are, and
//! connected once one answers; an acknowledgement the broker never got is
//! in the shutdown report. Runs a private Apache Kafka with its log on
//! disk, so the restarted broker still has what it acknowledged.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use switchboard::transport::Health;
use switchboard::{connect, ErrorKind, Message, Service};

const OUTAGE: Duration = Duration::from_millis(500);

/// A private Apache Kafka (KRaft, one node) with its log in its own directory,
/// from the jars `scripts/kafka-broker.sh` fetches.
struct PrivateBroker(support::PrivateProcess);

impl PrivateBroker {
    fn start() -> Option<Self> {
        let lib = support::kafka_broker::lib_dir()?;
        let controller_port = support::free_port();
        let node = support::kafka_broker::Node {
            id: 1,
            controller_port,
            voters: vec![(1, controller_port)],
            replication: 1,
        };
        Some(PrivateBroker(support::PrivateProcess::start(
            "kafka",
            move |port, dir| support::kafka_broker::command(&lib, &node, port, dir),
        )))
    }

    fn url(&self) -> String {
        format!(
            "kafka://127.0.0.1:{}?connect_timeout=2s&delivery_timeout=3s",
            self.0.port()
        )
    }
}

async fn no_accepted_event_is_lost_across_a_broker_restart() {
    const COUNT: u32 = 300;
    let Some(broker) = PrivateBroker::start() else {
        return;
    };
    let url = broker.url();
    let publisher = connect(&url).await.unwrap();
    let subscriber = connect(&url).await.unwrap();
    let subject = "fault.durable";
    // Create the topic and join the group before the stream starts.
    publisher
        .publish(subject, Message::new("warm-up"))
        .await
        .unwrap();
    let mut sub = subscriber
        .queue_subscribe(subject, "fault-group")
        .await
        .unwrap();
    // A restarted Apache Kafka reloads the group and lets the member rejoin: allow it a minute.
    let collecting = tokio::spawn(async move {
        support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(60)).await
    });

    let outage = |mut broker: PrivateBroker| {
        broker.0.stop();
        std::thread::sleep(OUTAGE);
        broker.0.restart();
        broker
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect];
    let (_broker, _, failed_attempts) = support::publish_through_outage(
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
        "Kafka (Apache Kafka, log on disk): {} of {COUNT} accepted events consumed across a {OUTAGE:?} \
         broker outage at event {} ({} delivered twice, at-least-once; {failed_attempts} publish \
         attempts failed and were retried)",
        seen.len(),
        COUNT / 3,
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
}

async fn health_follows_the_brokers_down_and_up() {
    let Some(mut broker) = PrivateBroker::start() else {
        return;
    };
    let bus = connect(&broker.url()).await.unwrap();
    let subject = "fault.health";
    bus.publish(subject, Message::new("before")).await.unwrap();
    assert_eq!(bus.health(), Health::Connected);

    broker.0.stop();
    let down = support::degraded_within(&bus, Duration::from_secs(30)).await;
    assert!(down.contains("every Kafka broker is down"), "{down}");

    broker.0.restart();
    support::connected_within(&bus, Duration::from_secs(60)).await;
    bus.publish(subject, Message::new("after")).await.unwrap();
    println!(
        "Kafka health: `degraded: {down}` while the broker was down, `connected` once it was back"
    );
    bus.close().await.unwrap();
    assert_eq!(bus.health(), Health::Closed);
}

/// An event handled while the broker is down: its acknowledgement cannot be
/// committed, so the shutdown report counts it as unacknowledged (the group
/// may deliver it again) instead of reporting a clean stop.
async fn a_commit_the_broker_never_got_is_in_the_shutdown_report() {
    let Some(mut broker) = PrivateBroker::start() else {
        return;
    };
    let bus = connect(&broker.url()).await.unwrap();
    let subject = "fault.final-commit";
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let handled = Arc::new(AtomicU32::new(0));
    let running = Service::new("final-commit", bus.clone())
        .on(subject, {
            let (entered, release, handled) = (entered.clone(), release.clone(), handled.clone());
            move |_n: u32| {
                let (entered, release, handled) =
                    (entered.clone(), release.clone(), handled.clone());
                async move {
                    entered.notify_one();
                    release.notified().await;
                    handled.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .start()
        .await
        .unwrap();
    bus.publish_json(subject, &1u32).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), entered.notified())
        .await
        .expect("the handler got the event");

    broker.0.stop();
    support::degraded_within(&bus, Duration::from_secs(30)).await;
    release.notify_one();
    let finishing = async {
        while handled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), finishing)
        .await
        .expect("the released handler finished");
    let report = running.shutdown().await;
    println!("Kafka, final commit with the broker down: {report}");
    assert_eq!(report.unacknowledged, 1, "{report}");
    assert!(!report.is_clean());
    drop(broker);
    let _ = bus.close().await;
}

crate::tests!(
    no_accepted_event_is_lost_across_a_broker_restart,
    health_follows_the_brokers_down_and_up,
    a_commit_the_broker_never_got_is_in_the_shutdown_report,
);
