//! NATS behaviour beyond the conformance suite: JetStream durability,
//! redelivery, and a server restarted under a running publisher/subscriber pair.
//!
//! Uses the shared server on 127.0.0.1:4222 and, for restarts, private
//! `nats-server` processes on free loopback ports. Without a server these tests
//! are skipped with a message, unless `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard::{connect, Bus, ErrorKind, Message};

mod support;
use support::{connect_or_skip, next_within, unique};

const SHARED_URL: &str = "nats://127.0.0.1:4222";

/// Held by each burst test for its whole run: each counts the losses of a
/// load it makes itself, and another burst beside it would change that
/// load (a starved publisher never outruns its subscriber).
static BURSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared server with `options`, or `None` (skip) when it is down outside CI.
async fn shared(options: &str) -> Option<Bus> {
    connect_or_skip(&format!("{SHARED_URL}{options}")).await
}

/// Deletes a test stream through the raw client, so reruns start clean.
async fn delete_stream(stream: &str) {
    if let Ok(client) = switchboard::nats::async_nats::connect(SHARED_URL).await {
        let _ = switchboard::nats::async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
}

async fn durable_subscriber_gets_what_was_published_while_it_was_down() {
    let stream = unique("SBDURABLE");
    let subjects = unique("durable");
    let url = format!("?jetstream={stream}&jetstream_subjects={subjects}.>&ack_wait=1s");
    let Some(publisher) = shared(&url).await else {
        return;
    };
    let subscriber = shared(&url).await.unwrap();
    let subject = format!("{subjects}.orders");

    // The first subscription creates the durable consumer; then the subscriber goes away.
    drop(
        subscriber
            .queue_subscribe(&subject, "billing")
            .await
            .unwrap(),
    );
    for i in 0..20 {
        publisher
            .publish(&subject, Message::new(i.to_string()))
            .await
            .unwrap();
    }

    let mut back = subscriber
        .queue_subscribe(&subject, "billing")
        .await
        .unwrap();
    let mut received = BTreeSet::new();
    while received.len() < 20 {
        let mut incoming = next_within(&mut back, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {} of 20 delivered after restart", received.len()));
        received.insert(String::from_utf8(incoming.payload().to_vec()).unwrap());
        incoming.ack().await.unwrap();
    }
    assert_eq!(received, (0..20).map(|i| i.to_string()).collect());

    // Everything was acknowledged: a restarted subscriber gets nothing again.
    drop(back);
    let mut again = subscriber
        .queue_subscribe(&subject, "billing")
        .await
        .unwrap();
    assert!(
        next_within(&mut again, Duration::from_secs(2))
            .await
            .is_none(),
        "an acknowledged message was redelivered"
    );
    drop(again);
    delete_stream(&stream).await;
}

async fn unacknowledged_and_nacked_messages_are_redelivered() {
    let stream = unique("SBREDELIVER");
    let subjects = unique("redeliver");
    let url = format!("?jetstream={stream}&jetstream_subjects={subjects}.>&ack_wait=1s");
    let Some(bus) = shared(&url).await else {
        return;
    };
    let subject = format!("{subjects}.jobs");
    let mut sub = bus.queue_subscribe(&subject, "workers").await.unwrap();
    bus.publish(&subject, Message::new("job-1")).await.unwrap();

    // Nack: delivered again at once.
    let mut first = next_within(&mut sub, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(first.payload(), b"job-1");
    first.nack().await.unwrap();
    let second = next_within(&mut sub, Duration::from_secs(10))
        .await
        .expect("redelivered after nack");
    assert_eq!(second.payload(), b"job-1");

    // No ack at all (a crash before ack): delivered again after ack_wait, even to a new subscriber.
    drop(second);
    drop(sub);
    let mut restarted = bus.queue_subscribe(&subject, "workers").await.unwrap();
    let mut third = next_within(&mut restarted, Duration::from_secs(10))
        .await
        .expect("redelivered after ack_wait");
    assert_eq!(third.payload(), b"job-1");
    third.ack().await.unwrap();
    assert!(next_within(&mut restarted, Duration::from_secs(2))
        .await
        .is_none());
    drop(restarted);
    delete_stream(&stream).await;
}

async fn requests_on_stream_subjects_are_refused_and_others_work() {
    let stream = unique("SBREQ");
    let subjects = unique("captured");
    let url = format!("?jetstream={stream}&jetstream_subjects={subjects}.>");
    let Some(bus) = shared(&url).await else {
        return;
    };
    let err = bus
        .request(&format!("{subjects}.rpc"), Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    // Outside the stream, request/reply is core NATS as usual.
    let err = bus
        .request(&unique("free.rpc").replace('-', "_"), Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
    delete_stream(&stream).await;
}

async fn missing_stream_without_subjects_is_a_config_error() {
    if shared("").await.is_none() {
        return;
    }
    let err = connect(&format!("{SHARED_URL}?jetstream={}", unique("SBMISSING")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("jetstream_subjects"), "{err}");
}

async fn unreachable_server_is_a_connect_error_not_a_hang() {
    let port = support::free_port();
    let started = Instant::now();
    let err = connect(&format!("nats://127.0.0.1:{port}?connect_timeout=500ms"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Connecting costs a round trip, not a backoff: the fastest of five connects
/// to the local server is under 20 ms (it was about 102 ms while a 50 ms·2ⁿ
/// reconnect delay ran before the very first attempt).
async fn connect_takes_a_round_trip_not_a_backoff() {
    let Some(first) = shared("").await else {
        return;
    };
    first.close().await.unwrap();
    let mut fastest = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let bus = connect(SHARED_URL).await.unwrap();
        fastest = fastest.min(started.elapsed());
        bus.close().await.unwrap();
    }
    println!("nats: the fastest of 5 connects took {fastest:?}");
    assert!(
        fastest < Duration::from_millis(20),
        "connect took {fastest:?}"
    );
}

/// The first reconnect after a disconnect is not held back by a backoff:
/// with the server restarted in place, the client is connected again soon
/// after the port listens (the delays are 0 ms, then 100 ms, 200 ms, … up to
/// `reconnect_delay_max`).
async fn the_first_reconnect_is_not_delayed() {
    use switchboard::transport::Health;
    let Some(mut server) = PrivateServer::start() else {
        return;
    };
    let bus = connect(&format!(
        "nats://127.0.0.1:{}?reconnect_delay_max=2s",
        server.0.port()
    ))
    .await
    .unwrap();
    // Watches health from another task while the restart blocks a thread.
    let watcher = tokio::spawn({
        let bus = bus.clone();
        async move {
            let (mut down, started) = (None, Instant::now());
            while started.elapsed() < Duration::from_secs(10) {
                match (bus.health(), down) {
                    (Health::Degraded(_), None) => down = Some(Instant::now()),
                    (Health::Connected, Some(_)) => return (down, Some(Instant::now())),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (down, None)
        }
    });
    // The server is kept (dropping it would stop it).
    let (_server, listening) = tokio::task::spawn_blocking(move || {
        server.restart();
        (server, Instant::now())
    })
    .await
    .unwrap();
    let (down, back) = watcher.await.unwrap();
    assert!(down.is_some(), "the client never noticed the restart");
    let back = back.expect("the client did not reconnect within 10 s");
    let after_listening = back.saturating_duration_since(listening);
    println!(
        "nats: reconnected {after_listening:?} after the restarted server listened ({:?} after the disconnect was noticed)",
        back - down.unwrap()
    );
    assert!(
        after_listening < Duration::from_millis(500),
        "the reconnect waited {after_listening:?} after the server was back"
    );
}

/// A private `nats-server` on a free loopback port, with its own JetStream store.
struct PrivateServer(support::PrivateProcess);

impl PrivateServer {
    /// Starts one, or returns `None` (skip) when the binary is missing outside CI.
    fn start() -> Option<Self> {
        let binary = support::nats_server_binary()?;
        Some(PrivateServer(support::PrivateProcess::start(
            "nats-server",
            move |port, store| {
                let mut command = Command::new(&binary);
                command
                    .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                    .arg(store);
                command
            },
        )))
    }

    fn url(&self, options: &str) -> String {
        format!(
            "nats://127.0.0.1:{}?reconnect_delay_max=100ms&connect_timeout=2s{options}",
            self.0.port()
        )
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }
}

/// How long the private server stays down during the fault tests.
const OUTAGE: Duration = Duration::from_millis(500);

/// Publishes through a private-server restart (see `support::publish_through_outage`).
async fn publish_through_restart(
    server: PrivateServer,
    publisher: &Bus,
    subject: &str,
    count: u32,
    interval: Duration,
) -> (PrivateServer, u32, u32) {
    let outage = |mut server: PrivateServer| {
        server.stop();
        std::thread::sleep(OUTAGE);
        server.restart();
        server
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Closed];
    support::publish_through_outage(
        server, outage, publisher, subject, count, interval, &expected,
    )
    .await
}

async fn collect(
    sub: &mut switchboard::transport::Subscription,
    until_quiet: Duration,
) -> BTreeSet<u32> {
    support::collect_numbered(sub, None, until_quiet).await.0
}

async fn core_mode_resumes_after_a_server_restart_and_reports_loss() {
    const COUNT: u32 = 600;
    let Some(server) = PrivateServer::start() else {
        return;
    };
    let url = server.url("&publish_timeout=500ms");
    let publisher = connect(&url).await.unwrap();
    let subscriber = connect(&url).await.unwrap();
    let mut sub = subscriber.subscribe("fault.core").await.unwrap();
    let collecting = tokio::spawn(async move {
        let seen = collect(&mut sub, Duration::from_secs(3)).await;
        (seen, sub)
    });
    let (_server, restarted_at, failed) = publish_through_restart(
        server,
        &publisher,
        "fault.core",
        COUNT,
        Duration::from_millis(2),
    )
    .await;
    let (seen, _sub) = collecting.await.unwrap();
    let lost = COUNT - seen.len() as u32;
    println!(
        "core NATS: {lost} of {COUNT} events lost across a {OUTAGE:?} server outage from event {restarted_at} \
         ({failed} publish attempts failed and were retried)"
    );
    assert!(
        seen.iter().any(|&seq| seq > restarted_at + 10),
        "the subscriber did not resume after the restart (received {} events)",
        seen.len()
    );
    assert!(
        seen.contains(&(COUNT - 1)),
        "the last event was lost after recovery"
    );
}

async fn jetstream_mode_loses_nothing_across_a_server_restart() {
    const COUNT: u32 = 600;
    let Some(server) = PrivateServer::start() else {
        return;
    };
    let url =
        server.url("&publish_timeout=1s&jetstream=FAULT&jetstream_subjects=fault.>&ack_wait=2s");
    let publisher = connect(&url).await.unwrap();
    let subscriber = connect(&url).await.unwrap();
    let mut sub = subscriber
        .queue_subscribe("fault.durable", "pair")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        let seen = collect(&mut sub, Duration::from_secs(8)).await;
        (seen, sub)
    });
    let (_server, restarted_at, failed) = publish_through_restart(
        server,
        &publisher,
        "fault.durable",
        COUNT,
        Duration::from_millis(2),
    )
    .await;
    let (seen, _sub) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "JetStream: {} of {COUNT} events delivered across a {OUTAGE:?} outage from event {restarted_at} \
         ({failed} publish attempts failed and were retried)",
        seen.len()
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
    // Publishes whose acknowledgement was lost were retried with the same
    // id: the stream holds each event once.
    let raw = switchboard::nats::async_nats::connect(format!("127.0.0.1:{}", _server.0.port()))
        .await
        .unwrap();
    let stored = switchboard::nats::async_nats::jetstream::new(raw)
        .get_stream("FAULT")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    println!("JetStream: the stream stored {stored} messages for {COUNT} events");
    assert_eq!(
        stored,
        u64::from(COUNT),
        "a retried publish was stored twice"
    );
}

async fn calls_during_an_outage_fail_within_their_timeout_then_recover() {
    let Some(mut server) = PrivateServer::start() else {
        return;
    };
    let url = server.url("&publish_timeout=300ms");
    let responder = connect(&url).await.unwrap();
    let requester = connect(&url).await.unwrap();
    let mut sub = responder.subscribe("outage.echo").await.unwrap();
    tokio::spawn(async move {
        while let Some(mut incoming) = sub.next().await {
            let reply = incoming.take_message();
            let _ = incoming.reply(reply).await;
        }
    });
    requester
        .request("outage.echo", Message::new("up"))
        .await
        .unwrap();

    server.stop();
    let started = Instant::now();
    let err = requester
        .request_with_timeout(
            "outage.echo",
            Message::new("down"),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Backend),
        "unclear error while the server is down: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "request hung past its timeout"
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match requester
            .request_with_timeout(
                "outage.echo",
                Message::new("back"),
                Duration::from_millis(500),
            )
            .await
        {
            Ok(reply) => {
                assert_eq!(reply.payload, "back");
                break;
            }
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "never recovered after restart: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A subscriber that cannot keep up loses core NATS messages inside the client
/// once its queue (`subscription_capacity`) is full: health says so, with the
/// cause, instead of the loss passing silently.
async fn a_slow_consumer_degrades_health_with_the_cause() {
    let Some(subscriber) = shared("?subscription_capacity=100").await else {
        return;
    };
    let publisher = shared("").await.unwrap();
    let subject = format!("{}.slow", unique("slow"));
    let mut never_read = subscriber.subscribe(&subject).await.unwrap();
    assert_eq!(
        subscriber.health(),
        switchboard::transport::Health::Connected
    );
    for n in 0..2000u32 {
        publisher
            .publish(&subject, Message::new(n.to_string()))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        if let switchboard::transport::Health::Degraded(reason) = subscriber.health() {
            break reason;
        }
        assert!(Instant::now() < deadline, "health never showed the drops");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.contains("slow consumer"), "{reason}");
    assert!(reason.contains("queue of 100"), "{reason}");
    // What the queue held is still delivered, in order.
    let first = next_within(&mut never_read, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(first.payload(), b"0");
}

/// Reads numbered events until none comes for `quiet`, each after the one
/// before it (a duplicate or one out of order fails), pausing after each
/// for as long as `pause` says; how many it read.
async fn read_in_order(
    events: &mut switchboard::transport::Subscription,
    quiet: Duration,
    pause: impl Fn() -> Option<Duration>,
) -> u32 {
    let mut received = 0u32;
    let mut last: Option<u32> = None;
    while let Some(event) = next_within(events, quiet).await {
        let n: u32 = std::str::from_utf8(event.payload())
            .unwrap()
            .parse()
            .unwrap();
        assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
        last = Some(n);
        received += 1;
        if let Some(pause) = pause() {
            tokio::time::sleep(pause).await;
        }
    }
    received
}

/// A subscriber that does not read while a burst larger than async-nats'
/// own default queue (65,536) arrives keeps all of it at default settings:
/// the client's queue (`subscription_capacity`, 524,288 by default) holds
/// what comes while the route is not running, as when the system does not
/// schedule it for a while. With async-nats' default the same burst loses
/// the part past 65,536, which this test would count.
async fn a_burst_arriving_while_the_subscriber_is_not_reading_is_kept() {
    const BURST: u32 = 100_000;
    let _turn = BURSTS.lock().await;
    let Some(subscriber) = shared("").await else {
        return;
    };
    let publisher = shared("").await.unwrap();
    let subject = format!("{}.unread", unique("unread"));
    let mut events = subscriber.subscribe(&subject).await.unwrap();
    for n in 0..BURST {
        publisher
            .publish(&subject, Message::new(n.to_string()))
            .await
            .unwrap();
    }
    // Not read until every event was published; the server then forwards
    // them all to the subscriber's client within a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_in_order(&mut events, Duration::from_secs(1), || None).await;
    assert_eq!(BURST - received, 0, "events lost of {BURST}");
    assert_eq!(
        subscriber.health(),
        switchboard::transport::Health::Connected
    );
}

/// Events a subscriber lost of a 40,000-event burst published at up to
/// 100 a millisecond, with a client queue of 10,000 (`options` adds the
/// buffer's setting): the subscriber waits 1 ms after each event while the
/// burst is on its way (a hundredth of its rate at most, so the backlog
/// outgrows the queue even if the publisher runs ten times slower on a
/// busy machine), then reads the rest as fast as they come. Every receipt
/// is checked for order and duplicates.
async fn lost_of_a_burst(options: &str) -> Option<(u32, switchboard::transport::Health)> {
    const BURST: u32 = 40_000;
    const SPENT: Duration = Duration::from_millis(1);
    let subscriber = shared(&format!("?subscription_capacity=10000{options}")).await?;
    let publisher = shared("").await.unwrap();
    let subject = format!("{}.burst", unique("burst"));
    let mut events = subscriber.subscribe(&subject).await.unwrap();
    let publishing = tokio::spawn({
        let publisher = publisher.clone();
        let subject = subject.clone();
        async move {
            for n in 0..BURST {
                publisher
                    .publish(&subject, Message::new(n.to_string()))
                    .await
                    .unwrap();
                if n % 100 == 99 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
    // Asleep, not busy: a spinning reader would keep its worker, and the
    // client tasks queued behind it, from running, slowing the publisher.
    let received = read_in_order(&mut events, Duration::from_secs(1), || {
        (!publishing.is_finished()).then_some(SPENT)
    })
    .await;
    publishing.await.unwrap();
    Some((BURST - received, subscriber.health()))
}

/// A burst larger than the client's queue reaches a subscriber that reads
/// more slowly than it arrives: the subscription buffers what waits
/// (`pending_bytes`, 64 MiB by default), so nothing is lost; with a smaller
/// bound, or the buffer off, the same burst overflows the queue and the
/// client drops events, which health reports.
async fn a_burst_beyond_the_client_queue_waits_in_the_buffer() {
    let _turn = BURSTS.lock().await;
    let Some((lost, health)) = lost_of_a_burst("").await else {
        return;
    };

    assert_eq!(lost, 0, "events lost with the buffer on");
    assert_eq!(health, switchboard::transport::Health::Connected);
    // A bound smaller than the backlog holds: the rest is dropped and counted.
    let (lost, health) = lost_of_a_burst("&pending_bytes=100000").await.unwrap();
    assert!(lost > 0, "more than 100,000 bytes were buffered");
    assert!(
        matches!(&health, switchboard::transport::Health::Degraded(_)),
        "{health:?}"
    );
    let (lost, health) = lost_of_a_burst("&pending_bytes=0").await.unwrap();
    assert!(
        lost > 0,
        "the burst fitted the client's queue: the test shows nothing"
    );
    assert!(
        matches!(&health, switchboard::transport::Health::Degraded(reason) if reason.contains("slow consumer")),
        "{health:?}"
    );
}

crate::tests!(
    connect_takes_a_round_trip_not_a_backoff,
    a_burst_beyond_the_client_queue_waits_in_the_buffer,
    a_burst_arriving_while_the_subscriber_is_not_reading_is_kept,
    the_first_reconnect_is_not_delayed,
    a_slow_consumer_degrades_health_with_the_cause,
    durable_subscriber_gets_what_was_published_while_it_was_down,
    unacknowledged_and_nacked_messages_are_redelivered,
    requests_on_stream_subjects_are_refused_and_others_work,
    missing_stream_without_subjects_is_a_config_error,
    unreachable_server_is_a_connect_error_not_a_hang,
    core_mode_resumes_after_a_server_restart_and_reports_loss,
    jetstream_mode_loses_nothing_across_a_server_restart,
    calls_during_an_outage_fail_within_their_timeout_then_recover,
);
