//! A three-server NATS cluster with one server SIGKILLed mid-stream and
//! restarted later: JetStream with three replicas loses no accepted event,
//! and request/reply fails over within a measured bound.

mod support;

use std::time::{Duration, Instant};

use support::clusters::NatsCluster;
use switchboard::{ErrorKind, Service};

/// How long a fresh cluster may take to elect its JetStream leaders.
const READY_WITHIN: Duration = Duration::from_secs(60);

async fn jetstream_with_three_replicas_loses_nothing_when_a_server_dies() {
    const COUNT: u32 = 600;
    let Some(cluster) = NatsCluster::start() else {
        return;
    };
    let options = "&publish_timeout=2s&jetstream=CLUSTER&jetstream_subjects=cluster.>\
                   &jetstream_replicas=3&ack_wait=2s";
    // The publisher sits on the server that dies; the subscriber anywhere.
    let publisher = support::connect_when_ready(&cluster.first_only(options), READY_WITHIN).await;
    let subscriber = support::connect_when_ready(&cluster.url(options), READY_WITHIN).await;
    let mut sub = subscriber
        .queue_subscribe("cluster.events", "counter")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        // The quiet spell spans the outage, the publisher's retries and the
        // consumer's move to a live server, which took over 15 s once on a
        // loaded two-core machine; it ends as soon as every event arrived.
        let (seen, deliveries) =
            support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(30)).await;
        (seen, deliveries, sub)
    });

    // The publisher's own server dies a third of the way in and comes back 3 s later.
    let outage = |mut cluster: NatsCluster| {
        cluster.nodes[0].stop();
        std::thread::sleep(Duration::from_secs(3));
        cluster.nodes[0].restart();
        cluster
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Closed];
    let (_cluster, killed_at, failed_attempts) = support::publish_through_outage(
        cluster,
        outage,
        &publisher,
        "cluster.events",
        COUNT,
        Duration::from_millis(2),
        &expected,
    )
    .await;
    let (seen, deliveries, _sub) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "NATS cluster (3 servers, JetStream R3): {} of {COUNT} accepted events delivered; \
         the publisher's server was killed at event {killed_at} and restarted 3 s later ({} \
         redelivered; {failed_attempts} publish attempts failed and were retried)",
        seen.len(),
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
}

