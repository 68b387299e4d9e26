//! Kafka behaviour beyond the conformance suite: at-least-once delivery across
//! consumer restarts, request/reply under load with a responder group, keyed
//! ordering, and what start-up costs. Needs the broker on 127.0.0.1:9092
//! (`scripts/kafka-broker.sh start`); without it these tests are skipped with a
//! message, unless `CI=true`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use switchboard::{connect, Bus, ErrorKind, Message, Service};

mod support;
use support::{connect_or_skip, next_within, unique};

const BROKER: &str = "kafka://127.0.0.1:9092";

/// The test broker with `options`, or `None` (skip) when it is down outside CI.
async fn broker(options: &str) -> Option<Bus> {
    connect_or_skip(&format!("{BROKER}{options}")).await
}

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

async fn no_event_is_lost_across_a_consumer_restart_under_a_stream_of_10000() {
    const EVENTS: u32 = 10_000;
    // One record per batch: tansu skips the rest of a batch when a consumer resumes
    // inside it (see `broker_gap_resuming_inside_a_record_batch`).
    let Some(publisher) = broker("?rdkafka.batch.num.messages=1").await else {
        return;
    };
    let subject = unique("stream");
    let group = format!("ledger.{subject}");
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
    let processed_before_restart = seen.clone();
    let committed_at_restart = {
        let (subject, group) = (subject.clone(), group.clone());
        tokio::task::spawn_blocking(move || committed_offsets(&subject, &group))
            .await
            .unwrap()
    };

    let restarted = broker("").await.unwrap();
    let mut sub = restarted.queue_subscribe(&subject, "ledger").await.unwrap();
    while seen.len() < EVENTS as usize {
        let Some(mut incoming) = next_within(&mut sub, Duration::from_secs(10)).await else {
            break;
        };
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

    // The adapter's promise: the group committed exactly up to the first event the
    // stopped consumer had not processed, in every partition: not one past it.
    let log = {
        let subject = subject.clone();
        tokio::task::spawn_blocking(move || raw_read_all(&subject))
            .await
            .unwrap()
    };
    assert_eq!(
        log.len(),
        EVENTS as usize,
        "the broker lost acknowledged publishes"
    );
    for (partition, committed) in &committed_at_restart {
        let first_unprocessed = (0..)
            .find(|offset| {
                !log.iter().any(|(seq, at)| {
                    *at == (*partition, *offset) && processed_before_restart.contains(seq)
                })
            })
            .unwrap();
        assert_eq!(
            *committed,
            switchboard::kafka::rdkafka::Offset::Offset(first_unprocessed),
            "partition {partition}: committed offset is not the first unprocessed event"
        );
    }

    // Everything arrives. A broker that honours the committed offset loses nothing;
    // tansu 0.6 sometimes skips the records at the offset the new consumer resumes
    // from while writes go on (the committed offset itself is right, as checked
    // above). On tansu such skips are reported and must sit exactly there.
    let missing: Vec<(u32, (i32, i64))> = log
        .iter()
        .filter(|(seq, _)| !seen.contains(seq))
        .map(|(seq, at)| (*seq, *at))
        .collect();
    if broker_kind() == "tansu" {
        for (seq, (partition, offset)) in &missing {
            let resume = committed_at_restart
                .iter()
                .find(|(p, _)| p == partition)
                .map(|(_, committed)| committed.to_raw().unwrap())
                .unwrap();
            assert!(
                (resume..resume + 8).contains(offset),
                "event {seq} (partition {partition}, offset {offset}) lost away from the resume offset {resume}"
            );
        }
        println!(
            "kafka (tansu): {} of {EVENTS} events received across a consumer restart ({} redelivered); \
             the broker skipped {} at resume offsets: {missing:?}",
            EVENTS as usize - missing.len(),
            deliveries as usize - (EVENTS as usize - missing.len()),
            missing.len()
        );
    } else {
        assert!(missing.is_empty(), "lost events: {missing:?}");
        println!("kafka: {EVENTS} of {EVENTS} events received across a consumer restart");
    }
}

async fn a_thousand_concurrent_requests_to_a_responder_group_each_get_their_own_reply() {
    let Some(requester) = broker("").await else {
        return;
    };
    let subject = unique("rpc");
    let mut responders = Vec::new();
    for name in ["a", "b"] {
        let bus = broker("").await.unwrap();
        let running = Service::new("pricing", bus.clone())
            .on(&subject, move |n: u64| async move {
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

async fn requests_keep_being_answered_while_a_responder_joins_the_group() {
    // One record per batch: after the rebalance the new owner of a partition
    // resumes at its committed offset, and tansu skips the rest of a batch when
    // that offset falls inside one (see `broker_gap_resuming_inside_a_record_batch`).
    let Some(requester) = broker("?rdkafka.batch.num.messages=1").await else {
        return;
    };
    let subject = unique("scale-out");
    let start_responder = |name: &'static str| {
        let subject = subject.clone();
        async move {
            let bus = broker("").await.unwrap();
            let running = Service::new("quotes", bus.clone())
                .on(&subject, move |n: u64| async move {
                    Ok::<_, String>(format!("{name}:{n}"))
                })
                .start()
                .await
                .unwrap();
            (bus, running)
        }
    };
    let first = start_responder("first").await;
    let mut calls = tokio::task::JoinSet::new();
    let mut second = None;
    for n in 0..300u64 {
        if n == 100 {
            // Joining triggers a rebalance while requests are in flight.
            second = Some(start_responder("second").await);
        }
        let (requester, subject) = (requester.clone(), subject.clone());
        calls.spawn(async move {
            let reply: String = requester
                .request_json_with_timeout(&subject, &n, Duration::from_secs(60))
                .await
                .unwrap_or_else(|err| panic!("request {n} failed across the rebalance: {err}"));
            assert!(reply.ends_with(&format!(":{n}")), "request {n} got {reply}");
            reply.split(':').next().unwrap().to_owned()
        });
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut served_by = BTreeMap::new();
    while let Some(done) = calls.join_next().await {
        *served_by.entry(done.unwrap()).or_insert(0) += 1;
    }
    println!("kafka: 300 requests across a responder joining the group; served by {served_by:?}");
    drop((first, second));
}

async fn a_failing_event_handler_gets_the_event_again_until_it_succeeds() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let Some(bus) = broker("").await else { return };
    let subject = unique("flaky-handler");
    let attempts = Arc::new(AtomicU32::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = Service::new("flaky", bus.clone())
        .on_ordered(&subject, {
            let attempts = attempts.clone();
            move |n: u32| {
                let (attempts, done_tx) = (attempts.clone(), done_tx.clone());
                async move {
                    if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err(format!("not yet ({n})"));
                    }
                    done_tx.send(n).map_err(|e| e.to_string())
                }
            }
        })
        .start()
        .await
        .unwrap();
    bus.publish_json(&subject, &7u32).await.unwrap();
    let handled = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
        .await
        .expect("the event was not delivered again after failures")
        .unwrap();
    assert_eq!(handled, 7);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    running.shutdown().await;
}

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

async fn start_up_costs_are_paid_once_not_per_message() {
    let started = Instant::now();
    let Some(responder) = broker("").await else {
        return;
    };
    let connect_time = started.elapsed();
    let subject = unique("costs");
    let group_join = Instant::now();
    let running = Service::new("echo", responder.clone())
        .on(
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

/// A raw client (not switchboard) on the test broker.
fn raw_consumer(group: &str) -> switchboard::kafka::rdkafka::consumer::BaseConsumer {
    switchboard::kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The offsets `group` has committed for the four partitions of `topic`.
fn committed_offsets(topic: &str, group: &str) -> Vec<(i32, switchboard::kafka::rdkafka::Offset)> {
    use switchboard::kafka::rdkafka::consumer::Consumer;
    let mut partitions = switchboard::kafka::rdkafka::TopicPartitionList::new();
    for partition in 0..4 {
        partitions.add_partition(topic, partition);
    }
    raw_consumer(group)
        .committed_offsets(partitions, Duration::from_secs(5))
        .unwrap()
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

/// Every numbered event in the four partitions of `topic`, with its (partition, offset).
fn raw_read_all(topic: &str) -> BTreeMap<u32, (i32, i64)> {
    use switchboard::kafka::rdkafka::consumer::Consumer;
    use switchboard::kafka::rdkafka::Message as _;
    let consumer = raw_consumer(&format!("audit-{topic}"));
    let mut partitions = switchboard::kafka::rdkafka::TopicPartitionList::new();
    for partition in 0..4 {
        partitions
            .add_partition_offset(
                topic,
                partition,
                switchboard::kafka::rdkafka::Offset::Beginning,
            )
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut log = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && log.len() < 10_000 {
        if let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) {
            let seq = std::str::from_utf8(record.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            log.insert(seq, (record.partition(), record.offset()));
        }
    }
    log
}

/// Which broker the tests run against: `kafka` (Apache Kafka, the default, as
/// `.ci/run` starts it; strict: no tolerance) or `tansu`
/// (`SWITCHBOARD_KAFKA_BROKER=tansu`, with its documented gaps).
fn broker_kind() -> String {
    std::env::var("SWITCHBOARD_KAFKA_BROKER").unwrap_or_else(|_| "kafka".into())
}

/// A consumer that starts (or resumes from a committed offset) in the middle of
/// a record batch must get the rest of that batch. Apache Kafka does; tansu 0.6
/// returns nothing from that batch, so the records after the resume point are
/// skipped. Workaround when resuming matters on tansu: one record per batch
/// (`rdkafka.batch.num.messages=1`). This test fails once tansu is fixed, so
/// the workaround can go.
async fn broker_gap_resuming_inside_a_record_batch() {
    use switchboard::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use switchboard::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use switchboard::kafka::rdkafka::Message as _;
    let Some(bus) = broker("?partitions=1").await else {
        return;
    };
    let topic = unique("batch");
    // Creates the topic (one partition) through switchboard; the batch is written raw.
    bus.publish(&topic, Message::new("first")).await.unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let config = || {
            let mut config = switchboard::kafka::rdkafka::ClientConfig::new();
            config.set("bootstrap.servers", "127.0.0.1:9092");
            config
        };
        let producer: BaseProducer = config().set("linger.ms", "200").create().unwrap();
        for i in 0..10 {
            producer
                .send(
                    BaseRecord::<str, str>::to(&topic)
                        .payload(&i.to_string())
                        .partition(0),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        // Offsets 1..=10 were written as one batch; resume at 6, inside it.
        let consumer: BaseConsumer = config()
            .set("group.id", format!("gap-{topic}"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = switchboard::kafka::rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, switchboard::kafka::rdkafka::Offset::Offset(6))
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && seen.len() < 5 {
            if let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) {
                seen.push(record.offset());
            }
        }
        seen
    })
    .await
    .unwrap();
    if broker_kind() == "tansu" {
        assert!(
            seen.is_empty(),
            "tansu now returns the rest of a batch ({seen:?}): drop the one-record-per-batch workaround"
        );
        println!("tansu gap confirmed: resuming at offset 6 inside a batch delivered {seen:?}");
    } else {
        assert_eq!(seen, [6, 7, 8, 9, 10]);
    }
}

/// A request whose caller already got `Timeout` while the responder was down
/// is not executed when the responder comes back: it is skipped and counted,
/// and the next request is answered.
async fn a_request_that_expired_while_the_responder_was_down_is_not_executed() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    // One partition, so the expired request is read before the next one.
    let Some(caller) = broker("?partitions=1").await else {
        return;
    };
    let subject = unique("expired");
    let service = format!("{subject}-svc");
    let calls = Arc::new(AtomicU32::new(0));
    let start = |bus: Bus, calls: Arc<AtomicU32>| {
        let (subject, service) = (subject.clone(), service.clone());
        async move {
            Service::new(service, bus)
                .on(&subject, move |n: u32| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, String>(n)
                    }
                })
                .start()
                .await
                .unwrap()
        }
    };
    // The group exists and has committed its position; then the responder goes away.
    let responder = broker("?partitions=1").await.unwrap();
    let running = start(responder.clone(), calls.clone()).await;
    let warm: u32 = caller
        .request_json_with_timeout(&subject, &1, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(warm, 1);
    assert!(running.shutdown().await.is_clean());
    responder.close().await.unwrap();

    let err = caller
        .request_json_with_timeout::<_, u32>(&subject, &2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    let responder = broker("?partitions=1").await.unwrap();
    let running = start(responder.clone(), calls.clone()).await;
    let fresh: u32 = caller
        .request_json_with_timeout(&subject, &3, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(fresh, 3);
    let report = running.shutdown().await;
    println!(
        "kafka: handler ran {} times for 3 requests; {report}",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the expired request ran");
    assert_eq!(report.expired_requests, 1, "{report}");
    responder.close().await.unwrap();
}

/// Requests with forged reply addresses (empty, not a topic name, a topic
/// nobody reads) or an absurd timeout cannot stop a responder, even an
/// ordered one: the next real request is answered at once.
async fn forged_reply_addresses_do_not_stop_a_responder() {
    use switchboard::kafka::rdkafka::message::{Header, OwnedHeaders};
    use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(caller) = broker("").await else {
        return;
    };
    let subject = unique("forged");
    let responder = broker("").await.unwrap();
    let running = Service::new(format!("{subject}-svc"), responder.clone())
        .on_ordered(&subject, |n: u32| async move { Ok::<_, String>(n) })
        .start()
        .await
        .unwrap();
    let warm: u32 = caller
        .request_json_with_timeout(&subject, &0, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(warm, 0);
    let raw: FutureProducer = switchboard::kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .create()
        .unwrap();
    let unread = format!("{subject}-nobody-reads-this");
    let forged = [
        ("", "60000"),
        ("bad topic/..", "60000"),
        (unread.as_str(), "60000"),
        // A deadline too far away to represent must not panic the consumer.
        (unread.as_str(), "18446744073709551615"),
    ];
    for (n, (reply_to, timeout_ms)) in forged.into_iter().enumerate() {
        let correlation = format!("forged-{n}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "sb-reply-to",
                value: Some(reply_to),
            })
            .insert(Header {
                key: "sb-correlation-id",
                value: Some(correlation.as_str()),
            })
            .insert(Header {
                key: "sb-timeout-ms",
                value: Some(timeout_ms),
            });
        raw.send(
            FutureRecord::to(&subject)
                .key(&correlation)
                .payload("7")
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    let started = Instant::now();
    let answer: u32 = caller
        .request_json_with_timeout(&subject, &42, Duration::from_secs(20))
        .await
        .unwrap();
    let took = started.elapsed();
    println!("kafka: answered the next request {took:?} after four forged requests");
    assert_eq!(answer, 42);
    assert!(
        took < Duration::from_secs(5),
        "the responder was held up for {took:?}"
    );
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report}");
    // The empty and the malformed name are refused and counted; a valid
    // topic nobody reads takes its reply like any other.
    assert_eq!(
        report.undeliverable_replies, 2,
        "every malformed reply address is counted: {report}"
    );
}

/// A pattern subscription is a regex subscription: a plain one sees what is
/// published from now on to the topics that exist and everything on topics
/// created later; a group's members share every matching topic, a new group
/// starting at `offset_reset` (earliest). Each event exactly once, nothing
/// from a topic one token too deep.
async fn pattern_subscriptions_see_new_topics_and_each_event_once() {
    let options = "?pattern_refresh=500ms";
    let Some(publisher) = broker(options).await else {
        return;
    };
    let base = unique("pattern");
    let old = format!("{base}.old");
    publisher
        .publish(&old, Message::new("old-1"))
        .await
        .unwrap();

    let pattern = format!("{base}.*");
    let plain_bus = broker(options).await.unwrap();
    let mut plain = plain_bus.subscribe(&pattern).await.unwrap();
    let members = [
        broker(options).await.unwrap(),
        broker(options).await.unwrap(),
    ];
    let mut first = members[0].queue_subscribe(&pattern, "audit").await.unwrap();
    // A new group starts at the beginning of the topics that match. The first
    // member handles what is there before the second joins: a record fetched
    // but not acknowledged when its partition moves is delivered again
    // (at-least-once), which this test would count as a duplicate.
    let mut before = next_within(&mut first, Duration::from_secs(30))
        .await
        .expect("a new group reads a matching topic from its beginning");
    assert_eq!(before.payload(), b"old-1");
    before.ack().await.unwrap();
    let mut second = members[1].queue_subscribe(&pattern, "audit").await.unwrap();

    publisher
        .publish(&old, Message::new("old-2"))
        .await
        .unwrap();
    let mut published = vec!["old-2".to_owned()];
    for i in 0..30 {
        let payload = format!("new-{i}");
        let subject = format!("{base}.new{}", i % 3);
        publisher
            .publish(&subject, Message::new(payload.clone()))
            .await
            .unwrap();
        published.push(payload);
    }
    publisher
        .publish(&format!("{base}.too.deep"), Message::new("deep"))
        .await
        .unwrap();

    let expected_plain: BTreeSet<String> = published.iter().cloned().collect();
    let expected_group = expected_plain.clone();

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut plain_seen, mut group_seen) = (Vec::new(), Vec::new());
    while (plain_seen.len() < expected_plain.len() || group_seen.len() < expected_group.len())
        && Instant::now() < deadline
    {
        tokio::select! {
            Some(incoming) = plain.next() => {
                plain_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned());
            }
            Some(mut incoming) = first.next() => {
                group_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned());
                incoming.ack().await.unwrap();
            }
            Some(mut incoming) = second.next() => {
                group_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned());
                incoming.ack().await.unwrap();
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // Anything further would be a duplicate or a wrong match.
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        tokio::select! {
            Some(incoming) = plain.next() => plain_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned()),
            Some(incoming) = first.next() => group_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned()),
            Some(incoming) = second.next() => group_seen.push(String::from_utf8_lossy(incoming.payload()).into_owned()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    for (who, seen, expected) in [
        ("plain", &plain_seen, &expected_plain),
        ("group", &group_seen, &expected_group),
    ] {
        let unique_seen: BTreeSet<String> = seen.iter().cloned().collect();
        let missing: Vec<_> = expected.difference(&unique_seen).collect();
        let extra: Vec<_> = unique_seen.difference(expected).collect();
        let duplicates: Vec<_> = {
            let mut counted = BTreeMap::<&String, usize>::new();
            for payload in seen {
                *counted.entry(payload).or_default() += 1;
            }
            counted.into_iter().filter(|(_, n)| *n > 1).collect()
        };
        assert!(
            missing.is_empty() && extra.is_empty() && duplicates.is_empty(),
            "{who}: {} missing {missing:?}, {} not expected {extra:?}, duplicated {duplicates:?}",
            missing.len(),
            extra.len()
        );
    }
    drop((plain, first, second));
    for bus in [publisher, plain_bus, members[0].clone(), members[1].clone()] {
        bus.close().await.unwrap();
    }
}

/// A group that subscribes right after its connection created the topic
/// reads what is published next: the subscription returns only once the
/// group holds the topic's partitions, never with an empty assignment that
/// librdkafka would fill only at its next metadata refresh, minutes later.
async fn a_group_subscribed_as_its_topic_is_created_reads_at_once() {
    const ROUNDS: usize = 40;
    let Some(publisher) = broker("").await else {
        return;
    };
    let subscriber = broker("").await.unwrap();
    let mut missed = Vec::new();
    for round in 0..ROUNDS {
        let subject = unique("fresh-topic");
        let mut sub = subscriber.queue_subscribe(&subject, "fresh").await.unwrap();
        publisher
            .publish(&subject, Message::new(round.to_string()))
            .await
            .unwrap();
        match next_within(&mut sub, Duration::from_secs(15)).await {
            Some(mut incoming) => {
                assert_eq!(incoming.payload(), round.to_string().as_bytes());
                incoming.ack().await.unwrap();
            }
            None => missed.push(round),
        }
    }
    assert!(
        missed.is_empty(),
        "{} of {ROUNDS} fresh groups read nothing within 15 s (rounds {missed:?})",
        missed.len()
    );
    for bus in [publisher, subscriber] {
        bus.close().await.unwrap();
    }
}

/// A group subscribed to a topic that does not exist yet (`create_topics=false`)
/// waits for it, and reads what is published once another connection creates
/// it; a topic that never comes is a clear error at `assignment_timeout`.
async fn a_group_subscribed_before_its_topic_exists_reads_once_it_does() {
    let Some(publisher) = broker("").await else {
        return;
    };
    let impatient = broker("?create_topics=false&assignment_timeout=1s")
        .await
        .unwrap();
    let never = unique("never-topic");
    let Err(err) = impatient.queue_subscribe(&never, "later").await else {
        panic!("a topic that never exists fails the subscription");
    };
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains(&never), "{err}");
    impatient.close().await.unwrap();

    let subscriber = broker("?create_topics=false").await.unwrap();
    let subject = unique("later-topic");
    let subscribing = {
        let (subscriber, subject) = (subscriber.clone(), subject.clone());
        tokio::spawn(async move { subscriber.queue_subscribe(&subject, "later").await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Publishing creates the topic.
    publisher
        .publish(&subject, Message::new("first"))
        .await
        .unwrap();
    let mut sub = subscribing
        .await
        .unwrap()
        .expect("the subscription waits for its topic");
    let mut first = next_within(&mut sub, Duration::from_secs(15))
        .await
        .expect("the event published as the topic was created is read");
    assert_eq!(first.payload(), b"first");
    first.ack().await.unwrap();
    drop(sub);
    for bus in [publisher, subscriber] {
        bus.close().await.unwrap();
    }
}

crate::tests!(
    an_unacknowledged_event_is_delivered_again_after_a_restart,
    a_nacked_event_is_delivered_again_at_once,
    no_event_is_lost_across_a_consumer_restart_under_a_stream_of_10000,
    a_thousand_concurrent_requests_to_a_responder_group_each_get_their_own_reply,
    requests_keep_being_answered_while_a_responder_joins_the_group,
    a_failing_event_handler_gets_the_event_again_until_it_succeeds,
    events_with_the_same_key_keep_their_order,
    start_up_costs_are_paid_once_not_per_message,
    an_unreachable_broker_is_a_connect_error,
    broker_gap_resuming_inside_a_record_batch,
    a_request_that_expired_while_the_responder_was_down_is_not_executed,
    forged_reply_addresses_do_not_stop_a_responder,
    pattern_subscriptions_see_new_topics_and_each_event_once,
    a_group_subscribed_as_its_topic_is_created_reads_at_once,
    a_group_subscribed_before_its_topic_exists_reads_once_it_does,
);
