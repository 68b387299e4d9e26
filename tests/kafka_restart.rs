//! The Kafka-protocol broker restarted mid-stream: publishes during the outage
//! fail clearly or succeed after reconnecting, and every accepted event reaches
//! the consumer group. Runs a private tansu with file (SQLite) storage, so the
//! restarted broker still has what it acknowledged.
#![cfg(feature = "kafka")]

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use support::next_within;
use switchboard::{connect, ErrorKind, Message};

const OUTAGE: Duration = Duration::from_millis(500);

/// A private tansu with SQLite storage in its own directory.
struct PrivateBroker(support::PrivateProcess);

impl PrivateBroker {
    fn start() -> Option<Self> {
        let home = std::env::var("HOME").unwrap_or_default();
        let candidates = [
            format!("{home}/.cargo/bin/tansu"),
            "/usr/local/bin/tansu".into(),
        ];
        let binary =
            support::find_binary("tansu", &candidates, "scripts/kafka-broker.sh installs it")?;
        Some(PrivateBroker(support::PrivateProcess::start(
            "tansu",
            move |port, dir| {
                let listener = format!("tcp://127.0.0.1:{port}");
                let mut command = Command::new(&binary);
                command
                    .current_dir(dir)
                    .args(["broker", "--listener-url", &listener])
                    .args(["--advertised-listener-url", &listener])
                    .args(["--storage-engine", "sqlite://tansu.db"]);
                command
            },
        )))
    }

    fn url(&self) -> String {
        // One record per batch: tansu 0.6 skips the rest of a batch when a
        // consumer resumes inside it (adapters/kafka/docs.md).
        format!(
            "kafka://127.0.0.1:{}?connect_timeout=2s&delivery_timeout=3s&rdkafka.batch.num.messages=1",
            self.0.port()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let collecting = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while let Some(mut incoming) = next_within(&mut sub, Duration::from_secs(15)).await {
            if let Ok(seq) = std::str::from_utf8(incoming.payload())
                .unwrap()
                .parse::<u32>()
            {
                seen.insert(seq);
            }
            incoming.ack().await.unwrap();
            if seen.len() as u32 == COUNT {
                break;
            }
        }
        seen
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
    let seen = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "Kafka (tansu, SQLite storage): {} of {COUNT} accepted events consumed across a {OUTAGE:?} \
         broker outage at event {} ({failed_attempts} publish attempts failed and were retried)",
        seen.len(),
        COUNT / 3
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
}