async fn requests_keep_being_answered_when_a_server_dies() {
    const COUNT: u32 = 300;
    let Some(mut cluster) = NatsCluster::start() else {
        return;
    };
    // The responder sits on the server that dies; the caller anywhere.
    let responder = support::connect_when_ready(&cluster.first_only(""), READY_WITHIN).await;
    let caller = support::connect_when_ready(&cluster.url(""), READY_WITHIN).await;
    let running = Service::new("echo", responder.clone())
        .on("cluster.echo", |n: u32| async move { Ok::<_, String>(n) })
        .start()
        .await
        .unwrap();
    // The responder's interest takes a moment to reach the caller's server.
    let warm_until = Instant::now() + READY_WITHIN;
    while caller
        .request_json_with_timeout::<_, u32>("cluster.echo", &0, Duration::from_millis(500))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < warm_until,
            "the responder never became reachable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut answered, mut errors) = (0u32, Vec::new());
    let mut answered_after_loss = 0u32;
    let mut killed_at = None;
    let mut failed_over_after = None;
    for n in 0..COUNT {
        if n == COUNT / 3 {
            cluster.nodes[0].stop();
            killed_at = Some(Instant::now());
        }
        if n == 2 * COUNT / 3 {
            cluster.nodes[0].restart();
        }
        let started = Instant::now();
        match caller
            .request_json_with_timeout::<_, u32>("cluster.echo", &n, Duration::from_millis(500))
            .await
        {
            Ok(reply) => {
                assert_eq!(reply, n);
                answered += 1;
                if n > COUNT / 3 {
                    answered_after_loss += 1;
                    if let (Some(killed), None) = (killed_at, failed_over_after) {
                        failed_over_after = Some(killed.elapsed());
                    }
                }
            }
            Err(err) => {
                assert!(
                    [
                        ErrorKind::Timeout,
                        ErrorKind::NoResponders,
                        ErrorKind::Closed
                    ]
                    .contains(&err.kind()),
                    "unclear error while a server died: {err:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "a failed call took {:?}",
                    started.elapsed()
                );
                errors.push((n, err.kind()));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "NATS cluster (3 servers, core request/reply): {answered} of {COUNT} answered; \
         {} failed around the loss of the responder's server at call {}: {errors:?}; \
         answered again {failed_over_after:?} after the kill",
        errors.len(),
        COUNT / 3
    );
    // Every call after the clients moved must be answered again.
    let last_error = errors.last().map_or(0, |(n, _)| *n);
    assert!(
        last_error < COUNT - 50,
        "calls were still failing near the end: {errors:?}"
    );
    assert!(answered_after_loss > 0);
    assert!(running.shutdown().await.is_clean());
}

/// A JetStream consumer whose leader dies while its subscriber's client
/// stays connected to a live server: the pull request the dead leader held
/// is lost with it, and the subscription must ask again.
async fn a_consumer_resumes_when_its_leader_dies() {
    consumer_resumes_after_losing(Loss::LeaderOnly).await;
}

/// The same when the server that dies is also the one the subscriber's
/// client was connected to: the client moves, and the subscription asks
/// the new leader once the cluster answers.
async fn a_consumer_resumes_when_its_leader_and_its_server_die() {
    consumer_resumes_after_losing(Loss::LeaderWithSubscriber).await;
}

/// Which server dies in [`consumer_resumes_after_losing`].
#[derive(Clone, Copy, PartialEq, Debug)]
enum Loss {
    /// The consumer's leader, not the subscriber's server.
    LeaderOnly,
    /// The consumer's leader, which is the subscriber's server too.
    LeaderWithSubscriber,
}

/// The server the subscriber is connected to.
const SUBSCRIBER_ON: usize = 1;

async fn consumer_resumes_after_losing(loss: Loss) {
    let Some(mut cluster) = NatsCluster::start() else {
        return;
    };
    let options = "&publish_timeout=2s&jetstream=FAILOVER&jetstream_subjects=failover.>\
                   &jetstream_replicas=3&ack_wait=2s";
    let subscriber =
        support::connect_when_ready(&cluster.only(SUBSCRIBER_ON, options), READY_WITHIN).await;
    let mut sub = subscriber
        .queue_subscribe("failover.events", "resume")
        .await
        .unwrap();
    let on_leader = loss == Loss::LeaderWithSubscriber;
    let leader = move_consumer_leader(cluster.nodes[SUBSCRIBER_ON].port(), on_leader).await;
    // The publisher sits on a server that lives.
    let publisher_on = (0..3).find(|&n| n != leader && n != SUBSCRIBER_ON).unwrap();
    let publisher =
        support::connect_when_ready(&cluster.only(publisher_on, options), READY_WITHIN).await;
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let receiving = tokio::spawn(async move {
        while let Some(mut incoming) = sub.next().await {
            let text = std::str::from_utf8(incoming.payload()).unwrap().to_owned();
            let _ = incoming.ack().await;
            if arrived.send((text, Instant::now())).is_err() {
                return;
            }
        }
    });
    // Flowing before the loss.
    publisher
        .publish_json("failover.events", &"before")
        .await
        .unwrap();
    let (first, _) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
        .await
        .expect("the consumer delivered nothing before the loss")
        .unwrap();
    assert_eq!(first, "\"before\"");

    cluster.nodes[leader].stop();
    let killed = Instant::now();
    // Published every 100 ms (a publish waits out the stream's own new
    // election) until one arrives, for at most a minute.
    let mut published = 0u32;
    let resumed = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "nothing published after the consumer's leader died arrived within 60 s \
             ({published} accepted)"
        );
        if publisher
            .publish_json("failover.events", &published)
            .await
            .is_ok()
        {
            published += 1;
        }
        match tokio::time::timeout(Duration::from_millis(100), arrivals.recv()).await {
            Ok(Some((text, at))) if text != "\"before\"" => break at,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the subscription ended"),
        }
    };
    let resumed_after = resumed - killed;
    println!(
        "NATS cluster (3 servers, JetStream R3), {loss:?}: the consumer's leader sb-{leader} \
         was killed; its subscriber (on sb-{SUBSCRIBER_ON}) received again {resumed_after:?} \
         later ({published} events accepted by then)"
    );
    // A new leader is elected within seconds and asked at once; should
    // that fail, the next pull request goes out 15 s after the last one at
    // the latest, where the client's default waited 35 s.
    assert!(
        resumed_after < Duration::from_secs(30),
        "the consumer was silent for {resumed_after:?} after its leader died"
    );
    receiving.abort();
}

/// The server leading the stream's one consumer, moved (by asking the
/// leader to step down) onto [`SUBSCRIBER_ON`] if `there`, else off it;
/// asked through `port`.
async fn move_consumer_leader(port: u16, there: bool) -> usize {
    use futures_util::StreamExt;
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let stream = jetstream.get_stream("FAILOVER").await.unwrap();
    let names: Vec<String> = stream
        .consumer_names()
        .map(|name| name.unwrap())
        .collect()
        .await;
    let [name] = names.as_slice() else {
        panic!("expected one consumer, found {names:?}");
    };
    for _ in 0..40 {
        let info = stream.consumer_info(name).await.unwrap();
        let leader = info.cluster.as_ref().and_then(|c| c.leader.as_deref());
        if let Some(leader) = leader {
            let leader: usize = leader.trim_start_matches("sb-").parse().unwrap();
            if (leader == SUBSCRIBER_ON) == there {
                return leader;
            }
            let subject = format!("$JS.API.CONSUMER.LEADER.STEPDOWN.FAILOVER.{name}");
            let _ = client.request(subject, "".into()).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the consumer's leader did not move (onto sb-{SUBSCRIBER_ON}: {there})");
}

crate::tests!(
    a_consumer_resumes_when_its_leader_dies,
    a_consumer_resumes_when_its_leader_and_its_server_die,
    jetstream_with_three_replicas_loses_nothing_when_a_server_dies,
    requests_keep_being_answered_when_a_server_dies,
);
