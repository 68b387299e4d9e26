//! Kafka behaviour beyond the conformance suite: at-least-once delivery across
//! consumer restarts, request/reply under load with a responder group, keyed
//! ordering, and what start-up costs. Needs the broker on 127.0.0.1:9092
//! (`scripts/kafka-broker.sh start`); without it these tests are skipped with a
//! message, unless `CI=true`, where they fail.
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use switchboard::{connect, Bus, ErrorKind, Message, Service, Subscription};

const BROKER: &str = "kafka://127.0.0.1:9092";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

async fn broker(options: &str) -> Option<Bus> {
    match connect(&format!("{BROKER}{options}")).await {
        Ok(bus) => Some(bus),
        Err(err) if ci() => panic!("Kafka broker at {BROKER} is unreachable and CI=true: {err}"),
        Err(err) => {
            eprintln!("skipped: Kafka broker at {BROKER} is unreachable ({err})");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}.p{}-{}", std::process::id(), nanos % 1_000_000_000)
}

async fn next_within(sub: &mut Subscription, within: Duration) -> Option<switchboard::Incoming> {
    tokio::time::timeout(within, sub.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_event_is_delivered_again_after_a_restart() {
    let Some(publisher) = broker("").await else {
        return;
    };
    let subject = unique("redelivery");
    let first = broker("").await.unwrap();
    let mut sub = first.queue_subscribe(&subject, "billing").await.unwrap();
    publisher
        .publish(&subject, Message::new("invoice-1"))
        .await
        .unwrap();
    let unacked = next_within(&mut sub, Duration::from_secs(20))
        .await
        .expect("delivered");
    assert_eq!(unacked.payload(), b"invoice-1");
    // The consumer stops before acknowledging (as a crash would).
    drop(unacked);
    drop(sub);
    first.close().await.unwrap();

    let second = broker("").await.unwrap();
    let mut again = second.queue_subscribe(&subject, "billing").await.unwrap();
    let mut redelivered = next_within(&mut again, Duration::from_secs(30))
        .await
        .expect("an unacknowledged event must be delivered again");
    assert_eq!(redelivered.payload(), b"invoice-1");
    redelivered.ack().await.unwrap();
    drop(again);
    second.close().await.unwrap();

    // Acknowledged and committed: a third consumer in the group gets nothing.
    let third = broker("").await.unwrap();
    let mut after = third.queue_subscribe(&subject, "billing").await.unwrap();
    assert!(
        next_within(&mut after, Duration::from_secs(3))
            .await
            .is_none(),
        "an acknowledged event was delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_event_is_delivered_again_at_once() {
    let Some(bus) = broker("").await else { return };
    let subject = unique("nack");
    let mut sub = bus.queue_subscribe(&subject, "workers").await.unwrap();
    bus.publish(&subject, Message::new("job")).await.unwrap();
    let mut first = next_within(&mut sub, Duration::from_secs(20))
        .await
        .unwrap();
    first.nack().await.unwrap();
    let mut second = next_within(&mut sub, Duration::from_secs(20))
        .await
        .expect("redelivered after nack");
    assert_eq!(second.payload(), b"job");
    second.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_across_a_consumer_restart_under_a_stream_of_10000() {
    const EVENTS: u32 = 10_000;
    let Some(publisher) = broker("").await else {
        return;
    };
    let subject = unique("stream");
    let consumer = broker("").await.unwrap();
    let mut sub = consumer.queue_subscribe(&subject, "ledger").await.unwrap();

    let publishing = tokio::spawn({
        let (publisher, subject) = (publisher.clone(), subject.clone());
        async move {
            // 32 publishes in flight at a time; each returns once the broker acknowledged it.
            let mut in_flight: tokio::task::JoinSet<switchboard::Result<()>> =
                tokio::task::JoinSet::new();
            for seq in 0..EVENTS {
                if in_flight.len() >= 32 {
                    in_flight.join_next().await.unwrap().unwrap().unwrap();
                }
                let (publisher, subject) = (publisher.clone(), subject.clone());
                in_flight.spawn(async move {
                    let key = format!("k{}", seq % 8);
                    publisher
                        .publish(&subject, Message::new(seq.to_string()).with_key(key))
                        .await
                });
            }
            while let Some(done) = in_flight.join_next().await {
                done.unwrap().unwrap();
            }
        }
    });

    let mut seen = BTreeSet::new();
    let mut deliveries = 0u32;
    // Half way through, the consumer stops and a new one takes over.
    while seen.len() < EVENTS as usize / 2 {
        let mut incoming = next_within(&mut sub, Duration::from_secs(30))
            .await
            .expect("stream stalled");
        seen.insert(
            std::str::from_utf8(incoming.payload())
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
        incoming.ack().await.unwrap();
        deliveries += 1;
    }
    drop(sub);
    consumer.close().await.unwrap();
    let restarted = broker("").await.unwrap();
    let mut sub = restarted.queue_subscribe(&subject, "ledger").await.unwrap();
    while seen.len() < EVENTS as usize {
        let mut incoming = next_within(&mut sub, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("lost events: only {} of {EVENTS} arrived", seen.len()));
        seen.insert(
            std::str::from_utf8(incoming.payload())
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
        incoming.ack().await.unwrap();
        deliveries += 1;
    }
    publishing.await.unwrap();
    println!(
        "kafka: {EVENTS} of {EVENTS} events received across a consumer restart ({} redelivered)",
        deliveries - EVENTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_to_a_responder_group_each_get_their_own_reply() {
    let Some(requester) = broker("").await else {
        return;
    };
    let subject = unique("rpc");
    let mut responders = Vec::new();
    for name in ["a", "b"] {
        let bus = broker("").await.unwrap();
        let running = Service::new("pricing", bus.clone())
            .on_request(&subject, move |n: u64| async move {
                Ok::<_, String>(format!("{name}:{}", n * 2))
            })
            .start()
            .await
            .unwrap();
        responders.push((bus, running));
    }
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..1000u64 {
        let (requester, subject) = (requester.clone(), subject.clone());
        calls.spawn(async move {
            let reply: String = requester
                .request_json_with_timeout(&subject, &n, Duration::from_secs(60))
                .await
                .unwrap();
            (n, reply)
        });
    }
    let mut served_by = BTreeMap::new();
    while let Some(done) = calls.join_next().await {
        let (n, reply) = done.unwrap();
        let (who, value) = reply.split_once(':').unwrap();
        assert_eq!(
            value,
            (n * 2).to_string(),
            "request {n} got another caller's reply"
        );
        *served_by.entry(who.to_owned()).or_insert(0) += 1;
    }
    println!("kafka: 1000 concurrent requests answered; served by {served_by:?}");
    assert_eq!(served_by.values().sum::<u32>(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_the_same_key_keep_their_order() {
    let Some(bus) = broker("").await else { return };
    let subject = unique("keyed");
    let mut sub = bus.subscribe(&subject).await.unwrap();
    for i in 0..50 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        bus.publish(&subject, Message::new(i.to_string()).with_key(key))
            .await
            .unwrap();
    }
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for _ in 0..50 {
        let incoming = next_within(&mut sub, Duration::from_secs(20))
            .await
            .unwrap();
        let key = incoming.headers().get("sb-key").unwrap().to_owned();
        by_key.entry(key).or_default().push(
            std::str::from_utf8(incoming.payload())
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    for (key, seen) in by_key {
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "events keyed {key} arrived out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_costs_are_paid_once_not_per_message() {
    let started = Instant::now();
    let Some(responder) = broker("").await else {
        return;
    };
    let connect_time = started.elapsed();
    let subject = unique("costs");
    let group_join = Instant::now();
    let running = Service::new("echo", responder.clone())
        .on_request(
            &subject,
            |text: String| async move { Ok::<_, String>(text) },
        )
        .start()
        .await
        .unwrap();
    let group_join = group_join.elapsed();
    let requester = broker("").await.unwrap();
    let first = Instant::now();
    let _: String = requester.request_json(&subject, "first").await.unwrap();
    let first = first.elapsed();
    let mut later = Vec::new();
    for _ in 0..20 {
        let one = Instant::now();
        let _: String = requester.request_json(&subject, "again").await.unwrap();
        later.push(one.elapsed());
    }
    later.sort();
    println!(
        "kafka start-up: connect {connect_time:?}, responder group join {group_join:?}, \
         first request (creates the reply topic) {first:?}, then p50 {:?} over 20 requests",
        later[later.len() / 2]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = connect(&format!("kafka://127.0.0.1:{port}?connect_timeout=1s"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
